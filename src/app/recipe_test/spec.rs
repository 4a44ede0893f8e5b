//! The test file of a recipe (`NAME.test.rhai`): a Rhai script that declares cases
//! (`case(name, #{fixture, params}, |t| { … })`, with file-wide `fixture(…)` and
//! `params(…)` defaults) and, for each case, the author's expectations, run against
//! the tree the recipe left (`t.expect_file(…)`, `t.expect_changed([…])`, …).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, Position, AST};

use super::tree::Fixture;
use crate::error::{Error, Result};
use crate::recipe::params::{parse_duration, parse_size};

type RResult<T> = std::result::Result<T, Box<EvalAltResult>>;

/// One declared case.
#[derive(Clone)]
pub struct CaseSpec {
    pub name: String,
    pub line: usize,
    /// Root-relative paths.
    pub fixture: BTreeMap<String, Fixture>,
    /// As the recipe gets them with `-p`, before rebasing.
    pub params: Vec<(String, String)>,
    pub check: Option<FnPtr>,
    /// `idempotent: false`: a second run is meant to change things again (a recipe
    /// that acts on every run), so that check is skipped.
    pub idempotent: bool,
    /// Parameters whose absolute paths are the machine's own (a program to run),
    /// not rebased into the root.
    pub real_paths: Vec<String>,
}

/// A loaded test file: its cases and what their check closures need to run.
pub struct TestFile {
    pub path: PathBuf,
    pub engine: Engine,
    pub ast: AST,
    pub cases: Vec<CaseSpec>,
}

#[derive(Default)]
struct Declared {
    fixture: BTreeMap<String, Fixture>,
    params: Vec<(String, String)>,
    cases: Vec<CaseSpec>,
}

fn fail<T>(message: impl Into<String>) -> RResult<T> {
    Err(message.into().into())
}

/// Evaluate the test file, collecting its cases. A mistake in it is a data error
/// (exit 65) naming file:line.
pub fn load(path: &Path) -> Result<TestFile> {
    let display = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| Error::RecipeRead {
        path: path.to_path_buf(),
        source: e,
    })?;
    let bad = |pos: Position, message: String| Error::Recipe {
        location: match pos.line() {
            Some(l) => format!("{display}:{l}:{}", pos.position().unwrap_or(1)),
            None => display.clone(),
        },
        message,
    };
    let declared: Arc<Mutex<Declared>> = Arc::default();
    let mut engine = Engine::new();
    engine.set_max_operations(10_000_000);
    engine.set_max_expr_depths(64, 64);
    register_declarations(&mut engine, declared.clone());
    register_checks(&mut engine);
    let ast = engine
        .compile(&source)
        .map_err(|e| bad(e.position(), e.err_type().to_string()))?;
    engine.run_ast(&ast).map_err(|e| {
        let pos = e.position();
        let message = match *e {
            EvalAltResult::ErrorRuntime(ref v, _) => v.to_string(),
            ref other => other.to_string(),
        };
        // A message of ours already says where; Rhai's own add " (line …)".
        let message = message
            .split(" (line ")
            .next()
            .unwrap_or_default()
            .to_string();
        bad(pos, message)
    })?;
    let cases = std::mem::take(&mut declared.lock().expect("lock").cases);
    if cases.is_empty() {
        return Err(bad(
            Position::NONE,
            "declares no case: add `test(\"what it checks\", #{ fixture: #{…} });`".into(),
        ));
    }
    Ok(TestFile {
        path: path.to_path_buf(),
        engine,
        ast,
        cases,
    })
}

fn register_declarations(engine: &mut Engine, declared: Arc<Mutex<Declared>>) {
    let d = declared.clone();
    engine.register_fn("fixture", move |map: Map| -> RResult<()> {
        let f = fixture(&map)?;
        d.lock().expect("lock").fixture.extend(f);
        Ok(())
    });
    let d = declared.clone();
    engine.register_fn("params", move |map: Map| -> RResult<()> {
        let p = params(&map)?;
        d.lock().expect("lock").params.extend(p);
        Ok(())
    });
    let d = declared.clone();
    engine.register_fn(
        "test",
        move |call: NativeCallContext, name: &str, opts: Map| -> RResult<()> {
            add_case(&d, &call, name, opts, None)
        },
    );
    let d = declared;
    engine.register_fn(
        "test",
        move |call: NativeCallContext, name: &str, opts: Map, check: FnPtr| -> RResult<()> {
            add_case(&d, &call, name, opts, Some(check))
        },
    );
}

fn add_case(
    declared: &Mutex<Declared>,
    call: &NativeCallContext,
    name: &str,
    opts: Map,
    check: Option<FnPtr>,
) -> RResult<()> {
    let mut d = declared.lock().expect("lock");
    if name.trim().is_empty() {
        return fail("a test needs a name saying what it checks");
    }
    if d.cases.iter().any(|c| c.name == name) {
        return fail(format!("test {name:?} is declared twice"));
    }
    let mut fixture_map = d.fixture.clone();
    let mut all_params = d.params.clone();
    let mut idempotent = true;
    let mut real_paths = Vec::new();
    for (k, v) in &opts {
        match k.as_str() {
            "fixture" => fixture_map.extend(fixture(&as_map(k, v)?)?),
            "params" => {
                for (name, value) in params(&as_map(k, v)?)? {
                    all_params.retain(|(n, _)| *n != name);
                    all_params.push((name, value));
                }
            }
            "idempotent" => {
                idempotent = v
                    .as_bool()
                    .or_else(|_| fail(format!("test {name:?}: `idempotent` must be true or false")))?
            }
            "real_paths" => {
                real_paths = v
                    .clone()
                    .try_cast::<Array>()
                    .map(|a| a.iter().map(|i| i.to_string()).collect())
                    .map_or_else(
                        || fail(format!("test {name:?}: `real_paths` must be a list of parameter names")),
                        Ok,
                    )?
            }
            other => {
                return fail(format!(
                    "test {name:?}: unknown option `{other}`; a test takes fixture, params, idempotent and real_paths"
                ))
            }
        }
    }
    d.cases.push(CaseSpec {
        name: name.to_string(),
        line: call.call_position().line().unwrap_or(0),
        fixture: fixture_map,
        params: all_params,
        check,
        idempotent,
        real_paths,
    });
    Ok(())
}

fn as_map(key: &str, v: &Dynamic) -> RResult<Map> {
    v.clone()
        .try_cast::<Map>()
        .map_or_else(|| fail(format!("`{key}` must be a map #{{…}}")), Ok)
}

/// `-p` values: strings as they are, numbers and booleans written out, lists joined
/// with commas (as `-p` takes them).
fn params(map: &Map) -> RResult<Vec<(String, String)>> {
    map.iter()
        .map(|(k, v)| {
            let value = if let Some(a) = v.clone().try_cast::<Array>() {
                a.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            } else if v.is_string() || v.is_int() || v.is_bool() || v.is_float() {
                v.to_string()
            } else {
                return fail(format!(
                    "parameter `{k}`: a value must be a string, number, bool or list, not {}",
                    v.type_name()
                ));
            };
            Ok((k.to_string(), value))
        })
        .collect()
}

/// Fixture entries: `"path": "content"`, `"path": #{size: "2M", age: "3d", mode: 0o640,
/// content: "…"}`, `"path": #{link: "target"}`, `"dir/": #{}` or `#{dir: true}`.
fn fixture(map: &Map) -> RResult<BTreeMap<String, Fixture>> {
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let rel = k.trim_start_matches('/');
        let is_dir = rel.ends_with('/');
        let rel = rel.trim_end_matches('/').to_string();
        if rel.is_empty()
            || rel
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty())
        {
            return fail(format!(
                "fixture path {k:?} must name a path inside the test root, without `..`"
            ));
        }
        let entry = if let Some(text) = v.clone().try_cast::<String>() {
            if is_dir {
                return fail(format!(
                    "fixture {k:?} ends with / (a directory) but has content"
                ));
            }
            Fixture::File {
                content: text.into_bytes(),
                mode: None,
                age: None,
            }
        } else if let Some(m) = v.clone().try_cast::<Map>() {
            entry(k, is_dir, &m)?
        } else {
            return fail(format!(
                "fixture {k:?}: give its content as a string or a map #{{content, size, age, mode, link, dir}}, not {}",
                v.type_name()
            ));
        };
        out.insert(rel, entry);
    }
    Ok(out)
}

fn entry(k: &str, is_dir: bool, m: &Map) -> RResult<Fixture> {
    let text = |key: &str| -> RResult<Option<String>> {
        match m.get(key) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.to_string())),
            Some(v) if v.is_int() && key != "link" && key != "content" => Ok(Some(v.to_string())),
            Some(v) => fail(format!(
                "fixture {k:?}: `{key}` must be a string, not {}",
                v.type_name()
            )),
        }
    };
    for key in m.keys() {
        if !["content", "size", "age", "mode", "link", "dir"].contains(&key.as_str()) {
            return fail(format!(
                "fixture {k:?}: unknown key `{key}`; an entry takes content, size, age, mode, link, dir"
            ));
        }
    }
    let mode = match m.get("mode") {
        None => None,
        Some(v) if v.is_int() => Some(v.as_int().unwrap_or(0) as u32 & 0o7777),
        Some(v) => Some(
            u32::from_str_radix(v.to_string().trim_start_matches("0o"), 8).map_err(|_| {
                format!("fixture {k:?}: mode {v} is not an octal mode like \"0640\"")
            })?,
        ),
    };
    if let Some(target) = text("link")? {
        return Ok(Fixture::Link(target));
    }
    if is_dir || m.get("dir").is_some_and(|d| d.as_bool().unwrap_or(false)) {
        return Ok(Fixture::Dir { mode });
    }
    let mut content = text("content")?.unwrap_or_default().into_bytes();
    if let Some(size) = text("size")? {
        let n = parse_size(&size).map_err(|q| {
            format!(
                "fixture {k:?}: size {size:?} is {}",
                q.describe("a size", "bytes")
            )
        })?;
        // Built in memory, then written: a typo of `2G` for `2M` must be an error, not
        // an allocation that takes the machine down.
        const MOST: i64 = 1 << 30;
        let n = usize::try_from(n)
            .ok()
            .filter(|_| n <= MOST)
            .ok_or_else(|| {
                format!("fixture {k:?}: size {size:?} is over the 1G a fixture may have")
            })?;
        let fill: &[u8] = if content.is_empty() {
            b"a log line\n"
        } else {
            &content
        };
        content = fill.iter().copied().cycle().take(n).collect();
    }
    let age = match text("age")? {
        None => None,
        Some(a) => Some(Duration::from_secs(parse_duration(&a).map_err(|q| {
            format!(
                "fixture {k:?}: age {a:?} is {}",
                q.describe("a duration like \"3d\"", "seconds")
            )
        })? as u64)),
    };
    Ok(Fixture::File { content, mode, age })
}

/// What a case's check closure gets: the tree the run left and its outcome, and
/// where its failed expectations are collected (all of them, not just the first).
#[derive(Clone)]
pub struct Checks(Arc<Mutex<CheckState>>);

pub struct CheckState {
    pub root: PathBuf,
    /// Root-relative paths the run changed.
    pub changed: BTreeSet<String>,
    /// The run's error, if it failed.
    pub error: Option<String>,
    pub failures: Vec<String>,
    /// `expect_error` was called: a failed run is what the case wants.
    pub error_expected: bool,
}

impl Checks {
    pub fn new(root: &Path, changed: BTreeSet<String>, error: Option<String>) -> Self {
        Checks(Arc::new(Mutex::new(CheckState {
            root: root.to_path_buf(),
            changed,
            error,
            failures: Vec::new(),
            error_expected: false,
        })))
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, CheckState> {
        self.0.lock().expect("lock")
    }

    /// Run the case's closure; an error thrown in it is one more failure.
    pub fn run(&self, file: &TestFile, check: &FnPtr) {
        if let Err(e) = check.call::<Dynamic>(&file.engine, &file.ast, (self.clone(),)) {
            let at = e
                .position()
                .line()
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            let message = match *e {
                EvalAltResult::ErrorRuntime(ref v, _) => v.to_string(),
                ref other => other.to_string(),
            };
            self.state().failures.push(format!("{at}{message}"));
        }
    }

    fn failed(&self, call: &NativeCallContext, message: String) {
        let at = call
            .call_position()
            .line()
            .map(|l| format!("line {l}: "))
            .unwrap_or_default();
        self.state().failures.push(format!("{at}{message}"));
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.state().root.join(rel.trim_start_matches('/'))
    }
}

fn register_checks(engine: &mut Engine) {
    engine.register_type_with_name::<Checks>("Checks");
    engine.register_get("root", |t: &mut Checks| {
        t.state().root.display().to_string()
    });
    engine.register_fn(
        "expect_changed",
        |call: NativeCallContext, t: &mut Checks, paths: Array| {
            let want: BTreeSet<String> = paths
                .iter()
                .map(|p| {
                    p.to_string()
                        .trim_start_matches('/')
                        .trim_end_matches('/')
                        .to_string()
                })
                .collect();
            let got = t.state().changed.clone();
            if want != got {
                let list = |s: &BTreeSet<String>| {
                    format!("[{}]", s.iter().cloned().collect::<Vec<_>>().join(", "))
                };
                let mut why = Vec::new();
                let missing: BTreeSet<_> = want.difference(&got).cloned().collect();
                let extra: BTreeSet<_> = got.difference(&want).cloned().collect();
                if !missing.is_empty() {
                    why.push(format!("not changed: {}", list(&missing)));
                }
                if !extra.is_empty() {
                    why.push(format!("changed but not expected: {}", list(&extra)));
                }
                t.failed(
                    &call,
                    format!(
                        "expect_changed: the run changed {}; {}",
                        list(&got),
                        why.join("; ")
                    ),
                );
            }
        },
    );
    engine.register_fn(
        "expect_file",
        |call: NativeCallContext, t: &mut Checks, rel: &str, content: &str| match std::fs::read(
            t.path(rel),
        ) {
            Ok(b) if b == content.as_bytes() => {}
            Ok(b) => t.failed(
                &call,
                format!(
                    "expect_file {rel}: it holds {:?}, expected {content:?}",
                    String::from_utf8_lossy(&b)
                ),
            ),
            Err(e) => t.failed(&call, format!("expect_file {rel}: cannot read it: {e}")),
        },
    );
    engine.register_fn(
        "expect_absent",
        |call: NativeCallContext, t: &mut Checks, rel: &str| {
            if std::fs::symlink_metadata(t.path(rel)).is_ok() {
                t.failed(&call, format!("expect_absent {rel}: it exists"));
            }
        },
    );
    engine.register_fn(
        "expect_present",
        |call: NativeCallContext, t: &mut Checks, rel: &str| {
            if std::fs::symlink_metadata(t.path(rel)).is_err() {
                t.failed(&call, format!("expect_present {rel}: it does not exist"));
            }
        },
    );
    engine.register_fn(
        "expect_error",
        |call: NativeCallContext, t: &mut Checks, text: &str| {
            let error = {
                let mut s = t.state();
                s.error_expected = true;
                s.error.clone()
            };
            match error {
                Some(e) if e.contains(text) => {}
                Some(e) => t.failed(
                    &call,
                    format!("expect_error {text:?}: the run failed otherwise: {e}"),
                ),
                None => t.failed(&call, format!("expect_error {text:?}: the run succeeded")),
            }
        },
    );
    engine.register_fn(
        "assert",
        |call: NativeCallContext, t: &mut Checks, ok: bool, message: &str| {
            if !ok {
                t.failed(&call, format!("assert: {message}"));
            }
        },
    );
    engine.register_fn("exists", |t: &mut Checks, rel: &str| {
        std::fs::symlink_metadata(t.path(rel)).is_ok()
    });
    engine.register_fn("read", |t: &mut Checks, rel: &str| -> RResult<String> {
        std::fs::read(t.path(rel))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .or_else(|e| fail(format!("read {rel}: {e}")))
    });
    engine.register_fn("size", |t: &mut Checks, rel: &str| -> RResult<i64> {
        std::fs::metadata(t.path(rel))
            .map(|m| m.len() as i64)
            .or_else(|e| fail(format!("size {rel}: {e}")))
    });
    engine.register_fn("list", |t: &mut Checks, rel: &str| -> RResult<Array> {
        let mut names: Vec<String> = std::fs::read_dir(t.path(rel))
            .and_then(|d| {
                d.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .or_else(|e| fail(format!("list {rel}: {e}")))?;
        names.sort();
        Ok(names.into_iter().map(Dynamic::from).collect())
    });
}
