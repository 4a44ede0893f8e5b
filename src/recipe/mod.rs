//! Recipes: loading a `.rhai` file, resolving its imports (embedded stdlib and the
//! recipe's own folder, nothing else), its documentation, parameter docs and the
//! content hash that vetting signs.

pub mod params;
mod resolver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
pub use resolver::{fmt_pos as resolver_fmt_pos, stdlib_source, STDLIB};

pub struct Recipe {
    pub path: PathBuf,
    /// File stem: `log-rotate` for `recipes/log-rotate.rhai`.
    pub name: String,
    pub source: String,
    pub dir: PathBuf,
    /// Compiled once, with every import resolved into it; shared by all hosts.
    pub ast: Arc<rhai::AST>,
    /// Imported modules `(name, source)`, transitively, sorted by name.
    pub modules: Vec<(String, String)>,
    pub hash: String,
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Recipe> {
        let source = std::fs::read_to_string(path).map_err(|source| Error::RecipeRead {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "recipe".into());
        let display = path.display().to_string();
        let (ast, modules) = resolver::compile(&source, &display, &dir)?;
        let hash = content_hash(&source, &modules);
        Ok(Recipe {
            path: path.to_path_buf(),
            name,
            source,
            dir,
            ast: Arc::new(ast),
            modules,
            hash,
        })
    }

    /// A recipe built into tend (like the one behind `tend exec`).
    pub fn from_text(name: &str, source: &str) -> Result<Recipe> {
        let display = format!("<{name}>");
        let dir = PathBuf::from(".");
        let (ast, modules) = resolver::compile(source, &display, &dir)?;
        let hash = content_hash(source, &modules);
        Ok(Recipe {
            path: PathBuf::from(display),
            name: name.to_string(),
            source: source.to_string(),
            dir,
            ast: Arc::new(ast),
            modules,
            hash,
        })
    }

    /// The leading `//!` lines, without the marker.
    pub fn doc(&self) -> String {
        doc_of(&self.source)
    }

    /// Trailing `// comments` of the lines inside `params(#{ … })`, by parameter name.
    pub fn param_docs(&self) -> BTreeMap<String, String> {
        param_docs(&self.source)
    }

    /// `sh(` calls, in the recipe and its modules, that give neither `undo:` nor
    /// `read_only: true`: the steps rollback will not be able to undo.
    pub fn irreversible_steps(&self) -> Vec<String> {
        let mut out = Vec::new();
        let sources = std::iter::once((self.path.display().to_string(), self.source.as_str()))
            .chain(self.modules.iter().map(|(n, s)| (n.clone(), s.as_str())));
        for (name, src) in sources {
            for (i, line) in src.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if let Some(at) = code.find("sh(") {
                    let before = &code[..at];
                    if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                        continue;
                    }
                    let call = call_text(src, i);
                    if !call.contains("undo:") && !call.contains("read_only: true") {
                        out.push(format!("{name}:{}: {}", i + 1, line.trim()));
                    }
                }
            }
        }
        out
    }
}

/// The text of a call starting on line `i`, up to its closing parenthesis.
fn call_text(src: &str, i: usize) -> String {
    let mut depth = 0i32;
    let mut out = String::new();
    for line in src.lines().skip(i) {
        for c in line.chars() {
            out.push(c);
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return out;
                    }
                }
                _ => {}
            }
        }
        out.push('\n');
    }
    out
}

pub fn doc_of(source: &str) -> String {
    source
        .lines()
        .map(str::trim_start)
        .take_while(|l| l.starts_with("//!") || l.is_empty())
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn param_docs(source: &str) -> BTreeMap<String, String> {
    let mut docs = BTreeMap::new();
    let Some(start) = source.find("params(#{") else {
        return docs;
    };
    let re = regex::Regex::new(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:.*?//\s*(.*)$").expect("regex");
    for line in source[start..].lines().skip(1) {
        if line.trim_start().starts_with("})") {
            break;
        }
        if let Some(c) = re.captures(line) {
            docs.insert(c[1].to_string(), c[2].trim().to_string());
        }
    }
    docs
}

/// sha256 over the recipe text and every module it imports, so that editing a stdlib
/// module a vetted recipe uses un-vets the recipe.
pub fn content_hash(source: &str, modules: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    for (name, text) in modules {
        h.update([0u8]);
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(text.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs() {
        let src = "//! Rotate logs.\n//! Second line.\n\nlet p = params(#{\n    dir: \"/x\", // where\n    keep: 7,\n});\n";
        assert_eq!(doc_of(src), "Rotate logs.\nSecond line.");
        let d = param_docs(src);
        assert_eq!(d.get("dir").map(String::as_str), Some("where"));
        assert!(!d.contains_key("keep"));
    }
}
