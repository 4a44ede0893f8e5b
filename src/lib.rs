//! tend: run vetted maintenance recipes with an exact dry-run, automatic rollback and
//! a tamper-evident audit log.
//!
//! How a run flows: [`cli`] parses the command line, reads tend.toml once
//! ([`app::Config`]), says who asks ([`app::Actor`]) and calls [`app::run`], which
//! decides whether the recipe may run (vetting) before anything else. The [`recipe`]
//! is compiled once (imports resolved from the embedded stdlib and the recipe's
//! folder); the runner checks its parameters without touching anything,
//! takes the host lock and opens the host's [`journal`]. It then builds an [`engine`]
//! whose functions (`fs::file`, `sh`, …) call the [`ops`]; each operation reads facts
//! from a [`target`], writes its undo record ahead of the change, and makes it. A
//! dry-run is the same run against a [`transport::overlay::Overlay`] with no journal, so
//! the plan is computed by the very code that would apply it. If the script fails,
//! the journal is replayed in reverse. Every step is an [`event`]: the CLI renders it
//! ([`report`]) and the [`audit`] log chains it.

pub mod account;
pub mod app;
pub mod audit;
pub mod cancel;
mod child;
pub mod cli;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod error;
pub mod event;
pub mod fleet;
pub mod interrupt;
pub mod inventory;
pub mod journal;
pub mod lease;
pub mod lock;
pub mod notify;
pub mod ops;
mod out;
pub mod outcome;
pub mod ping;
pub mod pkgmgr;
pub mod reach;
pub mod recipe;
pub mod report;
pub mod schedule;
pub mod secret;
pub mod state;
pub mod status;
pub mod store;
pub mod system;
pub mod transport;
pub mod trust;

/// Entry point of the binary: parse `args`, run, return the exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    cli::main(args)
}
