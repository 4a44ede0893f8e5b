//! The README's operation table lists every operation the engine offers (the operation
//! catalog, itself checked against the engine by a unit test), each with what it
//! ensures, its dry-run and its undo: the table cannot fall behind the code.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The names of `src/ops/catalog.rs`'s entries: `op("fs::file", …)`.
fn catalog() -> Vec<String> {
    let text = read("src/ops/catalog.rs");
    let mut names = Vec::new();
    for part in text.split("op(").skip(1) {
        let part = part.trim_start();
        if let Some(rest) = part.strip_prefix('"') {
            if let Some(end) = rest.find('"') {
                names.push(rest[..end].to_string());
            }
        }
    }
    names
}

#[test]
fn every_operation_has_a_row_with_ensures_dry_run_and_undo() {
    let readme = read("README.md");
    let start = readme
        .find("### Operations")
        .expect("README has ### Operations");
    let end = start + readme[start..].find("\n### ").unwrap();
    let rows: Vec<&str> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .collect();
    let names = catalog();
    assert!(names.len() > 30, "catalog parsed: {names:?}");
    for name in &names {
        let row = rows
            .iter()
            .find(|r| r.contains(&format!("`{name}(")) || r.contains(&format!(" `{name}(")))
            .unwrap_or_else(|| panic!("README's operation table has no row for {name}"));
        // Four cells: operation, ensures, dry-run, undo; none empty.
        let cells: Vec<&str> = row
            .split(" | ")
            .map(|c| c.trim_matches(|c: char| c == '|' || c.is_whitespace()))
            .collect();
        assert!(
            cells.len() >= 4 && cells.iter().all(|c| !c.is_empty()),
            "row of {name} lacks a column: {row}"
        );
    }
}
