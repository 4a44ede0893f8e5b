//! Command-line arguments (clap derive) and the hand-off to the layers below.
//! Parsing happens here once; nothing downstream re-validates flags.

use crate::out::{out, outln};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
use crate::recipe::Recipe;
use crate::report::{escape, table, Human, Output};
use crate::state::{self, StateDir};
use crate::trust::{self, Sign, Trust, VetRequest};

const EXIT_CODES: &str = "\
Exit codes:
  0   success (dry-run with --detailed-exitcode: nothing would change)
  1   the run failed; nothing to roll back, or --no-rollback
  2   dry-run with --detailed-exitcode: there are changes to make
  3   the run failed and every change was rolled back
  4   the run failed and rollback could not undo everything (see the report)
  64  bad command line or parameter      65  invalid recipe
  66  recipe, run or file not found      67  audit log failed verification
  70  internal error                     75  the host is locked by another run
  77  the recipe is not vetted and the policy refuses it, or a vetting signature is refused
  130 cancelled by SIGINT (Ctrl-C): the step was stopped and the run rolled back
      (a second Ctrl-C stops at once, leaving the journal for `tend rollback RUN`)
  143 cancelled by SIGTERM: the step was stopped and the run rolled back";

#[derive(Parser, Debug)]
#[command(
    name = "tend",
    version,
    about = "Run vetted maintenance recipes with an exact dry-run, automatic rollback and a tamper-evident audit log.",
    long_about = "tend runs maintenance recipes written in Rhai on this machine or on many hosts \
over SSH (-H), by hand or from its own scheduler (`tend daemon`, [[schedule]] in tend.toml). \
Every change is planned first (--dry-run shows exactly what would change, with diffs), \
journaled before it is made, rolled back automatically if the recipe fails, and recorded in a \
hash-chained audit log.\n\n\
Start with `tend demo`, then `tend show RECIPE` and `tend run RECIPE --dry-run`.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Where runs, journals, backups and the audit log are kept
    /// [default: /var/lib/tend for root, else $XDG_STATE_HOME/tend]
    #[arg(long, global = true, env = "TEND_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Where this machine's host locks are kept, shared by every state dir
    /// [default: /run/tend/locks for root, else /tmp/tend-UID/locks]
    #[arg(long, global = true, env = "TEND_LOCK_DIR", value_name = "DIR")]
    lock_dir: Option<PathBuf>,

    /// The config file with hosts and groups [default: ./tend.toml if present]
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "TEND_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// More output: -v shows unchanged steps and diffs of real runs, -vv debug logs
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Only errors and the final summary
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Colors: auto (only on a terminal, and not with NO_COLOR), always, never
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
        /// The recipe file (.rhai)
        recipe: PathBuf,
        /// Parameter to check, as NAME=VALUE (repeatable)
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
    /// Approve a recipe as it is now (its text and every module it imports), list or
    /// revoke approvals
    #[command(after_help = VET_HELP)]
    Vet(VetArgs),
    /// Describe a recipe: documentation, parameters, reversibility, content hash, vetting
    Show {
        /// The recipe file (.rhai)
        recipe: PathBuf,
        /// The description as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Undo a run by replaying its journal in reverse (also after a crash or kill -9)
    Rollback {
        /// The run to undo (see `tend runs`)
        run_id: String,
        /// Only this host
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Show what would be undone
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Also revert paths that changed since the run (their current content is
        /// saved in the run's backup directory first); without it they are left alone
        #[arg(long)]
        force: bool,
        /// Queue behind a run holding a host for up to this long (e.g. 10m)
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        wait: Option<Duration>,
        /// One JSON object per line on stdout
        #[arg(long)]
        json: bool,
    },
    /// Release a host's lock left by a run that died (audited); its changes stay:
    /// `tend rollback RUN` undoes them and releases the lock too
    Unlock {
        /// The host (`local` is this machine)
        host: String,
        /// Also release a lock held from another machine, whose run cannot be seen
        /// from here to be dead
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        fleet: FleetArgs,
        /// One JSON object per lock on stdout
        #[arg(long)]
        json: bool,
    },
    /// Recent runs: id, recipe, start, duration, outcome, changes
    Runs {
        /// How many of the most recent runs
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per run on stdout
        #[arg(long)]
        json: bool,
    },
    /// Read or verify the audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run one shell command on many hosts (audited like a run)
    #[command(after_help = "Example: tend exec -H @web -- systemctl restart nginx")]
    Exec {
        #[command(flatten)]
        fleet: FleetArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Stop the command after this long on a host
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Queue behind a run holding a host for up to this long (e.g. 10m)
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        wait: Option<Duration>,
        /// One JSON object per line on stdout: each host's output and exit code
        #[arg(long)]
        json: bool,
        /// The command, after `--`
        #[arg(required = true, last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Connect, authenticate and run `true` on hosts, with timings
    Ping {
        #[command(flatten)]
        fleet: FleetArgs,
        /// One JSON object per host on stdout, with its timings
        #[arg(long)]
        json: bool,
    },
    /// Show the hosts a pattern selects and how each will be reached
    Hosts {
        /// Host pattern [default: all]
        pattern: Option<String>,
        #[command(flatten)]
        fleet: FleetArgs,
        /// One JSON object per host on stdout
        #[arg(long)]
        json: bool,
        /// The group tree, as `ansible-inventory --graph` (PATTERN: a group)
        #[arg(long, conflicts_with = "json")]
        graph: bool,
    },
    /// Scheduled runs ([[schedule]] in tend.toml): check them, list them, show when
    /// they fire
    #[command(subcommand)]
    Schedule(crate::cli_schedule::ScheduleCommand),
    /// Serve the status page and /metrics for the schedules and runs here, without the
    /// daemon (read-only)
    Status(crate::cli_status::StatusArgs),
    /// The scheduler: runs the [[schedule]] entries until SIGTERM (SIGHUP reloads
    /// tend.toml); `tend schedule run|pause|resume` talk to it
    Daemon(crate::cli_daemon::DaemonArgs),
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
        /// Only the events of this run
        run_id: Option<String>,
        /// The events as JSON Lines, as stored
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain; names the first line that was edited or removed
    Verify {
        /// Also check that the log still holds this anchor, printed earlier by `tend
        /// audit anchor` (or sent by `[audit] anchor_command`) and kept elsewhere:
        /// catches lines cut off the end with audit.head rewritten to match
        #[arg(long, value_name = "HASH:COUNT")]
        anchor: Option<crate::audit::Anchor>,
    },
    /// Verify the chain and print its anchor, HASH:COUNT, to keep off this machine
    /// (e.g. `tend audit anchor | logger -t tend-audit`)
    Anchor,
}

/// Which hosts, and how to reach them.
#[derive(Args, Debug, Clone, Default)]
pub struct FleetArgs {
    /// Hosts: names, globs (web*), groups (@web), exclusions (!web3), comma-separated;
    /// `local` is this machine [default: this machine]
    #[arg(short = 'H', long = "hosts", value_name = "PATTERN")]
    pub hosts: Option<String>,
    /// Ansible inventory (INI or YAML), in addition to tend.toml (repeatable)
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: Vec<PathBuf>,
    /// Only the selected hosts that also match this pattern
    #[arg(long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// SSH client config, like `ssh -F` [default: ~/.ssh/config]
    #[arg(short = 'F', value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Accept and remember the key of a host seen for the first time (a changed key is
    /// always refused), like StrictHostKeyChecking=accept-new
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// known_hosts file to check host keys against (repeatable) [default: ~/.ssh/known_hosts]
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Vec<PathBuf>,
    /// Log in as this user
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Private key to log in with (an encrypted key reads $TEND_SSH_PASSPHRASE)
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// Give up on a host that has not answered (TCP connect, SSH handshake, login)
    /// within this long, e.g. 5s [default: the host's connect_timeout in tend.toml or
    /// ConnectTimeout in ssh config, else 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Option<Duration>,
    /// Run commands and write files as root through `sudo -n`
    #[arg(long = "become")]
    pub become_: bool,
    /// Hosts worked on at once
    #[arg(short = 'f', long, default_value_t = DEFAULT_FORKS)]
    pub forks: usize,
}

/// What a failure on one host does to the others.
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Rolling batches: a number, a percentage or a list like 1,5,25% (canary first);
    /// a batch with a failure stops the run before the next batch
    #[arg(long, value_name = "SIZES")]
    pub serial: Option<String>,
    /// Start no more hosts after the first failure
    #[arg(long)]
    pub fail_fast: bool,
    /// Start no more hosts once more than this percentage has failed
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_fail_percent: Option<u8>,
    /// If any host fails, roll back every host of the run
    #[arg(long)]
    pub atomic: bool,
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
    /// Stop the run after this long (e.g. 30s, 10m), a running command included, and
    /// roll back
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Queue behind a run holding a host for up to this long (e.g. 10m) instead of
    /// exiting 75 at once
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub wait: Option<Duration>,
    /// Stop a recipe after this many script operations (runaway-loop guard)
    #[arg(long, default_value_t = 50_000_000, value_parser = parse_max_operations)]
    pub max_operations: u64,
    /// Run a recipe that is not vetted (needed when tend.toml has
    /// `[trust] require_vetted = "flag"`); the audit log records it as unvetted
    #[arg(long)]
    pub unvetted: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

const VET_HELP: &str = "\
Examples:
  tend vet recipes/backup.rhai --by alice --note 'reviewed the retention'
  tend vet recipes/backup.rhai --by alice --sign-key ~/.ssh/id_ed25519
  tend vet recipes/backup.rhai --by alice --print-message > vet.msg
  ssh-keygen -Y sign -n tend -f ~/.ssh/id_ed25519 vet.msg     # writes vet.msg.sig
  tend vet recipes/backup.rhai --signature vet.msg.sig
  tend vet --list
  tend vet --revoke recipes/backup.rhai

Settings, in tend.toml:
  [trust]
  file = \"vetted.toml\"                    # default: beside tend.toml
  require_vetted = \"scheduled\"            # | \"flag\" | \"always\" | \"never\"
  require_signature = false
  allowed_signers = \"~/.ssh/allowed_signers\"   # OpenSSH format, as for git";

/// `tend vet`: approve, list or revoke.
#[derive(Args, Debug)]
pub struct VetArgs {
    /// The recipe to vet (with --revoke: whose vetting to withdraw)
    #[arg(required_unless_present = "list")]
    pub recipe: Option<PathBuf>,
    /// Who vets it
    #[arg(long, value_name = "NAME", required_unless_present_any = ["list", "revoke", "signature"])]
    pub by: Option<String>,
    /// Why, or what was reviewed (one line)
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Sign the approval with this SSH private key (OpenSSH format; an encrypted key
    /// reads $TEND_SSH_PASSPHRASE)
    #[arg(long, value_name = "KEY", conflicts_with = "signature")]
    pub sign_key: Option<PathBuf>,
    /// A signature made with `ssh-keygen -Y sign -n tend` over the output of
    /// --print-message (agent and hardware keys sign this way)
    #[arg(long, value_name = "SIG")]
    pub signature: Option<PathBuf>,
    /// The message --signature signs [default: its path without .sig]
    #[arg(long, value_name = "FILE", requires = "signature")]
    pub message: Option<PathBuf>,
    /// Print the exact text to sign for this approval; records nothing
    #[arg(long, conflicts_with_all = ["sign_key", "signature", "list", "revoke"])]
    pub print_message: bool,
    /// List vetted recipes and whether each still matches what was vetted
    #[arg(long, conflicts_with_all = ["recipe", "by", "note", "sign_key", "signature", "revoke"])]
    pub list: bool,
    /// Withdraw the vetting of RECIPE
    #[arg(long, conflicts_with_all = ["by", "note", "sign_key", "signature"])]
    pub revoke: bool,
    /// JSON output
    #[arg(long)]
    pub json: bool,
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

/// Every duration flag is a timeout: bounded, so that no deadline overflows.
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| e.to_string())
        .and_then(crate::engine::check_timeout)
        .map_err(|e| format!("{s:?}: {e} (write like 30s, 10m)"))
}

/// Rhai takes 0 as "no limit": refused, so that no typo turns the guard off.
fn parse_max_operations(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("0 would mean no limit at all; give a large number instead".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

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
                json_error("usage", message, exit::USAGE);
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
        Command::Daemon(a) => crate::cli_daemon::init_tracing(a, cli.verbose, cli.quiet, color_err),
        _ => init_tracing(cli.verbose, cli.quiet, color_err),
    }
    let human = Human::new(color_out, color_err, cli.verbose, cli.quiet);
    match dispatch(&cli, &human) {
        Ok(code) => code,
        Err(e) => {
            human.error(&e.to_string());
            if cli.json() {
                json_error(e.kind(), &e.to_string(), e.exit_code());
            }
            e.exit_code()
        }
    }
}

/// With `--json`, an error that ends the command is one line on stdout too, so that a
/// script reading JSON never gets nothing.
fn json_error(kind: &str, message: &str, exit_code: i32) {
    outln!(
        "{}",
        serde_json::json!({"event": "error", "kind": kind, "message": message, "exit_code": exit_code})
    );
}

impl Cli {
    /// Whether the command asked for `--json`.
    fn json(&self) -> bool {
        match &self.command {
            Command::Run(a) => a.json,
            Command::Vet(a) => a.json,
            Command::Schedule(c) => c.json(),
            Command::Show { json, .. }
            | Command::Rollback { json, .. }
            | Command::Runs { json, .. }
            | Command::Audit(AuditCommand::Show { json, .. })
            | Command::Exec { json, .. }
            | Command::Unlock { json, .. }
            | Command::Ping { json, .. }
            | Command::Hosts { json, .. } => *json,
            Command::Check { .. }
            | Command::Audit(AuditCommand::Verify { .. } | AuditCommand::Anchor)
            | Command::Demo { .. }
            | Command::Status(_)
            | Command::Daemon(_) => false,
        }
    }
}

fn init_tracing(verbose: u8, quiet: bool, ansi: bool) {
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

fn state_dir(cli: &Cli) -> Result<StateDir> {
    let root = cli.state_dir.clone().unwrap_or_else(state::default_root);
    let state = StateDir::open(&root)?;
    match &cli.lock_dir {
        Some(dir) => state.with_lock_dir(dir),
        None => Ok(state),
    }
}

fn sink_for(json: bool, human: &Human, dry_run: bool) -> (Sink, Output) {
    let out = if json {
        Output::Json
    } else {
        Output::Human(human.clone(), dry_run)
    };
    (out.sink(), out)
}

/// `[audit] anchor_command`, after a run or rollback has written to the audit log. A
/// failure is a warning: what the run did is done, and recorded in the log.
fn send_anchor(config: &AuditConfig, human: &Human, state: &StateDir, run_id: &str) {
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
fn select_hosts(config: &Config, fleet: &FleetArgs, default_all: bool) -> Result<Vec<HostSpec>> {
    crate::app::select_hosts(config, &host_query(fleet), default_all)
}

fn host_query(fleet: &FleetArgs) -> crate::app::HostQuery {
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
        },
    }
}

fn policy(p: &PolicyArgs) -> Result<(Policy, Vec<crate::fleet::BatchSize>)> {
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

fn exit_code(outcome: Outcome) -> i32 {
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
fn config(cli: &Cli) -> Result<Config> {
    Config::load(cli.config.as_deref())
}

fn dispatch(cli: &Cli, human: &Human) -> Result<i32> {
    // Who asks, read from this process once: nothing below reads $USER.
    let actor = &Actor::from_process(Trigger::Cli);
    match &cli.command {
        Command::Run(args) => run(cli, human, actor, args),
        Command::Check { recipe, params } => {
            let r = Recipe::load(recipe)?;
            let decls = app::declared_params(&r, params)?;
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
            let decls = app::declared_params(&r, &[]).or_else(|_| Ok::<_, Error>(Vec::new()))?;
            let irreversible = r.irreversible_steps();
            // A broken trust setup is reported as the status, not as a failure to show.
            let vetting = state_dir(cli)
                .and_then(|state| config(cli)?.trust(&state))
                .and_then(|t| t.status(&r))
                .map_err(|e| e.to_string());
            if *json {
                let mut v = serde_json::json!({
                    "recipe": r.name,
                    "path": r.path.display().to_string(),
                    "description": r.doc(),
                    "params": decls,
                    "reversible": irreversible.is_empty(),
                    "irreversible_steps": irreversible,
                    "scope": r.scope(), "become": r.become_policy(),
                    "hash": r.hash,
                    "modules": r.modules.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                });
                v["vetting"] = match &vetting {
                    Ok(s) => s.to_json(),
                    Err(e) => serde_json::json!({"status": "error", "vetted": false, "error": e}),
                };
                outln!("{v}");
            } else {
                human.show_recipe(&r, &decls, &irreversible);
                human.show_vetting(&vetting);
            }
            Ok(exit::OK)
        }
        Command::Vet(args) => vet(cli, human, actor, args),
        Command::Daemon(args) => crate::cli_daemon::run(config(cli)?, state_dir(cli)?, args),
        Command::Schedule(cmd) => {
            crate::cli_schedule::run(cmd, &config(cli)?, &|| state_dir(cli), human)
        }
        Command::Status(args) => crate::cli_status::run(args, &config(cli)?, state_dir(cli)?),
        Command::Rollback {
            run_id,
            host,
            dry_run,
            force,
            wait,
            json,
        } => {
            let state = state_dir(cli)?;
            let config = config(cli)?;
            let (sink, out) = sink_for(*json, human, *dry_run);
            let req = app::RollbackRequest {
                run_id: run_id.clone(),
                only_host: host.clone(),
                dry_run: *dry_run,
                force: *force,
                wait: *wait,
            };
            let report = app::rollback(&state, actor, &req, sink)?;
            if !*dry_run {
                send_anchor(&config.audit, human, &state, run_id);
            }
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
                    outln!("{v}");
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
                    outln!("{e}");
                }
            } else {
                human.audit_table(&events);
            }
            Ok(exit::OK)
        }
        Command::Audit(AuditCommand::Verify { anchor }) => {
            let state = state_dir(cli)?;
            let log = AuditLog::new(state.root());
            let now = log.verify_against(anchor.as_ref())?;
            let held = match anchor {
                Some(a) => format!(", anchor {a} holds"),
                None => String::new(),
            };
            human.line(&format!(
                "{}: {} lines, chain intact{held}",
                log.path().display(),
                now.count
            ));
            Ok(exit::OK)
        }
        Command::Audit(AuditCommand::Anchor) => {
            let state = state_dir(cli)?;
            // Anchoring a log that was already edited would vouch for the edit.
            let anchor = AuditLog::new(state.root()).verify_against(None)?;
            outln!("{anchor}");
            Ok(exit::OK)
        }
        Command::Unlock {
            host,
            force,
            fleet,
            json,
        } => unlock(cli, human, actor, host, *force, fleet, *json),
        Command::Exec {
            fleet,
            policy,
            timeout,
            wait,
            json,
            command,
        } => {
            let how = ExecHow {
                timeout: *timeout,
                wait: *wait,
                json: *json,
            };
            exec(cli, human, actor, fleet, policy, &how, command)
        }
        Command::Ping { fleet, json } => ping(cli, human, fleet, *json),
        Command::Hosts {
            pattern,
            fleet,
            json,
            graph,
        } => {
            let how = crate::cli_hosts::Show {
                json: *json,
                graph: *graph,
            };
            crate::cli_hosts::hosts(&config(cli)?, pattern.as_deref(), host_query(fleet), how)
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
                wait: None,
                max_operations: 50_000_000,
                unvetted: false,
                fleet: FleetArgs::default(),
                policy: PolicyArgs::default(),
            };
            run(cli, human, actor, &args)?;
            human.line("\n== 2. the run ==");
            let real = RunArgs {
                dry_run: false,
                ..args
            };
            let code = run(cli, human, actor, &real)?;
            human.line(&format!(
                "\nNow: `ls -l {}/logs`, `tend runs`, `tend audit show`, and undo it all with `tend rollback RUN_ID`.",
                dir.display()
            ));
            Ok(code)
        }
    }
}

fn run(cli: &Cli, human: &Human, actor: &Actor, args: &RunArgs) -> Result<i32> {
    let state = state_dir(cli)?;
    let config = config(cli)?;
    let recipe = Recipe::load(&args.recipe)?;
    let hosts = select_hosts(&config, &args.fleet, false)?;
    let (policy, serial) = policy(&args.policy)?;
    let human = human.with_live(hosts.len());
    let (sink, _out) = sink_for(args.json, &human, args.dry_run);
    let cancel = CancelToken::new();
    let interrupts = Interrupts::install(cancel.clone())
        .map_err(|e| Error::io("cannot set up signal handling", e))?;
    let sink = interrupts.sink(sink);
    let req = RunRequest {
        params: args.params.clone(),
        dry_run: args.dry_run,
        no_rollback: args.no_rollback,
        limits: Limits {
            max_operations: args.max_operations,
            timeout: args.timeout,
        },
        hosts,
        forks: args.fleet.forks,
        policy,
        serial,
        atomic: args.policy.atomic,
        unvetted: args.unvetted,
        wait: args.wait,
        cancel,
    };
    let result = app::run(&state, &config, actor, &recipe, &req, sink)?;
    if !args.dry_run {
        send_anchor(&config.audit, &human, &state, &result.run_id);
    }
    if let Some(note) = &result.vetting.unvetted_note {
        human.note(note);
    }
    if !args.json {
        human.summary(&result);
    }
    Ok(match result.outcome {
        Outcome::Ok if args.dry_run && args.detailed_exitcode => {
            if result.changed + result.unknown > 0 {
                exit::CHANGES
            } else {
                exit::OK
            }
        }
        Outcome::Cancelled => interrupts.exit_code(),
        o => exit_code(o),
    })
}

fn vet(cli: &Cli, human: &Human, actor: &Actor, args: &VetArgs) -> Result<i32> {
    let state = state_dir(cli)?;
    let trust = config(cli)?.trust(&state)?;
    if args.list {
        return vet_list(&trust, args.json);
    }
    let path = args
        .recipe
        .as_deref()
        .ok_or_else(|| Error::Usage("name the recipe: tend vet RECIPE --by NAME".into()))?;
    let audit = |event: serde_json::Value| {
        let mut event = event;
        event["user"] = actor.user.clone().into();
        if let Err(e) = AuditLog::new(state.root()).append(event) {
            human.error(&format!("the audit log did not record it: {e}"));
        }
    };
    if args.revoke {
        let e = trust.revoke(path)?;
        audit(serde_json::json!({
            "event": "revoke", "recipe": e.recipe, "recipe_hash": e.hash, "by": e.by,
        }));
        if args.json {
            outln!("{}", serde_json::json!({"revoked": e}));
        } else {
            human.line(&format!(
                "revoked: {} was vetted by {} at {}; it counts as unvetted now",
                e.recipe, e.by, e.at
            ));
        }
        return Ok(exit::OK);
    }
    // `tend check` first: only a recipe that compiles and declares sound parameters.
    let recipe = Recipe::load(path)?;
    let decls = app::declared_params(&recipe, &[])?;
    if args.print_message {
        let by = args.by.as_deref().unwrap_or_default();
        let entry = trust.draft(&recipe, by, args.note.as_deref())?;
        out!("{}", trust::message(&entry));
        return Ok(exit::OK);
    }
    let sign = match (&args.sign_key, &args.signature) {
        (Some(k), _) => Sign::Key(k.clone()),
        (None, Some(sig)) => Sign::File {
            signature: sig.clone(),
            message: args.message.clone(),
        },
        (None, None) => Sign::None,
    };
    let report = trust.vet(
        &recipe,
        VetRequest {
            by: args.by.as_deref(),
            note: args.note.as_deref(),
            sign,
        },
    )?;
    let e = &report.entry;
    audit(serde_json::json!({
        "event": "vet", "recipe": e.recipe, "recipe_hash": e.hash, "by": e.by, "note": e.note,
        "signed_by": report.signer.as_ref().map(|g| g.principal.clone()),
    }));
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "vetted": e,
                "message": trust::message(e),
                "previous": report.previous,
                "diff": report.diff,
                "signer": report.signer,
                "trust_file": trust.file.display().to_string(),
            })
        );
        return Ok(exit::OK);
    }
    human.line(&format!(
        "{}: checked ({} parameter{}, {} module{} imported)",
        path.display(),
        decls.len(),
        if decls.len() == 1 { "" } else { "s" },
        recipe.modules.len(),
        if recipe.modules.len() == 1 { "" } else { "s" },
    ));
    if let Some(prev) = &report.previous {
        if prev.hash == e.hash {
            human.line(&format!(
                "already vetted as it is, by {} at {}; recorded again",
                prev.by, prev.at
            ));
        } else if report.diff_missing {
            human.line(&format!(
                "previously vetted by {} at {} as {}; that text is not kept in this state dir, so no diff",
                prev.by, prev.at, prev.hash
            ));
        } else {
            human.line(&format!(
                "changes since vetted by {} at {} ({}):",
                prev.by, prev.at, prev.hash
            ));
            human.plain_diff(report.diff.as_deref().unwrap_or_default());
        }
    }
    let signed = match (&report.signer, &report.unchecked) {
        (Some(g), _) => format!(", signed by {} ({})", g.principal, g.key),
        (None, Some(why)) => format!(", signed (not checked: {why})"),
        (None, None) => String::new(),
    };
    human.line(&format!(
        "vetted {} {} by {} at {}{signed}\nrecorded in {}",
        e.recipe,
        e.hash,
        e.by,
        e.at,
        trust.file.display()
    ));
    Ok(exit::OK)
}

fn vet_list(trust: &Trust, json: bool) -> Result<i32> {
    let rows = trust.list()?;
    if json {
        for (e, status) in &rows {
            let mut v = serde_json::to_value(e).map_err(|e| Error::Other(e.to_string()))?;
            v["signed"] = e.signature.is_some().into();
            if let Some(o) = v.as_object_mut() {
                o.remove("signature");
            }
            v["status"] = match status {
                Ok(s) => s.to_json(),
                Err(why) => serde_json::json!({
                    "status": if why.starts_with("missing") { "missing" } else { "error" },
                    "vetted": false,
                    "description": why,
                }),
            };
            outln!("{v}");
        }
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        outln!("no vetted recipes in {}", trust.file.display());
        return Ok(exit::OK);
    }
    let mut t = table(&["RECIPE", "STATUS", "BY", "AT", "SIGNED", "NOTE"]);
    for (e, status) in &rows {
        let status = match status {
            Ok(s) if s.is_vetted() => "vetted".to_string(),
            Ok(s) => format!("{}: {}", s.as_str(), s.describe()),
            Err(why) => why.clone(),
        };
        let status: String = status.chars().take(90).collect();
        // The trust file is edited by people: nothing in it may drive the terminal.
        let cell = |s: &str| escape(s).into_owned();
        t.add_row(vec![
            cell(&e.recipe),
            cell(&status),
            cell(&e.by),
            cell(&e.at),
            if e.signature.is_some() { "yes" } else { "no" }.to_string(),
            cell(e.note.as_deref().unwrap_or_default()),
        ]);
    }
    outln!("{t}");
    Ok(exit::OK)
}

/// `tend exec` flags beside the fleet's.
struct ExecHow {
    timeout: Option<Duration>,
    wait: Option<Duration>,
    json: bool,
}

fn exec(
    cli: &Cli,
    human: &Human,
    actor: &Actor,
    fleet: &FleetArgs,
    policy_args: &PolicyArgs,
    how: &ExecHow,
    command: &[String],
) -> Result<i32> {
    let (timeout, json) = (how.timeout, how.json);
    let state = state_dir(cli)?;
    let config = config(cli)?;
    let recipe = app::exec_recipe()?;
    let hosts = select_hosts(&config, fleet, false)?;
    let (policy, serial) = policy(policy_args)?;
    // Outputs are grouped per host at the end; live lines meanwhile.
    let collected: Arc<Mutex<Vec<Event>>> = Arc::default();
    let live = human.with_live(hosts.len());
    let inner = if json {
        Output::Json.sink()
    } else {
        let keep = collected.clone();
        let live = live.clone();
        Arc::new(move |e: &Event| {
            if matches!(e, Event::HostStart { .. } | Event::HostEnd { .. }) {
                live.progress_only(e);
            }
            keep.lock().expect("events").push(e.clone());
        }) as Sink
    };
    let cancel = CancelToken::new();
    let interrupts = Interrupts::install(cancel.clone())
        .map_err(|e| Error::io("cannot set up signal handling", e))?;
    let inner = interrupts.sink(inner);
    let mut params = vec![("command".to_string(), command.join(" "))];
    if let Some(t) = timeout {
        params.push(("timeout".into(), t.as_secs().max(1).to_string()));
    }
    let req = RunRequest {
        params,
        dry_run: false,
        no_rollback: true,
        limits: Limits::default(),
        hosts,
        forks: fleet.forks,
        policy,
        serial,
        atomic: false,
        // The command itself is the request to run something unvetted.
        unvetted: true,
        wait: how.wait,
        cancel,
    };
    let result = app::run(&state, &config, actor, &recipe, &req, inner)?;
    send_anchor(&config.audit, human, &state, &result.run_id);
    let mut codes = Vec::new();
    for h in &result.hosts {
        let events = collected.lock().expect("events");
        let step = events.iter().find_map(|e| match e {
            Event::Step { host, report, .. } if *host == h.host => Some(report.clone()),
            _ => None,
        });
        codes.push((h.host.clone(), h.outcome, step, h.error.clone()));
    }
    if !json {
        human.exec_report(&codes);
    }
    let all_ok = codes
        .iter()
        .all(|(_, o, step, _)| *o == Outcome::Ok && step.as_ref().and_then(|s| s.code) == Some(0));
    Ok(if result.outcome == Outcome::Cancelled {
        interrupts.exit_code()
    } else if all_ok {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn unlock(
    cli: &Cli,
    human: &Human,
    actor: &Actor,
    host: &str,
    force: bool,
    fleet: &FleetArgs,
    json: bool,
) -> Result<i32> {
    let state = state_dir(cli)?;
    let fleet = FleetArgs {
        hosts: Some(host.to_string()),
        ..fleet.clone()
    };
    let config = config(cli)?;
    let specs = select_hosts(&config, &fleet, false)?;
    let [spec] = specs.as_slice() else {
        return Err(Error::Usage(format!(
            "{host:?} names {} hosts; unlock one at a time",
            specs.len()
        )));
    };
    let found = app::unlock(&state, actor, spec, force)?;
    let mut code = exit::OK;
    for u in &found {
        if !u.released {
            code = exit::LOCKED;
        }
        if json {
            outln!("{}", serde_json::to_string(u).unwrap_or_default());
            continue;
        }
        let what = if u.released {
            format!(
                "released the lock of {} ({}) held by {}; its changes were not rolled back: `tend rollback {}` if they should be",
                u.host, u.lock, u.holder.describe(), u.holder.run_id
            )
        } else {
            format!(
                "kept the lock of {} ({}): held by {}, which is alive{}",
                u.host,
                u.lock,
                u.holder.describe(),
                if u.holder.liveness() == crate::lease::Liveness::Unknown {
                    " or on another machine (--force releases it)"
                } else {
                    ""
                }
            )
        };
        human.line(&escape(&what));
    }
    if found.is_empty() && !json {
        human.line(&format!("{host} is not locked"));
    }
    Ok(code)
}

fn ping(cli: &Cli, human: &Human, fleet: &FleetArgs, json: bool) -> Result<i32> {
    let hosts = select_hosts(&config(cli)?, fleet, true)?;
    let results = crate::ping::ping(&hosts, fleet.forks);
    if json {
        for r in &results {
            outln!(
                "{}",
                serde_json::to_string(r).map_err(|e| Error::Other(e.to_string()))?
            );
        }
    } else {
        human.ping_table(&results);
    }
    Ok(if results.iter().all(|r| r.ok) {
        exit::OK
    } else {
        exit::FAILED
    })
}
