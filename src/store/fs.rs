//! The embedded stores: run records, journals and host locks in the state directory
//! (`runs/RUN/run.json`, `runs/RUN/hosts/HOST/journal.jsonl`), the audit log in its
//! `audit.log`, and this machine's host locks as flock'ed files.

use std::sync::Arc;

use super::{AuditStore, HostLocks, JournalStore, RunStore};
use crate::audit::AuditLog;
use crate::error::{Error, Result};
use crate::journal::{Contents, Journal, JournalWrite};
use crate::lock::{Holder, Take};
use crate::state::{RunMeta, StateDir};

pub struct FsStore {
    state: StateDir,
}

impl FsStore {
    pub fn new(state: StateDir) -> FsStore {
        FsStore { state }
    }
}

impl RunStore for FsStore {
    fn reserve_run_id(&self) -> Result<String> {
        self.state.reserve_run_id()
    }

    fn discard(&self, run_id: &str) {
        let _ = std::fs::remove_dir(self.state.run_dir(run_id));
    }

    fn write(&self, meta: &RunMeta) -> Result<()> {
        self.state.write_meta(meta)
    }

    fn read(&self, run_id: &str) -> Result<RunMeta> {
        self.state.recover_meta(run_id)
    }

    fn list(&self) -> Result<Vec<RunMeta>> {
        self.state.list_runs()
    }
}

impl JournalStore for FsStore {
    fn open(&self, run_id: &str, host: &str) -> Result<Arc<dyn JournalWrite>> {
        self.state.host_dir(run_id, host)?;
        let path = self.state.journal_path(run_id, host);
        let journal = Journal::open(&path)
            .map_err(|e| Error::io(format!("cannot open journal {}", path.display()), e))?;
        Ok(Arc::new(journal))
    }

    fn read(&self, run_id: &str, host: &str) -> Result<Contents> {
        let path = self.state.journal_path(run_id, host);
        Journal::read(&path)
            .map_err(|e| Error::io(format!("cannot read journal {}", path.display()), e))
    }

    fn exists(&self, run_id: &str, host: &str) -> bool {
        self.state.journal_path(run_id, host).is_file()
    }

    fn describe(&self, run_id: &str, host: &str) -> String {
        self.state.journal_path(run_id, host).display().to_string()
    }
}

impl HostLocks for FsStore {
    fn lock(&self, host: &str, me: &Holder, take: &Take) -> Result<Box<dyn Send + Sync>> {
        let guard = crate::lock::lock_here(self.state.lock_dir(), host, me, take)?;
        Ok(Box::new(guard))
    }

    fn holder(&self, host: &str, clear: bool) -> Result<Option<(Holder, bool)>> {
        crate::lock::holder_here(self.state.lock_dir(), host, clear)
    }
}

impl AuditStore for AuditLog {
    fn append_many(&self, records: Vec<serde_json::Value>) -> Result<u64> {
        AuditLog::append_many(self, records)
    }

    fn read(&self, run_id: Option<&str>) -> Result<Vec<serde_json::Value>> {
        AuditLog::read(self, run_id)
    }

    fn verify(&self, anchor: Option<&crate::audit::Anchor>) -> Result<crate::audit::Anchor> {
        self.verify_against(anchor)
    }

    fn export(&self, out: &mut dyn std::io::Write) -> Result<u64> {
        AuditLog::export(self, out)
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}
