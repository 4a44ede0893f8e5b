//! `tend doc [PATH…] [--format html|markdown] [--out DIR] [--test]`: pages to share
//! for the recipes in PATH (see [`crate::app::doc`]).

use clap::Args;
use std::path::PathBuf;

use super::{config, state_dir, Cli, Human};
use crate::app::doc::{self, Format, Options};
use crate::error::{exit, Result};
use crate::out::outln;
use crate::report::escape;

#[derive(Args, Debug)]
pub struct DocArgs {
    /// Recipe directories (every *.rhai but tests) or recipe files [default: .]
    paths: Vec<PathBuf>,
    /// Page format: html (plain, printable, no JavaScript) or markdown
    #[arg(long, value_enum, default_value = "html")]
    format: Format,
    /// Where the pages go (created if missing; pages of the same names are replaced)
    #[arg(long, default_value = "tend-doc")]
    out: PathBuf,
    /// Run each recipe's tests and show every case's result (else only their count)
    #[arg(long)]
    test: bool,
    /// One JSON object listing the pages written
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(cli: &Cli, human: &Human, args: &DocArgs) -> Result<i32> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let trust = state_dir(cli).and_then(|state| config(cli)?.trust(&state));
    let vetting = |r: &crate::recipe::Recipe| match &trust {
        Ok(t) => match t.status(r) {
            Ok(s) => s.describe(),
            Err(e) => format!("cannot tell: {e}"),
        },
        Err(e) => format!("cannot tell: {e}"),
    };
    let set = doc::gather(
        &paths,
        &Options {
            vetting: &vetting,
            run_tests: args.test,
        },
    )?;
    let written = doc::write(&set, args.format, &args.out)?;
    if args.json {
        let v = serde_json::json!({
            "kind": "doc",
            "out": args.out.display().to_string(),
            "recipes": set.recipes.iter().map(|r| &r.name).collect::<Vec<_>>(),
            "modules": set.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
            "pages": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        outln!("{v}");
    } else {
        human.line(&format!(
            "{} recipe(s), {} module(s): {} page(s) in {}; start at {}",
            set.recipes.len(),
            set.modules.len(),
            written.len(),
            escape(&args.out.display().to_string()),
            escape(
                &args
                    .out
                    .join(format!("index.{}", args.format.ext()))
                    .display()
                    .to_string()
            ),
        ));
    }
    Ok(exit::OK)
}
