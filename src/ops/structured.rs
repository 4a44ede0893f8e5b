//! Editing one value of a structured file: `fs::json` (a JSON Pointer, RFC 6901, in
//! a JSON or JSONC file) and `fs::yaml` (a pointer or a dotted path in a YAML file).
//!
//! The edit is made on the file's own syntax tree, so every byte outside the edited
//! value stays as it was: key order, indentation, comments (jsonc-parser's CST for
//! JSON, zizmor's yamlpatch for YAML). The new text is then parsed again and must hold
//! exactly the document wanted (the old one with that value set or removed); if the
//! format-keeping edit cannot give it, the step fails rather than write something else
//! (for YAML, `rewrite: true` re-serializes the whole document instead, losing comments
//! and layout). The text goes through [`super::fs::file`]: diff, journal, undo and
//! dry-run are the ones `fs::file` has.

use serde_json::Value;

use super::fs::file;
use super::{Ctx, OpError, OpResult, StepReport};

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// Set the value, or remove it (`state: "absent"`).
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Set(Value),
    Remove,
}

#[derive(Debug, Clone)]
pub struct StructSpec {
    /// The keys and indexes down to the value, unescaped.
    pub tokens: Vec<String>,
    pub edit: Edit,
    /// A missing file is created (with the value in an otherwise empty document).
    pub create: bool,
    /// YAML only: when the format-keeping edit is not possible, write the document
    /// anew (comments and layout are lost).
    pub rewrite: bool,
}

/// A JSON Pointer (`/a/b~1c/0`) as its unescaped tokens. The empty pointer (the
/// whole document) is refused: that is `fs::file`.
pub fn pointer(text: &str) -> Result<Vec<String>, String> {
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!(
            "{text:?} is not a JSON Pointer: it starts with `/` (\"/a/b/0\"; `~1` for a `/` in a key, `~0` for `~`)"
        ));
    };
    rest.split('/')
        .map(|t| {
            if t.replace("~0", "").replace("~1", "").contains('~') {
                return Err(format!(
                    "{text:?}: `~` in a pointer is `~0` or `~1`, not {t:?}"
                ));
            }
            Ok(t.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

/// A YAML location: a JSON Pointer, or a dotted path (`a.b.0`) when the keys hold no dot.
pub fn path_or_pointer(text: &str) -> Result<Vec<String>, String> {
    if text.starts_with('/') {
        return pointer(text);
    }
    if text.is_empty() || text.split('.').any(str::is_empty) {
        return Err(format!(
            "{text:?} is not a path: use `a.b.0` or a JSON Pointer like \"/a/b/0\""
        ));
    }
    Ok(text.split('.').map(String::from).collect())
}

/// `tokens` as a pointer, for messages.
fn shown(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// An array index token: digits without a leading zero, or `-` (one past the end).
fn index(token: &str, len: usize) -> Option<usize> {
    if token == "-" {
        return Some(len);
    }
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// The value `value` would be at the end of `tokens` in a new, empty document.
fn nested(tokens: &[String], value: Value) -> Value {
    tokens.iter().rev().fold(value, |v, key| {
        let mut m = serde_json::Map::new();
        m.insert(key.clone(), v);
        Value::Object(m)
    })
}

/// Where an edit lands in the document as it is: the length of the prefix of
/// `tokens` that exists. `Ok(n == tokens.len())` means the value is there.
fn existing(doc: &Value, tokens: &[String]) -> Result<usize, String> {
    let mut cur = doc;
    for (i, t) in tokens.iter().enumerate() {
        let next = match cur {
            Value::Object(m) => m.get(t),
            Value::Array(a) => match index(t, a.len()) {
                Some(n) => a.get(n),
                None => {
                    return Err(format!(
                        "{} is a list: {t:?} is not an index into it",
                        shown(&tokens[..i])
                    ))
                }
            },
            _ => {
                return Err(format!(
                    "{} is a {}, not an object or a list: nothing is inside it",
                    if i == 0 {
                        "/".into()
                    } else {
                        shown(&tokens[..i])
                    },
                    kind_of(cur)
                ))
            }
        };
        match next {
            Some(v) => cur = v,
            None => {
                if let Value::Array(a) = cur {
                    // Only one past the end can be added; a gap cannot be filled.
                    if index(t, a.len()) != Some(a.len()) || i + 1 < tokens.len() {
                        return Err(format!(
                            "{} has {} items: {} is past its end",
                            shown(&tokens[..i]),
                            a.len(),
                            shown(&tokens[..=i])
                        ));
                    }
                }
                return Ok(i);
            }
        }
    }
    Ok(tokens.len())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// The document with the edit made, on values: what the new text must parse to.
fn edited(doc: &Value, spec: &StructSpec) -> Result<Value, String> {
    let mut out = doc.clone();
    let (last, parents) = spec.tokens.split_last().expect("a pointer has a token");
    let mut cur = &mut out;
    for t in parents {
        cur = match cur {
            Value::Object(m) => m
                .entry(t.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(a) => {
                let n = index(t, a.len()).ok_or("not an index")?;
                a.get_mut(n).ok_or("past the end")?
            }
            _ => return Err("not a container".into()),
        };
    }
    match (cur, &spec.edit) {
        (Value::Object(m), Edit::Set(v)) => {
            m.insert(last.clone(), v.clone());
        }
        (Value::Object(m), Edit::Remove) => {
            m.remove(last);
        }
        (Value::Array(a), edit) => {
            let n = index(last, a.len()).ok_or("not an index")?;
            match edit {
                // `-` (after the end) converges: the value is added once, not on
                // every run.
                Edit::Set(v) if last == "-" && a.contains(v) => {}
                Edit::Set(v) if n < a.len() => a[n] = v.clone(),
                Edit::Set(v) => a.push(v.clone()),
                Edit::Remove if n < a.len() => {
                    a.remove(n);
                }
                Edit::Remove => {}
            }
        }
        _ => return Err("not a container".into()),
    }
    Ok(out)
}

/// The common course of both formats: read, decide on values, edit the text, check
/// the result, write through `fs::file`.
fn structured(
    ctx: &Ctx,
    op: &'static str,
    path: &str,
    spec: &StructSpec,
    format: &dyn Format,
) -> OpResult<StepReport> {
    let subject = format!("{path} {}", shown(&spec.tokens));
    let fail = |why: String| invalid(format!("{op} {subject}: {why}"));
    let create = spec.create && spec.edit != Edit::Remove;
    let Some(old) = super::edit::read_text(ctx, op, path, create || spec.edit == Edit::Remove)?
    else {
        if spec.edit == Edit::Remove {
            return Ok(StepReport::unchanged(op, subject));
        }
        let Edit::Set(v) = &spec.edit else {
            unreachable!()
        };
        let text = format
            .fresh(&nested(&spec.tokens, v.clone()))
            .map_err(fail)?;
        let mut r = file(ctx, op, path, text.as_bytes(), None, true)?;
        r.subject = subject;
        return Ok(r);
    };
    // A file with no document yet (empty, or only comments) is edited as `{}`.
    let doc = match format.parse(&old).map_err(fail)? {
        Value::Null if format.is_empty(&old) => Value::Object(Default::default()),
        doc => doc,
    };
    let found = existing(&doc, &spec.tokens).map_err(fail)?;
    let want = edited(&doc, spec).map_err(fail)?;
    if want == doc {
        return Ok(StepReport::unchanged(op, subject));
    }
    let new = match format.edit(&old, &doc, found, spec) {
        Ok(new) if format.parse(&new).ok().as_ref() == Some(&want) => new,
        result => {
            let why = match result {
                Err(e) => e,
                Ok(_) => "the edit keeping the file's layout did not give the value wanted".into(),
            };
            if !spec.rewrite {
                return Err(fail(format!("{why}{}", format.rewrite_hint())));
            }
            format.fresh(&want).map_err(fail)?
        }
    };
    let mut r = file(ctx, op, path, new.as_bytes(), None, true)?;
    r.subject = subject;
    Ok(r)
}

/// What differs between JSON and YAML.
trait Format {
    fn parse(&self, text: &str) -> Result<Value, String>;
    /// `old` with the edit made, keeping everything else. `found`: how many of the
    /// tokens exist (see [`existing`]).
    fn edit(
        &self,
        old: &str,
        doc: &Value,
        found: usize,
        spec: &StructSpec,
    ) -> Result<String, String>;
    /// A whole new document holding `v`.
    fn fresh(&self, v: &Value) -> Result<String, String>;
    fn rewrite_hint(&self) -> &'static str;
    /// The text holds no value at all (only blanks and comments).
    fn is_empty(&self, text: &str) -> bool;
}

// ------------------------------------------------------------------ fs::json

struct Json;

fn json_options() -> jsonc_parser::ParseOptions {
    jsonc_parser::ParseOptions::default()
}

fn cst_input(v: &Value) -> jsonc_parser::cst::CstInputValue {
    use jsonc_parser::cst::CstInputValue as I;
    match v {
        Value::Null => I::Null,
        Value::Bool(b) => I::Bool(*b),
        Value::Number(n) => I::Number(n.to_string()),
        Value::String(s) => I::String(s.clone()),
        Value::Array(a) => I::Array(a.iter().map(cst_input).collect()),
        Value::Object(m) => I::Object(m.iter().map(|(k, v)| (k.clone(), cst_input(v))).collect()),
    }
}

/// Replace a value node of the tree with `v`, where it stands.
fn replace_node(node: jsonc_parser::cst::CstNode, v: &Value) -> Result<(), String> {
    use jsonc_parser::cst::{CstContainerNode as C, CstLeafNode as L, CstNode as N};
    let input = cst_input(v);
    let done = match node {
        N::Container(C::Object(o)) => o.replace_with(input),
        N::Container(C::Array(a)) => a.replace_with(input),
        N::Leaf(L::StringLit(s)) => s.replace_with(input),
        N::Leaf(L::NumberLit(n)) => n.replace_with(input),
        N::Leaf(L::BooleanLit(b)) => b.replace_with(input),
        N::Leaf(L::NullKeyword(n)) => n.replace_with(input),
        N::Leaf(L::WordLit(w)) => w.replace_with(input),
        _ => None,
    };
    done.map(|_| ())
        .ok_or_else(|| "the value could not be replaced".into())
}

/// Remove an element of a list. The parser's removal of the first element of a
/// one-line list leaves the blank that followed its comma (`[ "b"]`): that blank goes
/// too when the list had none after its `[`.
fn remove_element(arr: &jsonc_parser::cst::CstArray, el: jsonc_parser::cst::CstNode) {
    let blank_after_bracket =
        |a: &jsonc_parser::cst::CstArray| a.children().get(1).and_then(|n| n.as_whitespace());
    let had_blank = blank_after_bracket(arr).is_some();
    el.remove();
    if !had_blank {
        if let Some(ws) = blank_after_bracket(arr) {
            ws.remove();
        }
    }
}

impl Format for Json {
    fn parse(&self, text: &str) -> Result<Value, String> {
        let root = jsonc_parser::cst::CstRootNode::parse(text, &json_options())
            .map_err(|e| format!("not JSON: {e}"))?;
        Ok(root.to_serde_value().unwrap_or(Value::Null))
    }

    fn edit(
        &self,
        old: &str,
        _doc: &Value,
        found: usize,
        spec: &StructSpec,
    ) -> Result<String, String> {
        use jsonc_parser::cst::CstRootNode;
        let root =
            CstRootNode::parse(old, &json_options()).map_err(|e| format!("not JSON: {e}"))?;
        let tokens = &spec.tokens;
        let Some(mut node) = root.value() else {
            // An empty file (or only comments): the document is the new value.
            let Edit::Set(v) = &spec.edit else {
                return Ok(old.to_string());
            };
            root.set_value(cst_input(&nested(tokens, v.clone())));
            return Ok(root.to_string());
        };
        for (i, t) in tokens.iter().enumerate() {
            let last = i + 1 == tokens.len();
            if i == found {
                // The first missing key or index: what goes there holds the rest.
                let Edit::Set(v) = &spec.edit else {
                    return Ok(root.to_string());
                };
                let rest = nested(&tokens[i + 1..], v.clone());
                if let Some(obj) = node.as_object() {
                    obj.append(t, cst_input(&rest));
                } else if let Some(arr) = node.as_array() {
                    arr.append(cst_input(&rest));
                } else {
                    return Err("not an object or a list".into());
                }
                return Ok(root.to_string());
            }
            let child = if let Some(obj) = node.as_object() {
                let prop = obj.get(t).ok_or("a key went missing")?;
                if last {
                    match &spec.edit {
                        Edit::Set(v) => prop.set_value(cst_input(v)),
                        Edit::Remove => prop.remove(),
                    }
                    return Ok(root.to_string());
                }
                prop.value().ok_or("a key has no value")?
            } else if let Some(arr) = node.as_array() {
                let elements = arr.elements();
                let n = index(t, elements.len()).ok_or("not an index")?;
                let el = elements.get(n).cloned().ok_or("past the end")?;
                if last {
                    match &spec.edit {
                        Edit::Set(v) => replace_node(el, v)?,
                        Edit::Remove => remove_element(&arr, el),
                    }
                    return Ok(root.to_string());
                }
                el
            } else {
                return Err("not an object or a list".into());
            };
            node = child;
        }
        Ok(root.to_string())
    }

    fn fresh(&self, v: &Value) -> Result<String, String> {
        serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())
    }

    fn rewrite_hint(&self) -> &'static str {
        ""
    }

    fn is_empty(&self, text: &str) -> bool {
        jsonc_parser::cst::CstRootNode::parse(text, &json_options())
            .map(|r| r.value().is_none())
            .unwrap_or(false)
    }
}

/// Set (or remove) the value at a JSON Pointer in a JSON file.
pub fn json(ctx: &Ctx, path: &str, spec: &StructSpec) -> OpResult<StepReport> {
    structured(ctx, "fs::json", path, spec, &Json)
}

// ------------------------------------------------------------------ fs::yaml

struct Yaml;

fn yaml_value(v: &Value) -> Result<yaml_serde::Value, String> {
    yaml_serde::to_value(v).map_err(|e| e.to_string())
}

impl Format for Yaml {
    fn parse(&self, text: &str) -> Result<Value, String> {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        yaml_serde::from_str::<Value>(text).map_err(|e| format!("not YAML tend can edit: {e}"))
    }

    fn edit(
        &self,
        old: &str,
        doc: &Value,
        found: usize,
        spec: &StructSpec,
    ) -> Result<String, String> {
        use yamlpatch::{Op, Patch};
        use yamlpath::{Component, Route};
        if self.is_empty(old) {
            let Edit::Set(v) = &spec.edit else {
                return Ok(old.to_string());
            };
            return self.fresh(&nested(&spec.tokens, v.clone()));
        }
        // The route of the existing part, keys or indexes as the document has them.
        let mut route = Vec::new();
        let mut cur = doc;
        for t in &spec.tokens[..found] {
            match cur {
                Value::Array(a) => {
                    let n = index(t, a.len()).ok_or("not an index")?;
                    route.push(Component::Index(n));
                    cur = &a[n];
                }
                Value::Object(m) => {
                    route.push(Component::Key(t.clone().into()));
                    cur = &m[t];
                }
                _ => return Err("not a mapping or a list".into()),
            }
        }
        let operation = if found == spec.tokens.len() {
            match &spec.edit {
                Edit::Set(v) => Op::Replace(yaml_value(v)?),
                Edit::Remove => Op::Remove,
            }
        } else {
            let Edit::Set(v) = &spec.edit else {
                return Ok(old.to_string());
            };
            let value = yaml_value(&nested(&spec.tokens[found + 1..], v.clone()))?;
            match cur {
                Value::Object(_) => Op::Add {
                    key: spec.tokens[found].clone(),
                    value,
                },
                _ => Op::Append { value },
            }
        };
        let document = yamlpath::Document::new(old.to_string()).map_err(|e| e.to_string())?;
        let patch = Patch {
            route: Route::from(route),
            operation,
        };
        yamlpatch::apply_yaml_patches(&document, &[patch])
            .map(|d| d.source().to_string())
            .map_err(|e| format!("cannot edit it keeping its layout: {e}"))
    }

    fn fresh(&self, v: &Value) -> Result<String, String> {
        yaml_serde::to_string(v).map_err(|e| e.to_string())
    }

    fn is_empty(&self, text: &str) -> bool {
        text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        })
    }

    fn rewrite_hint(&self) -> &'static str {
        "; pass rewrite: true to write the whole document anew (its comments and layout are lost)"
    }
}

/// Set (or remove) the value at a path of a YAML file.
pub fn yaml(ctx: &Ctx, path: &str, spec: &StructSpec) -> OpResult<StepReport> {
    structured(ctx, "fs::yaml", path, spec, &Yaml)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(p: &str, edit: Edit) -> StructSpec {
        StructSpec {
            tokens: pointer(p).unwrap(),
            edit,
            create: true,
            rewrite: false,
        }
    }

    fn apply(f: &dyn Format, text: &str, s: &StructSpec) -> String {
        let doc = f.parse(text).unwrap();
        let found = existing(&doc, &s.tokens).unwrap();
        let out = f.edit(text, &doc, found, s).unwrap();
        assert_eq!(f.parse(&out).unwrap(), edited(&doc, s).unwrap(), "{out}");
        out
    }

    #[test]
    fn pointers() {
        assert_eq!(pointer("/a~1b/~0c/0").unwrap(), vec!["a/b", "~c", "0"]);
        assert!(pointer("a").is_err());
        assert!(pointer("/a~2").is_err());
        assert_eq!(path_or_pointer("a.b.0").unwrap(), vec!["a", "b", "0"]);
        assert!(path_or_pointer("a..b").is_err());
    }

    #[test]
    fn json_keeps_everything_else() {
        let text = "{\n    // the port\n    \"port\": 80,\n    \"z\": [1, 2],\n    \"a\": {\"x\": true}\n}\n";
        assert_eq!(
            apply(&Json, text, &spec("/port", Edit::Set(json!(8080)))),
            text.replace("80,", "8080,")
        );
        assert_eq!(
            apply(&Json, text, &spec("/z/1", Edit::Set(json!("two")))),
            text.replace("[1, 2]", "[1, \"two\"]")
        );
        let added = apply(&Json, text, &spec("/new/deep", Edit::Set(json!("v"))));
        assert!(
            added.starts_with("{\n    // the port\n    \"port\": 80,"),
            "{added}"
        );
        assert_eq!(
            apply(&Json, text, &spec("/z/0", Edit::Remove)),
            text.replace("[1, 2]", "[2]")
        );
        let removed = apply(&Json, text, &spec("/z", Edit::Remove));
        assert_eq!(removed, text.replace("    \"z\": [1, 2],\n", ""));
        apply(&Json, text, &spec("/z/-", Edit::Set(json!(3))));
        let doc = Json.parse("// only a comment\n").unwrap();
        assert!(doc.is_null() && Json.is_empty("// only a comment\n"));
        let lines = "[\n  1,\n  2\n]\n";
        assert_eq!(
            apply(&Json, lines, &spec("/0", Edit::Remove)),
            "[\n  2\n]\n"
        );
    }

    #[test]
    fn yaml_keeps_comments() {
        let text = "# settings\nserver:\n  port: 80 # http\n  hosts:\n    - a\n    - b\nname: x\n";
        assert_eq!(
            apply(&Yaml, text, &spec("/server/port", Edit::Set(json!(8080)))),
            text.replace("port: 80", "port: 8080")
        );
        let added = apply(&Yaml, text, &spec("/server/tls", Edit::Set(json!(true))));
        assert!(
            added.starts_with("# settings\nserver:\n  port: 80 # http\n"),
            "{added}"
        );
        let removed = apply(&Yaml, text, &spec("/name", Edit::Remove));
        assert!(
            removed.starts_with("# settings\n") && !removed.contains("name"),
            "{removed}"
        );
        apply(&Yaml, text, &spec("/server/hosts/-", Edit::Set(json!("c"))));
    }
}
