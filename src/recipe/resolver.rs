//! Import resolution. Rhai's stock file resolver accepts absolute paths and `../`;
//! a recipe must only reach the embedded stdlib and its own folder, so that what was
//! vetted is all that can run.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared, AST};

use crate::error::{Error, Result};

/// The stdlib, compiled into the binary so an installed `tend` works anywhere.
pub const STDLIB: &[(&str, &str)] = &[("logrotate", include_str!("../../stdlib/logrotate.rhai"))];

pub fn stdlib_source(name: &str) -> Option<&'static str> {
    STDLIB.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

struct Resolver {
    dir: PathBuf,
    seen: Mutex<Vec<(String, String)>>,
}

impl Resolver {
    fn source_of(&self, path: &str, pos: Position) -> Result<(String, String), Box<EvalAltResult>> {
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
        let local = self.dir.join(format!("{name}.rhai"));
        if local.is_file() {
            let text = std::fs::read_to_string(&local)
                .map_err(|e| refuse(format!("cannot read {}: {e}", local.display())))?;
            return Ok((local.display().to_string(), text));
        }
        if let Some(text) = stdlib_source(name) {
            return Ok((format!("stdlib/{name}.rhai"), text.to_string()));
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
        let (display, text) = self.source_of(path, pos)?;
        let mut ast = engine.compile(&text).map_err(|e| {
            Box::new(EvalAltResult::ErrorRuntime(
                format!("{display}:{}: {}", fmt_pos(e.position()), e.err_type()).into(),
                pos,
            ))
        })?;
        ast.set_source(display.clone());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)?;
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

/// Compile `source` with every import resolved into the AST.
pub fn compile(source: &str, display: &str, dir: &Path) -> Result<(AST, Vec<(String, String)>)> {
    let mut engine = crate::engine::compiler();
    let resolver = std::sync::Arc::new(Resolver {
        dir: dir.to_path_buf(),
        seen: Mutex::new(Vec::new()),
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
