//! Fleet execution policy: how many hosts run at once (`--forks`), in which batches
//! (`--serial`), and when a failure stops the rest (`--fail-fast`,
//! `--max-fail-percent`). Independent of what each host does, so `run`, `exec` and
//! `ping` share it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// SSH work is waiting, not computing: a host thread spends its time blocked on the
/// network or on the remote command, and a session costs well under 1 MiB. 32 at once
/// keeps 2 cores busy with handshakes without queueing, stays far below typical
/// `MaxStartups` limits of a shared bastion, and takes 500 hosts in 16 waves.
pub const DEFAULT_FORKS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Count(usize),
    Percent(u8),
}

/// `--serial 1,5,25%`: a canary of one, then five, then a quarter of the fleet at a
/// time (the last size repeats, as in Ansible).
pub fn parse_serial(s: &str) -> Result<Vec<BatchSize>, String> {
    let sizes: Result<Vec<BatchSize>, String> = s
        .split(',')
        .map(str::trim)
        .map(|t| {
            if let Some(p) = t.strip_suffix('%') {
                match p.parse::<u8>() {
                    Ok(n) if (1..=100).contains(&n) => Ok(BatchSize::Percent(n)),
                    _ => Err(format!(
                        "--serial: {t:?} is not a percentage from 1% to 100%"
                    )),
                }
            } else {
                match t.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(BatchSize::Count(n)),
                    _ => Err(format!(
                        "--serial: {t:?} is not a positive number or percentage"
                    )),
                }
            }
        })
        .collect();
    let sizes = sizes?;
    if sizes.is_empty() {
        return Err("--serial needs at least one batch size".into());
    }
    Ok(sizes)
}

/// Split `n` hosts into consecutive batches; no sizes means one batch of all.
pub fn batches(n: usize, sizes: &[BatchSize]) -> Vec<std::ops::Range<usize>> {
    if sizes.is_empty() {
        return if n == 0 {
            vec![]
        } else {
            std::iter::once(0..n).collect()
        };
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while start < n {
        let size = match sizes[i.min(sizes.len() - 1)] {
            BatchSize::Count(c) => c,
            BatchSize::Percent(p) => (n * p as usize).div_ceil(100).max(1),
        };
        let end = (start + size).min(n);
        out.push(start..end);
        start = end;
        i += 1;
    }
    out
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub fail_fast: bool,
    pub max_fail_percent: Option<u8>,
    /// In rolling batches, by default any failure stops the next batch: a bad change
    /// must not reach the whole fleet.
    pub serial: bool,
}

impl Policy {
    /// Whether, with `failed` of `total` hosts failed so far, no further host may start.
    pub fn broken(&self, failed: usize, total: usize) -> bool {
        if failed == 0 {
            return false;
        }
        if self.fail_fast {
            return true;
        }
        if let Some(max) = self.max_fail_percent {
            return failed * 100 > max as usize * total;
        }
        false
    }

    /// Whether the next batch may start after a batch ended with these failures.
    pub fn next_batch_allowed(&self, failed: usize, total: usize) -> bool {
        if self.broken(failed, total) {
            return false;
        }
        !(self.serial && self.max_fail_percent.is_none() && failed > 0)
    }
}

/// Run `f` on every item, at most `forks` at once. Items not yet started when `stop`
/// is set are skipped (their slot stays `None`); running ones finish.
pub fn run_pool<T, R, F>(items: Vec<T>, forks: usize, stop: &AtomicBool, f: F) -> Vec<Option<R>>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let n = items.len();
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..forks.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let item = slots[i].lock().expect("slot").take().expect("taken once");
                let r = f(item);
                *results[i].lock().expect("result") = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().expect("result"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_batches() {
        let s = parse_serial("1,2").unwrap();
        assert_eq!(batches(5, &s), vec![0..1, 1..3, 3..5]);
        let s = parse_serial("1,25%").unwrap();
        assert_eq!(batches(10, &s), vec![0..1, 1..4, 4..7, 7..10]);
        assert_eq!(batches(3, &[]), vec![0..3]);
        assert!(parse_serial("0").is_err());
        assert!(parse_serial("150%").is_err());
    }

    #[test]
    fn policies() {
        let p = Policy::default();
        assert!(!p.broken(3, 5));
        assert!(Policy {
            fail_fast: true,
            ..Default::default()
        }
        .broken(1, 5));
        let p = Policy {
            max_fail_percent: Some(20),
            ..Default::default()
        };
        assert!(!p.broken(1, 5));
        assert!(p.broken(2, 5));
        let p = Policy {
            serial: true,
            ..Default::default()
        };
        assert!(!p.next_batch_allowed(1, 5));
        assert!(p.next_batch_allowed(0, 5));
    }

    #[test]
    fn pool_runs_all_and_stops() {
        let stop = AtomicBool::new(false);
        let r = run_pool((0..10).collect(), 3, &stop, |i: i32| i * 2);
        assert_eq!(r.iter().flatten().sum::<i32>(), 90);
        let stop = AtomicBool::new(false);
        let r = run_pool((0..10).collect(), 1, &stop, |i: i32| {
            if i == 2 {
                stop.store(true, Ordering::SeqCst);
            }
            i
        });
        assert_eq!(r.iter().flatten().count(), 3);
    }
}
