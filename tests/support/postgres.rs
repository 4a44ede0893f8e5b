//! A real PostgreSQL for one test: initdb as `postgres` in a temp dir, started on a
//! free port of 127.0.0.1 (password login), stopped when dropped; stopped and
//! started again on the same data and port for a restart mid-test. And [`Proxy`], a
//! TCP forwarder a test cuts to cut a node off the database. Include with
//! `#[path = "support/postgres.rs"] mod postgres;`.
#![allow(dead_code)]

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Pg {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The server's programs (initdb, pg_ctl): Debian's newest installed version.
pub fn pg_bin() -> String {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian package postgresql)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    format!(
        "/usr/lib/postgresql/{}/bin",
        versions.last().expect("a PostgreSQL version")
    )
}
pub const PG_PW: &str = "pg-secret-for-tend";
/// `[cluster] key` of the test clusters (every node the same).
pub const CLUSTER_KEY: &str = "0123456789abcdef0123456789abcdef-test-cluster-key";

/// Run a server program as `postgres` in `dir`.
fn as_pg(dir: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pg {
    pub fn start() -> Pg {
        let dir = tempfile::Builder::new()
            .prefix("tend-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let chown = Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(chown.success());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PW).unwrap();
        let data = dir.path().join("data").display().to_string();
        as_pg(
            dir.path(),
            &[
                &format!("{}/initdb", pg_bin()),
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg { dir, port };
        pg.start_again();
        pg
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data").display().to_string();
        let mut all = vec![format!("{}/pg_ctl", pg_bin()), "-D".into(), data];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        as_pg(self.dir.path(), &all);
    }

    /// Start the server (again) on its data directory and port.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.pg_ctl(&["-o", &opts, "-l", &log, "-w", "start"]);
    }

    /// Stop the server (fast: connections are closed), keeping its data.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }

    /// Serve only TLS (hostssl), with a certificate for `san` (`DNS:NAME` or
    /// `IP:ADDR`) signed by a new test CA; restarts the server. Returns the CA's PEM.
    pub fn enable_tls(&self, san: &str) -> PathBuf {
        let tls = self.dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        test_ca(&tls, "ca");
        let ssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&tls)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "openssl {args:?}: {err}");
        };
        std::fs::write(tls.join("ext"), format!("subjectAltName={san}\n")).unwrap();
        ssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=tend-test-pg",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        ssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "server.crt",
        ]);
        let data = self.dir.path().join("data");
        for f in ["server.crt", "server.key"] {
            std::fs::copy(tls.join(f), data.join(f)).unwrap();
            let own = Command::new("chown")
                .arg("postgres:postgres")
                .arg(data.join(f))
                .status()
                .unwrap();
            assert!(own.success());
        }
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let hba = data.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, text.replace("\nhost ", "\nhostssl ")).unwrap();
        self.sql("postgres", "ALTER SYSTEM SET ssl = on");
        self.stop();
        self.start_again();
        tls.join("ca.crt")
    }

    /// A new database `name` owned by postgres.
    pub fn create_db(&self, name: &str) {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// tend's `[cluster] postgres` for `db` (the password goes separately:
    /// [`Pg::password_env`]).
    pub fn url(&self, db: &str) -> String {
        self.url_via(self.port, db)
    }

    /// The same through another port (a [`Proxy`]'s).
    pub fn url_via(&self, port: u16, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{db}")
    }

    /// `[cluster] password`: an `env:` reference to a variable this sets to the
    /// password (the same for every test, so tests in parallel agree).
    pub fn password_env(&self) -> String {
        // Once: setting the environment while other threads read it is a race.
        static SET: std::sync::Once = std::sync::Once::new();
        SET.call_once(|| std::env::set_var("TEND_T_PG_PASSWORD", PG_PW));
        "env:TEND_T_PG_PASSWORD".to_string()
    }

    /// `[cluster] key`: an `env:` reference to a variable this sets to
    /// [`CLUSTER_KEY`], as [`Pg::password_env`] does.
    pub fn key_env(&self) -> String {
        static SET: std::sync::Once = std::sync::Once::new();
        SET.call_once(|| std::env::set_var("TEND_T_CLUSTER_KEY", CLUSTER_KEY));
        "env:TEND_T_CLUSTER_KEY".to_string()
    }

    /// psql as postgres on `db`.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", PG_PW)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{}/pg_ctl", pg_bin()),
                "-D",
                &data,
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

/// A self-signed CA `NAME.crt` (and its key) in `dir`: the PEM's path.
pub fn test_ca(dir: &Path, name: &str) -> PathBuf {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN=tend-test-{name}")])
        .args([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openssl req -x509: {err}");
    dir.join(format!("{name}.crt"))
}

/// A TCP forwarder on 127.0.0.1 to `target_port`: a node connected through it is
/// cut off the database by [`Proxy::cut`], as by a network failure.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stop, conns) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break; // the listener is dropped: new connections are refused
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let mut all = conns.lock().unwrap();
                if stop.load(Ordering::SeqCst) {
                    break; // cut meanwhile: this one is not forwarded
                }
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, live }
    }

    /// Close the listener and every connection through it.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
