//! The HTML pages of `tend doc`: plain, printable, no JavaScript, one small style
//! sheet inline, every text escaped (minijinja's auto-escaping for `.html`
//! templates: a recipe's comments cannot inject markup).

use minijinja::{context, Environment};

use super::markdown::tests_line;
use super::{module_file, recipe_file, DocSet};
use crate::error::{Error, Result};

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;\
line-height:1.4}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #999;\
padding:.3em .6em;text-align:left;vertical-align:top}code,pre{font-family:monospace}\
pre{white-space:pre-wrap}.no{color:#a00}.yes{color:#060}@media print{a{color:inherit}}";

const BASE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{% block title %}{% endblock %}</title>
<style>{{ style }}</style></head><body>
{% block body %}{% endblock %}
</body></html>
"#;

const INDEX: &str = r#"{% extends "base.html" %}{% block title %}Recipes{% endblock %}
{% block body %}<h1>Recipes</h1>
<table><tr><th>recipe</th><th>what it does</th><th>reversible</th><th>vetting</th><th>tests</th></tr>
{% for r in recipes %}<tr><td><a href="{{ r.href }}">{{ r.name }}</a></td><td>{{ r.summary }}</td>
<td>{% if r.irreversible %}<span class="no">{{ r.irreversible|length }} step(s) not</span>{% else %}<span class="yes">every step</span>{% endif %}</td>
<td>{{ r.vetting }}</td><td>{{ r.tests }}</td></tr>
{% endfor %}</table>
{% if modules %}<h1>Modules</h1>
<table><tr><th>module</th><th>what it offers</th><th>from</th></tr>
{% for m in modules %}<tr><td><a href="{{ m.href }}">{{ m.name }}</a></td><td>{{ m.summary }}</td><td>{{ m.origin }}</td></tr>
{% endfor %}</table>{% endif %}
{% endblock %}"#;

const OPS: &str = r#"{% if ops %}<table><tr><th>operation</th><th>rollback</th><th>undo</th><th>called at</th></tr>
{% for u in ops %}<tr><td><code>{{ u.op.name }}</code></td><td>{{ u.reversal }}</td><td>{{ u.op.note }}</td><td>{{ u.at|join(", ") }}</td></tr>
{% endfor %}</table>{% else %}<p>No operations.</p>{% endif %}"#;

const RECIPE: &str = r#"{% extends "base.html" %}{% block title %}{{ r.name }}{% endblock %}
{% block body %}<p><a href="index.html">All recipes</a></p>
<h1 id="top">{{ r.name }}</h1><p>{{ r.summary }}</p>
{% if r.body %}<pre>{{ r.body }}</pre>{% endif %}
<p>File: <code>{{ r.file }}</code><br>Run: <code>tend run {{ r.file }} [-p name=value …]</code></p>
<h2 id="parameters">Parameters</h2>
{% if r.params %}<table><tr><th>name</th><th>type</th><th>default</th><th>meaning</th></tr>
{% for p in r.params %}<tr><td><code>{{ p.name }}</code></td><td>{{ p.type }}</td>
<td>{% if p.type == "secret" %}(secret: never shown){% elif p.shown_default is none %}required{% elif p.shown_default == "" %}<code>""</code>{% else %}<code>{{ p.shown_default }}</code>{% endif %}</td><td>{{ p.doc }}</td></tr>
{% endfor %}</table>{% else %}<p>None.</p>{% endif %}
<h2 id="scope">Scope</h2><p>Writes: {{ r.scope }}</p>
{% if r.become_policy == true %}<p>May run as root (<code>become</code>).</p>{% elif r.become_policy == false %}<p>Refuses to run with <code>become</code>.</p>{% endif %}
<h2 id="rollback">Operations and rollback</h2>
{% include "ops.html" %}
{% if r.irreversible %}<p>Steps a rollback will not undo:</p><ul>{% for l in r.irreversible %}<li><code>{{ l }}</code></li>{% endfor %}</ul>
{% else %}<p>Every step can be rolled back.</p>{% endif %}
{% if modules %}<h2 id="modules">Modules</h2><ul>{% for m in modules %}<li><a href="{{ m.href }}">{{ m.name }}</a></li>{% endfor %}</ul>{% endif %}
<h2 id="vetting">Vetting</h2><p>{{ r.vetting }}</p>
<h2 id="tests">Tests</h2><p>{{ tests }}</p>
{% if cases %}<ul>{% for c in cases %}<li>{% if c[1] %}<span class="yes">ok</span>{% else %}<span class="no">FAILED</span>{% endif %} {{ c[0] }}</li>{% endfor %}</ul>{% endif %}
{% endblock %}"#;

const MODULE: &str = r#"{% extends "base.html" %}{% block title %}Module {{ m.name }}{% endblock %}
{% block body %}<p><a href="index.html">All recipes</a></p>
<h1>Module {{ m.name }}</h1><p>{{ m.summary }}</p>
{% if m.body %}<pre>{{ m.body }}</pre>{% endif %}
<p>From: {{ m.origin }}. Import: <code>import "{{ m.name }}" as {{ m.name }};</code></p>
<h2 id="functions">Functions</h2>
{% for f in m.functions %}<h3><code>{{ f.signature }}</code></h3>{% if f.doc %}<pre>{{ f.doc }}</pre>{% endif %}
{% endfor %}
<h2 id="rollback">Operations and rollback</h2>
{% include "ops.html" %}
{% endblock %}"#;

fn env() -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, text) in [
        ("base.html", BASE),
        ("index.html", INDEX),
        ("ops.html", OPS),
        ("recipe.html", RECIPE),
        ("module.html", MODULE),
    ] {
        env.add_template(name, text)
            .map_err(|e| Error::Other(format!("doc template {name}: {e}")))?;
    }
    Ok(env)
}

fn ops_ctx(ops: &[super::OpUse]) -> Vec<minijinja::Value> {
    ops.iter()
        .map(|u| {
            minijinja::Value::from_serialize(serde_json::json!({
                "op": u.op, "reversal": u.op.reversal.as_str(), "at": u.at,
            }))
        })
        .collect()
}

pub fn render(set: &DocSet) -> Result<Vec<(String, String)>> {
    let env = env()?;
    let page = |tpl: &str, ctx: minijinja::Value| -> Result<String> {
        env.get_template(tpl)
            .and_then(|t| t.render(ctx))
            .map_err(|e| Error::Other(format!("doc page {tpl}: {e}")))
    };
    let module_links = |names: &mut dyn Iterator<Item = &String>| -> Vec<serde_json::Value> {
        names
            .map(|n| serde_json::json!({"name": n, "href": format!("{}.html", module_file(n))}))
            .collect()
    };
    let recipes: Vec<serde_json::Value> = set
        .recipes
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name, "summary": r.summary, "irreversible": r.irreversible,
                "vetting": r.vetting, "tests": tests_line(&r.tests),
                "href": format!("{}.html", recipe_file(&r.name)),
            })
        })
        .collect();
    let modules: Vec<serde_json::Value> = set
        .modules
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.name, "summary": m.summary, "origin": m.origin,
                "href": format!("{}.html", module_file(&m.name)),
            })
        })
        .collect();
    let mut pages = vec![(
        "index".to_string(),
        page(
            "index.html",
            context! { style => STYLE, recipes => recipes, modules => modules },
        )?,
    )];
    for r in &set.recipes {
        let params: Vec<serde_json::Value> = r
            .params
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "type": p.ty.as_str(), "doc": p.doc,
                    "shown_default": p.default,
                })
            })
            .collect();
        let cases = match &r.tests {
            super::Tests::Ran { cases, .. } => cases.clone(),
            _ => Vec::new(),
        };
        let ctx = context! {
            style => STYLE,
            r => minijinja::Value::from_serialize(serde_json::json!({
                "name": r.name, "summary": r.summary, "body": r.body, "file": r.file,
                "params": params, "scope": r.scope, "become_policy": r.become_policy,
                "irreversible": r.irreversible, "vetting": r.vetting,
            })),
            ops => ops_ctx(&r.ops),
            modules => module_links(&mut r.modules.iter()),
            tests => tests_line(&r.tests),
            cases => cases,
        };
        pages.push((recipe_file(&r.name), page("recipe.html", ctx)?));
    }
    for m in &set.modules {
        let ctx = context! {
            style => STYLE,
            m => minijinja::Value::from_serialize(m),
            ops => ops_ctx(&m.ops),
        };
        pages.push((module_file(&m.name), page("module.html", ctx)?));
    }
    Ok(pages)
}
