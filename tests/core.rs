//! The core as a library, without the CLI: vetting is decided inside `app::run` from
//! the config and the actor's trigger, whatever the caller asks; and the one loader of
//! tend.toml refuses unknown tables and keys, naming file, line and key.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use support::World;
use tend::app::{self, RunRequest};
use tend::app::{Actor, Auth, Config, Trigger};
use tend::error::Error;
use tend::event::{Event, Sink};
use tend::recipe::Recipe;
use tend::state::StateDir;
use tend::store::Stores;
use tend::trust::{Sign, VetRequest};

const RECIPE: &str = r#"//! Write a greeting.
let p = params(#{ name: "greeting.txt" });
fs::file(`ROOT/${p.name}`, #{ content: "hello" });
"#;

fn scheduler() -> Actor {
    Actor::new(
        "tend-daemon",
        Auth::Other { how: "test".into() },
        Trigger::Schedule,
    )
}

/// The config beside the recipe (its trust file, vetted.toml, too).
fn config(w: &World, text: &str) -> Config {
    let path = w.dir.path().join("tend.toml");
    std::fs::write(&path, text).unwrap();
    Config::read(&path).unwrap()
}

/// A sink that keeps the events.
fn recording() -> (Sink, Arc<Mutex<Vec<Event>>>) {
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let keep = events.clone();
    (
        Arc::new(move |e: &Event| keep.lock().unwrap().push(e.clone())),
        events,
    )
}

fn vet(state: &StateDir, config: &Config, recipe: &Path) {
    let r = Recipe::load(recipe).unwrap();
    config
        .trust(state)
        .unwrap()
        .vet(
            &r,
            VetRequest {
                by: Some("alice"),
                note: None,
                sign: Sign::None,
            },
        )
        .unwrap();
}

/// Every request a caller could make: dry or not, `--unvetted` or not, and a trust
/// policy that lets a person run anything.
fn requests() -> Vec<RunRequest> {
    let mut out = Vec::new();
    for dry_run in [false, true] {
        for unvetted in [false, true] {
            let mut r = RunRequest::local(vec![], dry_run);
            r.unvetted = unvetted;
            out.push(r);
        }
    }
    out
}

fn run(
    state: &StateDir,
    config: &Config,
    actor: &Actor,
    recipe: &Path,
    req: &RunRequest,
) -> tend::error::Result<app::RunResult> {
    let (sink, _) = recording();
    app::run(
        &Stores::embedded(state),
        config,
        actor,
        &Recipe::load(recipe).unwrap(),
        req,
        sink,
    )
}

fn assert_unvetted(r: tend::error::Result<app::RunResult>, why: &str) {
    match r {
        Err(e @ Error::Unvetted(_)) => {
            assert_eq!(e.exit_code(), 77);
            assert!(e.to_string().contains(why), "{e}");
        }
        Err(e) => panic!("expected the vetting refusal, got {e}"),
        Ok(r) => panic!(
            "expected the vetting refusal, the run went ahead: {}",
            r.run_id
        ),
    }
}

#[test]
fn a_scheduled_run_of_an_unvetted_recipe_is_refused_whatever_the_caller_passes() {
    let w = World::new();
    let recipe: PathBuf = w.recipe_in_root("greet.rhai", RECIPE);
    // Its own host locks: the machine's would be shared with the other tests.
    let state = StateDir::open(&w.state())
        .unwrap()
        .with_lock_dir(&w.locks())
        .unwrap();
    let greeting = w.root().join("greeting.txt");

    // Even with a policy under which a person may run anything, and with every flag.
    for policy in ["scheduled", "flag", "always"] {
        let config = config(&w, &format!("[trust]\nrequire_vetted = \"{policy}\"\n"));
        for req in requests() {
            assert_unvetted(
                run(&state, &config, &scheduler(), &recipe, &req),
                "not vetted",
            );
        }
    }
    assert!(!greeting.exists(), "a refused run changed nothing");
    assert!(
        state.list_runs().unwrap().is_empty(),
        "a refused run is no run"
    );

    // tend's own ad-hoc command recipe is no vetted recipe either.
    let config = config(&w, "");
    let exec = app::exec_recipe().unwrap();
    let mut req = RunRequest::local(vec![("command".into(), "true".into())], false);
    req.unvetted = true;
    let (sink, _) = recording();
    assert_unvetted(
        app::run(
            &Stores::embedded(&state),
            &config,
            &scheduler(),
            &exec,
            &req,
            sink,
        ),
        "ad-hoc",
    );

    // A person at the command line, same recipe: the default policy lets it run,
    // recorded unvetted, with a note.
    let person = Actor::new("bob", Auth::Other { how: "test".into() }, Trigger::Cli);
    let r = run(
        &state,
        &config,
        &person,
        &recipe,
        &RunRequest::local(vec![], false),
    )
    .unwrap();
    assert!(!r.vetting.vetted);
    assert!(r.vetting.unvetted_note.is_some());
    std::fs::remove_file(&greeting).unwrap();
}

#[test]
fn a_vetted_recipe_runs_on_schedule_and_an_edit_stops_it() {
    let w = World::new();
    let recipe = w.recipe_in_root("greet.rhai", RECIPE);
    // Its own host locks: the machine's would be shared with the other tests.
    let state = StateDir::open(&w.state())
        .unwrap()
        .with_lock_dir(&w.locks())
        .unwrap();
    let config = config(&w, "[trust]\nrequire_vetted = \"scheduled\"\n");
    vet(&state, &config, &recipe);

    let (sink, events) = recording();
    let r = app::run(
        &Stores::embedded(&state),
        &config,
        &scheduler(),
        &Recipe::load(&recipe).unwrap(),
        &RunRequest::local(vec![], false),
        sink,
    )
    .unwrap();
    assert_eq!(r.outcome, app::Outcome::Ok);
    assert!(r.vetting.vetted);
    assert_eq!(
        std::fs::read_to_string(w.root().join("greeting.txt")).unwrap(),
        "hello"
    );
    let start = events.lock().unwrap().iter().find_map(|e| match e {
        Event::RunStart { vetted, .. } => Some(*vetted),
        _ => None,
    });
    assert_eq!(start, Some(true));
    // The audit log records the actor given, not the process's $USER.
    let audit = std::fs::read_to_string(w.state().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"user\":\"tend-daemon\""), "{audit}");

    // One byte edited: no longer what was vetted, so the schedule stops running it.
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("hello", "hellO")).unwrap();
    for req in requests() {
        assert_unvetted(
            run(&state, &config, &scheduler(), &recipe, &req),
            "edited since vetted",
        );
    }
    assert_eq!(
        std::fs::read_to_string(w.root().join("greeting.txt")).unwrap(),
        "hello"
    );
}

/// `tend` with `tend.toml` = `text`: exit 64 and one message naming file, line, key
/// and the suggestion.
fn refused(text: &str, wants: &[&str]) {
    let w = World::new();
    w.beside("tend.toml", text);
    let recipe = w.recipe_in_root("greet.rhai", RECIPE);
    for args in [
        vec!["run", recipe.to_str().unwrap(), "--dry-run"],
        vec!["hosts"],
    ] {
        let r = w.tend(&args);
        r.assert_code(64);
        for want in wants {
            assert!(
                r.stderr.contains(want),
                "{args:?}: {want:?} not in {}",
                r.stderr
            );
        }
    }
}

#[test]
fn unknown_tables_and_keys_in_tend_toml_are_errors_naming_file_line_and_key() {
    refused(
        "[hosts.web2]\naddress = \"127.0.0.1\"\n\n[hots.web1]\naddress = \"10.0.0.5\"\n",
        &[
            "tend.toml:4",
            "unknown table `hots`",
            "did you mean `hosts`",
        ],
    );
    refused(
        "[hosts.web1]\nport = 2222\nadress = \"10.0.0.5\"\n",
        &[
            "tend.toml:3",
            "unknown key `adress` in [hosts.web1]",
            "did you mean `address`",
        ],
    );
    refused(
        "[trust]\nrequire_veted = \"always\"\n",
        &[
            "tend.toml:2",
            "unknown key `require_veted` in [trust]",
            "did you mean `require_vetted`",
        ],
    );
    refused(
        "[groups.web]\nhots = [\"a\"]\n",
        &[
            "tend.toml:2",
            "unknown key `hots` in [groups.web]",
            "did you mean `hosts`",
        ],
    );
    refused(
        "[audit]\nanchor_comand = \"logger\"\n",
        &["tend.toml:2", "did you mean `anchor_command`"],
    );

    // Variables that are no near miss still are variables.
    let w = World::new();
    w.beside(
        "tend.toml",
        "[hosts.web1]\naddress = \"10.0.0.5\"\ntier = \"front\"\n",
    );
    let r = w.tend(&["hosts", "--json"]);
    r.assert_code(0);
    assert!(r.stdout.contains("\"tier\":\"front\""), "{}", r.stdout);
}

#[test]
fn a_library_caller_supplies_secrets_and_the_run_never_prompts() {
    let w = World::new();
    let recipe = w.recipe_in_root(
        "token.rhai",
        "//! Store a token.\nlet p = params(#{ token: secret() });\nfs::file(`ROOT/token`, #{ content: p.token, mode: 0o600 });\n",
    );
    let state = StateDir::open(&w.state())
        .unwrap()
        .with_lock_dir(&w.locks())
        .unwrap();
    let config = config(&w, "");
    let person = Actor::new("bob", Auth::Other { how: "test".into() }, Trigger::Api);
    // Not given and not supplied: a parameter error, not a read from a terminal.
    let missing = run(
        &state,
        &config,
        &person,
        &recipe,
        &RunRequest::local(vec![], false),
    );
    match missing {
        Err(e @ Error::Param(_)) => assert!(e.to_string().contains("token"), "{e}"),
        Err(e) => panic!("expected a parameter error, got {e}"),
        Ok(_) => panic!("ran without its secret"),
    }
    let mut req = RunRequest::local(vec![], false);
    req.secrets.insert(
        "token".into(),
        tend::secret::Secret::entered("token", "s3cr3t-value".into()).unwrap(),
    );
    let (sink, events) = recording();
    let r = app::run(
        &Stores::embedded(&state),
        &config,
        &person,
        &Recipe::load(&recipe).unwrap(),
        &req,
        sink,
    )
    .unwrap();
    assert_eq!(r.outcome, app::Outcome::Ok, "{:?}", r.error());
    assert_eq!(
        std::fs::read_to_string(w.root().join("token")).unwrap(),
        "s3cr3t-value"
    );
    // Supplied secrets are scrubbed like given ones.
    let shown = format!("{:?}", events.lock().unwrap());
    assert!(!shown.contains("s3cr3t-value"), "{shown}");
    let audit = std::fs::read_to_string(w.state().join("audit.jsonl")).unwrap();
    assert!(!audit.contains("s3cr3t-value"));
}
