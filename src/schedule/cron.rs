//! Cron expressions as cron(8) reads them (Vixie cron / cronie), and the next wall-clock
//! time one matches.
//!
//! Syntax, after cronie's `entry.c`: five fields `minute hour day-of-month month
//! day-of-week`; each a list of `*`, `N`, `N-M`, `*/S` or `N-M/S`; month and day names
//! (`jan`, `mon`, three letters, any case); Sunday is 0 or 7; a range never wraps
//! around (`5-1` is refused, as cron(8) refuses it) and a step needs a range or `*`
//! (`5/15` is refused). Macros `@hourly @daily @midnight @weekly @monthly @yearly
//! @annually` and `@reboot`. Quartz extensions (`L`, `W`, `#`, `?`) are not cron(8)
//! and are refused by name rather than misread.
//!
//! Extension (not in cron(8)): six fields, the first being seconds (`*/2 * * * * *`).
//!
//! Two cron(8) rules that libraries often get wrong are kept here:
//! - day-of-month and day-of-week are ORed when both are restricted, and ANDed when
//!   either *starts with* `*` (so `*/2` counts as unrestricted, as in cronie);
//! - a job is a **wildcard** job when its minute or hour field starts with `*`
//!   (`@hourly` too); otherwise it is **fixed-time**. That decides what happens at a
//!   daylight-saving change (see [`super::zone`]).
//!
//! This module knows nothing of time zones: it answers in wall-clock (naive) time.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// How far ahead a search goes before it says "never": long enough for the next
/// 29 February whatever the day of week rule (a leap day can be 8 years away).
const SEARCH_YEARS: i32 = 30;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bits 1..=31.
    days: u64,
    /// Bits 1..=12.
    months: u64,
    /// Bits 0..=6, Sunday 0 (a 7 is folded into 0).
    weekdays: u64,
    dom_star: bool,
    dow_star: bool,
    wildcard: bool,
    reboot: bool,
    has_seconds: bool,
}

struct Field {
    name: &'static str,
    low: u32,
    high: u32,
    names: Option<&'static [&'static str]>,
}

const SECOND: Field = Field {
    name: "second",
    low: 0,
    high: 59,
    names: None,
};
const MINUTE: Field = Field {
    name: "minute",
    low: 0,
    high: 59,
    names: None,
};
const HOUR: Field = Field {
    name: "hour",
    low: 0,
    high: 23,
    names: None,
};
const DOM: Field = Field {
    name: "day-of-month",
    low: 1,
    high: 31,
    names: None,
};
const MONTH: Field = Field {
    name: "month",
    low: 1,
    high: 12,
    names: Some(&MONTHS),
};
const DOW: Field = Field {
    name: "day-of-week",
    low: 0,
    high: 7,
    names: Some(&DAYS),
};

const MACROS: [&str; 8] = [
    "@reboot",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

impl Cron {
    /// Parse `text`; the error says which field and what is wrong with it, e.g.
    /// `hour 25 is out of range 0-23`.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let trimmed = text.trim();
        if let Some(word) = trimmed.strip_prefix('@') {
            return Self::parse_macro(text, word);
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => (None, &fields[..]),
            6 => (Some(fields[0]), &fields[1..]),
            0 => return Err("is empty; write 5 fields: minute hour day-of-month month day-of-week, or a macro such as @daily".into()),
            n => {
                return Err(format!(
                    "has {n} field{}; cron takes 5 (minute hour day-of-month month \
                     day-of-week), or 6 with a leading seconds field",
                    if n == 1 { "" } else { "s" }
                ))
            }
        };
        let seconds = match sec {
            Some(s) => parse_field(s, &SECOND)?,
            None => 1,
        };
        let mut weekdays = parse_field(rest[4], &DOW)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let cron = Cron {
            text: text.to_string(),
            seconds,
            minutes: parse_field(rest[0], &MINUTE)?,
            hours: parse_field(rest[1], &HOUR)?,
            days: parse_field(rest[2], &DOM)?,
            months: parse_field(rest[3], &MONTH)?,
            weekdays,
            dom_star: rest[2].starts_with('*'),
            dow_star: rest[4].starts_with('*'),
            wildcard: rest[0].starts_with('*') || rest[1].starts_with('*'),
            reboot: false,
            has_seconds: sec.is_some(),
        };
        cron.check_possible()?;
        Ok(cron)
    }

    fn parse_macro(text: &str, word: &str) -> Result<Cron, String> {
        // What cronie's entry.c sets for each macro, flags included.
        let all_days = bits(1, 31);
        let all_months = bits(1, 12);
        let all_dow = bits(0, 6);
        let base = Cron {
            text: text.to_string(),
            seconds: 1,
            minutes: 1,
            hours: 1,
            days: all_days,
            months: all_months,
            weekdays: all_dow,
            dom_star: false,
            dow_star: false,
            wildcard: false,
            reboot: false,
            has_seconds: false,
        };
        Ok(match word {
            "reboot" => Cron {
                reboot: true,
                ..base
            },
            "yearly" | "annually" => Cron {
                days: 1 << 1,
                months: 1 << 1,
                dow_star: true,
                ..base
            },
            "monthly" => Cron {
                days: 1 << 1,
                dow_star: true,
                ..base
            },
            "weekly" => Cron {
                weekdays: 1,
                dow_star: true,
                ..base
            },
            "daily" | "midnight" => base,
            "hourly" => Cron {
                hours: bits(0, 23),
                wildcard: true,
                ..base
            },
            _ => {
                let at = format!("@{word}");
                let hint = match crate::error::did_you_mean(&at, &MACROS) {
                    Some(m) => format!("did you mean {m}? "),
                    None => String::new(),
                };
                return Err(format!(
                    "{at} is not a cron macro; {hint}cron(8) knows {}",
                    MACROS.join(" ")
                ));
            }
        })
    }

    /// A line that parses but can never fire (`0 0 30 2 *`) is a mistake worth saying.
    fn check_possible(&self) -> Result<(), String> {
        let start = NaiveDate::from_ymd_opt(2000, 1, 1)
            .expect("valid date")
            .and_time(NaiveTime::MIN);
        if self.next_at_or_after(start).is_none() {
            return Err(
                "never fires: no month has that day (day-of-month and month never meet)".into(),
            );
        }
        Ok(())
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `@reboot`: once when the daemon starts, never on the clock.
    pub fn is_reboot(&self) -> bool {
        self.reboot
    }

    /// A wildcard job (minute or hour field starting with `*`) follows the wall clock
    /// across daylight-saving changes; a fixed-time job runs once (see `super::zone`).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Written with the seconds field (the 6-field extension).
    pub fn has_seconds(&self) -> bool {
        self.has_seconds
    }

    /// Whether the wall-clock time `t` (to the second) matches.
    pub fn matches(&self, t: NaiveDateTime) -> bool {
        !self.reboot
            && has(self.seconds, t.second())
            && has(self.minutes, t.minute())
            && has(self.hours, t.hour())
            && has(self.months, t.month())
            && self.day_matches(t.date())
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = has(self.days, d.day());
        let dow = has(self.weekdays, d.weekday().num_days_from_sunday());
        // cronie's find_jobs: AND when either field starts with `*`, else OR.
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching wall-clock time at or after `from` (sub-seconds dropped),
    /// or `None` if there is none within the search horizon (or for `@reboot`).
    pub fn next_at_or_after(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        if self.reboot {
            return None;
        }
        let limit = from.year() + SEARCH_YEARS;
        let mut t = from.with_nanosecond(0)?;
        loop {
            if t.year() > limit {
                return None;
            }
            if !has(self.months, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_time(NaiveTime::MIN);
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().succ_opt()?.and_time(NaiveTime::MIN);
                continue;
            }
            let Some(h) = next_bit(self.hours, t.hour()) else {
                t = t.date().succ_opt()?.and_time(NaiveTime::MIN);
                continue;
            };
            if h != t.hour() {
                t = t.date().and_hms_opt(h, 0, 0)?;
            }
            let Some(m) = next_bit(self.minutes, t.minute()) else {
                t = t.date().and_hms_opt(t.hour(), 0, 0)? + Duration::hours(1);
                continue;
            };
            if m != t.minute() {
                t = t.date().and_hms_opt(t.hour(), m, 0)?;
            }
            let Some(s) = next_bit(self.seconds, t.second()) else {
                t = t.date().and_hms_opt(t.hour(), t.minute(), 0)? + Duration::minutes(1);
                continue;
            };
            return t.date().and_hms_opt(t.hour(), t.minute(), s);
        }
    }
}

fn has(set: u64, v: u32) -> bool {
    set & (1u64 << v) != 0
}

fn bits(low: u32, high: u32) -> u64 {
    (low..=high).fold(0, |acc, i| acc | (1 << i))
}

/// The smallest member of `set` that is `>= from`.
fn next_bit(set: u64, from: u32) -> Option<u32> {
    let rest = set.checked_shr(from)?.checked_shl(from)?;
    (rest != 0).then(|| rest.trailing_zeros())
}

/// One field: a comma-separated list of ranges.
fn parse_field(text: &str, f: &Field) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        set |= parse_range(part, f).map_err(|m| {
            if text.contains(',') {
                format!("{m} (in {} `{text}`)", f.name)
            } else {
                m
            }
        })?;
    }
    Ok(set)
}

fn parse_range(part: &str, f: &Field) -> Result<u64, String> {
    refuse_extensions(part, f)?;
    if part.is_empty() {
        return Err(format!("{} has an empty list item", f.name));
    }
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().map_err(|_| {
                format!(
                    "{} step `{s}` is not a number (write */5 or 0-30/5)",
                    f.name
                )
            })?;
            if step == 0 {
                return Err(format!("{} step 0 never advances; use 1 or more", f.name));
            }
            (r, Some(step))
        }
        None => (part, None),
    };
    let (low, high) = if range == "*" {
        (f.low, f.high)
    } else if let Some((a, b)) = range.split_once('-') {
        let (a, b) = (value(a, f)?, value(b, f)?);
        if a > b {
            return Err(format!(
                "{} range {range} runs backwards; cron(8) does not wrap around (write \
                 it as two ranges)",
                f.name
            ));
        }
        (a, b)
    } else {
        let v = value(range, f)?;
        if step.is_some() {
            return Err(format!(
                "{} `{part}`: a step needs a range or `*` (write {v}-{}/{})",
                f.name,
                f.high,
                step.unwrap_or(1)
            ));
        }
        (v, v)
    };
    let step = step.unwrap_or(1);
    Ok((low..=high)
        .step_by(step as usize)
        .fold(0, |acc, i| acc | (1 << i)))
}

/// Quartz and other libraries' extensions that cron(8) does not have: refused by
/// name, since reading them some other way would fire at the wrong times.
fn refuse_extensions(part: &str, f: &Field) -> Result<(), String> {
    let upper = part.to_ascii_uppercase();
    let bare = upper.trim_start_matches(|c: char| c.is_ascii_digit());
    let what = if part.contains('#') {
        Some("`#` (nth weekday of the month)")
    } else if part == "?" {
        Some("`?` (Quartz's \"no value\"; use `*`)")
    } else if matches!(bare, "L" | "LW") {
        Some("`L` (last day)")
    } else if bare == "W" && bare.len() < upper.len() {
        Some("`W` (nearest weekday)")
    } else {
        None
    };
    match what {
        Some(w) => Err(format!(
            "{} `{part}`: {w} is not cron(8) syntax and is refused; list the days instead",
            f.name
        )),
        None => Ok(()),
    }
}

fn value(text: &str, f: &Field) -> Result<u32, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let v: u32 = text
            .parse()
            .map_err(|_| format!("{} {text} is out of range {}-{}", f.name, f.low, f.high))?;
        if v < f.low || v > f.high {
            return Err(format!(
                "{} {v} is out of range {}-{}",
                f.name, f.low, f.high
            ));
        }
        return Ok(v);
    }
    let Some(names) = f.names else {
        return Err(format!(
            "{} `{text}` is not a number (names are allowed only for month and day-of-week)",
            f.name
        ));
    };
    let lower = text.to_ascii_lowercase();
    match names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u32 + f.low),
        None => Err(format!(
            "{} `{text}` is neither a number ({}-{}) nor a name ({})",
            f.name,
            f.low,
            f.high,
            names.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn next(c: &str, from: &str) -> String {
        Cron::parse(c)
            .unwrap()
            .next_at_or_after(at(from))
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    #[test]
    fn errors_name_the_field_and_the_range() {
        let e = |c: &str| Cron::parse(c).unwrap_err();
        assert_eq!(e("0 25 * * *"), "hour 25 is out of range 0-23");
        assert_eq!(e("60 * * * *"), "minute 60 is out of range 0-59");
        assert_eq!(e("0 0 0 * *"), "day-of-month 0 is out of range 1-31");
        assert_eq!(e("0 0 * 13 *"), "month 13 is out of range 1-12");
        assert_eq!(e("0 0 * * 8"), "day-of-week 8 is out of range 0-7");
        assert_eq!(e("61 0 0 * * *"), "second 61 is out of range 0-59");
        assert!(e("0 0 L * *").contains("`L` (last day) is not cron(8) syntax"));
        assert!(e("0 0 15W * *").contains("`W` (nearest weekday)"));
        assert!(e("0 0 * * 5#3").contains("`#`"));
        assert!(e("0 0 * * 5L").contains("`L`"));
        assert!(e("0 0 ? * *").contains("`?`"));
        assert!(e("0 0 * *").contains("has 4 fields"));
        assert!(e("5-1 * * * *").contains("runs backwards"));
        assert!(e("5/15 * * * *").contains("a step needs a range"));
        assert!(e("*/0 * * * *").contains("step 0"));
        assert!(e("0 0 * * fry").contains("neither a number"));
        assert!(e("0 0 mon * *").contains("names are allowed only"));
        assert!(e("@dayly").contains("did you mean @daily?"));
        assert!(e("0 0 30 2 *").contains("never fires"));
    }

    #[test]
    fn names_are_not_mistaken_for_extensions() {
        // JUL has an L, WED a W: names, not Quartz's L/W.
        assert!(Cron::parse("0 0 * jul wed").is_ok());
        assert!(Cron::parse("0 0 * JAN-MAR MON-FRI").is_ok());
    }

    #[test]
    fn steps_restart_each_hour_like_cron() {
        // */7 in minutes is 0,7,…,56: after :56 comes :00 of the next hour, not :03.
        assert_eq!(
            next("*/7 * * * *", "2027-01-01 10:57:00"),
            "2027-01-01 11:00:00"
        );
        assert_eq!(
            next("*/7 * * * *", "2027-01-01 10:50:00"),
            "2027-01-01 10:56:00"
        );
    }

    #[test]
    fn day_fields_or_when_both_restricted_and_when_one_starts_with_a_star() {
        // 2027-03-01 is a Monday; 2027-03-08 Monday; 15th a Monday too.
        assert_eq!(
            next("0 0 1,15 * MON", "2027-03-02 00:00:00"),
            "2027-03-08 00:00:00"
        );
        assert_eq!(
            next("0 0 1,15 * MON", "2027-03-09 00:00:00"),
            "2027-03-15 00:00:00"
        );
        // `*/2` starts with `*`: cronie ANDs (odd days that are Mondays).
        assert_eq!(
            next("0 0 */2 * MON", "2027-03-02 00:00:00"),
            "2027-03-15 00:00:00"
        );
        // Sunday as 7 and as 0.
        assert_eq!(
            next("0 0 * * 7", "2027-03-01 00:00:00"),
            "2027-03-07 00:00:00"
        );
        assert_eq!(
            next("0 0 * * sun", "2027-03-01 00:00:00"),
            "2027-03-07 00:00:00"
        );
    }

    #[test]
    fn macros_are_cronies() {
        assert_eq!(
            next("@monthly", "2027-03-01 00:00:01"),
            "2027-04-01 00:00:00"
        );
        assert_eq!(
            next("@weekly", "2027-03-01 00:00:00"),
            "2027-03-07 00:00:00"
        );
        assert_eq!(
            next("@yearly", "2027-03-01 00:00:00"),
            "2028-01-01 00:00:00"
        );
        assert_eq!(
            next("@hourly", "2027-03-01 10:00:01"),
            "2027-03-01 11:00:00"
        );
        assert!(Cron::parse("@hourly").unwrap().is_wildcard());
        assert!(!Cron::parse("@daily").unwrap().is_wildcard());
        let r = Cron::parse("@reboot").unwrap();
        assert!(r.is_reboot() && r.next_at_or_after(at("2027-01-01 00:00:00")).is_none());
    }

    #[test]
    fn leap_day_and_seconds() {
        assert_eq!(
            next("0 0 29 2 *", "2027-01-01 00:00:00"),
            "2028-02-29 00:00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2096-03-01 00:00:00"),
            "2104-02-29 00:00:00"
        );
        assert_eq!(
            next("*/2 * * * * *", "2027-01-01 00:00:59"),
            "2027-01-01 00:01:00"
        );
        assert_eq!(
            next("30 0 0 * * *", "2027-01-01 00:00:31"),
            "2027-01-02 00:00:30"
        );
    }
}
