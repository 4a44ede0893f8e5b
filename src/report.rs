//! Rendering for people (and `--json`). The only module that prints, besides `cli`.

use crate::out::outln;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comfy_table::{presets, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::event::{Event, Sink};
use crate::recipe::params::ParamDecl;
use crate::recipe::Recipe;
use crate::runner::{Outcome, RollbackReport, RunResult};
use crate::state::RunMeta;

#[derive(Clone)]
pub struct Human {
    color: bool,
    verbose: u8,
    quiet: bool,
    live: Option<Arc<Live>>,
    /// How many hosts the run has: per-host end lines only for fleets.
    hosts_hint: usize,
}

/// On a terminal, during a fleet run: one live line per running host and an overall
/// bar; everything else is printed above them.
pub struct Live {
    mp: MultiProgress,
    total: ProgressBar,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Live {
    fn new(hosts: usize) -> Live {
        let mp = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stdout());
        let total = mp.add(ProgressBar::new(hosts as u64));
        total.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} hosts  {elapsed}")
                .expect("template"),
        );
        Live {
            mp,
            total,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn host_bar(&self, host: &str) -> ProgressBar {
        let mut bars = self.bars.lock().expect("bars");
        bars.entry(host.to_string())
            .or_insert_with(|| {
                let b = self
                    .mp
                    .insert_before(&self.total, ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<16} {wide_msg}")
                        .expect("template"),
                );
                b.set_prefix(host.to_string());
                b.enable_steady_tick(Duration::from_millis(120));
                b
            })
            .clone()
    }

    fn host_done(&self, host: &str) {
        if let Some(b) = self.bars.lock().expect("bars").remove(host) {
            b.finish_and_clear();
        }
        self.total.inc(1);
    }
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";

impl Human {
    pub fn new(color: bool, verbose: u8, quiet: bool) -> Self {
        Human {
            color,
            verbose,
            quiet,
            live: None,
            hosts_hint: 1,
        }
    }

    /// Live per-host lines for a fleet run on a terminal.
    pub fn with_live(&self, hosts: usize) -> Human {
        use std::io::IsTerminal;
        let mut h = self.clone();
        h.hosts_hint = hosts;
        if hosts > 1 && !self.quiet && std::io::stdout().is_terminal() {
            h.live = Some(Arc::new(Live::new(hosts)));
        }
        h
    }

    fn out(&self, line: String) {
        match &self.live {
            Some(live) => {
                let _ = live.mp.println(line);
            }
            None => outln!("{line}"),
        }
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    pub fn line(&self, text: &str) {
        if !self.quiet {
            outln!("{text}");
        }
    }

    pub fn error(&self, text: &str) {
        eprintln!("{} {text}", self.paint(RED, "error:"));
    }

    /// A one-line remark on stderr (stdout may be JSON), unless --quiet.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} {text}", self.paint(YELLOW, "note:"));
        }
    }

    /// A unified diff, coloured, not indented (`tend vet` of an edited recipe).
    pub fn plain_diff(&self, diff: &str) {
        if self.quiet {
            return;
        }
        for l in diff.lines() {
            outln!("{}", self.diff_line(l));
        }
    }

    /// One line of a unified diff, coloured by what it is.
    fn diff_line(&self, l: &str) -> String {
        if l.starts_with("+++") || l.starts_with("---") {
            self.paint(BOLD, l)
        } else if l.starts_with('+') {
            self.paint(GREEN, l)
        } else if l.starts_with('-') {
            self.paint(RED, l)
        } else if l.starts_with("@@") {
            self.paint(CYAN, l)
        } else {
            l.to_string()
        }
    }

    /// The `Vetted:` line of `tend show`.
    pub fn show_vetting(&self, status: &std::result::Result<crate::trust::Status, String>) {
        match status {
            Ok(s) if s.is_vetted() => {
                let d = s.describe();
                let d = d.strip_prefix("vetted ").unwrap_or(&d);
                outln!("Vetted: {}, {d}", self.paint(GREEN, "yes"))
            }
            Ok(s) => outln!("Vetted: {}, {}", self.paint(YELLOW, "no"), s.describe()),
            Err(e) => outln!("Vetted: {}: {e}", self.paint(RED, "cannot tell")),
        }
    }

    fn diff(&self, diff: &str) {
        for l in diff.lines() {
            self.out(format!("      {}", self.diff_line(l)));
        }
    }

    fn event(&self, e: &Event, dry_run: bool) {
        match e {
            Event::RunStart {
                run_id,
                recipe,
                dry_run,
                ..
            } => {
                if !self.quiet {
                    let mode = if *dry_run {
                        " (dry-run: nothing will be changed)"
                    } else {
                        ""
                    };
                    self.out(format!(
                        "{} {recipe}  run {run_id}{mode}",
                        self.paint(BOLD, "tend")
                    ));
                }
            }
            Event::HostStart { host } => {
                if let Some(live) = &self.live {
                    live.host_bar(host).set_message("connecting");
                }
            }
            Event::Step {
                host, step, report, ..
            } => {
                if let Some(live) = &self.live {
                    live.host_bar(host)
                        .set_message(format!("step {step}: {} {}", report.op, report.subject));
                }
                if self.quiet || (!report.changed && !report.unknown && self.verbose == 0) {
                    return;
                }
                let (mark, note) = if report.unknown {
                    (
                        self.paint(YELLOW, "?"),
                        "  (not run in a dry-run: effect unknown)",
                    )
                } else if report.changed {
                    (self.paint(YELLOW, "~"), "")
                } else {
                    (self.paint(DIM, "="), "")
                };
                self.out(format!(
                    "  {mark} {host}  {:<18} {}{note}",
                    report.op, report.subject
                ));
                if let Some(d) = &report.diff {
                    if report.changed && (dry_run || self.verbose > 0) {
                        self.diff(d);
                    }
                }
                if self.verbose > 0 {
                    if let Some(out) = report.stdout.as_deref().filter(|s| !s.is_empty()) {
                        for l in out.lines() {
                            self.out(format!("      | {l}"));
                        }
                    }
                }
            }
            Event::StepFailed { host, error, .. } => {
                let line = format!("  {} {host}  {error}", self.paint(RED, "✗"));
                match self.live {
                    Some(_) => self.out(line),
                    None => eprintln!("{line}"),
                }
            }
            Event::Log {
                host,
                level,
                message,
            } => {
                if !self.quiet {
                    let tag = match level.as_str() {
                        "warn" => self.paint(YELLOW, "warn"),
                        "error" => self.paint(RED, "error"),
                        _ => self.paint(CYAN, "info"),
                    };
                    self.out(format!("  {tag} {host}  {message}"));
                }
            }
            Event::Undo {
                host,
                action,
                result,
                ..
            } => {
                if !self.quiet {
                    self.out(format!(
                        "  {} {host}  {action}: {result}",
                        self.paint(CYAN, "↺")
                    ));
                }
            }
            Event::Rollback {
                host,
                reverted,
                incomplete,
            } => {
                if incomplete.is_empty() {
                    self.out(format!(
                        "  {} {host}  rolled back {reverted} change(s)",
                        self.paint(CYAN, "↺")
                    ));
                } else {
                    self.out(format!(
                        "  {} {host}  rollback INCOMPLETE ({reverted} reverted); not undone:",
                        self.paint(RED, "!")
                    ));
                    for i in incomplete {
                        self.out(format!("      - {i}"));
                    }
                }
            }
            Event::HostEnd {
                host,
                outcome,
                changed,
                duration_ms,
                error,
                ..
            } => {
                let fleet = self.live.is_some() || self.hosts_hint > 1;
                if let Some(live) = &self.live {
                    live.host_done(host);
                }
                if fleet && !self.quiet {
                    let mark = if outcome == "ok" || outcome == "skipped" {
                        self.paint(GREEN, "✓")
                    } else {
                        self.paint(RED, "✗")
                    };
                    let why = match (outcome.as_str(), error) {
                        ("ok", _) | (_, None) => String::new(),
                        (_, Some(e)) => format!(": {}", e.lines().next().unwrap_or_default()),
                    };
                    self.out(format!(
                        "  {mark} {host}  {outcome}, {changed} changed, {:.1}s{why}",
                        *duration_ms as f64 / 1000.0
                    ));
                }
            }
            Event::RunEnd {
                run_id,
                outcome,
                changed,
                unknown,
                duration_ms,
            } => {
                if let Some(live) = &self.live {
                    live.total.finish_and_clear();
                }
                let verb = if dry_run { "to change" } else { "changed" };
                let unknown = if *unknown > 0 {
                    format!(", {unknown} unknown")
                } else {
                    String::new()
                };
                let outcome_text = match outcome.as_str() {
                    "ok" => self.paint(GREEN, "ok"),
                    o => self.paint(RED, o),
                };
                self.out(format!(
                    "{outcome_text}: {changed} {verb}{unknown} in {:.1}s  (run {run_id})",
                    *duration_ms as f64 / 1000.0
                ));
            }
        }
    }

    /// The end-of-run table of a fleet run.
    pub fn summary(&self, result: &RunResult) {
        if self.quiet || result.hosts.len() < 2 {
            return;
        }
        let mut t = table(&[
            "HOST",
            "OUTCOME",
            "CHANGED",
            "UNCHANGED",
            "UNKNOWN",
            "DURATION",
            "ERROR",
        ]);
        for h in &result.hosts {
            let err = h
                .error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("");
            let err: String = err.chars().take(70).collect();
            t.add_row(vec![
                h.host.clone(),
                h.outcome.as_str().to_string(),
                h.changed.to_string(),
                h.unchanged.to_string(),
                h.unknown.to_string(),
                format!("{:.1}s", h.duration_ms as f64 / 1000.0),
                err,
            ]);
        }
        outln!("{t}");
        let count =
            |f: &dyn Fn(Outcome) -> bool| result.hosts.iter().filter(|h| f(h.outcome)).count();
        outln!(
            "{} hosts: {} ok, {} failed, {} rolled back, {} unreachable, {} locked, {} skipped",
            result.hosts.len(),
            count(&|o| o == Outcome::Ok),
            count(&|o| o == Outcome::Failed || o == Outcome::RollbackIncomplete),
            count(&|o| o == Outcome::RolledBack || o == Outcome::RollbackIncomplete),
            count(&|o| o == Outcome::Unreachable),
            count(&|o| o == Outcome::Locked),
            count(&|o| o == Outcome::Skipped),
        );
    }

    /// For `tend exec`: only the live lines, the output comes grouped at the end.
    pub fn progress_only(&self, e: &Event) {
        if let Some(live) = &self.live {
            match e {
                Event::HostStart { host } => live.host_bar(host).set_message("running"),
                Event::HostEnd { host, .. } => live.host_done(host),
                _ => {}
            }
        }
    }

    /// `tend exec`: hosts with identical output and exit code folded into one block.
    pub fn exec_report(
        &self,
        hosts: &[(
            String,
            Outcome,
            Option<crate::ops::StepReport>,
            Option<String>,
        )],
    ) {
        if let Some(live) = &self.live {
            live.total.finish_and_clear();
        }
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for (host, outcome, step, error) in hosts {
            let key = match (step, outcome) {
                (Some(s), _) => {
                    let mut k = format!("exit {}", s.code.unwrap_or(-1));
                    let out = s.stdout.clone().unwrap_or_default();
                    let err = s.stderr.clone().unwrap_or_default();
                    if !out.is_empty() {
                        k.push('\n');
                        k.push_str(out.trim_end());
                    }
                    if !err.is_empty() {
                        k.push_str("\n[stderr]\n");
                        k.push_str(err.trim_end());
                    }
                    k
                }
                (None, o) => format!("{}: {}", o.as_str(), error.clone().unwrap_or_default()),
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, hs)) => hs.push(host.clone()),
                None => groups.push((key, vec![host.clone()])),
            }
        }
        for (key, hs) in &groups {
            let mut lines = key.lines();
            let head = lines.next().unwrap_or_default();
            let style = if head == "exit 0" { GREEN } else { RED };
            outln!("{} ({head})", self.paint(style, &hs.join(", ")));
            for l in lines {
                outln!("    {l}");
            }
        }
    }

    pub fn ping_table(&self, results: &[crate::ping::PingResult]) {
        let mut t = table(&["HOST", "STATUS", "CONNECT", "EXEC", "ERROR"]);
        for r in results {
            t.add_row(vec![
                r.host.clone(),
                if r.ok { "ok".into() } else { "FAILED".into() },
                format!("{:.1} ms", r.connect_ms),
                format!("{:.1} ms", r.exec_ms),
                r.error.clone().unwrap_or_default(),
            ]);
        }
        outln!("{t}");
    }

    pub fn show_recipe(&self, r: &Recipe, decls: &[ParamDecl], irreversible: &[String]) {
        outln!("{}  {}", self.paint(BOLD, &r.name), r.path.display());
        let doc = r.doc();
        if !doc.is_empty() {
            outln!();
            for l in doc.lines() {
                outln!("  {l}");
            }
        }
        outln!("\nParameters:");
        if decls.is_empty() {
            outln!("  (none)");
        }
        for d in decls {
            let default = match &d.default {
                Some(v) => format!(" = {v}"),
                None => " (required)".into(),
            };
            outln!(
                "  {:<14} {:<9}{default}{}",
                d.name,
                d.ty.as_str(),
                if d.doc.is_empty() {
                    String::new()
                } else {
                    format!("  // {}", d.doc)
                }
            );
        }
        outln!();
        if irreversible.is_empty() {
            outln!("Reversible: yes, every step can be rolled back");
        } else {
            outln!("Reversible: no; these steps leave a barrier (sh without undo):");
            for s in irreversible {
                outln!("  {s}");
            }
        }
        if !r.modules.is_empty() {
            let names: Vec<&str> = r.modules.iter().map(|(n, _)| n.as_str()).collect();
            outln!("Imports: {}", names.join(", "));
        }
        outln!("Scope: {}", r.scope_display());
        outln!("Hash: {}", r.hash);
    }

    pub fn runs_table(&self, runs: &[RunMeta]) {
        if runs.is_empty() {
            outln!("no runs yet");
            return;
        }
        let mut t = table(&[
            "RUN", "RECIPE", "HOSTS", "STARTED", "DURATION", "OUTCOME", "CHANGED",
        ]);
        for r in runs {
            let started = r.started.get(..19).unwrap_or(&r.started).replace('T', " ");
            let hosts = match r.hosts.as_slice() {
                [one] => one.clone(),
                many => format!("{} hosts", many.len()),
            };
            t.add_row(vec![
                r.run_id.clone(),
                r.recipe.clone(),
                hosts,
                started,
                format!("{:.1}s", r.duration_ms as f64 / 1000.0),
                r.effective_outcome(),
                r.changed.to_string(),
            ]);
        }
        outln!("{t}");
    }

    pub fn audit_table(&self, events: &[serde_json::Value]) {
        for e in events {
            let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let ts = s("ts");
            let ts = ts.get(..19).unwrap_or(&ts).replace('T', " ");
            let what = match s("event").as_str() {
                "run_start" => format!(
                    "{} {}{}",
                    s("recipe"),
                    s("recipe_hash"),
                    if e.get("vetted") == Some(&serde_json::Value::Bool(false)) {
                        " unvetted"
                    } else {
                        ""
                    }
                ),
                "vet" | "revoke" => format!("{} {} by {}", s("recipe"), s("recipe_hash"), s("by")),
                "step" => format!("{} {} {}", s("op"), s("subject"), s("diff_summary")),
                "step_failed" | "host_end" => format!("{} {}", s("outcome"), s("error"))
                    .trim()
                    .to_string(),
                "run_end" => format!(
                    "{} changed={}",
                    s("outcome"),
                    e.get("changed").and_then(|v| v.as_u64()).unwrap_or(0)
                ),
                "rollback" => format!(
                    "reverted={} incomplete={}",
                    e.get("reverted").and_then(|v| v.as_u64()).unwrap_or(0),
                    e.get("incomplete")
                        .and_then(|v| v.as_array())
                        .map(|a| a.len())
                        .unwrap_or(0)
                ),
                _ => String::new(),
            };
            outln!(
                "{:>5} {ts} {:<21} {:<10} {:<12} {:<11} {what}",
                e.get("seq").and_then(|v| v.as_u64()).unwrap_or(0),
                s("run_id"),
                s("user"),
                s("event"),
                s("host"),
            );
        }
    }
}

/// A plain table in the style of `ps`: no borders, left-aligned columns.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.to_vec());
    t
}

/// Where run events go: rendered for people, or as JSON Lines.
#[derive(Clone)]
pub enum Output {
    Human(Human, bool),
    Json,
}

impl Output {
    pub fn sink(&self) -> Sink {
        match self.clone() {
            Output::Human(h, dry_run) => Arc::new(move |e: &Event| h.event(e, dry_run)),
            Output::Json => {
                let out = Arc::new(Mutex::new(std::io::stdout()));
                Arc::new(move |e: &Event| {
                    if let Ok(line) = serde_json::to_string(e) {
                        let mut o = out.lock().expect("stdout lock");
                        let _ = writeln!(o, "{line}");
                    }
                })
            }
        }
    }

    pub fn rollback_summary(&self, run_id: &str, report: &RollbackReport, dry_run: bool) {
        match self {
            Output::Json => {
                let v = serde_json::json!({
                    "event": "rollback_end",
                    "run_id": run_id,
                    "dry_run": dry_run,
                    "reverted": report.reverted,
                    "complete": report.incomplete.is_empty(),
                    "incomplete": report.incomplete,
                });
                outln!("{v}");
            }
            Output::Human(h, _) => {
                if dry_run {
                    h.line(&format!("rollback of {run_id}: dry-run, nothing changed"));
                } else if report.incomplete.is_empty() {
                    h.line(&format!(
                        "rollback of {run_id}: complete ({} reverted)",
                        report.reverted
                    ));
                } else {
                    h.line(&format!(
                        "rollback of {run_id}: INCOMPLETE, {} step(s) could not be undone",
                        report.incomplete.len()
                    ));
                }
            }
        }
    }
}
