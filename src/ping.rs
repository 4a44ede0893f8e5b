//! `tend ping`: connect, authenticate and run `true` on every host, in parallel, with
//! timings. The floor any fleet run stands on, and the first thing to try when a
//! host misbehaves.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::fleet::run_pool;
use crate::reach::HostSpec;
use crate::transport::ExecRequest;

#[derive(Debug, Clone, serde::Serialize)]
pub struct PingResult {
    pub host: String,
    pub ok: bool,
    pub connect_ms: f64,
    pub exec_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

pub fn ping(hosts: &[HostSpec], forks: usize) -> Vec<PingResult> {
    let stop = AtomicBool::new(false);
    run_pool(hosts.iter().collect(), forks, &stop, |spec: &HostSpec| {
        let t0 = Instant::now();
        let mut r = PingResult {
            host: spec.name.clone(),
            ok: false,
            connect_ms: 0.0,
            exec_ms: 0.0,
            error: None,
        };
        let reached = match spec.connect() {
            Ok(reached) => reached,
            Err(e) => {
                r.connect_ms = ms(t0);
                r.error = Some(e.to_string());
                return r;
            }
        };
        r.connect_ms = ms(t0);
        let t1 = Instant::now();
        match reached.target.exec(&ExecRequest::new("true")) {
            Ok(out) if out.code == 0 => r.ok = true,
            Ok(out) => r.error = Some(format!("`true` exited with {}", out.code)),
            Err(e) => r.error = Some(e.to_string()),
        }
        r.exec_ms = ms(t1);
        r
    })
    .into_iter()
    .flatten()
    .collect()
}
