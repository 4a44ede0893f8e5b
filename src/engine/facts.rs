//! Host facts beyond name and address: `host().kernel`, `.distro`, `.mounts`, … and
//! `fs::free(path)`. Each is gathered from the target the first time a recipe (or a
//! template) reads it, and kept for the rest of the host's run: a recipe that reads
//! none costs no round trip. Read through files where the kernel has them
//! (/proc, /etc/os-release), through read-only commands otherwise (`uname -m`,
//! `nproc`, `df`, `ip route`), which a dry-run may run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::transport::{parent, shell_quote, ExecRequest, TResult, Target, TargetError};

/// The facts gathered on demand, by the name `host()` gives them.
pub const NAMES: [&str; 11] = [
    "os",
    "distro",
    "distro_version",
    "kernel",
    "arch",
    "hostname",
    "cpus",
    "memory",
    "mounts",
    "addresses",
    "init",
];

/// One host's facts, gathered once each.
pub struct Facts {
    target: Arc<dyn Target>,
    cache: Mutex<BTreeMap<&'static str, Value>>,
}

impl Facts {
    pub fn new(target: Arc<dyn Target>) -> Self {
        Facts {
            target,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The fact `key` (one of [`NAMES`]), gathered now if it was not yet.
    pub fn get(&self, key: &str) -> TResult<Option<Value>> {
        let Some(name) = NAMES.iter().find(|n| **n == key) else {
            return Ok(None);
        };
        if let Some(v) = self.cache.lock().expect("facts").get(name) {
            return Ok(Some(v.clone()));
        }
        let v = self.gather(name)?;
        self.cache.lock().expect("facts").insert(name, v.clone());
        Ok(Some(v))
    }

    fn gather(&self, key: &str) -> TResult<Value> {
        let t = self.target.as_ref();
        Ok(match key {
            "os" => t.os().into(),
            "distro" => os_release(t)?.get("ID").cloned().unwrap_or_default().into(),
            "distro_version" => os_release(t)?
                .get("VERSION_ID")
                .cloned()
                .unwrap_or_default()
                .into(),
            "kernel" => proc_line(t, "/proc/sys/kernel/osrelease")?.into(),
            "hostname" => proc_line(t, "/proc/sys/kernel/hostname")?.into(),
            "arch" => command(t, "uname -m")?.trim().into(),
            "cpus" => {
                let out = command(t, "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN")?;
                json!(out
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| bad(t, "nproc", &out))?)
            }
            "memory" => json!(mem_total(t)?),
            "mounts" => mounts(t)?,
            "addresses" => json!({
                "ipv4": route_src(t, "-4", "1.0.0.0")?,
                "ipv6": route_src(t, "-6", "2000::")?,
            }),
            "init" => {
                // As sd_booted(3) tells: systemd is running as init when this exists.
                if t.stat("/run/systemd/system")?.is_some() {
                    "systemd".into()
                } else {
                    "sysv".into()
                }
            }
            _ => Value::Null,
        })
    }
}

fn bad(t: &dyn Target, what: &str, out: &str) -> TargetError {
    TargetError::host(
        &t.info().name,
        format!("cannot read {what}: it said {:?}", out.trim()),
    )
}

fn proc_line(t: &dyn Target, path: &str) -> TResult<String> {
    Ok(String::from_utf8_lossy(&t.read(path)?).trim().to_string())
}

/// A read-only command's output; its failure is the fact's error.
fn command(t: &dyn Target, cmd: &str) -> TResult<String> {
    let out = t.exec(&ExecRequest::new(cmd))?;
    if out.code != 0 {
        return Err(TargetError::host(
            &t.info().name,
            format!(
                "`{cmd}` failed ({}): {}",
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn os_release(t: &dyn Target) -> TResult<BTreeMap<String, String>> {
    let path = if t.stat("/etc/os-release")?.is_some() {
        "/etc/os-release"
    } else {
        "/usr/lib/os-release"
    };
    let text = String::from_utf8_lossy(&t.read(path)?).into_owned();
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((
                k.trim().to_string(),
                v.trim().trim_matches(['"', '\'']).to_string(),
            ))
        })
        .collect())
}

fn mem_total(t: &dyn Target) -> TResult<u64> {
    let text = String::from_utf8_lossy(&t.read("/proc/meminfo")?).into_owned();
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("MemTotal:")?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| bad(t, "/proc/meminfo", "no MemTotal"))
}

/// One line of `df -P -k` after its header: (device, size, free, mount point), bytes.
fn df_line(line: &str) -> Option<(String, u64, u64, String)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 {
        return None;
    }
    Some((
        f[0].to_string(),
        f[1].parse::<u64>().ok()? * 1024,
        f[3].parse::<u64>().ok()? * 1024,
        f[5..].join(" "),
    ))
}

fn mounts(t: &dyn Target) -> TResult<Value> {
    // df exits 1 when one mount cannot be read (a stale NFS, another user's FUSE);
    // the others are still listed.
    let out = t.exec(&ExecRequest::new("df -P -k"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.lines().count() < 2 {
        return Err(bad(t, "df -P -k", &String::from_utf8_lossy(&out.stderr)));
    }
    let types: BTreeMap<String, String> = t
        .read("/proc/mounts")
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    Some((f.get(1)?.to_string(), f.get(2)?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let list: Vec<Value> = text
        .lines()
        .skip(1)
        .filter_map(df_line)
        .map(|(device, size, free, path)| {
            json!({
                "path": path,
                "device": device,
                "fstype": types.get(&path).cloned().unwrap_or_default(),
                "size": size,
                "free": free,
            })
        })
        .collect();
    Ok(Value::Array(list))
}

/// The source address of the route to `dest`: the host's primary address.
fn route_src(t: &dyn Target, family: &str, dest: &str) -> TResult<String> {
    let out = t.exec(&ExecRequest::new(format!(
        "ip -o {family} route get {dest} 2>/dev/null"
    )))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    Ok(words
        .windows(2)
        .find(|w| w[0] == "src")
        .map(|w| w[1].to_string())
        .unwrap_or_default())
}

/// Bytes free (for a non-root user, as `df` counts them) on the file system that
/// holds `path`; a path that does not exist yet is asked of its nearest ancestor.
pub fn free(t: &dyn Target, path: &str) -> TResult<u64> {
    let mut p = path.to_string();
    loop {
        let out = t.exec(&ExecRequest::new(format!(
            "df -P -k -- {} 2>&1",
            shell_quote(&p)
        )))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.code == 0 {
            if let Some((_, _, free, _)) = text.lines().nth(1).and_then(df_line) {
                return Ok(free);
            }
        }
        let up = parent(&p).to_string();
        if up == p || up == "." {
            return Err(bad(t, &format!("df {path}"), &text));
        }
        p = up;
    }
}

/// `host` in a template: name, address, user, vars and the facts, each fact
/// gathered only when the template reads it.
pub struct HostObject {
    info: crate::transport::HostInfo,
    facts: Arc<Facts>,
}

impl std::fmt::Debug for HostObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {}", self.info.name)
    }
}

const TEMPLATE_KEYS: [&str; 15] = [
    "name",
    "address",
    "user",
    "vars",
    "os",
    "distro",
    "distro_version",
    "kernel",
    "arch",
    "hostname",
    "cpus",
    "memory",
    "mounts",
    "addresses",
    "init",
];

impl minijinja::value::Object for HostObject {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        use minijinja::Value as V;
        let i = &self.info;
        Some(match key.as_str()? {
            "name" => V::from(i.name.clone()),
            "address" => V::from(i.address.clone()),
            "user" => V::from(i.user.clone()),
            "vars" => V::from_serialize(&i.vars),
            k => {
                // A fact that cannot be read is undefined: a strict template then
                // fails at it, naming it.
                let v = self.facts.get(k).ok().flatten()?;
                V::from_serialize(&v)
            }
        })
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(&TEMPLATE_KEYS)
    }
}

/// What every template sees before its own variables: the host's inventory
/// variables by name (as Ansible templates see host variables) and `host`.
pub fn template_context(
    info: &crate::transport::HostInfo,
    facts: &Arc<Facts>,
) -> BTreeMap<String, minijinja::Value> {
    let mut ctx: BTreeMap<String, minijinja::Value> = info
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), minijinja::Value::from_serialize(v)))
        .collect();
    ctx.insert(
        "host".into(),
        minijinja::Value::from_object(HostObject {
            info: info.clone(),
            facts: facts.clone(),
        }),
    );
    ctx
}
