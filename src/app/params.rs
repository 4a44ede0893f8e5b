//! A recipe's parameters: learn its declarations by evaluating it up to `params()`
//! (changing nothing), check the values given against them, record them for the audit
//! log with secrets kept out.

use super::*;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cancel::CancelToken;
use crate::engine::{self, HostContext, Limits, Mode};
use crate::error::{Error, Result};
use crate::ops::Ctx;
use crate::recipe::params::{ParamDecl, ParamType};
use crate::recipe::Recipe;
use crate::transport::local::Local;
use crate::transport::overlay::Overlay;
use crate::transport::Target;

/// Evaluate the recipe up to `params()` to learn and check its parameters, touching
/// nothing. Shared by `run`, `check` and `show`.
pub fn declared_params(recipe: &Recipe, given: &[(String, String)]) -> Result<Vec<ParamDecl>> {
    declared_params_within(recipe, given, &Limits::default(), &CancelToken::default())
}

/// [`declared_params`] under the run's own limits: a recipe that computes a lot
/// before `params()` (or has none) needs the `--max-operations` it was given here too.
pub(crate) fn declared_params_within(
    recipe: &Recipe,
    given: &[(String, String)],
    limits: &Limits,
    cancel: &CancelToken,
) -> Result<Vec<ParamDecl>> {
    let target: Arc<dyn Target> = Arc::new(Overlay::new(Arc::new(Local::new())));
    let host = Arc::new(HostContext::new(
        Ctx::plan(target).with_cancel(cancel.with_timeout(limits.timeout)),
        recipe.dir.clone(),
        Mode::Declare,
        given.to_vec(),
        recipe.param_docs(),
        null_sink(),
    ));
    let engine = engine::for_host(host.clone(), limits);
    let display = recipe.path.display().to_string();
    match engine.run_ast(&recipe.ast) {
        Ok(()) => {}
        Err(e) => match engine::declare_pass(&e) {
            Some(engine::DeclarePass::Declared) => {
                let mut decls = host.declared().unwrap_or_default();
                let order = recipe.param_order();
                decls.sort_by_key(|d| {
                    order
                        .iter()
                        .position(|n| *n == d.name)
                        .unwrap_or(usize::MAX)
                });
                check_given(&decls, given, &Default::default(), false)
                    .map_err(|m| Error::Param(format!("{display}: {m}")))?;
                return Ok(decls);
            }
            Some(engine::DeclarePass::NoParams) => {}
            None => {
                let text = engine::describe(&e, &display, limits);
                // Parameter problems are the caller's, not the recipe's.
                let (location, message) = text.split_once(": ").unwrap_or(("", &text));
                return Err(if engine::is_param_problem(&e) {
                    Error::Param(message.to_string())
                } else {
                    Error::Recipe {
                        location: location.to_string(),
                        message: message.to_string(),
                    }
                });
            }
        },
    }
    if let Some((k, _)) = given.first() {
        return Err(Error::Param(format!(
            "unknown parameter `{k}`; {} declares no parameters",
            display
        )));
    }
    Ok(Vec::new())
}

/// Check `-p` values against the declarations before anything runs, so that a typo
/// is a usage error and not a failed run: unknown names, values of the wrong type and,
/// with `all`, required parameters (secrets) that were not given.
pub(crate) fn check_given(
    decls: &[ParamDecl],
    given: &[(String, String)],
    supplied: &BTreeMap<String, crate::secret::Secret>,
    all: bool,
) -> std::result::Result<(), String> {
    if let Some((k, _)) = given
        .iter()
        .find(|(k, _)| !decls.iter().any(|d| d.name == *k))
    {
        let list: Vec<String> = decls
            .iter()
            .map(|d| format!("{} ({})", d.name, d.ty.as_str()))
            .collect();
        return Err(if list.is_empty() {
            format!("unknown parameter `{k}`; the recipe takes no parameters")
        } else {
            format!("unknown parameter `{k}`; it takes: {}", list.join(", "))
        });
    }
    let names: rhai::Map = decls
        .iter()
        .map(|d| (d.name.as_str().into(), rhai::Dynamic::UNIT))
        .collect();
    let checked: Vec<ParamDecl> = decls
        .iter()
        .filter(|d| all || given.iter().any(|(k, _)| *k == d.name))
        .cloned()
        .collect();
    crate::recipe::params::resolve(&names, &checked, given, supplied).map(|_| ())
}

/// Parameters as they may be recorded: secrets as `***`.
pub(crate) fn recorded_params(
    decls: &[ParamDecl],
    given: &[(String, String)],
) -> BTreeMap<String, String> {
    given
        .iter()
        .map(|(k, v)| {
            let secret = decls
                .iter()
                .any(|d| d.name == *k && d.ty == ParamType::Secret);
            let v = if secret {
                crate::secret::REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}
