//! The audit log: hash chain verified end to end through the binary, tampering found
//! and named, concurrent writers from separate processes leave a valid chain.

mod support;

use support::World;

const RECIPE: &str = r#"//! Writes one file.
let p = params(#{ name: "a", text: "hello" });
fs::file(`${p.name}`, p.text);
"#;

fn audit_lines(w: &World) -> Vec<String> {
    std::fs::read_to_string(w.state().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(w: &World, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(w.state().join("audit.jsonl"), text).unwrap();
}

/// Three real runs, one recipe: run_start, step, host_end, run_end each.
fn three_runs(w: &World) {
    let r = w.recipe("write.rhai", RECIPE);
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let name = w.path(&format!("f{i}"));
        w.run(
            &r,
            &["-p", &format!("name={name}"), "-p", &format!("text={text}")],
        )
        .assert_code(0);
    }
}

#[test]
fn real_runs_are_recorded_and_verify() {
    let w = World::new();
    three_runs(&w);
    let v = w.tend(&["audit", "verify"]);
    v.assert_code(0);
    assert!(v.stdout.contains("12 lines, chain intact"), "{}", v.stdout);
    let show = w.tend(&["audit", "show", "--json"]);
    let events: Vec<serde_json::Value> = show.events();
    assert_eq!(events.len(), 12);
    let step = events.iter().find(|e| e["event"] == "step").unwrap();
    assert_eq!(step["op"], "fs::file");
    assert_eq!(step["changed"], true);
    assert_eq!(step["host"], "local");
    assert!(step["user"].as_str().is_some_and(|u| !u.is_empty()));
    let start = events.iter().find(|e| e["event"] == "run_start").unwrap();
    assert!(start["recipe_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(start["recipe"], "write");
}

#[test]
fn editing_a_line_is_found_and_named() {
    let w = World::new();
    three_runs(&w);
    let mut lines = audit_lines(&w);
    lines[5] = lines[5].replace("\"changed\":true", "\"changed\":false");
    assert_ne!(
        lines[5],
        audit_lines(&w)[5],
        "the edit must change the line"
    );
    write_lines(&w, &lines);
    let v = w.tend(&["audit", "verify"]);
    v.assert_code(67);
    assert!(v.stderr.contains("line 6"), "{}", v.stderr);
}

#[test]
fn deleting_a_line_is_found_and_named() {
    let w = World::new();
    three_runs(&w);
    let mut lines = audit_lines(&w);
    lines.remove(3);
    write_lines(&w, &lines);
    let v = w.tend(&["audit", "verify"]);
    v.assert_code(67);
    assert!(v.stderr.contains("line 4"), "{}", v.stderr);
}

#[test]
fn deleting_the_last_line_is_found() {
    let w = World::new();
    three_runs(&w);
    let mut lines = audit_lines(&w);
    lines.pop();
    write_lines(&w, &lines);
    w.tend(&["audit", "verify"]).assert_code(67);
}

#[test]
fn four_processes_appending_at_once_keep_the_chain() {
    let w = World::new();
    let r = w.recipe("write.rhai", RECIPE);
    let name = format!("name={}", w.path("x"));
    // Dry-runs take no host lock, so these really append concurrently.
    let children: Vec<_> = (0..4)
        .map(|_| {
            let script = format!(
                "for i in 1 2 3 4 5 6 7 8; do {} run {} --dry-run -p {} >/dev/null || exit 1; done",
                support::TEND,
                r.display(),
                name
            );
            let mut sh = std::process::Command::new("sh");
            sh.arg("-c")
                .arg(script)
                .env("TEND_STATE_DIR", w.state())
                .current_dir(w.dir.path());
            sh.spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let v = w.tend(&["audit", "verify"]);
    v.assert_code(0);
    // 4 processes × 8 plans × (run_start + run_end).
    assert!(v.stdout.contains("64 lines, chain intact"), "{}", v.stdout);
    let seqs: Vec<u64> = w
        .tend(&["audit", "show", "--json"])
        .events()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=64).collect::<Vec<_>>());
}
