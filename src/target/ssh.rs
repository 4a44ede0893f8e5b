//! A host reached over SSH (libssh2 through the `ssh2` crate). Nothing is installed on
//! the host: it needs `sshd` with the SFTP subsystem and a POSIX shell.
//!
//! * **One session per host, one thread at a time.** libssh2 sessions fail when two
//!   threads use channels at once, so every operation takes the one mutex around the
//!   connection. A small keepalive thread only ever `try_lock`s it.
//! * **Connecting**: TCP with a timeout and `TCP_NODELAY` set *before* the handshake
//!   (without it every channel open waits ~40 ms for Nagle), host key checked against
//!   known_hosts ([`hostkey`]), then public key authentication ([`auth`]). A jump host
//!   (`proxy_jump`) carries the session in a `direct-tcpip` channel ([`tunnel`]).
//! * **Files over SFTP**, one SFTP channel opened once per session. Facts (stat, read,
//!   list) never start a process on the host. `write` uploads to a temporary file in
//!   the same directory, fsyncs it (`fsync@openssh.com`), sets owner and mode, and
//!   renames it over the target with `posix-rename@openssh.com` (rename(2): atomic,
//!   replaces). SFTP v3 `rename` cannot replace a file and the `ssh2` crate does not
//!   bind the extension, so [`posix_rename`] calls libssh2 on a second SFTP channel,
//!   opened at the first rename. A server without the extension gets SFTP v3 rename
//!   for new files and one `mv -fT` on the host to replace existing ones.
//! * **Commands**: one exec channel per command; see [`exec`] for how environment
//!   values stay out of argv, how stdin/stdout/stderr are driven without deadlock and
//!   how a timeout kills the whole remote process group.
//! * **become** (`sudo -n`): commands run as `sudo -n /bin/sh -c …`. Reads (stat, read,
//!   list, readlink) go over SFTP as the login user first, which gives the same answer
//!   whenever the user may look, and fall back to `sudo -n` commands on "permission
//!   denied". Every change (write, mkdir, chmod, rename…) runs through `sudo -n`, so
//!   new files belong to root as they would for a root login; `write` streams the new
//!   content through the command's stdin into a temporary file next to the target
//!   (no copy left in a user-writable place), keeps the replaced file's owner, and
//!   renames it over. These helpers use GNU/busybox `stat -c` and `mktemp`: Linux
//!   hosts.
//! * `copy_file` of a file over 1 MiB (and every copy under become) runs `cp` on the
//!   host instead of pulling the bytes over the network and pushing them back: a
//!   backup of a 2 GiB log costs one process, not 4 GiB of traffic. Smaller files go
//!   through SFTP, which costs a few round trips and no process start.

mod auth;
pub(crate) mod exec;
mod hostkey;
mod posix_rename;
mod shell;
mod tunnel;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType, Session, Sftp};

use super::{ExecOutput, ExecRequest, HostInfo, Kind, Meta, TResult, Target, TargetError};
use crate::secret::Secret;

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
    pub vars: BTreeMap<String, String>,
}

impl SshOptions {
    /// OpenSSH's defaults: `~/.ssh/known_hosts` (then `/etc/ssh/ssh_known_hosts`),
    /// strict host key checking, the default identity files that exist
    /// (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`), agent first, 10 s connect timeout,
    /// keepalive every 30 s.
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
        let mut known_hosts: Vec<PathBuf> = ssh_dir.iter().map(|d| d.join("known_hosts")).collect();
        known_hosts.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        SshOptions {
            name: name.into(),
            address: address.into(),
            port,
            user: user.into(),
            identity_files,
            identities_only: false,
            passphrase: None,
            known_hosts,
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            command_timeout: None,
            keepalive: Duration::from_secs(30),
            become_: false,
            proxy_jump: None,
            vars: BTreeMap::new(),
        }
    }
}

fn home_dir() -> Option<PathBuf> {
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
const IO_TIMEOUT: Duration = Duration::from_secs(60);

const OSTYPE: &str = "/proc/sys/kernel/ostype";

/// Files up to this size are copied through SFTP, bigger ones by `cp` on the host.
const REMOTE_COPY_THRESHOLD: u64 = 1024 * 1024;

/// A connected, authenticated session and what keeps it alive.
pub(crate) struct Link {
    pub session: Session,
    /// The socket the session runs on (for poll(2)).
    pub fd: RawFd,
    /// Through a jump host: the forwarding thread (dropped after the session).
    _tunnel: Option<tunnel::Tunnel>,
}

struct Conn {
    // Declared before `link`: dropped before the session they run on.
    sftp: Option<Sftp>,
    /// Long-lived shells, [login user, root], opened at the second command of each.
    shells: [Option<shell::Shell>; 2],
    /// Commands run so far, [login user, root]: the first gets a channel of its own.
    commands: [u32; 2],
    /// Second SFTP channel for `posix-rename@openssh.com`, opened at first rename.
    posix: Option<posix_rename::PosixRename>,
    /// The server lacks the extension: rename falls back to SFTP v3 or `mv`.
    posix_unsupported: bool,
    /// Starting SFTP failed (no `Subsystem sftp`, or a noisy login shell).
    sftp_unavailable: bool,
    link: Link,
    /// Set when the transport failed: later calls fail fast with this reason.
    broken: Option<String>,
    /// Calls that may have changed the host (see [`SshTarget::lock_mut`]).
    mutations: u64,
    /// The last `stat`: (mutations then, path, result). An operation stats a file and
    /// then replaces it; `write` reuses that answer instead of asking again, when
    /// nothing changed in between.
    last_stat: Option<(u64, String, Option<Meta>)>,
    /// Per directory: permission bits a file created there is known to keep (see
    /// `write_sftp`).
    exact_modes: std::collections::HashMap<String, u32>,
}

impl Conn {
    /// Whether `cmd` gets a channel of its own: the first command of its kind (for
    /// one command, a shell would be a process more), and one whose stdin is too big
    /// to travel in the shell's script. The others run in the shared shell.
    fn own_channel(&self, cmd: &Cmd<'_>) -> bool {
        self.commands[cmd.become_ as usize] == 0 || cmd.stdin.len() > shell::STDIN_IN_SCRIPT
    }

    fn sftp(&mut self) -> Result<&Sftp, ssh2::Error> {
        if self.sftp.is_none() {
            // Driven here, not inside libssh2's blocking wait, so that each wait is
            // preceded by `quick_ack`: the first channel after authentication otherwise
            // waits 40 ms for sshd's Nagle (see `exec::quick_ack`).
            let sess = &self.link.session;
            let started = {
                let _mode = exec::NonBlocking::new(sess);
                let deadline = Instant::now() + IO_TIMEOUT;
                exec::retry(sess, self.link.fd, deadline, || sess.sftp())
            };
            match started {
                Ok(s) => self.sftp = Some(s),
                Err(e) => {
                    self.sftp_unavailable = !is_transport(e.code());
                    return Err(e);
                }
            }
        }
        Ok(self.sftp.as_ref().expect("just opened"))
    }
}

#[derive(Default)]
struct Facts {
    home: OnceLock<String>,
    os: OnceLock<String>,
    login_sh: OnceLock<bool>,
}

/// An SSH host as a [`Target`].
pub struct SshTarget {
    info: HostInfo,
    /// Learnt from the host when first needed, shared with the sudo view.
    facts: Arc<Facts>,
    connect_time: Duration,
    become_: bool,
    command_timeout: Option<Duration>,
    conn: Arc<Mutex<Conn>>,
    /// Dropping it stops the keepalive thread.
    _keepalive: mpsc::Sender<()>,
}

impl std::fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTarget")
            .field("name", &self.info.name)
            .field("address", &self.info.address)
            .field("user", &self.info.user)
            .finish()
    }
}

fn fmt_duration(d: Duration) -> String {
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
fn is_transport(code: ErrorCode) -> bool {
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
    let fail = |m: String| TargetError::host(&opts.name, m);
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
    TargetError::host(&opts.name, msg)
}

fn verify_host_key(sess: &Session, opts: &SshOptions) -> Result<(), TargetError> {
    let fail = |m: String| TargetError::host(&opts.name, m);
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
    let fail = |m: String| TargetError::host(&opts.name, m);
    let mut session =
        Session::new().map_err(|e| fail(format!("cannot start an SSH session: {e}")))?;
    let (fd, tunnel) = match &opts.proxy_jump {
        Some(jump) => {
            let jump_link = establish(jump).map_err(|e| {
                fail(format!(
                    "cannot reach {} through jump host {}: {e}",
                    opts.name, jump.name
                ))
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
    auth::authenticate(&session, opts).map_err(fail)?;
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

fn spawn_keepalive(conn: Weak<Mutex<Conn>>, interval: Duration) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    if interval.is_zero() {
        return tx;
    }
    let _ = std::thread::Builder::new()
        .name("tend-ssh-keepalive".into())
        .spawn(move || loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let Some(conn) = conn.upgrade() else { return };
            // Never wait: a busy connection is not idle and needs no keepalive.
            if let Ok(c) = conn.try_lock() {
                if c.broken.is_none() {
                    let _ = c.link.session.keepalive_send();
                }
            };
        });
    tx
}

/// The stat(1) format the become helpers use: raw mode in hex, size, uid, gid, mtime.
const STAT_FORMAT: &str = "%f|%s|%u|%g|%Y";

/// `rn FROM TO`: rename(2) semantics (replaces a file or symlink at TO, never moves
/// into a directory). `mv -T` where available (GNU, busybox), else plain `mv` after
/// refusing a directory target.
const RN: &str = r#"rn() {
  if e=$(mv -fT -- "$1" "$2" 2>&1); then return 0; fi
  case $e in
    *"invalid option"*|*"unrecognized option"*|*"illegal option"*|*sage:*)
      if [ -d "$2" ]; then echo "mv: $2: Is a directory" >&2; return 1; fi
      mv -f -- "$1" "$2";;
    *) printf '%s\n' "$e" >&2; return 1;;
  esac
}
"#;

/// become `write`: stdin → temporary file next to the target → owner, mode, fsync →
/// rename. Args: path, its directory, mode (octal).
const WRITE_SCRIPT: &str = r#"set -e
tmp=$(mktemp "$2/.tend-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
if [ -f "$1" ] && [ ! -L "$1" ]; then chown "$(stat -c %u:%g -- "$1")" "$tmp"; fi
chmod "$3" "$tmp"
sync "$tmp" 2>/dev/null || sync
rn "$tmp" "$1"
"#;

/// `copy_file` on the host. Args: from, to, directory of `to`.
const COPY_SCRIPT: &str = r#"set -e
if [ ! -f "$1" ]; then
  if [ -e "$1" ]; then echo "cp: $1: Not a regular file" >&2; else echo "cp: $1: No such file or directory" >&2; fi
  exit 1
fi
mode=$(stat -L -c %a -- "$1")
tmp=$(mktemp "$3/.tend-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cp -- "$1" "$tmp"
chmod "$mode" "$tmp"
sync "$tmp" 2>/dev/null || sync
rn "$tmp" "$2"
"#;

const LIST_SCRIPT: &str = r#"if [ ! -e "$1" ]; then echo "ls: $1: No such file or directory" >&2; exit 1; fi
if [ ! -d "$1" ]; then echo "ls: $1: Not a directory" >&2; exit 1; fi
cd -- "$1" || exit 1
for f in .* *; do
  case $f in .|..) continue;; esac
  if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
done
"#;

/// Read a file `stat` said is `size` bytes: until a read comes back short with
/// exactly that much, or (the file changed meanwhile) to the end.
fn read_known(file: &mut ssh2::File, data: &mut Vec<u8>, size: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; size + 1];
    let mut filled = 0;
    loop {
        let n = file.read(&mut buf[filled..])?;
        if n == 0 {
            data.extend_from_slice(&buf[..filled]);
            return Ok(());
        }
        filled += n;
        if filled == size {
            // Asked for size + 1 and got exactly size: the end.
            data.extend_from_slice(&buf[..filled]);
            return Ok(());
        }
        if filled == buf.len() {
            // Grown since the stat: read the rest the plain way.
            data.extend_from_slice(&buf);
            file.read_to_end(data)?;
            return Ok(());
        }
    }
}

/// The errno text at the end of a tool's error line, phrased like the local target.
fn clean_stderr(stderr: &[u8], code: Option<i32>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let Some(line) = text.lines().rev().map(str::trim).find(|l| !l.is_empty()) else {
        return match code {
            Some(c) => format!("failed (exit status {c})"),
            None => "failed".into(),
        };
    };
    const KNOWN: &[(&str, &str)] = &[
        ("No such file or directory", "no such file or directory"),
        ("Permission denied", "permission denied"),
        ("File exists", "already exists"),
        ("Directory not empty", "directory not empty"),
        ("Is a directory", "is a directory"),
        ("Not a directory", "not a directory"),
        ("Operation not permitted", "operation not permitted"),
        ("No space left on device", "no space left on device"),
        ("Read-only file system", "read-only file system"),
        ("Not a regular file", "not a regular file"),
        ("Invalid argument", "invalid argument"),
    ];
    for (needle, said) in KNOWN {
        if line.ends_with(needle) {
            return (*said).to_string();
        }
    }
    line.to_string()
}

fn sftp_status_text(code: i32) -> &'static str {
    match code {
        1 => "unexpected end of file",
        2 | 10 => "no such file or directory",
        3 => "permission denied",
        4 => "failed",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation not supported by the server",
        11 => "already exists",
        12 => "write protected",
        14 => "no space left on device",
        15 => "quota exceeded",
        18 => "directory not empty",
        19 => "not a directory",
        24 => "is a directory",
        _ => "failed",
    }
}

fn sftp_code(e: &ssh2::Error) -> Option<i32> {
    match e.code() {
        ErrorCode::SFTP(n) => Some(n),
        _ => None,
    }
}

const NO_SUCH_FILE: i32 = 2;
const PERMISSION_DENIED: i32 = 3;
const FAILURE: i32 = 4;
const BAD_MESSAGE: i32 = 5;
const OP_UNSUPPORTED: i32 = 8;

fn meta_of(st: &FileStat) -> Meta {
    let perm = st.perm.unwrap_or(0);
    Meta {
        kind: kind_of(perm),
        size: st.size.unwrap_or(0),
        mode: perm & 0o7777,
        uid: st.uid.unwrap_or(0),
        gid: st.gid.unwrap_or(0),
        mtime: st.mtime.unwrap_or(0) as i64,
    }
}

fn kind_of(mode: u32) -> Kind {
    match mode & 0o170000 {
        0o100000 => Kind::File,
        0o040000 => Kind::Dir,
        0o120000 => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn empty_stat() -> FileStat {
    FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: None,
        atime: None,
        mtime: None,
    }
}

/// `./name` for a relative path, so a leading `-` is never an option.
fn safe_arg(path: &str) -> String {
    if path.starts_with('/') || path.starts_with("./") {
        path.to_string()
    } else {
        format!("./{path}")
    }
}

/// One command to run on the host, as `sh -c SCRIPT tend ARGS…`.
struct Cmd<'a> {
    script: &'a str,
    env: &'a [(String, String)],
    args: &'a [&'a str],
    stdin: &'a [u8],
    become_: bool,
    timeout: Option<Duration>,
    /// The run's token (recipe commands only): a cancel kills the command.
    cancel: Option<&'a crate::cancel::CancelToken>,
}

/// Kill what carries `marker`, from a channel of its own (see `exec::KILL_SCRIPT`).
fn kill_marked(sess: &Session, fd: RawFd, become_: bool, marker: &str) {
    if let Ok((line, _)) = exec::command_line(exec::KILL_SCRIPT, &[], become_, &[marker], None) {
        let _ = exec::run_channel(
            sess,
            fd,
            &line,
            &[],
            exec::Until::timeout(Duration::from_secs(10)),
            IO_TIMEOUT,
            &mut || {},
        );
    }
}

impl SshTarget {
    /// Connect, verify the host key and log in. SFTP starts at the first file
    /// operation: `tend exec` and `tend ping` never need it.
    pub fn connect(opts: SshOptions) -> Result<SshTarget, TargetError> {
        let started = Instant::now();
        let link = establish(&opts)?;
        let conn = Conn {
            sftp: None,
            shells: [None, None],
            commands: [0, 0],
            sftp_unavailable: false,
            posix: None,
            posix_unsupported: false,
            link,
            broken: None,
            mutations: 0,
            last_stat: None,
            exact_modes: Default::default(),
        };
        let connect_time = started.elapsed();
        tracing::debug!(host = %opts.name, ms = connect_time.as_millis() as u64, "ssh connected");
        let conn = Arc::new(Mutex::new(conn));
        let keepalive = spawn_keepalive(Arc::downgrade(&conn), opts.keepalive);
        Ok(SshTarget {
            info: HostInfo {
                name: opts.name.clone(),
                address: opts.address.clone(),
                user: opts.user.clone(),
                vars: opts.vars.clone(),
            },
            facts: Arc::default(),
            connect_time,
            become_: opts.become_,
            command_timeout: opts.command_timeout,
            conn,
            _keepalive: keepalive,
        })
    }

    /// The login user's home directory on the host (absolute), for tend's state there.
    pub fn home(&self) -> TResult<String> {
        if let Some(home) = self.facts.home.get() {
            return Ok(home.clone());
        }
        let mut c = self.lock()?;
        let r = match c.sftp() {
            Ok(s) => s.realpath(Path::new(".")),
            Err(e) => return Err(self.lost(&mut c, &e)),
        };
        let home = r.map(|p| p.to_string_lossy().into_owned()).map_err(|e| {
            TargetError::host(
                self.name(),
                format!(
                    "cannot find the home directory of {}: {}",
                    self.info.user,
                    e.message()
                ),
            )
        })?;
        Ok(self.facts.home.get_or_init(|| home).clone())
    }

    /// Whether the login shell is `/bin/sh` (or dash) itself, so that a command needs
    /// no `exec /bin/sh -c` around it. Learnt from /etc/passwd, once, and only when
    /// SFTP is open anyway: `tend exec` and `ping` do not start SFTP to save a process.
    /// Unknown (an LDAP account, another shell, no SFTP yet): the wrapper stays.
    fn login_shell_is_sh(&self) -> bool {
        if let Some(known) = self.facts.login_sh.get() {
            return *known;
        }
        if self.lock().map(|c| c.sftp.is_none()).unwrap_or(true) {
            return false;
        }
        let user = &self.info.user;
        let sh = self
            .read("/etc/passwd")
            .ok()
            .and_then(|text| {
                String::from_utf8_lossy(&text).lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() == 7 && f[0] == user).then(|| f[6].to_string())
                })
            })
            .is_some_and(|shell| {
                matches!(
                    shell.as_str(),
                    "/bin/sh" | "/usr/bin/sh" | "/bin/dash" | "/usr/bin/dash"
                )
            });
        *self.facts.login_sh.get_or_init(|| sh)
    }

    /// TCP connect, handshake, host key check and authentication.
    pub fn connect_time(&self) -> Duration {
        self.connect_time
    }

    fn name(&self) -> &str {
        &self.info.name
    }

    fn lock(&self) -> TResult<MutexGuard<'_, Conn>> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &c.broken {
            return Err(TargetError::host(
                self.name(),
                format!("the SSH connection was lost earlier ({why}); nothing more can run on it"),
            ));
        }
        Ok(c)
    }

    /// [`SshTarget::lock`] for a call that may change the host: it invalidates the
    /// remembered `stat`.
    fn lock_mut(&self) -> TResult<MutexGuard<'_, Conn>> {
        let mut c = self.lock()?;
        c.mutations += 1;
        Ok(c)
    }

    /// What `path` was at the last `stat`, if that was the call right before this
    /// change (reads in between are fine).
    fn stat_before_change(c: &mut Conn, path: &str) -> Option<Option<Meta>> {
        match c.last_stat.take() {
            Some((at, p, meta)) if at + 1 == c.mutations && p == path => Some(meta),
            _ => None,
        }
    }

    /// A libssh2 error outside SFTP status codes: the connection is in trouble.
    fn lost(&self, c: &mut Conn, e: &ssh2::Error) -> TargetError {
        if c.sftp.is_none() && c.sftp_unavailable {
            return TargetError::host(
                self.name(),
                format!(
                    "cannot start SFTP: {} (is `Subsystem sftp` enabled in the host's \
                     sshd_config? A login shell that prints at startup also breaks SFTP)",
                    e.message()
                ),
            );
        }
        if is_transport(e.code()) {
            let why = match e.code() {
                ErrorCode::Session(-9 | -30) => {
                    format!("no answer for {}", fmt_duration(IO_TIMEOUT))
                }
                _ => e.message().to_string(),
            };
            c.broken = Some(why.clone());
            TargetError::host(self.name(), format!("SSH connection lost: {why}"))
        } else {
            TargetError::host(self.name(), format!("SSH error: {}", e.message()))
        }
    }

    fn sftp_err(&self, c: &mut Conn, path: &str, e: &ssh2::Error) -> TargetError {
        match sftp_code(e) {
            Some(n) => TargetError::path(self.name(), path, sftp_status_text(n)),
            None => self.lost(c, e),
        }
    }

    /// Run a command on a channel of its own or in its kind's shared shell (see
    /// `Conn::own_channel` and `shell`). `direct`: the login shell is `/bin/sh` and
    /// the command is plain, so a channel of its own runs it as it is
    /// (`exec::direct_line`).
    fn run_in(&self, c: &mut Conn, cmd: &Cmd<'_>, direct: bool) -> TResult<exec::ChannelOutput> {
        let kind = cmd.become_ as usize;
        // Whatever may be stopped carries a marker to find its processes by.
        let marker = (cmd.timeout.is_some() || cmd.cancel.is_some()).then(exec::new_marker);
        let until = exec::Until {
            timeout: cmd.timeout,
            cancel: cmd.cancel,
        };
        let bad = |m: String| TargetError::host(self.name(), m);
        let own_channel = c.own_channel(cmd);
        c.commands[kind] += 1;
        let Conn { link, shells, .. } = &mut *c;
        let (sess, fd) = (&link.session, link.fd);
        let mut kill = || {
            if let Some(m) = &marker {
                kill_marked(sess, fd, cmd.become_, m);
            }
        };
        let result = if own_channel {
            let (line, mut stdin) = if direct {
                exec::direct_line(cmd.script, cmd.env, marker.as_deref())
            } else {
                exec::command_line(
                    cmd.script,
                    cmd.env,
                    cmd.become_,
                    cmd.args,
                    marker.as_deref(),
                )
            }
            .map_err(bad)?;
            stdin.extend_from_slice(cmd.stdin);
            exec::run_channel(sess, fd, &line, &stdin, until, IO_TIMEOUT, &mut kill)
        } else {
            let exports = exec::env_exports(cmd.env).map_err(bad)?;
            let live = shells[kind].take().and_then(|mut sh| {
                if !sh.ended(sess) {
                    return Some(sh);
                }
                // Gone since its last command (killed on the host): a new one, rather
                // than reporting its death as this command's failure.
                sh.close(sess, Duration::from_secs(1));
                None
            });
            let opened = match live {
                Some(sh) => Ok(sh),
                None => shell::Shell::open(sess, fd, cmd.become_, IO_TIMEOUT),
            };
            opened.and_then(|mut sh| {
                let input = sh.input(cmd.script, &exports, cmd.args, marker.as_deref(), cmd.stdin);
                let (out, alive) = sh.run(sess, fd, &input, until, &mut kill)?;
                if alive {
                    shells[kind] = Some(sh);
                } else {
                    sh.close(sess, Duration::from_secs(5));
                }
                Ok(out)
            })
        };
        result.map_err(|e| self.lost(c, &e))
    }

    /// Run a helper script (`/bin/sh -c`, `LC_ALL=C`), through `sudo -n` if
    /// `privileged`.
    fn script(
        &self,
        c: &mut Conn,
        privileged: bool,
        script: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> TResult<exec::ChannelOutput> {
        tracing::debug!(host = %self.name(), script = %script.lines().next().unwrap_or(""), "ssh helper command");
        let full = format!("export LC_ALL=C\n{RN}{script}");
        let cmd = Cmd {
            script: &full,
            env: &[],
            args,
            stdin,
            become_: privileged,
            timeout: None,
            cancel: None,
        };
        let out = self.run_in(c, &cmd, false)?;
        if privileged {
            if let Some(e) = self.sudo_refusal(&out) {
                return Err(e);
            }
        }
        Ok(out)
    }

    /// A helper script that must succeed; its error names `path`.
    fn script_ok(
        &self,
        c: &mut Conn,
        privileged: bool,
        path: &str,
        script: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> TResult<exec::ChannelOutput> {
        let out = self.script(c, privileged, script, args, stdin)?;
        if out.code != Some(0) {
            return Err(TargetError::path(
                self.name(),
                path,
                clean_stderr(&out.stderr, out.code),
            ));
        }
        Ok(out)
    }

    /// sudo said no (needs a password, not allowed, not installed).
    fn sudo_refusal(&self, out: &exec::ChannelOutput) -> Option<TargetError> {
        if !out.stdout.is_empty() {
            return None;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").trim();
        let user = &self.info.user;
        let host = self.name();
        let msg = match out.code {
            Some(1)
                if first.starts_with("sudo:")
                    && (first.contains("password is required")
                        || first.contains("terminal is required")) =>
            {
                format!(
                    "sudo on {host} needs a password; tend uses `sudo -n`: allow NOPASSWD for \
                     {user} or run without --become"
                )
            }
            Some(1)
                if first.contains("is not in the sudoers file")
                    || first.contains("is not allowed to execute")
                    || first.starts_with("Sorry, user") =>
            {
                format!(
                    "{user} may not use sudo on {host} ({first}); allow it in sudoers or run \
                     without --become"
                )
            }
            Some(127) if first.contains("sudo") && first.contains("not found") => {
                format!("sudo is not installed on {host}; --become needs it")
            }
            _ => return None,
        };
        Some(TargetError::host(host, msg))
    }

    fn sudo_stat(&self, c: &mut Conn, path: &str) -> TResult<Option<Meta>> {
        let script = format!("stat -c '{STAT_FORMAT}' -- \"$1\"");
        let arg = safe_arg(path);
        let out = self.script(c, true, &script, &[&arg], &[])?;
        if out.code != Some(0) {
            let why = clean_stderr(&out.stderr, out.code);
            if why == "no such file or directory" || why == "not a directory" {
                return Ok(None);
            }
            return Err(TargetError::path(self.name(), path, why));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = text.trim().split('|').collect();
        let parsed = (|| {
            let raw = u32::from_str_radix(f.first()?, 16).ok()?;
            Some(Meta {
                kind: kind_of(raw),
                size: f.get(1)?.parse().ok()?,
                mode: raw & 0o7777,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                mtime: f.get(4)?.parse().ok()?,
            })
        })();
        parsed.map(Some).ok_or_else(|| {
            TargetError::path(
                self.name(),
                path,
                format!("cannot parse `stat` output: {}", text.trim()),
            )
        })
    }

    fn lstat_in(&self, c: &mut Conn, path: &str) -> TResult<Option<Meta>> {
        let r = match c.sftp() {
            Ok(s) => s.lstat(Path::new(path)),
            Err(e) => return Err(self.lost(c, &e)),
        };
        match r {
            Ok(st) => Ok(Some(meta_of(&st))),
            Err(e) if sftp_code(&e) == Some(NO_SUCH_FILE) => Ok(None),
            Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                self.sudo_stat(c, path)
            }
            Err(e) => Err(self.sftp_err(c, path, &e)),
        }
    }

    /// After an SFTP v3 "failure" (it has no finer codes), say what was wrong.
    fn explain_failure(&self, c: &mut Conn, path: &str, e: &ssh2::Error, op: &str) -> TargetError {
        // OpenSSH maps EINVAL (readlink of a non-link…) to "bad message".
        if !matches!(sftp_code(e), Some(FAILURE | BAD_MESSAGE)) {
            return self.sftp_err(c, path, e);
        }
        let meta = self.lstat_in(c, path).ok().flatten();
        let why = match (op, meta) {
            ("mkdir" | "symlink", Some(_)) => "already exists",
            ("unlink", Some(m)) if m.kind == Kind::Dir => "is a directory",
            ("rmdir", Some(m)) if m.kind != Kind::Dir => "not a directory",
            ("rmdir", Some(_)) => "directory not empty",
            ("readlink", Some(m)) if m.kind != Kind::Symlink => "not a symlink",
            ("read", Some(m)) if m.kind == Kind::Dir => "is a directory",
            _ => "failed",
        };
        TargetError::path(self.name(), path, why)
    }

    fn read_in(&self, c: &mut Conn, path: &str) -> TResult<Vec<u8>> {
        let opened = match c.sftp() {
            Ok(s) => s.open(Path::new(path)),
            Err(e) => return Err(self.lost(c, &e)),
        };
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                drop(e);
                let arg = safe_arg(path);
                let out = self.script_ok(c, true, path, "cat -- \"$1\"", &[&arg], &[])?;
                return Ok(out.stdout);
            }
            Err(e) => return Err(self.sftp_err(c, path, &e)),
        };
        // The size `stat` just gave saves a round trip: ask for one byte more, and
        // a short answer of exactly that size is the whole file (OpenSSH answers a
        // read of a regular file short only at its end), no need to ask for the EOF.
        let known = match &c.last_stat {
            Some((at, p, Some(m))) if *at == c.mutations && p == path && m.kind == Kind::File => {
                Some(m.size as usize)
            }
            _ => None,
        };
        let mut data = Vec::new();
        let read = match known {
            Some(size) if size < REMOTE_COPY_THRESHOLD as usize => {
                read_known(&mut file, &mut data, size)
            }
            _ => file.read_to_end(&mut data).map(|_| ()),
        };
        if let Err(e) = read {
            drop(file);
            let as_ssh = ssh2::Error::from_errno(ErrorCode::SFTP(FAILURE));
            let err = self.explain_failure(c, path, &as_ssh, "read");
            if err.message() == "failed" {
                return Err(TargetError::path(
                    self.name(),
                    path,
                    format!("read failed: {e}"),
                ));
            }
            return Err(err);
        }
        Ok(data)
    }

    /// `posix-rename@openssh.com` (rename(2) semantics); `None` when the server
    /// does not have it.
    fn try_posix_rename(
        &self,
        c: &mut Conn,
        from: &str,
        to: &str,
    ) -> Option<Result<(), ssh2::Error>> {
        if c.posix_unsupported {
            return None;
        }
        if c.posix.is_none() {
            match posix_rename::PosixRename::open(&c.link.session, c.link.fd, IO_TIMEOUT) {
                Ok(p) => c.posix = Some(p),
                Err(e) if is_transport(e.code()) => return Some(Err(e)),
                Err(_) => {
                    c.posix_unsupported = true;
                    return None;
                }
            }
        }
        let posix = c.posix.as_ref()?;
        match posix.rename(from, to) {
            Err(e) if sftp_code(&e) == Some(OP_UNSUPPORTED) => {
                c.posix_unsupported = true;
                None
            }
            // sftp-server -P (banned request) says "permission denied": the fallback
            // gives the real answer (and the same error when it is real).
            Err(e) if sftp_code(&e) == Some(PERMISSION_DENIED) => None,
            r => Some(r),
        }
    }

    fn rename_error(&self, c: &mut Conn, from: &str, to: &str, e: &ssh2::Error) -> TargetError {
        match sftp_code(e) {
            Some(NO_SUCH_FILE) => match self.lstat_in(c, from) {
                Ok(None) => TargetError::path(self.name(), from, "no such file or directory"),
                _ => TargetError::path(self.name(), to, "no such file or directory"),
            },
            Some(FAILURE | BAD_MESSAGE) => {
                let to_meta = self.lstat_in(c, to).ok().flatten();
                let from_meta = self.lstat_in(c, from).ok().flatten();
                match (from_meta, to_meta) {
                    (Some(f), Some(t)) if t.kind == Kind::Dir && f.kind != Kind::Dir => {
                        TargetError::path(self.name(), to, "is a directory")
                    }
                    (Some(_), Some(t)) if t.kind == Kind::Dir => {
                        TargetError::path(self.name(), to, "directory not empty")
                    }
                    _ => TargetError::path(self.name(), from, "failed"),
                }
            }
            _ => self.sftp_err(c, from, e),
        }
    }

    /// rename(2) semantics: posix-rename over SFTP; without that extension, SFTP v3
    /// rename (which will not replace) and `mv -fT` on the host when the destination
    /// exists.
    fn rename_in(&self, c: &mut Conn, from: &str, to: &str) -> TResult<()> {
        if !self.become_ {
            // Plain SFTP rename first: it never replaces an existing destination, and
            // needs no second channel. The posix-rename channel costs the server a
            // process of its own, so it is opened only when a file is really replaced
            // (a first run creates files; a no-change run renames nothing).
            let r = match c.sftp() {
                Ok(s) => s.rename(Path::new(from), Path::new(to), None),
                Err(e) => return Err(self.lost(c, &e)),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) if sftp_code(&e) == Some(FAILURE) => {
                    if self.lstat_in(c, from)?.is_none() {
                        return Err(TargetError::path(
                            self.name(),
                            from,
                            "no such file or directory",
                        ));
                    }
                    if self.lstat_in(c, to)?.is_none() {
                        return Err(self.sftp_err(c, from, &e));
                    }
                }
                Err(e) => return Err(self.rename_error(c, from, to, &e)),
            }
            // The destination exists: replace it atomically.
            match self.try_posix_rename(c, from, to) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => return Err(self.rename_error(c, from, to, &e)),
                None => {}
            }
        }
        let (a, b) = (safe_arg(from), safe_arg(to));
        self.script_ok(c, self.become_, from, "rn \"$1\" \"$2\"", &[&a, &b], &[])?;
        Ok(())
    }

    fn write_sftp(&self, c: &mut Conn, path: &str, data: &[u8], mode: u32) -> TResult<()> {
        let old = match Self::stat_before_change(c, path) {
            Some(meta) => meta,
            None => self.lstat_in(c, path)?,
        };
        if let Some(m) = &old {
            if m.kind == Kind::Dir {
                return Err(TargetError::path(self.name(), path, "is a directory"));
            }
        }
        let dir = super::parent(path);
        let tmp = super::join(dir, &format!(".tend-{}", unique_suffix()));
        // Created with the final mode where that is safe to ask for (no set-id bits):
        // the server's umask (or the directory's default ACL) may clear bits, so the
        // first file of a directory is checked with fstat, and once a mode is known to
        // come out whole there, later files within it need no chmod round trip.
        let mode = mode & 0o7777;
        let plain_mode = mode & 0o7000 == 0;
        let exact_here = c.exact_modes.get(dir).copied().unwrap_or(0);
        let needs_chmod = !plain_mode || mode & !exact_here != 0;
        let opened = match c.sftp() {
            Ok(s) => s.open_mode(
                Path::new(&tmp),
                OpenFlags::WRITE | OpenFlags::EXCLUSIVE,
                if plain_mode { mode as i32 } else { 0o600 },
                OpenType::File,
            ),
            Err(e) => return Err(self.lost(c, &e)),
        };
        let mut file = opened.map_err(|e| self.sftp_err(c, path, &e))?;
        // Ok(true): the mode came out whole without a chmod (learnt for `dir`).
        let result = (|| -> Result<bool, ssh2::Error> {
            file.write_all(data).map_err(|e| {
                // ssh2 wraps its own error in the io::Error: keep its code.
                e.get_ref()
                    .and_then(|inner| inner.downcast_ref::<ssh2::Error>())
                    .map(|inner| ssh2::Error::new(inner.code(), "write failed"))
                    .unwrap_or_else(|| ssh2::Error::new(ErrorCode::SFTP(FAILURE), "write failed"))
            })?;
            // Durable before it replaces anything; servers without fsync@openssh.com
            // cannot do better.
            let _ = file.fsync();
            if let Some(m) = old.as_ref().filter(|m| m.kind == Kind::File) {
                // Keep the owner of the replaced file (only root may); before the
                // chmod, because chown clears set-id bits.
                let _ = file.setstat(FileStat {
                    uid: Some(m.uid),
                    gid: Some(m.gid),
                    ..empty_stat()
                });
            }
            if !needs_chmod {
                return Ok(false);
            }
            if plain_mode {
                if let Ok(st) = file.stat() {
                    if st.perm.map(|p| p & 0o7777) == Some(mode) {
                        return Ok(true);
                    }
                }
            }
            file.setstat(FileStat {
                perm: Some(mode),
                ..empty_stat()
            })?;
            Ok(false)
        })();
        drop(file);
        let cleanup = |c: &mut Conn| {
            if let Some(s) = c.sftp.as_ref() {
                let _ = s.unlink(Path::new(&tmp));
            }
        };
        if let Ok(true) = result {
            *c.exact_modes.entry(dir.to_string()).or_default() |= mode;
        }
        if let Err(e) = result {
            let err = match sftp_code(&e) {
                Some(n) if n != FAILURE => {
                    TargetError::path(self.name(), path, sftp_status_text(n))
                }
                Some(_) => {
                    TargetError::path(self.name(), path, "write failed (disk full or quota?)")
                }
                None => self.lost(c, &e),
            };
            if c.broken.is_none() {
                cleanup(c);
            }
            return Err(err);
        }
        if let Err(e) = self.rename_in(c, &tmp, path) {
            if c.broken.is_none() {
                cleanup(c);
            }
            return Err(match e {
                TargetError::Path { message, .. } => TargetError::path(self.name(), path, message),
                other => other,
            });
        }
        Ok(())
    }

    /// `remove_file` and `remove_dir`: the SFTP request, or the tool through sudo.
    fn remove_in(
        &self,
        path: &str,
        op: &str,
        tool: &str,
        request: impl FnOnce(&Sftp, &Path) -> Result<(), ssh2::Error>,
    ) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            let p = safe_arg(path);
            let script = format!("{tool} -- \"$1\"");
            self.script_ok(&mut c, true, path, &script, &[&p], &[])?;
            return Ok(());
        }
        let r = match c.sftp() {
            Ok(s) => request(s, Path::new(path)),
            Err(e) => return Err(self.lost(&mut c, &e)),
        };
        r.map_err(|e| self.explain_failure(&mut c, path, &e, op))
    }
}

/// Said goodbye when the last view of the session (the login one or its sudo view)
/// is gone.
impl Drop for Conn {
    fn drop(&mut self) {
        self.link.session.set_timeout(2_000);
        for shell in self.shells.iter_mut().filter_map(Option::take) {
            if self.broken.is_none() {
                shell.close(&self.link.session, Duration::from_millis(500));
            }
        }
        self.sftp = None;
        self.posix = None;
        if self.broken.is_none() {
            let _ = self.link.session.disconnect(None, "tend: done", None);
        }
    }
}

impl Target for SshTarget {
    fn info(&self) -> &HostInfo {
        &self.info
    }

    /// `/proc/sys/kernel/ostype` (`linux`), read once when a recipe asks.
    fn os(&self) -> String {
        self.facts
            .os
            .get_or_init(|| {
                self.read(OSTYPE)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).trim().to_lowercase())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown".into())
            })
            .clone()
    }

    fn creator_ids(&self) -> (u32, u32) {
        if self.become_ {
            return (0, 0); // sudo -n: root and root's group
        }
        super::login_dir_owner(self)
    }

    /// The same session with every primitive through `sudo -n`.
    fn elevated(&self) -> TResult<Arc<dyn Target>> {
        Ok(Arc::new(SshTarget {
            info: self.info.clone(),
            facts: self.facts.clone(),
            connect_time: self.connect_time,
            become_: true,
            command_timeout: self.command_timeout,
            conn: self.conn.clone(),
            _keepalive: self._keepalive.clone(),
        }))
    }

    fn hash(&self, path: &str) -> TResult<String> {
        // On the host: a removed file is not transferred only to be hashed.
        let mut c = self.lock()?;
        let arg = safe_arg(path);
        let out = self.script_ok(
            &mut c,
            self.become_,
            path,
            "sha256sum -- \"$1\"",
            &[&arg],
            &[],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.split_whitespace().next() {
            Some(h) if h.len() == 64 => Ok(h.to_string()),
            _ => Err(TargetError::path(
                self.name(),
                path,
                "sha256sum gave no hash",
            )),
        }
    }

    fn resolve_dir(&self, dir: &str) -> TResult<String> {
        let mut c = self.lock()?;
        super::path::resolve_missing(dir, |p| {
            let r = match c.sftp() {
                Ok(s) => s.realpath(Path::new(p)),
                Err(e) => return Err(self.lost(&mut c, &e)),
            };
            match r {
                Ok(real) => Ok(Some(real.to_string_lossy().into_owned())),
                Err(e) if sftp_code(&e) == Some(NO_SUCH_FILE) => Ok(None),
                Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                    let arg = safe_arg(p);
                    let script = r#"if [ ! -e "$1" ]; then exit 0; fi
cd -P -- "$1" && pwd -P"#;
                    let out = self.script_ok(&mut c, true, p, script, &[&arg], &[])?;
                    let text = String::from_utf8_lossy(&out.stdout)
                        .trim_end_matches('\n')
                        .to_string();
                    Ok((!text.is_empty()).then_some(text))
                }
                Err(e) => Err(self.sftp_err(&mut c, p, &e)),
            }
        })
    }

    fn working_dir(&self) -> TResult<String> {
        self.home()
    }

    fn stat(&self, path: &str) -> TResult<Option<Meta>> {
        let mut c = self.lock()?;
        let meta = self.lstat_in(&mut c, path)?;
        c.last_stat = Some((c.mutations, path.to_string(), meta.clone()));
        Ok(meta)
    }

    fn read(&self, path: &str) -> TResult<Vec<u8>> {
        let mut c = self.lock()?;
        self.read_in(&mut c, path)
    }

    fn read_link(&self, path: &str) -> TResult<String> {
        let mut c = self.lock()?;
        let r = match c.sftp() {
            Ok(s) => s.readlink(Path::new(path)),
            Err(e) => return Err(self.lost(&mut c, &e)),
        };
        match r {
            Ok(p) => Ok(p.to_string_lossy().into_owned()),
            Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                let arg = safe_arg(path);
                let out = self.script_ok(&mut c, true, path, "readlink -- \"$1\"", &[&arg], &[])?;
                let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
                if s.ends_with('\n') {
                    s.pop();
                }
                Ok(s)
            }
            Err(e) => Err(self.explain_failure(&mut c, path, &e, "readlink")),
        }
    }

    fn list_dir(&self, path: &str) -> TResult<Vec<String>> {
        let mut c = self.lock()?;
        let r = match c.sftp() {
            Ok(s) => s.readdir(Path::new(path)),
            Err(e) => return Err(self.lost(&mut c, &e)),
        };
        let mut names: Vec<String> = match r {
            Ok(entries) => entries
                .iter()
                .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect(),
            Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                let arg = safe_arg(path);
                let out = self.script_ok(&mut c, true, path, LIST_SCRIPT, &[&arg], &[])?;
                out.stdout
                    .split(|b| *b == 0)
                    .filter(|n| !n.is_empty())
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect()
            }
            Err(e) if sftp_code(&e) == Some(NO_SUCH_FILE) => {
                // OpenSSH reports ENOTDIR as "no such file" too.
                return Err(match self.lstat_in(&mut c, path)? {
                    Some(m) if m.kind != Kind::Dir => {
                        TargetError::path(self.name(), path, "not a directory")
                    }
                    _ => TargetError::path(self.name(), path, "no such file or directory"),
                });
            }
            Err(e) => return Err(self.sftp_err(&mut c, path, &e)),
        };
        names.sort();
        Ok(names)
    }

    fn write(&self, path: &str, data: &[u8], mode: u32) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if !self.become_ {
            return self.write_sftp(&mut c, path, data, mode);
        }
        let (p, d) = (safe_arg(path), safe_arg(super::parent(path)));
        let m = format!("{:o}", mode & 0o7777);
        if let Some(meta) = self.lstat_in(&mut c, path)? {
            if meta.kind == Kind::Dir {
                return Err(TargetError::path(self.name(), path, "is a directory"));
            }
        }
        self.script_ok(&mut c, true, path, WRITE_SCRIPT, &[&p, &d, &m], data)?;
        Ok(())
    }

    fn copy_file(&self, from: &str, to: &str) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if !self.become_ {
            let meta = self.lstat_in(&mut c, from)?;
            let small = match &meta {
                Some(m) if m.kind == Kind::File => m.size <= REMOTE_COPY_THRESHOLD,
                Some(_) => false, // a symlink (or worse): let `cp` follow it and judge
                None => {
                    return Err(TargetError::path(
                        self.name(),
                        from,
                        "no such file or directory",
                    ))
                }
            };
            if small {
                let data = self.read_in(&mut c, from)?;
                let mode = meta.map(|m| m.mode).unwrap_or(0o644);
                return self.write_sftp(&mut c, to, &data, mode);
            }
        }
        let (a, b, d) = (safe_arg(from), safe_arg(to), safe_arg(super::parent(to)));
        self.script_ok(&mut c, self.become_, from, COPY_SCRIPT, &[&a, &b, &d], &[])?;
        Ok(())
    }

    fn mkdir(&self, path: &str, mode: u32) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            let (p, m) = (safe_arg(path), format!("{:o}", mode & 0o7777));
            self.script_ok(
                &mut c,
                true,
                path,
                "mkdir -m \"$2\" -- \"$1\"",
                &[&p, &m],
                &[],
            )?;
            return Ok(());
        }
        let r = match c.sftp() {
            Ok(s) => s.mkdir(Path::new(path), (mode & 0o7777) as i32),
            Err(e) => return Err(self.lost(&mut c, &e)),
        };
        if let Err(e) = r {
            return Err(self.explain_failure(&mut c, path, &e, "mkdir"));
        }
        // The server applied its umask; the recipe asked for this exact mode.
        let r = c.sftp().and_then(|s| {
            s.setstat(
                Path::new(path),
                FileStat {
                    perm: Some(mode & 0o7777),
                    ..empty_stat()
                },
            )
        });
        r.map_err(|e| self.sftp_err(&mut c, path, &e))
    }

    fn remove_file(&self, path: &str) -> TResult<()> {
        self.remove_in(path, "unlink", "rm", |s, p| s.unlink(p))
    }

    fn remove_dir(&self, path: &str) -> TResult<()> {
        self.remove_in(path, "rmdir", "rmdir", |s, p| s.rmdir(p))
    }

    fn rename(&self, from: &str, to: &str) -> TResult<()> {
        let mut c = self.lock_mut()?;
        self.rename_in(&mut c, from, to)
    }

    fn symlink(&self, link_target: &str, path: &str) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            let p = safe_arg(path);
            let script = r#"if [ -e "$2" ] || [ -L "$2" ]; then echo "ln: $2: File exists" >&2; exit 1; fi
ln -s -- "$1" "$2""#;
            self.script_ok(&mut c, true, path, script, &[link_target, &p], &[])?;
            return Ok(());
        }
        // OpenSSH's sftp-server takes SSH_FXP_SYMLINK arguments in the reverse order
        // of the draft (a long-standing, documented quirk), and libssh2 passes them
        // through as given: (link target, link path) here makes `path -> link_target`.
        let r = match c.sftp() {
            Ok(s) => s.symlink(Path::new(link_target), Path::new(path)),
            Err(e) => return Err(self.lost(&mut c, &e)),
        };
        r.map_err(|e| self.explain_failure(&mut c, path, &e, "symlink"))
    }

    fn chmod(&self, path: &str, mode: u32) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            let (p, m) = (safe_arg(path), format!("{:o}", mode & 0o7777));
            self.script_ok(&mut c, true, path, "chmod \"$2\" -- \"$1\"", &[&p, &m], &[])?;
            return Ok(());
        }
        let r = c.sftp().and_then(|s| {
            s.setstat(
                Path::new(path),
                FileStat {
                    perm: Some(mode & 0o7777),
                    ..empty_stat()
                },
            )
        });
        r.map_err(|e| self.sftp_err(&mut c, path, &e))
    }

    fn chown(&self, path: &str, uid: u32, gid: u32) -> TResult<()> {
        let mut c = self.lock_mut()?;
        let is_link = !self.become_
            && matches!(self.lstat_in(&mut c, path)?, Some(m) if m.kind == Kind::Symlink);
        if self.become_ || is_link {
            // SFTP setstat follows symlinks; `chown -h` changes the link itself.
            let (p, o) = (safe_arg(path), format!("{uid}:{gid}"));
            self.script_ok(
                &mut c,
                self.become_,
                path,
                "chown -h \"$2\" -- \"$1\"",
                &[&p, &o],
                &[],
            )?;
            return Ok(());
        }
        let r = c.sftp().and_then(|s| {
            s.setstat(
                Path::new(path),
                FileStat {
                    uid: Some(uid),
                    gid: Some(gid),
                    ..empty_stat()
                },
            )
        });
        r.map_err(|e| self.sftp_err(&mut c, path, &e))
    }

    fn set_mtime(&self, path: &str, mtime: i64) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            let stamp = chrono::DateTime::from_timestamp(mtime.max(0), 0)
                .map(|t| t.format("%Y%m%d%H%M.%S").to_string())
                .unwrap_or_else(|| "197001010000.00".into());
            let p = safe_arg(path);
            let script = r#"if [ ! -e "$1" ]; then echo "touch: $1: No such file or directory" >&2; exit 1; fi
TZ=UTC0 touch -c -m -t "$2" -- "$1""#;
            self.script_ok(&mut c, true, path, script, &[&p, &stamp], &[])?;
            return Ok(());
        }
        // SFTP sets access and modification time together: keep the access time.
        let r = c.sftp().and_then(|s| s.stat(Path::new(path)));
        let st = r.map_err(|e| self.sftp_err(&mut c, path, &e))?;
        let r = c.sftp().and_then(|s| {
            s.setstat(
                Path::new(path),
                FileStat {
                    atime: Some(st.atime.unwrap_or(mtime.max(0) as u64)),
                    mtime: Some(mtime.max(0) as u64),
                    ..empty_stat()
                },
            )
        });
        r.map_err(|e| self.sftp_err(&mut c, path, &e))
    }

    fn exec(&self, req: &ExecRequest) -> TResult<ExecOutput> {
        tracing::debug!(host = %self.name(), command = %req.command.lines().next().unwrap_or(""), "ssh exec");
        let become_ = self.become_ || req.become_;
        let cmd = Cmd {
            script: &req.command,
            env: &req.env,
            args: &[],
            stdin: req.stdin.as_deref().unwrap_or_default(),
            become_,
            timeout: req.timeout.or(self.command_timeout),
            cancel: req.cancel.as_ref(),
        };
        // Asked before taking the connection: learning it may read /etc/passwd.
        let own_channel = self.lock()?.own_channel(&cmd);
        let direct = own_channel && !become_ && cmd.timeout.is_none() && self.login_shell_is_sh();
        let mut c = self.lock_mut()?;
        let out = self.run_in(&mut c, &cmd, direct)?;
        if become_ {
            if let Some(e) = self.sudo_refusal(&out) {
                return Err(e);
            }
        }
        Ok(ExecOutput {
            code: out.shell_code(),
            timed_out: out.timed_out,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
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
    }

    #[test]
    fn messages() {
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(
            clean_stderr(b"mv: cannot stat 'x': No such file or directory\n", Some(1)),
            "no such file or directory"
        );
        assert_eq!(clean_stderr(b"", Some(3)), "failed (exit status 3)");
        assert_eq!(
            clean_stderr(b"rmdir: failed to remove 'd': Directory not empty", Some(1)),
            "directory not empty"
        );
        assert_eq!(safe_arg("-rf"), "./-rf");
        assert_eq!(safe_arg("/etc/x"), "/etc/x");
        assert_eq!(kind_of(0o100644), Kind::File);
        assert_eq!(kind_of(0o120777), Kind::Symlink);
    }
}
