//! `tend test [PATH…] [--json]`: run recipes' test cases (see
//! [`crate::app::recipe_test`]) and report them as `cargo test` does: a line per case,
//! the failures with their tree diffs, and a last line `N passed, N failed`.

use clap::Args;
use std::path::PathBuf;

use crate::app::recipe_test::{self, CaseResult};
use crate::error::{exit, Result};
use crate::out::outln;
use crate::report::escape;

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Test files (NAME.test.rhai), recipes (their NAME.test.rhai) or directories
    /// (every *.test.rhai in them and in their tests/ folder) [default: .]
    paths: Vec<PathBuf>,
    /// One JSON object per case (`test_case`), then a `test_end` summary
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TestArgs) -> Result<i32> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let targets = recipe_test::find_tests(&paths)?;
    let json = args.json;
    let mut all: Vec<CaseResult> = Vec::new();
    for t in &targets {
        if !json {
            outln!(
                "\nrunning {} ({})",
                escape(&t.test.display().to_string()),
                escape(&t.recipe.display().to_string())
            );
        }
        let results = recipe_test::run_file(t, &mut |r: &CaseResult| {
            if json {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["event"] = "test_case".into();
                outln!("{v}");
            } else {
                let verdict = if r.passed { "ok" } else { "FAILED" };
                outln!("case {} ... {verdict}", escape(&r.case));
            }
        })?;
        all.extend(results);
    }
    let failed: Vec<&CaseResult> = all.iter().filter(|r| !r.passed).collect();
    let passed = all.len() - failed.len();
    if json {
        outln!(
            "{}",
            serde_json::json!({"event": "test_end", "passed": passed, "failed": failed.len()})
        );
    } else {
        if !failed.is_empty() {
            outln!("\nfailures:");
        }
        for r in &failed {
            outln!(
                "\n---- {}:{} {} ----",
                escape(&r.file),
                r.line,
                escape(&r.case)
            );
            for f in &r.failures {
                outln!("{}: {}", f.check, escape(&f.message));
                for d in &f.diff {
                    outln!("    {}", escape(d));
                }
            }
        }
        let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
        outln!("\ntest result: {verdict}");
        outln!("{passed} passed, {} failed", failed.len());
    }
    Ok(if failed.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}
