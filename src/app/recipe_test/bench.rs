//! The bench one test case runs on: its throwaway root and state directory, the
//! recipe with its scope rebased into the root, its parameters rebased likewise, and
//! runs through the application layer ([`crate::app::run`]) that record their steps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::tree::{self, Fixture, Tree};
use crate::app::{self, Actor, Auth, Config, RunRequest, Trigger};
use crate::error::{Error, Result};
use crate::event::{Event, Sink};
use crate::ops::StepReport;
use crate::recipe::params::ParamType;
use crate::recipe::scope::Scope;
use crate::recipe::Recipe;
use crate::state::StateDir;
use crate::store::Stores;

pub struct Bench {
    _root_dir: tempfile::TempDir,
    root: PathBuf,
    _state_dir: tempfile::TempDir,
    state: StateDir,
    recipe: Recipe,
    /// The scope the recipe declares, as written (not rebased).
    pub scope: Option<Scope>,
    params: Vec<(String, String)>,
    config: Config,
    actor: Actor,
}

/// What one run did.
pub struct Ran {
    pub steps: Vec<StepReport>,
    pub error: Option<String>,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(format!("tend test: {what}"), e)
}

impl Bench {
    /// `real_paths`: parameters left as they are (see [`rebase`]).
    pub fn new(recipe: &Path, given: &[(String, String)], real_paths: &[String]) -> Result<Bench> {
        let root_dir = tempfile::Builder::new()
            .prefix("tend-test-root-")
            .tempdir()
            .map_err(io("cannot make the test root"))?;
        let root = root_dir
            .path()
            .canonicalize()
            .map_err(io("cannot resolve the test root"))?;
        let state_dir = tempfile::Builder::new()
            .prefix("tend-test-state-")
            .tempdir()
            .map_err(io("cannot make a state directory"))?;
        let state =
            StateDir::open(state_dir.path())?.with_lock_dir(&state_dir.path().join("locks"))?;
        let mut recipe = Recipe::load(recipe)?;
        let scope = recipe.scope_set();
        recipe.source = rebase_scope(&recipe.source, &root.display().to_string());
        let decls = app::declared_params(&recipe, &[])?;
        let r = root.display().to_string();
        let list = |name: &str| {
            decls
                .iter()
                .any(|d| d.name == name && d.ty == ParamType::List)
        };
        let real = |name: &str| real_paths.iter().any(|n| n == name);
        let mut params: Vec<(String, String)> = given
            .iter()
            .map(|(k, v)| match real(k) {
                true => (k.clone(), v.clone()),
                false => (k.clone(), rebase(v, &r, list(k))),
            })
            .collect();
        // A default path would be the real one: it is rebased too.
        for d in &decls {
            let Some(default) = &d.default else { continue };
            if params.iter().any(|(k, _)| *k == d.name) || real(&d.name) {
                continue;
            }
            let rebased = rebase(default, &r, d.ty == ParamType::List);
            if rebased != *default {
                params.push((d.name.clone(), rebased));
            }
        }
        Ok(Bench {
            _root_dir: root_dir,
            root,
            _state_dir: state_dir,
            state,
            recipe,
            scope,
            params,
            config: Config::default(),
            actor: Actor::new(
                "tend-test",
                Auth::Other {
                    how: "tend test".into(),
                },
                Trigger::Cli,
            ),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path the recipe reported, relative to the root; `None` outside it.
    pub fn rel(&self, path: &str) -> Option<String> {
        let r = self.root.display().to_string();
        if path == r {
            return Some(String::new());
        }
        path.strip_prefix(&format!("{r}/")).map(String::from)
    }

    /// Text with the root taken out, as the recipe's author wrote the paths.
    pub fn shorten(&self, text: &str) -> String {
        text.replace(&self.root.display().to_string(), "")
    }

    pub fn snapshot(&self) -> Result<Tree> {
        tree::snapshot(&self.root).map_err(io("cannot read the test root"))
    }

    /// Build the fixture in the (empty) root; its snapshot.
    pub fn build(&self, fixture: &BTreeMap<String, Fixture>) -> Result<Tree> {
        tree::build(&self.root, fixture).map_err(io("cannot build the fixture"))?;
        self.snapshot()
    }

    /// Empty the root and build the fixture again.
    pub fn rebuild(&self, fixture: &BTreeMap<String, Fixture>) -> Result<Tree> {
        tree::clear(&self.root).map_err(io("cannot empty the test root"))?;
        self.build(fixture)
    }

    /// Run the recipe (`dry`: a dry-run), failing it after step `fail_after`.
    pub fn run(&self, dry: bool, fail_after: Option<u64>) -> Result<Ran> {
        let mut req = RunRequest::local(self.params.clone(), dry);
        req.unvetted = true;
        let cancel = req.cancel.clone();
        let steps: Arc<Mutex<Vec<StepReport>>> = Arc::default();
        let keep = steps.clone();
        let sink: Sink = Arc::new(move |e: &Event| {
            if let Event::Step { step, report, .. } = e {
                keep.lock().expect("lock").push(report.clone());
                if Some(*step) == fail_after {
                    cancel.cancel(format!("tend test injected a failure after step {step}"));
                }
            }
        });
        let r = app::run(
            &Stores::embedded(&self.state),
            &self.config,
            &self.actor,
            &self.recipe,
            &req,
            sink,
        )?;
        let steps = std::mem::take(&mut *steps.lock().expect("lock"));
        Ok(Ran {
            steps,
            error: r.error().map(|e| self.shorten(e)),
        })
    }
}

/// `{ROOT}` becomes the root; an absolute path (each item of a list) goes below it.
/// A value with whitespace is no path but a command line, and stays as it is.
fn rebase(value: &str, root: &str, list: bool) -> String {
    let one = |v: &str| {
        let path = !v.contains(char::is_whitespace);
        let v = v.replace("{ROOT}", root);
        if path && v.starts_with('/') && !v.starts_with(&format!("{root}/")) && v != root {
            format!("{root}{v}")
        } else {
            v
        }
    };
    if list {
        value
            .split(',')
            .map(|v| one(v.trim()))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        one(value)
    }
}

/// The header's `scope:` lines with every pattern below the root, so that the run
/// enforces the declared scope there.
fn rebase_scope(source: &str, root: &str) -> String {
    let mut in_header = true;
    let mut out = String::with_capacity(source.len());
    for line in source.split_inclusive('\n') {
        let t = line.trim_start();
        in_header = in_header && (t.starts_with("//!") || t.trim().is_empty());
        let rest = t.strip_prefix("//!").map(str::trim_start);
        match rest
            .and_then(|r| r.strip_prefix("scope:"))
            .filter(|_| in_header)
        {
            Some(patterns) => {
                let rebased: Vec<String> = patterns
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| format!("{root}{p}"))
                    .collect();
                out.push_str(&format!("//! scope: {}\n", rebased.join(", ")));
            }
            None => out.push_str(line),
        }
    }
    out
}
