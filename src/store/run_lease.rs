//! A running run's lease on its record: the heartbeat that says it is alive, and the
//! final record on every way out.

use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use super::RunStore;
use crate::error::Result;
use crate::lease::{Lease, Owner, HEARTBEAT};
use crate::state::RunMeta;

/// Holds a run's lease while it runs: refreshes the heartbeat, and on every way out
/// (an early `?`, a panic) leaves a final run record, `interrupted` unless
/// [`RunLease::finish`] wrote the real one.
pub struct RunLease {
    store: Arc<dyn RunStore>,
    meta: Arc<Mutex<RunMeta>>,
    stop: Option<mpsc::Sender<()>>,
    beat: Option<JoinHandle<()>>,
    finished: bool,
}

impl RunLease {
    /// Record `meta` as running, held by this process.
    pub fn start(store: Arc<dyn RunStore>, mut meta: RunMeta) -> Result<RunLease> {
        let now = chrono::Utc::now().to_rfc3339();
        meta.lease = Some(Lease {
            owner: Owner::current().clone(),
            since: now.clone(),
            heartbeat: now,
        });
        store.write(&meta)?;
        let meta = Arc::new(Mutex::new(meta));
        let (stop, stopped) = mpsc::channel::<()>();
        let beat = {
            let (store, meta) = (store.clone(), meta.clone());
            std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                    let mut m = meta.lock().expect("run lease");
                    if let Some(l) = &mut m.lease {
                        l.heartbeat = chrono::Utc::now().to_rfc3339();
                    }
                    if let Err(e) = store.write(&m) {
                        tracing::warn!("heartbeat of run {}: {e}", m.run_id);
                    }
                }
            })
        };
        Ok(RunLease {
            store,
            meta,
            stop: Some(stop),
            beat: Some(beat),
            finished: false,
        })
    }

    fn stop_heartbeat(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.beat.take() {
            let _ = t.join();
        }
    }

    /// Write the run's final record.
    pub fn finish(mut self, end: impl FnOnce(&mut RunMeta)) -> Result<()> {
        self.stop_heartbeat();
        self.finished = true;
        let mut m = self.meta.lock().expect("run lease");
        end(&mut m);
        self.store.write(&m)
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.stop_heartbeat();
        if self.finished {
            return;
        }
        let Ok(mut m) = self.meta.lock() else { return };
        m.outcome = crate::outcome::RunState::Interrupted;
        m.ended = Some(chrono::Utc::now().to_rfc3339());
        if let Err(e) = self.store.write(&m) {
            tracing::error!("run {}: cannot record its end: {e}", m.run_id);
        }
    }
}
