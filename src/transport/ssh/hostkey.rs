//! Host key verification against OpenSSH `known_hosts` files.
//!
//! Each line is judged on its own: does it name this host, and does it hold the
//! offered key? Plain host patterns are matched here as OpenSSH does (comma lists,
//! `*`/`?` wildcards, `!` negation, case-insensitive, `[host]:port`); hashed `|1|…`
//! names are checked by libssh2 (HMAC-SHA1), one line at a time. Keys are compared
//! with their key types in view, because libssh2's own check ignores the type and
//! would call a host known by its RSA key "changed" when it offers ed25519:
//!
//! * a line for this host with the offered key → known;
//! * a line for this host, same key type, other key → **changed** (refused always);
//! * lines for this host only with other key types → also refused: before the
//!   handshake we ask the server for the key types we know first (as OpenSSH does), so
//!   a server that no longer offers any of them has been re-keyed or is an impostor;
//! * no line for this host → unknown (refused unless `AcceptNew`);
//! * `@revoked` lines refuse the key they hold; `@cert-authority` lines are skipped
//!   (host certificates are not supported).
//!
//! Host names are looked up as OpenSSH does: `host` on port 22, `[host]:port` otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use ssh2::{CheckResult, KnownHostFileKind, Session};

/// The key a server offered during the handshake.
pub(crate) struct ServerKey {
    pub blob: Vec<u8>,
    /// As in known_hosts: `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, …
    pub type_name: String,
}

impl ServerKey {
    pub fn from_session(sess: &Session) -> Option<ServerKey> {
        let (blob, _) = sess.host_key()?;
        let type_name = blob_type(blob).unwrap_or_else(|| "unknown".into());
        Some(ServerKey {
            blob: blob.to_vec(),
            type_name,
        })
    }

    /// `SHA256:…` exactly as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }

    /// `ED25519`, `RSA`, `ECDSA`, … as OpenSSH names key types in its messages.
    pub fn short_type(&self) -> &'static str {
        short_type(&self.type_name)
    }
}

pub(crate) fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64(&Sha256::digest(blob), false))
}

fn short_type(type_name: &str) -> &'static str {
    match type_name {
        "ssh-ed25519" => "ED25519",
        "ssh-rsa" => "RSA",
        "ssh-dss" => "DSA",
        t if t.starts_with("ecdsa-sha2-") => "ECDSA",
        t if t.starts_with("sk-ssh-ed25519") => "ED25519-SK",
        t if t.starts_with("sk-ecdsa") => "ECDSA-SK",
        _ => "unknown",
    }
}

/// The key type string at the start of an SSH public key blob.
fn blob_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    String::from_utf8(name.to_vec()).ok()
}

/// Base64 (standard alphabet), with or without `=` padding.
pub(crate) fn base64(data: &[u8], pad: bool) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The name a host has in known_hosts: `host` on port 22, `[host]:port` otherwise.
pub(crate) fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

/// One known_hosts line that names the host.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub file: PathBuf,
    pub line: usize,
    pub type_name: String,
    pub matches: bool,
    pub revoked: bool,
}

impl Entry {
    pub fn place(&self) -> String {
        format!("{}:{}", super::tilde(&self.file), self.line)
    }
}

/// Every line of `files` that names `address`/`port`, and whether it holds `key`.
/// With `key == None`, only which lines name the host (to learn the known key types).
pub(crate) fn lookup(
    sess: &Session,
    files: &[PathBuf],
    address: &str,
    port: u16,
    key: Option<&[u8]>,
) -> Vec<Entry> {
    let name = known_hosts_name(address, port);
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (revoked, rest) = match line.strip_prefix('@') {
                Some(marked) => {
                    let (marker, rest) = marked
                        .split_once(char::is_whitespace)
                        .unwrap_or((marked, ""));
                    match marker {
                        "revoked" => (true, rest.trim_start()),
                        _ => continue, // @cert-authority: tend does not use host certificates
                    }
                }
                None => (false, line),
            };
            let mut fields = rest.split_whitespace();
            let (Some(hosts), Some(type_name), Some(line_key)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let names_host = if hosts.starts_with("|1|") {
                // Hashed: only libssh2 can tell. With a key that matches nothing, a
                // line naming the host answers "mismatch".
                let Ok(mut kh) = sess.known_hosts() else {
                    continue;
                };
                let line_for_libssh2 = format!("{hosts} {type_name} {line_key}");
                kh.read_str(&line_for_libssh2, KnownHostFileKind::OpenSSH)
                    .is_ok()
                    && matches!(
                        kh.check(&name, b"\0tend-probe"),
                        CheckResult::Mismatch | CheckResult::Match
                    )
            } else {
                pattern_list_matches(hosts, &name)
            };
            if !names_host {
                continue;
            }
            let matches = key
                .map(|k| line_key.trim_end_matches('=') == base64(k, false))
                .unwrap_or(false);
            found.push(Entry {
                file: file.clone(),
                line: i + 1,
                type_name: type_name.to_string(),
                matches,
                revoked,
            });
        }
    }
    found
}

/// OpenSSH `match_hostname`: a comma list of patterns, `!` negates and wins.
fn pattern_list_matches(list: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for pattern in list.split(',').filter(|p| !p.is_empty()) {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if glob(pattern.to_ascii_lowercase().as_bytes(), name.as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` and `?` wildcards (iterative, with backtracking to the last `*`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The libssh2 host key method names for a known_hosts key type.
fn methods_for(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        _ => &[],
    }
}

/// Host key algorithm preference: the types already known for this host first, so
/// the server proves the identity we have on record (what OpenSSH does too).
pub(crate) fn preference(sess: &Session, known: &[Entry]) -> Option<String> {
    let supported = sess.supported_algs(ssh2::MethodType::HostKey).ok()?;
    let mut prefs: Vec<&str> = Vec::new();
    for e in known.iter().filter(|e| !e.revoked) {
        for m in methods_for(&e.type_name) {
            if supported.contains(m) && !prefs.contains(m) {
                prefs.push(m);
            }
        }
    }
    if prefs.is_empty() {
        return None;
    }
    // ssh-rsa (SHA-1 signatures) stays out: it is not safe and libssh2 here lacks it.
    for m in supported {
        if !prefs.contains(&m) && m != "ssh-rsa" && m != "ssh-dss" {
            prefs.push(m);
        }
    }
    Some(prefs.join(","))
}

pub(crate) enum Verdict {
    Known,
    Unknown,
    /// Same key type on record, other key.
    Changed(Entry),
    /// Only other key types on record: the server no longer offers the key we know.
    OtherTypes(Vec<Entry>),
    Revoked(Entry),
}

pub(crate) fn verdict(entries: &[Entry], key: &ServerKey) -> Verdict {
    if let Some(e) = entries.iter().find(|e| e.revoked && e.matches) {
        return Verdict::Revoked(e.clone());
    }
    let live: Vec<&Entry> = entries.iter().filter(|e| !e.revoked).collect();
    if live.iter().any(|e| e.matches) {
        return Verdict::Known;
    }
    if let Some(e) = live.iter().find(|e| e.type_name == key.type_name) {
        return Verdict::Changed((*e).clone());
    }
    if !live.is_empty() {
        return Verdict::OtherTypes(live.into_iter().cloned().collect());
    }
    Verdict::Unknown
}

/// Append the host's key to `file` (created with its directory if missing).
pub(crate) fn append(
    file: &Path,
    address: &str,
    port: u16,
    key: &ServerKey,
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    let needs_newline = std::fs::read(file)
        .map(|b| !b.is_empty() && !b.ends_with(b"\n"))
        .unwrap_or(false);
    let line = format!(
        "{}{} {} {}\n",
        if needs_newline { "\n" } else { "" },
        known_hosts_name(address, port),
        key.type_name,
        base64(&key.blob, true)
    );
    // One write with O_APPEND: hosts accepted in parallel do not interleave.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_openssl() {
        assert_eq!(base64(b"", true), "");
        assert_eq!(base64(b"f", true), "Zg==");
        assert_eq!(base64(b"fo", true), "Zm8=");
        assert_eq!(base64(b"foo", true), "Zm9v");
        assert_eq!(base64(b"foob", false), "Zm9vYg");
        assert_eq!(base64(&[0xfb, 0xff], true), "+/8=");
    }

    #[test]
    fn host_patterns_like_openssh() {
        assert!(pattern_list_matches("web1,10.0.0.5", "10.0.0.5"));
        assert!(pattern_list_matches("WEB1", "web1"));
        assert!(pattern_list_matches("*.example.com", "db.example.com"));
        assert!(!pattern_list_matches("*.example.com", "example.com"));
        assert!(pattern_list_matches("10.0.0.?", "10.0.0.7"));
        assert!(!pattern_list_matches(
            "*.example.com,!db.example.com",
            "db.example.com"
        ));
        assert!(pattern_list_matches("[10.0.0.5]:2222", "[10.0.0.5]:2222"));
        assert!(!pattern_list_matches("10.0.0.5", "[10.0.0.5]:2222"));
        assert!(pattern_list_matches(
            "[*.example.com]:2222",
            "[a.example.com]:2222"
        ));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
    }

    #[test]
    fn names() {
        assert_eq!(known_hosts_name("web1", 22), "web1");
        assert_eq!(known_hosts_name("10.0.0.5", 2222), "[10.0.0.5]:2222");
        let blob = [&[0, 0, 0, 11][..], b"ssh-ed25519", &[0, 0, 0, 1, 7]].concat();
        assert_eq!(blob_type(&blob).as_deref(), Some("ssh-ed25519"));
        assert_eq!(short_type("ecdsa-sha2-nistp256"), "ECDSA");
    }
}
