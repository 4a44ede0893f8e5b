//! The machine tend runs on.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{
    describe_io, ExecOutput, ExecRequest, HostInfo, Kind, Meta, TResult, Target, TargetError,
};

#[derive(Clone)]
pub struct Local {
    info: HostInfo,
}

impl Local {
    pub fn new() -> Self {
        let user = user_name();
        Local {
            info: HostInfo {
                name: "local".into(),
                address: "localhost".into(),
                user,
                vars: Default::default(),
            },
        }
    }

    /// Inventory variables of the local host, shown to recipes as `host().vars`.
    pub fn set_vars(&mut self, vars: std::collections::BTreeMap<String, serde_json::Value>) {
        self.info.vars = vars;
    }

    fn err(&self, path: &str, e: std::io::Error) -> TargetError {
        TargetError::path(&self.info.name, path, describe_io(&e))
    }
}

impl Default for Local {
    fn default() -> Self {
        Self::new()
    }
}

/// Effective uid and gid of this process (/proc/self is owned by them).
pub fn process_ids() -> (u32, u32) {
    fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((u32::MAX, u32::MAX))
}

/// Whether tend runs as root.
pub fn running_as_root() -> bool {
    process_ids().0 == 0
}

/// Who tend runs as: `$USER`, `$LOGNAME`, else the account of this process's uid.
pub fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| user_of_this_process())
}

/// The account name of our uid from /etc/passwd (cron and containers often have no
/// $USER; the audit log still needs to say who).
pub(crate) fn user_of_this_process() -> String {
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

pub fn meta_of(m: &fs::Metadata) -> Meta {
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Meta {
        kind,
        size: m.len(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: m.mtime(),
    }
}

fn sync_dir(dir: &str) {
    // Makes a rename durable. Failure here is not worth failing the step over.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Target for Local {
    fn info(&self) -> &HostInfo {
        &self.info
    }

    fn stat(&self, path: &str) -> TResult<Option<Meta>> {
        match fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(meta_of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(20) => Ok(None), // ENOTDIR: a parent is a file
            Err(e) => Err(self.err(path, e)),
        }
    }

    fn read(&self, path: &str) -> TResult<Vec<u8>> {
        fs::read(path).map_err(|e| self.err(path, e))
    }

    fn read_link(&self, path: &str) -> TResult<String> {
        fs::read_link(path)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| self.err(path, e))
    }

    fn list_dir(&self, path: &str) -> TResult<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| self.err(path, e))? {
            let entry = entry.map_err(|e| self.err(path, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn write(&self, path: &str, data: &[u8], mode: u32) -> TResult<()> {
        let dir = super::parent(path);
        let old = fs::symlink_metadata(path).ok();
        let mut tmp = tempfile::Builder::new()
            .prefix(".tend-")
            .tempfile_in(dir)
            .map_err(|e| self.err(path, e))?;
        tmp.write_all(data).map_err(|e| self.err(path, e))?;
        let file = tmp.as_file();
        if let Some(old) = old.filter(|m| m.is_file()) {
            // Keep the owner of the file being replaced; only root may, so ignore EPERM.
            // Before the mode: chown clears the setuid and setgid bits.
            let _ = std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()));
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| self.err(path, e))?;
        file.sync_all().map_err(|e| self.err(path, e))?;
        tmp.persist(path).map_err(|e| self.err(path, e.error))?;
        sync_dir(dir);
        Ok(())
    }

    fn copy_file(&self, from: &str, to: &str) -> TResult<()> {
        let mut src = fs::File::open(from).map_err(|e| self.err(from, e))?;
        let mode = src.metadata().map_err(|e| self.err(from, e))?.mode() & 0o7777;
        let dir = super::parent(to);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tend-")
            .tempfile_in(dir)
            .map_err(|e| self.err(to, e))?;
        std::io::copy(&mut src, tmp.as_file_mut()).map_err(|e| self.err(to, e))?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| self.err(to, e))?;
        tmp.as_file().sync_all().map_err(|e| self.err(to, e))?;
        tmp.persist(to).map_err(|e| self.err(to, e.error))?;
        sync_dir(dir);
        Ok(())
    }

    fn mkdir(&self, path: &str, mode: u32) -> TResult<()> {
        fs::create_dir(path).map_err(|e| self.err(path, e))?;
        // create_dir applies the umask; the recipe asked for this exact mode.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| self.err(path, e))?;
        sync_dir(super::parent(path));
        Ok(())
    }

    fn remove_file(&self, path: &str) -> TResult<()> {
        fs::remove_file(path).map_err(|e| self.err(path, e))?;
        sync_dir(super::parent(path));
        Ok(())
    }

    fn remove_dir(&self, path: &str) -> TResult<()> {
        fs::remove_dir(path).map_err(|e| self.err(path, e))?;
        sync_dir(super::parent(path));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> TResult<()> {
        fs::rename(from, to).map_err(|e| self.err(from, e))?;
        sync_dir(super::parent(to));
        sync_dir(super::parent(from));
        Ok(())
    }

    fn symlink(&self, link_target: &str, path: &str) -> TResult<()> {
        std::os::unix::fs::symlink(link_target, path).map_err(|e| self.err(path, e))?;
        sync_dir(super::parent(path));
        Ok(())
    }

    fn chmod(&self, path: &str, mode: u32) -> TResult<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| self.err(path, e))
    }

    fn chown(&self, path: &str, uid: u32, gid: u32) -> TResult<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| self.err(path, e))
    }

    fn set_mtime(&self, path: &str, mtime: i64) -> TResult<()> {
        let file = fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| fs::File::open(path))
            .map_err(|e| self.err(path, e))?;
        let t = UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64);
        file.set_modified(t).map_err(|e| self.err(path, e))
    }

    fn hash(&self, path: &str) -> TResult<String> {
        use sha2::Digest;
        // Streamed: a removed log of several GB must not be read into memory.
        let mut f = fs::File::open(path).map_err(|e| self.err(path, e))?;
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(|e| self.err(path, e))?;
        Ok(hex::encode(h.finalize()))
    }

    fn resolve_dir(&self, dir: &str) -> TResult<String> {
        super::path::resolve_missing(dir, |p| match fs::canonicalize(p) {
            Ok(real) => Ok(Some(real.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(e) => Err(self.err(p, e)),
        })
    }

    fn working_dir(&self) -> TResult<String> {
        std::env::current_dir()
            .map(|d| d.to_string_lossy().into_owned())
            .map_err(|e| self.err(".", e))
    }

    fn creator_ids(&self) -> (u32, u32) {
        process_ids()
    }

    fn os(&self) -> String {
        std::env::consts::OS.into()
    }

    fn elevated(&self) -> TResult<std::sync::Arc<dyn Target>> {
        // A root tend makes its system calls as root already; another goes through
        // `sudo -n` for every primitive.
        if running_as_root() {
            return Ok(std::sync::Arc::new(self.clone()));
        }
        Ok(std::sync::Arc::new(super::local_root::LocalRoot::new(
            self.clone(),
        )))
    }

    fn exec(&self, req: &ExecRequest) -> TResult<ExecOutput> {
        let host = &self.info.name;
        // Through sudo the environment is reset, so (as over SSH) variables travel on
        // stdin ahead of the command's own input, never in argv.
        // Already root (tend under sudo, or cron as root): no sudo needed, or wanted.
        let (command, stdin, env) = if req.become_ && !running_as_root() {
            let (line, mut prefix) =
                super::ssh::exec::command_line(&req.command, &req.env, true, &[], None)
                    .map_err(|m| TargetError::host(host, m))?;
            if let Some(data) = &req.stdin {
                prefix.extend_from_slice(data);
            }
            (line, Some(prefix), Vec::new())
        } else {
            (req.command.clone(), req.stdin.clone(), req.env.clone())
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&command)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group, so a timeout kills the whole pipeline, not just sh.
            .process_group(0);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| TargetError::host(host, format!("cannot start /bin/sh: {e}")))?;
        let mut pipe_in = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let (Some(mut p), Some(data)) = (pipe_in.take(), stdin) {
                let _ = p.write_all(&data);
            }
        });
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        let deadline = req.timeout.and_then(|t| Instant::now().checked_add(t));
        let mut timed_out = false;
        let wait_err =
            |e: std::io::Error| TargetError::host(host, format!("waiting for command: {e}"));
        let pid = child.id();
        // Waited for on a thread of its own, so that its end is seen at once while
        // this one watches the deadline and the run's cancellation.
        let (done, ended) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });
        let status = loop {
            let mut tick = Duration::from_millis(50);
            if let Some(d) = deadline.filter(|_| !timed_out) {
                tick = tick.min(d.saturating_duration_since(Instant::now()));
            }
            match ended.recv_timeout(tick) {
                Ok(status) => break status.map_err(wait_err)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(wait_err(std::io::Error::other("the waiting thread died")))
                }
            }
            let cancelled = req.cancel.as_ref().is_some_and(|c| c.is_cancelled());
            if !timed_out && (cancelled || deadline.is_some_and(|d| Instant::now() >= d)) {
                timed_out = true;
                kill_group(pid);
            }
        };
        let _ = waiter.join();
        let _ = writer.join();
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(ExecOutput {
            code,
            stdout,
            stderr,
            timed_out,
        })
    }
}

/// Kill the process group a timed-out or cancelled command runs in: the system call
/// itself, not a `kill` program looked up on a PATH that the command's caller chose
/// (without one there, the command would have run on past its timeout).
fn kill_group(pid: u32) {
    // 0 or 1 would signal our own group, or every process we may signal.
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals that process group; it reads no
    // memory of ours. The group is the command's own (it was started in a new group).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Seconds since the epoch, for mtimes and run ids.
pub fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
