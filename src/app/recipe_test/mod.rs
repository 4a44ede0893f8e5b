//! `tend test`: run a recipe's test cases (`NAME.test.rhai`, see [`spec`]) each in a
//! throwaway root, and check for every case what every recipe owes without its author
//! writing it — the dry-run plans what the run then does, a second run changes
//! nothing, a failure injected after each step in turn is rolled back byte for byte,
//! the declared scope holds — then the author's own expectations.
//!
//! Paths are rebased into the root: fixture paths are relative to it, and a parameter
//! whose value (or default) is an absolute path, or says `{ROOT}`, points inside it.
//! The injected failure is a cancel of the run's token after step N's event: the same
//! path a real cancel takes (the run stops before its next step and rolls back).

mod bench;
mod spec;
mod tree;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ops::StepReport;
use bench::Bench;
use spec::{CaseSpec, Checks, TestFile};

/// One failed check of a case.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// `plan`, `idempotence`, `rollback`, `scope`, `run` or `expect`.
    pub check: &'static str,
    pub message: String,
    /// The tree diff behind it, one `+ path`, `- path` or `~ path: …` line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub recipe: String,
    pub file: String,
    pub line: usize,
    pub case: String,
    pub passed: bool,
    pub failures: Vec<Failure>,
    /// Steps of the real run (the number of injected failures).
    pub steps: usize,
}

/// A test file and the recipe it tests.
#[derive(Debug, Clone)]
pub struct TestTarget {
    pub test: PathBuf,
    pub recipe: PathBuf,
}

/// The test files behind `paths`: a directory gives its `*.test.rhai` and those in its
/// `tests/` folder; a recipe `NAME.rhai` its `NAME.test.rhai` (beside it or in
/// `tests/`); a test file itself. Sorted, each once.
pub fn find_tests(paths: &[PathBuf]) -> Result<Vec<TestTarget>> {
    let mut files = BTreeSet::new();
    for p in paths {
        if p.is_dir() {
            for dir in [p.clone(), p.join("tests")] {
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let f = e.path();
                    if is_test_file(&f) {
                        files.insert(f);
                    }
                }
            }
        } else if is_test_file(p) {
            if !p.exists() {
                return Err(missing(p));
            }
            files.insert(p.clone());
        } else {
            let stem = p.file_stem().unwrap_or_default().to_string_lossy();
            let dir = p.parent().unwrap_or(Path::new(""));
            let found: Vec<PathBuf> = [dir.to_path_buf(), dir.join("tests")]
                .iter()
                .map(|d| d.join(format!("{stem}.test.rhai")))
                .filter(|f| f.exists())
                .collect();
            if !p.exists() {
                return Err(missing(p));
            }
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: no tests (write {stem}.test.rhai beside it, see README \"Testing a recipe\")",
                    p.display()
                )));
            }
            files.extend(found);
        }
    }
    if files.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Usage(format!(
            "no test files (NAME.test.rhai) in {}",
            shown.join(", ")
        )));
    }
    Ok(files
        .into_iter()
        .map(|test| TestTarget {
            recipe: recipe_of(&test),
            test,
        })
        .collect())
}

/// A path that does not exist (exit 66).
fn missing(p: &Path) -> Error {
    Error::RecipeRead {
        path: p.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}

fn is_test_file(p: &Path) -> bool {
    p.to_string_lossy().ends_with(".test.rhai")
}

/// `x/NAME.test.rhai` tests `x/NAME.rhai`; `x/tests/NAME.test.rhai` too.
fn recipe_of(test: &Path) -> PathBuf {
    let name = test.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.trim_end_matches(".test.rhai");
    let dir = test.parent().unwrap_or(Path::new(""));
    let dir = if dir.file_name().is_some_and(|n| n == "tests") {
        dir.parent().unwrap_or(Path::new(""))
    } else {
        dir
    };
    dir.join(format!("{stem}.rhai"))
}

/// Run every case of one test file, telling `each` about each as it ends. A test file
/// or recipe that cannot be loaded is an error (exit 65, with file:line).
pub fn run_file(target: &TestTarget, each: &mut dyn FnMut(&CaseResult)) -> Result<Vec<CaseResult>> {
    if !target.recipe.exists() {
        return Err(missing(&target.recipe));
    }
    // The recipe must load (compile, header) before any case runs.
    crate::recipe::Recipe::load(&target.recipe)?;
    let file = spec::load(&target.test)?;
    let mut out = Vec::new();
    for case in &file.cases {
        let r = run_case(&file, target, case);
        each(&r);
        out.push(r);
    }
    Ok(out)
}

/// How many cases a test file declares, without running them (`tend doc`).
pub fn count_cases(test: &Path) -> Result<usize> {
    Ok(spec::load(test)?.cases.len())
}

/// `[trust] require_tests`: run the tests of the recipe at `recipe` before it is
/// vetted; their summary (`3 passed, 0 failed`) for the approval, or the refusal
/// (exit 77) when it has none or one fails.
pub fn required_for_vetting(recipe: &Path) -> Result<String> {
    let shown = recipe.display();
    let refuse = |why: String| {
        Error::Unvetted(format!(
            "{shown}: [trust] require_tests = true and {why}; nothing recorded"
        ))
    };
    let targets = find_tests(&[recipe.to_path_buf()])
        .map_err(|_| refuse("it has no tests (NAME.test.rhai)".into()))?;
    let mut results = Vec::new();
    for t in &targets {
        results.extend(run_file(t, &mut |_| {})?);
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.case.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(refuse(format!(
            "its tests fail ({}); `tend test {shown}` shows why",
            failed.join(", ")
        )));
    }
    Ok(format!("{} passed, 0 failed", results.len()))
}

fn fail(check: &'static str, message: impl Into<String>, diff: Vec<String>) -> Failure {
    Failure {
        check,
        message: message.into(),
        diff,
    }
}

fn run_case(file: &TestFile, target: &TestTarget, case: &CaseSpec) -> CaseResult {
    let mut result = CaseResult {
        recipe: target.recipe.display().to_string(),
        file: file.path.display().to_string(),
        line: case.line,
        case: case.name.clone(),
        passed: false,
        failures: Vec::new(),
        steps: 0,
    };
    if let Err(e) = checks(file, target, case, &mut result) {
        result.failures.push(fail("run", e.to_string(), vec![]));
    }
    result.passed = result.failures.is_empty();
    result
}

fn checks(
    file: &TestFile,
    target: &TestTarget,
    case: &CaseSpec,
    out: &mut CaseResult,
) -> Result<()> {
    let bench = Bench::new(&target.recipe, &case.params, &case.real_paths)?;
    let failures = &mut out.failures;
    let s0 = bench.build(&case.fixture)?;

    // The dry-run: it changes nothing, and nothing outside the root.
    let dry = bench.run(true, None)?;
    let after_dry = bench.snapshot()?;
    if after_dry != s0 {
        failures.push(fail(
            "plan",
            "the dry-run changed the tree",
            tree::diff_lines(&s0, &after_dry),
        ));
    }
    let outside: Vec<String> = dry
        .steps
        .iter()
        .filter(|s| s.changed || s.unknown)
        .flat_map(|s| s.paths.iter())
        .filter(|p| bench.rel(p).is_none())
        .cloned()
        .collect();
    if !outside.is_empty() {
        failures.push(fail(
            "scope",
            format!(
                "the dry-run plans changes outside the test root, so the case was not run: {}; \
                 give such paths to the recipe as parameters (absolute paths in params are rebased into the root)",
                outside.join(", ")
            ),
            vec![],
        ));
        return Ok(());
    }

    // The real run.
    let real = bench.run(false, None)?;
    out.steps = real.steps.len();
    let s1 = bench.snapshot()?;
    let changed = tree::changed(&s0, &s1);
    if let Some(error) = &real.error {
        if s1 != s0 {
            failures.push(fail(
                "rollback",
                format!("the run failed ({error}) and its rollback left the tree different"),
                tree::diff_lines(&s0, &s1),
            ));
        }
    } else {
        if dry.error.is_some() {
            failures.push(fail(
                "plan",
                format!(
                    "the dry-run failed but the run succeeded: {}",
                    dry.error.as_deref().unwrap_or_default()
                ),
                vec![],
            ));
        } else if let Some(why) = plan_differs(&bench, &dry.steps, &real.steps, &changed) {
            failures.push(fail("plan", why, tree::diff_lines(&s0, &s1)));
        }
        if let Some(scope) = &bench.scope {
            let outside: Vec<String> = changed
                .iter()
                .map(|p| format!("/{p}"))
                .filter(|p| !scope.matches(p))
                .collect();
            if !outside.is_empty() {
                failures.push(fail(
                    "scope",
                    format!(
                        "the run changed paths outside the declared scope ({}): {}",
                        scope.describe(),
                        outside.join(", ")
                    ),
                    vec![],
                ));
            }
        }
    }

    // The author's expectations, on the tree the run left.
    let checks = Checks::new(bench.root(), changed, real.error.clone());
    if let Some(check) = &case.check {
        checks.run(file, check);
    }
    let expected_error = {
        let st = checks.state();
        for f in &st.failures {
            failures.push(fail("expect", f.clone(), vec![]));
        }
        st.error_expected
    };
    if let Some(error) = &real.error {
        if !expected_error {
            failures.push(fail("run", format!("the recipe failed: {error}"), vec![]));
        }
        return Ok(());
    }

    // A second run changes nothing.
    let again = bench.run(false, None)?;
    let s2 = bench.snapshot()?;
    let redone: Vec<String> = again
        .steps
        .iter()
        .filter(|s| s.changed)
        .map(|s| format!("{} {}", s.op, bench.shorten(&s.subject)))
        .collect();
    if let Some(e) = &again.error {
        failures.push(fail(
            "idempotence",
            format!("a second run failed: {e}"),
            vec![],
        ));
    } else if case.idempotent && (!redone.is_empty() || !tree::changed(&s1, &s2).is_empty()) {
        failures.push(fail(
            "idempotence",
            format!(
                "a second run changed things again: {}",
                if redone.is_empty() {
                    "no step said so".into()
                } else {
                    redone.join("; ")
                }
            ),
            tree::diff_lines(&s1, &s2),
        ));
    }

    // A failure after each step in turn is rolled back byte for byte.
    for k in 1..=real.steps.len() as u64 {
        let before = bench.rebuild(&case.fixture)?;
        bench.run(false, Some(k))?;
        let after = bench.snapshot()?;
        // tend restores the times of what its own operations undo; an `undo:` command
        // rewrites files, so after one only content, modes and links must be back.
        let by_command = real.steps[..k as usize].iter().any(|s| s.op == "sh");
        let differs = if by_command {
            !tree::changed(&before, &after).is_empty()
        } else {
            after != before
        };
        if differs {
            let step = &real.steps[k as usize - 1];
            failures.push(fail(
                "rollback",
                format!(
                    "a failure injected after step {k} of {} ({} {}) was rolled back, \
                     but the tree is not as it was",
                    real.steps.len(),
                    step.op,
                    bench.shorten(&step.subject),
                ),
                tree::diff_lines(&before, &after),
            ));
            break; // the first one tells; the others mostly repeat it
        }
    }
    Ok(())
}

/// Why the dry-run's plan is not what the run did: its steps (up to the first one it
/// could not know, an opaque command), and the paths that changed on disk without any
/// step saying so.
fn plan_differs(
    bench: &Bench,
    dry: &[StepReport],
    real: &[StepReport],
    changed: &BTreeSet<String>,
) -> Option<String> {
    let show = |s: &StepReport| {
        format!(
            "{} {} ({})",
            s.op,
            bench.shorten(&s.subject),
            if s.changed { "change" } else { "no change" }
        )
    };
    let mut unknown = false;
    for (i, (d, r)) in dry.iter().zip(real).enumerate() {
        if d.unknown {
            unknown = true;
            break;
        }
        if d.op != r.op || d.subject != r.subject || d.changed != r.changed || d.paths != r.paths {
            return Some(format!(
                "step {}: the dry-run planned {}, the run did {}",
                i + 1,
                show(d),
                show(r)
            ));
        }
    }
    if !unknown && dry.len() != real.len() {
        return Some(format!(
            "the dry-run planned {} steps, the run took {}",
            dry.len(),
            real.len()
        ));
    }
    if unknown {
        return None; // an opaque command's effect was honestly unknown
    }
    let planned: Vec<String> = dry
        .iter()
        .filter(|s| s.changed)
        .flat_map(|s| s.paths.iter().filter_map(|p| bench.rel(p)))
        .collect();
    let related = |p: &str, q: &str| {
        p == q || p.starts_with(&format!("{q}/")) || q.starts_with(&format!("{p}/"))
    };
    let unplanned: Vec<&String> = changed
        .iter()
        .filter(|p| !planned.iter().any(|q| related(p, q)))
        .collect();
    (!unplanned.is_empty()).then(|| {
        let list: Vec<&str> = unplanned.iter().map(|s| s.as_str()).collect();
        format!(
            "changed on disk but in no step of the plan: {}",
            list.join(", ")
        )
    })
}
