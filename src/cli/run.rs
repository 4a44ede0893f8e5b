//! `tend run` (and the secrets it asks for on the terminal).

use super::*;

/// The secret parameters `recipe` declares and `given` leaves out, asked for on the
/// terminal (no echo) when standard input is one; the run itself never prompts.
pub(crate) fn ask_secrets(
    recipe: &Recipe,
    given: &[(String, String)],
) -> Result<std::collections::BTreeMap<String, Secret>> {
    use std::io::IsTerminal;
    let mut asked = std::collections::BTreeMap::new();
    if !std::io::stdin().is_terminal() {
        return Ok(asked);
    }
    let decls = app::declared_params(recipe, given)?;
    let missing = decls
        .iter()
        .filter(|d| d.ty == ParamType::Secret && !given.iter().any(|(k, _)| *k == d.name));
    for d in missing {
        let prompt = format!("tend: secret parameter `{}`: ", d.name);
        let value = crate::secret::tty::read_hidden(&prompt).map_err(|e| {
            Error::Param(format!(
                "secret parameter `{}`: cannot read it from the terminal: {e}",
                d.name
            ))
        })?;
        let secret = Secret::entered(&d.name, value).map_err(Error::Param)?;
        asked.insert(d.name.clone(), secret);
    }
    Ok(asked)
}

pub(crate) fn run(cli: &Cli, human: &Human, actor: &Actor, args: &RunArgs) -> Result<i32> {
    let state = state_dir(cli)?;
    let config = config(cli)?;
    let recipe = super::recipes::load(human, &args.recipe)?;
    let hosts = select_hosts(&config, &args.fleet, false)?;
    let (policy, serial) = policy(&args.policy)?;
    let human = human.with_live(hosts.len());
    let (sink, _out) = sink_for(args.json, &human, args.dry_run);
    let cancel = CancelToken::new();
    let interrupts = Interrupts::install(cancel.clone())
        .map_err(|e| Error::io("cannot set up signal handling", e))?;
    let sink = interrupts.sink(sink);
    let secrets = ask_secrets(&recipe, &args.params)?;
    let req = RunRequest {
        params: args.params.clone(),
        secrets,
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
    let result = app::run(&stores(cli, &state)?, &config, actor, &recipe, &req, sink)?;
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

/// `tend demo`: the log-rotate recipe on sample logs, as a dry-run and then for real.
pub(crate) fn demo(
    cli: &Cli,
    human: &Human,
    actor: &Actor,
    dir: Option<&std::path::Path>,
) -> Result<i32> {
    let dir = dir
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("tend-demo"));
    let recipe = demo::prepare(&dir)?;
    let dir = demo::real_dir(&dir);
    human.line(&format!(
        "Sample logs in {}/logs; recipe {}.\n\n== 1. dry-run: what would change ==",
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
    let stores = stores(cli, &state_dir(cli)?)?;
    let run_id = crate::state::resolve_run_id_in(|| stores.runs.list(), "last", true)?;
    human.line(&format!(
        "\nNow: `ls -l {}/logs`, `tend runs`, `tend audit show {run_id}`, and undo it all with `tend rollback {run_id}`.",
        dir.display()
    ));
    Ok(code)
}
