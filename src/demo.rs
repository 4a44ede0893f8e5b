//! `tend demo`: a sample log directory and the built-in log-rotate recipe, so a new
//! user sees a dry-run and a real run in one command, with no config and no root.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where `dir` really is (absolute, symlinks resolved), for the user to look at.
pub fn real_dir(dir: &Path) -> PathBuf {
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// Create (or reset) the sample under `dir`; returns the path of the recipe copy.
pub fn prepare(dir: &Path) -> Result<PathBuf> {
    let io = |what: &str, e| Error::io(format!("demo: cannot {what} in {}", dir.display()), e);
    let logs = dir.join("logs");
    if logs.exists() {
        std::fs::remove_dir_all(&logs).map_err(|e| io("reset logs", e))?;
    }
    std::fs::create_dir_all(&logs).map_err(|e| io("create logs", e))?;
    let big: String = (0..4000)
        .map(|i| {
            format!(
                "2026-11-28T10:{:02}:{:02} GET /api/items/{i} 200\n",
                i / 60 % 60,
                i % 60
            )
        })
        .collect();
    std::fs::write(logs.join("app.log"), &big).map_err(|e| io("write app.log", e))?;
    std::fs::write(logs.join("app.log.1"), "yesterday's requests\n").map_err(|e| io("write", e))?;
    std::fs::write(logs.join("worker.log"), "small log, below min_size\n")
        .map_err(|e| io("write worker.log", e))?;
    let recipe = dir.join("log-rotate.rhai");
    // The built-in recipe, so `tend demo` works from any install, with its scope
    // pointed at the demo's directory.
    let text = crate::recipe::builtin::recipe_source("log-rotate").unwrap_or_default();
    std::fs::write(&recipe, scoped_to(text, &real_dir(&logs)))
        .map_err(|e| io("write the recipe", e))?;
    Ok(recipe)
}

/// The recipe with its write scope (/var/log…) moved to the sample's logs, so the
/// demo needs no root and touches nothing else.
fn scoped_to(recipe: &str, logs: &Path) -> String {
    let logs = logs.display();
    recipe
        .lines()
        .map(|l| {
            if l.starts_with("//! scope:") {
                format!("//! scope: {logs}, {logs}/**\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}
