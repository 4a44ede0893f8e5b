//! Errors about functions said in Rhai's words: `unknown function fs::lin(string,
//! string) — did you mean fs::line?`, not Rust's type names. The names known are
//! the ones the first engine built in this process has (the same for every host).

use std::sync::OnceLock;

use rhai::Engine;

static KNOWN: OnceLock<Vec<String>> = OnceLock::new();

/// Keep the names of the functions `engine` offers, for suggestions.
pub(super) fn remember(engine: &Engine) {
    KNOWN.get_or_init(|| {
        let mut names: Vec<String> = engine
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|s| s.split('(').next())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty() && !n.starts_with("get$") && !n.starts_with("set$"))
            .collect();
        names.sort();
        names.dedup();
        names
    });
}

/// A Rust type as Rhai calls it.
fn rhai_type(t: &str) -> String {
    let t = t.trim();
    if t.contains("ImmutableString") || t == "&str" || t == "String" {
        return "string".into();
    }
    let last = t.trim_start_matches('&').rsplit("::").next().unwrap_or(t);
    match last {
        "i64" | "INT" => "int",
        "f64" | "FLOAT" => "float",
        "bool" => "bool",
        "char" => "char",
        "()" => "()",
        "Map" => "map",
        "Array" => "array",
        "Blob" => "blob",
        "FnPtr" => "Fn",
        "Secret" | "SecretDecl" => "secret",
        other => return other.to_string(),
    }
    .to_string()
}

/// The message for Rhai's `ErrorFunctionNotFound(signature)`, where the signature
/// reads `fs::lin (&str | ImmutableString | String, i64)`.
pub fn unknown_function(signature: &str) -> String {
    let (name, args) = match signature.split_once('(') {
        Some((n, a)) => (n.trim(), a.trim_end().trim_end_matches(')')),
        None => (signature.trim(), ""),
    };
    // Types hold no commas, but a type can be `A | B | C`: split on ", " only.
    let args: Vec<String> = args
        .split(", ")
        .filter(|a| !a.trim().is_empty())
        .map(rhai_type)
        .collect();
    let call = format!("{name}({})", args.join(", "));
    let known: Vec<&str> = KNOWN
        .get()
        .map(|k| k.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if known.contains(&name) {
        return format!(
            "no function {call}: {name} exists, but not for these arguments (check their number and types)"
        );
    }
    // A method call (`x.foo()`) names no module: compare without them too.
    match crate::error::did_you_mean(name, &known) {
        Some(close) => format!("unknown function {call} — did you mean {close}?"),
        None => format!("unknown function {call} (check its name and arguments)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_read_as_rhai() {
        assert_eq!(
            unknown_function("frobnicate (&str | ImmutableString | String, i64, rhai::Map)"),
            "unknown function frobnicate(string, int, map) (check its name and arguments)"
        );
    }
}
