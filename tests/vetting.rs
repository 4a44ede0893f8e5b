//! Vetting, through the real binary: `tend vet` records the content hash of a recipe
//! and every module it imports; one edited byte anywhere un-vets it; re-vetting shows
//! the diff; the `[trust]` policy gates real runs (exit 77) and the audit log records
//! unvetted runs; SSH signatures interoperate with `ssh-keygen -Y sign/verify` both
//! ways and are checked against an allowed_signers file.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{snapshot, World};

const HELPER: &str = "fn greeting() { \"hello\" }\n";

/// A recipe that imports a module of its own folder and writes one file under root.
const RECIPE: &str = r#"//! Write a greeting.
import "helper" as h;
let p = params(#{ name: "greeting.txt" });
fs::file(`ROOT/${p.name}`, #{ content: h::greeting() });
"#;

fn setup(w: &World) -> PathBuf {
    w.beside("helper.rhai", HELPER);
    w.recipe_in_root("greet.rhai", RECIPE)
}

fn config(w: &World, trust: &str) {
    std::fs::write(
        w.dir.path().join("tend.toml"),
        format!("[trust]\n{trust}\n"),
    )
    .unwrap();
}

/// `tend show --json`'s `vetting` object.
fn vetting(w: &World, recipe: &Path) -> Value {
    let r = w.tend(&["show", recipe.to_str().unwrap(), "--json"]);
    r.assert_code(0);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    v["vetting"].clone()
}

/// Flip one bit of one byte of a file (a letter becomes another letter).
fn edit_one_byte(path: &Path, at: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let i = text
        .find(at)
        .unwrap_or_else(|| panic!("{at:?} not in {text}"));
    bytes[i] ^= 0x20; // case flip
    std::fs::write(path, bytes).unwrap();
}

fn vet(w: &World, recipe: &Path, extra: &[&str]) -> support::Run {
    let mut args = vec!["vet", recipe.to_str().unwrap()];
    args.extend_from_slice(extra);
    w.tend(&args)
}

fn run_start(w: &World, run_id: &str) -> Value {
    let r = w.tend(&["audit", "show", run_id, "--json"]);
    r.assert_code(0);
    r.event("run_start")
}

#[test]
fn editing_one_byte_of_the_recipe_or_a_module_unvets_and_revet_shows_the_diff() {
    let w = World::new();
    let recipe = setup(&w);
    assert_eq!(vetting(&w, &recipe)["status"], "unvetted");

    vet(&w, &recipe, &["--by", "alice", "--note", "first review"]).assert_code(0);
    let v = vetting(&w, &recipe);
    assert_eq!(v["status"], "vetted", "{v}");
    assert_eq!(v["by"], "alice");
    assert_eq!(v["note"], "first review");
    let at = v["at"].as_str().unwrap().to_string();
    assert!(at.ends_with('Z') && at.len() == 20, "{at}");
    let shown = w.tend(&["show", recipe.to_str().unwrap()]);
    assert!(
        shown
            .stdout
            .contains(&format!("Vetted: yes, by alice at {at}")),
        "{}",
        shown.stdout
    );
    // The trust file is beside the (absent) config: the state dir.
    assert!(w.state().join("vetted.toml").is_file());

    // The same file named another way is the same recipe.
    let other_spelling = w.dir.path().join(".").join("greet.rhai");
    assert_eq!(vetting(&w, &other_spelling)["status"], "vetted");
    let r = w.tend(&["show", "greet.rhai", "--json"]); // relative to the cwd
    assert!(r.stdout.contains("\"status\":\"vetted\""), "{}", r.stdout);

    // One byte of the recipe.
    edit_one_byte(&recipe, "greeting.");
    let v = vetting(&w, &recipe);
    assert_eq!(v["status"], "edited", "{v}");
    assert_eq!(v["vetted"], false);
    let why = v["description"].as_str().unwrap();
    assert!(
        why.contains(&format!("edited since vetted by alice at {at}")),
        "{why}"
    );
    edit_one_byte(&recipe, "Greeting.");
    assert_eq!(vetting(&w, &recipe)["status"], "vetted", "byte restored");

    // One byte of the local module it imports.
    let helper = w.dir.path().join("helper.rhai");
    edit_one_byte(&helper, "hello");
    assert_eq!(vetting(&w, &recipe)["status"], "edited");

    // Re-vetting shows what changed since alice vetted it.
    let r = vet(&w, &recipe, &["--by", "bob"]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("changes since vetted by alice"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("helper.rhai"), "{}", r.stdout);
    assert!(
        r.stdout.contains("-fn greeting() { \"hello\" }"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("+fn greeting() { \"Hello\" }"),
        "{}",
        r.stdout
    );
    let v = vetting(&w, &recipe);
    assert_eq!(
        (v["status"].as_str(), v["by"].as_str()),
        (Some("vetted"), Some("bob"))
    );

    // Vetting runs `tend check` first: a broken recipe is not recorded.
    std::fs::write(&recipe, "let x = ;\n").unwrap();
    vet(&w, &recipe, &["--by", "carol"]).assert_code(65);
    let rows = w.tend(&["vet", "--list", "--json"]).events();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["by"], "bob");
    assert_eq!(rows[0]["status"]["vetted"], false, "{}", rows[0]);
}

#[test]
fn list_and_revoke() {
    let w = World::new();
    let a = setup(&w);
    let b = w.recipe_in_root("other.rhai", "//! Nothing.\nlet x = 1;\n");
    vet(&w, &a, &["--by", "alice"]).assert_code(0);
    vet(&w, &b, &["--by", "carol", "--note", "trivial"]).assert_code(0);

    let r = w.tend(&["vet", "--list", "--json"]);
    r.assert_code(0);
    let rows = r.events();
    assert_eq!(rows.len(), 2, "{}", r.stdout);
    assert!(
        rows[0]["recipe"].as_str().unwrap().ends_with("/greet.rhai"),
        "{}",
        r.stdout
    );
    assert_eq!(rows[0]["status"]["status"], "vetted");
    assert_eq!(rows[1]["by"], "carol");

    edit_one_byte(&b, "Nothing");
    let r = w.tend(&["vet", "--list"]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("greet.rhai") && r.stdout.contains("edited"),
        "{}",
        r.stdout
    );

    let r = w.tend(&["vet", "--revoke", a.to_str().unwrap()]);
    r.assert_code(0);
    assert!(r.stdout.contains("revoked"), "{}", r.stdout);
    assert_eq!(w.tend(&["vet", "--list", "--json"]).events().len(), 1);
    let v = vetting(&w, &a);
    assert_eq!(v["status"], "unvetted");
    assert!(
        v["description"].as_str().unwrap().contains("never vetted"),
        "{v}"
    );
    w.tend(&["vet", "--revoke", a.to_str().unwrap()])
        .assert_code(64);

    // Approvals and revocations are in the audit log.
    let events = w.tend(&["audit", "show", "--json"]).events();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, ["vet", "vet", "revoke"]);
    w.tend(&["audit", "verify"]).assert_code(0);
}

#[test]
fn the_policy_gates_real_runs_and_the_audit_records_unvetted_ones() {
    let w = World::new();
    let recipe = setup(&w);
    let path = recipe.to_str().unwrap();

    // "always": a real run of an unvetted recipe is refused and changes nothing.
    config(&w, "require_vetted = \"always\"");
    let before = snapshot(&w.root());
    let r = w.run(&recipe, &[]);
    r.assert_code(77);
    assert!(
        r.stderr.contains("not vetted") && r.stderr.contains("always"),
        "{}",
        r.stderr
    );
    w.run(&recipe, &["--unvetted"]).assert_code(77);
    assert_eq!(snapshot(&w.root()), before);
    assert!(w.runs().is_empty(), "a refused run is not a run");
    // A dry-run is always allowed.
    let r = w.run(&recipe, &["--dry-run"]);
    r.assert_code(0);
    assert_eq!(run_start(&w, &r.run_id())["vetted"], false);

    // Vetted, it runs, and the audit says so.
    w.tend(&["vet", path, "--by", "alice"]).assert_code(0);
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    assert_eq!(run_start(&w, &r.run_id())["vetted"], true);
    assert!(w.root().join("greeting.txt").is_file());

    // "flag": an edited recipe needs --unvetted, and is recorded as unvetted.
    config(&w, "require_vetted = \"flag\"");
    std::fs::write(
        w.dir.path().join("helper.rhai"),
        HELPER.replace("hello", "hi"),
    )
    .unwrap();
    let r = w.run(&recipe, &[]);
    r.assert_code(77);
    assert!(r.stderr.contains("--unvetted"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(w.root().join("greeting.txt")).unwrap(),
        "hello"
    );
    let r = w.run(&recipe, &["--unvetted"]);
    r.assert_code(0);
    assert_eq!(run_start(&w, &r.run_id())["vetted"], false);
    assert_eq!(
        std::fs::read_to_string(w.root().join("greeting.txt")).unwrap(),
        "hi"
    );
    let table = w.tend(&["audit", "show"]);
    assert!(table.stdout.contains("unvetted"), "{}", table.stdout);

    // Default ("scheduled"): ad-hoc runs go ahead with a note, recorded unvetted.
    std::fs::remove_file(w.dir.path().join("tend.toml")).unwrap();
    let r = w.run(&recipe, &["-p", "name=other.txt"]);
    r.assert_code(0);
    assert!(
        r.stderr.contains("note:") && r.stderr.contains("not vetted"),
        "{}",
        r.stderr
    );
    assert_eq!(run_start(&w, &r.run_id())["vetted"], false);

    // A bad policy value names the line.
    config(&w, "require_vetted = \"sometimes\"");
    let r = w.run(&recipe, &[]);
    r.assert_code(64);
    assert!(r.stderr.contains("tend.toml:2"), "{}", r.stderr);
}

// ---- SSH signatures ----

fn ssh_keygen(dir: &Path, args: &[&str], stdin: Option<&Path>) -> std::process::Output {
    let mut c = Command::new("ssh-keygen");
    c.args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(f) = stdin {
        c.stdin(std::fs::File::open(dir.join(f)).unwrap());
    } else {
        c.stdin(Stdio::null());
    }
    c.output()
        .expect("ssh-keygen (openssh-client) is needed for these tests")
}

/// A passphrase-less key `name` (and `name.pub`) in the world dir; returns the public line.
fn keygen(w: &World, name: &str) -> String {
    let out = ssh_keygen(
        w.dir.path(),
        &["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(w.dir.path().join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_string()
}

/// `ssh-keygen -Y sign -n tend -f KEY FILE`: writes FILE.sig.
fn sign_with_ssh_keygen(w: &World, key: &str, file: &str) {
    let _ = std::fs::remove_file(w.dir.path().join(format!("{file}.sig")));
    let out = ssh_keygen(
        w.dir.path(),
        &["-Y", "sign", "-n", "tend", "-f", key, file],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn print_message(w: &World, recipe: &Path, by: &str, file: &str) {
    let r = vet(w, recipe, &["--by", by, "--print-message"]);
    r.assert_code(0);
    assert!(r.stdout.starts_with("tend-vet v1\n"), "{}", r.stdout);
    std::fs::write(w.dir.path().join(file), &r.stdout).unwrap();
}

#[test]
fn ssh_signatures_interoperate_with_ssh_keygen_and_follow_allowed_signers() {
    let w = World::new();
    let recipe = setup(&w);
    let alice = keygen(&w, "alice");
    let mallory = keygen(&w, "mallory");
    let allowed = w.dir.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("# who may vet\nalice@example.com namespaces=\"tend\" {alice}\n"),
    )
    .unwrap();
    config(
        &w,
        "require_vetted = \"always\"\nrequire_signature = true\nallowed_signers = \"allowed_signers\"",
    );

    // Unsigned vetting is refused when signatures are required.
    let r = vet(&w, &recipe, &["--by", "alice"]);
    r.assert_code(77);
    assert!(r.stderr.contains("require_signature"), "{}", r.stderr);

    // ssh-keygen signs the message tend prints; tend verifies it.
    print_message(&w, &recipe, "alice", "vet.msg");
    sign_with_ssh_keygen(&w, "alice", "vet.msg");
    let r = vet(&w, &recipe, &["--signature", "vet.msg.sig"]);
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("signed by alice@example.com (ED25519 SHA256:"),
        "{}",
        r.stdout
    );
    let v = vetting(&w, &recipe);
    assert_eq!(v["status"], "vetted", "{v}");
    assert_eq!(v["signer"]["principal"], "alice@example.com");
    w.run(&recipe, &[]).assert_code(0);

    // tend signs; ssh-keygen verifies, exactly as for a git commit.
    let r = vet(
        &w,
        &recipe,
        &["--by", "alice", "--sign-key", "alice", "--json"],
    );
    r.assert_code(0);
    let out: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    std::fs::write(
        w.dir.path().join("tend.msg"),
        out["message"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        w.dir.path().join("tend.sig"),
        out["vetted"]["signature"].as_str().unwrap(),
    )
    .unwrap();
    let verified = ssh_keygen(
        w.dir.path(),
        &[
            "-Y",
            "verify",
            "-f",
            "allowed_signers",
            "-I",
            "alice@example.com",
            "-n",
            "tend",
            "-s",
            "tend.sig",
        ],
        Some(Path::new("tend.msg")),
    );
    assert!(
        verified.status.success(),
        "ssh-keygen refused tend's signature: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("Good \"tend\" signature"));

    // A signer not in allowed_signers is refused, by either route, and nothing changes.
    let trust_file = std::fs::read(w.dir.path().join("vetted.toml")).unwrap();
    let r = vet(&w, &recipe, &["--by", "mallory", "--sign-key", "mallory"]);
    r.assert_code(77);
    assert!(r.stderr.contains("not in allowed_signers"), "{}", r.stderr);
    print_message(&w, &recipe, "mallory", "m.msg");
    sign_with_ssh_keygen(&w, "mallory", "m.msg");
    vet(&w, &recipe, &["--signature", "m.msg.sig"]).assert_code(77);
    assert_eq!(
        std::fs::read(w.dir.path().join("vetted.toml")).unwrap(),
        trust_file
    );

    // A signature over another hash is refused: the recipe changed after the message
    // was printed and signed…
    print_message(&w, &recipe, "alice", "old.msg");
    sign_with_ssh_keygen(&w, "alice", "old.msg");
    edit_one_byte(&recipe, "greeting.");
    let r = vet(&w, &recipe, &["--signature", "old.msg.sig"]);
    r.assert_code(77);
    assert!(
        r.stderr.contains("changed since the message"),
        "{}",
        r.stderr
    );
    // …and pointing the signed entry at the new hash by hand breaks its signature.
    let old_hash = vetting(&w, &recipe)["vetted_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w.tend(&["show", recipe.to_str().unwrap(), "--json"]);
    let new_hash = serde_json::from_str::<Value>(r.stdout.trim()).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let text = String::from_utf8(trust_file).unwrap();
    std::fs::write(
        w.dir.path().join("vetted.toml"),
        text.replace(&old_hash, &new_hash),
    )
    .unwrap();
    let v = vetting(&w, &recipe);
    assert_eq!(v["status"], "unvetted", "{v}");
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .contains("signature is refused"),
        "{v}"
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(77);

    // Vetted again properly; then alice's key leaves allowed_signers: unvetted.
    let r = vet(&w, &recipe, &["--by", "alice", "--sign-key", "alice"]);
    r.assert_code(0);
    assert_eq!(vetting(&w, &recipe)["status"], "vetted");
    std::fs::write(&allowed, format!("mallory@example.com {mallory}\n")).unwrap();
    let v = vetting(&w, &recipe);
    assert_eq!(v["status"], "unvetted", "{v}");
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .contains("not in allowed_signers"),
        "{v}"
    );
    // A key allowed only for git's namespace does not vet for tend.
    std::fs::write(
        &allowed,
        format!("alice@example.com namespaces=\"git\" {alice}\n"),
    )
    .unwrap();
    assert_eq!(vetting(&w, &recipe)["status"], "unvetted");

    // An unsigned entry made before signatures were required no longer counts.
    std::fs::write(&allowed, format!("alice@example.com {alice}\n")).unwrap();
    config(&w, "allowed_signers = \"allowed_signers\"");
    vet(&w, &recipe, &["--by", "alice"]).assert_code(0);
    assert_eq!(vetting(&w, &recipe)["status"], "vetted");
    config(
        &w,
        "require_signature = true\nallowed_signers = \"allowed_signers\"",
    );
    let v = vetting(&w, &recipe);
    assert_eq!(v["status"], "unvetted");
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .contains("without a signature"),
        "{v}"
    );
}

#[test]
fn the_trust_file_can_live_beside_the_config_and_keys_stay_relative() {
    let w = World::new();
    std::fs::create_dir(w.dir.path().join("recipes")).unwrap();
    w.beside("recipes/helper.rhai", HELPER);
    let recipe = w.beside(
        "recipes/greet.rhai",
        &RECIPE.replace("ROOT", &w.root().display().to_string()),
    );
    config(&w, "file = \"approved.toml\"");
    vet(&w, &recipe, &["--by", "alice"]).assert_code(0);
    let text = std::fs::read_to_string(w.dir.path().join("approved.toml")).unwrap();
    assert!(text.contains("recipe = \"recipes/greet.rhai\""), "{text}");
    assert!(!w.state().join("vetted.toml").exists());
    // Copied elsewhere with its recipes, the repository stays vetted (the kept texts
    // are in the state dir, so a re-vet there has no diff to show, and says so).
    let copy = tempfile::tempdir().unwrap();
    for f in [
        "tend.toml",
        "approved.toml",
        "recipes/helper.rhai",
        "recipes/greet.rhai",
    ] {
        let to = copy.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(w.dir.path().join(f), to).unwrap();
    }
    let r = w
        .command()
        .current_dir(copy.path())
        .env("TEND_STATE_DIR", copy.path().join("state"))
        .args(["show", "recipes/greet.rhai", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["vetting"]["status"], "vetted", "{v}");
}
