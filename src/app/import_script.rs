//! `tend import-script`: a recipe skeleton around an existing shell script, so that a
//! folder of scripts becomes recipes one at a time. The script's text goes *into*
//! the recipe (fed to its shell on stdin), so vetting the recipe vets the script:
//! editing the script file later changes nothing until it is imported and vetted
//! again. Its positional arguments and the environment variables it reads (as far as
//! a simple scan finds them) become parameters, passed through the environment so no
//! value is ever spliced into a command line; the paths the author names become the
//! recipe's `scope:` and the step's `changes:`, which make it reversible.

use std::collections::BTreeMap;

/// What the scan found in a script.
#[derive(Debug, Default, PartialEq)]
pub struct Scanned {
    /// `$1`…`$9` it reads, with a `${1:-default}` default when it gives one.
    pub positional: BTreeMap<u32, Option<String>>,
    /// Environment variables it reads but never sets, with `${X:-default}` defaults.
    pub env: BTreeMap<String, Option<String>>,
    /// `bash` when the shebang or the syntax asks for it, else `sh`.
    pub shell: String,
    /// The leading `#` comment lines after the shebang.
    pub doc: Vec<String>,
}

/// Variables every shell or login sets: never parameters.
const AMBIENT: &[&str] = &[
    "HOME",
    "PATH",
    "PWD",
    "OLDPWD",
    "USER",
    "LOGNAME",
    "SHELL",
    "IFS",
    "PS1",
    "PS2",
    "PS4",
    "TERM",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "HOSTNAME",
    "RANDOM",
    "LINENO",
    "SECONDS",
    "UID",
    "EUID",
    "PPID",
    "BASH_SOURCE",
    "FUNCNAME",
    "PIPESTATUS",
    "OPTARG",
    "OPTIND",
    "REPLY",
    "BASH",
    "BASH_VERSION",
];

/// Scan `script`: a heuristic, like reading it by eye, not a shell parser. What it
/// misses the author adds to the skeleton.
pub fn scan(script: &str) -> Scanned {
    let mut s = Scanned {
        shell: "sh".into(),
        ..Default::default()
    };
    let mut lines = script.lines().peekable();
    if let Some(first) = lines.peek() {
        if let Some(shebang) = first.strip_prefix("#!") {
            if shebang.contains("bash") {
                s.shell = "bash".into();
            }
            lines.next();
        }
    }
    for l in lines.by_ref() {
        match l.trim_start().strip_prefix('#') {
            Some(c) => s.doc.push(c.trim().to_string()),
            None if l.trim().is_empty() && s.doc.is_empty() => continue,
            None => break,
        }
    }
    let assigned = assigned_names(script);
    let b = script.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Skip comments and single-quoted text: no expansion there.
        if b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
        } else if b[i] == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'$' && i + 1 < b.len() {
            let (name, default, end) = expansion(script, i + 1);
            if let Some(name) = name {
                if let Ok(n) = name.parse::<u32>() {
                    if (1..=9).contains(&n) {
                        let slot = s.positional.entry(n).or_default();
                        if slot.is_none() {
                            *slot = default;
                        }
                    }
                } else if name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && !AMBIENT.contains(&name.as_str())
                    && !assigned.contains(&name)
                {
                    let slot = s.env.entry(name).or_default();
                    if slot.is_none() {
                        *slot = default;
                    }
                }
            }
            i = end;
            continue;
        }
        if script[i..].starts_with("[[") || script[i..].starts_with("function ") {
            s.shell = "bash".into();
        }
        i += 1;
    }
    s
}

/// The variable of the expansion after a `$` at `at`: its name, a `:-`/`-` default,
/// and where scanning goes on.
fn expansion(text: &str, at: usize) -> (Option<String>, Option<String>, usize) {
    let rest = &text[at..];
    if let Some(inner) = rest.strip_prefix('{') {
        let Some(close) = inner.find('}') else {
            return (None, None, at + 1);
        };
        let body = &inner[..close];
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = &body[name.len()..];
        let default = after
            .strip_prefix(":-")
            .or_else(|| after.strip_prefix('-'))
            .map(|d| d.trim_matches('"').to_string());
        let end = at + 1 + close + 1;
        return ((!name.is_empty()).then_some(name), default, end);
    }
    let first = rest.chars().next().unwrap_or(' ');
    if first.is_ascii_digit() {
        return (Some(first.to_string()), None, at + 1);
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let end = at + name.len().max(1);
    ((!name.is_empty()).then_some(name), None, end)
}

/// Names the script assigns (`NAME=`, `read NAME`, `for NAME in`, `export NAME=`).
fn assigned_names(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in script.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (k, w) in words.iter().enumerate() {
            let w = w.trim_start_matches("export").trim_start_matches("local");
            if let Some((name, _)) = w.split_once('=') {
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    out.push(name.to_string());
                }
            }
            if (w == "read" || w == "for") && k + 1 < words.len() {
                for n in &words[k + 1..] {
                    if n.starts_with('-') {
                        continue;
                    }
                    if *n == "in" || n.contains(';') {
                        break;
                    }
                    out.push(n.to_string());
                }
            }
        }
    }
    out
}

/// A Rhai string literal of `text`.
fn rhai_string(text: &str) -> String {
    let mut s = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The parameter name for an environment variable: `BACKUP_DIR` → `backup_dir`.
fn param_name(var: &str) -> String {
    var.to_ascii_lowercase()
}

/// What the author tells `import-script` beyond the script.
pub struct ImportSpec<'a> {
    pub name: &'a str,
    /// Where the script came from, for the header.
    pub source: &'a str,
    pub script: &'a str,
    /// The recipe's write scope and the step's `changes:` (empty: none declared).
    pub changes: &'a [String],
}

/// The recipe text.
pub fn recipe(spec: &ImportSpec) -> String {
    let s = scan(spec.script);
    let mut out = String::new();
    let summary = s
        .doc
        .iter()
        .find(|l| !l.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("{} (imported from {})", spec.name, spec.source));
    out += &format!("//! {summary}\n//!\n");
    out += &format!(
        "//! Imported by `tend import-script` from {}; the script's text is below, so\n\
         //! vetting this recipe vets the script. Edit the parameters' comments and check\n\
         //! the declared paths: they are what rollback restores.\n",
        spec.source
    );
    if spec.changes.is_empty() {
        out += "//!\n//! No paths were declared (`--changes`): tend cannot tell what the script\n\
                //! changes, so a rollback cannot undo it.\n";
    } else {
        out += &format!("//! scope: {}\n", spec.changes.join(", "));
    }
    out += "\n";
    let mut params = Vec::new();
    for (n, default) in &s.positional {
        params.push((
            format!("arg{n}"),
            default.clone().unwrap_or_default(),
            format!("the script's argument ${n}"),
        ));
    }
    for (var, default) in &s.env {
        params.push((
            param_name(var),
            default.clone().unwrap_or_default(),
            format!("${var} in the script's environment"),
        ));
    }
    if !params.is_empty() {
        out += "let p = params(#{\n";
        for (name, default, doc) in &params {
            out += &format!("    {name}: {},   // {doc}\n", rhai_string(default));
        }
        out += "});\n\n";
    }
    out += "// The script, as imported: one line each, fed to its shell on stdin.\n";
    out += "let script = \"\";\n";
    for line in spec.script.lines() {
        out += &format!("script += {};\n", rhai_string(&format!("{line}\n")));
    }
    out += "\n";
    let args: Vec<String> = s
        .positional
        .keys()
        .map(|n| format!("\\\"$TEND_ARG_{n}\\\""))
        .collect();
    let command = if args.is_empty() {
        format!("{} -s", s.shell)
    } else {
        format!("{} -s -- {}", s.shell, args.join(" "))
    };
    let mut opts = vec!["stdin: script".to_string()];
    let mut env: Vec<String> = s
        .positional
        .keys()
        .map(|n| format!("TEND_ARG_{n}: p.arg{n}"))
        .collect();
    env.extend(s.env.keys().map(|v| format!("{v}: p.{}", param_name(v))));
    if !env.is_empty() {
        opts.push(format!("env: #{{ {} }}", env.join(", ")));
    }
    if !spec.changes.is_empty() {
        let list: Vec<String> = spec.changes.iter().map(|c| rhai_string(c)).collect();
        opts.push(format!("changes: [{}]", list.join(", ")));
    }
    out += &format!("sh(\"{command}\", #{{\n");
    for o in &opts {
        out += &format!("    {o},\n");
    }
    out += "});\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_arguments_environment_and_shell() {
        let s = scan(
            "#!/bin/bash\n# Clean the cache.\n# Second line.\nset -e\nDIR=${1:-/var/cache/app}\nKEEP=$2\necho \"$DIR $KEEP ${RETENTION:-7} $HOME\" # $IGNORED\nfor f in *; do echo $f; done\nread ANSWER\necho '$NOT_THIS' $ANSWER $LEVEL\n",
        );
        assert_eq!(s.shell, "bash");
        assert_eq!(s.doc, ["Clean the cache.", "Second line."]);
        assert_eq!(
            s.positional,
            BTreeMap::from([(1, Some("/var/cache/app".into())), (2, None)])
        );
        assert_eq!(
            s.env,
            BTreeMap::from([
                ("LEVEL".into(), None),
                ("RETENTION".into(), Some("7".into()))
            ])
        );
    }

    #[test]
    fn strings_escape() {
        assert_eq!(rhai_string("a\"b\\c\td"), "\"a\\\"b\\\\c\\td\"");
    }
}
