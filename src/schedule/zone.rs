//! Time zones: which zone an entry runs in, and when a cron expression fires there,
//! across daylight-saving changes the way cron(8) handles them (`man 8 cron`,
//! "Special considerations"; cronie's `cron.c`, the `medium` and `negative` cases):
//!
//! - **spring forward** (wall-clock times that do not exist): a fixed-time job due in
//!   the gap runs once, at the instant of the change; a wildcard job skips them;
//! - **fall back** (wall-clock times that happen twice): a fixed-time job runs the
//!   first time only; a wildcard job runs both times, following the wall clock.
//!
//! Where cronie runs a fixed-time job once per skipped matching minute (`0,30 2 * * *`
//! twice at 03:00), tend runs it once: several runs at one instant are one fire.
//!
//! The zone database is chrono-tz's (compiled in, so a fire time does not depend on
//! the tzdata package of the machine).

use std::path::Path;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::cron::Cron;

/// The zone named `name` (IANA, e.g. `Europe/Paris`).
pub fn parse(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        let hint = match name.split_once('/') {
            Some(_) => String::new(),
            None => " (IANA names look like Europe/Paris or America/New_York)".to_string(),
        };
        format!("is not an IANA time zone{hint}")
    })
}

/// The machine's zone: `$TZ` if it names an IANA zone, else `/etc/timezone`, else the
/// zone `/etc/localtime` links to, else UTC. A daemon and `tend schedule next` run on
/// one machine agree; the answer never depends on the caller's locale.
pub fn machine() -> Tz {
    machine_from(Path::new("/etc"))
}

fn machine_from(etc: &Path) -> Tz {
    let from_env = std::env::var("TZ")
        .ok()
        .and_then(|v| v.trim_start_matches(':').parse::<Tz>().ok());
    let from_file = || {
        std::fs::read_to_string(etc.join("timezone"))
            .ok()
            .and_then(|s| s.trim().parse::<Tz>().ok())
    };
    let from_link = || {
        let target = std::fs::read_link(etc.join("localtime")).ok()?;
        let s = target.to_string_lossy();
        let (_, name) = s.split_once("zoneinfo/")?;
        name.parse::<Tz>().ok()
    };
    from_env
        .or_else(from_file)
        .or_else(from_link)
        .unwrap_or(Tz::UTC)
}

fn wall(tz: Tz, at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

fn offset_secs(tz: Tz, at: DateTime<Utc>) -> i64 {
    i64::from(
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// The first fire of `cron` in `tz` strictly after `after`; `None` for `@reboot` or an
/// expression with no fire within its search horizon.
pub fn next_fire(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let wildcard = cron.is_wildcard();
    let start = wall(tz, after);
    // A wildcard job also fires at the second pass of a repeated wall time. When
    // `after` is in the first pass, those of the walls just behind `start` are still
    // ahead in real time: look back by the length of the repeated stretch.
    let mut second_pass: Option<DateTime<Utc>> = None;
    if wildcard {
        let now = offset_secs(tz, after);
        let later = offset_secs(tz, after + Duration::hours(3));
        if later < now {
            let mut w = start - Duration::seconds(now - later);
            while let Some(m) = cron.next_at_or_after(w).filter(|m| *m < start) {
                if let LocalResult::Ambiguous(_, b) = tz.from_local_datetime(&m) {
                    let b = b.with_timezone(&Utc);
                    if b > after {
                        second_pass = Some(b);
                        break;
                    }
                }
                w = m + Duration::seconds(1);
            }
        }
    }
    let mut w = start;
    let first = loop {
        let Some(m) = cron.next_at_or_after(w) else {
            break None;
        };
        match tz.from_local_datetime(&m) {
            LocalResult::Single(i) if i.with_timezone(&Utc) > after => {
                break Some(i.with_timezone(&Utc))
            }
            LocalResult::Single(_) => {}
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                if a > after {
                    break Some(a);
                }
                if wildcard && b > after && second_pass.is_none() {
                    second_pass = Some(b);
                }
            }
            LocalResult::None if wildcard => {}
            LocalResult::None => {
                let t = end_of_gap(tz, m)?;
                if t > after {
                    break Some(t);
                }
            }
        }
        w = m + Duration::seconds(1);
    };
    match (first, second_pass) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The instant a wall-clock gap containing `w` ends: the first instant whose wall time
/// is after `w` (the moment of the change).
fn end_of_gap(tz: Tz, w: NaiveDateTime) -> Option<DateTime<Utc>> {
    let exists = |n: NaiveDateTime| match tz.from_local_datetime(&n) {
        LocalResult::Single(i) => Some(i.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        LocalResult::None => None,
    };
    // Gaps are hours long (Samoa's 2011 skipped day is the longest): step out of it.
    let lo = (1..=49).find_map(|h| exists(w - Duration::hours(h)))?;
    let hi = (1..=49).find_map(|h| exists(w + Duration::hours(h)))?;
    let (mut lo, mut hi) = (lo.timestamp(), hi.timestamp());
    // Invariant: wall(lo) <= w < wall(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let at = DateTime::from_timestamp(mid, 0)?;
        if wall(tz, at) > w {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

/// `n` fires of `cron` after `after`, in order.
pub fn fires(cron: &Cron, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut out = Vec::with_capacity(n);
    let mut t = after;
    while out.len() < n {
        match next_fire(cron, tz, t) {
            Some(f) => {
                out.push(f);
                t = f;
            }
            None => break,
        }
    }
    out
}

/// `2027-03-28 03:00:00+02:00`: an instant as `tend schedule next` and the status page
/// show it, in the entry's zone.
pub fn format_at(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S%:z")
        .to_string()
}

/// A wall time in `tz` as an instant: the first of a repeated time, the end of the
/// gap for a skipped one (so "after 02:30" on spring-forward day means after 03:00).
pub fn from_wall(tz: Tz, w: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&w) {
        LocalResult::Single(i) | LocalResult::Ambiguous(i, _) => Some(i.with_timezone(&Utc)),
        LocalResult::None => end_of_gap(tz, w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(tz: Tz, t: DateTime<Utc>) -> String {
        t.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S%:z")
            .to_string()
    }

    fn list(cron: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
        let tz = parse(zone).unwrap();
        let after = DateTime::parse_from_rfc3339(after)
            .unwrap()
            .with_timezone(&Utc);
        fires(&Cron::parse(cron).unwrap(), tz, after, n)
            .into_iter()
            .map(|t| fmt(tz, t))
            .collect()
    }

    // Transitions below are from the tz database: Europe/Paris 2027-03-28 02:00 CET →
    // 03:00 CEST and 2027-10-31 03:00 CEST → 02:00 CET.

    #[test]
    fn paris_fixed_time_runs_once_each_day_across_both_changes() {
        assert_eq!(
            list("30 2 * * *", "Europe/Paris", "2027-03-26T12:00:00+01:00", 4),
            [
                "2027-03-27 02:30:00+01:00",
                "2027-03-28 03:00:00+02:00",
                "2027-03-29 02:30:00+02:00",
                "2027-03-30 02:30:00+02:00",
            ]
        );
        assert_eq!(
            list("30 2 * * *", "Europe/Paris", "2027-10-29T12:00:00+02:00", 4),
            [
                "2027-10-30 02:30:00+02:00",
                "2027-10-31 02:30:00+02:00",
                "2027-11-01 02:30:00+01:00",
                "2027-11-02 02:30:00+01:00",
            ]
        );
    }

    #[test]
    fn wildcard_jobs_follow_the_wall_clock() {
        assert_eq!(
            list(
                "*/30 * * * *",
                "Europe/Paris",
                "2027-03-28T01:00:00+01:00",
                3
            ),
            [
                "2027-03-28 01:30:00+01:00",
                "2027-03-28 03:00:00+02:00",
                "2027-03-28 03:30:00+02:00",
            ]
        );
        assert_eq!(
            list(
                "*/30 * * * *",
                "Europe/Paris",
                "2027-10-31T01:30:00+02:00",
                6
            ),
            [
                "2027-10-31 02:00:00+02:00",
                "2027-10-31 02:30:00+02:00",
                "2027-10-31 02:00:00+01:00",
                "2027-10-31 02:30:00+01:00",
                "2027-10-31 03:00:00+01:00",
                "2027-10-31 03:30:00+01:00",
            ]
        );
        // Starting inside the first pass still finds the second pass of walls behind.
        assert_eq!(
            list(
                "*/30 * * * *",
                "Europe/Paris",
                "2027-10-31T02:45:00+02:00",
                3
            ),
            [
                "2027-10-31 02:00:00+01:00",
                "2027-10-31 02:30:00+01:00",
                "2027-10-31 03:00:00+01:00",
            ]
        );
        // And inside the second pass, the first-pass walls ahead are not repeated.
        assert_eq!(
            list(
                "*/30 * * * *",
                "Europe/Paris",
                "2027-10-31T02:10:00+01:00",
                2
            ),
            ["2027-10-31 02:30:00+01:00", "2027-10-31 03:00:00+01:00"]
        );
    }

    #[test]
    fn fixed_minute_with_wildcard_hour_is_a_wildcard_job() {
        // `30 * * * *`: the hour starts with `*`, so 02:30 is skipped in the gap.
        assert_eq!(
            list("30 * * * *", "Europe/Paris", "2027-03-28T01:00:00+01:00", 2),
            ["2027-03-28 01:30:00+01:00", "2027-03-28 03:30:00+02:00"]
        );
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        // Australia/Lord_Howe: 2027-10-03 02:00 +10:30 → 02:30 +11:00;
        // 2027-04-04 02:00 +11:00 → 01:30 +10:30.
        assert_eq!(
            list(
                "15 2 * * *",
                "Australia/Lord_Howe",
                "2027-10-02T12:00:00+10:30",
                2
            ),
            ["2027-10-03 02:30:00+11:00", "2027-10-04 02:15:00+11:00"]
        );
        assert_eq!(
            list(
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2027-04-03T12:00:00+11:00",
                2
            ),
            ["2027-04-04 01:45:00+11:00", "2027-04-05 01:45:00+10:30"]
        );
        assert_eq!(
            list(
                "*/15 1 * * *",
                "Australia/Lord_Howe",
                "2027-04-04T01:40:00+11:00",
                3
            ),
            [
                "2027-04-04 01:45:00+11:00",
                "2027-04-04 01:30:00+10:30",
                "2027-04-04 01:45:00+10:30",
            ]
        );
    }

    #[test]
    fn machine_zone_from_etc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("timezone"), "Europe/Paris\n").unwrap();
        // `TZ` wins when set; this test only runs the file paths when it is not.
        if std::env::var_os("TZ").is_none() {
            assert_eq!(machine_from(dir.path()), chrono_tz::Europe::Paris);
            std::fs::remove_file(dir.path().join("timezone")).unwrap();
            std::os::unix::fs::symlink(
                "/usr/share/zoneinfo/Australia/Sydney",
                dir.path().join("localtime"),
            )
            .unwrap();
            assert_eq!(machine_from(dir.path()), chrono_tz::Australia::Sydney);
            std::fs::remove_file(dir.path().join("localtime")).unwrap();
            assert_eq!(machine_from(dir.path()), Tz::UTC);
        }
    }
}
