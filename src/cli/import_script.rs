//! `tend import-script SCRIPT --name NAME [--changes PATH]… [--dir DIR]`: a recipe
//! skeleton around an existing shell script (see [`crate::app::import_script`]).

use clap::Args;
use std::path::PathBuf;

use super::Human;
use crate::app::import_script::{self, ImportSpec};
use crate::error::{exit, Error, Result};
use crate::out::outln;
use crate::recipe::Recipe;
use crate::report::escape;

#[derive(Args, Debug)]
pub struct ImportScriptArgs {
    /// The shell script to wrap
    script: PathBuf,
    /// The recipe's name: NAME.rhai is written (never over an existing file)
    #[arg(long)]
    name: String,
    /// A path the script may change (absolute; a glob, or a directory for everything
    /// under it). Becomes the recipe's scope and the step's `changes:`, which make
    /// it reversible. Repeat for several
    #[arg(long = "changes", value_name = "PATH")]
    changes: Vec<String>,
    /// Where to write NAME.rhai
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// One JSON object describing the recipe written
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(human: &Human, args: &ImportScriptArgs) -> Result<i32> {
    if args.name.is_empty()
        || !args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Usage(format!(
            "--name {:?}: use letters, digits, `-` and `_` (it names the file NAME.rhai)",
            args.name
        )));
    }
    if let Some(bad) = args.changes.iter().find(|c| !c.starts_with('/')) {
        return Err(Error::Usage(format!(
            "--changes {bad:?}: give an absolute path"
        )));
    }
    // Read as a recipe is: a FIFO cannot hang it, `/dev/zero` cannot exhaust memory
    // (1 MiB at most), and binary content is refused.
    let script = crate::recipe::read_text(&args.script).map_err(|e| match e {
        crate::recipe::ReadError::Io(source) => Error::RecipeRead {
            path: args.script.clone(),
            source,
        },
        crate::recipe::ReadError::Invalid(why) => Error::Usage(format!(
            "{}: {why}; only shell scripts can be imported",
            args.script.display()
        )),
    })?;
    let text = import_script::recipe(&ImportSpec {
        name: &args.name,
        source: &args.script.display().to_string(),
        script: &script,
        changes: &args.changes,
    });
    let path = args.dir.join(format!("{}.rhai", args.name));
    crate::app::write_new_file(&path, text.as_bytes())?;
    // What was written must load: a script the scan misread is caught here, not on
    // the first run.
    let recipe = Recipe::load(&path)?;
    let found = import_script::scan(&script);
    let params: Vec<String> = found
        .positional
        .keys()
        .map(|n| format!("arg{n}"))
        .chain(found.env.keys().map(|v| v.to_ascii_lowercase()))
        .collect();
    let reversible = recipe.irreversible_steps().is_empty();
    if args.json {
        let v = serde_json::json!({
            "kind": "import",
            "path": path.display().to_string(),
            "recipe": recipe.name,
            "shell": found.shell,
            "params": params,
            "changes": args.changes,
            "reversible": reversible,
        });
        outln!("{v}");
        return Ok(exit::OK);
    }
    human.line(&format!(
        "wrote {} ({} script, parameters: {})",
        escape(&path.display().to_string()),
        found.shell,
        if params.is_empty() {
            "none".to_string()
        } else {
            params.join(", ")
        }
    ));
    if !reversible {
        human.line(
            "note: no --changes given: tend cannot tell what the script changes, so a rollback \
             cannot undo it; add the paths it writes (--changes /etc/app/**) to make it reversible",
        );
    }
    human.line(&format!(
        "next: tend show {p}; tend run {p} --dry-run; tend vet {p} --by YOU",
        p = escape(&path.display().to_string())
    ));
    Ok(exit::OK)
}
