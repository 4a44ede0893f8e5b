//! The mailbox-cleanup recipe (recipes/mailbox-cleanup.rhai, steps in
//! stdlib/mailbox.rhai) against a real Dovecot: each test starts a private
//! `dovecot -c CONF` (base_dir, state and Maildir store in a temp dir, users from a
//! passwd-file userdb, no listeners) and delivers messages with `doveadm save`.
//!
//! The Dovecot harness is tests/support/dovecot.rs.

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dovecot::{Dovecot, Msg};
use sshd::Sshd;
use support::{Run, World};

fn recipe() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes/mailbox-cleanup.rhai")
}

const USERS: &[&str] = &["alice", "bob"];

/// alice: three old messages in Trash (with flags and a keyword), a new one in Trash,
/// an old one in Junk, and old ones in INBOX and Archive (folders not given); bob:
/// two old in Junk, one new in Junk.
fn deliver(dv: &Dovecot) {
    dv.save("alice", "Trash", "t-old-1", "\\Seen $Work", true);
    dv.save("alice", "Trash", "t-old-2", "\\Seen \\Flagged", true);
    dv.save("alice", "Trash", "t-old-3", "", true);
    dv.save("alice", "Trash", "t-new", "\\Seen", false);
    dv.save("alice", "Junk", "j-old-a", "$Junk", true);
    dv.save("alice", "INBOX", "inbox-old", "", true);
    dv.save("alice", "Archive", "archive-old", "\\Seen", true);
    dv.save("bob", "Junk", "j-old-b1", "\\Seen", true);
    dv.save("bob", "Junk", "j-old-b2", "\\Answered $Label1", true);
    dv.save("bob", "Junk", "j-new-b", "", false);
}

/// The subjects of old messages in Trash and Junk: what a cleanup must hold.
const OLD_IN_GIVEN: &[&str] = &[
    "t-old-1", "t-old-2", "t-old-3", "j-old-a", "j-old-b1", "j-old-b2",
];

/// `tend run mailbox-cleanup --json -p doveadm_config=CONF -p k=v… --flag…`
fn cleanup(w: &World, recipe: &Path, dv: &Dovecot, params: &[&str]) -> Run {
    let mut args = vec!["-p".to_string(), format!("doveadm_config={}", dv.conf)];
    for p in params {
        // `--dry-run` and other flags as they are, the rest as parameters.
        if !p.starts_with("--") {
            args.push("-p".into());
        }
        args.push(p.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(recipe, &args)
}

/// The `log` events' messages of a run.
fn logs(r: &Run, level: &str) -> Vec<String> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "log" && e["level"] == level)
        .filter_map(|e| e["message"].as_str().map(String::from))
        .collect()
}

/// (user, folder, guid) of each `hold:` line: the messages the run says it moves.
fn holds(r: &Run) -> BTreeSet<(String, String, String)> {
    logs(r, "info")
        .iter()
        .filter_map(|m| m.strip_prefix("hold: "))
        .map(|m| {
            let w: Vec<&str> = m.split(' ').collect();
            let guid = m.split(" guid ").nth(1).unwrap().split(' ').next().unwrap();
            (w[0].to_string(), w[1].to_string(), guid.to_string())
        })
        .collect()
}

/// The holding folder of a run, from its summary line.
fn holding_of(r: &Run) -> String {
    logs(r, "info")
        .iter()
        .find_map(|m| {
            m.strip_prefix("moved ").map(|s| {
                s.split(" to ")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .to_string()
            })
        })
        .unwrap_or_else(|| panic!("no summary in {}", r.stdout))
}

/// A copy of the recipe beside the world with `throw` appended: a failure after
/// every move (and the quota report) happened.
fn failing_copy(w: &World) -> PathBuf {
    let text = std::fs::read_to_string(recipe()).unwrap();
    w.recipe(
        "mailbox-cleanup-fails.rhai",
        &format!("{text}\nthrow \"injected failure after the move\";\n"),
    )
}

/// (3) a failure after the move (a `throw` appended to the recipe) puts every
/// message back in its folder with its flags and keywords, and removes the holding
/// folders. (Dovecot gives a message moved back a new save date: this store is
/// not reused for the other checks.)
fn failure_after_the_move_rolls_back(w: &World, dv: &Dovecot) {
    deliver(dv);
    let before = dv.store(USERS);
    let failed = cleanup(w, &failing_copy(w), dv, &[]);
    failed.assert_code(3);
    assert!(
        failed.stdout.contains("injected failure after the move"),
        "{}",
        failed.stdout
    );
    assert_eq!(
        holds(&failed).len(),
        OLD_IN_GIVEN.len(),
        "{}",
        failed.stdout
    );
    assert_eq!(
        dv.store(USERS),
        before,
        "rollback after the failure: {}",
        failed.stdout
    );
    for u in USERS {
        assert!(
            !dv.mailboxes(u)
                .iter()
                .any(|m| m.starts_with("tend-holding")),
            "{:?}",
            dv.mailboxes(u)
        );
    }
}

/// (1) the dry-run lists exactly what the run then moves, and changes nothing;
/// (2) a second run changes nothing; `tend rollback` of the run later puts every
/// message back with its flags.
fn plan_run_again_and_roll_back(w: &World, dv: &Dovecot) {
    deliver(dv);
    let before = dv.store(USERS);

    // (1) dry-run = run.
    let plan = cleanup(w, &recipe(), dv, &["--dry-run"]);
    plan.assert_code(0);
    assert_eq!(dv.store(USERS), before, "a dry-run changed the store");
    let planned = holds(&plan);
    let expected: BTreeSet<(String, String, String)> = before
        .iter()
        .filter(|m| OLD_IN_GIVEN.contains(&m.subject.as_str()))
        .map(|m| (m.user.clone(), m.mailbox.clone(), m.guid.clone()))
        .collect();
    assert_eq!(planned, expected, "{}", plan.stdout);
    // The quota report: before, and the plan's after (t-new: 46 bytes is left).
    let quota = logs(&plan, "info");
    for line in [
        "quota before: alice Trash: 4 messages, 196 bytes",
        "quota before: alice total: 7 messages, 358 bytes",
        "quota after (planned): alice Trash: 1 messages, 46 bytes",
        "quota after (planned): alice total: 7 messages, 358 bytes",
        "quota after (planned): bob Junk: 1 messages, 50 bytes",
    ] {
        assert!(quota.iter().any(|l| l == line), "{line:?} not in {quota:?}");
    }

    let run = cleanup(w, &recipe(), dv, &[]);
    run.assert_code(0);
    assert_eq!(
        holds(&run),
        planned,
        "the run moved other messages than planned"
    );
    let hold = holding_of(&run);
    let after = dv.store(USERS);
    // Exactly the planned messages moved, each to HOLD/<its folder>, flags kept;
    // nothing else changed (INBOX and Archive untouched).
    let mut want = BTreeSet::new();
    for m in &before {
        let mut m = m.clone();
        if OLD_IN_GIVEN.contains(&m.subject.as_str()) {
            m.mailbox = format!("{hold}/{}", m.mailbox);
        }
        want.insert(m);
    }
    assert_eq!(after, want, "{}", run.stdout);
    let quota = logs(&run, "info");
    for line in [
        "quota after: alice Trash: 1 messages, 46 bytes",
        "quota after: bob Junk: 1 messages, 50 bytes",
    ] {
        assert!(quota.iter().any(|l| l == line), "{line:?} not in {quota:?}");
    }

    // (2) nothing left to do.
    let again = cleanup(w, &recipe(), dv, &[]);
    again.assert_code(0);
    assert!(holds(&again).is_empty(), "{}", again.stdout);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);
    assert_eq!(dv.store(USERS), after);

    // A rollback by hand, later: every message back where it was, with its flags.
    let rb = w.tend(&["rollback", &run.run_id(), "--json"]);
    rb.assert_code(0);
    assert_eq!(dv.store(USERS), before, "{}", rb.stdout);
    for u in USERS {
        assert!(
            !dv.mailboxes(u)
                .iter()
                .any(|m| m.starts_with("tend-holding")),
            "{:?}",
            dv.mailboxes(u)
        );
    }
}

#[test]
fn dry_run_equals_run_second_run_idle_failure_and_rollback_restore_flags() {
    plan_run_again_and_roll_back(&World::new(), &Dovecot::start(USERS));
    failure_after_the_move_rolls_back(&World::new(), &Dovecot::start(USERS));
}

#[test]
fn the_same_over_ssh() {
    let dv = Dovecot::start(USERS);
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    plan_run_again_and_roll_back(&w, &dv);
    failure_after_the_move_rolls_back(&w, &Dovecot::start(USERS));
}

/// (5) `tend show` is the manual: every parameter documented, the scope, and the
/// step a rollback cannot undo (the purge) named.
#[test]
fn show_documents_every_parameter() {
    let w = World::new();
    let r = w.tend(&["show", recipe().to_str().unwrap(), "--json"]);
    r.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = v["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let doc = p["doc"].as_str().unwrap_or("");
            assert!(
                doc.len() > 15,
                "parameter {} has no real doc: {doc:?}",
                p["name"]
            );
            p["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "engine",
            "users",
            "folders",
            "days",
            "purge_after",
            "holding",
            "allow_inbox",
            "quota_warn",
            "doveadm_config",
            "maildir_root",
            "maildir_sub"
        ]
    );
    let desc = v["description"].as_str().unwrap();
    for what in [
        "not reversible",
        "INBOX",
        "savedbefore",
        "flags",
        "Maildir",
        "doveadm writes the mail",
    ] {
        assert!(desc.contains(what), "{what:?} not in the description");
    }
    assert_eq!(
        v["scope"],
        serde_json::json!(["/var/vmail/**", "/home/*/Maildir/**"])
    );
    let irreversible = v["irreversible_steps"].to_string();
    assert!(
        irreversible.contains("expunge") && irreversible.contains("backup: false"),
        "{irreversible}"
    );
}

/// INBOX is refused before anything runs (also as a prefix of a subfolder), unless
/// `allow_inbox`; folders not given are never touched; a store over `quota_warn`
/// draws a warning.
#[test]
fn inbox_refused_unless_allowed_other_folders_untouched_quota_warning() {
    let dv = Dovecot::start(USERS);
    let w = World::new();
    deliver(&dv);
    let before = dv.store(USERS);
    for folders in ["folders=Trash,INBOX", "folders=inbox/sub"] {
        let r = cleanup(&w, &recipe(), &dv, &[folders]);
        r.assert_code(1);
        assert!(
            r.stdout.contains("is the INBOX: refused") && r.stdout.contains("allow_inbox=true"),
            "{}",
            r.stdout
        );
        assert!(holds(&r).is_empty());
        assert_eq!(dv.store(USERS), before);
    }
    // A holding folder is not a folder to clean either.
    let r = cleanup(&w, &recipe(), &dv, &["folders=tend-holding/x"]);
    r.assert_code(1);
    assert!(r.stdout.contains("is a holding folder"), "{}", r.stdout);

    let r = cleanup(
        &w,
        &recipe(),
        &dv,
        &[
            "folders=INBOX",
            "allow_inbox=true",
            "users=alice",
            "quota_warn=300B",
        ],
    );
    r.assert_code(0);
    let hold = holding_of(&r);
    let moved: Vec<Msg> = dv.store(USERS).difference(&before).cloned().collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        (moved[0].subject.as_str(), moved[0].mailbox.clone()),
        ("inbox-old", format!("{hold}/INBOX"))
    );
    assert_eq!(
        logs(&r, "warn"),
        ["quota: alice holds 358 bytes, over quota_warn (300 bytes)"],
        "{}",
        r.stdout
    );
}

/// Holdings of earlier runs older than `purge_after` days are expunged, last, by a
/// step the plan marks irreversible and the log announces; younger holdings and
/// everything else stay; a rollback of that run says it could not undo it.
#[test]
fn purge_of_old_holdings_is_announced_and_irreversible() {
    let dv = Dovecot::start(USERS);
    let w = World::new();
    dv.save(
        "alice",
        "tend-holding/20200101-000000/Trash",
        "held-long-ago",
        "\\Seen",
        true,
    );
    dv.save(
        "alice",
        "tend-holding/29991231-000000/Junk",
        "held-recently",
        "",
        false,
    );
    dv.save("alice", "Trash", "t-new", "", false);
    let before = dv.store(USERS);

    let never = cleanup(&w, &recipe(), &dv, &["purge_after=-1"]);
    never.assert_code(0);
    assert_eq!(never.changed_count(), 0, "{}", never.stdout);
    assert_eq!(dv.store(USERS), before);

    let plan = cleanup(&w, &recipe(), &dv, &["--dry-run"]);
    plan.assert_code(0);
    let warning = "not reversible: expunging tend-holding/20200101-000000/Trash of alice (1 messages, 62 bytes), older than 7 days";
    assert_eq!(logs(&plan, "warn"), [warning], "{}", plan.stdout);
    let purge_step = plan
        .events()
        .into_iter()
        .find(|e| e["event"] == "step" && e["subject"].as_str().unwrap_or("").contains(" expunge "))
        .unwrap_or_else(|| panic!("no purge step in {}", plan.stdout));
    assert_eq!(purge_step["reversible"], false, "{purge_step}");
    assert_eq!(purge_step["unknown"], true, "{purge_step}");
    assert_eq!(dv.store(USERS), before, "a dry-run purged");

    let run = cleanup(&w, &recipe(), &dv, &[]);
    run.assert_code(0);
    assert_eq!(logs(&run, "warn"), [warning], "{}", run.stdout);
    let after = dv.store(USERS);
    let gone: Vec<&str> = before
        .difference(&after)
        .map(|m| m.subject.as_str())
        .collect();
    assert_eq!(gone, ["held-long-ago"]);
    assert!(after.is_subset(&before));
    assert!(!dv
        .mailboxes("alice")
        .contains(&"tend-holding/20200101-000000/Trash".to_string()));

    let rb = w.tend(&["rollback", &run.run_id(), "--json"]);
    // Exit 4: a change rollback could not undo, named.
    rb.assert_code(4);
    assert!(
        rb.stdout
            .contains("expunge -u 'alice' mailbox 'tend-holding/20200101-000000/Trash'"),
        "{}",
        rb.stdout
    );
    assert_eq!(dv.store(USERS), after);
}

// ---------------------------------------------------------------- plain Maildir

/// The recipe with its scope narrowed to this world's root (everything else as
/// shipped), and optionally the injected failure.
fn maildir_copy(w: &World, fail: bool) -> PathBuf {
    let text = std::fs::read_to_string(recipe()).unwrap();
    let shipped = "//! scope: /var/vmail/**, /home/*/Maildir/**";
    assert!(text.contains(shipped));
    let text = text.replace(
        shipped,
        &format!("//! scope: {}/vmail/**", w.root().display()),
    );
    let tail = if fail {
        "\nthrow \"injected failure after the move\";\n"
    } else {
        ""
    };
    w.recipe(
        if fail {
            "maildir-fails.rhai"
        } else {
            "maildir.rhai"
        },
        &format!("{text}{tail}"),
    )
}

/// Two users' Maildir++ trees without Dovecot: old and new messages (the name's
/// leading epoch), one without an epoch, folders not given, an old holding.
fn maildir_tree(w: &World) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for user in ["alice", "bob"] {
        for sub in ["cur", "new", "tmp"] {
            w.mkdir(&format!("vmail/{user}/Maildir/{sub}"), 0o700);
        }
    }
    let a = "vmail/alice/Maildir";
    w.write_mode(
        &format!("{a}/cur/1600000000.M1P1.host:2,S"),
        "inbox old\n",
        0o600,
    );
    for folder in [".Trash", ".Junk", ".Sent"] {
        for sub in ["cur", "new", "tmp"] {
            w.mkdir(&format!("{a}/{folder}/{sub}"), 0o700);
        }
        w.write(&format!("{a}/{folder}/maildirfolder"), "");
    }
    w.write_mode(
        &format!("{a}/.Trash/cur/1600000001.M2P2.host:2,ST"),
        "trash old 1\n",
        0o600,
    );
    w.write_mode(
        &format!("{a}/.Trash/new/1600000002.M3P3.host"),
        "trash old 2\n",
        0o600,
    );
    w.write_mode(
        &format!("{a}/.Trash/cur/{now}.M4P4.host:2,S"),
        "trash new\n",
        0o600,
    );
    w.write_mode(
        &format!("{a}/.Trash/cur/no-epoch:2,S"),
        "trash, age unknown\n",
        0o600,
    );
    w.write_mode(
        &format!("{a}/.Junk/cur/1600000003.M5P5.host:2,"),
        "junk old\n",
        0o600,
    );
    w.write_mode(
        &format!("{a}/.Sent/cur/1600000004.M6P6.host:2,S"),
        "sent old\n",
        0o600,
    );
    let b = "vmail/bob/Maildir";
    w.mkdir(&format!("{b}/.Junk/cur"), 0o700);
    w.write_mode(
        &format!("{b}/.Junk/cur/1600000005.M7P7.host:2,F"),
        "bob junk old\n",
        0o600,
    );
}

/// What the run must have moved: (user, folder dir, sub/file).
const MAILDIR_OLD: &[(&str, &str, &str)] = &[
    ("alice", ".Trash", "cur/1600000001.M2P2.host:2,ST"),
    ("alice", ".Trash", "new/1600000002.M3P3.host"),
    ("alice", ".Junk", "cur/1600000003.M5P5.host:2,"),
    ("bob", ".Junk", "cur/1600000005.M7P7.host:2,F"),
];

fn maildir_run(w: &World, recipe: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "-p".to_string(),
        "engine=maildir".to_string(),
        "-p".to_string(),
        format!("maildir_root={}", w.path("vmail")),
    ];
    for p in extra {
        if !p.starts_with("--") {
            args.push("-p".into());
        }
        args.push(p.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(recipe, &args)
}

/// (1)-(3) for the Maildir engine: plan = run (paths), the old messages renamed
/// into the run's holding folder with their names (flags), a second run idle, an
/// injected failure and `tend rollback` leave the tree byte for byte as it was;
/// then an old holding is purged, announced and marked irreversible.
fn maildir_scenario(w: &World) {
    maildir_tree(w);
    w.hand_over();
    let before = w.snapshot();

    let failed = maildir_run(w, &maildir_copy(w, true), &["purge_after=-1"]);
    failed.assert_code(3);
    let held = logs(&failed, "info")
        .into_iter()
        .filter(|l| l.starts_with("hold: "))
        .count();
    assert_eq!(held, MAILDIR_OLD.len(), "{}", failed.stdout);
    support::assert_same(&before, &w.snapshot());

    let recipe = maildir_copy(w, false);
    let plan = maildir_run(w, &recipe, &["purge_after=-1", "--dry-run"]);
    plan.assert_code(0);
    support::assert_same(&before, &w.snapshot());
    let run = maildir_run(w, &recipe, &["purge_after=-1"]);
    run.assert_code(0);
    // The holding folder is named by the time its run started: the plan's and the
    // run's names differ in that stamp, and in nothing else.
    let unstamped = |r: &Run, items: Vec<String>| -> Vec<String> {
        let stamp = holding_of(r)
            .trim_start_matches("tend-holding/")
            .to_string();
        items
            .into_iter()
            .map(|i| i.replace(&stamp, "STAMP"))
            .collect()
    };
    assert_eq!(
        unstamped(&plan, plan.changed_paths().into_iter().collect()),
        unstamped(&run, run.changed_paths().into_iter().collect()),
        "plan != run"
    );
    let hold_lines = |r: &Run| -> Vec<String> {
        unstamped(
            r,
            logs(r, "info")
                .into_iter()
                .filter(|l| l.starts_with("hold: "))
                .collect(),
        )
    };
    assert_eq!(hold_lines(&plan), hold_lines(&run));
    assert_eq!(hold_lines(&run).len(), MAILDIR_OLD.len(), "{}", run.stdout);
    let after = w.snapshot();
    let changed = support::diff(&before, &after);
    assert!(
        changed.iter().all(|p| run.changed_paths().contains(p)),
        "{changed:#?}"
    );
    let stamp = holding_of(&run)
        .trim_start_matches("tend-holding/")
        .to_string();
    for (user, folder, file) in MAILDIR_OLD {
        let from = w
            .root()
            .join(format!("vmail/{user}/Maildir/{folder}/{file}"));
        let to = w.root().join(format!(
            "vmail/{user}/Maildir/.tend-holding.{stamp}{folder}/{file}"
        ));
        assert!(
            !from.exists() && to.exists(),
            "{} not moved to {}",
            from.display(),
            to.display()
        );
    }
    assert!(w
        .root()
        .join("vmail/alice/Maildir/.Sent/cur/1600000004.M6P6.host:2,S")
        .exists());
    assert!(w
        .root()
        .join("vmail/alice/Maildir/cur/1600000000.M1P1.host:2,S")
        .exists());
    assert!(w
        .root()
        .join("vmail/alice/Maildir/.Trash/cur/no-epoch:2,S")
        .exists());

    let again = maildir_run(w, &recipe, &["purge_after=-1"]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);
    support::assert_same(&after, &w.snapshot());

    w.tend(&["rollback", &run.run_id(), "--json"])
        .assert_code(0);
    support::assert_same(&before, &w.snapshot());

    // Purge: an old holding goes, announced, marked irreversible in the plan.
    let old = "vmail/bob/Maildir/.tend-holding.20200101-000000.Junk";
    w.mkdir(&format!("{old}/cur"), 0o700);
    w.write_mode(
        &format!("{old}/cur/1500000000.M9P9.host:2,S"),
        "held long ago\n",
        0o600,
    );
    w.hand_over();
    let plan = maildir_run(w, &recipe, &["users=bob", "days=100000", "--dry-run"]);
    plan.assert_code(0);
    let step = plan
        .events()
        .into_iter()
        .find(|e| e["event"] == "step" && e["op"] == "fs::remove")
        .unwrap_or_else(|| panic!("no remove in {}", plan.stdout));
    assert_eq!(step["reversible"], false, "{step}");
    assert_eq!(logs(&plan, "warn").len(), 1, "{}", plan.stdout);
    assert!(
        logs(&plan, "warn")[0].starts_with("not reversible: deleting "),
        "{}",
        plan.stdout
    );
    let run = maildir_run(w, &recipe, &["users=bob", "days=100000"]);
    run.assert_code(0);
    assert_eq!(plan.changed_paths(), run.changed_paths());
    let purged = [
        old.to_string(),
        format!("{old}/cur"),
        format!("{old}/cur/1500000000.M9P9.host:2,S"),
    ];
    assert_eq!(
        plan.changed_paths(),
        purged.iter().map(|p| w.path(p)).collect::<BTreeSet<_>>()
    );
    assert!(!w.root().join(old).exists());
    support::assert_same(&before, &w.snapshot());
}

#[test]
fn maildir_engine_on_a_plain_maildir_tree() {
    maildir_scenario(&World::new());
}

#[test]
fn maildir_engine_over_ssh() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    maildir_scenario(&w);
}
