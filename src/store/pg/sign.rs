//! What a rollback acts on is signed: each journal line and each run record carries
//! an HMAC-SHA256 under the cluster's `key`, which every node has and the database
//! does not. Whoever can write the database (a leaked password, a shared DBA
//! account) could otherwise plant an undo record, or point a run's host at another
//! machine, and have a node write it as root on the next rollback. A row that fails
//! its check is refused, named.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The shortest key accepted: 32 characters (`openssl rand -hex 32` gives 64).
const MIN_KEY: usize = 32;

pub(super) struct Signer(Secret);

impl Signer {
    /// The key `[cluster] key` names (`env:NAME` or `file:PATH`).
    pub(super) fn from_reference(reference: Option<&str>) -> Result<Signer> {
        let usage = |why: String| Error::Usage(format!("[cluster] key: {why}"));
        let Some(reference) = reference else {
            return Err(usage(
                "required: every node signs the journals and run records it writes in the \
                 database with it, so that whoever can write the database cannot make a \
                 rollback write on your hosts. Make one (`openssl rand -hex 32 > \
                 /etc/tend/cluster.key`, mode 0600), copy it to every node, and set \
                 key = \"file:/etc/tend/cluster.key\" (or \"env:NAME\")"
                    .into(),
            ));
        };
        let key = Secret::from_reference("key", reference).map_err(usage)?;
        if key.expose().trim().len() < MIN_KEY {
            return Err(usage(format!(
                "shorter than {MIN_KEY} characters: use `openssl rand -hex 32`"
            )));
        }
        Ok(Signer(key))
    }

    fn mac(&self, parts: &[&str]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose().trim().as_bytes())
            .expect("HMAC takes a key of any length");
        // Each part with its length first, so that no two lists of parts sign alike.
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
        mac
    }

    /// The signature of `parts`, in hex.
    pub(super) fn sign(&self, parts: &[&str]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    /// A name for the key that gives nothing of it away: nodes publish it, so that
    /// one with another key is found before it fails to take over a run.
    pub(super) fn key_id(&self) -> String {
        self.sign(&["tend cluster key id"])[..16].to_string()
    }

    /// Whether `signature` is that of `parts` (compared in constant time).
    pub(super) fn check(&self, parts: &[&str], signature: Option<&str>) -> bool {
        let Some(bytes) = signature.and_then(|s| hex::decode(s).ok()) else {
            return false;
        };
        self.mac(parts).verify_slice(&bytes).is_ok()
    }
}

/// `value` with every object's keys in sorted order, as text: the form that is
/// signed, the same before the database stores it as `jsonb` and after it gives it
/// back (jsonb orders keys its own way).
pub(super) fn canonical(value: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                serde_json::Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_every_part_and_survives_key_order() {
        std::env::set_var("TEND_SIGN_TEST_KEY", "k".repeat(40));
        let s = Signer::from_reference(Some("env:TEND_SIGN_TEST_KEY")).unwrap();
        let sig = s.sign(&["run", "web1", "line"]);
        assert!(s.check(&["run", "web1", "line"], Some(&sig)));
        assert!(!s.check(&["run", "web2", "line"], Some(&sig)));
        assert!(!s.check(&["runweb1", "", "line"], Some(&sig)));
        assert!(!s.check(&["run", "web1", "line"], None));
        assert!(!s.check(&["run", "web1", "line"], Some("zz")));
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"f":2,"e":3}],"c":null}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"c":null,"d":[1,{"e":3,"f":2}]},"b":1}"#).unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        std::env::set_var("TEND_SIGN_TEST_SHORT", "short");
        assert!(Signer::from_reference(Some("env:TEND_SIGN_TEST_SHORT")).is_err());
        let e = Signer::from_reference(None).err().unwrap().to_string();
        assert!(e.contains("openssl rand"), "{e}");
    }
}
