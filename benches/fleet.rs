//! Fleet benchmark against real `sshd` hosts on loopback (run: `cargo bench --bench fleet`).
//!
//! For 1, 5 and 20 hosts: the connect-only floor (`tend ping`: connect + auth + `true`
//! on every host in parallel), a first run of a 10-operation recipe, a second
//! (no-change) run and a dry-run; wall time and the tend process's peak RSS. Then 10
//! sequential `sh("true")` on a connected host against one protocol round trip.

#[path = "../tests/support/sshd.rs"]
mod sshd;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sshd::Sshd;

const TEND: &str = env!("CARGO_BIN_EXE_tend");

const RECIPE: &str = r#"//! Benchmark: ten operations.
let root = host().vars.root;
fs::dir(`${root}/app`, #{mode: 0o755});
fs::file(`${root}/app/a.conf`, "a = 1\n");
fs::template(`${root}/app/t.conf`, "t.j2", #{name: host().name});
fs::line(`${root}/app/b.conf`, "b = 2", #{regex: "^b ="});
sh("uname -a", #{read_only: true});
fs::link(`${root}/app/current`, `${root}/app/a.conf`);
fs::chmod(`${root}/app/a.conf`, 0o640);
fs::file(`${root}/app/c1`, "1\n");
fs::file(`${root}/app/c2`, "2\n");
fs::file(`${root}/app/c3`, "3\n");
fs::remove(`${root}/app/tmp`);
"#;

struct Measure {
    wall: Duration,
    rss_kib: i64,
    /// tend's own CPU time (user + system): what the controller spends, as opposed
    /// to waiting on the hosts.
    cpu: Duration,
    /// CPU time of the whole machine during the run (`/proc/stat`): tend, sshd and the
    /// commands together, which is what a run on 2 cores is bound by.
    machine_cpu: Duration,
    code: i32,
}

/// Busy CPU time of the whole machine so far (user, nice, system, irq, softirq).
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Run tend, return wall time and peak RSS (from wait4's rusage: the child alone).
fn measure(dir: &Path, args: &[&str]) -> Measure {
    let busy0 = machine_busy();
    let t0 = Instant::now();
    let child = Command::new(TEND)
        .args(args)
        .current_dir(dir)
        .env("TEND_STATE_DIR", dir.join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tend");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain wait4 on our own child; the Child is forgotten so it is not reaped twice.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    std::mem::forget(child);
    assert_eq!(r, pid);
    let wall = t0.elapsed();
    Measure {
        wall,
        machine_cpu: machine_busy().saturating_sub(busy0),
        rss_kib: usage.ru_maxrss,
        cpu: Duration::from_micros(
            (usage.ru_utime.tv_sec as u64 + usage.ru_stime.tv_sec as u64) * 1_000_000
                + usage.ru_utime.tv_usec as u64
                + usage.ru_stime.tv_usec as u64,
        ),
        code: libc::WEXITSTATUS(status),
    }
}

/// The files of one host as before a first run, owned by the login user.
fn fresh(h: &Sshd, root: &Path) {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(root.join("app/tmp"), "x").unwrap();
    h.hand_over(&[root]);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// Rounds per host count. Each round measures the floor and the three runs back to
/// back, and ratios are taken within a round: this machine's speed drifts by tens of
/// percent over a minute, and comparing a run with a floor measured at another
/// moment measures the drift. The median round is reported, with the spread.
const ROUNDS: usize = 7;

/// Host counts: 1, 5 and 20, or `TEND_BENCH_SIZES=20` (a comma list; empty: only the
/// sequential-command figure).
fn sizes() -> Vec<usize> {
    match std::env::var("TEND_BENCH_SIZES") {
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => vec![1, 5, 20],
    }
}

fn main() {
    // As `tendtest`, whose login shell is /bin/sh: root's bash here runs `pyenv init`
    // from .bashrc on every command, which would measure this machine, not tend.
    // sshd's default log level (the tests' VERBOSE logs every SFTP request).
    let hosts: Vec<Sshd> = (0..sizes().into_iter().max().unwrap_or(1))
        .map(|_| Sshd::start_tendtest_with("LogLevel INFO"))
        .collect();
    let mut table = String::new();
    writeln!(
        table,
        "| hosts | connect-only floor | first run | no-change run | dry-run | first/floor | no-change/floor | dry/floor | peak RSS (first run) | tend CPU: floor / first / no-change | machine CPU per host: floor / first / no-change |"
    )
    .unwrap();
    writeln!(table, "|---|---|---|---|---|---|---|---|---|---|---|").unwrap();
    for n in sizes() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let mut toml = String::new();
        let mut known = String::new();
        for (i, h) in hosts.iter().take(n).enumerate() {
            let root = h.root.join(format!("bench{n}"));
            fresh(h, &root);
            let state = h.root.join(format!("state{n}"));
            toml.push_str(&h.host_entry(&format!("h{}", i + 1), &root, &state));
            known.push_str(&h.known_hosts_line());
        }
        std::fs::write(dir.join("tend.toml"), toml).unwrap();
        std::fs::write(dir.join("known_hosts"), known).unwrap();
        std::fs::write(dir.join("r.rhai"), RECIPE).unwrap();
        std::fs::write(dir.join("t.j2"), "name = {{ name }}\n").unwrap();
        let kh = dir.join("known_hosts").display().to_string();
        let common = ["-H", "all", "--known-hosts", kh.as_str(), "-q"];
        let run = |extra: &[&str]| {
            let mut a = vec!["run", "r.rhai"];
            a.extend_from_slice(&common);
            a.extend_from_slice(extra);
            measure(dir, &a)
        };
        let ping = || {
            let mut a = vec!["ping"];
            a.extend_from_slice(&common);
            measure(dir, &a)
        };
        let reset = || {
            for h in hosts.iter().take(n) {
                fresh(h, &h.root.join(format!("bench{n}")));
            }
        };
        // Warm-up (page cache, first sshd forks), not counted.
        ping();
        run(&[]);
        let mut rounds: Vec<[Measure; 4]> = Vec::new();
        for _ in 0..ROUNDS {
            let floor = ping();
            assert_eq!(floor.code, 0, "ping failed");
            reset();
            // On the reset files: the dry-run plans all ten changes.
            let dry = run(&["--dry-run"]);
            let first = run(&[]);
            assert_eq!(first.code, 0, "first run failed");
            let second = run(&[]);
            assert_eq!(second.code, 0, "no-change run failed");
            rounds.push([floor, first, second, dry]);
        }
        let wall = |k: usize| median(rounds.iter().map(|r| r[k].wall.as_secs_f64()).collect());
        let cpu = |k: usize| median(rounds.iter().map(|r| r[k].cpu.as_secs_f64()).collect());
        let per_host = |k: usize| {
            median(
                rounds
                    .iter()
                    .map(|r| r[k].machine_cpu.as_secs_f64() / n as f64)
                    .collect(),
            )
        };
        let ratio = |k: usize| {
            let r: Vec<f64> = rounds
                .iter()
                .map(|r| r[k].wall.as_secs_f64() / r[0].wall.as_secs_f64())
                .collect();
            let (lo, hi) = r
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!("{:.2}× ({lo:.2}–{hi:.2})", median(r))
        };
        let ms = |s: f64| format!("{:.0} ms", s * 1000.0);
        let rss = rounds.iter().map(|r| r[1].rss_kib).max().unwrap_or(0);
        writeln!(
            table,
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {:.1} MiB | {} / {} / {} | {} / {} / {} |",
            ms(wall(0)),
            ms(wall(1)),
            ms(wall(2)),
            ms(wall(3)),
            ratio(1),
            ratio(2),
            ratio(3),
            rss as f64 / 1024.0,
            ms(cpu(0)),
            ms(cpu(1)),
            ms(cpu(2)),
            ms(per_host(0)),
            ms(per_host(1)),
            ms(per_host(2))
        )
        .unwrap();
        eprintln!("done: {n} hosts");
    }
    println!("Median of {ROUNDS} rounds; ratios are per round (floor measured in the same round), median and (min–max).\n");
    println!("{table}");

    // Sequential commands on one connected host.
    let h = &hosts[0];
    use tend::transport::{ExecRequest, Target};
    let connect = || tend::transport::ssh::SshTarget::connect(h.options()).expect("connect");
    let time = |f: &mut dyn FnMut()| {
        let t0 = Instant::now();
        f();
        t0.elapsed().as_secs_f64()
    };
    let sh_true = |t: &dyn Target| {
        t.exec(&ExecRequest::new("true")).unwrap();
    };
    // A host's first command has a channel of its own: a fresh connection each time.
    let lone = median(
        (0..9)
            .map(|_| {
                let t = connect();
                time(&mut || sh_true(&t))
            })
            .collect(),
    );
    let t = connect();
    sh_true(&t);
    // One protocol round trip: an SFTP stat, request and reply.
    t.stat("/").unwrap();
    let rt = median((0..31).map(|_| time(&mut || drop(t.stat("/")))).collect());
    let ten = median(
        (0..9)
            .map(|_| {
                time(&mut || {
                    for _ in 0..10 {
                        sh_true(&t);
                    }
                })
            })
            .collect(),
    );
    println!(
        "10 sequential sh(\"true\") on one connected host: {:.2} ms = {:.1}× one round trip \
         (an SFTP stat: {:.3} ms); a host's first command, on a channel of its own: {:.2} ms \
         (medians of 9, 31 and 9)",
        ten * 1000.0,
        ten / rt,
        rt * 1000.0,
        lone * 1000.0,
    );
}
