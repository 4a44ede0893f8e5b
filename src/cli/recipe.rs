//! `tend check` and `tend show`: what a recipe is, without running it.

use super::*;

pub(crate) fn check(
    human: &Human,
    recipe: &std::path::Path,
    params: &[(String, String)],
    json: bool,
) -> Result<i32> {
    let r = super::recipes::load(human, recipe)?;
    let decls = app::declared_params(&r, params)?;
    if json {
        let v = serde_json::json!({
            "kind": "check", "ok": true, "recipe": r.name, "builtin": r.builtin,
            "path": r.path.display().to_string(), "hash": r.hash, "params": decls,
            "modules": r.modules.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        });
        outln!("{v}");
        return Ok(exit::OK);
    }
    human.line(&format!(
        "{}: ok ({} parameter{}, {} module{} imported)",
        recipe.display(),
        decls.len(),
        if decls.len() == 1 { "" } else { "s" },
        r.modules.len(),
        if r.modules.len() == 1 { "" } else { "s" },
    ));
    Ok(exit::OK)
}

pub(crate) fn show(cli: &Cli, human: &Human, recipe: &std::path::Path, json: bool) -> Result<i32> {
    let r = super::recipes::load(human, recipe)?;
    let decls = app::declared_params(&r, &[]).or_else(|_| Ok::<_, Error>(Vec::new()))?;
    let irreversible = r.irreversible_steps();
    // A broken trust setup is reported as the status, not as a failure to show.
    let vetting = state_dir(cli)
        .and_then(|state| config(cli)?.trust(&state))
        .and_then(|t| app::trust_status(&t, &r))
        .map_err(|e| e.to_string());
    if json {
        let mut v = serde_json::json!({
            "kind": "recipe",
            "recipe": r.name,
            "builtin": r.builtin,
            "path": r.path.display().to_string(),
            "description": r.doc(),
            "params": decls,
            "reversible": irreversible.is_empty(),
            "irreversible_steps": irreversible,
            "scope": r.scope(), "become": r.become_policy(),
            "hash": r.hash,
            "modules": r.modules.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        });
        v["vetting"] = match &vetting {
            Ok(s) => s.to_json(),
            Err(e) => serde_json::json!({"status": "error", "vetted": false, "error": e}),
        };
        outln!("{v}");
    } else {
        human.show_recipe(&r, &decls, &irreversible);
        human.show_vetting(&vetting);
    }
    Ok(exit::OK)
}
