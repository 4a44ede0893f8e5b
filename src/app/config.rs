//! `tend.toml`, read once: one lookup rule, one parse, strict about what it contains.
//!
//! The file is found as given (`--config`/`TEND_CONFIG`, which must exist), else
//! `./tend.toml` if there is one, else there is none and everything has its default.
//! It holds `[hosts.NAME]` and `[groups.NAME]` (the inventory), `[trust]` (vetting),
//! `[audit]`, `[retention]`, and the tables the scheduler will own (`[[schedule]]`, `[defaults]`).
//! Any other table or key, at the top or in a table tend reads, is an error naming the
//! file, line and key, with the known name it is closest to: a misspelt setting that
//! was silently ignored would leave a policy or a host quietly different from what
//! its author believes.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::audit::AuditConfig;
use crate::error::{did_you_mean, Error, Result};
use crate::inventory::{self, ConfigText};
use crate::state::StateDir;
use crate::trust::{self, Trust};

/// The top-level tables of tend.toml. `schedule` and `defaults` belong to the
/// scheduler; their contents are its to check.
const TABLES: &[&str] = &[
    "hosts",
    "groups",
    "trust",
    "audit",
    "schedule",
    "defaults",
    "daemon",
    "retention",
    "cluster",
];

const TABLES_HELP: &str =
    "tend.toml takes [hosts.NAME], [groups.NAME], [trust], [audit], [[schedule]], [defaults], [daemon], [retention] and [cluster]";

const TRUST_HELP: &str = "[trust] takes file, require_vetted = \"scheduled\"|\"flag\"|\"always\"|\
                          \"never\", require_signature, allowed_signers, require_tests";

const AUDIT_HELP: &str = "[audit] takes anchor_command = \"COMMAND\"";

/// The settings of a tend.toml (or the defaults, without one).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file read; `None`: there was none.
    path: Option<PathBuf>,
    text: String,
    pub trust: trust::Settings,
    pub audit: AuditConfig,
    /// The `[[schedule]]` entries, checked (each problem named with file:line).
    pub schedules: Vec<crate::schedule::Entry>,
    /// `[daemon]`: the scheduler's own settings.
    pub daemon: super::DaemonSettings,
    /// `[retention]`: how long backups and run records are kept.
    pub retention: super::Retention,
    /// `[cluster]`: the shared PostgreSQL store, when several daemons share one.
    pub cluster: Option<crate::store::ClusterSettings>,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    trust: Option<trust::Settings>,
    #[serde(default)]
    audit: Option<AuditConfig>,
    #[serde(default)]
    daemon: Option<super::DaemonSettings>,
    #[serde(default)]
    retention: Option<super::Retention>,
    #[serde(default)]
    cluster: Option<crate::store::ClusterSettings>,
}

impl Config {
    /// The file looked for in the working directory when none is named.
    pub const DEFAULT_FILE: &str = "tend.toml";

    /// The config by the lookup rule: `explicit` (it must exist), else
    /// `./tend.toml` if present, else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let default = Path::new(Self::DEFAULT_FILE);
        match explicit.or_else(|| default.is_file().then_some(default)) {
            Some(path) => Self::read(path),
            None => Ok(Config::default()),
        }
    }

    /// The config in `path`, which must exist.
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Usage(format!(
                    "config file {} does not exist; check the --config path",
                    path.display()
                ))
            } else {
                Error::io(format!("cannot read config file {}", path.display()), e)
            }
        })?;
        Self::parse(path, text)
    }

    /// A config whose text is `text`, as if read from `path` (which names it in
    /// messages and anchors its relative paths).
    pub fn parse(path: &Path, text: String) -> Result<Config> {
        let at = |pos: usize| format!("{}:{}", path.display(), line_of(&text, pos));
        let doc = DeTable::parse(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| at(s.start))
                .unwrap_or_else(|| path.display().to_string());
            Error::Usage(format!("{at}: {}; fix this line", e.message().trim_end()))
        })?;
        for (key, value) in doc.get_ref() {
            let name = key.get_ref().as_ref();
            let sub = |keys: &[&str], help: &str| check_keys(value, name, keys, help, &at);
            match name {
                "trust" => sub(trust::Settings::KEYS, TRUST_HELP)?,
                "audit" => sub(AuditConfig::KEYS, AUDIT_HELP)?,
                "daemon" => sub(super::DaemonSettings::KEYS, super::DaemonSettings::HELP)?,
                "retention" => sub(super::Retention::KEYS, super::Retention::HELP)?,
                "cluster" => sub(
                    crate::store::ClusterSettings::KEYS,
                    crate::store::ClusterSettings::HELP,
                )?,
                _ if TABLES.contains(&name) => {}
                _ => return Err(unknown(key, None, TABLES, TABLES_HELP, &at)),
            }
        }
        // Keys are known now; what is left are values of the wrong type.
        let typed: Doc = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| at(s.start))
                .unwrap_or_else(|| path.display().to_string());
            Error::Usage(format!("{at}: {}; fix this line", e.message().trim_end()))
        })?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| Error::Usage(format!("{}: {}", path.display(), e.message().trim_end())))?;
        let schedules =
            crate::schedule::entries_from_source(&table, path, Some(&text)).map_err(|errs| {
                let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                Error::Usage(lines.join("\n"))
            })?;
        let config = Config {
            path: Some(path.to_path_buf()),
            text,
            trust: typed.trust.unwrap_or_default(),
            audit: typed.audit.unwrap_or_default(),
            schedules,
            daemon: typed.daemon.unwrap_or_default(),
            retention: typed.retention.unwrap_or_default(),
            cluster: typed.cluster,
        };
        if let Some(inv) = config.inventory() {
            inventory::check_config(inv)?;
        }
        Ok(config)
    }

    /// The file the settings came from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file for the inventory to read its hosts and groups from.
    pub fn inventory(&self) -> Option<ConfigText<'_>> {
        self.path.as_deref().map(|path| ConfigText {
            path,
            text: &self.text,
        })
    }

    /// Vetting as `[trust]` says, with the trust file it names.
    pub fn trust(&self, state: &StateDir) -> Result<Trust> {
        Trust::load(&self.trust, self.path(), state)
    }
}

/// `value` (the table `name`) has only `keys`.
fn check_keys(
    value: &Spanned<DeValue>,
    name: &str,
    keys: &[&str],
    help: &str,
    at: &impl Fn(usize) -> String,
) -> Result<()> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err(Error::Usage(format!(
            "{}: `{name}` must be a table ([{name}]); {help}",
            at(value.span().start)
        )));
    };
    match table.keys().find(|k| !keys.contains(&k.get_ref().as_ref())) {
        Some(key) => Err(unknown(key, Some(name), keys, help, at)),
        None => Ok(()),
    }
}

fn unknown(
    key: &Spanned<toml::de::DeString>,
    table: Option<&str>,
    known: &[&str],
    help: &str,
    at: &impl Fn(usize) -> String,
) -> Error {
    let name = key.get_ref().as_ref();
    let what = match table {
        Some(t) => format!("unknown key `{name}` in [{t}]"),
        None => format!("unknown table `{name}`"),
    };
    let suggestion = did_you_mean(name, known)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_else(|| ";".into());
    Error::Usage(format!(
        "{}: {what}{suggestion} {help}",
        at(key.span().start)
    ))
}

fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match Config::parse(Path::new("t/tend.toml"), text.to_string()) {
            Err(Error::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn reads_what_it_knows() {
        let c = Config::parse(
            Path::new("tend.toml"),
            "[hosts.a]\nport = 1\n[trust]\nrequire_vetted = \"flag\"\n[audit]\nanchor_command = \"true\"\n[[schedule]]\nname = \"n\"\ncron = \"@daily\"\nrecipe = \"r.rhai\"\n".into(),
        )
        .unwrap();
        assert_eq!(c.trust.require_vetted, Some(trust::RequireVetted::Flag));
        assert_eq!(c.audit.anchor_command.as_deref(), Some("true"));
        assert_eq!(c.schedules.len(), 1);
        assert_eq!(c.schedules[0].name, "n");
        assert_eq!(c.daemon.max_concurrent_runs(), 4);
        assert_eq!(c.daemon.stop_timeout(), std::time::Duration::from_secs(60));
        let c = Config::parse(
            Path::new("tend.toml"),
            "[daemon]\nmax_concurrent_runs = 2\nstop_timeout = \"5s\"\n".into(),
        )
        .unwrap();
        assert_eq!(c.daemon.max_concurrent_runs(), 2);
        assert_eq!(c.daemon.stop_timeout(), std::time::Duration::from_secs(5));
    }

    #[test]
    fn unknown_names_are_errors_with_a_suggestion() {
        let m = error("[trust]\nfile = \"v.toml\"\n\n[hots.web1]\naddress = \"x\"\n");
        assert!(m.starts_with("t/tend.toml:4: unknown table `hots`"), "{m}");
        assert!(m.contains("did you mean `hosts`"), "{m}");
        let m = error("[trust]\nrequire_veted = \"always\"\n");
        assert!(
            m.starts_with("t/tend.toml:2: unknown key `require_veted` in [trust]"),
            "{m}"
        );
        assert!(m.contains("did you mean `require_vetted`"), "{m}");
        let m = error("[audit]\nanchor = \"x\"\n");
        assert!(
            m.contains("t/tend.toml:2: unknown key `anchor` in [audit]"),
            "{m}"
        );
        let m = error("[daemon]\nmax_concurent_runs = 3\n");
        assert!(
            m.starts_with("t/tend.toml:2: unknown key `max_concurent_runs` in [daemon]"),
            "{m}"
        );
        assert!(m.contains("did you mean `max_concurrent_runs`"), "{m}");
        let m = error("[daemon]\nstop_timeout = \"soon\"\n");
        assert!(m.starts_with("t/tend.toml:2:"), "{m}");
        let m = error("[daemon]\nmax_concurrent_runs = 0\n");
        assert!(m.starts_with("t/tend.toml:2:"), "{m}");
        let m = error("[zebra]\n");
        assert!(!m.contains("did you mean"), "{m}");
        let m = error("[trust]\nrequire_vetted = \"often\"\n");
        assert!(m.starts_with("t/tend.toml:2:"), "{m}");
    }
}
