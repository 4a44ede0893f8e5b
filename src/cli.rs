//! Command-line arguments (clap derive) and the hand-off to the layers below.
//! Parsing happens here once; nothing downstream re-validates flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::AuditLog;
use crate::demo;
use crate::engine::Limits;
use crate::error::{exit, Error, Result};
use crate::event::Sink;
use crate::recipe::Recipe;
use crate::report::{Human, Output};
use crate::runner::{self, Outcome, RunRequest};
use crate::state::{self, StateDir};

const EXIT_CODES: &str = "\
Exit codes:
  0   success (dry-run with --detailed-exitcode: nothing would change)
  1   the run failed; nothing to roll back, or --no-rollback
  2   dry-run with --detailed-exitcode: there are changes to make
  3   the run failed and every change was rolled back
  4   the run failed and rollback could not undo everything (see the report)
  64  bad command line or parameter      65  invalid recipe
  66  recipe, run or file not found      67  audit log failed verification
  70  internal error                     75  the host is locked by another run";

#[derive(Parser, Debug)]
#[command(
    name = "tend",
    version,
    about = "Run vetted maintenance recipes with an exact dry-run, automatic rollback and a tamper-evident audit log.",
    long_about = "tend runs maintenance recipes written in Rhai on this machine. Every change is \
planned first (--dry-run shows exactly what would change, with diffs), journaled before it is \
made, rolled back automatically if the recipe fails, and recorded in a hash-chained audit log.\n\n\
Start with `tend demo`, then `tend show RECIPE` and `tend run RECIPE --dry-run`.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Where runs, journals, backups and the audit log are kept
    /// [default: /var/lib/tend for root, else $XDG_STATE_HOME/tend]
    #[arg(long, global = true, env = "TEND_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// More output: -v shows unchanged steps and diffs of real runs, -vv debug logs
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Only errors and the final summary
    #[arg(short, long, global = true)]
    quiet: bool,

    #[arg(long, global = true, value_enum, default_value = "auto")]
    color: Color,

    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a recipe (or plan it with --dry-run)
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Parse a recipe, resolve its imports and check parameters; changes nothing
    Check {
        recipe: PathBuf,
        /// Parameter to check, as NAME=VALUE (repeatable)
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
    /// Describe a recipe: documentation, parameters, reversibility, content hash
    Show {
        recipe: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Undo a run by replaying its journal in reverse (also after a crash or kill -9)
    Rollback {
        run_id: String,
        /// Only this host
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Show what would be undone
        #[arg(long, short = 'n')]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Recent runs: id, recipe, start, duration, outcome, changes
    Runs {
        /// How many of the most recent runs
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Read or verify the audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Create a sample log directory and rotate it with the built-in log-rotate recipe
    Demo {
        /// Where to create the sample [default: $TMPDIR/tend-demo]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Show audit events, all or those of one run
    Show {
        run_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain; names the first line that was edited or removed
    Verify,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The recipe file (.rhai)
    pub recipe: PathBuf,
    /// Recipe parameter as NAME=VALUE (repeatable); secrets as NAME=env:VAR or NAME=file:PATH
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Plan only: report every change (with diffs) without making any
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// On failure, keep the changes made so far (undo later with `tend rollback`)
    #[arg(long)]
    pub no_rollback: bool,
    /// With --dry-run: exit 0 if nothing would change, 2 if something would
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// One JSON object per line on stdout
    #[arg(long)]
    pub json: bool,
    /// Stop the run after this long (e.g. 30s, 10m) and roll back
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Stop a recipe after this many script operations (runaway-loop guard)
    #[arg(long, default_value_t = 50_000_000)]
    pub max_operations: u64,
}

fn parse_param(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has no parameter name"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (write like 30s, 10m)"))
}

/// Parse `args` and run; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            use std::io::IsTerminal;
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let human = Human::new(color, cli.verbose, cli.quiet);
    match dispatch(&cli, &human) {
        Ok(code) => code,
        Err(e) => {
            human.error(&e.to_string());
            e.exit_code()
        }
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0 | 1) => "warn",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TEND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

fn state_dir(cli: &Cli) -> Result<StateDir> {
    let root = cli.state_dir.clone().unwrap_or_else(state::default_root);
    StateDir::open(&root)
}

fn sink_for(json: bool, human: &Human, dry_run: bool) -> (Sink, Output) {
    let out = if json {
        Output::Json
    } else {
        Output::Human(human.clone(), dry_run)
    };
    (out.sink(), out)
}

fn dispatch(cli: &Cli, human: &Human) -> Result<i32> {
    match &cli.command {
        Command::Run(args) => run(cli, human, args),
        Command::Check { recipe, params } => {
            let r = Recipe::load(recipe)?;
            let decls = runner::declared_params(&r, params)?;
            human.line(&format!(
                "{}: ok ({} parameter{}, {} module{} imported)",
                recipe.display(),
                decls.len(),
                if decls.len() == 1 { "" } else { "s" },
                r.modules.len(),
                if r.modules.len() == 1 { "" } else { "s" },
            ));
            Ok(exit::OK)
        }
        Command::Show { recipe, json } => {
            let r = Recipe::load(recipe)?;
            let decls = runner::declared_params(&r, &[]).or_else(|_| Ok::<_, Error>(Vec::new()))?;
            let irreversible = r.irreversible_steps();
            if *json {
                let v = serde_json::json!({
                    "recipe": r.name,
                    "path": r.path.display().to_string(),
                    "description": r.doc(),
                    "params": decls,
                    "reversible": irreversible.is_empty(),
                    "irreversible_steps": irreversible,
                    "hash": r.hash,
                    "modules": r.modules.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                });
                println!("{v}");
            } else {
                human.show_recipe(&r, &decls, &irreversible);
            }
            Ok(exit::OK)
        }
        Command::Rollback {
            run_id,
            host,
            dry_run,
            json,
        } => {
            let state = state_dir(cli)?;
            let (sink, out) = sink_for(*json, human, *dry_run);
            let report = runner::rollback(&state, run_id, host.as_deref(), *dry_run, sink)?;
            out.rollback_summary(run_id, &report, *dry_run);
            Ok(if report.incomplete.is_empty() {
                exit::OK
            } else {
                exit::ROLLBACK_INCOMPLETE
            })
        }
        Command::Runs { limit, json } => {
            let state = state_dir(cli)?;
            let runs = state.list_runs()?;
            let skip = runs.len().saturating_sub(*limit);
            let runs = &runs[skip..];
            if *json {
                for r in runs {
                    let mut v = serde_json::to_value(r).map_err(|e| Error::Other(e.to_string()))?;
                    v["outcome"] = r.effective_outcome().into();
                    println!("{v}");
                }
            } else {
                human.runs_table(runs);
            }
            Ok(exit::OK)
        }
        Command::Audit(AuditCommand::Show { run_id, json }) => {
            let state = state_dir(cli)?;
            let events = AuditLog::new(state.root()).read(run_id.as_deref())?;
            if run_id.is_some() && events.is_empty() {
                return Err(Error::UnknownRun(run_id.clone().unwrap_or_default()));
            }
            if *json {
                for e in &events {
                    println!("{e}");
                }
            } else {
                human.audit_table(&events);
            }
            Ok(exit::OK)
        }
        Command::Audit(AuditCommand::Verify) => {
            let state = state_dir(cli)?;
            let log = AuditLog::new(state.root());
            let n = log.verify()?;
            human.line(&format!(
                "{}: {n} lines, chain intact",
                log.path().display()
            ));
            Ok(exit::OK)
        }
        Command::Demo { dir } => {
            let dir = dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("tend-demo"));
            let recipe = demo::prepare(&dir)?;
            human.line(&format!(
                "Sample logs in {}; recipe {}.\n\n== 1. dry-run: what would change ==",
                dir.display(),
                recipe.display()
            ));
            let args = RunArgs {
                recipe: recipe.clone(),
                params: vec![
                    ("files".into(), format!("{}/logs/*.log", dir.display())),
                    ("min_size".into(), "100K".into()),
                ],
                dry_run: true,
                no_rollback: false,
                detailed_exitcode: false,
                json: false,
                timeout: None,
                max_operations: 50_000_000,
            };
            run(cli, human, &args)?;
            human.line("\n== 2. the run ==");
            let real = RunArgs {
                dry_run: false,
                ..args
            };
            let code = run(cli, human, &real)?;
            human.line(&format!(
                "\nNow: `ls -l {}/logs`, `tend runs`, `tend audit show`, and undo it all with `tend rollback RUN_ID`.",
                dir.display()
            ));
            Ok(code)
        }
    }
}

fn run(cli: &Cli, human: &Human, args: &RunArgs) -> Result<i32> {
    let state = state_dir(cli)?;
    let (sink, _out) = sink_for(args.json, human, args.dry_run);
    let req = RunRequest {
        recipe: args.recipe.clone(),
        params: args.params.clone(),
        dry_run: args.dry_run,
        no_rollback: args.no_rollback,
        limits: Limits {
            max_operations: args.max_operations,
            timeout: args.timeout,
        },
    };
    let result = runner::run(&state, &req, sink)?;
    Ok(match result.outcome {
        Outcome::Ok if args.dry_run && args.detailed_exitcode => {
            if result.changed + result.unknown > 0 {
                exit::CHANGES
            } else {
                exit::OK
            }
        }
        Outcome::Ok => exit::OK,
        Outcome::Failed => exit::FAILED,
        Outcome::RolledBack => exit::ROLLED_BACK,
        Outcome::RollbackIncomplete => exit::ROLLBACK_INCOMPLETE,
    })
}
