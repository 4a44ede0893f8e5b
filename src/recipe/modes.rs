//! File modes written in decimal: `mode: 644` is the number six hundred and
//! forty-four (0o1204: sticky, write-only for the owner), never what was meant.
//! Rhai keeps no radix once a number is parsed, so the recipe's text is read for
//! them when it is loaded: a `mode:` option or the mode of `fs::chmod(path, mode)`
//! given as a decimal literal of 8 or more is refused at its line.

/// What a scan of recipe text yields: names, number literals and single punctuation,
/// with their 1-based line and column; strings and comments are skipped.
#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Punct(char),
}

fn tokens(src: &str) -> Vec<(Tok, usize, usize)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0, 1, 1);
    // Advance over chars[i], keeping line and column.
    macro_rules! bump {
        () => {{
            if chars[i] == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            i += 1;
        }};
    }
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                bump!();
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    bump!();
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    bump!();
                    if depth == 0 {
                        bump!();
                        break;
                    }
                }
                bump!();
            }
        } else if c == '"' || c == '`' || c == '\'' {
            bump!();
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    bump!();
                }
                if i < chars.len() {
                    bump!();
                }
            }
            if i < chars.len() {
                bump!();
            }
        } else if c.is_ascii_digit() {
            let (l, k) = (line, col);
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                bump!();
            }
            out.push((Tok::Num(s), l, k));
        } else if c.is_alphabetic() || c == '_' {
            let (l, k) = (line, col);
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                bump!();
            }
            out.push((Tok::Ident(s), l, k));
        } else {
            if !c.is_whitespace() {
                out.push((Tok::Punct(c), line, col));
            }
            bump!();
        }
    }
    out
}

/// Why a number literal cannot be a mode, if it cannot.
fn decimal_mode(literal: &str) -> Option<String> {
    let digits = literal.replace('_', "");
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None; // 0o644, 0x1a4, 1e3: not a plain decimal
    }
    let value: u64 = digits.parse().ok()?;
    if value < 8 {
        return None; // the same in octal
    }
    let octal = digits.trim_start_matches('0');
    Some(if octal.chars().all(|c| ('0'..='7').contains(&c)) {
        format!(
            "mode {literal} is a decimal number (0o{value:o} in octal, not what it looks like): \
             did you mean 0o{octal}?"
        )
    } else {
        format!("mode {literal} is a decimal number; write modes in octal, like 0o644")
    })
}

/// Every mode written as a decimal literal in `src`: `(line, column, message)`.
pub fn decimal_modes(src: &str) -> Vec<(usize, usize, String)> {
    let toks = tokens(src);
    let mut out = Vec::new();
    let mut report = |t: &(Tok, usize, usize)| {
        if let Tok::Num(n) = &t.0 {
            if let Some(why) = decimal_mode(n) {
                out.push((t.1, t.2, why));
            }
        }
    };
    for (i, t) in toks.iter().enumerate() {
        let at = |k: usize| toks.get(k).map(|t| &t.0);
        match &t.0 {
            // `mode: 644` in a map, but not `x::mode`, nor a `mode::` path.
            Tok::Ident(name) if name == "mode" => {
                let after_path = i > 0 && at(i - 1) == Some(&Tok::Punct(':'));
                if !after_path
                    && at(i + 1) == Some(&Tok::Punct(':'))
                    && at(i + 2) != Some(&Tok::Punct(':'))
                {
                    if let Some(n) = toks.get(i + 2) {
                        report(n);
                    }
                }
            }
            // `chmod(path, 644)`: the literal that is the second argument.
            Tok::Ident(name) if name == "chmod" && at(i + 1) == Some(&Tok::Punct('(')) => {
                let mut depth = 0;
                let mut k = i + 1;
                while let Some(tok) = at(k) {
                    match tok {
                        Tok::Punct('(' | '[' | '{') => depth += 1,
                        Tok::Punct(')' | ']' | '}') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Tok::Punct(',') if depth == 1 => {
                            if matches!(at(k + 2), Some(Tok::Punct(')' | ','))) {
                                if let Some(n) = toks.get(k + 1) {
                                    report(n);
                                }
                            }
                            break;
                        }
                        _ => {}
                    }
                    k += 1;
                }
            }
            _ => {}
        }
    }
    out
}

/// Refuse the recipe (or module) `src`, named `display`, at its first decimal mode.
pub fn check(src: &str, display: &str) -> crate::error::Result<()> {
    match decimal_modes(src).into_iter().next() {
        None => Ok(()),
        Some((line, col, message)) => Err(crate::error::Error::Recipe {
            location: format!("{display}:{line}:{col}"),
            message,
        }),
    }
}

/// [`check`] for a recipe and every module it imports.
pub fn check_all(
    src: &str,
    display: &str,
    modules: &[(String, String)],
) -> crate::error::Result<()> {
    check(src, display)?;
    modules
        .iter()
        .try_for_each(|(name, text)| check(text, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_decimal_modes_only() {
        let src = "fs::file(p, #{mode: 644}); // mode: 600\nfs::chmod(p, 0o600);\n\
                   fs::chmod(\"a,b\", 755);\nlet s = \"mode: 700\";\nfs::dir(d, #{mode: 0o750});\n\
                   x::mode(1); #{mode: 4}; #{mode: 0644}; #{mode: 420}; #{mode: 999}";
        let found = decimal_modes(src);
        let at: Vec<(usize, usize)> = found.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(at, vec![(1, 21), (3, 18), (6, 33), (6, 48), (6, 62)]);
        assert!(found[0].2.contains("did you mean 0o644?"), "{}", found[0].2);
        assert!(found[2].2.contains("did you mean 0o644?"), "{}", found[2].2);
        assert!(
            found[4].2.contains("write modes in octal"),
            "{}",
            found[4].2
        );
    }
}
