//! Values of a YAML inventory, typed as Ansible's YAML 1.1 parser (PyYAML) types them.
//!
//! serde_yaml_ng follows YAML 1.2, where a plain `yes`, `off`, `010` or `1_000` is a
//! string; Ansible reads them as true, false, 8 and 1000, and `ansible_become: yes` is
//! everywhere. So plain scalars that YAML 1.2 left as strings are resolved again by
//! the 1.1 rules; quoted ones stay strings. Whether a string was quoted is told by the
//! byte before it in the source text (the parser hands out slices of that text),
//! which [`with_source`] makes known while the document is read.
//!
//! Left as YAML 1.2 reads them: `0o10` (8 here, a string in Ansible) and exponents
//! without a dot (`1e3`: 1000.0 here, a string in Ansible).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

thread_local! {
    /// The text being parsed: its address (to place the slices the parser hands out)
    /// and a copy (to read the byte before one).
    static SOURCE: RefCell<(usize, String)> = const { RefCell::new((0, String::new())) };
}

/// Run `f` (which parses `text`) with `text` known as the source.
pub(crate) fn with_source<T>(text: &str, f: impl FnOnce() -> T) -> T {
    let before = SOURCE.with(|s| s.replace((text.as_ptr() as usize, text.to_string())));
    let out = f();
    SOURCE.with(|s| s.replace(before));
    out
}

/// Whether `s`, a slice of the source, was written without quotes.
fn is_plain(s: &str) -> bool {
    SOURCE.with(|src| {
        let src = src.borrow();
        let (start, text) = (src.0, &src.1);
        let at = s.as_ptr() as usize;
        if at <= start || at + s.len() > start + text.len() {
            return false;
        }
        let before = text.as_bytes()[at - start - 1];
        before != b'"' && before != b'\''
    })
}

/// A YAML value as a JSON value, typed by YAML 1.1.
pub(crate) struct YamlValue(pub Value);

/// YAML 1.1's reading of a plain scalar that YAML 1.2 left a string.
fn resolve_plain(s: &str) -> Value {
    match s {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" => return Value::Bool(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" => return Value::Bool(false),
        _ => {}
    }
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let int = |v: Option<i64>| {
        v.and_then(|v| if neg { v.checked_neg() } else { Some(v) })
            .map(Value::from)
    };
    let clean = digits.replace('_', "");
    let all = |f: fn(u8) -> bool| !clean.is_empty() && clean.bytes().all(f);
    if digits.starts_with(|c: char| c.is_ascii_digit()) {
        // `010` is octal, `1_000` a thousand, `1:30` ninety (base 60).
        if clean.len() > 1 && clean.starts_with('0') && all(|b| (b'0'..=b'7').contains(&b)) {
            if let Some(v) = int(i64::from_str_radix(&clean[1..], 8).ok()) {
                return v;
            }
        } else if all(|b| b.is_ascii_digit()) && !clean.starts_with('0') {
            if let Some(v) = int(clean.parse().ok()) {
                return v;
            }
        } else if clean.contains(':') && !clean.starts_with('0') {
            let parts: Option<Vec<i64>> = clean.split(':').map(|p| p.parse().ok()).collect();
            if let Some(parts) = parts.filter(|p| p[1..].iter().all(|d| (0..60).contains(d))) {
                let v = parts
                    .iter()
                    .try_fold(0i64, |acc, d| acc.checked_mul(60)?.checked_add(*d));
                if let Some(v) = int(v) {
                    return v;
                }
            }
        } else if clean.contains('.') && all(|b| b.is_ascii_digit() || b == b'.') {
            if let Some(n) = clean.parse::<f64>().ok().and_then(Number::from_f64) {
                let f = n.as_f64().unwrap_or(0.0);
                if let Some(n) = Number::from_f64(if neg { -f } else { f }) {
                    return Value::Number(n);
                }
            }
        }
    }
    Value::String(s.to_string())
}

impl<'de> Deserialize<'de> for YamlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(YamlVisitor).map(YamlValue)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        YamlValue::deserialize(d).map(|v| v.0)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value, E> {
        Ok(if is_plain(v) {
            resolve_plain(v)
        } else {
            Value::String(v.to_string())
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        // Not a slice of the source: an escaped or folded string, never 1.1-typed.
        Ok(Value::String(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<YamlValue>()? {
            out.push(v.0);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<YamlValue>()? {
            let key = match k.0 {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(key, map.next_value::<YamlValue>()?.0);
        }
        Ok(Value::Object(out))
    }
}
