//! `tend exec`: an ad-hoc command on hosts, through the built-in exec recipe.

use super::*;

/// `tend exec` flags beside the fleet's.
pub(crate) struct ExecHow {
    pub(crate) timeout: Option<Duration>,
    pub(crate) wait: Option<Duration>,
    pub(crate) json: bool,
}

pub(crate) fn exec(
    cli: &Cli,
    human: &Human,
    actor: &Actor,
    fleet: &FleetArgs,
    policy_args: &PolicyArgs,
    how: &ExecHow,
    command: &[String],
) -> Result<i32> {
    let (timeout, json) = (how.timeout, how.json);
    app::exec::refuse_atomic(policy_args.atomic)?;
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
    let mut params = vec![("command".to_string(), app::exec::command_line(command))];
    if let Some(t) = timeout {
        params.push(("timeout".into(), t.as_secs().max(1).to_string()));
    }
    let req = RunRequest {
        params,
        secrets: Default::default(),
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
    let result = app::run(&stores(cli, &state)?, &config, actor, &recipe, &req, inner)?;
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
    // A non-zero exit fails the host (see the exec recipe): outcomes say it all, with
    // or without --json (which collects no step events here).
    let all_ok = codes.iter().all(|(_, o, _, _)| *o == Outcome::Ok);
    Ok(if result.outcome == Outcome::Cancelled {
        interrupts.exit_code()
    } else if all_ok {
        exit::OK
    } else {
        exit::FAILED
    })
}
