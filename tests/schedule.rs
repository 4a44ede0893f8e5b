//! `tend schedule check|list|next` through the real binary (issue 16, must-show 3).
//!
//! Every expected fire below was written out by hand from the tz database's rules for
//! 2027 (not computed by tend or by the library it uses):
//! - Europe/Paris: 28 March 02:00 CET → 03:00 CEST; 31 October 03:00 CEST → 02:00 CET.
//! - America/New_York: 14 March 02:00 EST → 03:00 EDT; 7 November 02:00 EDT → 01:00 EST.
//! - Australia/Sydney: 4 April 03:00 AEDT → 02:00 AEST; 3 October 02:00 AEST → 03:00 AEDT.
//! - Australia/Lord_Howe (30-minute shift): 4 April 02:00 +11:00 → 01:30 +10:30;
//!   3 October 02:00 +10:30 → 02:30 +11:00.
//!
//! The rules are cron(8)'s (`man 8 cron`, "Special considerations"; cronie's cron.c):
//! a fixed-time job due in a skipped hour runs right after the change, one due in a
//! repeated hour runs once; a wildcard job follows the wall clock.

mod support;

use support::{Run, World};

/// A world whose tend.toml has one entry per `(name, cron, zone)`, all running a
/// small vetted-or-not recipe `r.rhai` on this machine.
fn world(entries: &[(&str, &str, &str)]) -> World {
    let w = World::new();
    w.recipe("r.rhai", "//! Does nothing.\nlet p = params(#{});\n");
    let mut toml = String::new();
    for (name, cron, zone) in entries {
        toml.push_str(&format!(
            "[[schedule]]\nname = \"{name}\"\ncron = \"{cron}\"\ntimezone = \"{zone}\"\nrecipe = \"r.rhai\"\n\n"
        ));
    }
    std::fs::write(w.dir.path().join("tend.toml"), toml).unwrap();
    w
}

fn next(w: &World, name: &str, count: &str, after: &str) -> Vec<String> {
    let r = w.tend(&["schedule", "next", name, "--count", count, "--after", after]);
    r.assert_code(0);
    r.stdout.lines().map(String::from).collect()
}

fn one(cron: &str, zone: &str, count: &str, after: &str) -> Vec<String> {
    next(&world(&[("job", cron, zone)]), "job", count, after)
}

fn lines(fires: &[&str]) -> Vec<String> {
    fires.iter().map(|f| format!("{f} job")).collect()
}

#[test]
fn paris_daily_0230_once_each_day_across_both_changes() {
    assert_eq!(
        one("30 2 * * *", "Europe/Paris", "4", "2027-03-26T12:00:00"),
        lines(&[
            "2027-03-27 02:30:00+01:00",
            "2027-03-28 03:00:00+02:00", // 02:30 does not exist: right after the change
            "2027-03-29 02:30:00+02:00",
            "2027-03-30 02:30:00+02:00",
        ])
    );
    assert_eq!(
        one("30 2 * * *", "Europe/Paris", "3", "2027-10-30T12:00:00"),
        lines(&[
            "2027-10-31 02:30:00+02:00", // 02:30 happens twice: the first time only
            "2027-11-01 02:30:00+01:00",
            "2027-11-02 02:30:00+01:00",
        ])
    );
}

#[test]
fn new_york_daily_0230_and_0130_across_both_changes() {
    assert_eq!(
        one("30 2 * * *", "America/New_York", "3", "2027-03-13T12:00:00"),
        lines(&[
            "2027-03-14 03:00:00-04:00",
            "2027-03-15 02:30:00-04:00",
            "2027-03-16 02:30:00-04:00",
        ])
    );
    // In New York the repeated hour is 01:00-01:59; 02:30 exists once that day.
    assert_eq!(
        one("30 2 * * *", "America/New_York", "2", "2027-11-06T12:00:00"),
        lines(&["2027-11-07 02:30:00-05:00", "2027-11-08 02:30:00-05:00"])
    );
    assert_eq!(
        one("30 1 * * *", "America/New_York", "2", "2027-11-06T12:00:00"),
        lines(&["2027-11-07 01:30:00-04:00", "2027-11-08 01:30:00-05:00"])
    );
}

#[test]
fn wildcard_job_through_the_gap_and_the_repeated_hour() {
    assert_eq!(
        one("*/20 * * * *", "Europe/Paris", "4", "2027-03-28T01:30:00"),
        lines(&[
            "2027-03-28 01:40:00+01:00",
            "2027-03-28 03:00:00+02:00", // 02:00, 02:20, 02:40 never happen
            "2027-03-28 03:20:00+02:00",
            "2027-03-28 03:40:00+02:00",
        ])
    );
    assert_eq!(
        one(
            "*/30 * * * *",
            "Europe/Paris",
            "5",
            "2027-10-31T01:45:00+02:00"
        ),
        lines(&[
            "2027-10-31 02:00:00+02:00",
            "2027-10-31 02:30:00+02:00",
            "2027-10-31 02:00:00+01:00", // the wall clock says 02:00 again
            "2027-10-31 02:30:00+01:00",
            "2027-10-31 03:00:00+01:00",
        ])
    );
}

#[test]
fn sydney_and_lord_howe() {
    assert_eq!(
        one("30 2 * * *", "Australia/Sydney", "2", "2027-10-02T12:00:00"),
        lines(&["2027-10-03 03:00:00+11:00", "2027-10-04 02:30:00+11:00"])
    );
    assert_eq!(
        one("30 2 * * *", "Australia/Sydney", "2", "2027-04-03T12:00:00"),
        lines(&["2027-04-04 02:30:00+11:00", "2027-04-05 02:30:00+10:00"])
    );
    // A 30-minute gap: 02:15 does not exist on 3 October; the change is at 02:30.
    assert_eq!(
        one(
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2",
            "2027-10-02T12:00:00"
        ),
        lines(&["2027-10-03 02:30:00+11:00", "2027-10-04 02:15:00+11:00"])
    );
    // A 30-minute repeat: 01:45 happens at +11:00 and again at +10:30.
    assert_eq!(
        one(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2",
            "2027-04-03T12:00:00"
        ),
        lines(&["2027-04-04 01:45:00+11:00", "2027-04-05 01:45:00+10:30"])
    );
    assert_eq!(
        one(
            "*/15 1 * * *",
            "Australia/Lord_Howe",
            "4",
            "2027-04-04T01:20:00"
        ),
        lines(&[
            "2027-04-04 01:30:00+11:00",
            "2027-04-04 01:45:00+11:00",
            "2027-04-04 01:30:00+10:30",
            "2027-04-04 01:45:00+10:30",
        ])
    );
}

#[test]
fn day_fields_are_ored_macros_leap_day_and_steps() {
    // 1st and 15th of the month, and every Monday (1 and 15 March 2027 are Mondays).
    assert_eq!(
        one("0 0 1,15 * MON", "UTC", "7", "2027-02-28T00:00:00Z"),
        lines(&[
            "2027-03-01 00:00:00+00:00",
            "2027-03-08 00:00:00+00:00",
            "2027-03-15 00:00:00+00:00",
            "2027-03-22 00:00:00+00:00",
            "2027-03-29 00:00:00+00:00",
            "2027-04-01 00:00:00+00:00", // a Thursday: the 1st
            "2027-04-05 00:00:00+00:00",
        ])
    );
    assert_eq!(
        one("@monthly", "Europe/Paris", "3", "2027-01-15T00:00:00"),
        lines(&[
            "2027-02-01 00:00:00+01:00",
            "2027-03-01 00:00:00+01:00",
            "2027-04-01 00:00:00+02:00",
        ])
    );
    assert_eq!(
        one("0 0 29 2 *", "UTC", "2", "2027-01-01T00:00:00Z"),
        lines(&["2028-02-29 00:00:00+00:00", "2032-02-29 00:00:00+00:00"])
    );
    // */7 is 0,7,…,56 in every hour: after :56 comes :00, as in cron.
    assert_eq!(
        one("*/7 * * * *", "UTC", "4", "2027-01-01T10:50:00Z"),
        lines(&[
            "2027-01-01 10:56:00+00:00",
            "2027-01-01 11:00:00+00:00",
            "2027-01-01 11:07:00+00:00",
            "2027-01-01 11:14:00+00:00",
        ])
    );
    // The seconds field (extension).
    assert_eq!(
        one("*/20 * * * * *", "UTC", "3", "2027-01-01T10:59:30Z"),
        lines(&[
            "2027-01-01 10:59:40+00:00",
            "2027-01-01 11:00:00+00:00",
            "2027-01-01 11:00:20+00:00",
        ])
    );
}

#[test]
fn after_is_exclusive_and_takes_rfc3339_or_wall_time() {
    let w = world(&[("job", "0 12 * * *", "Europe/Paris")]);
    // Exactly at a fire: that fire is not listed.
    assert_eq!(
        next(&w, "job", "1", "2027-03-27T12:00:00+01:00"),
        ["2027-03-28 12:00:00+02:00 job"]
    );
    assert_eq!(
        next(&w, "job", "1", "2027-03-27T12:00:00"),
        ["2027-03-28 12:00:00+02:00 job"]
    );
    assert_eq!(
        next(&w, "job", "1", "2027-03-27T11:00:00Z"),
        ["2027-03-28 12:00:00+02:00 job"]
    );
    assert_eq!(
        next(&w, "job", "1", "2027-03-27T10:59:59Z"),
        ["2027-03-27 12:00:00+01:00 job"]
    );
    let r = w.tend(&["schedule", "next", "--after", "yesterday"]);
    r.assert_code(64);
    assert!(
        r.stderr.contains("--after \"yesterday\" is not a time"),
        "{}",
        r.stderr
    );
}

#[test]
fn next_without_name_merges_enabled_entries_in_time_order_with_json() {
    let w = world(&[
        ("paris", "0 9 * * *", "Europe/Paris"),
        ("tokyo", "0 9 * * *", "Asia/Tokyo"),
    ]);
    let r = w.tend(&[
        "schedule",
        "next",
        "--count",
        "1",
        "--after",
        "2027-06-01T00:00:00Z",
    ]);
    r.assert_code(0);
    // 09:00 in Tokyo is 00:00Z, exactly `--after`: Tokyo's next is the day after.
    assert_eq!(
        r.stdout,
        "2027-06-01 09:00:00+02:00 paris\n2027-06-02 09:00:00+09:00 tokyo\n"
    );
    let r = w.tend(&[
        "schedule",
        "next",
        "tokyo",
        "--count",
        "1",
        "--after",
        "2027-06-01T00:00:00Z",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["schedule"], "tokyo");
    assert_eq!(v["at"], "2027-06-02 09:00:00+09:00");
    assert_eq!(v["timezone"], "Asia/Tokyo");
    let r = w.tend(&["schedule", "next", "tokio"]);
    r.assert_code(64);
    assert!(r.stderr.contains("did you mean \"tokyo\"?"), "{}", r.stderr);
}

fn write_toml(w: &World, text: &str) {
    std::fs::write(w.dir.path().join("tend.toml"), text).unwrap();
}

#[track_caller]
fn refused(w: &World, args: &[&str], code: i32, wanted: &[&str]) -> Run {
    let r = w.tend(args);
    r.assert_code(code);
    for s in wanted {
        assert!(r.stderr.contains(s), "wanted {s:?} in:\n{}", r.stderr);
    }
    r
}

/// Durations and counts that would not fit the calendar (or would walk billions of
/// fires) are refused where they are written, never a panic or an abort later.
#[test]
fn out_of_range_durations_and_periods_are_refused() {
    let w = world(&[]);
    write_toml(
        &w,
        "[[schedule]]\nname = \"a\"\ncron = \"0 3 * * *\"\nrecipe = \"r.rhai\"\njitter = \"300000y\"\n\
         catch_up = \"9999999d\"\nalert_after = 4000000000\n\n\
         [[schedule]]\nname = \"b\"\ncron = \"0 3 * * *\"\nrecipe = \"r.rhai\"\nalert_after = \"500y\"\n",
    );
    for cmd in ["list", "next"] {
        refused(
            &w,
            &["schedule", cmd],
            64,
            &[
                "schedule \"a\": jitter \"300000y\": is more than a year",
                "schedule \"a\": catch_up \"9999999d\": is more than a year",
                "schedule \"a\": alert_after 4000000000: must be a number of periods (1 to 10000)",
                "schedule \"b\": alert_after \"500y\": must be a number of periods",
            ],
        );
    }
}

#[test]
fn bad_cron_lines_and_unknown_keys_name_the_entry_the_field_and_the_line() {
    let w = world(&[]);
    write_toml(
        &w,
        "[[schedule]]\nname = \"nightly-backup\"\ncron = \"0 25 * * *\"\nrecipe = \"r.rhai\"\n\n\
         [[schedule]]\nname = \"rotate\"\ncron = \"0 0 L * *\"\nrecipe = \"r.rhai\"\ntimzone = \"UTC\"\n",
    );
    for cmd in ["check", "list", "next"] {
        refused(
            &w,
            &["schedule", cmd],
            64,
            &[
                "tend.toml:3: schedule \"nightly-backup\": cron \"0 25 * * *\": hour 25 is out of range 0-23",
                "tend.toml:8: schedule \"rotate\": cron \"0 0 L * *\": day-of-month `L`: `L` (last day) is not cron(8) syntax",
                "tend.toml:10: schedule \"rotate\": unknown key \"timzone\": did you mean \"timezone\"?",
            ],
        );
    }
    write_toml(
        &w,
        "[[schedule]]\nname = \"a\"\ncron = \"* * * *\"\nrecipe = \"r.rhai\"\n",
    );
    refused(
        &w,
        &["schedule", "check"],
        64,
        &["cron \"* * * *\": has 4 fields"],
    );
    write_toml(
        &w,
        "[[schedule]]\nname = \"a\"\ncron = \"@fortnightly\"\nrecipe = \"r.rhai\"\n",
    );
    refused(
        &w,
        &["schedule", "list"],
        64,
        &["@fortnightly is not a cron macro"],
    );
    write_toml(
        &w,
        "[[schedule]]\nname = \"a\"\ncron = \"0 0 * * 5#3\"\nrecipe = \"r.rhai\"\n",
    );
    refused(
        &w,
        &["schedule", "list"],
        64,
        &["`#` (nth weekday of the month)"],
    );
}

#[test]
fn check_asks_trust_and_inventory() {
    let w = world(&[]);
    let toml = "[hosts.web1]\naddress = \"10.0.0.1\"\n\n\
                [[schedule]]\nname = \"ok\"\ncron = \"@daily\"\ntimezone = \"UTC\"\nrecipe = \"r.rhai\"\nhosts = \"web*\"\n\n\
                [[schedule]]\nname = \"nohost\"\ncron = \"@daily\"\nrecipe = \"r.rhai\"\nhosts = \"db*\"\n\n\
                [[schedule]]\nname = \"missing\"\ncron = \"@daily\"\nrecipe = \"gone.rhai\"\n";
    write_toml(&w, toml);
    // Not vetted yet: refused with the vetting hint (77 is the vetting exit code).
    let r = refused(
        &w,
        &["schedule", "check"],
        77,
        &[
            "tend.toml:4: schedule \"ok\": recipe \"r.rhai\"",
            "is not vetted",
            "tend vet",
            "schedule \"nohost\": hosts \"db*\"",
            "schedule \"missing\": recipe",
        ],
    );
    assert!(!r.stdout.contains("ok: ok"), "{}", r.stdout);
    w.tend(&["vet", "r.rhai", "--by", "alice"]).assert_code(0);
    let r = w.tend(&["schedule", "check"]);
    assert!(
        r.stdout.contains("ok: ok (recipe vetted; next "),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stderr.contains("schedule \"ok\""), "{}", r.stderr);
    write_toml(
        &w,
        &toml[..toml.find("[[schedule]]\nname = \"nohost\"").unwrap()],
    );
    w.tend(&["schedule", "check"]).assert_code(0);
    // An edit after vetting makes it unvetted again.
    w.recipe("r.rhai", "//! Does something else.\nlet p = params(#{});\n");
    refused(&w, &["schedule", "check"], 77, &["is not vetted"]);
}

#[test]
fn check_refuses_a_secret_written_in_the_file() {
    let w = world(&[]);
    w.recipe(
        "s.rhai",
        "//! Uses a token.\nlet p = params(#{ token: secret(), keep: 3 });\n",
    );
    w.tend(&["vet", "s.rhai", "--by", "alice"]).assert_code(0);
    write_toml(
        &w,
        "[[schedule]]\nname = \"s\"\ncron = \"@daily\"\nrecipe = \"s.rhai\"\nparams = { token = \"hunter22\", keep = \"many\" }\n",
    );
    let r = refused(
        &w,
        &["schedule", "check"],
        64,
        &["params.token: is a secret", "keep"],
    );
    assert!(!r.stderr.contains("hunter22"), "{}", r.stderr);
    write_toml(
        &w,
        "[[schedule]]\nname = \"s\"\ncron = \"@daily\"\nrecipe = \"s.rhai\"\nparams = { token = \"env:S_TOKEN\", keep = 5 }\n",
    );
    w.tend(&["schedule", "check"]).assert_code(0);
}

#[test]
fn list_shows_zone_next_fire_and_enabled() {
    let w = world(&[]);
    write_toml(
        &w,
        "[[schedule]]\nname = \"a\"\ncron = \"@daily\"\ntimezone = \"Asia/Tokyo\"\nrecipe = \"r.rhai\"\n\n\
         [[schedule]]\nname = \"b\"\ncron = \"@reboot\"\nrecipe = \"r.rhai\"\nenabled = false\n",
    );
    let r = w
        .command()
        .env("TZ", "Australia/Sydney")
        .args(["schedule", "list", "--json"])
        .output()
        .unwrap();
    let r = Run::from(r);
    r.assert_code(0);
    let rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["name"], "a");
    assert_eq!(rows[0]["timezone"], "Asia/Tokyo");
    assert!(
        rows[0]["next"]
            .as_str()
            .unwrap()
            .ends_with(" 00:00:00+09:00"),
        "{}",
        rows[0]
    );
    assert_eq!(rows[0]["enabled"], true);
    // The machine's zone when none is written ($TZ here).
    assert_eq!(rows[1]["timezone"], "Australia/Sydney");
    assert_eq!(rows[1]["enabled"], false);
    assert_eq!(rows[1]["next"], serde_json::Value::Null);
    let r = w
        .command()
        .env("TZ", "Australia/Sydney")
        .args(["schedule", "list"])
        .output()
        .unwrap();
    let r = Run::from(r);
    assert!(
        r.stdout.contains("Australia/Sydney (machine)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("at daemon start"), "{}", r.stdout);
}
