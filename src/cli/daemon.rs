//! `tend daemon` and the commands that talk to it (`tend schedule run|pause|resume`):
//! arguments, logging set-up, and the choice between the daemon's socket and doing
//! the work in this process when no daemon is up.

use clap::{Args, ValueEnum};

use crate::app::{Actor, Config, Trigger};
use crate::daemon::{self, control};
use crate::error::{exit, Error, Result};
use crate::report::Human;
use crate::state::StateDir;

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Log lines for people, or one JSON object per line (journald, Loki)
    /// [default: human on a terminal, else json]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve Prometheus metrics on /metrics and the status page on / at this address
    /// (loopback unless --metrics-allow-remote), e.g. 127.0.0.1:9101
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Let --metrics listen on an address other than loopback (the page has no
    /// authentication: put a proxy that has in front of it)
    #[arg(long)]
    pub metrics_allow_remote: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// The daemon logs at info (every fire, skip and refusal) unless told otherwise;
/// `TEND_LOG` overrides, as for every command.
pub fn init_tracing(args: &DaemonArgs, verbose: u8, quiet: bool, ansi: bool) {
    use std::io::IsTerminal;
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (_, 0) => "info",
        (_, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TEND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let format = args
        .log_format
        .unwrap_or(if std::io::stderr().is_terminal() {
            LogFormat::Human
        } else {
            LogFormat::Json
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.with_ansi(ansi).try_init(),
    };
}

pub fn run(config: Config, state: StateDir, args: &DaemonArgs) -> Result<i32> {
    let metrics = args.metrics.map(|a| (a, args.metrics_allow_remote));
    daemon::run(
        state,
        config,
        Actor::from_process(Trigger::Schedule),
        super::ssh_passphrase(),
        metrics,
    )
}

fn ask(state: &StateDir, op: &str, name: &str) -> Result<Option<control::Reply>> {
    let user = Actor::from_process(Trigger::Cli).user;
    control::send(
        state,
        &control::Request {
            op: op.into(),
            name: name.into(),
            user,
        },
    )
}

/// `tend schedule run NAME`.
pub fn fire(
    config: &Config,
    state: &StateDir,
    name: &str,
    human: &Human,
    json: bool,
) -> Result<i32> {
    if let Some(reply) = ask(state, "run", name)? {
        return answered(reply, "run", name, human, json);
    }
    let outcome = daemon::run_here(
        state.clone(),
        config,
        Actor::from_process(Trigger::Schedule),
        super::ssh_passphrase(),
        name,
    )?;
    let message = format!("no daemon running; ran here: {outcome}");
    said(human, json, "run", name, false, &message, Some(&outcome));
    Ok(if outcome == "ok" {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// `tend schedule pause|resume NAME`.
pub fn pause(
    config: &Config,
    state: &StateDir,
    name: &str,
    paused: bool,
    human: &Human,
    json: bool,
) -> Result<i32> {
    let op = if paused { "pause" } else { "resume" };
    if let Some(reply) = ask(state, op, name)? {
        return answered(reply, op, name, human, json);
    }
    let actor = Actor::from_process(Trigger::Cli);
    daemon::set_paused_here(state.clone(), config, actor, name, paused)?;
    let message = format!("{op}d (no daemon running; recorded for its next start)");
    said(human, json, op, name, false, &message, None);
    Ok(exit::OK)
}

/// What `tend schedule run|pause|resume` did, for people or as one JSON object.
fn said(
    human: &Human,
    json: bool,
    op: &str,
    name: &str,
    daemon: bool,
    message: &str,
    outcome: Option<&str>,
) {
    if json {
        let v = serde_json::json!({
            "kind": format!("schedule_{op}"), "schedule": name, "daemon": daemon,
            "message": message, "outcome": outcome,
        });
        crate::out::outln!("{v}");
    } else {
        human.line(&format!("schedule {name:?}: {message}"));
    }
}

fn answered(reply: control::Reply, op: &str, name: &str, human: &Human, json: bool) -> Result<i32> {
    if !reply.ok {
        return Err(Error::Usage(format!(
            "the daemon refused: {}",
            reply.message
        )));
    }
    said(human, json, op, name, true, &reply.message, None);
    Ok(exit::OK)
}
