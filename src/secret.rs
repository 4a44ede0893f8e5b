//! A secret value. It prints as `***` wherever a recipe or tend itself might show it
//! (strings, diffs, errors, logs, the audit log, the journal); only operations that
//! accept a secret get at the value, and they hand it to the target through stdin or
//! the environment, never argv.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

pub const REDACTED: &str = "***";

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// `env:VAR` or `file:/path` (what a careful operator types so the value stays out
    /// of shell history and `ps`); anything else is taken literally.
    pub fn from_reference(param: &str, raw: &str) -> Result<Secret, String> {
        if let Some(var) = raw.strip_prefix("env:") {
            return std::env::var(var).map(Secret).map_err(|_| {
                format!("secret parameter `{param}`: environment variable {var} is not set")
            });
        }
        if let Some(path) = raw.strip_prefix("file:") {
            return std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| format!("secret parameter `{param}`: cannot read {path}: {e}"));
        }
        Ok(Secret(raw.to_string()))
    }

    /// The value itself: only for handing to a target through stdin or environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Marks a declared parameter as a required secret: `token: secret()`.
#[derive(Clone, Debug)]
pub struct SecretDecl;
