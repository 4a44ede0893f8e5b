//! The log-rotate recipe side by side with the real logrotate (3.21, Debian): each
//! test builds the same tree twice, runs `logrotate -s STATUS CONF` on one and `tend
//! run log-rotate` with the matching parameters on the other, and asserts that both
//! leave the same files (names, modes, owners, content once decompressed), the same
//! exit status (zero or not), the same script calls and the same status file. Each
//! test also asserts what the result is, so two equally wrong runs do not pass.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use support::{Run, World};

/// name -> (mode, uid, gid, content; compressed files decompressed, `RAW:` if not
/// decompressible). `status` (tend's copy of the status file) is left out.
type Tree = BTreeMap<String, (u32, u32, u32, String)>;

fn tree(dir: &Path) -> Tree {
    let mut t = Tree::new();
    walk(dir, "", &mut t);
    t
}

fn walk(dir: &Path, prefix: &str, t: &mut Tree) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        let m = e.metadata().unwrap();
        if m.is_dir() {
            walk(&e.path(), &format!("{name}/"), t);
            continue;
        }
        if name == "status" {
            continue;
        }
        let tool = if name.ends_with(".gz") {
            Some("gzip")
        } else if name.ends_with(".zst") {
            Some("zstd")
        } else {
            None
        };
        let raw = std::fs::read(e.path()).unwrap();
        let content = match tool {
            Some(tool) => {
                let out = Command::new(tool)
                    .arg("-dc")
                    .arg(e.path())
                    .output()
                    .unwrap();
                if out.status.success() {
                    String::from_utf8_lossy(&out.stdout).into_owned()
                } else {
                    format!("RAW:{}", String::from_utf8_lossy(&raw))
                }
            }
            None => String::from_utf8_lossy(&raw).into_owned(),
        };
        t.insert(
            name,
            (m.permissions().mode() & 0o7777, m.uid(), m.gid(), content),
        );
    }
}

/// A file of the fixture: (name under the root, content, mode, mtime days ago).
type F<'a> = (&'a str, &'a str, u32, u64);

fn lay_out(dir: &Path, files: &[F]) {
    for (name, content, mode, days) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // `GZ:text`: the file holds text gzipped.
        match content.strip_prefix("GZ:") {
            Some(text) => {
                let mut c = Command::new("gzip")
                    .arg("-c")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
                std::fs::write(&p, c.wait_with_output().unwrap().stdout).unwrap();
            }
            None => std::fs::write(&p, content).unwrap(),
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        if *days > 0 {
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(
                std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400),
            )
            .unwrap();
        }
    }
}

/// The outcome of one side: exit status zero or not, the tree, what the scripts
/// logged (root replaced by `ROOT`), the status file (root replaced, times kept).
#[derive(Debug)]
struct Side {
    ok: bool,
    tree: Tree,
    scripts: String,
    status: Vec<(String, String)>,
}

struct Case<'a> {
    files: Vec<F<'a>>,
    /// Directives of the stanza; `ROOT` is the log directory, `SCRIPTS` a file
    /// outside it that scripts may append to.
    directives: &'a str,
    /// The stanza's patterns, relative to ROOT, separated by spaces (default `*.log`).
    patterns: &'a str,
    /// Recipe parameters (same placeholders).
    params: Vec<(&'a str, &'a str)>,
    /// Status file lines before the run: (file name under ROOT, hours ago).
    status: Vec<(&'a str, i64)>,
    force: bool,
}

impl<'a> Case<'a> {
    fn new(files: Vec<F<'a>>, directives: &'a str, params: Vec<(&'a str, &'a str)>) -> Self {
        Case {
            files,
            directives,
            patterns: "*.log",
            params,
            status: Vec::new(),
            force: false,
        }
    }

    fn status_text(&self, root: &Path) -> Option<String> {
        if self.status.is_empty() {
            return None;
        }
        let mut text = "logrotate state -- version 2\n".to_string();
        for (name, hours) in &self.status {
            let t = chrono::Local::now() - chrono::Duration::hours(*hours);
            text += &format!(
                "\"{}\" {}\n",
                root.join(name).display(),
                t.format("%Y-%-m-%-d-%-H:%-M:%-S")
            );
        }
        Some(text)
    }

    /// Run logrotate in a fresh directory.
    fn logrotate(&self) -> Side {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        lay_out(&root, &self.files);
        let scripts = tmp.path().join("scripts");
        let status = tmp.path().join("status");
        if let Some(text) = self.status_text(&root) {
            std::fs::write(&status, text).unwrap();
        }
        let r = root.display().to_string();
        let patterns: Vec<String> = self
            .patterns
            .split(' ')
            .map(|p| format!("{r}/{p}"))
            .collect();
        let conf = format!(
            "{} {{\n{}\n}}\n",
            patterns.join(" "),
            self.directives
                .replace("ROOT", &r)
                .replace("SCRIPTS", &scripts.display().to_string())
        );
        let conf_path = tmp.path().join("conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new("logrotate");
        if self.force {
            cmd.arg("-f");
        }
        let out = cmd.arg("-s").arg(&status).arg(&conf_path).output().unwrap();
        side(out.status.success(), &root, &scripts, &status)
    }

    /// Run tend's recipe on a fresh world: the status file (logrotate's format) is
    /// ROOT/status, inside the recipe's scope.
    fn tend(&self, w: &World) -> (Side, Run) {
        let root = w.root();
        lay_out(&root, &self.files);
        let scripts = w.dir.path().join("scripts");
        let status = root.join("status");
        if let Some(text) = self.status_text(&root) {
            std::fs::write(&status, text).unwrap();
        }
        let r = root.display().to_string();
        let s = scripts.display().to_string();
        let patterns: Vec<String> = self
            .patterns
            .split(' ')
            .map(|p| format!("{r}/{p}"))
            .collect();
        let mut args = vec![
            format!("files={}", patterns.join(" ")),
            format!("state={}", status.display()),
        ];
        if self.force {
            args.push("force=true".into());
        }
        for (k, v) in &self.params {
            args.push(format!(
                "{k}={}",
                v.replace("ROOT", &r).replace("SCRIPTS", &s)
            ));
        }
        let mut flags: Vec<&str> = Vec::new();
        for a in &args {
            flags.extend(["-p", a.as_str()]);
        }
        let run = w.run(&w.log_rotate_recipe(), &flags);
        (side(run.code == 0, &root, &scripts, &status), run)
    }

    /// Both sides; asserts they agree and returns tend's side and run.
    #[track_caller]
    fn compare(&self) -> (Side, Run, World) {
        let lr = self.logrotate();
        let w = World::new();
        let (t, run) = self.tend(&w);
        assert_eq!(
            lr.ok, t.ok,
            "exit status\nlogrotate: {lr:?}\ntend: {}",
            run.stdout
        );
        assert_eq!(lr.tree, t.tree, "files\ntend: {}", run.stdout);
        assert_eq!(lr.scripts, t.scripts, "scripts");
        // Entries in any order (logrotate writes its hash table's). A failed tend run
        // is rolled back, status file included; logrotate's keeps what it wrote.
        if t.ok {
            let entries = |s: &Side| {
                let mut v: Vec<String> = s.status.iter().map(|(p, _)| p.clone()).collect();
                v.sort();
                v
            };
            assert_eq!(entries(&lr), entries(&t), "status file entries");
        }
        (t, run, w)
    }
}

fn side(ok: bool, root: &Path, scripts: &Path, status: &Path) -> Side {
    let r = root.display().to_string();
    let scripts = std::fs::read_to_string(scripts)
        .unwrap_or_default()
        .replace(&r, "ROOT");
    let status = std::fs::read_to_string(status)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(p, t)| (p.replace(&r, "ROOT"), t.to_string()))
        .collect();
    Side {
        ok,
        tree: tree(root),
        scripts,
        status,
    }
}

fn names(s: &Side) -> Vec<&str> {
    s.tree.keys().map(String::as_str).collect()
}

fn content<'s>(s: &'s Side, name: &str) -> &'s str {
    &s.tree[name].3
}

// ------------------------------------------------------------------ sizes

/// `size 1k` (lower-case unit): 1024 bytes rotate, 1023 do not.
#[test]
fn size_lower_case_unit() {
    let big = "x".repeat(1024);
    let small = "x".repeat(1023);
    let c = Case::new(
        vec![("big.log", &big, 0o644, 0), ("small.log", &small, 0o644, 0)],
        "size 1k\nrotate 1\ncreate",
        vec![
            ("min_size", "1k"),
            ("keep", "1"),
            ("compress", "false"),
            ("delaycompress", "false"),
        ],
    );
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["big.log", "big.log.1", "small.log"]);
}

// ------------------------------------------------------------------ leftovers

/// `rotate 2` with a copy past N+1 (`.5`): it stays, as logrotate never looks at it;
/// `.3` (N+1) is replaced by the shift and removed.
#[test]
fn leftover_copies_beyond_rotate() {
    let c = Case::new(
        vec![
            ("app.log", "current\n", 0o644, 0),
            ("app.log.1", "one\n", 0o644, 0),
            ("app.log.2", "two\n", 0o644, 0),
            ("app.log.3", "three\n", 0o644, 0),
            ("app.log.5", "five\n", 0o644, 0),
        ],
        "size 1\nrotate 2",
        vec![
            ("min_size", "1B"),
            ("keep", "2"),
            ("compress", "false"),
            ("create", "false"),
        ],
    );
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["app.log.1", "app.log.2", "app.log.5"]);
    assert_eq!(content(&t, "app.log.2"), "one\n");
}

/// An uncompressed `.2` among compressed copies: not shifted (logrotate shifts
/// names with the compression extension only), so `.2` and `.2.gz` end side by side.
#[test]
fn uncompressed_copy_among_compressed() {
    let c = Case::new(
        vec![
            ("app.log", "current\n", 0o644, 0),
            ("app.log.1.gz", "GZ:one\n", 0o644, 0),
            ("app.log.2", "two\n", 0o644, 0),
            ("app.log.3.gz", "GZ:three\n", 0o644, 0),
        ],
        "size 1\nrotate 3\ncompress",
        vec![
            ("min_size", "1B"),
            ("keep", "3"),
            ("compress", "true"),
            ("delaycompress", "false"),
            ("create", "false"),
        ],
    );
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["app.log.1.gz", "app.log.2", "app.log.2.gz"]);
    assert_eq!(content(&t, "app.log.2.gz"), "one\n");
}

/// A stray `.1` with `rotate 0`: moved to `.2` (the one slot logrotate works with)
/// and left there; the log's own copy is removed.
#[test]
fn stray_copy_with_rotate_0() {
    let c = Case::new(
        vec![
            ("app.log", "current\n", 0o640, 0),
            ("app.log.1", "one\n", 0o644, 0),
        ],
        "size 1\nrotate 0\ncreate",
        vec![
            ("min_size", "1B"),
            ("keep", "0"),
            ("compress", "false"),
            ("delaycompress", "false"),
        ],
    );
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["app.log", "app.log.2"]);
    assert_eq!(content(&t, "app.log.2"), "one\n");
}

/// The same with compress + delaycompress: the stray `.1` is compressed first.
#[test]
fn stray_copy_with_rotate_0_delaycompress() {
    let c = Case::new(
        vec![
            ("app.log", "current\n", 0o640, 0),
            ("app.log.1", "one\n", 0o644, 0),
        ],
        "size 1\nrotate 0\ncreate\ncompress\ndelaycompress",
        vec![("min_size", "1B"), ("keep", "0")],
    );
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["app.log", "app.log.2.gz"]);
    assert_eq!(content(&t, "app.log.2.gz"), "one\n");
}

/// A stray plain `.1` with compress (no delaycompress): the log's copy takes its
/// name, so it is gone in both.
#[test]
fn stray_plain_copy_with_compress() {
    let c = Case::new(
        vec![
            ("app.log", "current\n", 0o644, 0),
            ("app.log.1", "previous\n", 0o644, 0),
        ],
        "size 1\nrotate 7\ncompress\ncreate",
        vec![("min_size", "1B"), ("delaycompress", "false")],
    );
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["app.log", "app.log.1.gz"]);
    assert_eq!(content(&t, "app.log.1.gz"), "current\n");
}

// ------------------------------------------------------------------ dated copies

/// An existing dated copy for today: logrotate exits non-zero ("destination …
/// already exists"); tend fails too, and changes nothing.
#[test]
fn dated_copy_already_there_is_an_error() {
    let today = chrono::Local::now().format("%Y%m%d").to_string();
    let taken = format!("app.log-{today}");
    let c = Case::new(
        vec![
            ("app.log", "today\n", 0o644, 0),
            (&taken, "earlier today\n", 0o644, 0),
        ],
        "size 1\nrotate 3\ndateext\ncreate",
        vec![
            ("min_size", "1B"),
            ("keep", "3"),
            ("suffix", "date"),
            ("compress", "false"),
        ],
    );
    let (t, run, _w) = c.compare();
    assert!(!t.ok);
    assert!(run.stdout.contains("already exists"), "{}", run.stdout);
    assert_eq!(content(&t, "app.log"), "today\n");
}

/// dateext retention counts only copies with the current compression extension,
/// oldest (by date) first; `dateformat` with dashes.
#[test]
fn dateext_retention_and_dateformat() {
    let c = Case::new(
        vec![
            ("app.log", "today\n", 0o644, 0),
            ("app.log-2020-01-01", "a\n", 0o644, 0),
            ("app.log-2020-01-02", "b\n", 0o644, 0),
            ("app.log-2020-01-03", "c\n", 0o644, 0),
            ("app.log-20200104", "other format\n", 0o644, 0),
        ],
        "size 1\nrotate 2\ndateext\ndateformat -%Y-%m-%d\ncreate",
        vec![
            ("min_size", "1B"),
            ("keep", "2"),
            ("suffix", "date"),
            ("date_format", "%Y-%m-%d"),
            ("compress", "false"),
        ],
    );
    let (t, ..) = c.compare();
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    assert!(t.tree.contains_key(&format!("app.log-{today}")), "{t:?}");
    assert!(t.tree.contains_key("app.log-2020-01-03"));
    assert!(!t.tree.contains_key("app.log-2020-01-02"));
    assert!(t.tree.contains_key("app.log-20200104"));
}

/// `dateyesterday`: the copy is named for yesterday.
#[test]
fn dateyesterday() {
    let c = Case::new(
        vec![("app.log", "yesterday's\n", 0o644, 0)],
        "size 1\nrotate 2\ndateext\ndateyesterday\ncreate",
        vec![
            ("min_size", "1B"),
            ("keep", "2"),
            ("suffix", "date"),
            ("dateyesterday", "true"),
            ("compress", "false"),
        ],
    );
    let (t, ..) = c.compare();
    let y = (chrono::Local::now() - chrono::Duration::days(1))
        .format("%Y%m%d")
        .to_string();
    assert_eq!(content(&t, &format!("app.log-{y}")), "yesterday's\n");
}

// ------------------------------------------------------------------ intervals

fn interval_case<'a>(directive: &'a str, interval: &'a str, hours_ago: i64) -> Case<'a> {
    let mut c = Case::new(
        vec![("app.log", "some lines\n", 0o644, 0)],
        directive,
        vec![
            ("interval", interval),
            ("min_size", "0"),
            ("keep", "3"),
            ("compress", "false"),
        ],
    );
    c.status = vec![("app.log", hours_ago)];
    c
}

#[track_caller]
fn rotated(t: &Side) -> bool {
    t.tree.contains_key("app.log.1")
}

/// `daily`: the date changed since the last rotation (not 24 hours).
#[test]
fn daily_is_a_calendar_day() {
    let (t, ..) = interval_case("daily\nrotate 3\ncreate", "daily", 48).compare();
    assert!(rotated(&t));
    let (t, ..) = interval_case("daily\nrotate 3\ncreate", "daily", 0).compare();
    assert!(!rotated(&t));
}

/// `weekly N`: 7 days or more, or a new day that is weekday N.
#[test]
fn weekly_on_a_weekday() {
    use chrono::Datelike;
    let today = chrono::Local::now().weekday().num_days_from_sunday();
    let today_s = format!("weekly {today}");
    let tomorrow_s = format!("weekly {}", (today + 1) % 7);
    for (iv, hours, want) in [
        (today_s.as_str(), 30, true),
        (tomorrow_s.as_str(), 30, false),
        (tomorrow_s.as_str(), 8 * 24, true),
    ] {
        let (t, ..) = interval_case(&format!("{iv}\nrotate 3\ncreate"), iv, hours).compare();
        assert_eq!(rotated(&t), want, "{iv} last {hours} h ago");
    }
}

/// `monthly`, `yearly`, `hourly`.
#[test]
fn monthly_yearly_hourly() {
    let (t, ..) = interval_case("monthly\nrotate 3\ncreate", "monthly", 40 * 24).compare();
    assert!(rotated(&t));
    let (t, ..) = interval_case("yearly\nrotate 3\ncreate", "yearly", 400 * 24).compare();
    assert!(rotated(&t));
    let (t, ..) = interval_case("yearly\nrotate 3\ncreate", "yearly", 0).compare();
    assert!(!rotated(&t));
    let (t, ..) = interval_case("hourly\nrotate 3\ncreate", "hourly", 2).compare();
    assert!(rotated(&t));
}

/// `minsize` needs both the period and the size; `maxsize` rotates before the period.
#[test]
fn minsize_and_maxsize() {
    let mut c = interval_case("daily\nminsize 100\nrotate 3\ncreate", "daily", 48);
    c.params.push(("minsize", "100B"));
    let (t, ..) = c.compare();
    assert!(!rotated(&t), "due by date, too small");
    let mut c = interval_case("daily\nmaxsize 5\nrotate 3\ncreate", "daily", 0);
    c.params.push(("maxsize", "5B"));
    let (t, ..) = c.compare();
    assert!(rotated(&t), "not due by date, over maxsize");
}

/// A log the status file does not know: recorded, not rotated (it is not size-based).
#[test]
fn new_log_is_recorded_not_rotated() {
    let mut c = interval_case("daily\nrotate 3\ncreate", "daily", 48);
    c.files.push(("new.log", "fresh\n", 0o644, 0));
    let (t, ..) = c.compare();
    assert!(rotated(&t));
    assert!(!t.tree.contains_key("new.log.1"));
    assert!(t.status.iter().any(|(p, _)| p.contains("ROOT/new.log")));
}

/// `-f` / force=true.
#[test]
fn force() {
    let mut c = interval_case("daily\nrotate 3\ncreate", "daily", 0);
    c.force = true;
    let (t, ..) = c.compare();
    assert!(rotated(&t));
}

// ------------------------------------------------------------------ maxage

/// `maxage 5`: numbered copies older than 5 days are removed instead of shifted.
#[test]
fn maxage_numbered() {
    let c = Case::new(
        vec![
            ("app.log", "now\n", 0o644, 0),
            ("app.log.1", "recent\n", 0o644, 2),
            ("app.log.2", "old\n", 0o644, 10),
        ],
        "size 1\nrotate 5\nmaxage 5\ncreate",
        vec![
            ("min_size", "1B"),
            ("keep", "5"),
            ("maxage", "5"),
            ("compress", "false"),
        ],
    );
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["app.log", "app.log.1", "app.log.2"]);
    assert_eq!(content(&t, "app.log.2"), "recent\n");
}

/// `maxage` with dated copies.
#[test]
fn maxage_dated() {
    let c = Case::new(
        vec![
            ("app.log", "now\n", 0o644, 0),
            ("app.log-20200101", "old\n", 0o644, 10),
            ("app.log-20200102", "recent\n", 0o644, 1),
        ],
        "size 1\nrotate 5\nmaxage 5\ndateext\ncreate",
        vec![
            ("min_size", "1B"),
            ("keep", "5"),
            ("maxage", "5"),
            ("suffix", "date"),
            ("compress", "false"),
        ],
    );
    let (t, ..) = c.compare();
    assert!(!t.tree.contains_key("app.log-20200101"));
    assert!(t.tree.contains_key("app.log-20200102"));
}

// ------------------------------------------------------------------ create, olddir, extension

/// `create 0600 nobody nogroup`.
#[test]
fn create_mode_owner_group() {
    let c = Case::new(
        vec![("app.log", "x\n", 0o644, 0)],
        "size 1\nrotate 1\ncreate 0600 nobody nogroup",
        vec![
            ("min_size", "1B"),
            ("keep", "1"),
            ("compress", "false"),
            ("create_mode", "0600"),
            ("create_owner", "nobody"),
            ("create_group", "nogroup"),
        ],
    );
    let (t, ..) = c.compare();
    let (mode, uid, ..) = t.tree["app.log"];
    assert_eq!(mode, 0o600);
    assert_eq!(uid, 65534);
}

/// `olddir old` (relative to the log's directory; it must exist).
#[test]
fn olddir() {
    let c = Case::new(
        vec![
            ("app.log", "now\n", 0o644, 0),
            ("old/app.log.1", "one\n", 0o644, 0),
        ],
        "size 1\nrotate 3\nolddir old\ncreate",
        vec![
            ("min_size", "1B"),
            ("keep", "3"),
            ("olddir", "old"),
            ("compress", "false"),
        ],
    );
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["app.log", "old/app.log.1", "old/app.log.2"]);
}

/// `extension .log`: copies are app.1.log.
#[test]
fn extension() {
    let c = Case::new(
        vec![
            ("app.log", "now\n", 0o644, 0),
            ("app.1.log", "one\n", 0o644, 0),
        ],
        "size 1\nrotate 3\nextension .log\ncreate",
        vec![
            ("min_size", "1B"),
            ("keep", "3"),
            ("extension", ".log"),
            ("compress", "false"),
        ],
    );
    let mut c = c;
    c.patterns = "app.log";
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["app.1.log", "app.2.log", "app.log"]);
}

// ------------------------------------------------------------------ scripts

const SCRIPT_DIRECTIVES: &str = "size 1\nrotate 2\ncreate\nfirstaction\n  echo first $1 >> SCRIPTS\nendscript\nprerotate\n  echo pre $1 >> SCRIPTS\nendscript\npostrotate\n  echo post $1 $2 >> SCRIPTS\nendscript\nlastaction\n  echo last $1 >> SCRIPTS\nendscript";

fn script_case(shared: bool) -> Case<'static> {
    let directives: &'static str = if shared {
        Box::leak(format!("sharedscripts\n{SCRIPT_DIRECTIVES}").into_boxed_str())
    } else {
        SCRIPT_DIRECTIVES
    };
    let mut c = Case::new(
        vec![
            ("a.log", "a\n", 0o644, 0),
            ("b.log", "b\n", 0o644, 0),
            ("c.log", "", 0o644, 0),
        ],
        directives,
        vec![
            ("min_size", "1B"),
            ("keep", "2"),
            ("compress", "false"),
            ("sharedscripts", if shared { "true" } else { "false" }),
            ("firstaction", "echo first $1 >> SCRIPTS"),
            ("prerotate", "echo pre $1 >> SCRIPTS"),
            ("postrotate", "echo post $1 $2 >> SCRIPTS"),
            ("lastaction", "echo last $1 >> SCRIPTS"),
        ],
    );
    c.patterns = "a.log b.log c.log";
    c
}

/// Scripts once per rotated log ($1 the log, $2 its copy for postrotate), first and
/// last action once.
#[test]
fn scripts_per_log() {
    let (t, ..) = script_case(false).compare();
    assert_eq!(
        t.scripts,
        "first ROOT/a.log ROOT/b.log ROOT/c.log\npre ROOT/a.log\npost ROOT/a.log ROOT/a.log.1\npre ROOT/b.log\npost ROOT/b.log ROOT/b.log.1\nlast ROOT/a.log ROOT/b.log ROOT/c.log\n"
    );
}

/// `sharedscripts`: once for all, with the pattern as $1.
#[test]
fn scripts_shared() {
    let (t, ..) = script_case(true).compare();
    assert_eq!(
        t.scripts,
        "first ROOT/a.log ROOT/b.log ROOT/c.log\npre ROOT/a.log ROOT/b.log ROOT/c.log\npost ROOT/a.log ROOT/b.log ROOT/c.log\nlast ROOT/a.log ROOT/b.log ROOT/c.log\n"
    );
}

/// Several globs in one run.
#[test]
fn several_globs() {
    let mut c = Case::new(
        vec![
            ("a.log", "a\n", 0o644, 0),
            ("b.txt", "b\n", 0o644, 0),
            ("c.log", "c\n", 0o644, 0),
        ],
        "size 1\nrotate 2\ncreate",
        vec![("min_size", "1B"), ("keep", "2"), ("compress", "false")],
    );
    c.patterns = "a.* b.*";
    let (t, ..) = c.compare();
    assert_eq!(names(&t), ["a.log", "a.log.1", "b.txt", "b.txt.1", "c.log"]);
}

// ------------------------------------------------------------------ tend's guarantees

/// With the new directives together (interval from logrotate's status file, olddir,
/// maxage, create owner, per-log scripts with undo): the dry-run plans exactly what
/// the run changes, a second run changes nothing, rollback restores byte for byte
/// (status file included).
#[test]
fn dry_run_second_run_rollback() {
    let w = World::new();
    let root = w.root();
    lay_out(
        &root,
        &[
            ("app.log", "now\n", 0o644, 0),
            ("old/app.log.1", "one\n", 0o644, 2),
            ("old/app.log.2.gz", "not gzip", 0o644, 30),
            // postrotate appends to it, its undo deletes that line
            ("old/marks", "", 0o644, 0),
        ],
    );
    let t = chrono::Local::now() - chrono::Duration::hours(72);
    std::fs::write(
        root.join("status"),
        format!(
            "logrotate state -- version 2\n\"{}\" {}\n",
            root.join("app.log").display(),
            t.format("%Y-%-m-%-d-%-H:%-M:%-S")
        ),
    )
    .unwrap();
    let marks = root.join("old/marks");
    let params = [
        format!("files={}/*.log", root.display()),
        format!("state={}/status", root.display()),
        "interval=daily".into(),
        "olddir=old".into(),
        "maxage=7".into(),
        "create_owner=nobody".into(),
        "sharedscripts=false".into(),
        format!("postrotate=echo $2 >> {}", marks.display()),
        format!("postrotate_undo=sed -i '$d' {}", marks.display()),
        "free_expired=false".into(),
    ];
    let mut flags: Vec<&str> = Vec::new();
    for p in &params {
        flags.extend(["-p", p.as_str()]);
    }
    let recipe = w.log_rotate_recipe();
    let before = w.snapshot();
    let mut dry = flags.clone();
    dry.push("--dry-run");
    let plan = w.run(&recipe, &dry);
    plan.assert_code(0);
    support::assert_same(&before, &w.snapshot());
    let run = w.run(&recipe, &flags);
    run.assert_code(0);
    assert_eq!(plan.changed_paths(), run.changed_paths(), "{}", run.stdout);
    let after = w.snapshot();
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        format!("{}/old/app.log.1\n", root.display())
    );
    // .1 was compressed (delaycompress) and moved up; the 30-day-old .2.gz was
    // removed by maxage instead of moving to .3.gz.
    assert!(!root.join("old/app.log.3.gz").exists());
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(root.join("old/app.log.2.gz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");
    assert_eq!(
        std::fs::metadata(root.join("app.log")).unwrap().uid(),
        65534
    );
    let status = std::fs::read_to_string(root.join("status")).unwrap();
    assert!(
        status.starts_with("logrotate state -- version 2\n\""),
        "{status}"
    );
    let again = w.run(&recipe, &flags);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);
    support::assert_same(&after, &w.snapshot());
    w.tend(&["rollback", &run.run_id()]).assert_code(0);
    support::assert_same(&before, &w.snapshot());
}

// ------------------------------------------------------------------ -p config=…

/// Run logrotate with `main` (and files of an include directory), and tend with
/// `-p config=` on the same text: `ROOT` is the log directory, `CONF` the
/// configuration's directory, `SCRIPTS` a file scripts may append to.
fn compare_config(files: &[F], main: &str, conf_d: &[(&str, &str)]) -> (Side, Run, World) {
    let write_conf = |dir: &Path, root: &Path, scripts: &Path| {
        let fill = |t: &str| {
            t.replace("ROOT", &root.display().to_string())
                .replace("CONF", &dir.display().to_string())
                .replace("SCRIPTS", &scripts.display().to_string())
        };
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("main.conf"), fill(main)).unwrap();
        for (name, text) in conf_d {
            std::fs::write(dir.join("d").join(name), fill(text)).unwrap();
        }
        dir.join("main.conf")
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    lay_out(&root, files);
    let scripts = tmp.path().join("scripts");
    let status = tmp.path().join("status");
    let conf = write_conf(&tmp.path().join("conf"), &root, &scripts);
    let ok = Command::new("logrotate")
        .arg("-s")
        .arg(&status)
        .arg(&conf)
        .status()
        .unwrap()
        .success();
    let lr = side(ok, &root, &scripts, &status);

    let w = World::new();
    lay_out(&w.root(), files);
    let scripts = w.dir.path().join("scripts");
    let status = w.root().join("status");
    let conf = write_conf(&w.dir.path().join("conf"), &w.root(), &scripts);
    let config = format!("config={}", conf.display());
    let state = format!("state={}", status.display());
    let run = w.run(&w.log_rotate_recipe(), &["-p", &config, "-p", &state]);
    let t = side(run.code == 0, &w.root(), &scripts, &status);
    assert_eq!(lr.ok, t.ok, "exit status\n{}", run.stdout);
    assert_eq!(lr.tree, t.tree, "files\n{}", run.stdout);
    assert_eq!(lr.scripts, t.scripts, "scripts");
    if t.ok {
        let entries = |s: &Side| {
            let mut v: Vec<String> = s.status.iter().map(|(p, _)| p.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(entries(&lr), entries(&t), "status file entries");
    }
    (t, run, w)
}

/// Global defaults, an included directory (its taboo files skipped), several
/// stanzas with their own directives, quoted patterns, a shared postrotate.
#[test]
fn config_with_include() {
    let (t, ..) = compare_config(
        &[
            ("app.log", "app\n", 0o644, 0),
            ("app.log.1", "app one\n", 0o644, 0),
            ("web access.log", "web\n", 0o640, 0),
            ("web error.log", "", 0o640, 0),
            ("db.log", "db\n", 0o600, 0),
        ],
        "# global\nrotate 2\ncreate\ninclude CONF/d\n\nROOT/app.log {\n  size 1\n  compress\n  delaycompress\n}\n",
        &[
            (
                "web",
                "\"ROOT/web access.log\" \"ROOT/web error.log\" {\n  size 1\n  rotate 1\n  notifempty\n  create 0600\n  sharedscripts\n  postrotate\n    echo reload $1 >> SCRIPTS\n  endscript\n}\n",
            ),
            ("db", "ROOT/db.log {\n  size 1k\n  missingok\n}\n"),
            ("db.dpkg-old", "ROOT/db.log {\n  mail ops@example.org\n}\n"),
        ],
    );
    assert_eq!(
        names(&t),
        [
            "app.log",
            "app.log.1",
            "app.log.2.gz",
            "db.log",
            "web access.log",
            "web access.log.1",
            "web error.log"
        ]
    );
    assert_eq!(t.tree["web access.log"].0, 0o600);
    assert_eq!(t.scripts.lines().count(), 1, "{}", t.scripts);
}

/// A directive tend does not carry out stops the run before anything changes, with
/// its file and line.
#[test]
fn config_unsupported_directive_is_an_error() {
    let w = World::new();
    lay_out(&w.root(), &[("app.log", "app\n", 0o644, 0)]);
    let conf = w.dir.path().join("lr.conf");
    std::fs::write(
        &conf,
        format!(
            "{}/app.log {{\n  size 1\n  mail ops@example.org\n}}\n",
            w.root().display()
        ),
    )
    .unwrap();
    let before = w.snapshot();
    let config = format!("config={}", conf.display());
    let state = format!("state={}/status", w.root().display());
    let r = w.run(&w.log_rotate_recipe(), &["-p", &config, "-p", &state]);
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains(&format!(
            "{}:3: logrotate directive `mail` is not supported",
            conf.display()
        )),
        "{}",
        r.stdout
    );
    support::assert_same(&before, &w.snapshot());
}

/// Switching from logrotate: its own status file (written by the real logrotate on
/// this tree) is read, so a daily log it just recorded is not due, and written back
/// unchanged: the run changes nothing. Then a day older, tend rotates it and records
/// the time in logrotate's format, which logrotate then reads (not due again).
#[test]
fn config_keeps_logrotates_status_file() {
    let w = World::new();
    lay_out(&w.root(), &[("app.log", "app\n", 0o644, 0)]);
    let conf = w.dir.path().join("lr.conf");
    std::fs::write(
        &conf,
        format!(
            "{}/app.log {{\n  daily\n  rotate 3\n  create\n}}\n",
            w.root().display()
        ),
    )
    .unwrap();
    let status = w.root().join("status");
    let lr = |w: &World| {
        let out = Command::new("logrotate")
            .arg("-s")
            .arg(&status)
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = w;
    };
    lr(&w);
    let written = std::fs::read_to_string(&status).unwrap();
    assert!(
        written.starts_with("logrotate state -- version 2\n"),
        "{written}"
    );
    let config = format!("config={}", conf.display());
    let state = format!("state={}", status.display());
    let args = ["-p", config.as_str(), "-p", state.as_str()];
    let r = w.run(&w.log_rotate_recipe(), &args);
    r.assert_code(0);
    assert_eq!(r.changed_count(), 0, "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(&status).unwrap(), written);

    // Two days earlier, as logrotate writes it.
    let t = chrono::Local::now() - chrono::Duration::hours(48);
    let line = format!(
        "\"{}\" {}\n",
        w.root().join("app.log").display(),
        t.format("%Y-%-m-%-d-%-H:%-M:%-S")
    );
    std::fs::write(&status, format!("logrotate state -- version 2\n{line}")).unwrap();
    let r = w.run(&w.log_rotate_recipe(), &args);
    r.assert_code(0);
    assert!(w.root().join("app.log.1").exists(), "{}", r.stdout);
    let after = std::fs::read_to_string(&status).unwrap();
    assert_ne!(after, format!("logrotate state -- version 2\n{line}"));
    let snap = w.snapshot();
    lr(&w);
    assert!(
        !w.root().join("app.log.2").exists(),
        "logrotate saw tend's rotation time"
    );
    support::assert_same(&snap, &w.snapshot());
}

/// `-p config=` over a real sshd host: the configuration (and its include) is read
/// on the host, through the run's target; the result is the local run's, the
/// dry-run plans exactly the changes, and rollback restores byte for byte.
#[test]
fn config_over_ssh_as_locally() {
    let h = sshd::Sshd::start_tendtest();
    let run = |ssh: bool| {
        let w = World::new();
        if ssh {
            w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
        }
        let r = w.root().display().to_string();
        lay_out(
            &w.root(),
            &[
                ("logs/app.log", "app\n", 0o644, 0),
                ("logs/app.log.1", "one\n", 0o644, 0),
                ("logs/db.log", "db\n", 0o644, 0),
                (
                    "conf/main",
                    &format!("rotate 2\ncreate\ninclude {r}/conf/d\n"),
                    0o644,
                    0,
                ),
                (
                    "conf/d/app",
                    &format!("{r}/logs/*.log {{\n  size 1\n  compress\n  delaycompress\n}}\n"),
                    0o644,
                    0,
                ),
            ],
        );
        let config = format!("config={r}/conf/main");
        let state = format!("state={r}/logs/status");
        let args = ["-p", config.as_str(), "-p", state.as_str()];
        let before = w.snapshot();
        let mut dry = args.to_vec();
        dry.push("--dry-run");
        let plan = w.run(&w.log_rotate_recipe(), &dry);
        plan.assert_code(0);
        support::assert_same(&before, &w.snapshot());
        let real = w.run(&w.log_rotate_recipe(), &args);
        real.assert_code(0);
        assert_eq!(
            plan.changed_paths(),
            real.changed_paths(),
            "{}",
            real.stdout
        );
        let logs: Vec<(String, u32, String)> = tree(&w.root().join("logs"))
            .into_iter()
            .map(|(n, (mode, _, _, c))| (n, mode, c))
            .collect();
        w.tend(&["rollback", &real.run_id()]).assert_code(0);
        support::assert_same(&before, &w.snapshot());
        logs
    };
    let local = run(false);
    let names: Vec<&str> = local.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(
        names,
        ["app.log", "app.log.1", "app.log.2.gz", "db.log", "db.log.1"]
    );
    assert_eq!(local, run(true));
}

/// The old `max_age` (an elapsed-time interval, not logrotate's `maxage`) still works,
/// with a warning saying what to use instead.
#[test]
fn max_age_is_deprecated() {
    let w = World::new();
    lay_out(&w.root(), &[("app.log", "x\n", 0o644, 0)]);
    let files = format!("files={}/*.log", w.root().display());
    let r = w.run(&w.log_rotate_recipe(), &["-p", &files, "-p", "max_age=1d"]);
    r.assert_code(0);
    assert!(
        r.events().iter().any(|e| e["event"] == "log"
            && e["level"] == "warn"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("max_age is deprecated")),
        "{}",
        r.stdout
    );
}

/// Through `-p config=`: zstd (`compresscmd`/`compressext`), dated copies with a
/// `dateformat`, `maxsize` with `weekly`, `olddir`, `extension`, `nocreate`.
#[test]
fn config_compression_dates_olddir() {
    let (t, ..) = compare_config(
        &[
            ("app.log", "app\n", 0o644, 0),
            ("app.log-2020-01-01.zst", "GZ:not really\n", 0o644, 0),
            ("big.log", "a big log\n", 0o644, 0),
            ("old/.keep", "", 0o644, 0),
            ("web.log", "web\n", 0o644, 0),
        ],
        "compresscmd /usr/bin/zstd\ncompressext .zst\nuncompresscmd /usr/bin/unzstd\n\nROOT/app.log {\n  size 1\n  rotate 3\n  compress\n  dateext\n  dateformat -%Y-%m-%d\n}\nROOT/big.log {\n  weekly\n  maxsize 5\n  rotate 2\n  olddir old\n  nocreate\n}\nROOT/web.log {\n  size 1\n  rotate 2\n  extension .log\n  create 0600\n}\n",
        &[],
    );
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    assert_eq!(content(&t, &format!("app.log-{today}.zst")), "app\n");
    assert_eq!(content(&t, "old/big.log.1"), "a big log\n");
    assert!(!t.tree.contains_key("big.log"));
    assert_eq!(content(&t, "web.1.log"), "web\n");
}

/// `su root root` (as Debian's postgresql-common has it), run as root: the same
/// result as logrotate's; `su` to a user tend does not run as stops the run, before
/// any change, naming the stanza's file and what to do.
#[test]
fn config_su() {
    let (t, ..) = compare_config(
        &[("app.log", "app\n", 0o644, 0)],
        "ROOT/app.log {\n  size 1\n  rotate 1\n  create\n  su root root\n}\n",
        &[],
    );
    assert_eq!(names(&t), ["app.log", "app.log.1"]);

    let w = World::new();
    lay_out(&w.root(), &[("app.log", "app\n", 0o644, 0)]);
    let conf = w.dir.path().join("lr.conf");
    std::fs::write(
        &conf,
        format!(
            "{}/app.log {{\n  size 1\n  su nobody nogroup\n}}\n",
            w.root().display()
        ),
    )
    .unwrap();
    let before = w.snapshot();
    let config = format!("config={}", conf.display());
    let state = format!("state={}/status", w.root().display());
    let r = w.run(&w.log_rotate_recipe(), &["-p", &config, "-p", &state]);
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains(&format!(
            "{}:1: su nobody nogroup: tend runs as root:root and does not switch users",
            conf.display()
        )),
        "{}",
        r.stdout
    );
    support::assert_same(&before, &w.snapshot());
}

/// copytruncate onto a stray `.1`: logrotate moves it aside to
/// `.1-YYYYMMDDHH.backup` (and goes on); so does tend.
#[test]
fn copytruncate_moves_a_stray_copy_aside() {
    let c = Case::new(
        vec![
            ("app.log", "current\n", 0o644, 0),
            ("app.log.1", "previous\n", 0o644, 0),
        ],
        "size 1\nrotate 7\ncompress\ncopytruncate",
        vec![
            ("min_size", "1B"),
            ("copytruncate", "true"),
            ("delaycompress", "false"),
        ],
    );
    let (t, ..) = c.compare();
    let aside = format!(
        "app.log.1-{}.backup",
        chrono::Local::now().format("%Y%m%d%H")
    );
    assert_eq!(content(&t, &aside), "previous\n");
    assert_eq!(content(&t, "app.log.1.gz"), "current\n");
}

/// `nomissingok`: a pattern matching nothing is an error in both (logrotate still
/// rotates the logs that are there; tend, whose failed runs change nothing, does
/// not); `missingok`: no error, the same files.
#[test]
fn missingok_and_nomissingok() {
    let case = |directive: &'static str, value: &'static str| {
        let mut c = Case::new(
            vec![("app.log", "x\n", 0o644, 0)],
            Box::leak(format!("size 1\nrotate 1\n{directive}").into_boxed_str()),
            vec![
                ("min_size", "1B"),
                ("missing_ok", value),
                ("compress", "false"),
                ("create", "false"),
            ],
        );
        c.patterns = "app.log gone*.log";
        c
    };
    let c = case("nomissingok", "false");
    assert!(!c.logrotate().ok);
    let w = World::new();
    let (t, run) = c.tend(&w);
    assert!(!t.ok);
    assert!(run.stdout.contains("no log file matches"), "{}", run.stdout);
    assert_eq!(names(&t), ["app.log"]);

    // (logrotate also writes the unmatched pattern into its status file as if it
    // were a log; tend does not.)
    let c = case("missingok", "true");
    let lr = c.logrotate();
    let w = World::new();
    let (t, _) = c.tend(&w);
    assert!(lr.ok && t.ok);
    assert_eq!(lr.tree, t.tree);
    assert_eq!(names(&t), ["app.log.1"]);
}
