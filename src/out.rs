//! Printing to stdout that survives a reader that went away (`tend runs | head -1`,
//! `tend run … | less` quit early). `println!` panics on a closed pipe, which in the
//! middle of a run would stop it half done; here a write error is not fatal and the
//! work goes on: a run finishes, or rolls back, whoever still reads its report.

use std::io::Write;

/// `println!` without the panic.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` without the panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    match std::io::stdout().lock().write_fmt(args) {
        Ok(()) => {}
        // The reader is gone: nobody to tell.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        // A full disk under `> report.txt`: say so once, on stderr, and go on.
        Err(e) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: cannot write to standard output ({e}); the output is incomplete"
                );
            }
        }
    }
}
