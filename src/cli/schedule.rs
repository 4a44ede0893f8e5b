//! `tend schedule check|list|next`: the `[[schedule]]` entries of tend.toml as the
//! daemon will see them. Nothing here starts a run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use clap::Subcommand;

use crate::app;
use crate::app::Config;
use crate::daemon::record::Record;
use crate::error::{did_you_mean, exit, Error, Result};
use crate::inventory::Inventory;
use crate::out::outln;
use crate::recipe::{params::ParamType, Recipe};
use crate::report::{escape, table, Human};
use crate::schedule::{self, zone, Entry};
use crate::state::StateDir;

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Check every entry: its keys and cron line, and that its recipe exists and is
    /// vetted, its parameters fit the recipe and its hosts select at least one host
    Check {
        /// One JSON object per entry (`kind: schedule_check`), then a summary
        #[arg(long)]
        json: bool,
    },
    /// Every entry with its zone and next fire
    List {
        /// One JSON object per entry on stdout
        #[arg(long)]
        json: bool,
    },
    /// Upcoming fires, one per line: `YYYY-MM-DD HH:MM:SS±HH:MM NAME` in the entry's zone
    #[command(after_help = NEXT_HELP)]
    Next {
        /// Only this entry (also when disabled) [default: every enabled entry]
        name: Option<String>,
        /// Fires per entry
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        count: u32,
        /// Fires strictly after this time: RFC 3339 (2027-03-27T12:00:00+01:00), or a
        /// wall time in each entry's zone (2027-03-27T12:00:00) [default: now]
        #[arg(long, value_name = "TIME")]
        after: Option<String>,
        /// One JSON object per fire on stdout
        #[arg(long)]
        json: bool,
    },
    /// Fire one entry now: through the running daemon (its overlap rule applies), or
    /// in this process when no daemon is up
    Run {
        name: String,
        /// The result as one JSON object (`kind: schedule_run`)
        #[arg(long)]
        json: bool,
    },
    /// Stop an entry's fires until `resume` (kept across daemon restarts; audited)
    Pause {
        name: String,
        /// The result as one JSON object (`kind: schedule_pause`)
        #[arg(long)]
        json: bool,
    },
    /// Let a paused entry fire again (audited)
    Resume {
        name: String,
        /// The result as one JSON object (`kind: schedule_resume`)
        #[arg(long)]
        json: bool,
    },
}

const NEXT_HELP: &str = "\
Cron lines follow cron(8): day-of-month and day-of-week are ORed when both are restricted.
Across a daylight-saving change, a fixed-time job (minute and hour not starting with `*`)
due in the skipped hour runs once at the change, and once in a repeated hour; a wildcard
job follows the wall clock. Jitter, when set, is included.";

impl ScheduleCommand {
    pub fn json(&self) -> bool {
        match self {
            ScheduleCommand::Check { json }
            | ScheduleCommand::Run { json, .. }
            | ScheduleCommand::Pause { json, .. }
            | ScheduleCommand::Resume { json, .. }
            | ScheduleCommand::List { json }
            | ScheduleCommand::Next { json, .. } => *json,
        }
    }
}

/// Run `cmd` on the entries of `config`.
pub fn run(
    cmd: &ScheduleCommand,
    config: &Config,
    state: &dyn Fn() -> Result<StateDir>,
    human: &Human,
) -> Result<i32> {
    let Some(file) = config.path() else {
        if !cmd.json() {
            human.line("no tend.toml here (and no --config): nothing is scheduled");
        }
        return Ok(exit::OK);
    };
    let entries = &config.schedules;
    match cmd {
        ScheduleCommand::Check { json } => check(config, file, entries, state, human, *json),
        ScheduleCommand::List { json } => {
            let records = records(&state()?, config)?;
            let record = |name: &str| {
                records.get(name).cloned().unwrap_or_else(|| Record {
                    name: name.to_string(),
                    ..Record::default()
                })
            };
            list(entries, &record, Utc::now(), *json);
            Ok(exit::OK)
        }
        ScheduleCommand::Run { name, json } => {
            crate::cli::daemon::fire(config, &state()?, name, human, *json)
        }
        ScheduleCommand::Pause { name, json } => {
            crate::cli::daemon::pause(config, &state()?, name, true, human, *json)
        }
        ScheduleCommand::Resume { name, json } => {
            crate::cli::daemon::pause(config, &state()?, name, false, human, *json)
        }
        ScheduleCommand::Next {
            name,
            count,
            after,
            json,
        } => next(
            entries,
            name.as_deref(),
            *count as usize,
            after.as_deref(),
            *json,
        ),
    }
}

fn next_fire_text(e: &Entry, now: DateTime<Utc>) -> Option<String> {
    e.next_fires(now, 1)
        .first()
        .map(|t| zone::format_at(*t, e.timezone))
}

/// What the daemons recorded of each entry of `config`: the cluster's records with
/// `[cluster]` (whichever node fired), else those of the state directory's daemon.
fn records(state: &StateDir, config: &Config) -> Result<HashMap<String, Record>> {
    if let Some(cluster) = app::stores_for(state, config)?.cluster {
        let (states, _) = cluster.schedule_states(None)?;
        return Ok(states
            .into_iter()
            .filter_map(|s| {
                let r: Record = serde_json::from_value(s.state).ok()?;
                Some((s.name, r))
            })
            .collect());
    }
    let dir = crate::daemon::record::dir(state);
    Ok(config
        .schedules
        .iter()
        .map(|e| (e.name.clone(), crate::daemon::record::read(&dir, &e.name)))
        .collect())
}

/// Each entry with what its daemon record says (last run, failures, paused).
fn list(entries: &[Entry], record: &dyn Fn(&str) -> Record, now: DateTime<Utc>, json: bool) {
    if json {
        for e in entries {
            let r = record(&e.name);
            outln!(
                "{}",
                serde_json::json!({
                    "kind": "schedule",
                    "name": e.name,
                    "cron": e.cron.as_str(),
                    "timezone": e.timezone.name(),
                    "next": next_fire_text(e, now),
                    "reboot": e.cron.is_reboot(),
                    "enabled": e.enabled,
                    "recipe": e.recipe.display().to_string(),
                    "hosts": e.hosts,
                    "last_run": r.last_fire.as_ref().map(|when| serde_json::json!({
                        "run_id": r.last_run_id,
                        "outcome": r.last_outcome,
                        "when": when,
                    })),
                    "consecutive_failures": r.consecutive_failures,
                    "paused": r.paused,
                })
            );
        }
        return;
    }
    let mut t = table(&[
        "NAME", "CRON", "ZONE", "NEXT", "ENABLED", "LAST RUN", "FAILURES",
    ]);
    for e in entries {
        let r = record(&e.name);
        let next = if e.cron.is_reboot() {
            "at daemon start".to_string()
        } else {
            next_fire_text(e, now).unwrap_or_else(|| "never".into())
        };
        let zone = if e.timezone_default {
            format!("{} (machine)", e.timezone.name())
        } else {
            e.timezone.name().to_string()
        };
        t.add_row(vec![
            e.name.clone(),
            escape(e.cron.as_str()).into_owned(),
            zone,
            next,
            match (e.enabled, r.paused) {
                (false, _) => "no",
                (true, true) => "paused",
                (true, false) => "yes",
            }
            .to_string(),
            match &r.last_fire {
                Some(when) => format!(
                    "{} {} {when}",
                    r.last_run_id.as_deref().unwrap_or("-"),
                    r.last_outcome.as_deref().unwrap_or("-")
                ),
                None => "never".into(),
            },
            r.consecutive_failures.to_string(),
        ]);
    }
    outln!("{t}");
}

/// `--after`: an instant, or a wall time read in `tz`.
fn parse_after(text: &str, tz: Tz) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let formats = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    formats
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .and_then(|w| zone::from_wall(tz, w))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--after {text:?} is not a time; write RFC 3339 (2027-03-27T12:00:00+01:00) \
                 or a wall time in the entry's zone (2027-03-27T12:00:00)"
            ))
        })
}

fn next(
    entries: &[Entry],
    name: Option<&str>,
    count: usize,
    after: Option<&str>,
    json: bool,
) -> Result<i32> {
    let selected: Vec<&Entry> = match name {
        Some(n) => match entries.iter().find(|e| e.name == n) {
            Some(e) => vec![e],
            None => {
                let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                let hint = match did_you_mean(n, &names) {
                    Some(m) => format!("did you mean {m:?}? "),
                    None => String::new(),
                };
                return Err(Error::Usage(format!(
                    "no schedule entry named {n:?}; {hint}`tend schedule list` shows them"
                )));
            }
        },
        None => entries.iter().filter(|e| e.enabled).collect(),
    };
    let now = Utc::now();
    let mut fires: Vec<(DateTime<Utc>, &Entry)> = Vec::new();
    for e in selected {
        let after = match after {
            Some(a) => parse_after(a, e.timezone)?,
            None => now,
        };
        fires.extend(e.next_fires(after, count).into_iter().map(|t| (t, e)));
    }
    fires.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    for (t, e) in fires {
        let at = zone::format_at(t, e.timezone);
        if json {
            outln!(
                "{}",
                serde_json::json!({"kind": "fire", "schedule": e.name, "at": at, "timezone": e.timezone.name()})
            );
        } else {
            outln!("{at} {}", e.name);
        }
    }
    Ok(exit::OK)
}

/// One problem `tend schedule check` found, with the exit code of its kind.
struct Problem {
    code: i32,
    text: String,
}

fn check(
    config: &Config,
    file: &Path,
    entries: &[Entry],
    state: &dyn Fn() -> Result<StateDir>,
    human: &Human,
    json: bool,
) -> Result<i32> {
    let trust = state().and_then(|s| config.trust(&s))?;
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    // Loaded once, and only if some entry needs more than this machine.
    let mut inventory: Option<std::result::Result<Inventory, String>> = None;
    let mut problems: Vec<Problem> = Vec::new();
    for e in entries {
        let before = problems.len();
        let mut problem = |code: i32, field: String, message: String| {
            problems.push(Problem {
                code,
                text: format!("{}: schedule {:?}: {field}: {message}", e.source, e.name),
            })
        };
        let recipe_field = format!("recipe {:?}", e.recipe.display().to_string());
        match Recipe::load(&e.recipe) {
            Err(err) => problem(err.exit_code(), recipe_field, err.to_string()),
            Ok(r) => {
                match trust.status(&r) {
                    Ok(s) if trust.allows_scheduled(&s) => {}
                    Ok(s) => problem(
                        exit::UNVETTED,
                        recipe_field.clone(),
                        format!(
                            "is not vetted ({}); the scheduler runs only vetted recipes: \
                             `tend vet {} --by NAME`",
                            s.describe(),
                            e.recipe.display()
                        ),
                    ),
                    Err(err) => problem(err.exit_code(), recipe_field.clone(), err.to_string()),
                }
                for (field, message) in param_problems(&r, e) {
                    problem(exit::USAGE, field, message);
                }
            }
        }
        if e.hosts != "local" {
            let inv = inventory.get_or_insert_with(|| {
                Inventory::load(config.inventory(), &[], None, home.as_deref())
                    .map_err(|err| err.to_string())
            });
            let selected = match inv {
                Ok(inv) => inv.select(&e.hosts, None).map_err(|err| err.to_string()),
                Err(why) => Err(why.clone()),
            };
            match selected {
                Ok(hosts) if !hosts.is_empty() => {}
                Ok(_) => problem(
                    exit::USAGE,
                    format!("hosts {:?}", e.hosts),
                    "selects no host".into(),
                ),
                Err(why) => problem(exit::USAGE, format!("hosts {:?}", e.hosts), why),
            }
        }
        for n in &e.notify {
            if let schedule::Notify::Exec(p) = n {
                if !is_executable(p) {
                    problem(
                        exit::USAGE,
                        format!("notify \"{n}\""),
                        format!("{} is not an executable file", p.display()),
                    );
                }
            }
        }
        if json {
            let found: Vec<_> = problems[before..]
                .iter()
                .map(|p| serde_json::json!({"message": p.text, "exit_code": p.code}))
                .collect();
            let v = serde_json::json!({
                "kind": "schedule_check", "schedule": e.name, "ok": found.is_empty(),
                "enabled": e.enabled, "reboot": e.cron.is_reboot(),
                "next": next_fire_text(e, Utc::now()), "problems": found,
            });
            outln!("{v}");
        } else if problems.len() == before {
            let next = if e.cron.is_reboot() {
                "at daemon start".to_string()
            } else {
                next_fire_text(e, Utc::now()).unwrap_or_else(|| "never".into())
            };
            human.line(&format!(
                "{}: ok (recipe vetted; next {next}{})",
                e.name,
                if e.enabled { "" } else { "; disabled" }
            ));
        }
    }
    for p in &problems {
        human.error(&p.text);
    }
    if json {
        let v = serde_json::json!({
            "kind": "schedule_check_summary", "file": file.display().to_string(),
            "entries": entries.len(), "problems": problems.len(),
        });
        outln!("{v}");
        return Ok(problems.first().map_or(exit::OK, |p| p.code));
    }
    human.line(&format!(
        "{}: {} schedule entr{}, {} problem{}",
        file.display(),
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    ));
    Ok(problems.first().map_or(exit::OK, |p| p.code))
}

/// Parameters the recipe would refuse, and secrets written in the file itself.
fn param_problems(r: &Recipe, e: &Entry) -> Vec<(String, String)> {
    let decls = match app::declared_params(r, &[]) {
        Ok(d) => d,
        Err(err) => return vec![("params".into(), err.to_string())],
    };
    let mut out = Vec::new();
    let mut plain = Vec::new();
    for (k, v) in &e.params {
        let secret = decls
            .iter()
            .any(|d| d.name == *k && d.ty == ParamType::Secret);
        if !secret {
            plain.push((k.clone(), v.clone()));
        } else if !(v.starts_with("env:") || v.starts_with("file:")) {
            // The value is not repeated: it may be the secret.
            out.push((
                format!("params.{k}"),
                "is a secret: give it as \"env:VAR\" or \"file:PATH\", not its value \
                 (tend.toml is read by anyone who can read the schedule)"
                    .into(),
            ));
        }
    }
    if let Err(err) = app::declared_params(r, &plain) {
        out.push(("params".into(), err.to_string()));
    }
    out
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
