//! `tend daemon`: runs the `[[schedule]]` entries of tend.toml until SIGTERM.
//!
//! - [`scheduler`]: the loop, overlap rules, the global cap;
//! - [`cluster`]: cluster mode, this daemon as one node (heartbeat, takeover);
//! - [`fire`]: one fire, an ordinary [`crate::app::run`] with trigger `schedule`;
//! - [`record`]: each entry's state file, `STATE/schedules/NAME.json`;
//! - [`recover`]: start-up rollback of runs a crash interrupted;
//! - [`control`]: the Unix socket behind `tend schedule run|pause|resume`;
//! - `[daemon]` in tend.toml is read by [`crate::app::Config`] ([`Settings`]).
//!
//! Start-up order matters: signals first (a SIGTERM during recovery is not lost),
//! then the socket (a second daemon on the same state dir stops here), then the
//! rollback of interrupted runs, then `@reboot` and `catch_up`, then the loop.

pub mod cluster;
pub mod control;
pub mod fire;
pub mod record;
pub mod recover;
pub mod scheduler;

use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub use crate::app::DaemonSettings as Settings;

use crate::app::{Actor, Config};
use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::state::StateDir;
use fire::{Ctx, Reason};
use scheduler::Scheduler;

/// Run the scheduler for `config` until SIGTERM (or SIGINT); 0 once every running
/// job has finished or been cancelled and rolled back.
/// `metrics`: where to serve /metrics and the status page, and whether a non-loopback
/// address is allowed.
pub fn run(
    state: StateDir,
    config: Config,
    actor: Actor,
    passphrase: Option<Secret>,
    metrics: Option<(std::net::SocketAddr, bool)>,
) -> Result<i32> {
    if config.path().is_none() {
        return Err(Error::Usage(
            "no tend.toml here (and no --config): the daemon has nothing to schedule".into(),
        ));
    }
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])
        .map_err(|e| Error::io("cannot install signal handlers", e))?;
    let status = match metrics {
        Some((addr, allow_remote)) => Some(Arc::new(crate::status::serve(
            addr,
            state.clone(),
            config.schedules.clone(),
            allow_remote,
        )?)),
        None => None,
    };
    let sock = control::socket_path(&state);
    let listener = control::bind(&sock)?;
    // Cluster mode: connected and the schema migrated before anything runs, unless
    // the database cannot be reached yet (then the node waits for it).
    let (stores, unprepared) = crate::app::stores_for_daemon(&state, &config)?;
    let mut ctx = Ctx::new(state, actor, passphrase);
    let node = stores.cluster.clone().map(|c| {
        let address = metrics.map_or_else(crate::lease::host_name, |(a, _)| a.to_string());
        Arc::new(cluster::Node::new(c, address, &config.schedules).unprepared(unprepared))
    });
    if let Some(node) = &node {
        ctx = ctx.in_cluster(stores, node.clone());
    }
    let ctx = Arc::new(ctx);
    match &node {
        // Registers the node, and rolls back the runs whose lease expired (this
        // node's own from before a crash among them).
        Some(node) => node.tick(&ctx, &|_| {}),
        None => recover::interrupted_runs(&ctx),
    }
    let sched = Scheduler::new(ctx.clone(), config);
    let node_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let node_thread = match &node {
        Some(node) => {
            let (s, shown) = (sched.clone(), status.clone());
            node.on_db_change(move |up| {
                if let Some(st) = &shown {
                    st.set_cluster_db_up(up);
                }
                if up {
                    s.catch_up_later();
                }
            });
            if let Some(st) = &status {
                st.set_cluster_db_up(!node.fenced());
            }
            let s = sched.clone();
            Some(node.spawn(
                ctx.clone(),
                node_stop.clone(),
                Arc::new(move |why: &str| s.cancel_running(why)),
            )?)
        }
        None => None,
    };
    {
        let sched = sched.clone();
        let status = status.clone();
        std::thread::Builder::new()
            .name("tend-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig == SIGHUP {
                        tracing::info!("SIGHUP: reloading tend.toml");
                        sched.reload();
                        if let Some(s) = &status {
                            // The loop applies the reload; the page follows once it has.
                            std::thread::sleep(std::time::Duration::from_millis(200));
                            s.set_entries(sched.schedules());
                        }
                    } else {
                        tracing::info!(signal = sig, "stopping: no new fires");
                        crate::status::stopping();
                        sched.stop();
                    }
                }
            })
            .map_err(|e| Error::io("cannot start the signal thread", e))?;
    }
    {
        let (sched, ctx) = (sched.clone(), ctx.clone());
        std::thread::Builder::new()
            .name("tend-control".into())
            .spawn(move || control::serve(listener, sched, ctx))
            .map_err(|e| Error::io("cannot start the control thread", e))?;
    }
    sched.start_up();
    if let Some(s) = &status {
        s.set_daemon_up(true);
        tracing::info!(address = %s.addr(), "serving /metrics and the status page");
    }
    tracing::info!(entries = sched.entries(), socket = %sock.display(), "daemon started");
    crate::status::ready();
    sched.run();
    sched.shut_down();
    // The leases of the runs are renewed until the last one has ended.
    node_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(t) = node_thread {
        let _ = t.join();
    }
    if let Some(s) = &status {
        s.set_daemon_up(false);
    }
    let _ = std::fs::remove_file(&sock);
    tracing::info!("daemon stopped");
    Ok(0)
}

/// `tend schedule run NAME` with no daemon up: the fire runs in this process (no
/// other run of the entry can be going, so there is no overlap to apply).
pub fn run_here(
    state: StateDir,
    config: &Config,
    actor: Actor,
    passphrase: Option<Secret>,
    name: &str,
) -> Result<String> {
    let entry = find(config, name)?;
    let stores = crate::app::stores_for(&state, config)?;
    let mut ctx = Ctx::new(state, actor, passphrase);
    ctx.stores = stores;
    Ok(fire::fire(
        &ctx,
        config,
        entry,
        Reason::Manual,
        None,
        CancelToken::new(),
    ))
}

/// `tend schedule pause|resume NAME` with no daemon up: the record is changed here.
pub fn set_paused_here(
    state: StateDir,
    config: &Config,
    actor: Actor,
    name: &str,
    paused: bool,
) -> Result<()> {
    find(config, name)?;
    let user = actor.user.clone();
    let stores = crate::app::stores_for(&state, config)?;
    let mut ctx = Ctx::new(state, actor, None);
    ctx.records = Arc::new(record::Records::shared(&ctx.state, stores.cluster.clone()));
    ctx.stores = stores;
    control::set_paused(&ctx, name, paused, &user, None);
    Ok(())
}

fn find<'a>(config: &'a Config, name: &str) -> Result<&'a crate::schedule::Entry> {
    config
        .schedules
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.schedules.iter().map(|e| e.name.as_str()).collect();
            let hint = crate::error::did_you_mean(name, &names)
                .map(|n| format!("; did you mean {n:?}?"))
                .unwrap_or_default();
            Error::Usage(format!("no schedule entry {name:?} in tend.toml{hint}"))
        })
}
