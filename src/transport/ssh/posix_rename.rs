//! `posix-rename@openssh.com`: rename(2) over SFTP, replacing the destination
//! atomically.
//!
//! Plain SFTP v3 `rename` refuses to replace an existing file (OpenSSH implements it
//! with link + unlink), which is exactly what an atomic `write` needs to do. libssh2
//! 1.11 implements the OpenSSH extension, but the `ssh2` crate neither binds it nor
//! exposes its SFTP handle, so this module opens a second SFTP channel through
//! `libssh2-sys` and calls `libssh2_sftp_posix_rename_ex` on it. Without it, every
//! replaced file would cost a process on the host (`mv`): ~15 ms with a plain
//! `/bin/sh` login shell, and ~400 ms where the login shell reads a heavy `~/.bashrc`.
//!
//! Safety rests on two rules: the raw handle is used only while holding the `ssh2`
//! session lock (`Session::raw()`), the same lock `ssh2` takes around every libssh2
//! call, and it is shut down (in `Drop`) while the session it belongs to is alive
//! (this struct holds a clone of the session).

use std::ffi::CString;
use std::os::unix::io::RawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use libssh2_sys as raw;
use ssh2::{ErrorCode, Session};

use super::exec::{retry, NonBlocking};

const ERROR_SFTP_PROTOCOL: i32 = -31;

extern "C" {
    // libssh2.h (1.11), compiled into the libssh2 that libssh2-sys links; not bound
    // by libssh2-sys 0.3.
    fn libssh2_sftp_posix_rename_ex(
        sftp: *mut raw::LIBSSH2_SFTP,
        source_filename: *const libc::c_char,
        source_filename_len: libc::size_t,
        dest_filename: *const libc::c_char,
        dest_filename_len: libc::size_t,
    ) -> libc::c_int;
}

pub(crate) struct PosixRename {
    sftp: *mut raw::LIBSSH2_SFTP,
    session: Session,
}

// SAFETY: the pointer is only dereferenced by libssh2 under the session lock (see
// the module docs), so moving the owner to another thread is sound.
unsafe impl Send for PosixRename {}

impl PosixRename {
    /// Open the extra SFTP channel. Driven in non-blocking mode, each wait preceded by
    /// `quick_ack` (see `exec::quick_ack`: inside libssh2's own blocking wait, a
    /// channel open can sit 40 ms on sshd's Nagle).
    pub fn open(
        session: &Session,
        fd: RawFd,
        io_timeout: Duration,
    ) -> Result<PosixRename, ssh2::Error> {
        let _mode = NonBlocking::new(session);
        let deadline = Instant::now() + io_timeout;
        let sftp = retry(session, fd, deadline, || {
            let mut guard = session.raw();
            let sess: *mut raw::LIBSSH2_SESSION = &mut *guard;
            // SAFETY: `sess` is the live session, locked by `guard` for the calls.
            let sftp = unsafe { raw::libssh2_sftp_init(sess) };
            if sftp.is_null() {
                // SAFETY: as above.
                let rc = unsafe { raw::libssh2_session_last_errno(sess) };
                return Err(ssh2::Error::new(
                    ErrorCode::Session(rc),
                    "cannot open an SFTP channel for posix-rename",
                ));
            }
            Ok(sftp)
        })?;
        Ok(PosixRename {
            sftp,
            session: session.clone(),
        })
    }

    /// rename(2) `from` to `to` on the host. An `SFTP(8)` error (operation
    /// unsupported) means the server lacks the extension.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), ssh2::Error> {
        let bytes = |p: &str| {
            CString::new(Path::new(p).as_os_str().as_encoded_bytes())
                .map_err(|_| ssh2::Error::new(ErrorCode::SFTP(5), "path contains a NUL byte"))
        };
        let (from, to) = (bytes(from)?, bytes(to)?);
        let _guard = self.session.raw();
        // SAFETY: `self.sftp` is a live handle of this session (shut down only in
        // Drop), the session is locked by `_guard`, and the strings outlive the call.
        let rc = unsafe {
            libssh2_sftp_posix_rename_ex(
                self.sftp,
                from.as_ptr(),
                from.as_bytes().len(),
                to.as_ptr(),
                to.as_bytes().len(),
            )
        };
        match rc {
            0 => Ok(()),
            ERROR_SFTP_PROTOCOL => {
                // SAFETY: as above.
                let status = unsafe { raw::libssh2_sftp_last_error(self.sftp) };
                Err(ssh2::Error::new(
                    ErrorCode::SFTP(status as i32),
                    "posix-rename failed",
                ))
            }
            rc => Err(ssh2::Error::new(
                ErrorCode::Session(rc),
                "posix-rename failed",
            )),
        }
    }
}

impl Drop for PosixRename {
    fn drop(&mut self) {
        let _guard = self.session.raw();
        // SAFETY: the handle is live and this is its only shutdown; the session it
        // belongs to is kept alive by `self.session` and locked by `_guard`.
        unsafe {
            raw::libssh2_sftp_shutdown(self.sftp);
        }
    }
}
