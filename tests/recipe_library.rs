//! The recipe library: every `recipes/*.rhai` ships inside the binary, `tend recipes`
//! lists it, `tend show|check|run NAME` take it by name when no such file exists (a
//! file path wins), `tend recipes copy NAME DIR` writes it out and never over a file,
//! and a built-in recipe is not vetted in place.

mod support;

use std::path::PathBuf;

use support::World;

/// The recipes of the source tree's `recipes/` folder, by name: what the binary must
/// hold, whoever added them.
fn shipped() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rhai"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn first_doc_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap()
        .strip_prefix("//!")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn every_recipe_of_the_folder_is_listed_with_its_summary() {
    let w = World::new();
    let shipped = shipped();
    assert!(shipped.len() >= 3, "{shipped:?}");
    let human = w.tend(&["recipes"]);
    human.assert_code(0);
    let json = w.tend(&["recipes", "--json"]);
    json.assert_code(0);
    let lines: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), shipped.len(), "{}", json.stdout);
    for ((name, text), line) in shipped.iter().zip(&lines) {
        let summary = first_doc_line(text);
        assert!(!summary.is_empty(), "{name} has no //! summary line");
        assert_eq!(line["kind"], "builtin_recipe");
        assert_eq!(line["name"], name.as_str());
        assert_eq!(line["summary"], summary.as_str());
        assert!(line["hash"].as_str().unwrap().starts_with("sha256:"));
        let row = human
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not in:\n{}", human.stdout));
        assert!(row.ends_with(&summary), "{row}");
    }
}

/// `tend show NAME` is the recipe's manual: its header, every parameter documented,
/// its scope; and it says the recipe is the built-in one.
#[test]
fn show_and_check_take_a_builtin_recipe_by_name() {
    let w = World::new();
    for (name, text) in shipped() {
        let show = w.tend(&["show", &name, "--json"]);
        show.assert_code(0);
        let v: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
        assert_eq!(v["builtin"], true, "{v}");
        assert_eq!(v["path"], format!("built-in:{name}"));
        assert_eq!(v["recipe"], name.as_str());
        assert!(
            text.contains(v["description"].as_str().unwrap().lines().next().unwrap()),
            "{v}"
        );
        for p in v["params"].as_array().unwrap() {
            assert!(
                !p["doc"].as_str().unwrap_or_default().is_empty(),
                "{name}: parameter {} has no comment",
                p["name"]
            );
        }
        assert_eq!(v["vetting"]["vetted"], false, "{v}");
        let human = w.tend(&["show", &name]);
        human.assert_code(0);
        assert!(
            human.stderr.contains(&format!("built-in recipe {name}")),
            "{}",
            human.stderr
        );
        assert!(
            human.stdout.contains("not vetted in place"),
            "{}",
            human.stdout
        );
        let check = w.tend(&["check", &name, "--json"]);
        check.assert_code(0);
        assert!(
            check.stdout.contains("\"builtin\":true"),
            "{}",
            check.stdout
        );
    }
    // The recipes this library ships declare where they may write.
    for name in ["image-build", "vm-maintenance"] {
        let show = w.tend(&["show", name, "--json"]);
        let v: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
        assert!(
            !v["scope"].as_array().unwrap().is_empty(),
            "{name} declares no scope"
        );
    }
}

#[test]
fn run_takes_a_builtin_recipe_by_name() {
    let w = World::new();
    // The built-in log-rotate declares its scope (/var/log/**): its logs live there.
    let logs = std::path::PathBuf::from(format!("/var/log/tend-t-lib-{}", std::process::id()));
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(logs.clone());
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "x".repeat(2000)).unwrap();
    let files = format!("{}/*.log", logs.display());
    let r = w.tend(&[
        "run",
        "log-rotate",
        "--json",
        "-p",
        &format!("files={files}"),
        "-p",
        "min_size=1K",
        "-p",
        "compress=false",
        "-p",
        &format!("state={}/.state", logs.display()),
    ]);
    r.assert_code(0);
    assert!(
        r.stderr.contains("built-in recipe log-rotate"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(logs.join("app.log.1")).unwrap(),
        "x".repeat(2000)
    );
    // Recorded under its name, as unvetted.
    let start = r.event("run_start");
    assert_eq!(start["recipe"], "log-rotate", "{start}");
}

/// A file of that name, in the working directory, is what the user meant.
#[test]
fn a_file_path_wins_over_a_builtin_name() {
    let w = World::new();
    std::fs::write(
        w.dir.path().join("log-rotate"),
        "//! Mine, not the built-in one.\nlog::info(\"my own recipe\");\n",
    )
    .unwrap();
    let r = w.tend(&["run", "log-rotate"]);
    r.assert_code(0);
    assert!(r.stdout.contains("my own recipe"), "{}", r.stdout);
    assert!(!r.stderr.contains("built-in"), "{}", r.stderr);
    let show = w.tend(&["show", "log-rotate", "--json"]);
    let v: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
    assert_eq!(v["builtin"], false);
    assert_eq!(v["description"], "Mine, not the built-in one.");
    // A path that names no file and no built-in recipe: not found, saying both.
    let missing = w.tend(&["show", "no-such-recipe"]);
    missing.assert_code(66);
    assert!(
        missing.stderr.contains("no built-in recipe of that name"),
        "{}",
        missing.stderr
    );
    // A path (with a directory or an extension) is never taken for a name.
    w.tend(&["show", "./image-build"]).assert_code(66);
    w.tend(&["show", "image-build.rhai"]).assert_code(66);
}

#[test]
fn copy_writes_the_recipe_out_and_never_over_a_file() {
    let w = World::new();
    let dir = w.root().join("mine");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let r = w.tend(&["recipes", "copy", "image-build", d]);
    r.assert_code(0);
    let copy = dir.join("image-build.rhai");
    assert_eq!(r.stdout.trim(), copy.display().to_string());
    let shipped = shipped();
    let text = &shipped.iter().find(|(n, _)| n == "image-build").unwrap().1;
    assert_eq!(&std::fs::read_to_string(&copy).unwrap(), text);
    // The copy is a recipe like any other: its hash is the built-in one's.
    let a = w.tend(&["show", copy.to_str().unwrap(), "--json"]);
    let b = w.tend(&["show", "image-build", "--json"]);
    let hash = |r: &support::Run| {
        serde_json::from_str::<serde_json::Value>(r.stdout.trim()).unwrap()["hash"].clone()
    };
    assert_eq!(hash(&a), hash(&b));

    // Never over a file: an edited copy stays as it is.
    std::fs::write(&copy, "//! edited\n").unwrap();
    let again = w.tend(&["recipes", "copy", "image-build", d]);
    again.assert_code(73);
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "//! edited\n");
    // Nor through a link planted under that name.
    std::os::unix::fs::symlink(w.root().join("target"), dir.join("vm-maintenance.rhai")).unwrap();
    w.tend(&["recipes", "copy", "vm-maintenance", d])
        .assert_code(73);
    assert!(!w.root().join("target").exists());
    // A directory that is not there is not made.
    let gone = w.root().join("gone");
    w.tend(&["recipes", "copy", "log-rotate", gone.to_str().unwrap()])
        .assert_code(73);
    assert!(!gone.exists());
    // A name that is no built-in recipe.
    w.tend(&["recipes", "copy", "nope", d]).assert_code(66);
}

/// A built-in recipe is not vetted in place: `tend vet NAME` says to copy it out, and
/// the copy is vetted like any file.
#[test]
fn a_builtin_recipe_is_vetted_as_a_copy() {
    let w = World::new();
    let refused = w.tend(&["vet", "log-rotate", "--by", "alice"]);
    refused.assert_code(64);
    assert!(
        refused.stderr.contains("tend recipes copy log-rotate"),
        "{}",
        refused.stderr
    );
    let dir = w.root().display().to_string();
    w.tend(&["recipes", "copy", "log-rotate", &dir])
        .assert_code(0);
    let copy = w.root().join("log-rotate.rhai");
    w.tend(&["vet", copy.to_str().unwrap(), "--by", "alice"])
        .assert_code(0);
    let show = w.tend(&["show", copy.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
    assert_eq!(v["vetting"]["vetted"], true, "{v}");
    // The built-in one stays unvetted, though its text is the same.
    let show = w.tend(&["show", "log-rotate", "--json"]);
    let v: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
    assert_eq!(v["vetting"]["vetted"], false, "{v}");
}
