//! Recipes: loading a `.rhai` file, resolving its imports (embedded stdlib and the
//! recipe's own folder, nothing else), its documentation, parameter docs and the
//! content hash that vetting signs.

pub mod builtin;
pub mod dialect;
mod modes;
pub mod params;
mod resolver;
pub mod scope;

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
    /// Built into tend (`tend recipes`), loaded by name: it has no folder, so it
    /// imports only stdlib modules and uses no file beside it.
    pub builtin: bool,
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Recipe> {
        let source = read_text(path).map_err(|e| match e {
            ReadError::Io(source) => Error::RecipeRead {
                path: path.to_path_buf(),
                source,
            },
            ReadError::Invalid(message) => Error::Recipe {
                location: path.display().to_string(),
                message,
            },
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
        let (ast, modules) = resolver::compile(&source, &display, Some(&dir), Some(path))?;
        check_header(&source, &display)?;
        modes::check_all(&source, &display, &modules)?;
        let hash = content_hash(&source, &hash_names(&modules, &dir));
        Ok(Recipe {
            path: path.to_path_buf(),
            name,
            source,
            dir,
            ast: Arc::new(ast),
            modules,
            hash,
            builtin: false,
        })
    }

    /// The built-in recipe `name` (`tend recipes`), `None` when there is none.
    /// Shown as `built-in:NAME`, in error locations too.
    pub fn builtin(name: &str) -> Option<Result<Recipe>> {
        let source = builtin::recipe_source(name)?;
        let display = format!("built-in:{name}");
        let compiled =
            resolver::compile(source, &display, None, None).and_then(|(ast, modules)| {
                check_header(source, &display)?;
                modes::check_all(source, &display, &modules)?;
                let hash = content_hash(source, &hash_names(&modules, Path::new("")));
                Ok(Recipe {
                    path: PathBuf::from(&display),
                    name: name.to_string(),
                    source: source.to_string(),
                    // No folder: a file "beside" it (`src:`, a template) would be
                    // looked up below /dev/null, which cannot hold one, so nothing of
                    // the working directory is ever taken for part of it.
                    dir: PathBuf::from("/dev/null"),
                    ast: Arc::new(ast),
                    modules,
                    hash,
                    builtin: true,
                })
            });
        Some(compiled)
    }

    /// A recipe built into tend (like the one behind `tend exec`).
    pub fn from_text(name: &str, source: &str) -> Result<Recipe> {
        let display = format!("<{name}>");
        let dir = PathBuf::from(".");
        let (ast, modules) = resolver::compile(source, &display, Some(&dir), None)?;
        check_header(source, &display)?;
        modes::check_all(source, &display, &modules)?;
        let hash = content_hash(source, &hash_names(&modules, &dir));
        Ok(Recipe {
            path: PathBuf::from(display),
            name: name.to_string(),
            source: source.to_string(),
            dir,
            ast: Arc::new(ast),
            modules,
            hash,
            builtin: false,
        })
    }

    /// The leading `//!` lines, without the marker.
    pub fn doc(&self) -> String {
        doc_of(&self.source)
    }

    /// The declared write scope (`//! scope: /var/log/app/**, /etc/x` in the header;
    /// several `scope:` lines add up), as written; `None` when the recipe declares
    /// none. Checked when the recipe is loaded.
    pub fn scope(&self) -> Option<Vec<String>> {
        header(&self.source).ok().and_then(|h| h.scope)
    }

    /// The scope for people (`tend show`).
    pub fn scope_display(&self) -> String {
        match self.scope() {
            None => "not declared (the recipe may change any path)".into(),
            Some(s) if s.is_empty() => "nothing (the recipe may change no path)".into(),
            Some(s) => s.join(", "),
        }
    }

    /// The scope, compiled for enforcement.
    pub fn scope_set(&self) -> Option<scope::Scope> {
        self.scope().and_then(|p| scope::Scope::new(&p).ok())
    }

    /// `//! become: true|false`: whether the recipe may run with `--become` (sudo).
    /// `Some(false)` refuses such a run; `None` when not declared.
    pub fn become_policy(&self) -> Option<bool> {
        header(&self.source).ok().and_then(|h| h.become_)
    }

    /// Trailing `// comments` of the lines inside `params(#{ … })`, by parameter name.
    pub fn param_docs(&self) -> BTreeMap<String, String> {
        param_docs(&self.source)
    }

    /// The parameter names in the order the recipe's `params(#{…})` writes them (a Rhai
    /// map forgets it), for `tend show` and `tend check`.
    pub fn param_order(&self) -> Vec<String> {
        param_order(&self.source)
    }

    /// `sh(` calls, in the recipe and its modules, that give neither `undo:` nor
    /// `read_only: true`, and `fs::remove(` calls with a `backup:` option other than
    /// `true`: the steps rollback will not be able to undo.
    pub fn irreversible_steps(&self) -> Vec<String> {
        let mut out = Vec::new();
        let sources = std::iter::once((self.path.display().to_string(), self.source.as_str()))
            .chain(self.modules.iter().map(|(n, s)| (n.clone(), s.as_str())));
        for (name, src) in sources {
            for (i, line) in src.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("fs::remove(") {
                    let call = call_text(src, i);
                    if call.contains("backup:") && !call.contains("backup: true") {
                        out.push(format!("{name}:{}: {}", i + 1, line.trim()));
                    }
                }
                if let Some(at) = code.find("sh(") {
                    let before = &code[..at];
                    if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                        continue;
                    }
                    let call = call_text(src, i);
                    // A command judged unchanged (`changed_when: |r| false`: a check
                    // that leaves nothing behind) leaves no record, so no barrier.
                    let judged_unchanged = call.contains("changed_when: |r| false")
                        || call.contains("changed_when: |_| false");
                    if !call.contains("undo:")
                        && !call.contains("read_only: true")
                        && !call.contains("changes:")
                        && !judged_unchanged
                    {
                        out.push(format!("{name}:{}: {}", i + 1, line.trim()));
                    }
                }
            }
        }
        out
    }
}

/// The largest recipe or module tend reads. Recipes are a few kilobytes; the limit
/// keeps a mistaken path (a log, an image, `/dev/zero`) from exhausting memory.
pub const MAX_RECIPE_BYTES: u64 = 1024 * 1024;

/// Why a recipe or module file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Could not be opened or read (missing, permission…).
    Io(std::io::Error),
    /// Is there but is no recipe: not a regular file, too large, not text.
    Invalid(String),
}

/// A recipe or module file's text. Opened without blocking and checked on the open
/// file, so a FIFO cannot hang tend and a device cannot be read forever.
pub(crate) fn read_text(path: &Path) -> std::result::Result<String, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(ReadError::Invalid(format!(
            "is {kind}; a recipe or module must be a regular .rhai file"
        )));
    }
    let too_large = || {
        ReadError::Invalid(format!(
            "is larger than {} KiB, the most tend reads as a recipe or module; is this the right file?",
            MAX_RECIPE_BYTES / 1024
        ))
    };
    if meta.len() > MAX_RECIPE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // Bounded again while reading: the file may grow after the check.
    file.take(MAX_RECIPE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_RECIPE_BYTES {
        return Err(too_large());
    }
    let binary = |at: usize| {
        ReadError::Invalid(format!(
            "is not a text file (binary content at byte {at}); a recipe is Rhai source text"
        ))
    };
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(binary(at));
    }
    String::from_utf8(bytes).map_err(|e| binary(e.utf8_error().valid_up_to()))
}

/// `rel`, a file in the recipe's folder `dir` (imports, `src:` files, templates),
/// with symlinks resolved: refused when it is absolute, has `..`, or resolves to a
/// place outside `dir`, so that what a recipe can reach is what was vetted with it.
/// `Ok(None)` when it does not exist.
pub(crate) fn in_folder(dir: &Path, rel: &str) -> std::result::Result<Option<PathBuf>, String> {
    if rel.starts_with('/') || rel.split('/').any(|p| p == "..") {
        return Err(
            "files used by a recipe must be in its folder (a relative path without ..)".into(),
        );
    }
    let path = dir.join(rel);
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot resolve {}: {}",
                path.display(),
                crate::error::describe_io(&e)
            ))
        }
    };
    let folder = dir.canonicalize().map_err(|e| {
        format!(
            "cannot resolve {}: {}",
            dir.display(),
            crate::error::describe_io(&e)
        )
    })?;
    if !real.starts_with(&folder) {
        return Err(format!(
            "{} leads to {}, outside the recipe's folder {} (through a symlink); copy the file into the folder instead",
            path.display(),
            real.display(),
            folder.display()
        ));
    }
    Ok(Some(real))
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

/// What the header (the leading `//!` lines) declares besides documentation.
#[derive(Debug, Default, PartialEq)]
pub struct Header {
    pub scope: Option<Vec<String>>,
    pub become_: Option<bool>,
}

/// The leading `//!` lines, each with its 1-based line number, without the marker.
fn doc_lines(source: &str) -> impl Iterator<Item = (usize, &str)> {
    source
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start()))
        .take_while(|(_, l)| l.starts_with("//!") || l.is_empty())
        .filter_map(|(i, l)| l.strip_prefix("//!").map(|l| (i, l.trim())))
}

/// Parse `scope:` and `become:` lines of the header; an error says which line is wrong.
pub fn header(source: &str) -> std::result::Result<Header, (usize, String)> {
    let mut h = Header::default();
    for (line, text) in doc_lines(source) {
        if let Some(rest) = text.strip_prefix("scope:") {
            let patterns: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
            scope::Scope::new(&patterns).map_err(|e| (line, e))?;
            h.scope.get_or_insert_with(Vec::new).extend(patterns);
        } else if let Some(rest) = text.strip_prefix("become:") {
            h.become_ = Some(match rest.trim() {
                "true" => true,
                "false" => false,
                other => {
                    return Err((
                        line,
                        format!("become: must be true or false, not {other:?}"),
                    ))
                }
            });
        }
    }
    Ok(h)
}

fn check_header(source: &str, display: &str) -> Result<()> {
    header(source)
        .map(|_| ())
        .map_err(|(line, message)| Error::Recipe {
            location: format!("{display}:{line}:1"),
            message,
        })
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

fn param_order(source: &str) -> Vec<String> {
    let Some(start) = source.find("params(#{") else {
        return Vec::new();
    };
    let text = &source[start + "params(#{".len()..];
    let mut names = Vec::new();
    let (mut depth, mut expect_key) = (1usize, true);
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '`' | '\'' => {
                // A string (or a quoted key): skip to its end.
                let mut key = String::new();
                while let Some((_, d)) = chars.next() {
                    match d {
                        '\\' => {
                            chars.next();
                        }
                        d if d == c => break,
                        d => key.push(d),
                    }
                }
                if depth == 1 && expect_key {
                    names.push(key);
                    expect_key = false;
                }
            }
            '/' if chars.peek().is_some_and(|(_, d)| *d == '/') => {
                for (_, d) in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_key = true,
            c if depth == 1 && expect_key && (c.is_alphabetic() || c == '_') => {
                let end = text[i..]
                    .find(|d: char| !(d.is_alphanumeric() || d == '_'))
                    .map_or(text.len(), |n| i + n);
                names.push(text[i..end].to_string());
                while chars.peek().is_some_and(|(j, _)| *j < end) {
                    chars.next();
                }
                expect_key = false;
            }
            _ => {}
        }
    }
    names
}

/// Module names as the hash (and vetting) sees them: stdlib modules as
/// `stdlib/NAME.rhai`, modules of the recipe's folder as `./NAME.rhai`, so that the hash
/// does not depend on how the recipe's path was written (`r.rhai`, `./r.rhai`, an
/// absolute path) nor on where its folder is.
pub fn hash_names(modules: &[(String, String)], dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = modules
        .iter()
        .map(|(name, text)| {
            let stdlib = name
                .strip_prefix("stdlib/")
                .and_then(|n| n.strip_suffix(".rhai"))
                .and_then(stdlib_source)
                .is_some_and(|s| s == text);
            let label = match Path::new(name).strip_prefix(dir) {
                Ok(rel) if !stdlib => format!("./{}", rel.display()),
                _ => name.clone(),
            };
            (label, text.clone())
        })
        .collect();
    out.sort();
    out
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
    fn param_order_is_the_order_written() {
        let src = "let p = params(#{\n  zeta: 1, // z, y: 2\n  \"quoted\": [1, #{a: 2}],\n  alpha: `x, b: 1`, mid: secret(),\n});\nlet q = #{ after: 1 };";
        assert_eq!(param_order(src), ["zeta", "quoted", "alpha", "mid"]);
        assert!(param_order("no params here").is_empty());
    }

    #[test]
    fn docs() {
        let src = "//! Rotate logs.\n//! Second line.\n\nlet p = params(#{\n    dir: \"/x\", // where\n    keep: 7,\n});\n";
        assert_eq!(doc_of(src), "Rotate logs.\nSecond line.");
        let d = param_docs(src);
        assert_eq!(d.get("dir").map(String::as_str), Some("where"));
        assert!(!d.contains_key("keep"));
    }

    #[test]
    fn scope_header() {
        let src = "//! Rotate.\n//! scope: /var/log/app/**, /etc/logrotate.d/app\n//! scope: /srv/x\n//! become: false\n\nlet x = 1;\n// scope: /not/header\n";
        let h = header(src).unwrap();
        assert_eq!(
            h.scope.unwrap(),
            vec!["/var/log/app/**", "/etc/logrotate.d/app", "/srv/x"]
        );
        assert_eq!(h.become_, Some(false));
        assert_eq!(header("//! Plain.\n").unwrap(), Header::default());
        // An empty scope declares that the recipe may change nothing.
        assert_eq!(header("//! scope:\n").unwrap().scope, Some(vec![]));
        assert_eq!(header("//! x\n//! scope: relative/*\n").unwrap_err().0, 2);
        assert!(header("//! become: maybe\n").is_err());
    }
}
