//! `ssh::authorized_key`: one key in a user's ~/.ssh/authorized_keys, through the
//! file operations (so its diff, backup, undo and dry-run are theirs), for a user of
//! the host or one an earlier step of the plan makes.

use super::{fs as fsop, user::db, Ctx, OpError, OpResult, StepReport};
use crate::transport::join;

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// The `type base64` of an authorized_keys line or a public key: what identifies a
/// key (options before it and the comment after it do not).
fn key_id(line: &str) -> Option<(String, String)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))?;
    Some((words[i].to_string(), words.get(i + 1)?.to_string()))
}

/// Ensure `key` is in (or, `present` false, not in) `user`'s ~/.ssh/authorized_keys,
/// matched by type and key, whatever the comment. The directory is made 0700 and
/// the file 0600, both owned by the user, as sshd's StrictModes wants.
pub fn authorized_key(ctx: &Ctx, user: &str, key: &str, present: bool) -> OpResult<StepReport> {
    const OP: &str = "ssh::authorized_key";
    let t = ctx.target.as_ref();
    let (kind, blob) = key_id(key).ok_or_else(|| {
        invalid("the key is not an SSH public key (`ssh-ed25519 AAAA… comment`)".to_string())
    })?;
    let db = db(ctx)?;
    let u = db
        .user(user)
        .cloned()
        .ok_or_else(|| invalid(format!("no user {user} on {}", ctx.host())))?;
    let dir = join(&u.home, ".ssh");
    let path = join(&dir, "authorized_keys");
    let subject = format!("{kind} key for {user}");
    let exists = t.stat(&path)?.is_some();
    let old = if exists {
        String::from_utf8_lossy(&t.read(&path)?).into_owned()
    } else {
        String::new()
    };
    let matches = |l: &str| key_id(l).is_some_and(|(k, b)| k == kind && b == blob);
    let new = if present {
        if old.lines().any(matches) {
            old.clone()
        } else {
            let mut s = old.clone();
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(key.trim());
            s.push('\n');
            s
        }
    } else {
        let kept: Vec<&str> = old.lines().filter(|l| !matches(l)).collect();
        if kept.len() == old.lines().count() {
            old.clone()
        } else {
            kept.iter().map(|l| format!("{l}\n")).collect()
        }
    };
    let mut out = StepReport::unchanged(OP, subject.clone());
    let mut merge = |r: StepReport| {
        if r.changed {
            out.changed = true;
            out.paths.extend(r.paths);
            if let Some(d) = r.diff {
                out.diff.get_or_insert_with(String::new).push_str(&d);
            }
        }
    };
    if !present && !exists {
        return Ok(out);
    }
    if present {
        merge(fsop::dir(ctx, &dir, Some(0o700))?);
        merge(fsop::chown(ctx, &dir, Some(u.uid), Some(u.gid))?);
    }
    merge(fsop::file(
        ctx,
        OP,
        &path,
        new.as_bytes(),
        Some(0o600),
        true,
    )?);
    merge(fsop::chown(ctx, &path, Some(u.uid), Some(u.gid))?);
    out.paths.dedup();
    Ok(out)
}
