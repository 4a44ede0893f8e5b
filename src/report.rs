//! Rendering for people (and `--json`). The only module that prints, besides `cli`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::event::{Event, Sink};
use crate::recipe::params::ParamDecl;
use crate::recipe::Recipe;
use crate::runner::RollbackReport;
use crate::state::RunMeta;

#[derive(Clone)]
pub struct Human {
    color: bool,
    verbose: u8,
    quiet: bool,
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
            println!("{text}");
        }
    }

    pub fn error(&self, text: &str) {
        eprintln!("{} {text}", self.paint(RED, "error:"));
    }

    fn diff(&self, diff: &str) {
        for l in diff.lines() {
            let styled = if l.starts_with("+++") || l.starts_with("---") {
                self.paint(BOLD, l)
            } else if l.starts_with('+') {
                self.paint(GREEN, l)
            } else if l.starts_with('-') {
                self.paint(RED, l)
            } else if l.starts_with("@@") {
                self.paint(CYAN, l)
            } else {
                l.to_string()
            };
            println!("      {styled}");
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
                    println!("{} {recipe}  run {run_id}{mode}", self.paint(BOLD, "tend"));
                }
            }
            Event::Step { host, report, .. } => {
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
                println!(
                    "  {mark} {host}  {:<18} {}{note}",
                    report.op, report.subject
                );
                if let Some(d) = &report.diff {
                    if report.changed && (dry_run || self.verbose > 0) {
                        self.diff(d);
                    }
                }
                if self.verbose > 0 {
                    if let Some(out) = report.stdout.as_deref().filter(|s| !s.is_empty()) {
                        for l in out.lines() {
                            println!("      | {l}");
                        }
                    }
                }
            }
            Event::StepFailed { host, error, .. } => {
                eprintln!("  {} {host}  {error}", self.paint(RED, "✗"));
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
                    println!("  {tag} {host}  {message}");
                }
            }
            Event::Undo {
                host,
                action,
                result,
                ..
            } => {
                if !self.quiet {
                    println!("  {} {host}  {action}: {result}", self.paint(CYAN, "↺"));
                }
            }
            Event::Rollback {
                host,
                reverted,
                incomplete,
            } => {
                if incomplete.is_empty() {
                    println!(
                        "  {} {host}  rolled back {reverted} change(s)",
                        self.paint(CYAN, "↺")
                    );
                } else {
                    println!(
                        "  {} {host}  rollback INCOMPLETE ({reverted} reverted); not undone:",
                        self.paint(RED, "!")
                    );
                    for i in incomplete {
                        println!("      - {i}");
                    }
                }
            }
            Event::HostEnd { .. } => {}
            Event::RunEnd {
                run_id,
                outcome,
                changed,
                unknown,
                duration_ms,
            } => {
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
                println!(
                    "{outcome_text}: {changed} {verb}{unknown} in {:.1}s  (run {run_id})",
                    *duration_ms as f64 / 1000.0
                );
            }
        }
    }

    pub fn show_recipe(&self, r: &Recipe, decls: &[ParamDecl], irreversible: &[String]) {
        println!("{}  {}", self.paint(BOLD, &r.name), r.path.display());
        let doc = r.doc();
        if !doc.is_empty() {
            println!();
            for l in doc.lines() {
                println!("  {l}");
            }
        }
        println!("\nParameters:");
        if decls.is_empty() {
            println!("  (none)");
        }
        for d in decls {
            let default = match &d.default {
                Some(v) => format!(" = {v}"),
                None => " (required)".into(),
            };
            println!(
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
        println!();
        if irreversible.is_empty() {
            println!("Reversible: yes, every step can be rolled back");
        } else {
            println!("Reversible: no; these steps leave a barrier (sh without undo):");
            for s in irreversible {
                println!("  {s}");
            }
        }
        if !r.modules.is_empty() {
            let names: Vec<&str> = r.modules.iter().map(|(n, _)| n.as_str()).collect();
            println!("Imports: {}", names.join(", "));
        }
        println!("Hash: {}", r.hash);
    }

    pub fn runs_table(&self, runs: &[RunMeta]) {
        if runs.is_empty() {
            println!("no runs yet");
            return;
        }
        println!(
            "{:<21} {:<16} {:<20} {:>8} {:<20} {:>7}",
            "RUN", "RECIPE", "STARTED", "DURATION", "OUTCOME", "CHANGED"
        );
        for r in runs {
            let started = r.started.get(..19).unwrap_or(&r.started).replace('T', " ");
            println!(
                "{:<21} {:<16} {:<20} {:>7.1}s {:<20} {:>7}",
                r.run_id,
                r.recipe,
                started,
                r.duration_ms as f64 / 1000.0,
                r.effective_outcome(),
                r.changed
            );
        }
    }

    pub fn audit_table(&self, events: &[serde_json::Value]) {
        for e in events {
            let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let ts = s("ts");
            let ts = ts.get(..19).unwrap_or(&ts).replace('T', " ");
            let what = match s("event").as_str() {
                "run_start" => format!("{} {}", s("recipe"), s("recipe_hash")),
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
            println!(
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
                println!("{v}");
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
