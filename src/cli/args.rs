//! The command line: every subcommand, flag and its help text (clap derive). Parsed
//! once here; nothing downstream re-validates flags.

use super::*;

pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0   success (dry-run with --detailed-exitcode: nothing would change)
  1   the run failed; nothing to roll back, or --no-rollback
  2   dry-run with --detailed-exitcode: there are changes to make
  3   the run failed and every change was rolled back
  4   the run failed and rollback could not undo everything (see the report)
  64  bad command line or parameter      65  invalid recipe
  66  recipe, run or file not found      67  audit log failed verification
  69  the cluster database cannot be reached (try again later)
  70  internal error                     73  tend new / recipes copy: the file exists, or cannot be made
  75  the host is locked by another run
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
    pub(crate) state_dir: Option<PathBuf>,

    /// Where this machine's host locks are kept, shared by every state dir
    /// [default: /run/tend/locks for root, else /tmp/tend-UID/locks]
    #[arg(long, global = true, env = "TEND_LOCK_DIR", value_name = "DIR")]
    pub(crate) lock_dir: Option<PathBuf>,

    /// The config file with hosts and groups [default: ./tend.toml if present]
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "TEND_CONFIG",
        value_name = "FILE"
    )]
    pub(crate) config: Option<PathBuf>,

    /// More output: -v shows unchanged steps and diffs of real runs, -vv debug logs
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Only errors and the final summary
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,

    /// Colors: auto (only on a terminal, and not with NO_COLOR), always, never
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub(crate) color: Color,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(crate) enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run a recipe (or plan it with --dry-run)
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Parse a recipe, resolve its imports and check parameters; changes nothing
    Check {
        /// The recipe file (.rhai), or the name of a built-in recipe (`tend recipes`)
        recipe: PathBuf,
        /// Parameter to check, as NAME=VALUE (repeatable)
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// The result as one JSON object (`kind: check`)
        #[arg(long)]
        json: bool,
    },
    /// Approve a recipe as it is now (its text and every module it imports), list or
    /// revoke approvals
    #[command(after_help = VET_HELP)]
    Vet(VetArgs),
    /// Describe a recipe: documentation, parameters, reversibility, content hash, vetting
    Show {
        /// The recipe file (.rhai), or the name of a built-in recipe (`tend recipes`)
        recipe: PathBuf,
        /// The description as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Undo a run by replaying its journal in reverse (also after a crash or kill -9)
    Rollback {
        /// The run to undo (see `tend runs`); `last` is the last real run, `last~1`
        /// the one before
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
    /// Cluster mode (`[cluster]` in tend.toml): the nodes sharing one PostgreSQL
    #[command(subcommand)]
    Cluster(ClusterCommand),
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
    Schedule(crate::cli::schedule::ScheduleCommand),
    /// Serve the status page and /metrics for the schedules and runs here, without the
    /// daemon (read-only)
    Status(crate::cli::status::StatusArgs),
    /// Free what finished runs hold, as [retention] in tend.toml says: their backups
    /// (here and on their hosts), then their records and journals
    Prune(crate::cli::prune::PruneArgs),
    /// Run recipes' tests (NAME.test.rhai): each case in a throwaway root, checking
    /// the dry-run, a second run, rollback after each step, the scope, then the
    /// test's own expectations
    Test(crate::cli::test::TestArgs),
    /// Pages to share for a folder of recipes: one per recipe and module (parameters,
    /// scope, what rollback undoes, vetting, tests) and an index, in HTML or Markdown
    Doc(crate::cli::doc::DocArgs),
    /// Write a recipe around an existing shell script: its text inside (vetting the
    /// recipe vets it), its arguments and environment as parameters, the paths it
    /// changes (--changes) as scope and undo
    ImportScript(crate::cli::import_script::ImportScriptArgs),
    /// The scheduler: runs the [[schedule]] entries until SIGTERM (SIGHUP reloads
    /// tend.toml); `tend schedule run|pause|resume` talk to it
    Daemon(crate::cli::daemon::DaemonArgs),
    /// List the recipes built into tend; `tend recipes copy NAME DIR` writes one out
    Recipes(crate::cli::recipes::RecipesArgs),
    /// Write a skeleton recipe NAME.rhai to start from (never over an existing file)
    New(crate::cli::ecosystem::NewArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(crate::cli::ecosystem::CompletionsArgs),
    /// Write man pages, one per command and subcommand (tend.1, tend-run.1, tend-audit-show.1...)
    Man(crate::cli::ecosystem::ManArgs),
    /// Create a sample log directory and rotate it with the built-in log-rotate recipe
    Demo {
        /// Where to create the sample [default: $TMPDIR/tend-demo]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Show audit events, all or those of one run
    Show {
        /// Only the events of this run (`last` is the most recent, `last~1` the one before)
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
        /// The result as one JSON object (`kind: audit_verify`)
        #[arg(long)]
        json: bool,
    },
    /// Verify the chain and print its anchor, HASH:COUNT, to keep off this machine
    /// (e.g. `tend audit anchor | logger -t tend-audit`)
    Anchor {
        /// The anchor as one JSON object (`kind: audit_anchor`)
        #[arg(long)]
        json: bool,
    },
    /// Verify the chain, then write every record as JSON Lines, oldest first (the
    /// embedded log's format, also from a cluster's database)
    Export,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// Create or upgrade the cluster's schema (a daemon also does it when it starts)
    Migrate,
    /// The nodes: id, address, version, last heartbeat, runs held; dead ones and
    /// nodes whose [[schedule]] set differs are marked
    Status {
        /// One JSON object per node (`kind: cluster_node`)
        #[arg(long)]
        json: bool,
    },
    /// Stop NODE claiming new fires (its running runs go on); `--undo` lets it claim again
    Drain {
        node: String,
        #[arg(long)]
        undo: bool,
    },
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
    /// The recipe file (.rhai), or the name of a built-in recipe (`tend recipes`)
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

pub(crate) const VET_HELP: &str = "\
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

pub(crate) fn parse_param(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has no parameter name"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Every duration flag is a timeout: bounded, so that no deadline overflows.
pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| e.to_string())
        .and_then(crate::engine::check_timeout)
        .map_err(|e| format!("{s:?}: {e} (write like 30s, 10m)"))
}

/// Rhai takes 0 as "no limit": refused, so that no typo turns the guard off.
pub(crate) fn parse_max_operations(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("0 would mean no limit at all; give a large number instead".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}
