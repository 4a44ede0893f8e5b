//! SIGINT and SIGTERM while `tend run` or `tend exec` works: the first one cancels the
//! run through its [`CancelToken`] (the current step is stopped, its process group
//! killed, the run rolls back and ends `cancelled`, exit 128 + the signal's number).
//! A second SIGINT stops the process at once, without rolling back: the journal is
//! kept for `tend rollback`. A repeated SIGTERM changes nothing (a service manager's
//! escalation is SIGKILL, which leaves the journal too).
//!
//! Installed only around a run: for every other command the default action (the
//! process ends) is what Ctrl-C should do.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::cancel::CancelToken;
use crate::error::exit;
use crate::event::{Event, Sink};

/// Signal handling for one run; dropping it stops listening (signals are then
/// ignored until the process ends, which it is about to).
pub struct Interrupts {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    /// The signal that cancelled the run, 0 before any.
    first: Arc<AtomicI32>,
    run_id: Arc<OnceLock<String>>,
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

impl Interrupts {
    /// Cancel `cancel` on SIGINT or SIGTERM.
    pub fn install(cancel: CancelToken) -> std::io::Result<Self> {
        let run_id: Arc<OnceLock<String>> = Arc::default();
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let first = Arc::new(AtomicI32::new(0));
        let seen = first.clone();
        let id = run_id.clone();
        let thread = std::thread::Builder::new()
            .name("tend-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let earlier = seen.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                    match earlier {
                        Ok(_) => {
                            let again = if sig == SIGINT {
                                " (Ctrl-C again to stop at once, without rolling back)"
                            } else {
                                ""
                            };
                            eprintln!(
                                "tend: {} received: stopping the current step and rolling back{again}",
                                name(sig)
                            );
                            cancel.cancel(format!("{} received", name(sig)));
                        }
                        Err(_) if sig == SIGINT => {
                            match id.get() {
                                Some(id) => eprintln!(
                                    "tend: stopped at once, not rolled back; run {id} keeps its journal: `tend rollback {id}` undoes it"
                                ),
                                None => eprintln!("tend: stopped at once; no run had started"),
                            }
                            std::process::exit(exit::INTERRUPTED);
                        }
                        Err(_) => {}
                    }
                }
            })?;
        Ok(Interrupts {
            handle,
            thread: Some(thread),
            first,
            run_id,
        })
    }

    /// `sink`, noting the run's id as it starts, so that a hard stop can say which
    /// journal to roll back.
    pub fn sink(&self, sink: Sink) -> Sink {
        let id = self.run_id.clone();
        Arc::new(move |e: &Event| {
            if let Event::RunStart { run_id, .. } = e {
                let _ = id.set(run_id.clone());
            }
            sink(e)
        })
    }

    /// The exit code of a run these signals cancelled: 128 + the signal's number, as
    /// a shell reports a process the signal killed.
    pub fn exit_code(&self) -> i32 {
        match self.first.load(Ordering::SeqCst) {
            SIGTERM => exit::TERMINATED,
            _ => exit::INTERRUPTED,
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
