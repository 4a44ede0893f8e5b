//! Users, groups and SSH keys: `user::present`, `user::absent`, `group::present`,
//! `group::absent`, and the name lookups of `owner:`/`group:` (keys: [`super::ssh_key`]).
//!
//! Every id a new account gets is chosen here, from the host's files and the plan,
//! and passed to `useradd`/`groupadd` explicitly: so the dry-run plans exactly the
//! uid and gid the run then sets, and each undo record holds the account as the
//! step leaves it. A dry-run runs no command: it reads /etc/passwd and /etc/group
//! and records the accounts it plans (`user:NAME`, `group:NAME`) for later steps.

use super::{Ctx, OpError, OpResult, StepReport};
use crate::account::revert::{AccountUndo, ShadowSave};
use crate::account::{self, Db, Defaults, Group, User};
use crate::journal::undo::Undo;
use crate::transport::join;

/// The files a group has a line in.
const GROUP_FILES: [&str; 2] = ["/etc/group", "/etc/gshadow"];

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// What `user::present` asks for; `None`: as it is (or the default, for a new user).
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    pub uid: Option<u32>,
    /// The primary group (name or number).
    pub group: Option<String>,
    /// Supplementary groups: exactly these, or these added (`append`).
    pub groups: Option<Vec<String>>,
    pub append: bool,
    pub shell: Option<String>,
    pub home: Option<String>,
    pub comment: Option<String>,
    pub system: bool,
    /// Make the home from /etc/skel (default: for a non-system user).
    pub create_home: Option<bool>,
}

/// A name `useradd` takes and that cannot break a line of /etc/passwd.
pub fn check_name(kind: &str, name: &str) -> OpResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || b == b'$');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not a valid {kind} name (letters, digits, `.`, `_`, `-`; not starting with `-`)"
        )))
    }
}

/// The host's accounts as this point of the run has them: in a dry-run, with the
/// users and groups earlier steps planned.
pub fn db(ctx: &Ctx) -> OpResult<Db> {
    let mut db = Db::read(ctx.target.as_ref())?;
    for (key, value) in ctx.planned_under("group:") {
        let name = &key["group:".len()..];
        db.set_group(name, serde_json::from_str::<Group>(&value).ok());
    }
    for (key, value) in ctx.planned_under("user:") {
        let name = &key["user:".len()..];
        db.set_user(name, serde_json::from_str::<User>(&value).ok());
    }
    Ok(db)
}

fn plan_user(ctx: &Ctx, name: &str, user: Option<&User>) {
    let v = user
        .and_then(|u| serde_json::to_string(u).ok())
        .unwrap_or_else(|| "absent".into());
    ctx.set_planned(&format!("user:{name}"), v);
}

fn plan_group(ctx: &Ctx, name: &str, group: Option<&Group>) {
    let v = group
        .and_then(|g| serde_json::to_string(g).ok())
        .unwrap_or_else(|| "absent".into());
    ctx.set_planned(&format!("group:{name}"), v);
}

fn record(ctx: &Ctx, op: &str, account: AccountUndo) -> OpResult<()> {
    ctx.will(
        op,
        Undo::Account {
            account: Box::new(account),
        },
    )
}

/// A uid for `owner:` (a name on the host, a planned user, or a number).
pub fn uid_of(ctx: &Ctx, name: &str) -> OpResult<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    db(ctx)?.user(name).map(|u| u.uid).ok_or_else(|| {
        invalid(format!(
            "no user {name} on {} (not in its /etc/passwd)",
            ctx.host()
        ))
    })
}

/// A gid for `group:` (a name on the host, a planned group, or a number).
pub fn gid_of(ctx: &Ctx, name: &str) -> OpResult<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    db(ctx)?.group(name).map(|g| g.gid).ok_or_else(|| {
        invalid(format!(
            "no group {name} on {} (not in its /etc/group)",
            ctx.host()
        ))
    })
}

fn group_named(db: &Db, host: &str, name: &str) -> OpResult<Group> {
    let found = match name.parse::<u32>() {
        Ok(gid) => db.group_by_gid(gid),
        Err(_) => db.group(name),
    };
    found
        .cloned()
        .ok_or_else(|| invalid(format!("no group {name} on {host}")))
}

/// Ensure user `name` exists with what `spec` asks.
pub fn user_present(ctx: &Ctx, name: &str, spec: &UserSpec) -> OpResult<StepReport> {
    const OP: &str = "user::present";
    check_name("user", name)?;
    let t = ctx.target.as_ref();
    let db = db(ctx)?;
    let host = ctx.host().to_string();
    let mut groups = Vec::new();
    for g in spec.groups.iter().flatten() {
        groups.push(group_named(&db, &host, g)?.name);
    }
    if let Some(uid) = spec.uid {
        if let Some(other) = db.users.iter().find(|u| u.uid == uid && u.name != name) {
            return Err(invalid(format!(
                "uid {uid} is taken by user {} on {host}",
                other.name
            )));
        }
    }
    let subject = format!("user {name}");
    let Some(cur) = db.user(name).cloned() else {
        return create_user(ctx, &db, name, spec, groups);
    };
    let mut want = cur.clone();
    if let Some(uid) = spec.uid {
        want.uid = uid;
    }
    if let Some(g) = &spec.group {
        want.gid = group_named(&db, &host, g)?.gid;
    }
    if let Some(c) = &spec.comment {
        want.comment = c.clone();
    }
    if let Some(h) = &spec.home {
        want.home = h.clone();
    }
    if let Some(s) = &spec.shell {
        want.shell = s.clone();
    }
    if spec.groups.is_some() {
        if spec.append {
            groups.extend(cur.groups.iter().cloned());
        }
        groups.sort();
        groups.dedup();
        want.groups = groups;
    }
    if want == cur {
        return Ok(StepReport::unchanged(OP, subject));
    }
    let mut diff = String::new();
    if want.passwd_line() != cur.passwd_line() {
        diff.push_str(&format!(
            "-{}\n+{}\n",
            cur.passwd_line(),
            want.passwd_line()
        ));
    }
    let mut paths = vec!["/etc/passwd".to_string()];
    if want.groups != cur.groups {
        diff.push_str(&format!(
            "groups {} -> {}\n",
            list(&cur.groups),
            list(&want.groups)
        ));
        paths.push("/etc/group".into());
    }
    let mut r = StepReport::changed(OP, subject, paths);
    r.diff = Some(diff);
    record(
        ctx,
        OP,
        AccountUndo::UserChanged {
            before: cur.clone(),
            left: want.clone(),
        },
    )?;
    if !ctx.dry_run() {
        account::usermod(t, &cur, &want)?;
    }
    plan_user(ctx, name, Some(&want));
    Ok(r)
}

fn list(groups: &[String]) -> String {
    if groups.is_empty() {
        "(none)".into()
    } else {
        groups.join(",")
    }
}

fn create_user(
    ctx: &Ctx,
    db: &Db,
    name: &str,
    spec: &UserSpec,
    mut groups: Vec<String>,
) -> OpResult<StepReport> {
    const OP: &str = "user::present";
    let t = ctx.target.as_ref();
    let host = ctx.host().to_string();
    let defaults = Defaults::read(t)?;
    let uid = match spec.uid {
        Some(u) => u,
        None => db
            .next_id(&defaults.ranges, true, spec.system)
            .ok_or_else(|| invalid(format!("no free uid left on {host}")))?,
    };
    // The primary group: the one asked for, else the group of the user's name
    // (made now, with the uid as gid when free, as useradd's USERGROUPS_ENAB does).
    let (gid, new_group) = match (&spec.group, db.group(name)) {
        (Some(g), _) => (group_named(db, &host, g)?.gid, None),
        (None, Some(g)) => (g.gid, None),
        (None, None) => {
            let gid = if db.gid_used(uid) {
                db.next_id(&defaults.ranges, false, spec.system)
                    .ok_or_else(|| invalid(format!("no free gid left on {host}")))?
            } else {
                uid
            };
            let g = Group {
                name: name.to_string(),
                gid,
                members: Vec::new(),
            };
            (gid, Some(g))
        }
    };
    groups.sort();
    groups.dedup();
    let user = User {
        name: name.to_string(),
        uid,
        gid,
        comment: spec.comment.clone().unwrap_or_default(),
        home: spec
            .home
            .clone()
            .unwrap_or_else(|| join(&defaults.home_base, name)),
        shell: spec.shell.clone().unwrap_or(defaults.shell),
        groups,
    };
    let home_created = spec.create_home.unwrap_or(!spec.system) && t.stat(&user.home)?.is_none();

    let mut diff = format!("+{}\n", user.passwd_line());
    let mut paths = vec!["/etc/passwd".to_string(), "/etc/shadow".to_string()];
    if let Some(g) = &new_group {
        diff.push_str(&format!("+group {} (gid {})\n", g.name, g.gid));
    }
    if !user.groups.is_empty() {
        diff.push_str(&format!("groups {}\n", list(&user.groups)));
    }
    if new_group.is_some() || !user.groups.is_empty() {
        paths.push("/etc/group".into());
    }
    if home_created {
        diff.push_str(&format!("+home {} (from /etc/skel)\n", user.home));
        paths.push(user.home.clone());
    }
    let mut r = StepReport::changed(OP, format!("user {name}"), paths);
    r.diff = Some(diff);

    if let Some(g) = &new_group {
        record(ctx, OP, AccountUndo::GroupCreated { group: g.clone() })?;
        if !ctx.dry_run() {
            let mut w = vec!["groupadd".to_string(), "-g".into(), g.gid.to_string()];
            if spec.system {
                w.push("-r".into());
            }
            w.push(g.name.clone());
            account::run(t, &w, None)?;
        }
        plan_group(ctx, &g.name, Some(g));
    }
    record(
        ctx,
        OP,
        AccountUndo::UserCreated {
            user: user.clone(),
            home_created,
        },
    )?;
    if ctx.dry_run() {
        if home_created {
            // So that a later step of the plan (a key in ~/.ssh) finds the home.
            super::mkdir_p(t, &user.home, 0o755)?;
            t.chown(&user.home, user.uid, user.gid)?;
        }
    } else {
        let mut w = vec!["useradd".to_string()];
        if spec.system {
            w.push("-r".into());
        }
        w.push(if home_created { "-m" } else { "-M" }.into());
        let mut args = account::user_args(&user);
        if user.groups.is_empty() {
            args.truncate(args.len() - 2); // useradd refuses `-G ''`
        }
        w.extend(args);
        w.push(name.to_string());
        account::run(t, &w, None)?;
    }
    plan_user(ctx, name, Some(&user));
    Ok(r)
}

/// Ensure there is no user `name` (its home is left, as `userdel` does).
pub fn user_absent(ctx: &Ctx, name: &str) -> OpResult<StepReport> {
    const OP: &str = "user::absent";
    check_name("user", name)?;
    let t = ctx.target.as_ref();
    let db = db(ctx)?;
    let subject = format!("user {name}");
    let Some(cur) = db.user(name).cloned() else {
        return Ok(StepReport::unchanged(OP, subject));
    };
    // userdel takes the user's own group with it when nobody else is in it.
    let own_group = db
        .group_by_gid(cur.gid)
        .filter(|g| g.name == name && g.members.is_empty())
        .cloned();
    // Read in a dry-run too: the plan fails where the run could not read it.
    let shadow = account::shadow_line(t, name)?;
    let mut paths = vec!["/etc/passwd".to_string(), "/etc/shadow".to_string()];
    if own_group.is_some() || !cur.groups.is_empty() {
        paths.push("/etc/group".into());
    }
    let mut r = StepReport::changed(OP, subject, paths);
    let mut diff = format!("-{}\n", cur.passwd_line());
    if let Some(g) = &own_group {
        diff.push_str(&format!("-group {} (gid {})\n", g.name, g.gid));
    }
    r.diff = Some(diff);
    let shadow = match shadow {
        Some(line) => {
            let (backup, sha256) =
                ctx.save_backup(&format!("shadow-{name}"), format!("{line}\n").as_bytes())?;
            Some(ShadowSave { backup, sha256 })
        }
        None => None,
    };
    let group = db.group_by_gid(cur.gid).cloned();
    let places = account::places(t, &["/etc/passwd", "/etc/shadow"], name)?;
    let group_places = match &own_group {
        Some(g) => account::places(t, &GROUP_FILES, &g.name)?,
        None => Vec::new(),
    };
    record(
        ctx,
        OP,
        AccountUndo::UserRemoved {
            before: cur,
            group,
            shadow,
            places,
            group_places,
        },
    )?;
    if !ctx.dry_run() {
        account::run(t, &["userdel".into(), name.into()], None)?;
    }
    plan_user(ctx, name, None);
    if let Some(g) = &own_group {
        plan_group(ctx, &g.name, None);
    }
    Ok(r)
}

/// Ensure group `name` exists, with `gid` when given.
pub fn group_present(
    ctx: &Ctx,
    name: &str,
    gid: Option<u32>,
    system: bool,
) -> OpResult<StepReport> {
    const OP: &str = "group::present";
    check_name("group", name)?;
    let t = ctx.target.as_ref();
    let db = db(ctx)?;
    let host = ctx.host().to_string();
    let subject = format!("group {name}");
    if let Some(g) = gid {
        if let Some(other) = db.groups.iter().find(|x| x.gid == g && x.name != name) {
            return Err(invalid(format!(
                "gid {g} is taken by group {} on {host}",
                other.name
            )));
        }
    }
    let paths = vec!["/etc/group".to_string()];
    match db.group(name).cloned() {
        Some(cur) if gid.is_none_or(|g| g == cur.gid) => Ok(StepReport::unchanged(OP, subject)),
        Some(cur) => {
            let mut left = cur.clone();
            left.gid = gid.expect("differs");
            let mut r = StepReport::changed(OP, subject, paths);
            r.diff = Some(format!("gid {} -> {}\n", cur.gid, left.gid));
            record(
                ctx,
                OP,
                AccountUndo::GroupChanged {
                    before: cur,
                    left: left.clone(),
                },
            )?;
            if !ctx.dry_run() {
                account::run(
                    t,
                    &[
                        "groupmod".into(),
                        "-g".into(),
                        left.gid.to_string(),
                        name.into(),
                    ],
                    None,
                )?;
            }
            plan_group(ctx, name, Some(&left));
            Ok(r)
        }
        None => {
            let ranges = Defaults::read(t)?.ranges;
            let gid = match gid {
                Some(g) => g,
                None => db
                    .next_id(&ranges, false, system)
                    .ok_or_else(|| invalid(format!("no free gid left on {host}")))?,
            };
            let group = Group {
                name: name.to_string(),
                gid,
                members: Vec::new(),
            };
            let mut r = StepReport::changed(OP, subject, paths);
            r.diff = Some(format!("+group {name} (gid {gid})\n"));
            record(
                ctx,
                OP,
                AccountUndo::GroupCreated {
                    group: group.clone(),
                },
            )?;
            if !ctx.dry_run() {
                let mut w = vec!["groupadd".to_string(), "-g".into(), gid.to_string()];
                if system {
                    w.push("-r".into());
                }
                w.push(name.into());
                account::run(t, &w, None)?;
            }
            plan_group(ctx, name, Some(&group));
            Ok(r)
        }
    }
}

/// Ensure there is no group `name` (refused while it is a user's primary group).
pub fn group_absent(ctx: &Ctx, name: &str) -> OpResult<StepReport> {
    const OP: &str = "group::absent";
    check_name("group", name)?;
    let t = ctx.target.as_ref();
    let db = db(ctx)?;
    let subject = format!("group {name}");
    let Some(cur) = db.group(name).cloned() else {
        return Ok(StepReport::unchanged(OP, subject));
    };
    if let Some(u) = db.users.iter().find(|u| u.gid == cur.gid) {
        return Err(invalid(format!(
            "group {name} is the primary group of user {}; not removing it",
            u.name
        )));
    }
    let mut r = StepReport::changed(OP, subject, vec!["/etc/group".into()]);
    r.diff = Some(format!("-group {name} (gid {})\n", cur.gid));
    let places = account::places(t, &GROUP_FILES, name)?;
    record(ctx, OP, AccountUndo::GroupRemoved { group: cur, places })?;
    if !ctx.dry_run() {
        account::run(t, &["groupdel".into(), name.into()], None)?;
    }
    plan_group(ctx, name, None);
    Ok(r)
}
