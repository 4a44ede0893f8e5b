//! The local machine as root, for `become` when tend itself is not root: file
//! primitives are [`ShellFs`] scripts run through `sudo -n /bin/sh`, commands go
//! through sudo as `sh(…, #{become: true})` does. What [`Local::elevated`] gives a
//! non-root tend; a root tend needs no sudo and uses [`Local`] itself.

use std::sync::Arc;

use super::local::Local;
use super::posix::{Exec, ScriptOutput, ShellFs};
use super::ssh::exec::command_line;
use super::{ExecOutput, ExecRequest, HostInfo, Meta, TResult, Target, TargetError};

/// Scripts run on this machine through `sudo -n`, as the same `sh -c` command line
/// an SSH host gets, so the arguments never pass through a shell unquoted.
#[derive(Clone)]
struct Sudo {
    local: Local,
}

impl Exec for Sudo {
    fn host(&self) -> &str {
        &self.local.info().name
    }

    fn sudo_user(&self) -> Option<&str> {
        Some(&self.local.info().user)
    }

    fn run(&self, script: &str, args: &[&str], stdin: &[u8]) -> TResult<ScriptOutput> {
        let (line, mut input) = command_line(script, &[], true, args, None)
            .map_err(|m| TargetError::host(self.host(), m))?;
        input.extend_from_slice(stdin);
        let out = self.local.exec(&ExecRequest {
            stdin: Some(input),
            ..ExecRequest::new(line)
        })?;
        Ok(ScriptOutput {
            code: Some(out.code),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// [`Local`] with every primitive as root through `sudo -n`.
#[derive(Clone)]
pub struct LocalRoot {
    local: Local,
    fs: Arc<ShellFs<Sudo>>,
}

impl LocalRoot {
    pub fn new(local: Local) -> Self {
        let fs = Arc::new(ShellFs::new(Sudo {
            local: local.clone(),
        }));
        LocalRoot { local, fs }
    }
}

impl Target for LocalRoot {
    fn info(&self) -> &HostInfo {
        self.local.info()
    }

    fn os(&self) -> String {
        self.local.os()
    }

    fn stat(&self, path: &str) -> TResult<Option<Meta>> {
        self.fs.stat(path)
    }

    fn read(&self, path: &str) -> TResult<Vec<u8>> {
        self.fs.read(path)
    }

    fn read_link(&self, path: &str) -> TResult<String> {
        self.fs.read_link(path)
    }

    fn list_dir(&self, path: &str) -> TResult<Vec<String>> {
        self.fs.list_dir(path)
    }

    fn write(&self, path: &str, data: &[u8], mode: u32) -> TResult<()> {
        self.fs.write(path, data, mode)
    }

    fn copy_file(&self, from: &str, to: &str) -> TResult<()> {
        self.fs.copy_file(from, to)
    }

    fn mkdir(&self, path: &str, mode: u32) -> TResult<()> {
        self.fs.mkdir(path, mode)
    }

    fn remove_file(&self, path: &str) -> TResult<()> {
        self.fs.remove_file(path)
    }

    fn remove_dir(&self, path: &str) -> TResult<()> {
        self.fs.remove_dir(path)
    }

    fn rename(&self, from: &str, to: &str) -> TResult<()> {
        self.fs.rename(from, to)
    }

    fn symlink(&self, link_target: &str, path: &str) -> TResult<()> {
        self.fs.symlink(link_target, path)
    }

    fn chmod(&self, path: &str, mode: u32) -> TResult<()> {
        self.fs.chmod(path, mode)
    }

    fn chown(&self, path: &str, uid: u32, gid: u32) -> TResult<()> {
        self.fs.chown(path, uid, gid)
    }

    fn set_mtime(&self, path: &str, mtime: i64) -> TResult<()> {
        self.fs.set_mtime(path, mtime)
    }

    fn exec(&self, req: &ExecRequest) -> TResult<ExecOutput> {
        let mut req = req.clone();
        req.become_ = true;
        self.local.exec(&req)
    }

    fn elevated(&self) -> TResult<Arc<dyn Target>> {
        Ok(Arc::new(self.clone()))
    }

    fn hash(&self, path: &str) -> TResult<String> {
        self.fs.hash(path)
    }

    fn resolve_dir(&self, dir: &str) -> TResult<String> {
        self.fs.resolve_dir(dir)
    }

    fn working_dir(&self) -> TResult<String> {
        self.local.working_dir()
    }

    fn creator_ids(&self) -> (u32, u32) {
        (0, 0) // sudo -n: root and root's group
    }
}
