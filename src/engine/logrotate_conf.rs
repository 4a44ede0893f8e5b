//! `logrotate::parse_config(path)` for recipes: a logrotate configuration file (with
//! its `include`s, files and directories) read through the run's Target, so it works
//! on a remote host as on this one, turned into one map per stanza whose keys are
//! the log-rotate recipe's options (`keep`, `interval`, `minsize`…).
//!
//! Native, not Rhai: the format is a tokenizer's (quoted patterns, `{` … `}`,
//! scripts up to `endscript`, global defaults that stanzas inherit, `include` of a
//! directory with its `tabooext` filter), and every directive tend cannot honour must
//! stop the run with the file and line that has it, never be skipped.
//!
//! Semantics follow logrotate 3.21's config.c: a stanza starts from the global
//! settings seen so far; the last of `size`/`hourly`/`daily`/`weekly`/`monthly`/
//! `yearly` decides the criterion; logrotate's own defaults (no compression, no
//! create, `rotate 0`, `size 1M`, `ifempty`, `nomissingok`) apply when nothing is said.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, Map, Module, NativeCallContext};

use super::HostContext;
use crate::ops::OpError;
use crate::transport::{join, Kind, Target};

/// `logrotate::parse_config(path)`: a fact (reads only), on the run's target.
pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    let mut m = Module::new();
    m.set_native_fn(
        "parse_config",
        move |call: NativeCallContext, path: &str| {
            host.fact(&call, |c| {
                parse_config(c.target.as_ref(), path).map_err(OpError::Invalid)
            })
        },
    );
    engine.register_static_module("logrotate", m.into());
}

/// The options of one stanza, as the recipe names them.
#[derive(Clone, Debug)]
struct Opts(Map);

impl Opts {
    fn defaults() -> Opts {
        let mut m = Map::new();
        let mut set = |k: &str, v: Dynamic| {
            m.insert(k.into(), v);
        };
        set("keep", 0.into());
        set("compress", false.into());
        set("compress_format", "gzip".into());
        set("delaycompress", false.into());
        set("copytruncate", false.into());
        set("create", false.into());
        set("create_mode", (-1_i64).into());
        set("create_owner", "".into());
        set("create_group", "".into());
        set("if_empty", true.into());
        set("missing_ok", false.into());
        set("min_size", (1024 * 1024_i64).into());
        set("minsize", 0.into());
        set("maxsize", 0.into());
        set("maxage", 0.into());
        set("interval", "".into());
        set("suffix", "numbered".into());
        set("date_format", "".into());
        set("dateyesterday", false.into());
        set("olddir", "".into());
        set("extension", "".into());
        set("su", "".into());
        set("sharedscripts", false.into());
        for s in ["prerotate", "postrotate", "firstaction", "lastaction"] {
            set(s, "".into());
        }
        Opts(m)
    }

    fn set(&mut self, k: &str, v: impl Into<Dynamic>) {
        self.0.insert(k.into(), v.into());
    }
}

/// Directives that are valid logrotate but that tend does not carry out: a config
/// using one is refused (with why), since ignoring it would rotate differently.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("copy", "copying without truncating"),
    ("mail", "mailing logs"),
    ("mailfirst", "mailing logs"),
    ("maillast", "mailing logs"),
    ("minage", "a minimum age"),
    ("start", "a first number other than 1"),
    ("createolddir", "creating olddir"),
    ("renamecopy", "renamecopy"),
    ("shred", "shredding"),
    ("shredcycles", "shredding"),
    ("allowhardlink", "rotating hard-linked logs"),
    ("addextension", "addextension"),
    ("datehourago", "datehourago"),
    ("preremove", "a preremove script"),
    ("compressoptions", "compression options"),
    ("ignoreduplicates", "ignoreduplicates"),
];

/// Directives that only restate a default tend has too.
const NO_OPS: &[&str] = &[
    "nomail",
    "nocopy",
    "noshred",
    "nocreateolddir",
    "norenamecopy",
    "noallowhardlink",
    "uncompresscmd",
];

const TABOO: &[&str] = &[
    ",v",
    ".bak",
    ".cfsaved",
    ".disabled",
    ".dpkg-bak",
    ".dpkg-del",
    ".dpkg-dist",
    ".dpkg-new",
    ".dpkg-old",
    ".dpkg-tmp",
    ".rhn-cfg-tmp-*",
    ".rpmnew",
    ".rpmorig",
    ".rpmsave",
    ".swp",
    ".ucf-dist",
    ".ucf-new",
    ".ucf-old",
    "~",
];

struct Parser<'t> {
    target: &'t dyn Target,
    global: Opts,
    taboo: Vec<String>,
    stanzas: Array,
    depth: usize,
}

/// Parse `path` (a file or a directory) on `target`: one map per stanza, with
/// `files` (an array of patterns), `source` ("FILE:LINE") and the recipe's options.
pub fn parse_config(target: &dyn Target, path: &str) -> Result<Array, String> {
    let mut p = Parser {
        target,
        global: Opts::defaults(),
        taboo: TABOO.iter().map(|s| s.to_string()).collect(),
        stanzas: Array::new(),
        depth: 0,
    };
    p.include(path, None)?;
    Ok(p.stanzas)
}

impl Parser<'_> {
    fn include(&mut self, path: &str, from: Option<&str>) -> Result<(), String> {
        let at = |e: String| match from {
            Some(f) => format!("{f}: include {path}: {e}"),
            None => format!("{path}: {e}"),
        };
        self.depth += 1;
        if self.depth > 16 {
            return Err(at("includes nested too deep (a loop?)".into()));
        }
        let meta = self
            .target
            .stat(path)
            .map_err(|e| at(e.to_string()))?
            .ok_or_else(|| at("no such file or directory".into()))?;
        if meta.kind == Kind::Dir {
            let mut names = self.target.list_dir(path).map_err(|e| at(e.to_string()))?;
            names.sort();
            for name in names {
                if self.taboo.iter().any(|t| taboo_match(&name, t)) {
                    continue;
                }
                let child = join(path, &name);
                match self.target.stat(&child).map_err(|e| at(e.to_string()))? {
                    Some(m) if m.kind == Kind::File => self.file(&child)?,
                    _ => continue,
                }
            }
        } else {
            self.file(path)?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn file(&mut self, path: &str) -> Result<(), String> {
        let bytes = self.target.read(path).map_err(|e| format!("{path}: {e}"))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        // The stanza being read: its options, patterns and first line.
        let mut open: Option<(Opts, Vec<String>, usize)> = None;
        while i < lines.len() {
            let n = i + 1;
            let line = lines[i].trim();
            i += 1;
            let here = |e: &str| format!("{path}:{n}: {e}");
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == "}" {
                let Some((opts, files, start)) = open.take() else {
                    return Err(here("`}` without a stanza to close"));
                };
                let mut m = opts.0;
                m.insert(
                    "files".into(),
                    Dynamic::from_array(files.into_iter().map(Dynamic::from).collect()),
                );
                m.insert("source".into(), format!("{path}:{start}").into());
                self.stanzas.push(Dynamic::from_map(m));
                continue;
            }
            if let Some(head) = line.strip_suffix('{') {
                if open.is_some() {
                    return Err(here("a stanza inside a stanza"));
                }
                let files = words(head).map_err(|e| here(&e))?;
                if files.is_empty() {
                    return Err(here("`{` without log file patterns"));
                }
                // As written (quotes included): what logrotate gives shared scripts as $1.
                let mut opts = self.global.clone();
                opts.set("pattern", head.trim());
                open = Some((opts, files, n));
                continue;
            }
            let words = words(line).map_err(|e| here(&e))?;
            let (key, args) = (words[0].as_str(), &words[1..]);
            if ["prerotate", "postrotate", "firstaction", "lastaction"].contains(&key) {
                let Some((opts, ..)) = open.as_mut() else {
                    return Err(here(&format!("{key} outside a stanza")));
                };
                let mut script = Vec::new();
                loop {
                    let Some(l) = lines.get(i) else {
                        return Err(here(&format!("{key} without endscript")));
                    };
                    i += 1;
                    if l.trim() == "endscript" {
                        break;
                    }
                    script.push(*l);
                }
                opts.set(key, script.join("\n"));
                continue;
            }
            if key == "include" {
                if open.is_some() {
                    return Err(here("include inside a stanza"));
                }
                let [target] = args else {
                    return Err(here("include takes one path"));
                };
                self.include(target, Some(&format!("{path}:{n}")))?;
                continue;
            }
            if key == "tabooext" {
                let (add, list) = match args.first().map(String::as_str) {
                    Some("+") => (true, &args[1..]),
                    _ => (false, args),
                };
                if !add {
                    self.taboo.clear();
                }
                for t in list.iter().flat_map(|a| a.split(',')) {
                    if !t.is_empty() {
                        self.taboo.push(t.to_string());
                    }
                }
                continue;
            }
            let opts = match open.as_mut() {
                Some((o, ..)) => o,
                None => &mut self.global,
            };
            directive(opts, key, args).map_err(|e| here(&e))?;
        }
        if let Some((.., start)) = open {
            return Err(format!("{path}:{start}: stanza not closed with `}}`"));
        }
        Ok(())
    }
}

/// Apply one directive to `o`.
fn directive(o: &mut Opts, key: &str, args: &[String]) -> Result<(), String> {
    if let Some((_, what)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        return Err(format!(
            "logrotate directive `{key}` is not supported by tend's log-rotate ({what}); \
             remove it or rotate this log with logrotate"
        ));
    }
    if NO_OPS.contains(&key) {
        return Ok(());
    }
    let one = || match args {
        [a] => Ok(a.as_str()),
        _ => Err(format!("{key} takes one value")),
    };
    let none = || {
        if args.is_empty() {
            Ok(())
        } else {
            Err(format!("{key} takes no value"))
        }
    };
    let flag = |o: &mut Opts, k: &str, v: bool| -> Result<(), String> {
        none()?;
        o.set(k, v);
        Ok(())
    };
    match key {
        "compress" | "nocompress" => flag(o, "compress", key == "compress")?,
        "delaycompress" | "nodelaycompress" => flag(o, "delaycompress", key == "delaycompress")?,
        "copytruncate" | "nocopytruncate" => flag(o, "copytruncate", key == "copytruncate")?,
        "ifempty" | "notifempty" => flag(o, "if_empty", key == "ifempty")?,
        "missingok" | "nomissingok" => flag(o, "missing_ok", key == "missingok")?,
        "sharedscripts" | "nosharedscripts" => flag(o, "sharedscripts", key == "sharedscripts")?,
        "dateyesterday" => flag(o, "dateyesterday", true)?,
        "dateext" | "nodateext" => {
            none()?;
            o.set("suffix", if key == "dateext" { "date" } else { "numbered" });
        }
        "nocreate" => flag(o, "create", false)?,
        "create" => {
            o.set("create", true);
            if let Some(mode) = args.first() {
                let m = i64::from_str_radix(mode, 8)
                    .ok()
                    .filter(|m| (0..=0o7777).contains(m))
                    .ok_or_else(|| format!("create: bad mode {mode:?}"))?;
                o.set("create_mode", m);
            }
            if let Some(owner) = args.get(1) {
                o.set("create_owner", owner.clone());
            }
            if let Some(group) = args.get(2) {
                o.set("create_group", group.clone());
            }
            if args.len() > 3 {
                return Err("create takes at most mode, owner and group".into());
            }
        }
        "hourly" | "daily" | "monthly" | "yearly" => {
            none()?;
            o.set("interval", key);
        }
        "weekly" => match args {
            [] => o.set("interval", "weekly"),
            [d] if d.parse::<u8>().is_ok_and(|d| d <= 7) => {
                o.set("interval", format!("weekly {d}"))
            }
            _ => return Err("weekly takes a weekday, 0 to 7".into()),
        },
        "size" => {
            o.set("min_size", size(one()?)?);
            o.set("interval", "");
        }
        "minsize" | "maxsize" => o.set(key, size(one()?)?),
        "rotate" => o.set("keep", int(key, one()?)?),
        "maxage" => o.set("maxage", int(key, one()?)?),
        "dateformat" => {
            let f = one()?;
            let f = f.strip_prefix('-').ok_or_else(|| {
                format!("dateformat {f:?}: tend's dated copies are NAME-DATE; the format must start with `-`")
            })?;
            o.set("date_format", f);
        }
        "olddir" => o.set("olddir", one()?),
        "su" => match args {
            [user] => o.set("su", user.clone()),
            [user, group] => o.set("su", format!("{user} {group}")),
            _ => return Err("su takes a user and a group".into()),
        },
        "noolddir" => {
            none()?;
            o.set("olddir", "");
        }
        "extension" => o.set("extension", one()?),
        "compresscmd" => {
            let cmd = one()?;
            let format = match cmd.rsplit('/').next() {
                Some("gzip") => "gzip",
                Some("zstd") => "zstd",
                _ => {
                    return Err(format!(
                        "compresscmd {cmd}: tend compresses with gzip or zstd only"
                    ))
                }
            };
            o.set("compress_format", format);
        }
        "compressext" => {
            let ext = one()?;
            let format =
                o.0.get("compress_format")
                    .map(|v| v.to_string())
                    .unwrap_or_default();
            let want = if format == "zstd" { ".zst" } else { ".gz" };
            if ext != want {
                return Err(format!(
                    "compressext {ext}: with {format} tend names copies {want}"
                ));
            }
        }
        _ => return Err(format!("unknown logrotate directive `{key}`")),
    }
    Ok(())
}

/// logrotate's sizes: bytes, or with `k`/`K`, `M`, `G`.
fn size(s: &str) -> Result<i64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'M')) => (&s[..i], 1024 * 1024),
        Some((i, 'G')) => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("bad size {s:?}"))
}

fn int(key: &str, s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n >= -1)
        .ok_or_else(|| format!("{key}: bad number {s:?}"))
}

/// Whitespace-separated words, double or single quotes grouping.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `name` ends with the taboo extension `t` (which may hold `*`).
fn taboo_match(name: &str, t: &str) -> bool {
    match t.split_once('*') {
        None => name.ends_with(t),
        Some((head, tail)) => name
            .match_indices(head)
            .any(|(i, _)| name[i + head.len()..].ends_with(tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::local::Local;

    fn parse(files: &[(&str, &str)], main: &str) -> Result<(Array, String), String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text.replace("DIR", &dir.path().display().to_string())).unwrap();
        }
        let path = dir.path().join(main).display().to_string();
        let d = dir.path().display().to_string();
        parse_config(&Local::new(), &path)
            .map(|a| (a, d.clone()))
            .map_err(|e| e.replace(&d, "DIR"))
    }

    fn get(s: &Dynamic, k: &str) -> String {
        s.clone().cast::<Map>()[k].to_string()
    }

    #[test]
    fn globals_stanzas_includes_scripts() {
        let s = parse(
            &[
                (
                    "main",
                    "# comment\nweekly\nrotate 4\ncreate\ninclude DIR/d\n\"/var/log/x y.log\" /var/log/z.log {\n  daily\n  compress\n  postrotate\n    kill -HUP $(cat /run/x.pid)\n  endscript\n}\n",
                ),
                ("d/a", "/var/log/a.log {\n size 100k\n create 0640 root adm\n}\n"),
                ("d/a.dpkg-old", "/var/log/old.log {\n}\n"),
            ],
            "main",
        )
        .unwrap();
        let (s, dir) = s;
        assert_eq!(s.len(), 2);
        assert_eq!(get(&s[0], "files"), "[\"/var/log/a.log\"]");
        assert_eq!(get(&s[0], "interval"), "");
        assert_eq!(get(&s[0], "min_size"), "102400");
        assert_eq!(get(&s[0], "keep"), "4");
        assert_eq!(get(&s[0], "create_mode"), "416");
        assert_eq!(get(&s[0], "create_group"), "adm");
        assert_eq!(get(&s[0], "source"), format!("{dir}/d/a:1"));
        assert_eq!(
            get(&s[1], "files"),
            "[\"/var/log/x y.log\", \"/var/log/z.log\"]"
        );
        assert_eq!(get(&s[1], "interval"), "daily");
        assert_eq!(get(&s[1], "compress"), "true");
        assert_eq!(get(&s[1], "postrotate"), "    kill -HUP $(cat /run/x.pid)");
    }

    #[test]
    fn unsupported_and_unknown_directives_name_file_and_line() {
        let e = parse(&[("c", "/var/log/a.log {\n  mail a@b.c\n}\n")], "c").unwrap_err();
        assert!(
            e.starts_with("DIR/c:2: logrotate directive `mail` is not supported"),
            "{e}"
        );
        let e = parse(&[("c", "/var/log/a.log {\n  rotat 3\n}\n")], "c").unwrap_err();
        assert_eq!(e, "DIR/c:2: unknown logrotate directive `rotat`");
        let e = parse(&[("c", "/var/log/a.log {\n  size 10q\n}\n")], "c").unwrap_err();
        assert_eq!(e, "DIR/c:2: bad size \"10q\"");
        let e = parse(&[("c", "/var/log/a.log {\n")], "c").unwrap_err();
        assert_eq!(e, "DIR/c:1: stanza not closed with `}`");
    }
}
