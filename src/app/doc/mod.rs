//! `tend doc`: recipe documentation to share, one page per recipe and per module from
//! what the recipes already say about themselves — the `//!` header, the parameter
//! comments, the declared scope — and what tend knows about them: the operations each
//! uses and whether a rollback undoes them, its vetting status and its tests.
//!
//! Nothing here is written by hand twice: the pages are built from the same calls
//! `tend show`, `tend vet` and `tend test` use, so they cannot drift from the tool.

mod html;
mod markdown;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ops::catalog::{self, OpInfo};
use crate::recipe::params::ParamDecl;
use crate::recipe::{stdlib_source, Recipe};

/// The output formats of `tend doc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Html,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            Format::Html => "html",
        }
    }
}

/// One operation as a recipe uses it.
#[derive(Debug, Clone, Serialize)]
pub struct OpUse {
    pub op: &'static OpInfo,
    /// `file:line` of each call.
    pub at: Vec<String>,
}

/// What is known of a recipe's tests.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Tests {
    /// No `NAME.test.rhai` beside it or in `tests/`.
    None,
    /// A test file with this many cases, not run by this `tend doc`.
    NotRun { file: String, cases: usize },
    /// Run now: each case's name and verdict.
    Ran {
        file: String,
        passed: usize,
        failed: usize,
        cases: Vec<(String, bool)>,
    },
    /// The test file does not load.
    Broken { file: String, error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct RecipePage {
    pub name: String,
    pub file: String,
    pub summary: String,
    /// The rest of the `//!` header after its first paragraph.
    pub body: String,
    pub params: Vec<ParamDecl>,
    pub scope: String,
    pub become_policy: Option<bool>,
    pub ops: Vec<OpUse>,
    /// Lines rollback will not undo (`sh` without `undo:`, `fs::remove` without backup).
    pub irreversible: Vec<String>,
    /// Names of the modules it imports, each with a page.
    pub modules: Vec<String>,
    pub vetting: String,
    pub tests: Tests,
}

/// A function a module offers.
#[derive(Debug, Clone, Serialize)]
pub struct FnDoc {
    pub signature: String,
    pub doc: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModulePage {
    pub name: String,
    /// `built-in` for the stdlib, else the file.
    pub origin: String,
    pub summary: String,
    pub body: String,
    pub functions: Vec<FnDoc>,
    pub ops: Vec<OpUse>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DocSet {
    pub recipes: Vec<RecipePage>,
    pub modules: Vec<ModulePage>,
}

/// What `tend doc` needs from outside the recipes: the vetting status of one (the
/// CLI knows the trust store) and whether to run the tests.
pub struct Options<'a> {
    pub vetting: &'a dyn Fn(&Recipe) -> String,
    pub run_tests: bool,
}

/// The recipes in `dirs` (or files): every `*.rhai` that is neither a test nor a
/// module another recipe there imports.
pub fn gather(paths: &[PathBuf], opts: &Options) -> Result<DocSet> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::RecipeRead {
                    path: p.clone(),
                    source: e,
                })?
                .flatten()
                .map(|e| e.path())
                .filter(|f| is_recipe_file(f))
                .collect();
            found.sort();
            files.extend(found);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(Error::RecipeRead {
                path: p.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
    }
    let loaded: Vec<Recipe> = files
        .iter()
        .map(|f| Recipe::load(f))
        .collect::<Result<_>>()?;
    // A file that another recipe imports is a module: it gets a module page.
    let mut imported: BTreeMap<String, Module> = BTreeMap::new();
    for r in &loaded {
        for (label, source) in &r.modules {
            let m = Module::of(label, source);
            imported.insert(m.name.clone(), m);
        }
    }
    let mut set = DocSet {
        recipes: Vec::new(),
        modules: Vec::new(),
    };
    for r in &loaded {
        if imported.get(&r.name).is_some_and(|m| !m.builtin) {
            continue;
        }
        set.recipes.push(recipe_page(r, opts)?);
    }
    for m in imported.values() {
        let origin = if m.builtin {
            "built-in".to_string()
        } else {
            m.label.clone()
        };
        set.modules.push(module_page(&m.name, &origin, &m.source));
    }
    if set.recipes.is_empty() && set.modules.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Usage(format!(
            "no recipes (*.rhai) in {}",
            shown.join(", ")
        )));
    }
    Ok(set)
}

/// A module a recipe imports.
struct Module {
    /// As `import` names it: `logrotate`.
    name: String,
    /// As the recipe's module list gives it: `stdlib/logrotate.rhai` or a path.
    label: String,
    source: String,
    builtin: bool,
}

impl Module {
    fn of(label: &str, source: &str) -> Module {
        let name = Path::new(label)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| label.to_string());
        Module {
            builtin: label.starts_with("stdlib/") && stdlib_source(&name) == Some(source),
            name,
            label: label.to_string(),
            source: source.to_string(),
        }
    }
}

fn is_recipe_file(f: &Path) -> bool {
    let name = f.file_name().unwrap_or_default().to_string_lossy();
    f.is_file() && name.ends_with(".rhai") && !name.ends_with(".test.rhai")
}

/// The first paragraph of a header, and the rest.
fn split_doc(doc: &str) -> (String, String) {
    // `scope:` and `become:` lines are the header's settings, shown on their own.
    let doc: Vec<&str> = doc
        .lines()
        .filter(|l| !l.starts_with("scope:") && !l.starts_with("become:"))
        .collect();
    let doc = doc.join("\n");
    let doc = doc.trim();
    match doc.split_once("\n\n") {
        Some((first, rest)) => (first.replace('\n', " "), rest.trim().to_string()),
        None => (doc.replace('\n', " "), String::new()),
    }
}

fn ops_of(sources: &[(String, &str)]) -> Vec<OpUse> {
    let mut out: Vec<OpUse> = Vec::new();
    for (file, source) in sources {
        for (op, lines) in catalog::used_in(source) {
            let at = lines.iter().map(|l| format!("{file}:{l}"));
            match out.iter_mut().find(|u| u.op.name == op.name) {
                Some(u) => u.at.extend(at),
                None => out.push(OpUse {
                    op,
                    at: at.collect(),
                }),
            }
        }
    }
    out.sort_by_key(|u| catalog::OPERATIONS.iter().position(|o| o.name == u.op.name));
    out
}

fn recipe_page(r: &Recipe, opts: &Options) -> Result<RecipePage> {
    let (summary, body) = split_doc(&r.doc());
    let params = super::declared_params(r, &[]).unwrap_or_default();
    let file = r.path.display().to_string();
    let mut sources = vec![(file.clone(), r.source.as_str())];
    sources.extend(r.modules.iter().map(|(n, s)| (n.clone(), s.as_str())));
    Ok(RecipePage {
        name: r.name.clone(),
        summary,
        body,
        params,
        scope: r.scope_display(),
        become_policy: r.become_policy(),
        ops: ops_of(&sources),
        irreversible: r.irreversible_steps(),
        modules: r
            .modules
            .iter()
            .map(|(label, source)| Module::of(label, source).name)
            .collect(),
        vetting: (opts.vetting)(r),
        tests: tests_of(&r.path, opts.run_tests),
        file,
    })
}

fn tests_of(recipe: &Path, run: bool) -> Tests {
    use super::recipe_test;
    let Ok(found) = recipe_test::find_tests(&[recipe.to_path_buf()]) else {
        return Tests::None;
    };
    let Some(target) = found.into_iter().next() else {
        return Tests::None;
    };
    let file = target.test.display().to_string();
    if run {
        return match recipe_test::run_file(&target, &mut |_| {}) {
            Ok(results) => {
                let passed = results.iter().filter(|c| c.passed).count();
                Tests::Ran {
                    file,
                    passed,
                    failed: results.len() - passed,
                    cases: results.into_iter().map(|c| (c.case, c.passed)).collect(),
                }
            }
            Err(e) => Tests::Broken {
                file,
                error: e.to_string(),
            },
        };
    }
    match recipe_test::count_cases(&target.test) {
        Ok(cases) => Tests::NotRun { file, cases },
        Err(e) => Tests::Broken {
            file,
            error: e.to_string(),
        },
    }
}

fn module_page(name: &str, origin: &str, source: &str) -> ModulePage {
    let (summary, body) = split_doc(&crate::recipe::doc_of(source));
    ModulePage {
        name: name.to_string(),
        origin: origin.to_string(),
        summary,
        body,
        functions: functions_of(source),
        ops: ops_of(&[(name.to_string(), source)]),
    }
}

/// The public functions of a module, each with the `///` lines above it.
fn functions_of(source: &str) -> Vec<FnDoc> {
    let mut out = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    for line in source.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d.strip_prefix(' ').unwrap_or(d));
            continue;
        }
        if let Some(rest) = t.strip_prefix("fn ") {
            if line.starts_with("fn ") {
                let signature = rest.split('{').next().unwrap_or(rest).trim().to_string();
                out.push(FnDoc {
                    signature,
                    doc: doc.join("\n"),
                });
            }
        }
        doc.clear();
    }
    out
}

/// Write the pages of `set` into `out` (created if missing): `index`, one page per
/// recipe, `module-NAME` per module. Returns the files written.
pub fn write(set: &DocSet, format: Format, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::CantCreate {
        path: out.to_path_buf(),
        why: e.to_string(),
    })?;
    let pages = match format {
        Format::Markdown => markdown::render(set),
        Format::Html => html::render(set)?,
    };
    let mut written = Vec::new();
    for (name, text) in pages {
        let path = out.join(format!("{name}.{}", format.ext()));
        std::fs::write(&path, text).map_err(|e| Error::CantCreate {
            path: path.clone(),
            why: e.to_string(),
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The file name (without extension) of a recipe's page and a module's.
pub fn recipe_file(name: &str) -> String {
    format!("recipe-{name}")
}

pub fn module_file(name: &str) -> String {
    format!("module-{name}")
}
