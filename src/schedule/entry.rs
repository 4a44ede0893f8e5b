//! Reading `[[schedule]]` tables into [`Entry`] values: every key checked, every
//! problem of every entry reported at once (a daemon reloading on SIGHUP must say all
//! that is wrong, not the first thing), each naming file:line, the entry and the field.
//!
//! The caller parses tend.toml (the one config loader); this takes the parsed table.
//! Lines are found by looking the entries' `[[schedule]]` headers and keys up in the
//! file's text, since a `toml::Table` keeps no positions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use super::{zone, AlertAfter, Cron, Entry, Notify, NotifyOn, Overlap, ScheduleError};
use crate::error::did_you_mean;

const KEYS: [&str; 15] = [
    "name",
    "cron",
    "timezone",
    "recipe",
    "hosts",
    "params",
    "timeout",
    "become",
    "overlap",
    "jitter",
    "catch_up",
    "enabled",
    "notify",
    "notify_on",
    "alert_after",
];

/// The entries of the `schedule` array in `doc` (the whole parsed tend.toml), read
/// from `file`. The file is read again only to name lines in messages; if it cannot
/// be, messages name the file alone. No `schedule` key: no entries.
pub fn entries_from(doc: &toml::Table, file: &Path) -> Result<Vec<Entry>, Vec<ScheduleError>> {
    let text = std::fs::read_to_string(file).ok();
    entries_from_source(doc, file, text.as_deref())
}

/// [`entries_from`] with the file's text given by a caller that already holds it
/// (`None`: no line numbers).
pub fn entries_from_source(
    doc: &toml::Table,
    file: &Path,
    text: Option<&str>,
) -> Result<Vec<Entry>, Vec<ScheduleError>> {
    let shown = file.display().to_string();
    // `tend.toml` alone has the empty parent: paths stay as written, without `./`.
    let base = file.parent().unwrap_or(Path::new(""));
    let items = match doc.get("schedule") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(vec![ScheduleError {
                location: shown,
                entry: None,
                field: None,
                message: "`schedule` must be an array of tables: write each entry under \
                          its own [[schedule]] header"
                    .into(),
            }])
        }
    };
    let lines = Lines::new(text, items.len());
    let mut errors = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let mut cx = Cx {
            shown: &shown,
            lines: &lines,
            index: i,
            entry: format!("#{}", i + 1),
            errors: Vec::new(),
        };
        let Value::Table(t) = item else {
            cx.error(
                None,
                None,
                "must be a table ([[schedule]] with keys under it)".into(),
            );
            errors.append(&mut cx.errors);
            continue;
        };
        if let Some(e) = read_entry(&mut cx, t, base) {
            if let Some(first) = seen.get(&e.name) {
                cx.error(
                    Some("name"),
                    Some(format!("name \"{}\"", e.name)),
                    format!("is already used by the entry at {first}; names must be unique"),
                );
            } else {
                seen.insert(e.name.clone(), e.source.clone());
                entries.push(e);
            }
        }
        errors.append(&mut cx.errors);
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Line numbers of each entry's header and keys, when the text has one
/// `[[schedule]]` header per entry (an inline array has none to find).
struct Lines {
    /// Per entry: (header line, key → line).
    entries: Vec<(usize, BTreeMap<String, usize>)>,
}

impl Lines {
    fn new(text: Option<&str>, count: usize) -> Lines {
        let mut entries: Vec<(usize, BTreeMap<String, usize>)> = Vec::new();
        let mut inside = false;
        for (n, line) in text.unwrap_or_default().lines().enumerate() {
            let l = line.trim();
            if l.starts_with('[') {
                let header = l
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or_default();
                inside = l.starts_with("[[") && header.trim() == "schedule";
                if inside {
                    entries.push((n + 1, BTreeMap::new()));
                }
                continue;
            }
            if let (true, Some((key, _))) = (inside, l.split_once('=')) {
                let key = key.trim().trim_matches('"').to_string();
                if let Some((_, keys)) = entries.last_mut() {
                    keys.entry(key).or_insert(n + 1);
                }
            }
        }
        if entries.len() != count {
            entries.clear();
        }
        Lines { entries }
    }

    fn line(&self, index: usize, key: Option<&str>) -> Option<usize> {
        let (header, keys) = self.entries.get(index)?;
        Some(key.and_then(|k| keys.get(k).copied()).unwrap_or(*header))
    }
}

struct Cx<'a> {
    shown: &'a str,
    lines: &'a Lines,
    index: usize,
    /// How messages name the entry: `"nightly"` once its name is known, else `#N`.
    entry: String,
    errors: Vec<ScheduleError>,
}

impl Cx<'_> {
    fn location(&self, key: Option<&str>) -> String {
        match self.lines.line(self.index, key) {
            Some(l) => format!("{}:{l}", self.shown),
            None => self.shown.to_string(),
        }
    }

    fn error(&mut self, key: Option<&str>, field: Option<String>, message: String) {
        self.errors.push(ScheduleError {
            location: self.location(key),
            entry: Some(self.entry.clone()),
            field,
            message,
        });
    }

    /// An error about `key`, whose value is shown as written.
    fn bad(&mut self, key: &str, v: &Value, message: impl Into<String>) {
        let field = format!("{key} {}", shown(v));
        self.error(Some(key), Some(field), message.into());
    }
}

/// A value as it is written in TOML (strings quoted), for messages.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn read_entry(cx: &mut Cx, t: &toml::Table, base: &Path) -> Option<Entry> {
    let before = cx.errors.len();
    let name = match t.get("name") {
        Some(Value::String(n)) if valid_name(n) => {
            cx.entry = format!("{n:?}");
            Some(n.clone())
        }
        Some(v) => {
            cx.bad(
                "name",
                v,
                "must be a string of lowercase letters, digits and `-` (like \"nightly-backup\")",
            );
            None
        }
        None => {
            cx.error(
                None,
                None,
                "has no `name`; give it one (lowercase letters, digits and `-`)".into(),
            );
            None
        }
    };
    for key in t.keys() {
        if !KEYS.contains(&key.as_str()) {
            let hint = match did_you_mean(key, &KEYS) {
                Some(k) => format!("did you mean \"{k}\"? "),
                None => String::new(),
            };
            cx.error(
                Some(key),
                Some(format!("unknown key {key:?}")),
                format!("{hint}an entry takes {}", KEYS.join(", ")),
            );
        }
    }
    let cron = match t.get("cron") {
        Some(v @ Value::String(s)) => match Cron::parse(s) {
            Ok(c) => Some(c),
            Err(m) => {
                cx.bad("cron", v, m);
                None
            }
        },
        Some(v) => {
            cx.bad(
                "cron",
                v,
                "must be a string like \"30 2 * * *\" or \"@daily\"",
            );
            None
        }
        None => {
            cx.error(
                None,
                None,
                "has no `cron`; say when it runs, e.g. cron = \"30 2 * * *\"".into(),
            );
            None
        }
    };
    let (timezone, timezone_default) = match t.get("timezone") {
        None => (Some(zone::machine()), true),
        Some(v @ Value::String(s)) => match zone::parse(s) {
            Ok(z) => (Some(z), false),
            Err(m) => {
                cx.bad("timezone", v, m);
                (None, false)
            }
        },
        Some(v) => {
            cx.bad(
                "timezone",
                v,
                "must be an IANA zone name like \"Europe/Paris\"",
            );
            (None, false)
        }
    };
    let recipe = match t.get("recipe") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(base.join(s)),
        Some(v) => {
            cx.bad(
                "recipe",
                v,
                "must be the path of a .rhai file (relative to this file)",
            );
            None
        }
        None => {
            cx.error(
                None,
                None,
                "has no `recipe`; name the .rhai file it runs".into(),
            );
            None
        }
    };
    let hosts = match t.get("hosts") {
        None => "local".to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(v @ Value::Array(items)) => {
            let names: Option<Vec<&str>> = items
                .iter()
                .map(|i| i.as_str().filter(|s| !s.trim().is_empty()))
                .collect();
            match names {
                Some(n) if !n.is_empty() => n.join(","),
                _ => {
                    cx.bad(
                        "hosts",
                        v,
                        "must be a pattern as -H takes it, or a list of them",
                    );
                    String::new()
                }
            }
        }
        Some(v) => {
            cx.bad(
                "hosts",
                v,
                "must be a pattern as -H takes it (\"web*\", \"@db\", \"local\")",
            );
            String::new()
        }
    };
    let params = read_params(cx, t.get("params"));
    let timeout = duration(cx, t, "timeout", true);
    let become_ = boolean(cx, t, "become", false);
    let overlap = match t.get("overlap") {
        None => Overlap::Skip,
        Some(v) => match v.as_str() {
            Some("skip") => Overlap::Skip,
            Some("queue") => Overlap::Queue,
            Some("replace") => Overlap::Replace,
            other => {
                let hint = other
                    .and_then(|o| did_you_mean(o, &["skip", "queue", "replace"]))
                    .map(|k| format!("did you mean \"{k}\"? "))
                    .unwrap_or_default();
                cx.bad(
                    "overlap",
                    v,
                    format!("{hint}must be \"skip\", \"queue\" or \"replace\""),
                );
                Overlap::Skip
            }
        },
    };
    let jitter = duration(cx, t, "jitter", false).unwrap_or(Duration::ZERO);
    let catch_up = duration(cx, t, "catch_up", false).filter(|d| !d.is_zero());
    let enabled = boolean(cx, t, "enabled", true);
    let notify = read_notify(cx, t.get("notify"), base);
    let notify_on = match t.get("notify_on") {
        None => NotifyOn::Failure,
        Some(v) => match v.as_str() {
            Some("failure") => NotifyOn::Failure,
            Some("always") => NotifyOn::Always,
            _ => {
                cx.bad("notify_on", v, "must be \"failure\" or \"always\"");
                NotifyOn::Failure
            }
        },
    };
    let alert_after = match t.get("alert_after") {
        None => None,
        // Bounded: the stale check walks that many fires ahead.
        Some(Value::Integer(n)) if (1..=MAX_PERIODS).contains(n) => {
            Some(AlertAfter::Periods(*n as u32))
        }
        Some(v @ Value::String(s)) => match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() && d <= crate::engine::MAX_TIMEOUT => {
                Some(AlertAfter::Duration(d))
            }
            _ => {
                cx.bad(
                    "alert_after",
                    v,
                    "must be a number of periods (1 to 10000) or a duration of at most a year (\"2d\")",
                );
                None
            }
        },
        Some(v) => {
            cx.bad(
                "alert_after",
                v,
                "must be a number of periods (1 to 10000) or a duration of at most a year (\"2d\")",
            );
            None
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(Entry {
        name: name?,
        cron: cron?,
        timezone: timezone?,
        timezone_default,
        recipe: recipe?,
        hosts,
        params,
        timeout,
        become_,
        overlap,
        jitter,
        catch_up,
        enabled,
        notify,
        notify_on,
        alert_after,
        source: cx.location(None),
    })
}

/// An entry's name: lowercase letters, digits and `-` (it names files and URLs).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn boolean(cx: &mut Cx, t: &toml::Table, key: &str, default: bool) -> bool {
    match t.get(key) {
        None => default,
        Some(Value::Boolean(b)) => *b,
        Some(v) => {
            cx.bad(key, v, "must be true or false");
            default
        }
    }
}

/// A duration written like `"30m"`; a timeout is bounded as `--timeout` is.
/// The most periods `alert_after` may count.
const MAX_PERIODS: i64 = 10_000;

fn duration(cx: &mut Cx, t: &toml::Table, key: &str, timeout: bool) -> Option<Duration> {
    let v = t.get(key)?;
    let Value::String(s) = v else {
        cx.bad(
            key,
            v,
            "must be a duration in quotes, like \"30s\", \"10m\" or \"2h\"",
        );
        return None;
    };
    let parsed = humantime::parse_duration(s).map_err(|e| e.to_string());
    // Every duration of an entry is added to dates: beyond a year it is a mistake,
    // and far beyond it would not fit the calendar.
    let checked = if timeout {
        parsed.and_then(crate::engine::check_timeout)
    } else {
        parsed.and_then(|d| {
            if d > crate::engine::MAX_TIMEOUT {
                Err("is more than a year".to_string())
            } else {
                Ok(d)
            }
        })
    };
    match checked {
        Ok(d) => Some(d),
        Err(m) => {
            cx.bad(key, v, format!("{m} (write like \"30s\", \"10m\", \"2h\")"));
            None
        }
    }
}

fn read_params(cx: &mut Cx, v: Option<&Value>) -> Vec<(String, String)> {
    let Some(v) = v else {
        return Vec::new();
    };
    let Value::Table(t) = v else {
        cx.bad("params", v, "must be a table, e.g. params = { keep = 7 }");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in t {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Boolean(b) => b.to_string(),
            other => {
                let field = format!("params.{k} {}", shown(other));
                cx.error(
                    Some("params"),
                    Some(field),
                    "must be a string, number or boolean".into(),
                );
                continue;
            }
        };
        out.push((k.clone(), s));
    }
    out
}

fn read_notify(cx: &mut Cx, v: Option<&Value>, base: &Path) -> Vec<Notify> {
    let items: Vec<&Value> = match v {
        None => return Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
    };
    let mut out = Vec::new();
    for item in items {
        let Some(s) = item.as_str() else {
            cx.bad(
                "notify",
                item,
                "must be a string (mailto:, https://, http:// or exec:)",
            );
            continue;
        };
        match notify_target(s, base) {
            Ok(n) => out.push(n),
            Err(m) => cx.bad("notify", item, m),
        }
    }
    out
}

fn notify_target(s: &str, base: &Path) -> Result<Notify, String> {
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    if let Some(to) = s.strip_prefix("mailto:") {
        let addrs: Vec<String> = to.split(',').map(str::to_string).collect();
        for a in &addrs {
            let ok = matches!(a.split_once('@'), Some((u, d)) if !u.is_empty() && d.contains('.') && !d.contains('@'))
                && !a.contains(['<', '>', '"', '\'', ';', '\\']);
            if !ok {
                return Err(format!("{a:?} is not a mail address like ops@example.com"));
            }
        }
        return Ok(Notify::Mail(addrs));
    }
    if let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err("a webhook URL needs a host, like https://chat.example.com/hooks/…".into());
        }
        return Ok(Notify::Webhook(s.to_string()));
    }
    if let Some(cmd) = s.strip_prefix("exec:") {
        if cmd.is_empty() {
            return Err("exec: needs the path of a command".into());
        }
        let p = PathBuf::from(cmd);
        return Ok(Notify::Exec(if p.is_relative() { base.join(p) } else { p }));
    }
    Err("must start with mailto:, https://, http:// or exec:".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Entry>, Vec<String>> {
        let doc: toml::Table = toml::from_str(text).unwrap();
        entries_from_source(&doc, Path::new("conf/tend.toml"), Some(text))
            .map_err(|es| es.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn every_key_is_read() {
        let es = parse(
            r#"
[hosts.a]
[[schedule]]
name = "nightly-backup"
cron = "30 2 * * *"
timezone = "Europe/Paris"
recipe = "recipes/backup.rhai"
hosts = ["web*", "@db"]
params = { keep = 7, token = "env:TOKEN", fast = true }
timeout = "1h"
become = true
overlap = "replace"
jitter = "5m"
catch_up = "2h"
enabled = false
notify = ["mailto:ops@example.com", "https://chat.example.com/hooks/x", "exec:bin/page"]
notify_on = "always"
alert_after = 3
"#,
        )
        .unwrap();
        let e = &es[0];
        assert_eq!(e.name, "nightly-backup");
        assert_eq!(e.timezone, chrono_tz::Europe::Paris);
        assert!(!e.timezone_default);
        assert_eq!(e.recipe, Path::new("conf/recipes/backup.rhai"));
        assert_eq!(e.hosts, "web*,@db");
        assert!(e.params.contains(&("token".into(), "env:TOKEN".into())));
        assert!(e.params.contains(&("keep".into(), "7".into())));
        assert_eq!(e.timeout, Some(Duration::from_secs(3600)));
        assert!(e.become_ && !e.enabled);
        assert_eq!(e.overlap, Overlap::Replace);
        assert_eq!(e.jitter, Duration::from_secs(300));
        assert_eq!(e.catch_up, Some(Duration::from_secs(7200)));
        assert_eq!(e.notify.len(), 3);
        assert_eq!(e.notify[2], Notify::Exec("conf/bin/page".into()));
        assert_eq!(e.notify_on, NotifyOn::Always);
        assert_eq!(e.alert_after, Some(AlertAfter::Periods(3)));
        assert_eq!(e.source, "conf/tend.toml:3");
    }

    #[test]
    fn defaults() {
        let e = &parse("[[schedule]]\nname = \"a\"\ncron = \"@daily\"\nrecipe = \"r.rhai\"\n")
            .unwrap()[0];
        assert!(e.timezone_default && e.enabled && !e.become_);
        assert_eq!(e.hosts, "local");
        assert_eq!(e.overlap, Overlap::Skip);
        assert_eq!(e.jitter, Duration::ZERO);
        assert_eq!((e.catch_up, e.alert_after, e.timeout), (None, None, None));
        assert_eq!(e.notify_on, NotifyOn::Failure);
    }

    #[test]
    fn every_problem_is_named_with_line_entry_and_field() {
        let errs = parse(
            r#"[[schedule]]
name = "nightly-backup"
cron = "0 25 * * *"
recipe = "r.rhai"
crn = "x"
overlap = "skp"

[[schedule]]
name = "Bad Name"
cron = "@daily"

[[schedule]]
name = "nightly-backup"
cron = "@daily"
recipe = "r.rhai"
timezone = "Europe/Pari"
notify = "ftp://x"
"#,
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "conf/tend.toml:5: schedule \"nightly-backup\": unknown key \"crn\": did you mean \"cron\"? an entry takes name, cron, timezone, recipe, hosts, params, timeout, become, overlap, jitter, catch_up, enabled, notify, notify_on, alert_after",
                "conf/tend.toml:3: schedule \"nightly-backup\": cron \"0 25 * * *\": hour 25 is out of range 0-23",
                "conf/tend.toml:6: schedule \"nightly-backup\": overlap \"skp\": did you mean \"skip\"? must be \"skip\", \"queue\" or \"replace\"",
                "conf/tend.toml:9: schedule #2: name \"Bad Name\": must be a string of lowercase letters, digits and `-` (like \"nightly-backup\")",
                "conf/tend.toml:8: schedule #2: has no `recipe`; name the .rhai file it runs",
                "conf/tend.toml:16: schedule \"nightly-backup\": timezone \"Europe/Pari\": is not an IANA time zone",
                "conf/tend.toml:17: schedule \"nightly-backup\": notify \"ftp://x\": must start with mailto:, https://, http:// or exec:",
            ]
        );
        let dup = parse(
            "[[schedule]]\nname = \"a\"\ncron = \"@daily\"\nrecipe = \"r\"\n[[schedule]]\nname = \"a\"\ncron = \"@daily\"\nrecipe = \"r\"\n",
        )
        .unwrap_err();
        assert_eq!(
            dup,
            ["conf/tend.toml:6: schedule \"a\": name \"a\": is already used by the entry at conf/tend.toml:1; names must be unique"]
        );
    }

    #[test]
    fn no_schedule_is_no_entries_and_a_wrong_shape_is_an_error() {
        assert!(parse("[hosts.a]\n").unwrap().is_empty());
        assert!(parse("schedule = 3\n").unwrap_err()[0].contains("array of tables"));
        // An inline array has no headers to find: the file is named without a line.
        let e = parse("schedule = [{ name = \"a\", cron = \"@dayly\", recipe = \"r\" }]\n")
            .unwrap_err();
        assert!(
            e[0].starts_with("conf/tend.toml: schedule \"a\": cron \"@dayly\""),
            "{e:?}"
        );
    }
}
