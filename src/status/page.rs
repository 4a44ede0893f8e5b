//! The status page (`/`) and a run's page (`/runs/<id>`): plain server-rendered HTML
//! with inline CSS and SVG, no script, laid out to read on a phone. Everything that
//! comes from a file (names, hosts, outcomes, audit fields) is escaped; the audit log
//! already holds secrets as `***`, and a run's page shows only what it holds.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::schedule::saved::{EntryState, Fire};
use crate::schedule::{zone, Entry};
use crate::state::{check_run_id, RunMeta};

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;padding:0 .8em 2em;color:#1b1b1b;background:#fafafa}
header{padding:.6em 0;border-bottom:1px solid #ddd;margin-bottom:.8em}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:0 0 .4em;word-break:break-all}
.sub{color:#555;font-size:.9em}
main{max-width:60em;margin:auto}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.7em .9em;margin:0 0 .9em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em .8em;margin:.3em 0}
dt{color:#555}dd{margin:0;word-break:break-word}
.badge{display:inline-block;padding:0 .45em;border-radius:4px;font-size:.85em;color:#fff;background:#777;vertical-align:middle}
.strip{display:flex;flex-wrap:wrap;gap:2px;margin:.5em 0}
.mark{display:inline-block;width:.8em;height:1.4em;border-radius:2px;background:#777}
.o-ok{background:#2e7d32}
.o-failed,.o-rolled_back,.o-rollback_incomplete,.o-unreachable,.o-cancelled,.o-interrupted,.o-damaged{background:#c62828}
.o-locked,.o-skipped,.o-refused{background:#ef6c00}.o-running{background:#1565c0}
.stale{background:#6a1b9a}.off{background:#9e9e9e}
svg.plot{width:100%;height:5em;display:block;background:#f4f6f8;border-radius:4px}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{text-align:left;padding:.25em .4em;border-bottom:1px solid #eee;vertical-align:top}
td.n{text-align:right;white-space:nowrap}
.tbl{overflow-x:auto}
pre{white-space:pre-wrap;word-break:break-all;margin:.2em 0;font-size:.88em}
.add{color:#1b5e20}.del{color:#b71c1c}
a{color:#0d47a1}
";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// A CSS class for an outcome: the known ones are coloured, anything else is grey.
fn outcome_class(outcome: &str) -> String {
    let safe: String = outcome
        .chars()
        .filter(|c| c.is_ascii_lowercase() || *c == '_')
        .collect();
    format!("o-{safe}")
}

fn badge(outcome: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        outcome_class(outcome),
        esc(outcome)
    )
}

/// A link to the run's page, when `id` is shaped like a run id (it came from a file).
fn run_link(id: &str, text: &str) -> String {
    if check_run_id(id).is_ok() {
        format!("<a href=\"/runs/{}\">{}</a>", esc(id), esc(text))
    } else {
        esc(text)
    }
}

fn secs(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
    }
}

/// What the index shows, gathered by the server.
pub struct Overview<'a> {
    pub now: DateTime<Utc>,
    pub daemon_up: bool,
    pub state_dir: &'a str,
    pub entries: &'a [(Entry, Option<EntryState>)],
    /// The latest runs of any kind, newest first.
    pub recent: &'a [RunMeta],
}

pub fn index(o: &Overview) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<header><h1>tend</h1><div class=\"sub\">{} · {} · state {}</div></header>",
        if o.daemon_up {
            "scheduler daemon running"
        } else {
            "served without the scheduler daemon"
        },
        esc(&o.now.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        esc(o.state_dir),
    );
    if o.entries.is_empty() {
        b.push_str("<section><p>No [[schedule]] entries in tend.toml.</p></section>");
    }
    for (entry, state) in o.entries {
        entry_section(&mut b, entry, state.as_ref(), o.now);
    }
    b.push_str("<section><h2>Recent runs</h2>");
    if o.recent.is_empty() {
        b.push_str("<p>No runs yet.</p>");
    } else {
        b.push_str(
            "<div class=\"tbl\"><table><tr><th>Run</th><th>Recipe</th><th>Hosts</th><th>Outcome</th><th>Took</th></tr>",
        );
        for r in o.recent {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                run_link(&r.run_id, &r.run_id),
                esc(&r.recipe),
                esc(&r.hosts.join(", ")),
                badge(r.effective_outcome().as_str()),
                secs(r.duration_ms),
            );
        }
        b.push_str("</table></div>");
    }
    b.push_str("</section>");
    page("tend status", &b)
}

fn entry_section(b: &mut String, e: &Entry, state: Option<&EntryState>, now: DateTime<Utc>) {
    let paused = state.is_some_and(|s| s.paused);
    let _ = write!(
        b,
        "<section class=\"entry\" id=\"s-{0}\"><h2><span class=\"name\">{0}</span> ",
        esc(&e.name)
    );
    if let Some(o) = state.and_then(|s| s.last_outcome.as_deref()) {
        b.push_str(&badge(o));
    }
    if !e.enabled {
        b.push_str(" <span class=\"badge off\">disabled</span>");
    }
    if paused {
        b.push_str(" <span class=\"badge off\">paused</span>");
    }
    if crate::notify::stale(e, state, now) {
        b.push_str(" <span class=\"badge stale\">stale</span>");
    }
    b.push_str("</h2><dl>");
    let next = if e.cron.is_reboot() {
        "when the daemon starts".to_string()
    } else if !e.enabled {
        "never (disabled)".to_string()
    } else if paused {
        "none while paused".to_string()
    } else {
        e.next_fires(now, 1)
            .first()
            .map(|t| zone::format_at(*t, e.timezone))
            .unwrap_or_else(|| "never".into())
    };
    let mut row = |name: &str, class: &str, html: String| {
        let _ = write!(b, "<dt>{name}</dt><dd class=\"{class}\">{html}</dd>");
    };
    row("Next fire", "next", esc(&next));
    let last = match state {
        Some(s) => match (&s.last_outcome, &s.last_run_id) {
            (Some(o), id) => {
                let mut h = format!("<span class=\"outcome\">{}</span>", esc(o));
                if let Some(id) = id {
                    h.push_str(&format!(" · {}", run_link(id, id)));
                }
                if let Some(t) = s.last_fire {
                    h.push_str(&format!(
                        " · fired {}",
                        esc(&zone::format_at(t.with_timezone(&Utc), e.timezone))
                    ));
                }
                h
            }
            (None, _) => "not run yet".into(),
        },
        None => "not run yet".into(),
    };
    row("Last outcome", "last", last);
    row(
        "Cron",
        "cron",
        format!(
            "<code>{}</code> in {}",
            esc(e.cron.as_str()),
            esc(e.timezone.name())
        ),
    );
    row("Recipe", "recipe", esc(&e.recipe.display().to_string()));
    row("Hosts", "hosts", esc(&e.hosts));
    if let Some(s) = state {
        if let Some(t) = s.last_success {
            row(
                "Last success",
                "success",
                esc(&zone::format_at(t.with_timezone(&Utc), e.timezone)),
            );
        }
        if s.consecutive_failures > 0 {
            row(
                "Failures in a row",
                "failures",
                s.consecutive_failures.to_string(),
            );
        }
        if s.missed_fires > 0 {
            row("Missed fires", "missed", s.missed_fires.to_string());
        }
    }
    b.push_str("</dl>");
    let history = state.map(|s| s.history.as_slice()).unwrap_or_default();
    if !history.is_empty() {
        b.push_str("<div class=\"strip\" aria-label=\"last outcomes, oldest first\">");
        for f in history {
            let title = format!(
                "{} · {} · {}",
                f.fired
                    .map(|t| zone::format_at(t.with_timezone(&Utc), e.timezone))
                    .unwrap_or_default(),
                f.outcome,
                secs(f.duration_ms)
            );
            let mark = format!(
                "<span class=\"mark {}\" title=\"{}\"></span>",
                outcome_class(&f.outcome),
                esc(&title)
            );
            if check_run_id(&f.run_id).is_ok() {
                let _ = write!(b, "<a href=\"/runs/{}\">{mark}</a>", esc(&f.run_id));
            } else {
                b.push_str(&mark);
            }
        }
        b.push_str("</div>");
        b.push_str(&plot(history));
    }
    b.push_str("</section>");
}

/// Run durations over the remembered fires as an inline SVG line, each point
/// coloured by its outcome; the scale (the longest run) is written in the corner.
fn plot(history: &[Fire]) -> String {
    const W: f64 = 300.0;
    const H: f64 = 60.0;
    const PAD: f64 = 6.0;
    let max = history
        .iter()
        .map(|f| f.duration_ms)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = if history.len() > 1 {
        (W - 2.0 * PAD) / (history.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<(f64, f64)> = history
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let x = PAD + step * i as f64;
            let y = H - PAD - (f.duration_ms as f64 / max) * (H - 2.0 * PAD - 10.0);
            (x, y)
        })
        .collect();
    let mut s = format!(
        "<svg class=\"plot\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"run durations, longest {}\"><text x=\"4\" y=\"11\" font-size=\"9\" fill=\"#555\">max {}</text>",
        esc(&secs(max as u64)),
        esc(&secs(max as u64)),
    );
    let line: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#546e7a\" stroke-width=\"1\" points=\"{}\"/>",
        line.join(" ")
    );
    for ((x, y), f) in points.iter().zip(history) {
        let colour = match f.outcome.as_str() {
            "ok" => "#2e7d32",
            "locked" | "skipped" | "refused" => "#ef6c00",
            _ => "#c62828",
        };
        let _ = write!(
            s,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.2\" fill=\"{colour}\"><title>{}</title></circle>",
            esc(&format!("{} {}", f.outcome, secs(f.duration_ms)))
        );
    }
    s.push_str("</svg>");
    s
}

/// A run's page: what `run.json` says about it and its audit events, steps with
/// their diffs. `None` when neither exists.
pub fn run(id: &str, meta: Option<&RunMeta>, events: &[Value]) -> Option<String> {
    if meta.is_none() && events.is_empty() {
        return None;
    }
    let mut b = String::new();
    let _ = write!(
        b,
        "<header><h1>Run <span class=\"run-id\">{}</span></h1><div class=\"sub\"><a href=\"/\">← all schedules</a></div></header>",
        esc(id)
    );
    if let Some(m) = meta {
        b.push_str("<section><dl>");
        let mut row = |name: &str, html: String| {
            let _ = write!(b, "<dt>{name}</dt><dd>{html}</dd>");
        };
        row("Outcome", badge(m.effective_outcome().as_str()));
        row("Recipe", esc(&format!("{} ({})", m.recipe, m.recipe_path)));
        row("Hosts", esc(&m.hosts.join(", ")));
        row("By", esc(&m.user));
        row("Started", esc(&m.started));
        row("Took", secs(m.duration_ms));
        row("Changed", m.changed.to_string());
        if m.dry_run {
            row("Dry run", "yes".into());
        }
        b.push_str("</dl></section>");
    }
    b.push_str("<section><h2>Audit events</h2><div class=\"tbl\"><table><tr><th>#</th><th>Event</th><th>Host</th><th>What</th></tr>");
    for e in events {
        let s = |k: &str| e.get(k).map(show).unwrap_or_default();
        let what = match e.get("event").and_then(Value::as_str) {
            Some("step") => {
                let mut w = format!("<code>{}</code> {}", esc(&s("op")), esc(&s("subject")));
                if e.get("changed") == Some(&Value::Bool(true)) {
                    w.push_str(" · changed");
                }
                if let Some(d) = e.get("diff").and_then(Value::as_str) {
                    w.push_str(&diff(d));
                } else if let Some(d) = e.get("diff_summary").and_then(Value::as_str) {
                    let _ = write!(w, " · diff <code>{}</code>", esc(d));
                }
                w
            }
            _ => rest(e),
        };
        let _ = write!(
            b,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{what}</td></tr>",
            esc(&s("seq")),
            esc(&s("event")),
            esc(&s("host")),
        );
    }
    b.push_str("</table></div></section>");
    Some(page(&format!("tend run {id}"), &b))
}

/// A field's value as text: strings as they are, lists and maps (hosts, params)
/// spelled out as people write them.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(show).collect::<Vec<_>>().join(", "),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// The fields of an event other than the chain and the ones in their own columns.
fn rest(e: &Value) -> String {
    const SHOWN: [&str; 8] = [
        "seq", "ts", "prev", "hash", "event", "host", "run_id", "user",
    ];
    let Some(obj) = e.as_object() else {
        return String::new();
    };
    obj.iter()
        .filter(|(k, _)| !SHOWN.contains(&k.as_str()))
        .map(|(k, v)| format!("{}={}", esc(k), esc(&show(v))))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A unified diff with added and removed lines coloured.
fn diff(text: &str) -> String {
    let mut out = String::from("<pre class=\"diff\">");
    for line in text.lines() {
        let class = match line.chars().next() {
            Some('+') if !line.starts_with("+++") => "add",
            Some('-') if !line.starts_with("---") => "del",
            _ => "",
        };
        let _ = writeln!(out, "<span class=\"{class}\">{}</span>", esc(line));
    }
    out.push_str("</pre>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_a_file_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(outcome_class("ok\" onclick=\"x"), "o-okonclickx");
        let html = run(
            "20270102-023000-123-0a1b2c3d",
            None,
            &[
                serde_json::json!({"seq": 1, "event": "step", "op": "fs::file",
                "subject": "<script>alert(1)</script>", "diff": "+<b>\n-x"}),
            ],
        )
        .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("<span class=\"add\">+&lt;b&gt;</span>"),
            "{html}"
        );
        assert!(run("20270102-023000-123-0a1b2c3d", None, &[]).is_none());
    }
}
