//! Recipe parameters: declared in the recipe by `params(#{name: default, …})`, where
//! the default fixes the type, and given on the command line as `-p name=value`.

use std::collections::BTreeMap;

use rhai::{Dynamic, Map};

use crate::secret::{Secret, SecretDecl};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Float,
    Bool,
    /// Written like `"10M"`; the recipe sees bytes (an int).
    Size,
    /// Written like `"7d"`; the recipe sees seconds (an int).
    Duration,
    List,
    Secret,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::Size => "size",
            ParamType::Duration => "duration",
            ParamType::List => "list",
            ParamType::Secret => "secret",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ParamDecl {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// As written in the recipe; `None` for a required parameter.
    #[serde(skip)]
    pub default: Option<String>,
    /// The default as a typed JSON value for `--json` (`4`, not `"4"`; a list is an
    /// array; a size or duration stays as written, `"10M"`); `null` for a secret.
    #[serde(rename = "default")]
    pub default_json: Option<serde_json::Value>,
    pub doc: String,
}

/// Why a size or duration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Not written like one.
    Invalid,
    /// Written like one, but larger than a recipe's int holds: wrapped, it would be
    /// negative (a retention recipe would then find every file expired).
    TooLarge,
}

impl Quantity {
    /// The reason, for a message about `what` ("a size") counted in `unit`s.
    pub fn describe(self, what: &str, unit: &str) -> String {
        match self {
            Quantity::Invalid => format!("not {what}"),
            Quantity::TooLarge => format!("too large for {what} (at most {} {unit})", i64::MAX),
        }
    }
}

/// `"10M"`, `"1.5G"`, `"512K"`, `"100k"`, `"100"`+`B`… In bytes. `k`, `g`, `t` and
/// `b` may be lower-case too (as logrotate and most tools take them), but not `m`:
/// `"10m"` stays a duration (ten minutes).
pub fn parse_size(s: &str) -> Result<i64, Quantity> {
    let t = s.trim();
    if t == "0" {
        return Ok(0); // "no size limit" needs no unit
    }
    let unit_ok = t
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
        .trim()
        .chars()
        .next()
        .is_some_and(|c| "BKMGTPbkgt".contains(c));
    if !unit_ok {
        return Err(Quantity::Invalid);
    }
    match parse_size::Config::new().with_binary().parse_size(t) {
        Ok(n) => i64::try_from(n).map_err(|_| Quantity::TooLarge),
        Err(parse_size::Error::PosOverflow) => Err(Quantity::TooLarge),
        Err(_) => Err(Quantity::Invalid),
    }
}

/// `"30s"`, `"15m"`, `"2h"`, `"7d"`, `"1w"`, `"1h30m"`: seconds.
pub fn parse_duration(s: &str) -> Result<i64, Quantity> {
    let t = s.trim();
    if !t.starts_with(|c: char| c.is_ascii_digit())
        || !t.ends_with(|c: char| c.is_ascii_alphabetic())
    {
        return Err(Quantity::Invalid);
    }
    match humantime::parse_duration(t) {
        Ok(d) => i64::try_from(d.as_secs()).map_err(|_| Quantity::TooLarge),
        Err(humantime::DurationError::NumberOverflow) => Err(Quantity::TooLarge),
        Err(_) => Err(Quantity::Invalid),
    }
}

fn type_of(v: &Dynamic) -> Option<ParamType> {
    if v.is::<SecretDecl>() {
        Some(ParamType::Secret)
    } else if v.is_bool() {
        Some(ParamType::Bool)
    } else if v.is_int() {
        Some(ParamType::Int)
    } else if v.is_float() {
        Some(ParamType::Float)
    } else if v.is_array() {
        Some(ParamType::List)
    } else if v.is_string() {
        let s = v.clone().into_string().unwrap_or_default();
        // A default too large for its type still declares that type: using it is
        // then refused, rather than it silently becoming a string.
        Some(if parse_size(&s) != Err(Quantity::Invalid) {
            ParamType::Size
        } else if parse_duration(&s) != Err(Quantity::Invalid) {
            ParamType::Duration
        } else {
            ParamType::String
        })
    } else {
        None
    }
}

/// The declarations in `params(#{…})`, in name order, with docs from trailing comments.
pub fn declarations(decl: &Map, docs: &BTreeMap<String, String>) -> Result<Vec<ParamDecl>, String> {
    let mut out = Vec::new();
    for (name, v) in decl {
        let ty = type_of(v).ok_or_else(|| {
            format!(
                "parameter `{name}`: its default must be a string, int, float, bool, list or secret(), not {}",
                v.type_name()
            )
        })?;
        if matches!(ty, ParamType::Size | ParamType::Duration) {
            // A default too large for its type is the recipe's mistake, found before
            // anything runs.
            if let Err(m) = convert(name, ty, &v.to_string()) {
                return Err(format!("the default of {m}"));
            }
        }
        out.push(ParamDecl {
            name: name.to_string(),
            ty,
            default: (ty != ParamType::Secret).then(|| display_default(v)),
            default_json: (ty != ParamType::Secret)
                .then(|| rhai::serde::from_dynamic(v).ok())
                .flatten(),
            doc: docs.get(name.as_str()).cloned().unwrap_or_default(),
        });
    }
    Ok(out)
}

fn display_default(v: &Dynamic) -> String {
    if v.is_array() {
        let items: Vec<String> = v
            .clone()
            .into_array()
            .unwrap_or_default()
            .iter()
            .map(|i| i.to_string())
            .collect();
        items.join(",")
    } else {
        v.to_string()
    }
}

fn names(decls: &[ParamDecl]) -> String {
    if decls.is_empty() {
        return "it takes no parameters".into();
    }
    let list: Vec<String> = decls
        .iter()
        .map(|d| format!("{} ({})", d.name, d.ty.as_str()))
        .collect();
    format!("it takes: {}", list.join(", "))
}

/// Check `-p` values against the declarations and build the map the recipe gets.
/// `supplied` holds secrets the caller read itself (at a prompt).
pub fn resolve(
    decl: &Map,
    decls: &[ParamDecl],
    given: &[(String, String)],
    supplied: &BTreeMap<String, Secret>,
) -> Result<Map, String> {
    for (k, _) in given {
        if !decl.contains_key(k.as_str()) {
            return Err(format!("unknown parameter `{k}`; {}", names(decls)));
        }
    }
    let mut out = Map::new();
    for d in decls {
        let default = decl.get(d.name.as_str()).cloned().unwrap_or(Dynamic::UNIT);
        let raw = given
            .iter()
            .rev()
            .find(|(k, _)| *k == d.name)
            .map(|(_, v)| v);
        let value = match (raw, d.ty) {
            (None, ParamType::Secret) => match supplied.get(&d.name) {
                Some(s) => Dynamic::from(s.clone()),
                None => {
                    return Err(format!(
                        "missing parameter `{}` (a secret): give it with -p {}=env:VAR or -p {}=file:PATH",
                        d.name, d.name, d.name
                    ))
                }
            },
            // Defaults were checked by `declarations`.
            (None, ParamType::Size) => Dynamic::from_int(
                parse_size(&default.into_string().unwrap_or_default()).unwrap_or(0),
            ),
            (None, ParamType::Duration) => Dynamic::from_int(
                parse_duration(&default.into_string().unwrap_or_default()).unwrap_or(0),
            ),
            (None, _) => default,
            (Some(raw), ty) => convert(&d.name, ty, raw)?,
        };
        out.insert(d.name.as_str().into(), value);
    }
    Ok(out)
}

/// The values of the secret parameters of a run (given as `env:`/`file:` references,
/// or supplied by the caller), for scrubbing from everything the run
/// reports. Ones that cannot be read are left out: the run refuses them anyway.
pub fn secret_values(
    decls: &[ParamDecl],
    given: &[(String, String)],
    supplied: &BTreeMap<String, Secret>,
) -> Vec<String> {
    decls
        .iter()
        .filter(|d| d.ty == ParamType::Secret)
        .filter_map(|d| match given.iter().rev().find(|(k, _)| *k == d.name) {
            Some((_, raw)) => Secret::from_reference(&d.name, raw).ok(),
            None => supplied.get(&d.name).cloned(),
        })
        .map(|s| s.expose().to_string())
        .collect()
}

fn convert(name: &str, ty: ParamType, raw: &str) -> Result<Dynamic, String> {
    let bad = |what: &str| format!("parameter `{name}` is {what}; got {raw:?}");
    let bad_quantity = |q: Quantity, what: &str, unit: &str, like: &str| match q {
        Quantity::Invalid => bad(&format!("{what} (like {like})")),
        Quantity::TooLarge => format!("parameter `{name}`: {raw:?} is {}", q.describe(what, unit)),
    };
    Ok(match ty {
        ParamType::String => Dynamic::from(raw.to_string()),
        ParamType::Int => Dynamic::from_int(match raw.trim().strip_prefix("0o") {
            // Modes are written 0o640 in recipes; the same spelling works on the command line.
            Some(octal) => i64::from_str_radix(octal, 8).map_err(|_| bad("an int"))?,
            None => raw.trim().parse().map_err(|_| bad("an int"))?,
        }),
        ParamType::Float => Dynamic::from_float(raw.trim().parse().map_err(|_| bad("a float"))?),
        ParamType::Bool => Dynamic::from_bool(match raw.trim() {
            "true" | "yes" | "1" | "on" => true,
            "false" | "no" | "0" | "off" => false,
            _ => return Err(bad("a bool (true/false)")),
        }),
        ParamType::Size => Dynamic::from_int(parse_size(raw).map_err(|q| {
            bad_quantity(
                q,
                "a size",
                "bytes",
                "10M, 100k, 1G; M for megabytes: 10m is ten minutes",
            )
        })?),
        ParamType::Duration => Dynamic::from_int(
            parse_duration(raw)
                .map_err(|q| bad_quantity(q, "a duration", "seconds", "30s, 15m, 7d"))?,
        ),
        ParamType::List => Dynamic::from_array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Dynamic::from(s.to_string()))
                .collect(),
        ),
        ParamType::Secret => Dynamic::from(Secret::from_reference(name, raw)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10M"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("100k"), Ok(100 * 1024));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("10m"), Err(Quantity::Invalid));
        assert_eq!(parse_size("10"), Err(Quantity::Invalid));
        assert_eq!(parse_size("9999999T"), Err(Quantity::TooLarge));
        assert_eq!(parse_size("99999999999999999999P"), Err(Quantity::TooLarge));
        assert_eq!(parse_duration("7d"), Ok(7 * 86400));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("/var/log"), Err(Quantity::Invalid));
        assert_eq!(parse_duration("500000000000y"), Err(Quantity::TooLarge));
        assert_eq!(
            parse_duration("99999999999999999999y"),
            Err(Quantity::TooLarge)
        );
    }
}
