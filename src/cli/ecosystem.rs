//! What makes tend fit in next to other command-line tools: shell completions
//! (`tend completions SHELL`), man pages (`tend man`), and a recipe skeleton to start
//! from (`tend new NAME`).
//!
//! Completions and man pages are generated from the clap definition the binary parses
//! with (handed in by the CLI), so they cannot drift from the real flags.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use clap_complete::Shell;

use crate::error::{exit, Error, Result};
use crate::out::outln;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Where to write the pages (created if missing; pages there are replaced)
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The recipe's name: NAME.rhai is written (NAME may include a directory)
    name: PathBuf,
}

/// Print the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "tend", &mut script);
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Error::io("cannot write the completion script", e))?;
    Ok(exit::OK)
}

/// Write one roff page per command and subcommand into `args.dir` (tend.1,
/// tend-run.1, tend-audit-show.1, …), naming each file written.
pub fn man(args: &ManArgs, cmd: clap::Command) -> Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Error::io(format!("cannot create {}", args.dir.display()), e))?;
    // Built once, so that global flags show on every subcommand's page and each
    // subcommand is named after its parents ("tend-audit-show").
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages);
    for page in pages {
        let man = clap_mangen::Man::new(page)
            .source(format!("tend {}", env!("CARGO_PKG_VERSION")))
            .manual("tend manual");
        let path = args.dir.join(man.get_filename());
        let mut roff = Vec::new();
        man.render(&mut roff)
            .and_then(|()| std::fs::write(&path, roff))
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        outln!("{}", path.display());
    }
    Ok(exit::OK)
}

fn collect(cmd: &clap::Command, pages: &mut Vec<clap::Command>) {
    pages.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, pages);
    }
}

/// Write the skeleton of a new recipe to NAME.rhai; an existing file is never replaced.
pub fn new(args: &NewArgs) -> Result<i32> {
    let path = match args.name.extension() {
        Some(e) if e == "rhai" => args.name.clone(),
        _ => {
            let mut p = args.name.clone().into_os_string();
            p.push(".rhai");
            PathBuf::from(p)
        }
    };
    let name = recipe_name(&path)?;
    let text = skeleton(&name, &path);
    crate::app::write_new_file(&path, text.as_bytes())?;
    outln!("{}", path.display());
    Ok(exit::OK)
}

/// The file's stem, which also names the skeleton's working directory, so it is kept
/// to characters that need no quoting in a path, a glob or a shell.
fn recipe_name(path: &Path) -> Result<String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let ok = !stem.is_empty()
        && !stem.starts_with(['-', '.'])
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(stem.to_string())
    } else {
        Err(Error::Usage(format!(
            "recipe name {:?}: use letters, digits, '-', '_' and '.' (not first), as in `tend new clean-cache`",
            stem
        )))
    }
}

fn skeleton(name: &str, path: &Path) -> String {
    let file = path.display();
    format!(
        r#"//! {name}: say in one line what this recipe keeps in shape.
//!
//! Say here what it changes, when to run it and what a rollback gives back. This
//! header is what `tend show {file}` prints, with the parameters below.
//! scope: /tmp/{name}, /tmp/{name}/**
//!
//! The scope above lists every path the recipe may change (absolute globs; a step
//! outside it is refused). Next: `tend check {file}`, `tend show {file}`,
//! `tend run {file} --dry-run`, then `tend vet {file}` to approve it as it is.

let p = params(#{{
    dir: "/tmp/{name}",   // the directory to keep (must stay inside the scope)
}});

// One step: idempotent, planned exactly by --dry-run, undone by a rollback.
fs::dir(p.dir, #{{mode: 0o750}});
"#
    )
}
