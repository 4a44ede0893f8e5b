//! The texts that were vetted, kept so that re-vetting an edited recipe can show what
//! changed since: `STATE/vetted/<hex of the hash>/` holds `index.json` (names) and one
//! file per text (the recipe, then each module it imports).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::recipe::{hash_names, Recipe};

/// A recipe's text and its modules' texts, by display name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Texts {
    /// `(name, text)`: the recipe first, then its modules (`recipes/helper.rhai`,
    /// `stdlib/logrotate.rhai`).
    pub files: Vec<(String, String)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    hash: String,
    /// `(name, file in this folder)`.
    files: Vec<(String, String)>,
}

impl Texts {
    /// The recipe as `key` (its trust-file key) and its modules: stdlib ones as
    /// `stdlib/NAME.rhai`, local ones by their path beside `key`.
    pub fn of(recipe: &Recipe, key: &str) -> Texts {
        let folder = Path::new(key).parent().unwrap_or(Path::new(""));
        let mut files = vec![(key.to_string(), recipe.source.clone())];
        files.extend(
            hash_names(&recipe.modules, &recipe.dir)
                .into_iter()
                .map(|(name, text)| match name.strip_prefix("./") {
                    Some(rel) => (folder.join(rel).display().to_string(), text),
                    None => (name, text),
                }),
        );
        Texts { files }
    }

    /// A unified diff from `old` to `self`, file by file; empty if nothing differs.
    pub fn diff_from(&self, old: &Texts) -> String {
        let mut out = String::new();
        let get = |t: &Texts, n: &str| {
            t.files
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, s)| s.clone())
        };
        let mut names: Vec<&String> = self.files.iter().map(|(n, _)| n).collect();
        for (n, _) in &old.files {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        // The recipe's own name may differ (vetted under another path): pair the
        // first entries regardless.
        for (i, name) in names.iter().enumerate() {
            let (before, after) = if i == 0 {
                (old.files.first().map(|(_, s)| s.clone()), get(self, name))
            } else if old.files.first().is_some_and(|(n, _)| n == *name) {
                continue;
            } else {
                (get(old, name), get(self, name))
            };
            match (before, after) {
                (Some(a), Some(b)) if a == b => {}
                (a, Some(b)) => {
                    out.push_str(&crate::ops::unified_diff(
                        name,
                        a.as_deref().map(str::as_bytes),
                        b.as_bytes(),
                    ));
                }
                (Some(a), None) => {
                    out.push_str(&format!("--- a/{name}\n+++ /dev/null\n"));
                    out.push_str(&format!(
                        "@@ no longer imported ({} lines) @@\n",
                        a.lines().count()
                    ));
                }
                (None, None) => {}
            }
        }
        out
    }
}

fn folder(root: &Path, hash: &str) -> PathBuf {
    let hex: String = hash
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    root.join(hex)
}

/// Keep `texts` (whose hash is `hash`) under `root`, unless already there.
pub fn save(root: &Path, hash: &str, texts: &Texts) -> Result<()> {
    let dir = folder(root, hash);
    if dir.join("index.json").is_file() {
        return Ok(());
    }
    let io = |what: &Path, e| Error::io(format!("cannot write {}", what.display()), e);
    std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".new-")
        .tempdir_in(root)
        .map_err(|e| io(root, e))?;
    let mut index = Index {
        hash: hash.to_string(),
        files: Vec::new(),
    };
    for (i, (name, text)) in texts.files.iter().enumerate() {
        let base = Path::new(name)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "text".into());
        let file = format!("{i}-{base}");
        std::fs::write(tmp.path().join(&file), text).map_err(|e| io(tmp.path(), e))?;
        index.files.push((name.clone(), file));
    }
    let json = serde_json::to_vec_pretty(&index).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(tmp.path().join("index.json"), json).map_err(|e| io(tmp.path(), e))?;
    let tmp = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join("index.json").is_file() {
            return Err(io(&dir, e));
        }
    }
    Ok(())
}

/// The texts vetted under `hash`, if this state dir kept them.
pub fn load(root: &Path, hash: &str) -> Option<Texts> {
    let dir = folder(root, hash);
    let index: Index = serde_json::from_slice(&std::fs::read(dir.join("index.json")).ok()?).ok()?;
    let mut files = Vec::new();
    for (name, file) in index.files {
        files.push((name, std::fs::read_to_string(dir.join(file)).ok()?));
    }
    Some(Texts { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_texts_come_back_and_diff() {
        let dir = tempfile::tempdir().unwrap();
        let old = Texts {
            files: vec![
                ("main.rhai".into(), "a\nb\n".into()),
                ("helper.rhai".into(), "x\n".into()),
            ],
        };
        save(dir.path(), "sha256:ab12", &old).unwrap();
        save(dir.path(), "sha256:ab12", &old).unwrap();
        assert_eq!(load(dir.path(), "sha256:ab12"), Some(old.clone()));
        assert_eq!(load(dir.path(), "sha256:ffff"), None);
        let new = Texts {
            files: vec![
                ("main.rhai".into(), "a\nb\n".into()),
                ("helper.rhai".into(), "y\n".into()),
            ],
        };
        let d = new.diff_from(&old);
        assert!(d.contains("-x") && d.contains("+y"), "{d}");
        assert!(!d.contains("main.rhai"), "{d}");
        assert_eq!(new.diff_from(&new), "");
    }
}
