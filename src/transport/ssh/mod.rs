//! A host reached over SSH (libssh2 through the `ssh2` crate). Nothing is installed on
//! the host: it needs `sshd` with the SFTP subsystem and a POSIX shell.
//!
//! [`SshTarget`] is one connection seen two ways: the login user's file system over
//! SFTP ([`sftp`]), and a [`ShellFs`](crate::transport::posix::ShellFs) whose scripts run
//! through the session's commands ([`conn`]).
//!
//! * [`session`]: options, connecting, host key, authentication; [`conn`]: the one
//!   locked connection, its shared shells and keepalive.
//! * **become** (`sudo -n`) is the ShellFs through `sudo -n`: every change (write,
//!   mkdir, chmod, rename…) runs as root, so new files belong to root as they would
//!   for a root login. Reads (stat, read, list, readlink) still go over SFTP as the
//!   login user first, which gives the same answer whenever the user may look, and
//!   are asked through sudo only on "permission denied". The scripts use GNU/busybox
//!   `stat -c` and `mktemp`: Linux hosts.
//! * Without become, the few primitives SFTP cannot do well also run as commands of
//!   the login user: `cp` for a big copy, `chown -h` of a symlink, `mv -fT` where the
//!   server lacks posix-rename, `sha256sum` so a file is not transferred to be hashed.

mod auth;
mod conn;
pub(crate) mod exec;
mod hostkey;
mod posix_rename;
mod session;
mod sftp;
mod shell;
mod tunnel;

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::posix::sudo_refusal;
use super::{ExecOutput, ExecRequest, HostInfo, Meta, TResult, Target, TargetError};
use conn::{spawn_keepalive, Cmd, Conn};
pub use session::{default_known_hosts, HostKeyPolicy, SshOptions, DEFAULT_CONNECT_TIMEOUT};
pub(crate) use session::{establish, tilde, unique_suffix, Link};

const OSTYPE: &str = "/proc/sys/kernel/ostype";

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

impl SshTarget {
    /// Connect, verify the host key and log in. SFTP starts at the first file
    /// operation: `tend exec` and `tend ping` never need it.
    pub fn connect(opts: SshOptions) -> Result<SshTarget, TargetError> {
        let started = Instant::now();
        let link = establish(&opts)?;
        let conn = Conn::new(link);
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

    pub(super) fn name(&self) -> &str {
        &self.info.name
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
        self.shell(&mut c, self.become_).hash(path)
    }

    fn resolve_dir(&self, dir: &str) -> TResult<String> {
        let mut c = self.lock()?;
        self.resolve_dir_in(&mut c, dir)
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
        self.read_link_in(&mut c, path)
    }

    fn list_dir(&self, path: &str) -> TResult<Vec<String>> {
        let mut c = self.lock()?;
        self.list_dir_in(&mut c, path)
    }

    // The changes: through sudo under become, else over SFTP.

    fn write(&self, path: &str, data: &[u8], mode: u32) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            return self.shell(&mut c, true).write(path, data, mode);
        }
        self.write_sftp(&mut c, path, data, mode)
    }

    fn copy_file(&self, from: &str, to: &str) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if !self.become_ && self.copy_small(&mut c, from, to)? {
            return Ok(());
        }
        self.shell(&mut c, self.become_).copy_file(from, to)
    }

    fn mkdir(&self, path: &str, mode: u32) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            return self.shell(&mut c, true).mkdir(path, mode);
        }
        self.mkdir_in(&mut c, path, mode)
    }

    fn remove_file(&self, path: &str) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            return self.shell(&mut c, true).remove_file(path);
        }
        self.remove_in(&mut c, path, "unlink", |s, p| s.unlink(p))
    }

    fn remove_dir(&self, path: &str) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            return self.shell(&mut c, true).remove_dir(path);
        }
        self.remove_in(&mut c, path, "rmdir", |s, p| s.rmdir(p))
    }

    fn rename(&self, from: &str, to: &str) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            return self.shell(&mut c, true).rename(from, to);
        }
        self.rename_in(&mut c, from, to)
    }

    fn symlink(&self, link_target: &str, path: &str) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            return self.shell(&mut c, true).symlink(link_target, path);
        }
        self.symlink_in(&mut c, link_target, path)
    }

    fn chmod(&self, path: &str, mode: u32) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            return self.shell(&mut c, true).chmod(path, mode);
        }
        self.chmod_in(&mut c, path, mode)
    }

    fn chown(&self, path: &str, uid: u32, gid: u32) -> TResult<()> {
        let mut c = self.lock_mut()?;
        let is_link = !self.become_
            && matches!(self.lstat_in(&mut c, path)?, Some(m) if m.kind == super::Kind::Symlink);
        if self.become_ || is_link {
            // SFTP setstat follows symlinks; `chown -h` changes the link itself.
            return self.shell(&mut c, self.become_).chown(path, uid, gid);
        }
        self.chown_in(&mut c, path, uid, gid)
    }

    fn set_mtime(&self, path: &str, mtime: i64) -> TResult<()> {
        let mut c = self.lock_mut()?;
        if self.become_ {
            return self.shell(&mut c, true).set_mtime(path, mtime);
        }
        self.set_mtime_in(&mut c, path, mtime)
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
            let user = &self.info.user;
            if let Some(e) = sudo_refusal(self.name(), user, out.code, &out.stdout, &out.stderr) {
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
