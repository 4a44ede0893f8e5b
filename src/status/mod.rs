//! The daemon's window for people and for Prometheus: `/metrics` (the schedules'
//! saved state in the Prometheus text format), `/` (a read-only status page: each
//! schedule's next fire, last outcomes, run durations) and `/runs/<id>` (a run's steps
//! and diffs from the audit log). Everything is read from the state directory on each
//! request, so it shows what the daemon saved and can be served without it
//! (`tend status --listen`).
//!
//! It serves on its own plain thread with a blocking HTTP server (`tiny_http`): the
//! daemon's async runtime stays the scheduler's, and a slow client delays only the
//! page. It binds loopback unless told otherwise: the page names hosts and recipes,
//! which is not for everyone on the network, and it has no authentication.
//!
//! [`ready`] and [`stopping`] tell systemd (`Type=notify`) how the daemon is doing.

mod metrics;
mod page;
mod systemd;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI8, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use chrono::Utc;

use crate::audit::AuditLog;
use crate::error::{Error, Result};
use crate::schedule::saved::EntryState;
use crate::schedule::Entry;
use crate::state::{check_run_id, StateDir};

pub use systemd::{ready, stopping};

/// How many runs of any kind the status page lists at its foot.
const RECENT_RUNS: usize = 20;

/// A running status server. Dropping it stops it.
pub struct StatusServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: StateDir,
    entries: RwLock<Vec<Entry>>,
    daemon_up: AtomicBool,
    /// Cluster mode: 1 the database answers, 0 it does not; -1 not a cluster.
    cluster_db_up: AtomicI8,
    runs: metrics::RunCounts,
}

/// Serve `/metrics`, `/` and `/runs/<id>` for `entries` and the state in `state` on
/// `addr` (port 0: any free port; see [`StatusServer::addr`]). A non-loopback address
/// is refused unless `allow_remote`, and logged as a warning when allowed.
/// `tend_daemon_up` is 1: the caller is taken to be the daemon (see
/// [`StatusServer::set_daemon_up`]).
pub fn serve(
    addr: SocketAddr,
    state: StateDir,
    entries: Vec<Entry>,
    allow_remote: bool,
) -> Result<StatusServer> {
    if !addr.ip().is_loopback() {
        if !allow_remote {
            return Err(Error::Usage(format!(
                "{addr} is not a loopback address: the status page and metrics have no \
                 authentication, so they listen on 127.0.0.1 or ::1 unless remote access \
                 is allowed explicitly (`tend daemon --metrics-allow-remote`, `tend status \
                 --allow-remote`); or listen on loopback behind a reverse proxy that \
                 authenticates"
            )));
        }
        tracing::warn!(
            "status page and metrics listen on {addr}, reachable from other machines, without authentication"
        );
    }
    let server = tiny_http::Server::http(addr)
        .map_err(|e| Error::Other(format!("cannot listen on {addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::Other(format!("{addr}: not an IP address")))?;
    let server = Arc::new(server);
    let shared = Arc::new(Shared {
        state,
        entries: RwLock::new(entries),
        daemon_up: AtomicBool::new(true),
        cluster_db_up: AtomicI8::new(-1),
        runs: metrics::RunCounts::default(),
    });
    let thread = {
        let (server, shared) = (server.clone(), shared.clone());
        std::thread::Builder::new()
            .name("tend-status".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    answer(&shared, request);
                }
            })
            .map_err(|e| Error::io("cannot start the status server's thread", e))?
    };
    tracing::info!("status page on http://{bound}/, metrics on http://{bound}/metrics");
    Ok(StatusServer {
        addr: bound,
        shared,
        server,
        thread: Some(thread),
    })
}

impl StatusServer {
    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The entries after a reload of tend.toml.
    pub fn set_entries(&self, entries: Vec<Entry>) {
        *self
            .shared
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner()) = entries;
    }

    /// What `tend_daemon_up` says: 0 when served without the daemon.
    pub fn set_daemon_up(&self, up: bool) {
        self.shared.daemon_up.store(up, Ordering::Relaxed);
    }

    /// What `tend_cluster_db_up` says (cluster mode only: absent otherwise).
    pub fn set_cluster_db_up(&self, up: bool) {
        self.shared
            .cluster_db_up
            .store(i8::from(up), Ordering::Relaxed);
    }

    /// Serve until the process ends (for `tend status`).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Response = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn answer(shared: &Shared, request: tiny_http::Request) {
    let response = match request.method() {
        tiny_http::Method::Get | tiny_http::Method::Head => route(shared, request.url()),
        _ => text(405, "only GET and HEAD: this page is read-only\n"),
    };
    // The client may be gone; nothing to tell it.
    let _ = request.respond(response);
}

fn route(shared: &Shared, url: &str) -> Response {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let result = match path {
        "/metrics" => Ok(with_type(
            tiny_http::Response::from_string(metrics::render(
                &snapshot(shared),
                Utc::now(),
                shared.daemon_up.load(Ordering::Relaxed),
                match shared.cluster_db_up.load(Ordering::Relaxed) {
                    -1 => None,
                    v => Some(v == 1),
                },
                &shared.runs,
            )),
            metrics::CONTENT_TYPE,
        )),
        "/" => index(shared),
        _ => match path.strip_prefix("/runs/") {
            Some(id) if check_run_id(id).is_ok() => run_page(shared, id),
            _ => Ok(text(
                404,
                "not found: / lists the schedules and their runs\n",
            )),
        },
    };
    result.unwrap_or_else(|e| {
        tracing::warn!("status page {path}: {e}");
        text(500, &format!("{e}\n"))
    })
}

/// Each entry with its saved state; a state file that cannot be read counts as none
/// (and is logged), so one damaged file does not take the whole page down.
fn snapshot(shared: &Shared) -> Vec<(Entry, Option<EntryState>)> {
    let entries = shared.entries.read().unwrap_or_else(|e| e.into_inner());
    entries
        .iter()
        .map(|e| {
            let state = EntryState::load(&shared.state, &e.name).unwrap_or_else(|err| {
                tracing::warn!("schedule {:?}: {err}", e.name);
                None
            });
            (e.clone(), state)
        })
        .collect()
}

fn index(shared: &Shared) -> Result<Response> {
    let entries = snapshot(shared);
    let mut recent = shared.state.list_runs()?;
    recent.reverse();
    recent.truncate(RECENT_RUNS);
    let html = page::index(&page::Overview {
        now: Utc::now(),
        daemon_up: shared.daemon_up.load(Ordering::Relaxed),
        state_dir: &shared.state.root().display().to_string(),
        entries: &entries,
        recent: &recent,
    });
    Ok(html_response(200, html))
}

fn run_page(shared: &Shared, id: &str) -> Result<Response> {
    let meta = shared.state.read_meta(id).ok();
    let events = AuditLog::new(shared.state.root()).read(Some(id))?;
    Ok(match page::run(id, meta.as_ref(), &events) {
        Some(html) => html_response(200, html),
        None => text(404, "no such run: / lists the recent ones\n"),
    })
}

fn with_type(r: Response, content_type: &str) -> Response {
    match tiny_http::Header::from_bytes("Content-Type", content_type) {
        Ok(h) => r.with_header(h),
        Err(()) => r,
    }
}

fn html_response(status: u16, html: String) -> Response {
    with_type(
        tiny_http::Response::from_string(html).with_status_code(status),
        "text/html; charset=utf-8",
    )
}

fn text(status: u16, body: &str) -> Response {
    with_type(
        tiny_http::Response::from_string(body).with_status_code(status),
        "text/plain; charset=utf-8",
    )
}
