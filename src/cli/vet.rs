//! `tend vet`: approve a recipe as it is now, list approvals, revoke one.

use super::*;

pub(crate) fn vet(cli: &Cli, human: &Human, actor: &Actor, args: &VetArgs) -> Result<i32> {
    let state = state_dir(cli)?;
    let trust = config(cli)?.trust(&state)?;
    if args.list {
        return vet_list(&trust, args.json);
    }
    let path = args
        .recipe
        .as_deref()
        .ok_or_else(|| Error::Usage("name the recipe: tend vet RECIPE --by NAME".into()))?;
    let audit = |event: serde_json::Value| {
        let mut event = event;
        event["user"] = actor.user.clone().into();
        if let Err(e) = AuditLog::new(state.root()).append(event) {
            human.error(&format!("the audit log did not record it: {e}"));
        }
    };
    if args.revoke {
        let e = trust.revoke(path)?;
        audit(serde_json::json!({
            "event": "revoke", "recipe": e.recipe, "recipe_hash": e.hash, "by": e.by,
        }));
        if args.json {
            outln!("{}", serde_json::json!({"kind": "revoke", "revoked": e}));
        } else {
            human.line(&format!(
                "revoked: {} was vetted by {} at {}; it counts as unvetted now",
                e.recipe, e.by, e.at
            ));
        }
        return Ok(exit::OK);
    }
    // `tend check` first: only a recipe that compiles and declares sound parameters.
    let recipe = app::load_recipe(path)?;
    if recipe.builtin {
        return Err(Error::Usage(format!(
            "{} is a built-in recipe, which is not vetted in place: `tend recipes copy {} DIR`, review the copy, then `tend vet DIR/{}.rhai`",
            recipe.name, recipe.name, recipe.name
        )));
    }
    let decls = app::declared_params(&recipe, &[])?;
    if args.print_message {
        let by = args.by.as_deref().unwrap_or_default();
        let entry = trust.draft(&recipe, by, args.note.as_deref())?;
        if args.json {
            let v = serde_json::json!({"kind": "vet_message", "message": trust::message(&entry)});
            outln!("{v}");
            return Ok(exit::OK);
        }
        out!("{}", trust::message(&entry));
        return Ok(exit::OK);
    }
    let sign = match (&args.sign_key, &args.signature) {
        (Some(k), _) => Sign::Key(k.clone()),
        (None, Some(sig)) => Sign::File {
            signature: sig.clone(),
            message: args.message.clone(),
        },
        (None, None) => Sign::None,
    };
    let tests = if trust.require_tests {
        Some(app::recipe_test::required_for_vetting(&recipe.path)?)
    } else {
        None
    };
    let report = trust.vet_tested(
        &recipe,
        VetRequest {
            by: args.by.as_deref(),
            note: args.note.as_deref(),
            sign,
        },
        tests,
    )?;
    let e = &report.entry;
    audit(serde_json::json!({
        "event": "vet", "recipe": e.recipe, "recipe_hash": e.hash, "by": e.by, "note": e.note,
        "signed_by": report.signer.as_ref().map(|g| g.principal.clone()), "tests": e.tests,
    }));
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "kind": "vet",
                "vetted": e,
                "message": trust::message(e),
                "previous": report.previous,
                "diff": report.diff,
                "signer": report.signer,
                "trust_file": trust.file.display().to_string(),
            })
        );
        return Ok(exit::OK);
    }
    human.line(&format!(
        "{}: checked ({} parameter{}, {} module{} imported)",
        path.display(),
        decls.len(),
        if decls.len() == 1 { "" } else { "s" },
        recipe.modules.len(),
        if recipe.modules.len() == 1 { "" } else { "s" },
    ));
    if let Some(tests) = &e.tests {
        human.line(&format!("tests (require_tests): {tests}"));
    }
    if let Some(prev) = &report.previous {
        if prev.hash == e.hash {
            human.line(&format!(
                "already vetted as it is, by {} at {}; recorded again",
                prev.by, prev.at
            ));
        } else if report.diff_missing {
            human.line(&format!(
                "previously vetted by {} at {} as {}; that text is not kept in this state dir, so no diff",
                prev.by, prev.at, prev.hash
            ));
        } else {
            human.line(&format!(
                "changes since vetted by {} at {} ({}):",
                prev.by, prev.at, prev.hash
            ));
            human.plain_diff(report.diff.as_deref().unwrap_or_default());
        }
    }
    let signed = match (&report.signer, &report.unchecked) {
        (Some(g), _) => format!(", signed by {} ({})", g.principal, g.key),
        (None, Some(why)) => format!(", signed (not checked: {why})"),
        (None, None) => String::new(),
    };
    human.line(&format!(
        "vetted {} {} by {} at {}{signed}\nrecorded in {}",
        e.recipe,
        e.hash,
        e.by,
        e.at,
        trust.file.display()
    ));
    Ok(exit::OK)
}

pub(crate) fn vet_list(trust: &Trust, json: bool) -> Result<i32> {
    let rows = trust.list()?;
    if json {
        for (e, status) in &rows {
            let mut v = serde_json::to_value(e).map_err(|e| Error::Other(e.to_string()))?;
            v["kind"] = "vetting".into();
            v["signed"] = e.signature.is_some().into();
            if let Some(o) = v.as_object_mut() {
                o.remove("signature");
            }
            v["status"] = match status {
                Ok(s) => s.to_json(),
                Err(why) => serde_json::json!({
                    "status": if why.starts_with("missing") { "missing" } else { "error" },
                    "vetted": false,
                    "description": why,
                }),
            };
            outln!("{v}");
        }
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        outln!("no vetted recipes in {}", trust.file.display());
        return Ok(exit::OK);
    }
    let mut t = table(&["RECIPE", "STATUS", "BY", "AT", "SIGNED", "NOTE"]);
    for (e, status) in &rows {
        let status = match status {
            Ok(s) if s.is_vetted() => "vetted".to_string(),
            Ok(s) => format!("{}: {}", s.as_str(), s.describe()),
            Err(why) => why.clone(),
        };
        let status: String = status.chars().take(90).collect();
        // The trust file is edited by people: nothing in it may drive the terminal.
        let cell = |s: &str| escape(s).into_owned();
        t.add_row(vec![
            cell(&e.recipe),
            cell(&status),
            cell(&e.by),
            cell(&e.at),
            if e.signature.is_some() { "yes" } else { "no" }.to_string(),
            cell(e.note.as_deref().unwrap_or_default()),
        ]);
    }
    outln!("{t}");
    Ok(exit::OK)
}
