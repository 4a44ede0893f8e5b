//! The recipe library: the recipes built into tend (`recipes/*.rhai`, embedded by
//! build.rs), found by name where no file of that name exists, listed, and copied out
//! to adapt and vet.
//!
//! **Vetting.** A built-in recipe is never vetted in place: it runs ad hoc as any
//! unvetted recipe does under `[trust] require_vetted` (dry-runs always; real runs as
//! the policy says), and the scheduler, which runs only vetted files, does not take
//! one by name. To schedule it, `tend recipes copy NAME DIR`, review, `tend vet` the
//! copy. Counting the binary as the approval would let an upgrade of tend change what
//! a schedule runs with nobody reviewing it; a copy changes only when someone edits
//! it, and then stops until vetted again.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::recipe::{builtin, Recipe};

/// One built-in recipe, for `tend recipes`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltinRecipe {
    pub name: String,
    /// The first line of its `//!` header.
    pub summary: String,
    pub hash: String,
}

/// The recipe `spec` names: the file at that path if there is one (a file path always
/// wins), else the built-in recipe of that name.
pub fn load_recipe(spec: &Path) -> Result<Recipe> {
    // symlink_metadata: a dangling link is a file the user named, whose error is
    // the one to show, not a built-in recipe's.
    if spec.symlink_metadata().is_ok() {
        return Recipe::load(spec);
    }
    if let Some(recipe) = spec.to_str().and_then(Recipe::builtin) {
        return recipe;
    }
    Recipe::load(spec).map_err(|e| match e {
        Error::RecipeRead { path, source }
            if source.kind() == std::io::ErrorKind::NotFound && is_bare_name(&path) =>
        {
            Error::RecipeRead {
                source: std::io::Error::other(format!(
                    "no such file, and no built-in recipe of that name ({}; `tend recipes` lists them)",
                    builtin::recipe_names().collect::<Vec<_>>().join(", ")
                )),
                path,
            }
        }
        e => e,
    })
}

/// A name, not a path: what `tend run NAME` would look up among the built-ins.
fn is_bare_name(path: &Path) -> bool {
    path.components().count() == 1 && path.extension().is_none()
}

/// Every built-in recipe, by name.
pub fn builtin_recipes() -> Result<Vec<BuiltinRecipe>> {
    builtin::recipe_names()
        .map(|name| {
            let r = Recipe::builtin(name).expect("listed")?;
            Ok(BuiltinRecipe {
                name: name.to_string(),
                summary: builtin::summary(&r.source),
                hash: r.hash,
            })
        })
        .collect()
}

/// Write the built-in recipe `name` to `dir/NAME.rhai` to adapt and vet. Never
/// replaces anything: an existing file (or a link planted under that name) is refused
/// (exit 73), as `tend new` does. Returns the path written.
pub fn copy_builtin(name: &str, dir: &Path) -> Result<PathBuf> {
    let text = builtin::recipe_source(name).ok_or_else(|| Error::RecipeRead {
        path: PathBuf::from(name),
        source: std::io::Error::other(format!(
            "no built-in recipe of that name ({})",
            builtin::recipe_names().collect::<Vec<_>>().join(", ")
        )),
    })?;
    let path = dir.join(format!("{name}.rhai"));
    write_new_file(&path, text.as_bytes())?;
    Ok(path)
}

/// Write a file the user asked for (`tend new`, `tend import-script`, `tend recipes
/// copy`) only if nothing is there: an existing file, or a link planted under that
/// name, is refused (exit 73) rather than followed or overwritten; the parent
/// directory is not created.
pub fn write_new_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::CantCreate {
            path: path.to_path_buf(),
            why: match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    "it exists already, and is left as it is (remove it or choose another name)"
                        .into()
                }
                std::io::ErrorKind::NotFound => format!(
                    "the directory {} does not exist (tend does not create it)",
                    path.parent().unwrap_or(Path::new(".")).display()
                ),
                _ => crate::error::describe_io(&e),
            },
        })?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// `recipe`'s vetting status: a built-in one is never vetted in place (see the
/// module's header), whatever the trust file holds.
pub fn trust_status(trust: &crate::trust::Trust, recipe: &Recipe) -> Result<crate::trust::Status> {
    if recipe.builtin {
        return Ok(crate::trust::Status::Unvetted {
            why: format!(
                "a built-in recipe is not vetted in place; to schedule it, `tend recipes copy {} DIR`, review the copy and `tend vet` it",
                recipe.name
            ),
            entry: None,
        });
    }
    trust.status(recipe)
}
