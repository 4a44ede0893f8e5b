//! Rendering for people (and `--json`). The only module that prints, besides `cli`.

use crate::out::outln;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comfy_table::{presets, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::app::{Outcome, RollbackReport, RunResult};
use crate::event::{Event, Sink};
use crate::recipe::params::ParamDecl;
use crate::recipe::Recipe;
use crate::state::RunMeta;

#[derive(Clone)]
pub struct Human {
    /// Colours on stdout, and on stderr: each only when that stream is a terminal
    /// (or `--color always`).
    color: bool,
    color_err: bool,
    verbose: u8,
    quiet: bool,
    live: Option<Arc<Live>>,
    /// How many hosts the run has: per-host end lines only for fleets.
    hosts_hint: usize,
    /// Hosts whose failed step was printed already: their end need not repeat it.
    failures_shown: Arc<Mutex<HashSet<String>>>,
}

/// On a terminal, during a run: one live line per running host (its current step;
/// for a single host, with the step's elapsed time: a backup can take an hour) and,
/// for a fleet, an overall bar; everything else is printed above them.
pub struct Live {
    mp: MultiProgress,
    total: ProgressBar,
    bars: Mutex<HashMap<String, ProgressBar>>,
    single: bool,
}

impl Live {
    fn new(hosts: usize) -> Live {
        let mp = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stdout());
        let single = hosts == 1;
        let total = if single {
            ProgressBar::hidden()
        } else {
            mp.add(ProgressBar::new(hosts as u64))
        };
        total.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} hosts  {elapsed}")
                .expect("template"),
        );
        Live {
            mp,
            total,
            bars: Mutex::new(HashMap::new()),
            single,
        }
    }

    fn host_bar(&self, host: &str) -> ProgressBar {
        let mut bars = self.bars.lock().expect("bars");
        bars.entry(host.to_string())
            .or_insert_with(|| {
                let (b, template) = if self.single {
                    let b = self.mp.add(ProgressBar::new_spinner());
                    (b, "  {spinner} {prefix}  {msg}  {elapsed}")
                } else {
                    let b = self
                        .mp
                        .insert_before(&self.total, ProgressBar::new_spinner());
                    (b, "  {spinner} {prefix:<16} {wide_msg}")
                };
                b.set_style(ProgressStyle::with_template(template).expect("template"));
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
    pub fn new(color: bool, color_err: bool, verbose: u8, quiet: bool) -> Self {
        Human {
            color,
            color_err,
            verbose,
            quiet,
            live: None,
            hosts_hint: 1,
            failures_shown: Arc::default(),
        }
    }

    /// Live per-host lines for a run on a terminal.
    pub fn with_live(&self, hosts: usize) -> Human {
        use std::io::IsTerminal;
        // No host selected means this machine.
        let hosts = hosts.max(1);
        let mut h = self.clone();
        h.hosts_hint = hosts;
        if !self.quiet && std::io::stdout().is_terminal() {
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
        paint(self.color, style, text)
    }

    /// [`Human::paint`] for a line that goes to stderr.
    fn paint_err(&self, style: &str, text: &str) -> String {
        paint(self.color_err, style, text)
    }

    pub fn line(&self, text: &str) {
        if !self.quiet {
            outln!("{}", escape_lines(text, ""));
        }
    }

    pub fn error(&self, text: &str) {
        eprintln!(
            "{} {}",
            self.paint_err(RED, "error:"),
            escape_lines(text, "  ")
        );
    }

    /// A one-line remark on stderr (stdout may be JSON), unless --quiet.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} {}", self.paint_err(YELLOW, "note:"), escape(text));
        }
    }

    /// Something went wrong that does not change the outcome; on stderr, even --quiet.
    pub fn warn(&self, text: &str) {
        eprintln!(
            "{} {}",
            self.paint_err(YELLOW, "warning:"),
            escape_lines(text, "  ")
        );
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

    /// One line of a unified diff, escaped and coloured by what it is.
    fn diff_line(&self, l: &str) -> String {
        let l = &escape_keeping_tabs(l);
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
                outln!("Vetted: {}, {}", self.paint(GREEN, "yes"), escape(d))
            }
            Ok(s) => outln!(
                "Vetted: {}, {}",
                self.paint(YELLOW, "no"),
                escape(&s.describe())
            ),
            Err(e) => outln!("Vetted: {}: {}", self.paint(RED, "cannot tell"), escape(e)),
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
                        "{} {}  run {run_id}{mode}",
                        self.paint(BOLD, "tend"),
                        escape(recipe)
                    ));
                }
            }
            Event::HostStart { host } => {
                if let Some(live) = &self.live {
                    live.host_bar(host).set_message("connecting");
                }
            }
            Event::StepStart {
                host,
                step,
                function,
                ..
            } => {
                if let Some(live) = &self.live {
                    let bar = live.host_bar(host);
                    if live.single {
                        bar.reset_elapsed();
                    }
                    bar.set_message(format!("step {step}: {} …", escape(function)));
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
                let (mark, note) = if report.unknown && !report.reversible {
                    // Said before it runs: a rollback will not undo it (restic forget).
                    (
                        self.paint(YELLOW, "?"),
                        "  (not run in a dry-run: effect unknown; irreversible: rollback cannot undo it)",
                    )
                } else if report.unknown {
                    (
                        self.paint(YELLOW, "?"),
                        "  (not run in a dry-run: effect unknown)",
                    )
                } else if report.changed && !report.reversible {
                    (
                        self.paint(YELLOW, "~"),
                        "  (irreversible: rollback cannot undo it)",
                    )
                } else if report.changed {
                    (self.paint(YELLOW, "~"), "")
                } else {
                    (self.paint(DIM, "="), "")
                };
                self.out(format!(
                    "  {mark} {}  {:<18} {}{note}",
                    escape(host),
                    report.op,
                    escape(&report.subject)
                ));
                if let Some(d) = &report.diff {
                    if report.changed && (dry_run || self.verbose > 0) {
                        self.diff(d);
                    }
                }
                if self.verbose > 0 {
                    if let Some(out) = report.stdout.as_deref().filter(|s| !s.is_empty()) {
                        for l in out.lines() {
                            self.out(format!("      | {}", escape_keeping_tabs(l)));
                        }
                    }
                }
            }
            Event::StepFailed { host, error, .. } => {
                self.failures_shown
                    .lock()
                    .expect("failures")
                    .insert(host.clone());
                let body = format!("{}  {}", escape(host), escape_lines(error, "      "));
                match &self.live {
                    Some(_) if self.hosts_hint > 1 => {
                        self.out(format!("  {} {body}", self.paint(RED, "✗")))
                    }
                    // Above the live line, which would otherwise draw over it.
                    Some(live) => live
                        .mp
                        .suspend(|| eprintln!("  {} {body}", self.paint_err(RED, "✗"))),
                    None => eprintln!("  {} {body}", self.paint_err(RED, "✗")),
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
                    self.out(format!(
                        "  {tag} {}  {}",
                        escape(host),
                        escape_lines(message, "      ")
                    ));
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
                        "  {} {}  {}: {}",
                        self.paint(CYAN, "↺"),
                        escape(host),
                        escape(action),
                        escape(result)
                    ));
                }
            }
            Event::Rollback {
                host,
                reverted,
                incomplete,
                warnings,
            } => {
                if incomplete.is_empty() {
                    self.out(format!(
                        "  {} {}  {} {reverted} change(s)",
                        self.paint(CYAN, "↺"),
                        escape(host),
                        if dry_run {
                            "would roll back"
                        } else {
                            "rolled back"
                        }
                    ));
                } else {
                    self.out(format!(
                        "  {} {}  rollback INCOMPLETE ({reverted} reverted); not undone:",
                        self.paint(RED, "!"),
                        escape(host)
                    ));
                    for i in incomplete {
                        self.out(format!("      - {}", escape_lines(i, "        ")));
                    }
                }
                for w in warnings {
                    self.out(format!(
                        "      {} {}",
                        self.paint(YELLOW, "warning:"),
                        escape_lines(w, "        ")
                    ));
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
                let fleet = self.hosts_hint > 1;
                if let Some(live) = &self.live {
                    live.host_done(host);
                }
                let ok = outcome == "ok" || outcome == "skipped";
                // Why a host failed is printed whatever the number of hosts, once:
                // a failed step said it already; a connection, host key, lock or
                // state-dir failure is said here.
                let shown = self.failures_shown.lock().expect("failures").remove(host);
                let why = match error {
                    Some(e) if !ok && !shown => format!(": {}", escape_lines(e, "      ")),
                    _ => String::new(),
                };
                let took = *duration_ms as f64 / 1000.0;
                if fleet && !self.quiet {
                    let mark = if ok {
                        self.paint(GREEN, "✓")
                    } else {
                        self.paint(RED, "✗")
                    };
                    self.out(format!(
                        "  {mark} {}  {outcome}, {changed} changed, {took:.1}s{why}",
                        escape(host)
                    ));
                } else if !fleet && !why.is_empty() {
                    eprintln!(
                        "  {} {}  {outcome}{why}",
                        self.paint_err(RED, "✗"),
                        escape(host)
                    );
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
            let err: String = escape(err).chars().take(70).collect();
            t.add_row(vec![
                escape(&h.host).into_owned(),
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
        let cancelled = match count(&|o| o == Outcome::Cancelled) {
            0 => String::new(),
            n => format!(", {n} cancelled"),
        };
        outln!(
            "{} hosts: {} ok, {} failed, {} rolled back, {} unreachable, {} locked, {} skipped{cancelled}",
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
            let hs: Vec<Cow<str>> = hs.iter().map(|h| escape(h)).collect();
            outln!(
                "{} ({})",
                self.paint(style, &hs.join(", ")),
                escape_keeping_tabs(head)
            );
            for l in lines {
                outln!("    {}", escape_keeping_tabs(l));
            }
        }
    }

    pub fn ping_table(&self, results: &[crate::ping::PingResult]) {
        let mut t = table(&["HOST", "STATUS", "CONNECT", "EXEC", "ERROR"]);
        for r in results {
            t.add_row(vec![
                escape(&r.host).into_owned(),
                if r.ok { "ok".into() } else { "FAILED".into() },
                format!("{:.1} ms", r.connect_ms),
                format!("{:.1} ms", r.exec_ms),
                escape(r.error.as_deref().unwrap_or_default()).into_owned(),
            ]);
        }
        outln!("{t}");
    }

    pub fn show_recipe(&self, r: &Recipe, decls: &[ParamDecl], irreversible: &[String]) {
        outln!(
            "{}  {}",
            self.paint(BOLD, &escape(&r.name)),
            escape(&r.path.display().to_string())
        );
        let doc = r.doc();
        if !doc.is_empty() {
            outln!();
            for l in doc.lines() {
                outln!("  {}", escape(l));
            }
        }
        outln!("\nParameters:");
        if decls.is_empty() {
            outln!("  (none)");
        }
        let width = decls
            .iter()
            .map(|d| d.name.chars().count())
            .max()
            .unwrap_or(0);
        for d in decls {
            let default = match &d.default {
                Some(v) => format!(" = {}", escape(&v.to_string())),
                None => " (required)".into(),
            };
            outln!(
                "  {:<width$} {:<9}{default}{}",
                escape(&d.name),
                d.ty.as_str(),
                if d.doc.is_empty() {
                    String::new()
                } else {
                    format!("  // {}", escape(&d.doc))
                }
            );
        }
        outln!();
        if irreversible.is_empty() {
            outln!("Reversible: yes, every step can be rolled back");
        } else {
            outln!("Reversible: no; these steps leave a barrier (sh without undo, fs::remove with backup: false):");
            for s in irreversible {
                outln!("  {}", escape(s));
            }
        }
        if !r.modules.is_empty() {
            let names: Vec<Cow<str>> = r.modules.iter().map(|(n, _)| escape(n)).collect();
            outln!("Imports: {}", names.join(", "));
        }
        outln!("Scope: {}", escape(&r.scope_display()));
        outln!("Hash: {}", r.hash);
    }

    /// `held`: the space each run still holds (see [`crate::app::held_bytes`]).
    pub fn runs_table(&self, runs: &[RunMeta], held: &[u64]) {
        if runs.is_empty() {
            outln!("no runs yet");
            return;
        }
        let mut t = table(&[
            "RUN", "RECIPE", "HOSTS", "STARTED", "DURATION", "OUTCOME", "CHANGED", "HELD",
        ]);
        for (r, held) in runs.iter().zip(held) {
            let started = r.started.get(..19).unwrap_or(&r.started).replace('T', " ");
            let hosts = match r.hosts.as_slice() {
                [one] => escape(one).into_owned(),
                many => format!("{} hosts", many.len()),
            };
            t.add_row(vec![
                escape(&r.run_id).into_owned(),
                escape(&r.recipe).into_owned(),
                hosts,
                started,
                format!("{:.1}s", r.duration_ms as f64 / 1000.0),
                if r.dry_run {
                    format!("dry-run {}", r.effective_outcome())
                } else {
                    r.effective_outcome().to_string()
                },
                r.changed.to_string(),
                crate::app::human_bytes(*held),
            ]);
        }
        outln!("{t}");
    }

    pub fn audit_table(&self, events: &[serde_json::Value]) {
        for e in events {
            let s = |k: &str| escape(e.get(k).and_then(|v| v.as_str()).unwrap_or("")).into_owned();
            let ts = s("ts");
            let ts = ts.get(..19).unwrap_or(&ts).replace('T', " ");
            let what = match s("event").as_str() {
                "run_start" => format!(
                    "{}{} {}{}",
                    if e.get("dry_run") == Some(&serde_json::Value::Bool(true)) {
                        "dry-run "
                    } else {
                        ""
                    },
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
                "run_end" if e.get("dry_run") == Some(&serde_json::Value::Bool(true)) => format!(
                    "dry-run {} to_change={} unknown={}",
                    s("outcome"),
                    e.get("changed").and_then(|v| v.as_u64()).unwrap_or(0),
                    e.get("unknown").and_then(|v| v.as_u64()).unwrap_or(0)
                ),
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
                "prune" => format!(
                    "{} {} bytes={}",
                    s("kind"),
                    s("path"),
                    e.get("bytes").and_then(|v| v.as_u64()).unwrap_or(0)
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

fn paint(color: bool, style: &str, text: &str) -> String {
    if color {
        format!("{style}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// Text from recipes, inventories, paths, hosts and commands, made safe to print, as
/// `ls` and `git` do: a control character (NUL, newline, ANSI escape…) or a bidi
/// override (U+202E…) becomes a visible escape (`\n`, `\x1b`, `\u{202e}`), so such
/// text can neither move the cursor, recolour the terminal, start a line that looks
/// like tend's own, nor reorder what is shown.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_except(text, |_| false)
}

/// [`escape`] for one line of a file or of command output, where tabs are content.
fn escape_keeping_tabs(text: &str) -> Cow<'_, str> {
    escape_except(text, |c| c == '\t')
}

/// [`escape`] for text that may be several lines by design (an error, a message):
/// its lines stay lines, each after the first indented by `indent`, so that no line
/// of it can pass for one of tend's.
fn escape_lines(text: &str, indent: &str) -> String {
    let lines: Vec<Cow<str>> = text.lines().map(escape_keeping_tabs).collect();
    lines.join(&format!("\n{indent}"))
}

fn escape_except(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        !keep(c)
            && (c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            _ if !unsafe_char(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// A plain table in the style of `ps`: no borders, left-aligned columns.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    // On a terminal, long cells (a host's error) wrap within its width rather than
    // widening every row; piped output keeps one line per row.
    t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
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
                    "warnings": report.warnings,
                    "already_rolled_back_at": report.already,
                });
                outln!("{v}");
            }
            Output::Human(h, _) => {
                if let Some(at) = &report.already {
                    h.line(&format!(
                        "rollback of {run_id}: already rolled back at {at}; nothing left to undo"
                    ));
                } else if dry_run {
                    h.line(&format!(
                        "rollback of {run_id}: dry-run, nothing changed; would roll back {}{}",
                        report.reverted,
                        if report.incomplete.is_empty() {
                            String::new()
                        } else {
                            format!(", {} could not be undone", report.incomplete.len())
                        }
                    ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert!(matches!(escape("plain /var/log/ü"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\x1b[2Jb\nc\t\0\u{202e}\u{7f}\u{85}"),
            r"a\x1b[2Jb\nc\t\0\u{202e}\x7f\x85"
        );
        assert_eq!(escape_keeping_tabs("a\tb\r"), "a\tb\\r");
        assert_eq!(escape_lines("one\ntwo\x1b", "  "), "one\n  two\\x1b");
    }
}
