//! `--json` is an interface: every command's JSON lines are checked against
//! docs/json.schema.json (a JSON Schema validator written by others, not tend's own
//! code), and docs/json.md is checked against the schema, so that neither the docs nor
//! the output can drift. A field or event the schema does not list, a missing required
//! field or a value of the wrong type fails here.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::PathBuf;

use serde_json::Value;
use support::{Run, World};

fn docs(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(file)
}

fn schema() -> Value {
    let text = std::fs::read_to_string(docs("json.schema.json")).unwrap();
    serde_json::from_str(&text).expect("docs/json.schema.json is JSON")
}

/// The commands the schema describes (`$defs/command:NAME`), each with the defs
/// (events and kinds) its lines may be.
fn commands(schema: &Value) -> BTreeMap<String, Vec<String>> {
    let defs = schema["$defs"].as_object().unwrap();
    defs.iter()
        .filter_map(|(k, v)| {
            // `audit-show` is `tend audit show`, `import_script` is `tend import-script`.
            let name = k
                .strip_prefix("command:")?
                .replace('-', " ")
                .replace('_', "-");
            let refs = v["oneOf"].as_array().unwrap();
            let refs = refs
                .iter()
                .map(|r| {
                    r["$ref"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("#/$defs/")
                        .to_string()
                })
                .collect();
            Some((name, refs))
        })
        .collect()
}

/// Checks each line a command prints against the schema, and remembers which
/// commands and which events/kinds were seen.
struct Checker {
    schema: Value,
    commands: BTreeMap<String, Vec<String>>,
    validators: BTreeMap<String, jsonschema::Validator>,
    seen: std::cell::RefCell<BTreeSet<(String, String)>>,
    ran: std::cell::RefCell<BTreeSet<String>>,
}

impl Checker {
    fn new() -> Checker {
        let schema = schema();
        jsonschema::meta::validate(&schema).expect("the schema is valid JSON Schema");
        let commands = commands(&schema);
        let validators = commands
            .keys()
            .map(|c| {
                // The whole schema, narrowed to this command's lines.
                let mut s = schema.clone();
                s.as_object_mut().unwrap().remove("anyOf");
                s["$ref"] =
                    format!("#/$defs/command:{}", c.replace('-', "_").replace(' ', "-")).into();
                (c.clone(), jsonschema::validator_for(&s).unwrap())
            })
            .collect();
        Checker {
            schema,
            commands,
            validators,
            seen: Default::default(),
            ran: Default::default(),
        }
    }

    /// The def a line claims to be, by its `event` or `kind`.
    fn def_of(&self, command: &str, line: &Value) -> Option<String> {
        self.commands[command].iter().find_map(|d| {
            let props = self.schema["$defs"][d]["properties"].as_object()?;
            let disc = ["event", "kind"]
                .iter()
                .find_map(|k| Some((*k, props.get(*k)?.get("const")?)));
            let claims = match disc {
                Some((k, c)) => line.get(k) == Some(c),
                None => line.get("event").is_none() && line.get("kind").is_none(),
            };
            claims.then(|| d.clone())
        })
    }

    /// Every stdout line of `r` is one JSON object valid for `command`. Returns them.
    #[track_caller]
    fn check(&self, command: &str, r: &Run) -> Vec<Value> {
        let validator = self
            .validators
            .get(command)
            .unwrap_or_else(|| panic!("docs/json.schema.json has no command:{command}"));
        self.ran.borrow_mut().insert(command.to_string());
        let mut lines = Vec::new();
        for l in r.stdout.lines() {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("tend {command} --json printed a line that is not JSON ({e}):\n{l}\nstderr:\n{}", r.stderr)
            });
            let errors: Vec<String> = validator
                .iter_errors(&v)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            let def = self.def_of(command, &v);
            if !errors.is_empty() {
                // Say why against the def the line claims to be, not only "no oneOf".
                let detail = match &def {
                    Some(d) => {
                        let mut s = self.schema.clone();
                        s.as_object_mut().unwrap().remove("anyOf");
                        s["$ref"] = format!("#/$defs/{d}").into();
                        let v2 = jsonschema::validator_for(&s).unwrap();
                        v2.iter_errors(&v)
                            .map(|e| format!("  {d}: {e} at {}", e.instance_path()))
                            .collect::<Vec<_>>()
                            .join("\n")
                    }
                    None => "  its event/kind is not one this command may print".into(),
                };
                panic!(
                    "tend {command} --json: a line the schema refuses:\n{l}\n{}\n{detail}",
                    errors.join("\n")
                );
            }
            self.seen
                .borrow_mut()
                .insert((command.to_string(), def.expect("a valid line has a def")));
            lines.push(v);
        }
        lines
    }

    /// `tend ARGS` (with `--json` added), checked as `command`.
    #[track_caller]
    fn tend(&self, w: &World, command: &str, args: &[&str], code: i32) -> Vec<Value> {
        let mut all: Vec<&str> = args.to_vec();
        // Before a `--`, after which everything is the command `exec` runs.
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.insert(at, "--json");
        let r = w.tend(&all);
        assert_eq!(
            r.code, code,
            "tend {all:?}\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        self.check(command, &r)
    }
}

fn kinds(lines: &[Value], key: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l[key].as_str().map(String::from))
        .collect()
}

const RECIPE: &str = r#"//! Writes a file and logs.
let p = params(#{
    count: 4,     // how many
    ratio: 0.5,
    on: true,
    name: "x",
    keep: "10M",
    items: ["a", 2],
});
log::info(`count ${p.count}`);
fs::file(`${ROOT}/a.txt`, #{content: "hello\n"});
"#;

const FAILING: &str = r#"//! Changes a file, then fails.
fs::file(`${ROOT}/b.txt`, #{content: "b\n"});
sh("exit 3", #{undo: "true"});
"#;

#[test]
fn every_command_prints_only_what_the_schema_lists() {
    let c = Checker::new();
    let w = World::new();
    let root = w.root().display().to_string();
    let recipe = w.recipe("r.rhai", &RECIPE.replace("${ROOT}", &root));
    let failing = w.recipe("fail.rhai", &FAILING.replace("${ROOT}", &root));
    let r = recipe.to_str().unwrap();
    let f = failing.to_str().unwrap();

    // show: typed defaults, no Rust names.
    let show = c.tend(&w, "show", &["show", r], 0);
    assert_eq!(kinds(&show, "kind"), ["recipe"]);
    let builtins = c.tend(&w, "recipes", &["recipes"], 0);
    assert!(kinds(&builtins, "kind")
        .iter()
        .all(|k| k == "builtin_recipe"));
    let params = show[0]["params"].as_array().unwrap();
    let default = |n: &str| params.iter().find(|p| p["name"] == n).unwrap()["default"].clone();
    assert_eq!(default("count"), serde_json::json!(4));
    assert_eq!(default("ratio"), serde_json::json!(0.5));
    assert_eq!(default("on"), serde_json::json!(true));
    assert_eq!(default("items"), serde_json::json!(["a", 2]));
    assert_eq!(default("keep"), serde_json::json!("10M"));
    c.tend(&w, "show", &["show", "missing.rhai"], 66);

    // tend test: a case that passes and one whose expectation fails.
    let dir = w.dir.path().join("tested");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("greet.rhai"),
        "//! Greet.\nlet p = params(#{ to: \"/greeting\" });\nfs::file(p.to, #{ content: \"hi\" });\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("greet.test.rhai"),
        "test(\"writes hi\", #{}, |t| { t.expect_file(\"greeting\", \"hi\"); });\ntest(\"expects too much\", #{}, |t| { t.expect_file(\"greeting\", \"hello\"); });\n",
    )
    .unwrap();
    let tested = c.tend(&w, "test", &["test", dir.to_str().unwrap()], 1);
    assert_eq!(
        kinds(&tested, "event"),
        ["test_case", "test_case", "test_end"]
    );
    assert_eq!(tested[1]["failures"][0]["check"], "expect");
    assert_eq!(
        (tested[2]["passed"].clone(), tested[2]["failed"].clone()),
        (1.into(), 1.into())
    );

    let out = w.dir.path().join("pages");
    let doc = c.tend(
        &w,
        "doc",
        &["doc", dir.to_str().unwrap(), "--out", out.to_str().unwrap()],
        0,
    );
    assert_eq!(doc[0]["recipes"], serde_json::json!(["greet"]));
    c.tend(&w, "doc", &["doc", "missing-dir"], 66);
    let script = w.dir.path().join("clean.sh");
    std::fs::write(&script, "#!/bin/sh\nrm -f \"${1:-/tmp/x}\"/*.tmp\n").unwrap();
    let imported = c.tend(
        &w,
        "import-script",
        &[
            "import-script",
            script.to_str().unwrap(),
            "--name",
            "clean",
            "--changes",
            "/tmp/x/**",
        ],
        0,
    );
    assert_eq!(imported[0]["params"], serde_json::json!(["arg1"]));
    c.tend(
        &w,
        "import-script",
        &["import-script", "nope.sh", "--name", "n"],
        66,
    );

    let check = c.tend(&w, "check", &["check", r, "-p", "count=5"], 0);
    assert_eq!(check[0]["kind"], "check");
    let bad = c.tend(&w, "check", &["check", r, "-p", "count=many"], 64);
    assert_eq!(kinds(&bad, "event"), ["error"]);

    // run: a plan, a run, a failing run rolled back.
    c.tend(&w, "run", &["run", r, "--dry-run"], 0);
    let run = c.tend(&w, "run", &["run", r], 0);
    let events = kinds(&run, "event");
    for e in [
        "run_start",
        "host_start",
        "step_start",
        "log",
        "step",
        "host_end",
        "run_end",
    ] {
        assert!(events.contains(&e.to_string()), "{e} not in {events:?}");
    }
    let failed = c.tend(&w, "run", &["run", f], 3);
    let events = kinds(&failed, "event");
    for e in ["step_failed", "undo", "rollback"] {
        assert!(events.contains(&e.to_string()), "{e} not in {events:?}");
    }

    let exec = c.tend(&w, "exec", &["exec", "--", "echo", "hi"], 0);
    let step = exec.iter().find(|l| l["event"] == "step").unwrap();
    assert_eq!(step["stdout"], "hi\n");

    // runs: every run a `run`; `become` beside run.json's `become_`.
    let runs = c.tend(&w, "runs", &["runs"], 0);
    assert!(runs.len() >= 4, "{runs:?}");
    for run in &runs {
        assert_eq!(run["kind"], "run");
        for t in run["targets"].as_array().unwrap() {
            assert_eq!(t["become"], t["become_"]);
        }
    }

    let id = run.last().unwrap()["run_id"].as_str().unwrap().to_string();
    c.tend(&w, "rollback", &["rollback", &id, "--dry-run"], 0);
    let back = c.tend(&w, "rollback", &["rollback", &id], 0);
    assert_eq!(back.last().unwrap()["event"], "rollback_end");
    c.tend(
        &w,
        "rollback",
        &["rollback", "20261128-212233-042-4f2a09c1"],
        66,
    );

    // A schedule (and the trust file beside its tend.toml), then vet one recipe.
    std::fs::write(
        w.dir.path().join("tend.toml"),
        "[[schedule]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\ntimezone = \"UTC\"\nrecipe = \"r.rhai\"\n\n\
         [[schedule]]\nname = \"boot\"\ncron = \"@reboot\"\nrecipe = \"fail.rhai\"\n",
    )
    .unwrap();
    c.tend(
        &w,
        "vet",
        &["vet", r, "--by", "alice", "--print-message"],
        0,
    );
    assert_eq!(
        c.tend(&w, "vet", &["vet", r, "--by", "alice", "--note", "ok"], 0)[0]["kind"],
        "vet"
    );
    assert_eq!(
        c.tend(&w, "vet", &["vet", "--list"], 0)[0]["kind"],
        "vetting"
    );

    let checked = c.tend(&w, "schedule check", &["schedule", "check"], 77);
    assert_eq!(
        kinds(&checked, "kind"),
        ["schedule_check", "schedule_check", "schedule_check_summary"]
    );
    assert_eq!(checked[0]["ok"], true, "{checked:?}");
    assert_eq!(checked[1]["ok"], false);
    assert_eq!(checked[1]["problems"][0]["exit_code"], 77);
    let list = c.tend(&w, "schedule list", &["schedule", "list"], 0);
    assert_eq!(kinds(&list, "kind"), ["schedule", "schedule"]);
    let next = c.tend(
        &w,
        "schedule next",
        &["schedule", "next", "nightly", "--count", "2"],
        0,
    );
    assert_eq!(kinds(&next, "kind"), ["fire", "fire"]);
    c.tend(&w, "schedule pause", &["schedule", "pause", "nightly"], 0);
    c.tend(&w, "schedule resume", &["schedule", "resume", "nightly"], 0);
    let fired = c.tend(&w, "schedule run", &["schedule", "run", "nightly"], 0);
    assert_eq!(fired[0]["outcome"], "ok");
    assert_eq!(fired[0]["daemon"], false);
    c.tend(&w, "schedule run", &["schedule", "run", "nope"], 64);

    c.tend(&w, "vet", &["vet", "--revoke", r], 0);

    // hosts and ping: this machine.
    c.tend(&w, "hosts", &["hosts", "local"], 0);
    let pinged = c.tend(&w, "ping", &["ping", "-H", "local"], 0);
    assert_eq!(
        (pinged[0]["kind"].clone(), pinged[0]["ok"].clone()),
        ("ping".into(), true.into())
    );
    c.tend(&w, "unlock", &["unlock", "local"], 0);

    // Retention that frees every finished run at once: `prune` lines, and the audit
    // log's `prune` records.
    let toml = w.dir.path().join("tend.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[retention]\nbackups = \"0\"\nruns = \"0\"\n");
    std::fs::write(&toml, text).unwrap();
    let plan = c.tend(&w, "prune", &["prune", "--dry-run"], 0);
    assert!(
        kinds(&plan, "event").contains(&"prune".to_string()),
        "{plan:?}"
    );
    let pruned = c.tend(&w, "prune", &["prune"], 0);
    assert_eq!(pruned.last().unwrap()["event"], "prune_end");

    // The audit log, as stored: run events, vet, revoke, schedule pause/resume.
    let audit = c.tend(&w, "audit show", &["audit", "show"], 0);
    let events: BTreeSet<String> = kinds(&audit, "event").into_iter().collect();
    for e in [
        "run_start",
        "step",
        "step_failed",
        "rollback",
        "host_end",
        "run_end",
        "vet",
        "revoke",
        "schedule_pause",
        "schedule_resume",
    ] {
        assert!(events.contains(e), "{e} not in {events:?}");
    }
    c.tend(&w, "audit verify", &["audit", "verify"], 0);
    let anchor = c.tend(&w, "audit anchor", &["audit", "anchor"], 0);
    let head = anchor[0]["anchor"].as_str().unwrap().to_string();
    c.tend(
        &w,
        "audit verify",
        &["audit", "verify", "--anchor", &head],
        0,
    );
    // An edited log: the error line, exit 67.
    let log = w.state().join("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("alice", "mallory", 1)).unwrap();
    let tampered = c.tend(&w, "audit verify", &["audit", "verify"], 67);
    assert_eq!(tampered[0]["kind"], "tampered");

    // status: its one line, then it serves until killed.
    let mut child = w
        .command()
        .args(["status", "--listen", "127.0.0.1:0", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let status = c.check(
        "status",
        &Run {
            code: 0,
            stdout: first,
            stderr: String::new(),
        },
    );
    assert_eq!(status[0]["event"], "listening");

    // cluster status without [cluster]: a usage error line (tests/cluster.rs runs
    // it against a real cluster).
    let no_cluster = c.tend(&w, "cluster status", &["cluster", "status"], 64);
    assert_eq!(no_cluster[0]["kind"], "usage");

    // A bad command line with --json: the error line, whichever the command.
    let usage = c.tend(&w, "runs", &["runs", "--limit", "many"], 64);
    assert_eq!(usage[0]["kind"], "usage");

    let ran = c.ran.borrow();
    let missing: Vec<&String> = c.commands.keys().filter(|k| !ran.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "commands the schema lists but this test never ran: {missing:?}"
    );
}

/// docs/json.md documents exactly what the schema says: for every def, a marker
/// `<!-- schema: DEF -->` followed by a table of exactly its fields; and every
/// command's line in the command table.
#[test]
fn docs_match_the_schema() {
    let schema = schema();
    let md = std::fs::read_to_string(docs("json.md")).unwrap();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        if let Some(def) = line
            .trim()
            .strip_prefix("<!-- schema: ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            assert!(
                documented
                    .insert(def.to_string(), BTreeSet::new())
                    .is_none(),
                "{def} twice in docs/json.md"
            );
            current = Some(def.to_string());
        } else if line.starts_with("#") {
            current = None;
        } else if let (Some(def), Some(row)) = (&current, line.strip_prefix("| `")) {
            let field = row.split('`').next().unwrap();
            documented.get_mut(def).unwrap().insert(field.to_string());
        }
    }
    let defs = schema["$defs"].as_object().unwrap();
    for (name, def) in defs {
        if let Some(cmd) = name.strip_prefix("command:") {
            let cmd = cmd.replace('-', " ").replace('_', "-");
            assert!(
                md.contains(&format!("| `tend {cmd}` |")),
                "docs/json.md: no row for tend {cmd}"
            );
            continue;
        }
        let fields: BTreeSet<String> = def["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let doc = documented
            .get(name)
            .unwrap_or_else(|| panic!("docs/json.md does not document {name}"));
        assert_eq!(doc, &fields, "docs/json.md: the fields of {name}");
        assert_eq!(
            def["additionalProperties"], false,
            "{name} must list every field"
        );
    }
    for def in documented.keys() {
        assert!(
            defs.contains_key(def),
            "docs/json.md documents {def}, which the schema does not have"
        );
    }
}
