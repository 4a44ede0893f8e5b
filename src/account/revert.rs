//! Undo records of user and group steps, and how each is reverted.
//!
//! Each record carries the account as the step left it; a revert first compares the
//! host's account with it and refuses when somebody changed it since, as file
//! records do with their fingerprints. Every revert tolerates the change never
//! having happened (the record is written before it): then it has nothing to do.

use serde::{Deserialize, Serialize};

use super::{put_back, run, user_args, usermod, Db, Group, Place, User};
use crate::transport::{join, Kind, TResult, Target, TargetError};

/// Where a removed user's /etc/shadow line was saved (mode 0600, in the run's
/// backup directory on the host): the journal never holds the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowSave {
    pub backup: String,
    /// SHA-256 of the backup: one altered since is refused.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AccountUndo {
    /// The step created `user`; `home_created`: and its home, from /etc/skel.
    UserCreated {
        user: User,
        home_created: bool,
    },
    /// The step changed the user from `before` to `left`.
    UserChanged {
        before: User,
        left: User,
    },
    /// The step removed the user (not its home); `group`: its primary group, which
    /// `userdel` removes with it when nobody else is in it.
    UserRemoved {
        before: User,
        group: Option<Group>,
        shadow: Option<ShadowSave>,
        /// Where its lines stood (/etc/passwd, /etc/shadow; its group's in
        /// /etc/group and /etc/gshadow).
        #[serde(default)]
        places: Vec<Place>,
        #[serde(default)]
        group_places: Vec<Place>,
    },
    GroupCreated {
        group: Group,
    },
    /// The step changed the group's id.
    GroupChanged {
        before: Group,
        left: Group,
    },
    GroupRemoved {
        group: Group,
        #[serde(default)]
        places: Vec<Place>,
    },
}

/// What came of a revert: done, or nothing to do.
pub enum Outcome {
    Done,
    NotNeeded,
}

fn refused(t: &dyn Target, why: String) -> TargetError {
    TargetError::host(&t.info().name, why)
}

impl AccountUndo {
    pub fn describe(&self) -> String {
        match self {
            AccountUndo::UserCreated { user, home_created } => format!(
                "remove user {}{}",
                user.name,
                if *home_created {
                    format!(" and its home {}", user.home)
                } else {
                    String::new()
                }
            ),
            AccountUndo::UserChanged { before, .. } => {
                format!("restore user {} ({})", before.name, before.passwd_line())
            }
            AccountUndo::UserRemoved { before, .. } => format!("recreate user {}", before.name),
            AccountUndo::GroupCreated { group } => format!("remove group {}", group.name),
            AccountUndo::GroupChanged { before, .. } => {
                format!("restore group {} (gid {})", before.name, before.gid)
            }
            AccountUndo::GroupRemoved { group, .. } => format!("recreate group {}", group.name),
        }
    }

    /// Revert on `t` (root's view of the host). An error refuses: the account is
    /// not what the step left.
    pub fn revert(&self, t: &dyn Target) -> TResult<Outcome> {
        let db = Db::read(t)?;
        match self {
            AccountUndo::UserCreated { user, home_created } => {
                let Some(now) = db.user(&user.name) else {
                    return Ok(Outcome::NotNeeded);
                };
                if now != user {
                    return Err(refused(t, drift("user", &user.name, user, now)));
                }
                let remove_home = *home_created && t.stat(&user.home)?.is_some();
                if remove_home && !same_tree(t, "/etc/skel", &user.home)? {
                    return Err(refused(
                        t,
                        format!(
                            "the home {} of user {} changed since the run created it; \
                             not removing the user nor its home",
                            user.home, user.name
                        ),
                    ));
                }
                let primary = db.group_by_gid(user.gid).cloned();
                let mut w = vec!["userdel".to_string()];
                if remove_home {
                    w.push("-r".into());
                }
                w.push(user.name.clone());
                run(t, &w, None)?;
                keep_group(t, primary)?;
                Ok(Outcome::Done)
            }
            AccountUndo::UserChanged { before, left } => {
                let Some(now) = db.user(&before.name) else {
                    return Err(refused(
                        t,
                        format!(
                            "user {} was removed since the run changed it; not recreated",
                            before.name
                        ),
                    ));
                };
                if now == before {
                    return Ok(Outcome::NotNeeded);
                }
                if now != left {
                    return Err(refused(t, drift("user", &before.name, left, now)));
                }
                usermod(t, now, before)?;
                Ok(Outcome::Done)
            }
            AccountUndo::UserRemoved {
                before,
                group,
                shadow,
                places,
                group_places,
            } => {
                if let Some(now) = db.user(&before.name) {
                    if now == before {
                        return Ok(Outcome::NotNeeded);
                    }
                    return Err(refused(
                        t,
                        format!(
                            "a user {} exists again ({}); not recreating the one the run removed",
                            before.name,
                            now.passwd_line()
                        ),
                    ));
                }
                let saved = match shadow {
                    Some(s) => Some(read_backup(t, s)?),
                    None => None,
                };
                if db.group_by_gid(before.gid).is_none() {
                    if let Some(g) = group {
                        add_group(t, g, &db)?;
                        put_back(t, group_places, &g.name)?;
                    }
                }
                let mut w = vec!["useradd".to_string(), "-M".into()];
                w.extend(user_args(before));
                w.push(before.name.clone());
                run(t, &w, None)?;
                if let Some(line) = saved {
                    restore_shadow(t, &before.name, &line)?;
                }
                put_back(t, places, &before.name)?;
                Ok(Outcome::Done)
            }
            AccountUndo::GroupCreated { group } => {
                let Some(now) = db.group(&group.name) else {
                    return Ok(Outcome::NotNeeded);
                };
                if now.gid != group.gid || !now.members.is_empty() {
                    return Err(refused(t, drift("group", &group.name, group, now)));
                }
                run(t, &["groupdel".into(), group.name.clone()], None)?;
                Ok(Outcome::Done)
            }
            AccountUndo::GroupChanged { before, left } => {
                let Some(now) = db.group(&before.name) else {
                    return Err(refused(
                        t,
                        format!(
                            "group {} was removed since the run changed it; not recreated",
                            before.name
                        ),
                    ));
                };
                if now.gid == before.gid {
                    return Ok(Outcome::NotNeeded);
                }
                if now.gid != left.gid {
                    return Err(refused(t, drift("group", &before.name, left, now)));
                }
                run(
                    t,
                    &[
                        "groupmod".into(),
                        "-g".into(),
                        before.gid.to_string(),
                        before.name.clone(),
                    ],
                    None,
                )?;
                Ok(Outcome::Done)
            }
            AccountUndo::GroupRemoved { group, places } => {
                if let Some(now) = db.group(&group.name) {
                    if now.gid == group.gid {
                        return Ok(Outcome::NotNeeded);
                    }
                    return Err(refused(
                        t,
                        format!(
                            "a group {} exists again (gid {}); not recreating the one the run removed",
                            group.name, now.gid
                        ),
                    ));
                }
                add_group(t, group, &db)?;
                put_back(t, places, &group.name)?;
                Ok(Outcome::Done)
            }
        }
    }
}

fn drift<T: std::fmt::Debug>(kind: &str, name: &str, left: &T, now: &T) -> String {
    format!(
        "{kind} {name} changed since the run left it (it left {left:?}; now it is {now:?}); \
         not reverted"
    )
}

/// `groupadd -g GID NAME`, then its members (those that exist).
fn add_group(t: &dyn Target, g: &Group, db: &Db) -> TResult<()> {
    run(
        t,
        &[
            "groupadd".into(),
            "-g".into(),
            g.gid.to_string(),
            g.name.clone(),
        ],
        None,
    )?;
    let members: Vec<&str> = g
        .members
        .iter()
        .filter(|m| db.user(m).is_some())
        .map(String::as_str)
        .collect();
    if !members.is_empty() {
        run(
            t,
            &[
                "gpasswd".into(),
                "-M".into(),
                members.join(","),
                g.name.clone(),
            ],
            None,
        )?;
    }
    Ok(())
}

/// `userdel` also removes the user's primary group when it is named after the user
/// and has no other member (USERGROUPS_ENAB): a group the step did not create is
/// put back. (One it created has its own record, which then removes it.)
fn keep_group(t: &dyn Target, primary: Option<Group>) -> TResult<()> {
    let Some(g) = primary else {
        return Ok(());
    };
    let db = Db::read(t)?;
    if db.group_by_gid(g.gid).is_none() {
        add_group(t, &g, &db)?;
    }
    Ok(())
}

fn read_backup(t: &dyn Target, s: &ShadowSave) -> TResult<String> {
    if t.stat(&s.backup)?.is_none() {
        return Err(refused(
            t,
            format!(
                "the saved /etc/shadow line {} is missing; not recreating the user",
                s.backup
            ),
        ));
    }
    let bytes = t.read(&s.backup)?;
    if sha256(&bytes) != s.sha256 {
        return Err(refused(
            t,
            format!(
                "the saved /etc/shadow line {} was altered since the run saved it; \
                 not recreating the user",
                s.backup
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
}

/// Put a saved shadow line back: the hash through `chpasswd -e`'s stdin (never
/// argv), then the ageing fields, which are not secret, with `chage`.
fn restore_shadow(t: &dyn Target, name: &str, line: &str) -> TResult<()> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 8 || f[0] != name {
        return Err(refused(
            t,
            format!(
                "the saved /etc/shadow line of {name} is not one; its password was not restored"
            ),
        ));
    }
    run(
        t,
        &["chpasswd".into(), "-e".into()],
        Some(format!("{name}:{}\n", f[1]).into_bytes()),
    )?;
    let num = |s: &str| {
        if s.is_empty() {
            "-1".to_string()
        } else {
            s.to_string()
        }
    };
    let mut w: Vec<String> = vec!["chage".into()];
    for (flag, i) in [
        ("-d", 2),
        ("-m", 3),
        ("-M", 4),
        ("-W", 5),
        ("-I", 6),
        ("-E", 7),
    ] {
        w.push(flag.into());
        w.push(num(f[i]));
    }
    w.push(name.into());
    run(t, &w, None)
}

/// Whether `b` holds what `a` holds (names, kinds, bytes): a home still as
/// `useradd -m` copied it from /etc/skel.
fn same_tree(t: &dyn Target, a: &str, b: &str) -> TResult<bool> {
    let (la, lb) = (t.list_dir(a)?, t.list_dir(b)?);
    if la != lb {
        return Ok(false);
    }
    for name in la {
        let (pa, pb) = (join(a, &name), join(b, &name));
        let (Some(ma), Some(mb)) = (t.stat(&pa)?, t.stat(&pb)?) else {
            return Ok(false);
        };
        if ma.kind != mb.kind {
            return Ok(false);
        }
        let same = match ma.kind {
            Kind::Dir => same_tree(t, &pa, &pb)?,
            Kind::File => ma.size == mb.size && t.hash(&pa)? == t.hash(&pb)?,
            Kind::Symlink => t.read_link(&pa)? == t.read_link(&pb)?,
            Kind::Other => false,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// SHA-256 (hex), as the journal records it of backups.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
