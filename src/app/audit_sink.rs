//! The sink that records a run's events in the audit log: appends grouped across
//! hosts, and a run halted when the log cannot record it (the audit fails closed).

use std::sync::{Arc, Mutex};

use crate::app::Actor;
use crate::engine;
use crate::error::{Error, Result};
use crate::event::{Event, Sink};
use crate::store::AuditStore;

pub(crate) fn audit_record(
    run_id: &str,
    actor: &Actor,
    dry_run: bool,
    event: &Event,
) -> Option<serde_json::Value> {
    let keep = match event {
        // A plan is recorded (who looked at what), its steps are not: nothing changed.
        _ if dry_run => matches!(event, Event::RunStart { .. } | Event::RunEnd { .. }),
        Event::Step { report, .. } => report.changed || report.unknown,
        Event::Log { .. }
        | Event::Undo { .. }
        | Event::HostStart { .. }
        | Event::StepStart { .. } => false,
        _ => true,
    };
    if !keep {
        return None;
    }
    let mut v = serde_json::to_value(event).ok()?;
    let obj = v.as_object_mut()?;
    obj.insert("run_id".into(), run_id.into());
    obj.insert("user".into(), actor.user.clone().into());
    if dry_run && matches!(event, Event::RunEnd { .. }) {
        // Read alone, a plan's end must not pass for a run that changed things.
        obj.insert("dry_run".into(), true.into());
    }
    if let Event::RunStart { .. } = event {
        obj.insert("trigger".into(), actor.trigger.as_str().into());
        if let Some(name) = &actor.schedule {
            obj.insert("schedule".into(), name.clone().into());
        }
    }
    // A full diff may be large; the audit keeps its size, the terminal showed it.
    if let Some(diff) = obj.remove("diff") {
        let text = diff.as_str().unwrap_or_default();
        let added = text
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .count();
        let removed = text
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .count();
        obj.insert("diff_summary".into(), format!("+{added} -{removed}").into());
    }
    obj.remove("stdout");
    obj.remove("stderr");
    Some(v)
}

/// Audit appends from many host threads, written together (group commit): whoever
/// finds no write in progress writes every batch queued so far, with one lock, one
/// fsync and one head update; the others wait until theirs is durable. Hosts of a
/// fleet run step in parallel, so their appends share fsyncs.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<Queue>,
    written: std::sync::Condvar,
}

#[derive(Default)]
pub(crate) struct Queue {
    records: Vec<serde_json::Value>,
    /// Batches queued so far, and how many of them are on disk.
    queued: u64,
    durable: u64,
    writing: bool,
    /// Why an append failed. Every later one fails too: a record after a lost one
    /// would make a chain that reads as complete.
    failed: Option<String>,
}

impl GroupCommit {
    /// Ok once `batch` is durable in the log; Err(why) if it is not.
    pub(crate) fn append(
        &self,
        log: &dyn AuditStore,
        batch: Vec<serde_json::Value>,
    ) -> Result<(), String> {
        let mut q = self.state.lock().expect("audit queue");
        if let Some(why) = &q.failed {
            return Err(why.clone());
        }
        q.records.extend(batch);
        q.queued += 1;
        let mine = q.queued;
        while q.durable < mine {
            if q.writing {
                q = self.written.wait(q).expect("audit queue");
                continue;
            }
            q.writing = true;
            let records = std::mem::take(&mut q.records);
            let upto = q.queued;
            drop(q);
            let written = log.append_many(records);
            q = self.state.lock().expect("audit queue");
            q.writing = false;
            q.durable = upto;
            if let Err(err) = written {
                q.failed.get_or_insert(audit_failure(&err));
            }
            self.written.notify_all();
        }
        match &q.failed {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Why an append failed, if one did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.state.lock().expect("audit queue").failed.clone()
    }
}

/// Why the log refused an append, without its path: the messages built from this
/// name the log themselves.
pub(crate) fn audit_failure(e: &Error) -> String {
    match e {
        Error::Tampered { message, .. } => format!("it failed verification: {message}"),
        Error::Audit { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A sink that also appends to the audit log, each recorded event as it happens, so
/// that no change is followed by another before its record is durable. When `halt`
/// is given (a real run) a failed append sets it: the step being recorded fails, no
/// further step runs, and the run rolls back as after any failure. Without it (a
/// dry-run, which changes nothing; a rollback, which must not be stopped halfway) the
/// failure is only reported.
pub(crate) fn audited(
    sink: Sink,
    audit: Option<Arc<dyn AuditStore>>,
    run_id: String,
    actor: Actor,
    dry_run: bool,
    halt: Option<engine::Halt>,
    commits: Arc<GroupCommit>,
) -> Sink {
    Arc::new(move |e: &Event| {
        if let Some(log) = &audit {
            if let Some(rec) = audit_record(&run_id, &actor, dry_run, e) {
                if let Err(why) = commits.append(log.as_ref(), vec![rec]) {
                    match &halt {
                        // Not started (see `run`): nothing to show it began.
                        Some(_) if matches!(e, Event::RunStart { .. }) => return,
                        Some(halt) => {
                            let _ = halt.set(format!(
                                "the audit log {} cannot record this run: {why}",
                                log.describe()
                            ));
                        }
                        None => tracing::error!("audit log: {why}"),
                    }
                }
            }
        }
        sink(e);
    })
}
