//! Import resolution. Rhai's stock file resolver accepts absolute paths and `../`;
//! a recipe must only reach the embedded stdlib and its own folder, so that what was
//! vetted is all that can run.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared, AST};

use crate::error::{Error, Result};

pub use super::builtin::{stdlib_source, STDLIB};

struct Resolver {
    /// The recipe's folder; `None` for a built-in recipe, which has none and may
    /// import only stdlib modules (never a file of the working directory).
    dir: Option<PathBuf>,
    seen: Mutex<Vec<(String, String)>>,
    /// The files being loaded, outermost first (the recipe itself when it is a
    /// file): an import of one of them is a cycle, which would recurse until the
    /// stack overflows.
    loading: Mutex<Vec<(PathBuf, String)>>,
}

/// How deep imports may nest. Far more than any recipe needs; it keeps a long chain
/// of modules from exhausting the stack.
const MAX_IMPORT_DEPTH: usize = 16;

impl Resolver {
    /// `(display name, text, real path)`; the real path is `None` for stdlib modules.
    fn source_of(
        &self,
        path: &str,
        pos: Position,
    ) -> Result<(String, String, Option<PathBuf>), Box<EvalAltResult>> {
        let refuse = |why: String| -> Box<EvalAltResult> {
            // ErrorRuntime, not ErrorModuleNotFound: Rhai replaces the latter's message.
            EvalAltResult::ErrorRuntime(why.into(), pos).into()
        };
        if path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return Err(refuse(format!(
                "import \"{path}\" is not allowed: a recipe imports only stdlib modules ({}) and files in its own folder",
                stdlib_names()
            )));
        }
        let name = path.strip_suffix(".rhai").unwrap_or(path);
        let file = format!("{name}.rhai");
        let Some(dir) = &self.dir else {
            return stdlib_source(name)
                .map(|text| (format!("stdlib/{name}.rhai"), text.to_string(), None))
                .ok_or_else(|| {
                    refuse(format!(
                        "no module \"{path}\": a built-in recipe imports only stdlib modules ({})",
                        stdlib_names()
                    ))
                });
        };
        let local = dir.join(&file);
        let real = super::in_folder(dir, &file)
            .map_err(|why| refuse(format!("import \"{path}\" is not allowed: {why}")))?;
        if let Some(real) = real {
            // What is read (and hashed for vetting) is the resolved file, so a symlink
            // swapped after the check cannot change what was loaded.
            let text = super::read_text(&real).map_err(|e| {
                refuse(match e {
                    super::ReadError::Io(e) => format!(
                        "cannot read {}: {}",
                        local.display(),
                        crate::error::describe_io(&e)
                    ),
                    super::ReadError::Invalid(why) => format!("{} {why}", local.display()),
                })
            })?;
            return Ok((local.display().to_string(), text, Some(real)));
        }
        if let Some(text) = stdlib_source(name) {
            return Ok((format!("stdlib/{name}.rhai"), text.to_string(), None));
        }
        Err(refuse(format!(
            "no module \"{path}\": not in stdlib ({}) nor at {}",
            stdlib_names(),
            local.display()
        )))
    }
}

fn stdlib_names() -> String {
    STDLIB
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let (display, text, real) = self.source_of(path, pos)?;
        let refuse = |why: String| -> Box<EvalAltResult> {
            EvalAltResult::ErrorRuntime(why.into(), pos).into()
        };
        let key = real.unwrap_or_else(|| PathBuf::from(&display));
        {
            let loading = self.loading.lock().expect("resolver lock");
            if let Some(at) = loading.iter().position(|(p, _)| *p == key) {
                let chain: Vec<&str> = loading[at..]
                    .iter()
                    .map(|(_, name)| name.as_str())
                    .chain([display.as_str()])
                    .collect();
                return Err(refuse(format!(
                    "import \"{path}\" makes a cycle: {}; modules may not import each other in a circle",
                    chain.join(" imports ")
                )));
            }
            if loading.len() > MAX_IMPORT_DEPTH {
                return Err(refuse(format!(
                    "import \"{path}\" nests imports more than {MAX_IMPORT_DEPTH} deep"
                )));
            }
        }
        let mut ast = engine.compile(&text).map_err(|e| {
            Box::new(EvalAltResult::ErrorRuntime(
                format!("{display}:{}: {}", fmt_pos(e.position()), e.err_type()).into(),
                pos,
            ))
        })?;
        ast.set_source(display.clone());
        self.loading
            .lock()
            .expect("resolver lock")
            .push((key, display.clone()));
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        self.loading.lock().expect("resolver lock").pop();
        let module = module?;
        self.seen
            .lock()
            .expect("resolver lock")
            .push((display, text));
        Ok(module.into())
    }
}

pub fn fmt_pos(p: Position) -> String {
    match (p.line(), p.position()) {
        (Some(l), Some(c)) => format!("{l}:{c}"),
        (Some(l), None) => l.to_string(),
        _ => "?".into(),
    }
}

/// Compile `source` with every import resolved into the AST. `file`: where the
/// recipe was read from, if it was, so that importing itself is seen as a cycle.
/// `dir`: the recipe's folder, `None` for a built-in recipe.
pub fn compile(
    source: &str,
    display: &str,
    dir: Option<&Path>,
    file: Option<&Path>,
) -> Result<(AST, Vec<(String, String)>)> {
    let mut engine = super::dialect::compiler();
    let loading = file
        .and_then(|f| f.canonicalize().ok())
        .map(|real| (real, display.to_string()))
        .into_iter()
        .collect();
    let resolver = std::sync::Arc::new(Resolver {
        dir: dir.map(Path::to_path_buf),
        seen: Mutex::new(Vec::new()),
        loading: Mutex::new(loading),
    });
    engine.set_module_resolver(SharedResolver(resolver.clone()));
    let scope = Scope::new();
    let mut ast = engine
        .compile_into_self_contained(&scope, source)
        .map_err(|e| match e.as_ref() {
            EvalAltResult::ErrorRuntime(msg, pos) => Error::Recipe {
                location: format!(
                    "{display}:{}",
                    import_position(source, &msg.to_string(), *pos)
                ),
                message: msg.to_string(),
            },
            EvalAltResult::ErrorParsing(p, pos) => Error::Recipe {
                location: format!("{display}:{}", fmt_pos(*pos)),
                message: p.to_string(),
            },
            other => Error::Recipe {
                location: format!("{display}:{}", fmt_pos(other.position())),
                message: other.to_string(),
            },
        })?;
    ast.set_source(display.to_string());
    let mut modules = resolver.seen.lock().expect("resolver lock").clone();
    modules.sort();
    modules.dedup();
    Ok((ast, modules))
}

/// Rhai resolves imports at compile time without a position; find the `import` line
/// of the module named in the message so the error still says where.
fn import_position(source: &str, message: &str, pos: Position) -> String {
    if !pos.is_none() {
        return fmt_pos(pos);
    }
    let quoted = message.split('"').nth(1).unwrap_or_default();
    source
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("import") && l.contains(&format!("\"{quoted}\"")))
        .map(|(i, l)| format!("{}:{}", i + 1, l.find("import").unwrap_or(0) + 1))
        .unwrap_or_else(|| fmt_pos(pos))
}

/// `set_module_resolver` takes ownership; this lets us read what was resolved after.
struct SharedResolver(std::sync::Arc<Resolver>);

impl ModuleResolver for SharedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        self.0.resolve(engine, source, path, pos)
    }
}
