//! The SFTP half of an [`SshTarget`]'s file system: what the login user does without
//! starting a process on the host.
//!
//! * One SFTP channel, opened at the first file operation. Facts (stat, read, list)
//!   never start a process. Under become they are asked over SFTP first, which gives
//!   the same answer whenever the login user may look, and only a "permission denied"
//!   is asked again as root through the session's [`ShellFs`](crate::transport::posix::ShellFs).
//! * `write` uploads to a temporary file in the same directory, fsyncs it
//!   (`fsync@openssh.com`), sets owner and mode, and renames it over the target with
//!   `posix-rename@openssh.com` (rename(2): atomic, replaces). SFTP v3 `rename`
//!   cannot replace a file and the `ssh2` crate does not bind the extension, so
//!   [`posix_rename`] calls libssh2 on a second SFTP channel, opened at the first
//!   rename that replaces. A server without the extension gets SFTP v3 rename for new
//!   files and one `mv -fT` on the host to replace existing ones.
//! * `copy_file` of a file over [`REMOTE_COPY_THRESHOLD`] runs `cp` on the host
//!   instead of pulling the bytes over the network and pushing them back: a backup of
//!   a 2 GiB log costs one process, not 4 GiB of traffic. Smaller files go through
//!   SFTP, which costs a few round trips and no process start.

use std::io::{Read, Write};
use std::path::Path;

use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType, Sftp};

use super::conn::Conn;
use super::session::unique_suffix;
use super::session::{is_transport, IO_TIMEOUT};
use super::{posix_rename, SshTarget};
use crate::transport::posix::kind_of;
use crate::transport::{Kind, Meta, TResult, TargetError};

/// Files up to this size are copied through SFTP, bigger ones by `cp` on the host.
pub(super) const REMOTE_COPY_THRESHOLD: u64 = 1024 * 1024;

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

impl SshTarget {
    pub(super) fn sftp_err(&self, c: &mut Conn, path: &str, e: &ssh2::Error) -> TargetError {
        match sftp_code(e) {
            Some(n) => TargetError::path(self.name(), path, sftp_status_text(n)),
            None => self.lost(c, e),
        }
    }

    pub(super) fn lstat_in(&self, c: &mut Conn, path: &str) -> TResult<Option<Meta>> {
        let r = match c.sftp() {
            Ok(s) => s.lstat(Path::new(path)),
            Err(e) => return Err(self.lost(c, &e)),
        };
        match r {
            Ok(st) => Ok(Some(meta_of(&st))),
            Err(e) if sftp_code(&e) == Some(NO_SUCH_FILE) => Ok(None),
            Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                self.shell(c, true).stat(path)
            }
            Err(e) => Err(self.sftp_err(c, path, &e)),
        }
    }

    /// After an SFTP v3 "failure" (it has no finer codes), say what was wrong.
    pub(super) fn explain_failure(
        &self,
        c: &mut Conn,
        path: &str,
        e: &ssh2::Error,
        op: &str,
    ) -> TargetError {
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

    pub(super) fn read_in(&self, c: &mut Conn, path: &str) -> TResult<Vec<u8>> {
        let opened = match c.sftp() {
            Ok(s) => s.open(Path::new(path)),
            Err(e) => return Err(self.lost(c, &e)),
        };
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                drop(e);
                return self.shell(c, true).read(path);
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

    /// rename(2) semantics as the login user: posix-rename over SFTP; without that
    /// extension, SFTP v3 rename (which will not replace) and `mv -fT` on the host
    /// when the destination exists.
    pub(super) fn rename_in(&self, c: &mut Conn, from: &str, to: &str) -> TResult<()> {
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
        self.shell(c, false).rename(from, to)
    }

    pub(super) fn write_sftp(
        &self,
        c: &mut Conn,
        path: &str,
        data: &[u8],
        mode: u32,
    ) -> TResult<()> {
        let old = match Self::stat_before_change(c, path) {
            Some(meta) => meta,
            None => self.lstat_in(c, path)?,
        };
        if let Some(m) = &old {
            if m.kind == Kind::Dir {
                return Err(TargetError::path(self.name(), path, "is a directory"));
            }
        }
        let dir = crate::transport::parent(path);
        let tmp = crate::transport::join(dir, &format!(".tend-{}", unique_suffix()));
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

    /// `remove_file` and `remove_dir` over SFTP.
    pub(super) fn remove_in(
        &self,
        c: &mut Conn,
        path: &str,
        op: &str,
        request: impl FnOnce(&Sftp, &Path) -> Result<(), ssh2::Error>,
    ) -> TResult<()> {
        let r = match c.sftp() {
            Ok(s) => request(s, Path::new(path)),
            Err(e) => return Err(self.lost(c, &e)),
        };
        r.map_err(|e| self.explain_failure(c, path, &e, op))
    }

    /// [`Target::resolve_dir`](crate::transport::Target::resolve_dir): `realpath` over
    /// SFTP, one request per component that exists.
    pub(super) fn resolve_dir_in(&self, c: &mut Conn, dir: &str) -> TResult<String> {
        crate::transport::path::resolve_missing(dir, |p| {
            let r = match c.sftp() {
                Ok(s) => s.realpath(Path::new(p)),
                Err(e) => return Err(self.lost(c, &e)),
            };
            match r {
                Ok(real) => Ok(Some(real.to_string_lossy().into_owned())),
                Err(e) if sftp_code(&e) == Some(NO_SUCH_FILE) => Ok(None),
                Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                    self.shell(c, true).real_dir(p)
                }
                Err(e) => Err(self.sftp_err(c, p, &e)),
            }
        })
    }

    pub(super) fn read_link_in(&self, c: &mut Conn, path: &str) -> TResult<String> {
        let r = match c.sftp() {
            Ok(s) => s.readlink(Path::new(path)),
            Err(e) => return Err(self.lost(c, &e)),
        };
        match r {
            Ok(p) => Ok(p.to_string_lossy().into_owned()),
            Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                self.shell(c, true).read_link(path)
            }
            Err(e) => Err(self.explain_failure(c, path, &e, "readlink")),
        }
    }

    pub(super) fn list_dir_in(&self, c: &mut Conn, path: &str) -> TResult<Vec<String>> {
        let r = match c.sftp() {
            Ok(s) => s.readdir(Path::new(path)),
            Err(e) => return Err(self.lost(c, &e)),
        };
        let mut names: Vec<String> = match r {
            Ok(entries) => entries
                .iter()
                .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect(),
            Err(e) if self.become_ && sftp_code(&e) == Some(PERMISSION_DENIED) => {
                return self.shell(c, true).list_dir(path);
            }
            Err(e) if sftp_code(&e) == Some(NO_SUCH_FILE) => {
                // OpenSSH reports ENOTDIR as "no such file" too.
                return Err(match self.lstat_in(c, path)? {
                    Some(m) if m.kind != Kind::Dir => {
                        TargetError::path(self.name(), path, "not a directory")
                    }
                    _ => TargetError::path(self.name(), path, "no such file or directory"),
                });
            }
            Err(e) => return Err(self.sftp_err(c, path, &e)),
        };
        names.sort();
        Ok(names)
    }

    /// `copy_file` of a regular file up to [`REMOTE_COPY_THRESHOLD`]: through SFTP.
    /// `false`: not such a file, left to `cp` on the host.
    pub(super) fn copy_small(&self, c: &mut Conn, from: &str, to: &str) -> TResult<bool> {
        let meta = self.lstat_in(c, from)?;
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
        if !small {
            return Ok(false);
        }
        let data = self.read_in(c, from)?;
        let mode = meta.map(|m| m.mode).unwrap_or(0o644);
        self.write_sftp(c, to, &data, mode)?;
        Ok(true)
    }

    pub(super) fn mkdir_in(&self, c: &mut Conn, path: &str, mode: u32) -> TResult<()> {
        let r = match c.sftp() {
            Ok(s) => s.mkdir(Path::new(path), (mode & 0o7777) as i32),
            Err(e) => return Err(self.lost(c, &e)),
        };
        if let Err(e) = r {
            return Err(self.explain_failure(c, path, &e, "mkdir"));
        }
        // The server applied its umask; the recipe asked for this exact mode.
        self.chmod_in(c, path, mode)
    }

    pub(super) fn symlink_in(&self, c: &mut Conn, link_target: &str, path: &str) -> TResult<()> {
        // OpenSSH's sftp-server takes SSH_FXP_SYMLINK arguments in the reverse order
        // of the draft (a long-standing, documented quirk), and libssh2 passes them
        // through as given: (link target, link path) here makes `path -> link_target`.
        let r = match c.sftp() {
            Ok(s) => s.symlink(Path::new(link_target), Path::new(path)),
            Err(e) => return Err(self.lost(c, &e)),
        };
        r.map_err(|e| self.explain_failure(c, path, &e, "symlink"))
    }

    pub(super) fn chmod_in(&self, c: &mut Conn, path: &str, mode: u32) -> TResult<()> {
        let r = c.sftp().and_then(|s| {
            s.setstat(
                Path::new(path),
                FileStat {
                    perm: Some(mode & 0o7777),
                    ..empty_stat()
                },
            )
        });
        r.map_err(|e| self.sftp_err(c, path, &e))
    }

    /// `chown` of what is not a symlink (SFTP setstat follows symlinks).
    pub(super) fn chown_in(&self, c: &mut Conn, path: &str, uid: u32, gid: u32) -> TResult<()> {
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
        r.map_err(|e| self.sftp_err(c, path, &e))
    }

    pub(super) fn set_mtime_in(&self, c: &mut Conn, path: &str, mtime: i64) -> TResult<()> {
        // SFTP sets access and modification time together: keep the access time.
        let r = c.sftp().and_then(|s| s.stat(Path::new(path)));
        let st = r.map_err(|e| self.sftp_err(c, path, &e))?;
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
        r.map_err(|e| self.sftp_err(c, path, &e))
    }
}
