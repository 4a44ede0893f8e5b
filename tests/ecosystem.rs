//! tend next to the usual tools: shell completions checked by a real bash, man pages
//! rendered by groff and man, and `tend new`'s skeleton checked, shown and planned by
//! tend itself.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use support::World;

/// The subcommands `tend ARGS --help` lists (without `help`).
fn subcommands(w: &World, args: &[&str]) -> Vec<String> {
    let mut argv = args.to_vec();
    argv.push("--help");
    let r = w.tend(&argv);
    r.assert_code(0);
    r.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|n| n != "help")
        .collect()
}

/// Every man page `tend man` should write, from what `--help` lists at each level.
fn expected_pages(w: &World, path: &[String], pages: &mut BTreeSet<String>) {
    pages.insert(format!(
        "{}.1",
        ["tend".to_string()]
            .iter()
            .chain(path)
            .cloned()
            .collect::<Vec<_>>()
            .join("-")
    ));
    let args: Vec<&str> = path.iter().map(String::as_str).collect();
    for sub in subcommands(w, &args) {
        let mut p = path.to_vec();
        p.push(sub);
        expected_pages(w, &p, pages);
    }
}

/// What bash completes for the command line `words`, the last word being completed,
/// with the script `tend completions bash` printed, sourced into a real bash.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let line = words.join(" ");
    let prog = format!(
        "source '{}' || exit 9\n\
         COMP_WORDS=({}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
         _tend tend '{}' '{}' || exit 8\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words[cword],
        words[cword - 1],
    );
    let out = Command::new("bash").arg("-c").arg(&prog).output().unwrap();
    assert!(
        out.status.success(),
        "bash failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completion_is_valid_bash_and_completes_commands_and_flags() {
    let w = World::new();
    let r = w.tend(&["completions", "bash"]);
    r.assert_code(0);
    let script = w.dir.path().join("tend.bash");
    std::fs::write(&script, &r.stdout).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    assert!(
        r.stdout.contains("complete -F _tend"),
        "not registered for tend"
    );

    assert_eq!(bash_completes(&script, &["tend", "ro"]), ["rollback"]);
    let r_words: BTreeSet<String> = bash_completes(&script, &["tend", "r"])
        .into_iter()
        .collect();
    assert_eq!(
        r_words,
        ["recipes", "rollback", "run", "runs"]
            .map(String::from)
            .into()
    );
    assert_eq!(bash_completes(&script, &["tend", "ne"]), ["new"]);
    assert_eq!(
        bash_completes(&script, &["tend", "run", "--dry"]),
        ["--dry-run"]
    );
    let shells: BTreeSet<String> = bash_completes(&script, &["tend", "completions", ""])
        .into_iter()
        .filter(|s| !s.starts_with('-'))
        .collect();
    assert_eq!(
        shells,
        ["bash", "elvish", "fish", "powershell", "zsh"]
            .map(String::from)
            .into()
    );
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    let w = World::new();
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let r = w.tend(&["completions", shell]);
        r.assert_code(0);
        for word in ["rollback", "--dry-run", "completions"] {
            assert!(r.stdout.contains(word), "{shell} script lacks {word}");
        }
    }
    let r = w.tend(&["completions", "tcsh"]);
    r.assert_code(64);
    assert!(r.stderr.contains("possible values"), "{}", r.stderr);
}

#[test]
fn man_writes_one_page_per_command_that_groff_and_man_render_cleanly() {
    let w = World::new();
    let dir = w.dir.path().join("man/man1");
    let r = w.tend(&["man", "--dir", dir.to_str().unwrap()]);
    r.assert_code(0);

    let written: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected = BTreeSet::new();
    expected_pages(&w, &[], &mut expected);
    assert!(expected.contains("tend-audit-show.1"), "{expected:?}");
    assert!(expected.contains("tend-new.1"), "{expected:?}");
    assert_eq!(written, expected);
    // The files written are named on stdout, one a line.
    assert_eq!(r.stdout.lines().count(), expected.len(), "{}", r.stdout);

    for page in &written {
        let path = dir.join(page);
        // -ww: every warning; -k: preconv, as man runs it, so UTF-8 help text is fine.
        let groff = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .expect("groff (Debian: groff-base)");
        assert!(groff.status.success(), "groff failed on {page}");
        assert_eq!(
            String::from_utf8_lossy(&groff.stderr),
            "",
            "groff warns about {page}"
        );
        let man = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man (Debian: man-db)");
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(
            man.status.success(),
            "man -l {page}: {}",
            String::from_utf8_lossy(&man.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&man.stderr),
            "",
            "man -l warns about {page}"
        );
        let name = page.trim_end_matches(".1");
        // Justified text: compare with the spacing flattened.
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains("NAME"), "{page}:\n{text}");
        assert!(
            flat.contains(&format!("NAME {name} - ")),
            "{page} has no NAME line:\n{text}"
        );
    }
    let run = std::fs::read_to_string(dir.join("tend-run.1")).unwrap();
    assert!(run.contains("dry\\-run"), "tend-run.1 lacks --dry-run");
    // The global flags are on each subcommand's page too.
    assert!(run.contains("state\\-dir"), "tend-run.1 lacks --state-dir");
}

#[test]
fn new_writes_a_skeleton_that_checks_shows_and_plans() {
    let w = World::new();
    // A name of its own, since the skeleton works in /tmp/NAME: planned, never made.
    let name = format!("tend-skel-{}", std::process::id());
    let workdir = format!("/tmp/{name}");
    let r = w.tend(&["new", &name]);
    r.assert_code(0);
    let file = w.dir.path().join(format!("{name}.rhai"));
    assert_eq!(r.stdout.trim(), format!("{name}.rhai"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(&format!("//! {name}: ")), "{text}");
    assert!(
        text.contains(&format!("//! scope: {workdir}, {workdir}/**\n")),
        "{text}"
    );
    assert!(text.contains("params(#{"), "{text}");
    assert!(
        text.contains("tend show") && text.contains("tend vet"),
        "{text}"
    );

    let check = w.tend(&["check", file.to_str().unwrap()]);
    check.assert_code(0);
    assert!(check.stdout.contains("ok (1 parameter"), "{}", check.stdout);

    let show = w.tend(&["show", file.to_str().unwrap(), "--json"]);
    show.assert_code(0);
    let show: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
    assert_eq!(show["recipe"], name.as_str());
    assert_eq!(show["reversible"], true);
    assert_eq!(
        show["scope"],
        serde_json::json!([workdir.clone(), format!("{workdir}/**")])
    );
    assert_eq!(show["params"][0]["name"], "dir");
    assert!(
        show["description"].as_str().unwrap().contains("tend vet"),
        "{show}"
    );

    let plan = w.tend(&["run", file.to_str().unwrap(), "--dry-run", "--json"]);
    plan.assert_code(0);
    assert_eq!(plan.changed_paths(), BTreeSet::from([workdir.clone()]));
    assert!(!Path::new(&workdir).exists(), "a dry-run made {workdir}");

    // A directory in the name is where the file goes; `.rhai` is not doubled.
    std::fs::create_dir(w.dir.path().join("recipes")).unwrap();
    w.tend(&["new", "recipes/tidy.rhai"]).assert_code(0);
    assert!(w.dir.path().join("recipes/tidy.rhai").is_file());
    let check = w.tend(&["check", "recipes/tidy.rhai"]);
    check.assert_code(0);
}

#[test]
fn new_never_overwrites_and_refuses_bad_names() {
    let w = World::new();
    let file = w.dir.path().join("mine.rhai");
    std::fs::write(&file, "// my work\n").unwrap();
    let r = w.tend(&["new", "mine"]);
    r.assert_code(73);
    assert!(
        r.stderr
            .contains("cannot create mine.rhai: it exists already"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "// my work\n");

    // A symlink planted under the name is not followed, even one leading nowhere.
    let target = w.dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, w.dir.path().join("trap.rhai")).unwrap();
    w.tend(&["new", "trap"]).assert_code(73);
    assert!(!target.exists(), "tend new wrote through a symlink");

    for bad in ["bad name", "-x", "a/.hidden", "x;rm"] {
        let r = w.tend(&["new", "--", bad]);
        r.assert_code(64);
        assert!(r.stderr.contains("recipe name"), "{bad}: {}", r.stderr);
    }
    // A directory that does not exist is said so, not created.
    let r = w.tend(&["new", "nowhere/x"]);
    r.assert_code(73);
    assert!(
        r.stderr.contains("cannot create nowhere/x.rhai: "),
        "{}",
        r.stderr
    );
    assert!(!w.dir.path().join("nowhere").exists());
}
