//! OpenSSH `allowed_signers` files, the trust list `ssh-keygen -Y verify` and git's
//! `gpg.ssh.allowedSignersFile` use (see ALLOWED SIGNERS in ssh-keygen(1)):
//!
//! ```text
//! # comment
//! alice@example.com,alice@corp.example ssh-ed25519 AAAAC3Nz… [comment]
//! bob@example.com namespaces="tend,git",valid-after="20260101" ssh-ed25519 AAAA…
//! *@example.com cert-authority ssh-ed25519 AAAA…
//! ```
//!
//! Each line: a principals pattern-list (comma-separated, `*` and `?` wildcards, `!`
//! negation), optional options (`namespaces="pattern-list"`, `valid-after=`,
//! `valid-before=` with `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`, local time unless `Z`,
//! `cert-authority`), then the key type and base64 key. Option keywords are
//! case-insensitive. A line that does not parse is an error naming it (fail closed),
//! where ssh-keygen would log it and go on.
//!
//! Lookup follows git: the signature's own key is looked up (like `ssh-keygen -Y
//! find-principals` with `-Overify-time`), then the line must accept the namespace (like
//! `-Y verify -n`). `cert-authority` lines never match a plain key: signatures made with
//! certificates are not supported.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use ssh_key::public::KeyData;
use ssh_key::PublicKey;

/// One line of the file.
#[derive(Debug, Clone)]
pub struct Line {
    /// `file:line`, for messages.
    pub at: String,
    /// The principals pattern-list as written.
    pub principals: String,
    pub cert_authority: bool,
    pub namespaces: Option<String>,
    pub valid_after: Option<DateTime<Utc>>,
    pub valid_before: Option<DateTime<Utc>>,
    pub key: PublicKey,
}

#[derive(Debug, Clone)]
pub struct AllowedSigners {
    pub path: PathBuf,
    pub lines: Vec<Line>,
}

/// Why a key is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No line has this key (or only `cert-authority` lines do).
    UnknownKey,
    /// The key is listed, but not for this namespace.
    Namespace(String),
    /// The key is listed, but not valid at that time.
    Time(String),
}

impl AllowedSigners {
    pub fn load(path: &Path) -> Result<AllowedSigners, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read allowed_signers file {}: {}",
                path.display(),
                crate::error::describe_io(&e)
            )
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AllowedSigners, String> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{}:{}", path.display(), i + 1);
            let parsed = parse_line(line).map_err(|m| format!("{at}: {m}; fix this line"))?;
            lines.push(Line { at, ..parsed });
        }
        Ok(AllowedSigners {
            path: path.to_path_buf(),
            lines,
        })
    }

    /// The first line that accepts `key` for `namespace` at time `at`: its principals.
    /// The refusal, if none does, is the most specific one met.
    pub fn accept(
        &self,
        key: &KeyData,
        namespace: &str,
        at: DateTime<Utc>,
    ) -> Result<&Line, Refusal> {
        let mut refusal = Refusal::UnknownKey;
        for l in &self.lines {
            if l.cert_authority || l.key.key_data() != key {
                continue;
            }
            if let Some(after) = l.valid_after {
                if at < after {
                    refusal = Refusal::Time(format!(
                        "{}: key is not valid before {}",
                        l.at,
                        after.format("%Y-%m-%d %H:%M:%S UTC")
                    ));
                    continue;
                }
            }
            if let Some(before) = l.valid_before {
                if at > before {
                    refusal = Refusal::Time(format!(
                        "{}: key expired at {}",
                        l.at,
                        before.format("%Y-%m-%d %H:%M:%S UTC")
                    ));
                    continue;
                }
            }
            if let Some(ns) = &l.namespaces {
                if !match_pattern_list(namespace, ns) {
                    refusal = Refusal::Namespace(format!(
                        "{}: key is allowed for namespaces=\"{ns}\", not \"{namespace}\"",
                        l.at
                    ));
                    continue;
                }
            }
            return Ok(l);
        }
        Err(refusal)
    }
}

fn parse_line(line: &str) -> Result<Line, String> {
    let (principals, rest) = take_field(line)?;
    if principals.is_empty() {
        return Err("no principals".into());
    }
    let rest = rest.trim_start();
    // Options are present when what follows is not a key: as sshsig.c does, try the
    // key first.
    let (opts, key_text) = match PublicKey::from_openssh(rest) {
        Ok(_) => ("", rest),
        Err(_) => {
            let (opts, after) = take_field(rest)?;
            (opts, after.trim_start())
        }
    };
    let key = PublicKey::from_openssh(key_text).map_err(|e| {
        format!("expected `PRINCIPALS [OPTIONS] KEYTYPE BASE64`, the key does not parse ({e})")
    })?;
    let mut out = Line {
        at: String::new(),
        principals: principals.to_string(),
        cert_authority: false,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key,
    };
    for opt in split_options(opts)? {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(dequote(v)?)),
            None => (opt.to_ascii_lowercase(), None),
        };
        match (name.as_str(), value) {
            ("cert-authority", None) => out.cert_authority = true,
            ("namespaces", Some(v)) => out.namespaces = Some(v),
            ("valid-after", Some(v)) => out.valid_after = Some(parse_time(&v)?),
            ("valid-before", Some(v)) => out.valid_before = Some(parse_time(&v)?),
            (n, _) => {
                return Err(format!(
                    "unsupported option `{n}` (known: cert-authority, namespaces=\"…\", \
                     valid-after=\"…\", valid-before=\"…\")"
                ))
            }
        }
    }
    Ok(out)
}

/// One whitespace-delimited field, where double quotes protect spaces.
fn take_field(s: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    Ok((s, ""))
}

fn split_options(opts: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in opts.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&opts[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !opts.is_empty() {
        out.push(&opts[start..]);
    }
    if out.iter().any(|o| o.is_empty()) {
        return Err(format!("empty option in `{opts}`"));
    }
    Ok(out)
}

fn dequote(v: &str) -> Result<String, String> {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .ok_or_else(|| format!("option value {v} must be in double quotes"))
}

/// `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`: local time unless suffixed with `Z`.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let bad = || format!("time \"{s}\" is not YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]");
    let (digits, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (s, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let naive = match digits.len() {
        8 => NaiveDate::parse_from_str(digits, "%Y%m%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0)),
        12 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M").ok(),
        14 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").ok(),
        _ => None,
    }
    .ok_or_else(bad)?;
    if utc {
        Ok(Utc.from_utc_datetime(&naive))
    } else {
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(bad)
    }
}

/// OpenSSH `match_pattern`: `*` any run of characters, `?` any one character.
pub fn match_pattern(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut si, mut pi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// OpenSSH `match_pattern_list`: comma-separated patterns; a matching `!pattern`
/// denies whatever else matches.
pub fn match_pattern_list(s: &str, list: &str) -> bool {
    let mut matched = false;
    for p in list.split(',') {
        let p = p.trim();
        if let Some(neg) = p.strip_prefix('!') {
            if match_pattern(s, neg) {
                return false;
            }
        } else if match_pattern(s, p) {
            matched = true;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2E+QRJJYvJpq1EINJ0THsg075votjgnWx5INqixM0e";

    #[test]
    fn patterns() {
        assert!(match_pattern("alice@example.com", "*@example.com"));
        assert!(match_pattern("alice", "al?ce"));
        assert!(!match_pattern("alice@evil.com", "*@example.com"));
        assert!(match_pattern_list("tend", "git,tend"));
        assert!(!match_pattern_list("tend", "git"));
        assert!(!match_pattern_list("bob@x", "*@x,!bob@x"));
        assert!(match_pattern_list("ann@x", "*@x,!bob@x"));
    }

    #[test]
    fn lines_with_and_without_options() {
        let text = format!(
            "# who may vet\n\nalice@example.com {KEY} alice\n\
             bob@example.com namespaces=\"git\",valid-after=\"20200101Z\" {KEY}\n\
             *@example.com cert-authority {KEY}\n"
        );
        let a = AllowedSigners::parse(&text, Path::new("allowed")).unwrap();
        assert_eq!(a.lines.len(), 3);
        assert_eq!(a.lines[0].at, "allowed:3");
        assert_eq!(a.lines[1].namespaces.as_deref(), Some("git"));
        assert!(a.lines[2].cert_authority);
        let key = a.lines[0].key.key_data().clone();
        let now = Utc::now();
        assert_eq!(
            a.accept(&key, "tend", now).unwrap().principals,
            "alice@example.com"
        );
    }

    #[test]
    fn namespace_and_time_refusals() {
        let text = format!("bob@x namespaces=\"git\" {KEY}\n");
        let a = AllowedSigners::parse(&text, Path::new("f")).unwrap();
        let key = a.lines[0].key.key_data().clone();
        assert!(matches!(
            a.accept(&key, "tend", Utc::now()),
            Err(Refusal::Namespace(_))
        ));
        let text = format!("bob@x valid-before=\"20200101Z\" {KEY}\n");
        let a = AllowedSigners::parse(&text, Path::new("f")).unwrap();
        assert!(matches!(
            a.accept(&key, "tend", Utc::now()),
            Err(Refusal::Time(_))
        ));
        let early = parse_time("20191231235959Z").unwrap();
        assert!(a.accept(&key, "tend", early).is_ok());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = AllowedSigners::parse("a@b ssh-ed25519 notbase64\n", Path::new("f")).unwrap_err();
        assert!(e.starts_with("f:1:"), "{e}");
        let e =
            AllowedSigners::parse(&format!("a@b frob=\"1\" {KEY}\n"), Path::new("f")).unwrap_err();
        assert!(e.contains("unsupported option `frob`"), "{e}");
        assert!(parse_time("2026010").is_err());
        assert_eq!(
            parse_time("20260102Z").unwrap().to_rfc3339(),
            "2026-01-02T00:00:00+00:00"
        );
    }
}
