//! Printing to stdout that survives a reader that went away (`tend runs | head -1`,
//! `tend run … | less` quit early). `println!` panics on a closed pipe, which in the
//! middle of a run would stop it half done; here the write error is dropped and the
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
    let _ = std::io::stdout().lock().write_fmt(args);
}
