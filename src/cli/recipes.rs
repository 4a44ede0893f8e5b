//! `tend recipes`: the recipes built into tend, listed with their one-line summary,
//! and `tend recipes copy NAME DIR` to write one out to adapt and vet. (`tend show`,
//! `check` and `run` take a built-in recipe by name: see `app::library`.)

use super::*;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RecipesArgs {
    #[command(subcommand)]
    command: Option<RecipesCommand>,
    /// One JSON object per recipe (`kind: builtin_recipe`)
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Subcommand, Debug)]
enum RecipesCommand {
    /// Write the built-in recipe NAME to DIR/NAME.rhai, to adapt and vet (never over
    /// an existing file: exit 73)
    Copy {
        /// The built-in recipe (see `tend recipes`)
        name: String,
        /// An existing directory
        dir: PathBuf,
    },
}

pub(crate) fn run(human: &Human, args: &RecipesArgs) -> Result<i32> {
    match &args.command {
        Some(RecipesCommand::Copy { name, dir }) => {
            let path = app::copy_builtin(name, dir)?;
            outln!("{}", path.display());
            human.note(&format!(
                "built-in recipe {name} copied; review it, then `tend vet {}` to run it on a schedule",
                path.display()
            ));
            Ok(exit::OK)
        }
        None => list(args.json),
    }
}

fn list(json: bool) -> Result<i32> {
    let recipes = app::builtin_recipes()?;
    if json {
        for r in &recipes {
            let mut v = serde_json::to_value(r).map_err(|e| Error::Other(e.to_string()))?;
            v["kind"] = "builtin_recipe".into();
            outln!("{v}");
        }
        return Ok(exit::OK);
    }
    let width = recipes.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in &recipes {
        outln!("{:<width$}  {}", r.name, escape(&r.summary));
    }
    Ok(exit::OK)
}

/// `tend show|check|run NAME`: the file NAME if there is one, else the built-in recipe;
/// says which on stderr when it is the built-in one (a file path always wins).
pub(crate) fn load(human: &Human, spec: &std::path::Path) -> Result<Recipe> {
    let recipe = app::load_recipe(spec)?;
    if recipe.builtin {
        human.note(&format!("built-in recipe {}", recipe.name));
    }
    Ok(recipe)
}
