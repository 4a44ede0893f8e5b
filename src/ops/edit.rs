//! Editing part of a text file: `fs::block` (a managed block between marker lines,
//! as Ansible's `blockinfile`), `fs::replace` (every match of a regex) and `fs::ini`
//! (one key of an INI section). Each computes the new content from the file as it is
//! and hands it to [`super::fs::file`], so the diff, the journal, the undo and the
//! dry-run are the ones `fs::file` has; everything outside the edit stays byte for byte.

use regex::Regex;

use super::fs::file;
use super::{Ctx, OpError, OpResult, StepReport};
use crate::transport::Kind;

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// The file's text; `None` when it does not exist. A missing file is an error unless
/// `create` (then it is edited as empty and made with mode 0644).
pub(super) fn read_text(ctx: &Ctx, op: &str, path: &str, create: bool) -> OpResult<Option<String>> {
    let t = ctx.target.as_ref();
    match t.stat(path)? {
        None if create => Ok(None),
        None => Err(invalid(format!(
            "{op}: {path} does not exist (pass create: true to create it)"
        ))),
        Some(m) if m.kind != Kind::File => Err(invalid(format!(
            "{op}: {path} is a {}, not a regular file",
            m.kind.as_str()
        ))),
        Some(_) => String::from_utf8(t.read(path)?)
            .map(Some)
            .map_err(|_| invalid(format!("{op}: {path} is not UTF-8 text"))),
    }
}

/// Write `new` when it differs from `old` (a missing file counts as different only
/// when there is something to write).
fn ensure(
    ctx: &Ctx,
    op: &'static str,
    path: &str,
    old: Option<&str>,
    new: &str,
) -> OpResult<StepReport> {
    if old.unwrap_or_default() == new && (old.is_some() || new.is_empty()) {
        return Ok(StepReport::unchanged(op, path));
    }
    file(ctx, op, path, new.as_bytes(), None, true)
}

/// Lines with their terminators, so that joining them gives the text back exactly.
fn lines_of(text: &str) -> Vec<String> {
    text.split_inclusive('\n').map(str::to_string).collect()
}

fn bare(line: &str) -> &str {
    line.strip_suffix('\n').unwrap_or(line)
}

// ------------------------------------------------------------------ fs::block

/// Where a new block goes when the file has no block yet.
#[derive(Debug, Clone)]
pub enum Place {
    /// End of file (Ansible's `insertafter: EOF`, the default).
    End,
    /// Beginning of file (`insertbefore: BOF`).
    Start,
    /// After the last line matching (end of file when none does).
    After(Regex),
    /// Before the last line matching (end of file when none does).
    Before(Regex),
}

#[derive(Debug, Clone)]
pub struct BlockSpec {
    /// The text between the markers; empty removes the block, as `present: false`.
    pub text: String,
    pub present: bool,
    /// The marker template, `{mark}` standing for `begin` / `end`.
    pub marker: String,
    pub begin: String,
    pub end: String,
    pub place: Place,
    pub create: bool,
}

pub const DEFAULT_MARKER: &str = "# {mark} TEND MANAGED BLOCK";

/// The file's text with the block ensured (see [`BlockSpec`]).
pub fn block_text(old: &str, spec: &BlockSpec) -> Result<String, String> {
    let begin = spec.marker.replace("{mark}", &spec.begin);
    let end = spec.marker.replace("{mark}", &spec.end);
    if begin == end {
        return Err(format!(
            "the begin and end markers are the same line ({begin:?}): put {{mark}} in the marker"
        ));
    }
    let mut lines = lines_of(old);
    let first = lines.iter().position(|l| bare(l) == begin);
    let last = first.and_then(|b| {
        lines[b..]
            .iter()
            .position(|l| bare(l) == end)
            .map(|i| i + b)
    });
    let at = match (first, last) {
        (Some(b), Some(e)) => {
            lines.drain(b..=e);
            b
        }
        // Half a block: which lines it meant is a guess, and a wrong guess deletes
        // someone's lines; said instead (Ansible would add a second block).
        (Some(b), None) => {
            return Err(format!(
                "line {} is the marker {begin:?} but no {end:?} follows it: fix the file by hand",
                b + 1
            ))
        }
        (None, _) => {
            if let Some(e) = lines.iter().position(|l| bare(l) == end) {
                return Err(format!(
                    "line {} is the marker {end:?} but no {begin:?} comes before it: fix the file by hand",
                    e + 1
                ));
            }
            if !spec.present || spec.text.is_empty() {
                return Ok(old.to_string());
            }
            let last_match = |re: &Regex| lines.iter().rposition(|l| re.is_match(bare(l)));
            match &spec.place {
                Place::End => lines.len(),
                Place::Start => 0,
                Place::After(re) => last_match(re).map(|i| i + 1).unwrap_or(lines.len()),
                Place::Before(re) => last_match(re).unwrap_or(lines.len()),
            }
        }
    };
    if spec.present && !spec.text.is_empty() {
        if at > 0 && !lines[at - 1].ends_with('\n') {
            lines[at - 1].push('\n');
        }
        let mut text = spec.text.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let mut new = vec![format!("{begin}\n")];
        new.extend(lines_of(&text));
        new.push(format!("{end}\n"));
        lines.splice(at..at, new);
    }
    Ok(lines.concat())
}

/// Ensure a block of lines between two marker lines is there with exactly `text`
/// (replaced in place when the markers are found), or is gone with its markers.
pub fn block(ctx: &Ctx, path: &str, spec: &BlockSpec) -> OpResult<StepReport> {
    const OP: &str = "fs::block";
    let removal = !spec.present || spec.text.is_empty();
    let create = spec.create && !removal;
    let old = match read_text(ctx, OP, path, create || removal)? {
        None if !create => return Ok(StepReport::unchanged(OP, path)),
        old => old,
    };
    let new = block_text(old.as_deref().unwrap_or_default(), spec)
        .map_err(|why| invalid(format!("fs::block {path}: {why}")))?;
    ensure(ctx, OP, path, old.as_deref(), &new)
}

// ---------------------------------------------------------------- fs::replace

/// `text` with every match of `re` replaced (`$1`, `${name}` in `with`), and how many.
pub fn replace_text(text: &str, re: &Regex, with: &str) -> (String, usize) {
    let n = re.find_iter(text).count();
    (re.replace_all(text, with).into_owned(), n)
}

/// Replace every match of `re` (multi-line: `^` and `$` match at each line, as in
/// Ansible's `replace`). A replacement that the regex would match again is refused:
/// every run would change the file once more.
pub fn replace(ctx: &Ctx, path: &str, re: &Regex, with: &str) -> OpResult<StepReport> {
    const OP: &str = "fs::replace";
    let old = read_text(ctx, OP, path, false)?.unwrap_or_default();
    let (new, n) = replace_text(&old, re, with);
    if n == 0 || new == old {
        return Ok(StepReport::unchanged(OP, path));
    }
    if replace_text(&new, re, with).0 != new {
        return Err(invalid(format!(
            "fs::replace {path}: the result still matches {:?} and would change again on \
             every run; make the regex not match the replacement (anchor it, or match the \
             old value only)",
            re.as_str()
        )));
    }
    let mut r = ensure(ctx, OP, path, Some(&old), &new)?;
    r.subject = format!("{path} ({n} match{})", if n == 1 { "" } else { "es" });
    Ok(r)
}

// -------------------------------------------------------------------- fs::ini

/// A section header's name, for a line like `[name]`.
fn section_of(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('#') || t.starts_with(';')
}

/// For a `key = value` line: the key and where its value starts (after `=` and the
/// blanks that follow it).
fn key_of(line: &str) -> Option<(&str, usize)> {
    if is_comment(line) || section_of(line).is_some() {
        return None;
    }
    let eq = line.find('=')?;
    let after = &line[eq + 1..];
    let blanks = after.len() - after.trim_start_matches([' ', '\t']).len();
    Some((line[..eq].trim(), eq + 1 + blanks))
}

/// The file's text with `key = value` in `section` (`""`: before the first section).
/// A key that is there keeps its spacing and only its value changes; a new key goes
/// after the section's last non-blank line; a new section is appended.
pub fn ini_text(old: &str, section: &str, key: &str, value: &str) -> String {
    let mut lines = lines_of(old);
    let mut current = String::new();
    // Index just after the last non-blank line of the wanted section, once seen.
    let mut end_of_section: Option<usize> = if section.is_empty() { Some(0) } else { None };
    let mut found = false;
    for (i, line) in lines.iter_mut().enumerate() {
        if let Some(name) = section_of(line) {
            current = name.to_string();
            if name == section {
                end_of_section = Some(i + 1);
            }
            continue;
        }
        if current != section {
            continue;
        }
        if !bare(line).trim().is_empty() {
            end_of_section = Some(i + 1);
        }
        if let Some((k, at)) = key_of(bare(line)) {
            if k == key {
                found = true;
                let ending = &line[bare(line).len()..];
                let old_value = bare(line)[at..].trim_end();
                if old_value != value {
                    *line = format!("{}{value}{ending}", &bare(line)[..at]);
                }
            }
        }
    }
    if found {
        return lines.concat();
    }
    let entry = format!("{key} = {value}\n");
    match end_of_section {
        Some(at) => {
            if at > 0 && !lines[at - 1].ends_with('\n') {
                lines[at - 1].push('\n');
            }
            lines.insert(at, entry);
        }
        None => {
            if let Some(last) = lines.last_mut() {
                if !last.ends_with('\n') {
                    last.push('\n');
                }
                if !bare(last).trim().is_empty() {
                    lines.push("\n".into());
                }
            }
            lines.push(format!("[{section}]\n"));
            lines.push(entry);
        }
    }
    lines.concat()
}

/// Ensure `key = value` in `[section]` of an INI file.
pub fn ini(
    ctx: &Ctx,
    path: &str,
    section: &str,
    key: &str,
    value: &str,
    create: bool,
) -> OpResult<StepReport> {
    const OP: &str = "fs::ini";
    if key.trim().is_empty() || key.contains(['=', '\n']) || key.trim() != key {
        return Err(invalid(format!("fs::ini: {key:?} is not a key")));
    }
    if value.contains('\n') || section.contains(['\n', ']']) {
        return Err(invalid(
            "fs::ini: a section or value cannot hold a line break (or a section a `]`)",
        ));
    }
    let old = read_text(ctx, OP, path, create)?;
    let new = ini_text(old.as_deref().unwrap_or_default(), section, key, value);
    let mut r = ensure(ctx, OP, path, old.as_deref(), &new)?;
    r.subject = format!("{path} [{section}] {key}");
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> BlockSpec {
        BlockSpec {
            text: text.into(),
            present: true,
            marker: DEFAULT_MARKER.into(),
            begin: "BEGIN".into(),
            end: "END".into(),
            place: Place::End,
            create: true,
        }
    }

    #[test]
    fn block_inserts_replaces_and_removes() {
        let once = block_text("a\nb", &spec("x")).unwrap();
        assert_eq!(
            once,
            "a\nb\n# BEGIN TEND MANAGED BLOCK\nx\n# END TEND MANAGED BLOCK\n"
        );
        assert_eq!(block_text(&once, &spec("x")).unwrap(), once);
        let twice = block_text(&once, &spec("y\nz\n")).unwrap();
        assert_eq!(
            twice,
            "a\nb\n# BEGIN TEND MANAGED BLOCK\ny\nz\n# END TEND MANAGED BLOCK\n"
        );
        assert_eq!(block_text(&twice, &spec("")).unwrap(), "a\nb\n");
        let mut before = spec("x");
        before.place = Place::Before(Regex::new("^b").unwrap());
        assert_eq!(
            block_text("a\nb\n", &before).unwrap(),
            "a\n# BEGIN TEND MANAGED BLOCK\nx\n# END TEND MANAGED BLOCK\nb\n"
        );
        assert!(block_text("# BEGIN TEND MANAGED BLOCK\nx\n", &spec("y")).is_err());
    }

    #[test]
    fn ini_keeps_everything_else() {
        let text = "; top\n[a]\nk=1 \n# c\n\n[b]\nx = 2\n";
        assert_eq!(ini_text(text, "a", "k", "1"), text);
        assert_eq!(
            ini_text(text, "a", "k", "3"),
            "; top\n[a]\nk=3\n# c\n\n[b]\nx = 2\n"
        );
        assert_eq!(
            ini_text(text, "a", "n", "4"),
            "; top\n[a]\nk=1 \n# c\nn = 4\n\n[b]\nx = 2\n"
        );
        assert_eq!(
            ini_text(text, "c", "n", "4"),
            format!("{text}\n[c]\nn = 4\n")
        );
        assert_eq!(ini_text("", "s", "k", "v"), "[s]\nk = v\n");
    }
}
