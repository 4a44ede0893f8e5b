//! Reaching an SSH host: options with OpenSSH's defaults, TCP with a timeout and
//! `TCP_NODELAY` set *before* the handshake (without it every channel open waits
//! ~40 ms for Nagle), the host key checked against known_hosts ([`hostkey`]), then
//! public key authentication ([`auth`]). A jump host (`proxy_jump`) carries the
//! session in a `direct-tcpip` channel ([`tunnel`]).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ssh2::{ErrorCode, Session};

use super::{auth, exec, hostkey, tunnel};
use crate::secret::Secret;
use crate::transport::{Fault, TargetError};

/// What to do with a host key that known_hosts does not have. A key that differs from
/// the recorded one is refused whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown host keys (OpenSSH `StrictHostKeyChecking yes`).
    #[default]
    Strict,
    /// Record unknown host keys in the first known_hosts file and go on
    /// (`StrictHostKeyChecking accept-new`, tend's `--accept-new-host-keys`).
    AcceptNew,
}

/// How to reach and log in to one host.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Inventory name, used in every message.
    pub name: String,
    /// Host name or IP address to connect to.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Tried in this order.
    pub identity_files: Vec<PathBuf>,
    /// If false, ssh-agent (`SSH_AUTH_SOCK`) is tried first, like OpenSSH.
    pub identities_only: bool,
    /// For encrypted identity files.
    pub passphrase: Option<Secret>,
    /// Checked in order; `AcceptNew` appends to the first.
    pub known_hosts: Vec<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// Default for commands that do not set their own timeout.
    pub command_timeout: Option<Duration>,
    /// Interval of SSH keepalive messages on an idle connection; zero: none.
    pub keepalive: Duration,
    /// Run commands and file changes through `sudo -n`.
    pub become_: bool,
    /// Connect to this host first and reach `address:port` through it.
    pub proxy_jump: Option<Box<SshOptions>>,
    pub vars: BTreeMap<String, serde_json::Value>,
}

/// How long a connection may take to be established (TCP, handshake, host key,
/// authentication) unless the inventory or `--connect-timeout` says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where host keys are looked up unless the inventory or `--known-hosts` says
/// otherwise, as OpenSSH does: the user's file (new keys are recorded there), then
/// the system-wide one.
pub fn default_known_hosts() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = home_dir()
        .map(|h| h.join(".ssh/known_hosts"))
        .into_iter()
        .collect();
    files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    files
}

impl SshOptions {
    /// OpenSSH's defaults: [`default_known_hosts`], strict host key checking, the
    /// default identity files that exist (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`),
    /// agent first, [`DEFAULT_CONNECT_TIMEOUT`], keepalive every 30 s.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        port: u16,
        user: impl Into<String>,
    ) -> Self {
        let ssh_dir = home_dir().map(|h| h.join(".ssh"));
        let identity_files = ssh_dir
            .iter()
            .flat_map(|d| ["id_ed25519", "id_ecdsa", "id_rsa"].map(|f| d.join(f)))
            .filter(|p| p.exists())
            .collect();
        SshOptions {
            name: name.into(),
            address: address.into(),
            port,
            user: user.into(),
            identity_files,
            identities_only: false,
            passphrase: None,
            known_hosts: default_known_hosts(),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: None,
            keepalive: Duration::from_secs(30),
            become_: false,
            proxy_jump: None,
            vars: BTreeMap::new(),
        }
    }
}

pub(super) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A path for messages, with the home directory shown as `~`.
pub(crate) fn tilde(path: &Path) -> String {
    if let Some(home) = home_dir() {
        if let Ok(rest) = path.strip_prefix(&home) {
            return format!("~/{}", rest.display());
        }
    }
    path.display().to_string()
}

/// How long a blocking SFTP call may wait for the server before the connection is
/// given up. Each call moves at most a few hundred KiB, so this is about a dead
/// network, not about big files.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A connected, authenticated session and what keeps it alive.
pub(crate) struct Link {
    pub session: Session,
    /// The socket the session runs on (for poll(2)).
    pub fd: RawFd,
    /// Through a jump host: the forwarding thread (dropped after the session).
    _tunnel: Option<tunnel::Tunnel>,
}

pub(super) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn timeout_ms(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

/// Transport-level libssh2 errors: the session is unusable after them.
pub(super) fn is_transport(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Session(-1 | -7 | -9 | -13 | -14 | -30 | -43 | -45 | -2 | -4 | -12 | -44 | -52)
    )
}

/// getaddrinfo(3) has no timeout of its own (a dead resolver can stall it for
/// many seconds), so it runs on a helper thread that is abandoned past `timeout`.
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let (tx, rx) = mpsc::channel();
    let host = host.to_string();
    std::thread::Builder::new()
        .name("tend-resolve".into())
        .spawn(move || {
            let r = (host.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
        })
        .map_err(|e| format!("cannot start a resolver thread: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}", fmt_duration(timeout))),
    }
}

fn tcp_connect(opts: &SshOptions) -> Result<TcpStream, TargetError> {
    let fail = |m: String| TargetError::host_fault(&opts.name, Fault::Connection, m);
    let addrs = resolve(&opts.address, opts.port, opts.connect_timeout).map_err(|why| {
        fail(format!(
            "cannot connect to {}: cannot resolve host name {}: {why}",
            opts.name, opts.address
        ))
    })?;
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, opts.connect_timeout) {
            Ok(stream) => {
                // Before the handshake: with Nagle on, every channel open costs ~40 ms.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some((*addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        return Err(fail(format!(
            "cannot connect to {}: host name {} has no address",
            opts.name, opts.address
        )));
    };
    use std::io::ErrorKind::*;
    let why = match e.kind() {
        ConnectionRefused => "connection refused (is sshd running on that port?)".to_string(),
        TimedOut | WouldBlock => format!("timed out after {}", fmt_duration(opts.connect_timeout)),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    };
    Err(fail(format!(
        "cannot connect to {} ({addr}): {why}",
        opts.name
    )))
}

fn handshake_error(opts: &SshOptions, sess: &Session, e: ssh2::Error) -> TargetError {
    let banner = sess
        .banner()
        .map(|b| format!(" (server: {})", b.trim()))
        .unwrap_or_default();
    let place = format!("{}:{}", opts.address, opts.port);
    let msg = match e.code() {
        ErrorCode::Session(-9 | -30) => format!(
            "{place} accepted the connection but did not complete the SSH handshake within {} \
             (is it an SSH server?)",
            fmt_duration(opts.connect_timeout)
        ),
        ErrorCode::Session(-5 | -8 | -10 | -11 | -33 | -51) => format!(
            "no common algorithms with the SSH server at {place}{banner}: it is probably too \
             old or restricted to algorithms tend does not support (SHA-1 key exchange, \
             ssh-rsa signatures and hmac-sha1 are not used); libssh2 says: {}",
            e.message()
        ),
        ErrorCode::Session(-2 | -13 | -43) => format!(
            "{place} closed the connection during the SSH handshake{banner} (not an SSH \
             server, or it refused us: MaxStartups, AllowUsers, TCP wrappers…)"
        ),
        _ => format!("SSH handshake with {place} failed{banner}: {}", e.message()),
    };
    TargetError::host_fault(&opts.name, Fault::Connection, msg)
}

fn verify_host_key(sess: &Session, opts: &SshOptions) -> Result<(), TargetError> {
    let fail = |m: String| TargetError::host_fault(&opts.name, Fault::HostKey, m);
    let key = hostkey::ServerKey::from_session(sess)
        .ok_or_else(|| fail("the SSH server sent no host key".into()))?;
    let name = hostkey::known_hosts_name(&opts.address, opts.port);
    let entries = hostkey::lookup(
        sess,
        &opts.known_hosts,
        &opts.address,
        opts.port,
        Some(&key.blob),
    );
    let offered = format!("{} key {}", key.short_type(), key.fingerprint());
    match hostkey::verdict(&entries, &key) {
        hostkey::Verdict::Known => Ok(()),
        hostkey::Verdict::Changed(e) => Err(fail(format!(
            "HOST KEY CHANGED for {} ({name}): the server offers {offered} but {} records \
             another {} key: possible man-in-the-middle; nothing was run. If the host was \
             really reinstalled, check the new fingerprint with its administrator, then \
             remove the old key with `ssh-keygen -R '{name}' -f {}`",
            opts.name,
            e.place(),
            key.short_type(),
            tilde(&e.file)
        ))),
        hostkey::Verdict::OtherTypes(es) => Err(fail(format!(
            "HOST KEY CHANGED for {} ({name}): known_hosts records only: {}, but the server \
             offers only {offered}: possible man-in-the-middle; nothing was run. If the host \
             was really re-keyed, check the new fingerprint with its administrator, then \
             remove the old entries with `ssh-keygen -R '{name}'`",
            opts.name,
            es.iter()
                .map(|e| format!("{} key ({})", e.type_name, e.place()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        hostkey::Verdict::Revoked(e) => Err(fail(format!(
            "the host key of {} ({name}), {offered}, is marked @revoked in {}; nothing was run",
            opts.name,
            e.place()
        ))),
        hostkey::Verdict::Unknown => match opts.host_key_policy {
            HostKeyPolicy::AcceptNew => {
                let Some(file) = opts.known_hosts.first() else {
                    return Err(fail(format!(
                        "unknown host key for {} ({name}): {offered}, and no known_hosts file \
                         to record it in; nothing was run",
                        opts.name
                    )));
                };
                hostkey::append(file, &opts.address, opts.port, &key).map_err(|e| {
                    fail(format!(
                        "cannot record the host key of {} in {}: {e}; nothing was run",
                        opts.name,
                        tilde(file)
                    ))
                })?;
                tracing::info!(host = %opts.name, key = %offered, file = %tilde(file), "recorded new host key");
                Ok(())
            }
            HostKeyPolicy::Strict => Err(fail(format!(
                "unknown host key for {} ({name}): {offered}; nothing was run. If that \
                 fingerprint is right (ask the host's administrator, or run `ssh-keygen -lf` \
                 on its /etc/ssh/ssh_host_*_key.pub), run again with --accept-new-host-keys, \
                 or add the key to {}",
                opts.name,
                opts.known_hosts
                    .first()
                    .map(|f| tilde(f))
                    .unwrap_or_else(|| "~/.ssh/known_hosts".into())
            ))),
        },
    }
}

/// TCP (or jump host tunnel), handshake, host key, authentication.
pub(crate) fn establish(opts: &SshOptions) -> Result<Link, TargetError> {
    let fail = |m: String| TargetError::host_fault(&opts.name, Fault::Connection, m);
    let mut session =
        Session::new().map_err(|e| fail(format!("cannot start an SSH session: {e}")))?;
    let (fd, tunnel) = match &opts.proxy_jump {
        Some(jump) => {
            let jump_link = establish(jump).map_err(|e| {
                fail(format!(
                    "cannot reach {} through jump host {}: {e}",
                    opts.name, jump.name
                ))
                .with_fault(e.fault())
            })?;
            let (stream, tunnel) = tunnel::open(
                jump_link,
                &jump.name,
                &opts.address,
                opts.port,
                opts.connect_timeout,
            )
            .map_err(|m| fail(format!("cannot connect to {}: {m}", opts.name)))?;
            let fd = stream.as_raw_fd();
            session.set_tcp_stream(stream);
            (fd, Some(tunnel))
        }
        None => {
            let stream = tcp_connect(opts)?;
            let fd = stream.as_raw_fd();
            session.set_tcp_stream(stream);
            (fd, None)
        }
    };
    // Ask for the key types we already know first, so the server proves the identity
    // on record rather than a new one.
    let known = hostkey::lookup(&session, &opts.known_hosts, &opts.address, opts.port, None);
    if let Some(prefs) = hostkey::preference(&session, &known) {
        let _ = session.method_pref(ssh2::MethodType::HostKey, &prefs);
    }
    session.set_timeout(timeout_ms(opts.connect_timeout));
    session
        .handshake()
        .map_err(|e| handshake_error(opts, &session, e))?;
    verify_host_key(&session, opts)?;
    auth::authenticate(&session, opts)
        .map_err(|m| TargetError::host_fault(&opts.name, Fault::Auth, m))?;
    exec::quick_ack(fd);
    session.set_timeout(timeout_ms(IO_TIMEOUT));
    session.set_keepalive(false, opts.keepalive.as_secs().min(u32::MAX as u64) as u32);
    Ok(Link {
        session,
        fd,
        _tunnel: tunnel,
    })
}

/// A name for temporary files and markers that no other run picks.
pub(crate) fn unique_suffix() -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let local = 0u8;
    let seed = format!("{now}-{}-{n}-{:p}", std::process::id(), &local);
    hex::encode(&Sha256::digest(seed.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_openssh() {
        let o = SshOptions::new("web1", "10.0.0.5", 22, "deploy");
        assert_eq!(o.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(o.connect_timeout, Duration::from_secs(10));
        assert_eq!(o.keepalive, Duration::from_secs(30));
        assert!(!o.identities_only);
        assert!(o.identity_files.iter().all(|p| p.exists()));
        if let Some(h) = home_dir() {
            assert_eq!(o.known_hosts[0], h.join(".ssh/known_hosts"));
        }
        assert_eq!(
            o.known_hosts.last(),
            Some(&PathBuf::from("/etc/ssh/ssh_known_hosts"))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(300)), "300ms");
    }
}
