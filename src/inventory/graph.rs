//! `tend hosts --graph`: the group tree drawn as `ansible-inventory --graph` draws it,
//! so the two can be compared line for line.

use super::model::Tree;

/// The tree under `group`, or `None` if there is no such group.
pub(crate) fn render(tree: &Tree, group: &str) -> Option<String> {
    if !tree.children.contains_key(group) {
        return None;
    }
    let mut out = Vec::new();
    draw(tree, group, 0, &mut out, &mut Vec::new());
    Some(out.join("\n"))
}

fn line(name: &str, depth: usize) -> String {
    if depth == 0 {
        name.to_string()
    } else {
        format!("{}--{name}", "  |".repeat(depth))
    }
}

fn draw<'a>(
    tree: &'a Tree,
    group: &'a str,
    depth: usize,
    out: &mut Vec<String>,
    path: &mut Vec<&'a str>,
) {
    out.push(line(&format!("@{group}:"), depth));
    // Cycles are refused when the inventory loads; this only guards the recursion.
    if path.contains(&group) {
        return;
    }
    path.push(group);
    for kid in tree.children.get(group).into_iter().flatten() {
        draw(tree, kid, depth + 1, out, path);
    }
    path.pop();
    if group != "all" {
        for h in tree.hosts.get(group).into_iter().flatten() {
            out.push(line(h, depth + 1));
        }
    }
}
