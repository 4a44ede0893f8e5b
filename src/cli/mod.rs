//! The command line: a thin adapter that parses arguments (`args`), asks what only a
//! terminal can answer (secrets), calls the application layer (`app`) and renders
//! what it returns (`report`), one file per command.

mod args;
mod cluster;
mod daemon;
mod doc;
mod ecosystem;
mod exec;
mod history;
mod hosts;
mod import_script;
mod prune;
mod recipe;
mod recipes;
mod run;
mod schedule;
mod status;
mod test;
mod unlock;
mod vet;

use args::*;

use crate::out::{out, outln};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::app::{self, Outcome, RunRequest};
use crate::app::{Actor, Config, Trigger};
use crate::audit::{AuditConfig, AuditLog};
use crate::cancel::CancelToken;
use crate::demo;
use crate::engine::Limits;
use crate::error::{exit, Error, Result};
use crate::event::{Event, Sink};
use crate::fleet::{parse_serial, Policy, DEFAULT_FORKS};
use crate::interrupt::Interrupts;
use crate::reach::{ConnectFlags, HostSpec};
use crate::recipe::params::ParamType;
use crate::recipe::Recipe;
use crate::report::{escape, table, Human, Output};
use crate::secret::Secret;
use crate::state::{self, StateDir};
use crate::store::Stores;
use crate::transport::Fault;
use crate::trust::{self, Sign, Trust, VetRequest};

/// Parse `args` and run; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                return exit::OK;
            }
            // The command line did not parse, so which command was meant is unknown:
            // a `--json` before any `--` is taken as asking for JSON.
            let json = args
                .iter()
                .skip(1)
                .take_while(|a| *a != "--")
                .any(|a| a == "--json");
            if json {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                json_error("usage", message, exit::USAGE, None);
            }
            return exit::USAGE;
        }
    };
    use std::io::IsTerminal;
    // Each stream on its own: `tend run … 2>log` on a terminal colours stdout only.
    let color = |terminal: bool| match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
    };
    let (color_out, color_err) = (
        color(std::io::stdout().is_terminal()),
        color(std::io::stderr().is_terminal()),
    );
    match &cli.command {
        Command::Daemon(a) => daemon::init_tracing(a, cli.verbose, cli.quiet, color_err),
        _ => init_tracing(cli.verbose, cli.quiet, color_err),
    }
    let human = Human::new(color_out, color_err, cli.verbose, cli.quiet);
    match dispatch(&cli, &human) {
        Ok(code) => code,
        Err(e) => {
            human.error(&e.to_string());
            if cli.json() {
                json_error(e.kind(), &e.to_string(), e.exit_code(), e.fault());
            }
            e.exit_code()
        }
    }
}

/// With `--json`, an error that ends the command is one line on stdout too, so that a
/// script reading JSON never gets nothing.
pub(crate) fn json_error(kind: &str, message: &str, exit_code: i32, fault: Option<Fault>) {
    let mut line = serde_json::json!({"event": "error", "kind": kind, "message": message, "exit_code": exit_code});
    if let Some(fault) = fault {
        line["fault"] = fault.as_str().into();
    }
    outln!("{line}");
}

impl Cli {
    /// Whether the command asked for `--json`.
    fn json(&self) -> bool {
        match &self.command {
            Command::Run(a) => a.json,
            Command::Vet(a) => a.json,
            Command::Schedule(c) => c.json(),
            Command::Prune(a) => a.json,
            Command::Status(a) => a.json,
            Command::Test(a) => a.json,
            Command::Doc(a) => a.json,
            Command::ImportScript(a) => a.json,
            Command::Recipes(a) => a.json,
            Command::Show { json, .. }
            | Command::Check { json, .. }
            | Command::Rollback { json, .. }
            | Command::Runs { json, .. }
            | Command::Audit(
                AuditCommand::Show { json, .. }
                | AuditCommand::Verify { json, .. }
                | AuditCommand::Anchor { json },
            )
            | Command::Cluster(ClusterCommand::Status { json })
            | Command::Exec { json, .. }
            | Command::Unlock { json, .. }
            | Command::Ping { json, .. }
            | Command::Hosts { json, .. } => *json,
            // Exempt (docs/json.md says why): they write scripts, man pages or a
            // recipe file, run until stopped, or are a walkthrough for people.
            // Its output is the JSON Lines of the log itself.
            Command::Audit(AuditCommand::Export)
            | Command::Cluster(ClusterCommand::Migrate | ClusterCommand::Drain { .. }) => false,
            Command::Demo { .. }
            | Command::New(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Daemon(_) => false,
        }
    }
}

pub(crate) fn init_tracing(verbose: u8, quiet: bool, ansi: bool) {
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
        .with_ansi(ansi)
        .without_time()
        .try_init();
}

pub(crate) fn state_dir(cli: &Cli) -> Result<StateDir> {
    let root = cli.state_dir.clone().unwrap_or_else(state::default_root);
    let state = StateDir::open(&root)?;
    match &cli.lock_dir {
        Some(dir) => state.with_lock_dir(dir),
        None => Ok(state),
    }
}

pub(crate) fn sink_for(json: bool, human: &Human, dry_run: bool) -> (Sink, Output) {
    let out = if json {
        Output::Json
    } else {
        Output::Human(human.clone(), dry_run)
    };
    (out.sink(), out)
}

/// `[audit] anchor_command`, after a run or rollback has written to the audit log. A
/// failure is a warning: what the run did is done, and recorded in the log.
pub(crate) fn send_anchor(config: &AuditConfig, human: &Human, state: &StateDir, run_id: &str) {
    if config.anchor_command.is_none() {
        return;
    }
    let sent = AuditLog::new(state.root())
        .current_anchor()
        .map_err(|e| format!("no anchor sent: {e}"))
        .and_then(|anchor| config.send_anchor(&anchor, run_id));
    if let Err(why) = sent {
        human.warn(&why);
    }
}

/// The hosts a command acts on: none (this machine) without `-H`.
pub(crate) fn select_hosts(
    config: &Config,
    fleet: &FleetArgs,
    default_all: bool,
) -> Result<Vec<HostSpec>> {
    crate::app::select_hosts(config, &host_query(fleet), default_all)
}

pub(crate) fn host_query(fleet: &FleetArgs) -> crate::app::HostQuery {
    crate::app::HostQuery {
        hosts: fleet.hosts.clone(),
        inventory: fleet.inventory.clone(),
        limit: fleet.limit.clone(),
        ssh_config: fleet.ssh_config.clone(),
        flags: ConnectFlags {
            accept_new_host_keys: fleet.accept_new_host_keys,
            known_hosts: fleet.known_hosts.clone(),
            become_: fleet.become_,
            user: fleet.user.clone(),
            private_key: fleet.private_key.clone(),
            connect_timeout: fleet.connect_timeout,
            passphrase: ssh_passphrase(),
        },
    }
}

/// `$TEND_SSH_PASSPHRASE`, for encrypted SSH keys: read here, once per command, and
/// handed down; nothing below the CLI reads it.
pub(crate) fn ssh_passphrase() -> Option<Secret> {
    std::env::var("TEND_SSH_PASSPHRASE").ok().map(Secret::new)
}

pub(crate) fn policy(p: &PolicyArgs) -> Result<(Policy, Vec<crate::fleet::BatchSize>)> {
    let serial = match &p.serial {
        Some(s) => parse_serial(s).map_err(Error::Usage)?,
        None => vec![],
    };
    Ok((
        Policy {
            fail_fast: p.fail_fast,
            max_fail_percent: p.max_fail_percent,
            serial: !serial.is_empty(),
        },
        serial,
    ))
}

pub(crate) fn exit_code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Ok | Outcome::Skipped => exit::OK,
        Outcome::Failed | Outcome::Unreachable => exit::FAILED,
        Outcome::RolledBack => exit::ROLLED_BACK,
        Outcome::RollbackIncomplete => exit::ROLLBACK_INCOMPLETE,
        Outcome::Locked => exit::LOCKED,
        // The CLI says which signal (see `Interrupts::exit_code`); a library caller's
        // cancel reads as Ctrl-C.
        Outcome::Cancelled => exit::INTERRUPTED,
    }
}

/// The config file by the one lookup rule, for the commands that use it.
pub(crate) fn config(cli: &Cli) -> Result<Config> {
    Config::load(cli.config.as_deref())
}

/// Where runs, journals and the audit log are: the cluster's database when tend.toml
/// has `[cluster]`, else the state directory.
pub(crate) fn stores(cli: &Cli, state: &StateDir) -> Result<Stores> {
    app::stores_for(state, &config(cli)?)
}

pub(crate) fn dispatch(cli: &Cli, human: &Human) -> Result<i32> {
    // Who asks, read from this process once: nothing below reads $USER.
    let actor = &Actor::from_process(Trigger::Cli);
    match &cli.command {
        Command::Run(args) => run::run(cli, human, actor, args),
        Command::Check {
            recipe,
            params,
            json,
        } => recipe::check(human, recipe, params, *json),
        Command::Show { recipe, json } => recipe::show(cli, human, recipe, *json),
        Command::Vet(args) => vet::vet(cli, human, actor, args),
        Command::Daemon(args) => daemon::run(config(cli)?, state_dir(cli)?, args),
        Command::Schedule(cmd) => schedule::run(cmd, &config(cli)?, &|| state_dir(cli), human),
        Command::Status(args) => status::run(args, &config(cli)?, state_dir(cli)?),
        Command::Recipes(args) => recipes::run(human, args),
        Command::New(args) => ecosystem::new(args),
        Command::Completions(args) => ecosystem::completions(args, Cli::command()),
        Command::Man(args) => ecosystem::man(args, Cli::command()),
        Command::Prune(args) => prune::run(args, &config(cli)?, &state_dir(cli)?, actor),
        Command::Test(args) => test::run(args),
        Command::Doc(args) => doc::run(cli, human, args),
        Command::ImportScript(args) => import_script::run(human, args),
        Command::Rollback {
            run_id,
            host,
            dry_run,
            force,
            wait,
            json,
        } => {
            let req = app::RollbackRequest {
                run_id: run_id.clone(),
                only_host: host.clone(),
                dry_run: *dry_run,
                force: *force,
                wait: *wait,
                passphrase: ssh_passphrase(),
                taken_over: false,
            };
            history::rollback(cli, human, actor, &req, *json)
        }
        Command::Runs { limit, json } => history::runs(cli, human, *limit, *json),
        Command::Audit(cmd) => history::audit(cli, human, cmd),
        Command::Cluster(cmd) => cluster::cluster(cli, human, cmd),
        Command::Unlock {
            host,
            force,
            fleet,
            json,
        } => unlock::unlock(cli, human, actor, host, *force, fleet, *json),
        Command::Exec {
            fleet,
            policy,
            timeout,
            wait,
            json,
            command,
        } => {
            let how = exec::ExecHow {
                timeout: *timeout,
                wait: *wait,
                json: *json,
            };
            exec::exec(cli, human, actor, fleet, policy, &how, command)
        }
        Command::Ping { fleet, json } => hosts::ping(cli, human, fleet, *json),
        Command::Hosts {
            pattern,
            fleet,
            json,
            graph,
        } => {
            let how = hosts::Show {
                json: *json,
                graph: *graph,
            };
            hosts::hosts(&config(cli)?, pattern.as_deref(), host_query(fleet), how)
        }
        Command::Demo { dir } => run::demo(cli, human, actor, dir.as_deref()),
    }
}
