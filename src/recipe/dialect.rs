//! The Rhai dialect recipes are written in: the sandbox limits, Rhai's standard
//! library shared by every engine, and the types and converters every recipe sees
//! (`secret()`, `size()`, `duration()`). Compiling a recipe (here) and running it
//! ([`crate::engine`]) both start from it, so a recipe means the same in both.

use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext};

use super::params::{parse_duration, parse_size};
use crate::secret::{Secret, SecretDecl, REDACTED};

pub type RResult<T> = Result<T, Box<EvalAltResult>>;

/// Sandbox limits. Rhai leaves them all off by default, and its call-depth default
/// differs between debug and release builds, so every one is set here.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_operations: u64,
    pub timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 50_000_000,
            timeout: None,
        }
    }
}

/// A script error at the position of the call being made.
pub fn err(call: &NativeCallContext, message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into().into(), call.call_position()).into()
}

/// `cancel`: stops the script between operations once cancelled or out of time.
pub fn sandbox(engine: &mut Engine, limits: &Limits, cancel: Option<crate::cancel::CancelToken>) {
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(64);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_string_size(64 * 1024 * 1024);
    engine.set_max_array_size(1_000_000);
    engine.set_max_map_size(100_000);
    engine.set_max_modules(64);
    engine.set_max_variables(10_000);
    engine.set_max_functions(10_000);
    engine.disable_symbol("eval");
    if let Some(cancel) = cancel {
        // The value is the typed reason, read back by `describe`.
        engine.on_progress(move |ops| {
            if ops % 256 == 0 {
                cancel.stopped().map(Dynamic::from)
            } else {
                None
            }
        });
    }
}

/// An engine with Rhai's standard library and nothing else. The library is built
/// once and shared (`Engine::new` builds it again for every engine: most of the cost
/// of an engine per host). No module resolver either: a recipe's imports are resolved
/// when it is compiled and travel inside its AST, so at run time nothing can be
/// loaded from disk, not even by an `import` whose path is computed.
pub fn base() -> Engine {
    use rhai::packages::{Package, StandardPackage};
    static STD: std::sync::OnceLock<rhai::Shared<rhai::Module>> = std::sync::OnceLock::new();
    let std = STD.get_or_init(|| StandardPackage::new().as_shared_module());
    let mut engine = Engine::new_raw();
    engine.register_global_module(std.clone());
    engine
}

/// The engine used to compile recipes and their modules: same limits and symbols
/// as a run, no operations bound to any host.
pub fn compiler() -> Engine {
    let mut engine = base();
    sandbox(&mut engine, &Limits::default(), None);
    register_types(&mut engine);
    engine
}

/// The types and converters of the dialect.
pub fn register_types(engine: &mut Engine) {
    engine
        .register_type_with_name::<Secret>("secret")
        .register_fn("to_string", |_: &mut Secret| REDACTED.to_string())
        .register_fn("to_debug", |_: &mut Secret| REDACTED.to_string())
        .register_type_with_name::<SecretDecl>("secret")
        .register_fn("to_string", |_: &mut SecretDecl| "secret()".to_string())
        .register_fn("secret", || SecretDecl)
        .register_fn("size", |call: NativeCallContext, s: &str| -> RResult<i64> {
            parse_size(s).map_err(|q| {
                err(
                    &call,
                    format!(
                        "{}: {s:?} (write like 10M, 1G)",
                        q.describe("a size", "bytes")
                    ),
                )
            })
        })
        .register_fn(
            "duration",
            |call: NativeCallContext, s: &str| -> RResult<i64> {
                parse_duration(s).map_err(|q| {
                    err(
                        &call,
                        format!(
                            "{}: {s:?} (write like 30s, 7d)",
                            q.describe("a duration", "seconds")
                        ),
                    )
                })
            },
        );
}
