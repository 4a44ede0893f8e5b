//! How to reach a host: an inventory entry plus command-line flags become a
//! [`HostSpec`], which is recorded in the run (so `tend rollback RUN --host H` can
//! reconnect later, from the same facts) and turned into a connected [`Target`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::inventory::Host;
use crate::secret::Secret;
use crate::transport::local::Local;
use crate::transport::ssh::{HostKeyPolicy, SshOptions, SshTarget};
use crate::transport::{Target, TargetError};

/// Connection flags given on the command line; they override the inventory.
#[derive(Debug, Clone, Default)]
pub struct ConnectFlags {
    pub accept_new_host_keys: bool,
    pub known_hosts: Vec<PathBuf>,
    pub become_: bool,
    pub user: Option<String>,
    pub private_key: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
    /// Decrypts an encrypted private key: read once by the caller (the CLI reads
    /// `$TEND_SSH_PASSPHRASE`), never by the connection code.
    pub passphrase: Option<Secret>,
}

/// How a host is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// The machine tend runs on: no SSH.
    Local,
    #[default]
    Ssh,
}

/// `transport` as run.json holds it: `"transport"`, and beside it the `"local"` flag
/// that older versions write and read (and that is all a record of theirs holds).
mod transport_field {
    use super::Transport;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wire {
        #[serde(default)]
        local: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transport: Option<Transport>,
    }

    pub fn serialize<S: Serializer>(t: &Transport, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            local: *t == Transport::Local,
            transport: Some(*t),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Transport, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(w.transport.unwrap_or(if w.local {
            Transport::Local
        } else {
            Transport::Ssh
        }))
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostSpec {
    pub name: String,
    #[serde(flatten, with = "transport_field")]
    pub transport: Transport,
    /// Never recorded: given by the caller for each run or rollback.
    #[serde(skip)]
    pub passphrase: Option<Secret>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub identity_files: Vec<PathBuf>,
    #[serde(default)]
    pub identities_only: bool,
    #[serde(default)]
    pub known_hosts: Vec<PathBuf>,
    #[serde(default)]
    pub accept_new: bool,
    #[serde(default)]
    pub become_: bool,
    #[serde(default)]
    pub proxy_jump: Option<Box<HostSpec>>,
    #[serde(default)]
    pub connect_timeout_ms: u64,
    /// Typed; runs recorded before variables were typed hold strings, read as such.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Every group the host is in (not `all`), for `tend hosts --json`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Where the inventory defines the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// A connected host, and where tend keeps its own files there (backups, the lock).
pub struct Reached {
    pub target: Arc<dyn Target>,
    /// `None` for the local host: its files live in the state dir.
    remote: Option<RemoteState>,
    /// Where the host's lock lives; `None` for the local host (see [`crate::lock`]).
    lock_dir: Option<String>,
}

enum RemoteState {
    /// `tend_state_dir` of the inventory.
    Given(String),
    /// `~/.cache/tend`: the home directory is asked for when a run needs it, not by
    /// `ping` or `exec`.
    UnderHome(Arc<SshTarget>),
}

impl Reached {
    /// tend's directory on the host (backups and the host lock); `None` for the local
    /// machine, whose files live in the state dir.
    pub fn remote_state(&self) -> Result<Option<String>, TargetError> {
        match &self.remote {
            None => Ok(None),
            Some(RemoteState::Given(dir)) => Ok(Some(dir.clone())),
            Some(RemoteState::UnderHome(ssh)) => {
                Ok(Some(crate::transport::join(&ssh.home()?, ".cache/tend")))
            }
        }
    }

    /// Where host `name` of run `run_id` keeps the old contents it replaces: per
    /// inventory host, since hosts may share a home (NFS) and so a state directory.
    pub fn remote_backup_dir(
        &self,
        run_id: &str,
        name: &str,
    ) -> Result<Option<String>, TargetError> {
        Ok(self.remote_state()?.map(|dir| {
            format!(
                "{dir}/runs/{run_id}/{}/backup",
                crate::lock::host_file(name)
            )
        }))
    }

    /// The directory of the host's lock: `tend_lock_dir`, else `tend_state_dir`, else
    /// one for the whole machine ([`crate::lock::REMOTE_LOCK_DIR`]), never the home.
    pub fn lock_dir(&self) -> Option<&str> {
        self.lock_dir.as_deref()
    }
}

/// `user@host:port` → its parts (for ProxyJump and ad-hoc hosts).
fn split_destination(dest: &str) -> (Option<String>, String, Option<u16>) {
    let (user, rest) = match dest.split_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, dest),
    };
    match rest.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (user, h.to_string(), p.parse().ok()),
        _ => (user, rest.to_string(), None),
    }
}

impl HostSpec {
    pub fn local() -> HostSpec {
        HostSpec {
            name: "local".into(),
            transport: Transport::Local,
            passphrase: None,
            address: "localhost".into(),
            port: 0,
            user: String::new(),
            identity_files: vec![],
            identities_only: false,
            known_hosts: vec![],
            accept_new: false,
            become_: false,
            proxy_jump: None,
            connect_timeout_ms: 0,
            vars: BTreeMap::new(),
            groups: Vec::new(),
            source: String::new(),
        }
    }

    pub fn from_inventory(h: &Host, flags: &ConnectFlags) -> HostSpec {
        // `local` is this machine, whatever else the inventory says of it.
        let local = h.name == crate::inventory::LOCAL
            || ["connection", "ansible_connection"]
                .iter()
                .any(|k| h.vars.get(*k).and_then(|v| v.as_str()) == Some("local"));
        let mut identity_files = h.identity_files.clone();
        if let Some(k) = &flags.private_key {
            identity_files.insert(0, k.clone());
        }
        // Empty, or no timeout: the SSH target's defaults (`SshOptions::new`). The
        // command line's files, else those ssh config names for the host.
        let known_hosts = if flags.known_hosts.is_empty() {
            h.known_hosts.clone()
        } else {
            flags.known_hosts.clone()
        };
        let timeout_ms = flags
            .connect_timeout
            .or(h.connect_timeout)
            .map_or(0, |t| t.as_millis() as u64);
        let proxy_jump = h.proxy_jump.as_deref().map(|dest| {
            let (user, address, port) = split_destination(dest);
            Box::new(HostSpec {
                name: dest.to_string(),
                transport: Transport::Ssh,
                passphrase: flags.passphrase.clone(),
                address,
                port: port.unwrap_or(22),
                user: user.unwrap_or_else(crate::transport::local::user_name),
                identity_files: identity_files.clone(),
                identities_only: h.identities_only,
                known_hosts: known_hosts.clone(),
                accept_new: flags.accept_new_host_keys,
                become_: false,
                proxy_jump: None,
                connect_timeout_ms: timeout_ms,
                vars: BTreeMap::new(),
                groups: Vec::new(),
                source: String::new(),
            })
        });
        HostSpec {
            name: h.name.clone(),
            transport: if local {
                Transport::Local
            } else {
                Transport::Ssh
            },
            passphrase: flags.passphrase.clone(),
            address: h.address.clone(),
            port: h.port_or_default(),
            user: flags
                .user
                .clone()
                .or_else(|| h.user.clone())
                .unwrap_or_else(crate::transport::local::user_name),
            identity_files,
            identities_only: h.identities_only || flags.private_key.is_some(),
            known_hosts,
            accept_new: flags.accept_new_host_keys,
            become_: flags.become_ || h.become_,
            proxy_jump,
            connect_timeout_ms: timeout_ms,
            vars: h.vars.clone(),
            groups: h.groups.clone(),
            source: h.source.clone(),
        }
    }

    /// The display of how this host is reached, for `tend hosts`.
    pub fn how(&self) -> String {
        if self.is_local() {
            return "local (this machine, no SSH)".into();
        }
        let mut s = format!("ssh {}@{}:{}", self.user, self.address, self.port);
        if let Some(j) = &self.proxy_jump {
            s.push_str(&format!(" via {}@{}:{}", j.user, j.address, j.port));
        }
        if self.become_ {
            s.push_str(" (sudo)");
        }
        s
    }

    fn ssh_options(&self) -> SshOptions {
        let mut o = SshOptions::new(&self.name, &self.address, self.port, &self.user);
        if !self.identity_files.is_empty() {
            o.identity_files = self.identity_files.clone();
        }
        o.identities_only = self.identities_only;
        if !self.known_hosts.is_empty() {
            o.known_hosts = self.known_hosts.clone();
        }
        o.host_key_policy = if self.accept_new {
            HostKeyPolicy::AcceptNew
        } else {
            HostKeyPolicy::Strict
        };
        if self.connect_timeout_ms > 0 {
            o.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        }
        o.become_ = self.become_;
        o.proxy_jump = self.proxy_jump.as_ref().map(|j| Box::new(j.ssh_options()));
        o.vars = self.vars.clone();
        o.passphrase = self.passphrase.clone();
        o
    }

    /// This machine, reached without SSH.
    pub fn is_local(&self) -> bool {
        self.transport == Transport::Local
    }

    /// The same host, with `passphrase` for its key (and its jump host's).
    pub fn with_passphrase(mut self, passphrase: Option<&Secret>) -> HostSpec {
        self.passphrase = passphrase.cloned();
        self.proxy_jump = self
            .proxy_jump
            .map(|j| Box::new(j.with_passphrase(passphrase)));
        self
    }

    pub fn connect(&self) -> Result<Reached, TargetError> {
        if self.is_local() {
            let mut local = Local::new();
            local.set_vars(self.vars.clone());
            return Ok(Reached {
                target: Arc::new(local),
                remote: None,
                lock_dir: None,
            });
        }
        let ssh = Arc::new(SshTarget::connect(self.ssh_options())?);
        // Backups and the host lock live here; `tend_state_dir` moves them (a read-only
        // home, or several inventory hosts that are really one machine).
        let text = |k: &str| self.vars.get(k).map(crate::inventory::var_text);
        let remote = match text("tend_state_dir") {
            Some(dir) => RemoteState::Given(dir),
            None => RemoteState::UnderHome(ssh.clone()),
        };
        let lock_dir = text("tend_lock_dir")
            .or(text("tend_state_dir"))
            .unwrap_or_else(|| crate::lock::REMOTE_LOCK_DIR.into());
        Ok(Reached {
            target: ssh,
            remote: Some(remote),
            lock_dir: Some(lock_dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_older_versions_say_local_and_new_ones_say_both() {
        let old: HostSpec = serde_json::from_str(r#"{"name":"local","local":true}"#).unwrap();
        assert_eq!(old.transport, Transport::Local);
        let old: HostSpec = serde_json::from_str(r#"{"name":"h1","address":"h1"}"#).unwrap();
        assert_eq!(old.transport, Transport::Ssh);
        let mut spec = HostSpec::local();
        spec.passphrase = Some(Secret::new("hunter22".into()));
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            (v["local"].clone(), v["transport"].clone()),
            (true.into(), "local".into())
        );
        assert!(!v.to_string().contains("hunter22"));
        let back: HostSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back.transport, Transport::Local);
    }
}
