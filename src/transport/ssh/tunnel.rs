//! ProxyJump: the session to a host behind a jump host runs over a `direct-tcpip`
//! channel of the jump host's session.
//!
//! libssh2 wants a socket to run a session on, so the channel is bridged to one end
//! of a local socketpair by a forwarding thread; the inner session uses the other
//! end. That thread is the only user of the jump host's session (libssh2 sessions
//! must be driven by one thread at a time), and it ends when the inner session
//! closes its end or the tunnel is dropped. Jump hosts chain: the jump host's own
//! session may itself run through a tunnel.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssh2::Channel;

use super::exec::poll_fds;
use super::Link;

pub(crate) struct Tunnel {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Open `host:port` through `jump` and return the local end to run a session on.
pub(crate) fn open(
    jump: Link,
    jump_name: &str,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(UnixStream, Tunnel), String> {
    jump.session
        .set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
    let channel = jump
        .session
        .channel_direct_tcpip(host, port, None)
        .map_err(|e| {
            format!(
                "jump host {jump_name} could not open a connection to {host}:{port}: {}",
                e.message()
            )
        })?;
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot create a socket pair: {e}"))?;
    theirs
        .set_nonblocking(true)
        .map_err(|e| format!("cannot set up the tunnel: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("tend-jump-{jump_name}"))
        .spawn(move || pump(jump, channel, theirs, flag))
        .map_err(|e| format!("cannot start the tunnel thread: {e}"))?;
    Ok((
        ours,
        Tunnel {
            stop,
            thread: Some(thread),
        },
    ))
}

/// Copy bytes both ways until either side ends.
fn pump(jump: Link, mut channel: Channel, mut local: UnixStream, stop: Arc<AtomicBool>) {
    let sess = &jump.session;
    sess.set_blocking(false);
    let mut up: Vec<u8> = Vec::new(); // local → channel
    let mut down: Vec<u8> = Vec::new(); // channel → local
    let mut buf = vec![0u8; 64 * 1024];
    let mut local_eof = false;
    let mut last_keepalive = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let mut progress = false;
        if up.is_empty() && !local_eof {
            match local.read(&mut buf) {
                Ok(0) => {
                    local_eof = true;
                    progress = true;
                }
                Ok(n) => {
                    up.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !up.is_empty() {
            match channel.write(&up) {
                Ok(n) if n > 0 => {
                    up.drain(..n);
                    progress = true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if local_eof && up.is_empty() {
            break; // the inner session is closed
        }
        if down.is_empty() {
            match channel.read(&mut buf) {
                Ok(0) if channel.eof() => break,
                Ok(0) => {}
                Ok(n) => {
                    down.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !down.is_empty() {
            match local.write(&down) {
                Ok(n) if n > 0 => {
                    down.drain(..n);
                    progress = true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if last_keepalive.elapsed() >= Duration::from_secs(5) {
            let _ = sess.keepalive_send();
            last_keepalive = Instant::now();
        }
        if !progress {
            let jump_events = match sess.block_directions() {
                ssh2::BlockDirections::Outbound => libc::POLLOUT,
                ssh2::BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
                _ => libc::POLLIN,
            };
            let mut local_events = 0;
            if up.is_empty() && !local_eof {
                local_events |= libc::POLLIN;
            }
            if !down.is_empty() {
                local_events |= libc::POLLOUT;
            }
            poll_fds(
                &mut [(jump.fd, jump_events), (local.as_raw_fd(), local_events)],
                Duration::from_millis(100),
            );
        }
    }
    let _ = local.shutdown(std::net::Shutdown::Both);
    sess.set_blocking(true);
    sess.set_timeout(2_000);
    let _ = channel.send_eof();
    let _ = channel.close();
    drop(channel);
    let _ = sess.disconnect(None, "tend: done", None);
    drop(jump);
}
