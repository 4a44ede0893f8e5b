//! Users and groups of a target: what /etc/passwd and /etc/group say (read through the
//! [`Target`], never `getent`), the ids a new account gets, and the shadow-utils
//! commands (`useradd`, `usermod`, `userdel`, `groupadd`, `groupmod`, `groupdel`) that
//! change them. Shared by the operations that plan and make a change
//! (`crate::ops::user`) and by the journal that reverts it ([`revert`]).
//!
//! A password hash never leaves /etc/shadow through here except into a root-only
//! backup file on the target itself (see [`revert::AccountUndo::UserRemoved`]).

pub mod revert;

use serde::{Deserialize, Serialize};

use crate::transport::{shell_quote, ExecRequest, TResult, Target, TargetError};

/// A user as `user::present` sees and sets it (no password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub comment: String,
    pub home: String,
    pub shell: String,
    /// Supplementary groups, sorted.
    pub groups: Vec<String>,
}

impl User {
    /// The passwd line, for diffs (no secret in it: the hash is in /etc/shadow).
    pub fn passwd_line(&self) -> String {
        format!(
            "{}:x:{}:{}:{}:{}:{}",
            self.name, self.uid, self.gid, self.comment, self.home, self.shell
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The accounts of a host: its /etc/passwd and /etc/group.
#[derive(Debug, Clone, Default)]
pub struct Db {
    /// Passwd entries; `groups` filled from /etc/group's member lists.
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

impl Db {
    pub fn read(t: &dyn Target) -> TResult<Db> {
        let passwd = String::from_utf8_lossy(&t.read("/etc/passwd")?).into_owned();
        let group = String::from_utf8_lossy(&t.read("/etc/group")?).into_owned();
        let groups: Vec<Group> = group.lines().filter_map(parse_group).collect();
        let mut users: Vec<User> = passwd.lines().filter_map(parse_passwd).collect();
        for u in &mut users {
            u.groups = member_of(&groups, &u.name);
        }
        Ok(Db { users, groups })
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<&Group> {
        self.groups.iter().find(|g| g.gid == gid)
    }

    /// Put `user` in (replacing one of that name), or take `name` out (`None`), and
    /// its memberships with it: what a planned step leaves.
    pub fn set_user(&mut self, name: &str, user: Option<User>) {
        self.users.retain(|u| u.name != name);
        for g in &mut self.groups {
            g.members.retain(|m| m != name);
        }
        if let Some(u) = user {
            for g in &mut self.groups {
                if u.groups.contains(&g.name) {
                    g.members.push(name.to_string());
                }
            }
            self.users.push(u);
        }
    }

    pub fn set_group(&mut self, name: &str, group: Option<Group>) {
        self.groups.retain(|g| g.name != name);
        if let Some(g) = group {
            self.groups.push(g);
        }
        for u in &mut self.users {
            u.groups = member_of(&self.groups, &u.name);
        }
    }

    /// The id `useradd`/`groupadd` would give a new account: after the highest used
    /// in the normal range, or the highest free one of the system range.
    pub fn next_id(&self, ranges: &Ranges, user: bool, system: bool) -> Option<u32> {
        let (lo, hi) = match (user, system) {
            (true, false) => ranges.uid,
            (true, true) => ranges.sys_uid,
            (false, false) => ranges.gid,
            (false, true) => ranges.sys_gid,
        };
        let used = |id: u32| {
            if user {
                self.users.iter().any(|u| u.uid == id)
            } else {
                self.groups.iter().any(|g| g.gid == id)
            }
        };
        if system {
            return (lo..=hi).rev().find(|&id| !used(id));
        }
        let top = (lo..=hi).filter(|&id| used(id)).max();
        match top {
            Some(t) if t < hi => Some(t + 1),
            Some(_) => (lo..=hi).find(|&id| !used(id)),
            None => Some(lo),
        }
    }

    pub fn uid_used(&self, uid: u32) -> bool {
        self.users.iter().any(|u| u.uid == uid)
    }

    pub fn gid_used(&self, gid: u32) -> bool {
        self.groups.iter().any(|g| g.gid == gid)
    }
}

fn member_of(groups: &[Group], name: &str) -> Vec<String> {
    let mut out: Vec<String> = groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m == name))
        .map(|g| g.name.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn parse_passwd(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
        return None;
    }
    Some(User {
        name: f[0].into(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        comment: f[4].into(),
        home: f[5].into(),
        shell: f[6].into(),
        groups: Vec::new(),
    })
}

fn parse_group(line: &str) -> Option<Group> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
        return None;
    }
    Some(Group {
        name: f[0].into(),
        gid: f[2].parse().ok()?,
        members: f[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// Id ranges from /etc/login.defs (shadow-utils' defaults where it says nothing).
#[derive(Debug, Clone, Copy)]
pub struct Ranges {
    pub uid: (u32, u32),
    pub sys_uid: (u32, u32),
    pub gid: (u32, u32),
    pub sys_gid: (u32, u32),
}

/// What a new user gets when the step does not say: /etc/default/useradd's home
/// base and shell, /etc/login.defs' id ranges.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub home_base: String,
    pub shell: String,
    pub ranges: Ranges,
}

impl Defaults {
    pub fn read(t: &dyn Target) -> TResult<Defaults> {
        let text = |p: &str| -> TResult<String> {
            match t.stat(p)? {
                Some(_) => Ok(String::from_utf8_lossy(&t.read(p)?).into_owned()),
                None => Ok(String::new()),
            }
        };
        let defs = text("/etc/login.defs")?;
        let useradd = text("/etc/default/useradd")?;
        let num = |key: &str, default: u32| {
            defs.lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some(key)).then(|| w.next()?.parse().ok())?
                })
                .next_back()
                .unwrap_or(default)
        };
        let var = |key: &str, default: &str| {
            useradd
                .lines()
                .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
                .rfind(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Ok(Defaults {
            home_base: var("HOME", "/home"),
            shell: var("SHELL", "/bin/sh"),
            ranges: Ranges {
                uid: (num("UID_MIN", 1000), num("UID_MAX", 60000)),
                sys_uid: (num("SYS_UID_MIN", 101), num("SYS_UID_MAX", 999)),
                gid: (num("GID_MIN", 1000), num("GID_MAX", 60000)),
                sys_gid: (num("SYS_GID_MIN", 101), num("SYS_GID_MAX", 999)),
            },
        })
    }
}

/// The user's line of /etc/shadow, whole (read as root). Never logged or journaled.
pub fn shadow_line(t: &dyn Target, name: &str) -> TResult<Option<String>> {
    let text = String::from_utf8_lossy(&t.read("/etc/shadow")?).into_owned();
    Ok(text
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .map(String::from))
}

/// Run a shadow-utils command (`useradd …`) on the target; its words are quoted here.
/// `stdin` carries what must stay out of argv (a hash for `chpasswd -e`).
pub fn run(t: &dyn Target, words: &[String], stdin: Option<Vec<u8>>) -> TResult<()> {
    let command = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    // sbin is not on every login's PATH (a plain user's, over SSH through sudo).
    let line = format!("PATH=\"$PATH:/usr/sbin:/sbin\"; {command}");
    let out = t.exec(&ExecRequest {
        stdin,
        ..ExecRequest::new(line)
    })?;
    if out.code != 0 {
        let tool = words.first().map(String::as_str).unwrap_or("command");
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let why = if out.code == 127 {
            format!("{tool} is not installed on this host (tend needs shadow-utils' {tool})")
        } else if stderr.is_empty() {
            format!("exited with {}", out.code)
        } else {
            stderr
        };
        return Err(TargetError::host(
            &t.info().name,
            format!("`{command}` failed: {why}"),
        ));
    }
    Ok(())
}

/// `useradd`/`usermod` arguments that set `u`'s fields.
pub fn user_args(u: &User) -> Vec<String> {
    vec![
        "-u".into(),
        u.uid.to_string(),
        "-g".into(),
        u.gid.to_string(),
        "-c".into(),
        u.comment.clone(),
        "-d".into(),
        u.home.clone(),
        "-s".into(),
        u.shell.clone(),
        "-G".into(),
        u.groups.join(","),
    ]
}

/// Change user `from` (as it is now) into `to` with `usermod`, only the fields that
/// differ (so `usermod -u` does not walk the home for nothing).
pub fn usermod(t: &dyn Target, from: &User, to: &User) -> TResult<()> {
    let mut w: Vec<String> = vec!["usermod".into()];
    let all = user_args(to);
    let differs = [
        from.uid != to.uid,
        from.gid != to.gid,
        from.comment != to.comment,
        from.home != to.home,
        from.shell != to.shell,
        from.groups != to.groups,
    ];
    for (i, d) in differs.iter().enumerate() {
        if *d {
            w.push(all[2 * i].clone());
            w.push(all[2 * i + 1].clone());
        }
    }
    if w.len() == 1 {
        return Ok(());
    }
    w.push(to.name.clone());
    run(t, &w, None)
}

/// Where an account's line stood in one of the account files: after the line of
/// `after` (`None`: first). Re-created accounts are appended by the tools; a revert
/// moves them back, so the file comes back byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub file: String,
    pub after: Option<String>,
}

fn entry_name(line: &str) -> &str {
    line.split(':').next().unwrap_or_default()
}

/// Where `name` stands in each of `files` that has it (files root cannot read or
/// that do not exist are left out).
pub fn places(t: &dyn Target, files: &[&str], name: &str) -> TResult<Vec<Place>> {
    let mut out = Vec::new();
    for file in files {
        if t.stat(file)?.is_none() {
            continue;
        }
        let text = String::from_utf8_lossy(&t.read(file)?).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        if let Some(i) = lines.iter().position(|l| entry_name(l) == name) {
            out.push(Place {
                file: file.to_string(),
                after: i.checked_sub(1).map(|p| entry_name(lines[p]).to_string()),
            });
        }
    }
    Ok(out)
}

/// Move `name`'s line of each file back to its recorded place (a predecessor that is
/// gone since leaves it where the tool put it). The file keeps its mode and owner.
pub fn put_back(t: &dyn Target, places: &[Place], name: &str) -> TResult<()> {
    for p in places {
        let Some(meta) = t.stat(&p.file)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&t.read(&p.file)?).into_owned();
        let mut lines: Vec<&str> = text.lines().collect();
        let Some(i) = lines.iter().position(|l| entry_name(l) == name) else {
            continue;
        };
        let line = lines.remove(i);
        let at = match &p.after {
            None => 0,
            Some(a) => match lines.iter().position(|l| entry_name(l) == a) {
                Some(j) => j + 1,
                None => continue,
            },
        };
        if at == i {
            continue;
        }
        lines.insert(at, line);
        let mut new = lines.join("\n");
        new.push('\n');
        t.write(&p.file, new.as_bytes(), meta.mode)?;
    }
    Ok(())
}
