//! A real OpenSSH `sshd` on 127.0.0.1 for tests: its own host key, config, client key
//! pair and known_hosts file, all in a temp dir; nothing in ~/.ssh or /etc/ssh is
//! touched. Standalone: include it with `#[path = "support/sshd.rs"] mod sshd;`.
//!
//! Runs as root (the test machine's user). Test accounts (`tendtest` with
//! passwordless sudo, `tendnosudo` without sudo) are created once, under a file lock.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tend::transport::ssh::SshOptions;

/// A non-root account with passwordless sudo.
pub const TEST_USER: &str = "tendtest";
/// A non-root account that may not sudo (sudo asks it for a password).
pub const NOSUDO_USER: &str = "tendnosudo";

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The account `options()` logs in as.
    pub user: String,
    /// A directory for the test's files (owned by `user`).
    pub root: PathBuf,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    pub host_key: PathBuf,
    extra_config: String,
    child: Option<Child>,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ssh-keygen -t ed25519` without passphrase or comment.
pub fn keygen(path: &Path) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path));
}

/// The `type base64` part of a public key file.
pub fn pub_key(path: &Path) -> String {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    let text = fs::read_to_string(PathBuf::from(p)).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn uid_of(user: &str) -> (u32, u32) {
    let text = fs::read_to_string("/etc/passwd").unwrap();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == user {
            return (f[2].parse().unwrap(), f[3].parse().unwrap());
        }
    }
    panic!("no user {user}");
}

fn user_exists(user: &str) -> bool {
    fs::read_to_string("/etc/passwd")
        .map(|t| t.lines().any(|l| l.split(':').next() == Some(user)))
        .unwrap_or(false)
}

/// Create the test accounts once per machine (idempotent, serialized by a lock file
/// so parallel tests and test binaries do not race `useradd`).
pub fn ensure_test_users() {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/tend-test-users.lock")
        .expect("lock file");
    lock.lock().expect("lock");
    for user in [TEST_USER, NOSUDO_USER] {
        if !user_exists(user) {
            run(Command::new("useradd").args(["-m", "-s", "/bin/sh", user]));
        }
        // `*`, not the `!` useradd leaves: sshd without PAM refuses locked accounts.
        run(Command::new("usermod").args(["-p", "*", user]));
    }
    let sudoers = Path::new("/etc/sudoers.d").join(TEST_USER);
    let rule = format!("{TEST_USER} ALL=(ALL) NOPASSWD: ALL\n");
    if fs::read_to_string(&sudoers).ok().as_deref() != Some(rule.as_str()) {
        fs::create_dir_all("/etc/sudoers.d").unwrap();
        let tmp = sudoers.with_extension("tmp");
        fs::write(&tmp, &rule).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o440)).unwrap();
        fs::rename(&tmp, &sudoers).unwrap();
    }
    let _ = lock.unlock();
}

impl Sshd {
    /// An sshd that lets the client key in as root (and as any test account).
    pub fn start() -> Sshd {
        Self::start_with("root", "")
    }

    /// An sshd for `tendtest`, who has passwordless sudo.
    pub fn start_tendtest() -> Sshd {
        Self::start_tendtest_with("")
    }

    /// [`Sshd::start_tendtest`] with more sshd_config (it wins over the defaults).
    pub fn start_tendtest_with(extra_config: &str) -> Sshd {
        ensure_test_users();
        Self::start_with(TEST_USER, extra_config)
    }

    /// `user` is who `options()` logs in as; `extra_config` is appended to sshd_config.
    pub fn start_with(user: &str, extra_config: &str) -> Sshd {
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("tend-sshd-")
            .tempdir()
            .expect("temp dir");
        // Non-root test users must reach authorized_keys and their root dir.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let host_key = dir.path().join("host_ed25519");
        let client_key = dir.path().join("client_ed25519");
        keygen(&host_key);
        keygen(&client_key);
        let authorized = dir.path().join("authorized_keys");
        fs::write(&authorized, format!("{}\n", pub_key(&client_key))).unwrap();
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        if user != "root" {
            let (uid, gid) = uid_of(user);
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
        }
        let known_hosts = dir.path().join("known_hosts");
        let mut sshd = Sshd {
            dir,
            port: 0,
            user: user.to_string(),
            root,
            client_key,
            known_hosts,
            host_key,
            extra_config: extra_config.to_string(),
            child: None,
        };
        sshd.spawn_on_free_port();
        sshd.write_known_hosts();
        sshd
    }

    fn config(&self) -> String {
        let d = self.dir.path();
        format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {hk}\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             {subsystem}\
             MaxStartups 100\n\
             MaxSessions 100\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             AllowTcpForwarding yes\n\
             {loglevel}\
             {extra}\n",
            port = self.port,
            hk = self.host_key.display(),
            d = d.display(),
            extra = self.extra_config,
            // VERBOSE by default: tests read the log (who logged in, forwarding, and
            // that no secret shows up in what sshd logs of SFTP requests).
            loglevel = if self.extra_config.contains("LogLevel") {
                ""
            } else {
                "LogLevel VERBOSE\n"
            },
            subsystem = if self.extra_config.contains("Subsystem") {
                ""
            } else {
                "Subsystem sftp internal-sftp\n"
            },
        )
    }

    fn try_spawn(&mut self) -> bool {
        let cfg = self.dir.path().join("sshd_config");
        fs::write(&cfg, self.config()).unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .unwrap();
        let mut child = Command::new(SSHD)
            // As a service manager starts it: not with cargo's LD_LIBRARY_PATH, which
            // sends the loader of every connection's re-exec through target/ dirs.
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: port taken (or a config error, see the log)
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 4];
                if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    self.child = Some(child);
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn spawn_on_free_port(&mut self) {
        for _ in 0..20 {
            self.port = free_port();
            if self.try_spawn() {
                return;
            }
        }
        panic!("sshd did not start; log:\n{}", self.log());
    }

    /// Stop sshd (kill by pid, wait).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill the processes serving open connections (children of the listener), by
    /// pid: clients see the host vanish.
    pub fn kill_connections(&self) {
        let Some(child) = &self.child else { return };
        for pid in descendants(child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Start again on the same port with the same host key (unless it was replaced).
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            if self.try_spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "sshd did not restart on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// A new host key (known_hosts keeps the old one); takes effect at `restart`.
    pub fn replace_host_key(&mut self) {
        keygen(&self.host_key);
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 …`, the line known_hosts holds for this server.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, pub_key(&self.host_key))
    }

    fn write_known_hosts(&self) {
        fs::write(&self.known_hosts, self.known_hosts_line()).unwrap();
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it (`SHA256:…`).
    pub fn host_fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.host_key.with_extension("pub"))
            .output()
            .expect("ssh-keygen -lf");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_string()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Options that connect to this server as `self.user` with the client key only.
    pub fn options(&self) -> SshOptions {
        self.options_as(&self.user.clone())
    }

    pub fn options_as(&self, user: &str) -> SshOptions {
        let mut o = SshOptions::new(format!("sshd{}", self.port), "127.0.0.1", self.port, user);
        o.identity_files = vec![self.client_key.clone()];
        o.identities_only = true;
        o.known_hosts = vec![self.known_hosts.clone()];
        o.connect_timeout = Duration::from_secs(5);
        o
    }

    /// The `[hosts.NAME]` table of a tend.toml that reaches this server as `self.user`,
    /// with the host variables `root` and `tend_state_dir` (simulated hosts share
    /// one filesystem, so each needs its own).
    pub fn host_entry(&self, name: &str, root: &Path, state: &Path) -> String {
        format!(
            "[hosts.{name}]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity_file = \"{}\"\nroot = \"{}\"\ntend_state_dir = \"{}\"\n\n",
            self.port,
            self.user,
            self.client_key.display(),
            root.display(),
            state.display()
        )
    }

    /// Give files the test made (as root) to the login user, as on a real host.
    pub fn hand_over(&self, paths: &[&Path]) {
        let mut cmd = Command::new("chown");
        cmd.arg("-R").arg(format!("{0}:{0}", self.user));
        for p in paths {
            fs::create_dir_all(p).unwrap();
            cmd.arg(p);
        }
        run(&mut cmd);
    }

    /// A path under `root`, as a string for the Target API.
    pub fn path(&self, rel: &str) -> String {
        self.root.join(rel).to_string_lossy().into_owned()
    }
}

/// Every process below `pid` (from /proc), deepest last.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok())
        {
            parent_of.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let cur = found[i];
        for &(p, pp) in &parent_of {
            if pp == cur && !found.contains(&p) {
                found.push(p);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
