//! Connection settings of a host or group, and the Ansible connection variables
//! (`ansible_host`, `ansible_port`, …) and value spellings that set them.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// A variable's value as text, for the connection settings that read it
/// (`ansible_port=22` is the int 22, `ansible_become=True` the bool true).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Connection settings of a host or group; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Settings {
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_files: Option<Vec<PathBuf>>,
    pub identities_only: Option<bool>,
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub become_: Option<bool>,
}

impl Settings {
    /// Lay `other` over `self`: every field `other` sets wins.
    pub fn overlay(&mut self, other: &Settings) {
        fn set<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if b.is_some() {
                a.clone_from(b);
            }
        }
        set(&mut self.address, &other.address);
        set(&mut self.port, &other.port);
        set(&mut self.user, &other.user);
        set(&mut self.identity_files, &other.identity_files);
        set(&mut self.identities_only, &other.identities_only);
        set(&mut self.proxy_jump, &other.proxy_jump);
        set(&mut self.connect_timeout, &other.connect_timeout);
        set(&mut self.become_, &other.become_);
    }

    /// Take an Ansible connection variable (`ansible_host`, `ansible_port`, …) into the
    /// settings. Returns `Ok(false)` for a variable that is not one of them. The error is
    /// the message only; the caller says where the variable was written.
    pub fn apply_ansible_var(&mut self, key: &str, value: &Value) -> Result<bool, String> {
        let value = &text(value);
        match key {
            "ansible_host" | "ansible_ssh_host" => self.address = Some(non_empty(key, value)?),
            "ansible_port" | "ansible_ssh_port" => self.port = Some(parse_port(value)?),
            "ansible_user" | "ansible_ssh_user" => self.user = Some(non_empty(key, value)?),
            "ansible_ssh_private_key_file" | "ansible_private_key_file" => {
                self.identity_files = Some(vec![expand_tilde(&non_empty(key, value)?)])
            }
            "ansible_become" => self.become_ = Some(parse_bool(value)?),
            "ansible_ssh_timeout" | "ansible_timeout" => {
                self.connect_timeout = Some(parse_duration(value)?)
            }
            "ansible_ssh_common_args" | "ansible_ssh_extra_args" => match proxy_jump_in_args(value)
            {
                Some(jump) => self.proxy_jump = Some(jump),
                None => return Ok(false),
            },
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn non_empty(key: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        Err(format!("`{key}` is empty; give it a value or remove it"))
    } else {
        Ok(v.to_string())
    }
}

/// `-J bastion`, `-Jbastion` or `-o ProxyJump=bastion` in `ansible_ssh_common_args`.
fn proxy_jump_in_args(args: &str) -> Option<String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].trim_matches(|c| c == '\'' || c == '"');
        if w == "-J" {
            return words
                .get(i + 1)
                .map(|s| s.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
        if let Some(rest) = w.strip_prefix("-J") {
            return Some(rest.to_string());
        }
        let opt = if w == "-o" {
            i += 1;
            words
                .get(i)
                .map(|s| s.trim_matches(|c| c == '\'' || c == '"'))
        } else {
            w.strip_prefix("-o")
        };
        if let Some(opt) = opt {
            let (k, v) = opt
                .split_once('=')
                .or_else(|| opt.split_once(' '))
                .unwrap_or((opt, ""));
            if k.eq_ignore_ascii_case("proxyjump") && !v.is_empty() {
                return Some(v.to_string());
            }
        }
        i += 1;
    }
    None
}

/// `yes/no`, `true/false`, `on/off`, `1/0`, any case (Ansible's and ssh's spellings).
pub(crate) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" | "y" => Ok(true),
        "no" | "false" | "off" | "0" | "n" => Ok(false),
        _ => Err(format!("expected true or false, found `{v}`")),
    }
}

pub(crate) fn parse_port(v: &str) -> Result<u16, String> {
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "port must be a number from 1 to 65535, found `{v}`"
        )),
    }
}

/// Whole seconds (`10`) or a duration (`10s`, `1m`).
pub(crate) fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v)
        .map_err(|_| format!("expected a duration in seconds (`10`) or like `10s`, found `{v}`"))
}

/// `~/x` → `$HOME/x`; anything else unchanged.
pub(crate) fn expand_tilde(p: &str) -> PathBuf {
    if p == "~" || p.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            let mut path = PathBuf::from(home);
            if p.len() > 2 {
                path.push(&p[2..]);
            }
            return path;
        }
    }
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_proxy_jump_from_ssh_args() {
        assert_eq!(proxy_jump_in_args("-J bastion").as_deref(), Some("bastion"));
        assert_eq!(
            proxy_jump_in_args("-o ProxyJump=a@b:2").as_deref(),
            Some("a@b:2")
        );
        assert_eq!(proxy_jump_in_args("'-o ProxyJump=b'").as_deref(), Some("b"));
        assert_eq!(proxy_jump_in_args("-o StrictHostKeyChecking=no"), None);
    }

    #[test]
    fn inventory_value_parsers() {
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("False"), Ok(false));
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_port("2222"), Ok(2222));
        assert!(parse_port("0").is_err());
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(text(&Value::from(22)), "22");
        assert_eq!(text(&Value::from("x")), "x");
    }
}
