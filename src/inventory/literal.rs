//! The values of an INI inventory, typed as Ansible types them.
//!
//! Ansible passes every INI value through Python's `ast.literal_eval` and keeps the
//! text when that fails: `4` is an int, `0.5` a float, `True` a bool, `None` null,
//! `[80, 443]` a list, `{'a': 1}` a mapping, `'x'` the string x; `true`, `yes`,
//! `010` and `hello world` are not Python literals and stay strings. Recipes then see
//! the same types a playbook would (`host().vars.port + 1`). Literals this does not
//! know (complex numbers, bytes, sets) stay text too.

use serde_json::{Map, Number, Value};

/// The value Ansible gives the INI text `v`.
pub(crate) fn eval(v: &str) -> Value {
    let mut p = Parser {
        s: v.as_bytes(),
        i: 0,
    };
    // literal_eval ignores leading spaces and tabs, and a trailing newline.
    p.skip_ws();
    match p.value(0) {
        Some(value) => {
            p.skip_ws();
            if p.i == p.s.len() {
                value
            } else {
                Value::String(v.to_string())
            }
        }
        None => Value::String(v.to_string()),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// Nesting deeper than this is refused (stays text) rather than overflowing the stack.
const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            b'[' => {
                self.i += 1;
                Some(Value::Array(self.items(b']', depth)?))
            }
            b'(' => {
                self.i += 1;
                // `(1)` is 1, `(1,)` and `()` are tuples (lists once in JSON).
                let start = self.i;
                if self.eat(b')') {
                    return Some(Value::Array(Vec::new()));
                }
                self.i = start;
                let first = self.value(depth + 1)?;
                if self.eat(b')') {
                    return Some(first);
                }
                if !self.eat(b',') {
                    return None;
                }
                let mut rest = self.items(b')', depth)?;
                rest.insert(0, first);
                Some(Value::Array(rest))
            }
            b'{' => {
                self.i += 1;
                self.mapping(depth)
            }
            b'"' | b'\'' => self.strings(),
            b'-' | b'+' => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                self.skip_ws();
                match self.number()? {
                    Value::Number(n) if neg => negate(&n),
                    n => Some(n),
                }
            }
            b'0'..=b'9' | b'.' => self.number(),
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Some(Value::Bool(true)),
                    b"False" => Some(Value::Bool(false)),
                    b"None" => Some(Value::Null),
                    _ => None,
                }
            }
        }
    }

    /// Comma-separated values up to `close` (a trailing comma allowed).
    fn items(&mut self, close: u8, depth: usize) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.value(depth + 1)?);
            if self.eat(close) {
                return Some(out);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn mapping(&mut self, depth: usize) -> Option<Value> {
        let mut out = Map::new();
        loop {
            if self.eat(b'}') {
                return Some(Value::Object(out));
            }
            // Keys become text in JSON, as Python's json module writes them.
            let key = match self.value(depth + 1)? {
                Value::String(s) => s,
                Value::Array(_) | Value::Object(_) => return None,
                Value::Bool(b) => if b { "true" } else { "false" }.to_string(),
                Value::Null => "null".to_string(),
                other => other.to_string(),
            };
            if !self.eat(b':') {
                return None;
            }
            let v = self.value(depth + 1)?;
            out.insert(key, v);
            if self.eat(b'}') {
                return Some(Value::Object(out));
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// One or more adjacent string literals (Python joins `'a' 'b'`).
    fn strings(&mut self) -> Option<Value> {
        let mut out = String::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(q @ (b'"' | b'\'')) => out.push_str(&self.string(q)?),
                _ => return Some(Value::String(out)),
            }
        }
    }

    fn string(&mut self, q: u8) -> Option<String> {
        // Triple quotes and prefixes (r'', b'') are rare in inventories: left as text.
        if self.s[self.i..].starts_with(&[q, q, q]) {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                c if c == q => break,
                b'\n' => return None,
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'0' => out.push(0),
                        b'\\' | b'\'' | b'"' => out.push(e),
                        b'\n' => {}
                        // Unknown escapes keep their backslash, as in Python.
                        other => {
                            out.push(b'\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).ok()
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
        {
            // An exponent's sign belongs to the number.
            self.i += 1;
            if matches!(self.s.get(self.i - 1), Some(b'e' | b'E'))
                && matches!(self.peek(), Some(b'+' | b'-'))
                && !self.s[start..].starts_with(b"0x")
                && !self.s[start..].starts_with(b"0X")
            {
                self.i += 1;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        number(text)
    }
}

fn negate(n: &Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return Some(Value::from(i.checked_neg()?));
    }
    if let Some(u) = n.as_u64() {
        return i64::try_from(u)
            .ok()
            .and_then(|i| i.checked_neg())
            .map(Value::from);
    }
    Number::from_f64(-n.as_f64()?).map(Value::Number)
}

/// A Python int or float literal.
fn number(text: &str) -> Option<Value> {
    // Underscores only between digits.
    if text.starts_with('_') || text.ends_with('_') || text.contains("__") {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            let digits = digits.strip_prefix('_').unwrap_or(digits);
            let clean = digits.replace('_', "");
            if clean.is_empty() {
                return None;
            }
            return u64::from_str_radix(&clean, radix).ok().map(Value::from);
        }
    }
    if text.contains(['_']) && (text.contains("_.") || text.contains("._")) {
        return None;
    }
    let clean = text.replace('_', "");
    let is_float = clean.contains(['.', 'e', 'E']);
    if !is_float {
        if !clean.bytes().all(|b| b.is_ascii_digit()) || clean.is_empty() {
            return None;
        }
        // Python refuses leading zeros in a decimal (`010`), except for zero itself.
        if clean.len() > 1 && clean.starts_with('0') && clean.bytes().any(|b| b != b'0') {
            return None;
        }
        return clean.parse::<u64>().ok().map(Value::from);
    }
    if !clean
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        || clean == "."
    {
        return None;
    }
    let f: f64 = clean.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inventory_ini_values_as_ansible_types_them() {
        for (text, want) in [
            ("4", json!(4)),
            ("-3", json!(-3)),
            ("0.5", json!(0.5)),
            ("1e3", json!(1000.0)),
            ("1_000", json!(1000)),
            ("0x10", json!(16)),
            ("True", json!(true)),
            ("False", json!(false)),
            ("None", json!(null)),
            ("[80, 443]", json!([80, 443])),
            ("[1, 'two',]", json!([1, "two"])),
            ("(1, 2)", json!([1, 2])),
            ("{'a': 1, 2: [True]}", json!({"a": 1, "2": [true]})),
            ("'x y'", json!("x y")),
            ("\"a\\tb\"", json!("a\tb")),
            ("true", json!("true")),
            ("yes", json!("yes")),
            ("010", json!("010")),
            ("00", json!(0)),
            ("hello world", json!("hello world")),
            ("[1, 2", json!("[1, 2")),
            ("1+2", json!("1+2")),
            ("", json!("")),
        ] {
            assert_eq!(eval(text), want, "{text}");
        }
    }
}
