//! The Markdown pages of `tend doc`: plain CommonMark with pipe tables, readable as
//! text and rendered by any forge.

use std::fmt::Write;

use super::{module_file, recipe_file, DocSet, ModulePage, OpUse, RecipePage, Tests};

/// A table cell: one line, pipes escaped, code in backticks kept.
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

fn link(name: &str, file: &str) -> String {
    format!("[{name}]({file}.md)")
}

pub fn render(set: &DocSet) -> Vec<(String, String)> {
    let mut pages = vec![("index".to_string(), index(set))];
    for r in &set.recipes {
        pages.push((recipe_file(&r.name), recipe(r)));
    }
    for m in &set.modules {
        pages.push((module_file(&m.name), module(m)));
    }
    pages
}

fn index(set: &DocSet) -> String {
    let mut s = String::from("# Recipes\n\n");
    s += "| recipe | what it does | reversible | vetting | tests |\n|---|---|---|---|---|\n";
    for r in &set.recipes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            link(&r.name, &recipe_file(&r.name)),
            cell(&r.summary),
            if r.irreversible.is_empty() {
                "every step".to_string()
            } else {
                format!("{} step(s) not", r.irreversible.len())
            },
            cell(&r.vetting),
            cell(&tests_line(&r.tests)),
        );
    }
    if !set.modules.is_empty() {
        s += "\n# Modules\n\n| module | what it offers | from |\n|---|---|---|\n";
        for m in &set.modules {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                link(&m.name, &module_file(&m.name)),
                cell(&m.summary),
                cell(&m.origin)
            );
        }
    }
    s
}

pub(super) fn tests_line(t: &Tests) -> String {
    match t {
        Tests::None => "none".into(),
        Tests::NotRun { file, cases } => format!("{cases} case(s) in {file} (not run)"),
        Tests::Ran { passed, failed, .. } => format!("{passed} passed, {failed} failed"),
        Tests::Broken { error, .. } => format!("test file does not load: {error}"),
    }
}

fn ops_table(s: &mut String, ops: &[OpUse]) {
    if ops.is_empty() {
        s.push_str("No operations.\n");
        return;
    }
    s.push_str("| operation | rollback | undo | called at |\n|---|---|---|---|\n");
    for u in ops {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} |",
            u.op.name,
            u.op.reversal.as_str(),
            cell(u.op.note),
            cell(&u.at.join(", "))
        );
    }
}

fn recipe(r: &RecipePage) -> String {
    let mut s = format!("# {}\n\n{}\n\n", r.name, r.summary);
    if !r.body.is_empty() {
        s += &r.body;
        s += "\n\n";
    }
    let _ = writeln!(s, "File: `{}`  ", r.file);
    let _ = writeln!(s, "Run: `tend run {} [-p name=value …]`\n", r.file);
    s += "## Parameters\n\n";
    if r.params.is_empty() {
        s += "None.\n";
    } else {
        s += "| name | type | default | meaning |\n|---|---|---|---|\n";
        for p in &r.params {
            let default = match (&p.default, p.ty) {
                (_, crate::recipe::params::ParamType::Secret) => "(secret: never shown)".into(),
                (Some(d), _) if d.is_empty() => "`\"\"`".into(),
                (Some(d), _) => format!("`{}`", cell(d)),
                (None, _) => "required".into(),
            };
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} |",
                p.name,
                p.ty.as_str(),
                default,
                cell(&p.doc)
            );
        }
    }
    let _ = write!(s, "\n## Scope\n\nWrites: {}\n", r.scope);
    match r.become_policy {
        Some(true) => s += "\nMay run as root (`become`).\n",
        Some(false) => s += "\nRefuses to run with `become`.\n",
        None => {}
    }
    s += "\n## Operations and rollback\n\n";
    ops_table(&mut s, &r.ops);
    if r.irreversible.is_empty() {
        s += "\nEvery step can be rolled back.\n";
    } else {
        s += "\nSteps a rollback will not undo:\n\n";
        for l in &r.irreversible {
            let _ = writeln!(s, "- `{l}`");
        }
    }
    if !r.modules.is_empty() {
        s += "\n## Modules\n\n";
        for m in &r.modules {
            let _ = writeln!(s, "- {}", link(m, &module_file(m)));
        }
    }
    let _ = write!(s, "\n## Vetting\n\n{}\n", r.vetting);
    let _ = write!(s, "\n## Tests\n\n{}\n", tests_line(&r.tests));
    if let Tests::Ran { cases, .. } = &r.tests {
        s.push('\n');
        for (name, ok) in cases {
            let _ = writeln!(s, "- {} {name}", if *ok { "ok" } else { "FAILED" });
        }
    }
    s += "\n[All recipes](index.md)\n";
    s
}

fn module(m: &ModulePage) -> String {
    let mut s = format!("# Module {}\n\n{}\n\n", m.name, m.summary);
    if !m.body.is_empty() {
        s += &m.body;
        s += "\n\n";
    }
    let _ = writeln!(
        s,
        "From: {}. Import: `import \"{}\" as {};`\n",
        m.origin, m.name, m.name
    );
    s += "## Functions\n\n";
    for f in &m.functions {
        let _ = writeln!(s, "### `{}`\n", f.signature);
        if !f.doc.is_empty() {
            let _ = writeln!(s, "{}\n", f.doc);
        }
    }
    s += "## Operations and rollback\n\n";
    ops_table(&mut s, &m.ops);
    s += "\n[All recipes](index.md)\n";
    s
}
