//! `fs::extract`: unpack a tar, tar.gz, tar.zst or zip archive that is on the target
//! into a directory, as ordinary file steps, so that each file it creates or changes
//! is a path of the step, journaled and undone like `fs::file`'s.
//!
//! The archive is read through the [`Target`](crate::transport::Target) (over SFTP on
//! an SSH host) and decoded here, not by the host's `tar`/`unzip`: every entry is then
//! checked before anything is written (no `..`, no absolute path, no entry through a
//! symlink, no symlink pointing out of the destination, no device), the dry-run works
//! on an archive that an earlier step of the plan only would have downloaded, and the
//! plan is the run's because both decode the same bytes with the same code. The cost:
//! the archive and the files travel to the controller and back (see README).

use std::collections::BTreeMap;
use std::io::Read;

use super::fs::{file, link};
use super::{Ctx, OpError, OpResult, StepReport};
use crate::journal::undo::Undo;
use crate::transport::{join, Kind, Target};

const OP: &str = "fs::extract";

/// The most an archive may unpack to (and be): everything is held in memory once.
pub const MAX_UNPACKED: u64 = 1 << 30;

/// The most entries an archive may have: each is a step's path, checked and written.
pub const MAX_ENTRIES: usize = 200_000;

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

#[derive(Debug, Clone, Default)]
pub struct ExtractSpec {
    /// Leading path components dropped from every entry (`tar --strip-components`);
    /// entries with no more components than that are skipped.
    pub strip_components: usize,
    /// When this path exists, the step does nothing (the archive is not even read).
    pub creates: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    Dir,
    File(Vec<u8>),
    Link(String),
}

impl What {
    fn name(&self) -> &'static str {
        match self {
            What::Dir => "directory",
            What::File(_) => "file",
            What::Link(_) => "symlink",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    what: What,
    /// Permission bits; set-id and sticky bits are dropped.
    mode: u32,
}

/// An entry's name, cleaned and stripped; `None` when stripping leaves nothing.
/// Anything that could land outside the destination refuses the whole archive.
fn clean(name: &str, strip: usize) -> Result<Option<String>, String> {
    if name.starts_with('/') {
        return Err(format!("entry {name:?} has an absolute path"));
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(format!("entry {name:?} climbs out with `..`")),
            c if c.contains('\0') => return Err(format!("entry {name:?} holds a NUL byte")),
            c => parts.push(c),
        }
    }
    if parts.len() <= strip {
        return Ok(None);
    }
    Ok(Some(parts[strip..].join("/")))
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| format!("{what} {:?} is not UTF-8", String::from_utf8_lossy(bytes)))
}

/// A tar archive begins with a header block whose checksum (the sum of its bytes,
/// the checksum field counted as spaces) is right: ustar, GNU and old v7 ones alike.
fn is_tar(bytes: &[u8]) -> bool {
    let Some(block) = bytes.get(..512) else {
        return false;
    };
    let field = String::from_utf8_lossy(&block[148..156]);
    let Ok(want) = u32::from_str_radix(field.trim_matches([' ', '\0']), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want
}

/// The entries read so far, and how much they unpack to.
#[derive(Default)]
struct Collected {
    entries: BTreeMap<String, Entry>,
    total: u64,
}

impl Collected {
    fn add(&mut self, name: String, entry: Entry) -> Result<(), String> {
        if let What::File(data) = &entry.what {
            self.total += data.len() as u64;
            if self.total > MAX_UNPACKED {
                return Err(format!("it unpacks to more than {MAX_UNPACKED} bytes"));
            }
        }
        if let Some(old) = self.entries.get(&name) {
            if old.what.name() != entry.what.name() {
                return Err(format!(
                    "{name} is in the archive twice, as a {} and as a {}",
                    old.what.name(),
                    entry.what.name()
                ));
            }
        }
        self.entries.insert(name, entry);
        if self.entries.len() > MAX_ENTRIES {
            return Err(format!("it has more than {MAX_ENTRIES} entries"));
        }
        Ok(())
    }
}

/// Every entry of the archive, by cleaned path; a path given twice keeps its last
/// entry (as tar does), but never changes kind.
fn entries(bytes: &[u8], strip: usize) -> Result<BTreeMap<String, Entry>, String> {
    let mut out = Collected::default();
    let read_data = |r: &mut dyn Read, size: u64, name: &str| -> Result<Vec<u8>, String> {
        if size > MAX_UNPACKED {
            return Err(format!("{name} is larger than {MAX_UNPACKED} bytes"));
        }
        let mut data = Vec::new();
        r.take(size + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("{name}: {e}"))?;
        if data.len() as u64 != size {
            return Err(format!("{name}: its size is not the one the archive says"));
        }
        Ok(data)
    };
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| format!("not a readable zip archive: {e}"))?;
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).map_err(|e| format!("zip entry {i}: {e}"))?;
            let raw = f
                .name()
                .map_err(|e| format!("zip entry {i}: {e}"))?
                .to_string();
            let Some(name) = clean(&raw, strip)? else {
                continue;
            };
            let mode = f.unix_mode().unwrap_or(0o644) & 0o777;
            let what = if f.is_dir() {
                What::Dir
            } else if f.is_symlink() {
                let size = f.size();
                if size > 4096 {
                    return Err(format!("symlink {raw:?} has a target of {size} bytes"));
                }
                let target = read_data(&mut f, size, &raw)?;
                What::Link(utf8(&target, "symlink target")?)
            } else {
                let size = f.size();
                What::File(read_data(&mut f, size, &raw)?)
            };
            drop(f);
            out.add(name, Entry { what, mode })?;
        }
        return Ok(out.entries);
    }
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(bytes)
                .map_err(|e| format!("not a readable zstd stream: {e}"))?,
        )
    } else if is_tar(bytes) {
        Box::new(bytes)
    } else {
        return Err("not a tar, tar.gz, tar.zst or zip archive".into());
    };
    let mut tar = tar::Archive::new(reader);
    let list = tar
        .entries()
        .map_err(|e| format!("not a readable tar archive: {e}"))?;
    for e in list {
        let mut e = e.map_err(|e| format!("not a readable tar archive: {e}"))?;
        let raw = utf8(&e.path_bytes(), "entry name")?;
        let kind = e.header().entry_type();
        let mode = e.header().mode().unwrap_or(0o644) & 0o777;
        use tar::EntryType as T;
        let what = match kind {
            T::Regular | T::Continuous => {
                let size = e.size();
                What::File(read_data(&mut e, size, &raw)?)
            }
            T::Directory => What::Dir,
            T::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| format!("symlink {raw:?} has no target"))?;
                What::Link(utf8(&target, "symlink target")?)
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            // A hard link is written as a copy of the file it names, which must be
            // a file the archive has already given: no link is made, so it can
            // alias nothing outside.
            T::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| format!("hard link {raw:?} has no target"))?;
                let target = utf8(&target, "hard link target")?;
                let file = clean(&target, strip)?
                    .and_then(|t| out.entries.get(&t))
                    .filter(|t| matches!(t.what, What::File(_)))
                    .ok_or_else(|| {
                        format!(
                            "hard link {raw:?} names {target:?}, which is not a file earlier \
                             in the archive"
                        )
                    })?;
                file.what.clone()
            }
            other => {
                return Err(format!(
                    "entry {raw:?} is a {other:?} (device, FIFO or sparse file); fs::extract \
                     writes only files, directories and symlinks"
                ))
            }
        };
        let Some(name) = clean(&raw, strip)? else {
            continue;
        };
        out.add(name, Entry { what, mode })?;
    }
    Ok(out.entries)
}

/// What is at `rel` below `dest` on the target now, asked once per path.
struct Disk<'a> {
    t: &'a dyn Target,
    dest: &'a str,
    seen: BTreeMap<String, Option<Kind>>,
}

impl Disk<'_> {
    fn kind(&mut self, rel: &str) -> OpResult<Option<Kind>> {
        if let Some(k) = self.seen.get(rel) {
            return Ok(*k);
        }
        let k = self.t.stat(&join(self.dest, rel))?.map(|m| m.kind);
        self.seen.insert(rel.to_string(), k);
        Ok(k)
    }
}

/// The entries and the directories they need, checked against the archive itself
/// and the destination as it is. Nothing has been written when this fails.
fn check(entries: &mut BTreeMap<String, Entry>, disk: &mut Disk) -> OpResult<()> {
    let refuse = |why: String| invalid(format!("{OP}: refused: {why}"));
    let names: Vec<String> = entries.keys().cloned().collect();
    for name in &names {
        // Every directory on the way must be a real directory: from the archive, or
        // already there (not a symlink), or made now.
        let parts: Vec<&str> = name.split('/').collect();
        for k in 1..parts.len() {
            let up = parts[..k].join("/");
            match entries.get(&up).map(|e| &e.what) {
                Some(What::Dir) => continue,
                Some(What::Link(_)) => {
                    return Err(refuse(format!(
                        "{name} would be written through the symlink {up} of the archive"
                    )))
                }
                Some(What::File(_)) => {
                    return Err(refuse(format!(
                        "{name} is below {up}, which the archive has as a file"
                    )))
                }
                None => {}
            }
            match disk.kind(&up)? {
                None => {
                    entries.insert(
                        up,
                        Entry {
                            what: What::Dir,
                            mode: 0o755,
                        },
                    );
                }
                Some(Kind::Dir) => {}
                Some(Kind::Symlink) => {
                    return Err(refuse(format!(
                        "{name} would be written through {up}, a symlink in the destination"
                    )))
                }
                Some(k) => {
                    return Err(refuse(format!(
                        "{name} is below {up}, which is a {} in the destination",
                        k.as_str()
                    )))
                }
            }
        }
        let entry = &entries[name];
        match (&entry.what, disk.kind(name)?) {
            (_, None) | (What::Dir, Some(Kind::Dir)) | (What::File(_), Some(Kind::File)) => {}
            (What::Link(_), Some(Kind::File | Kind::Symlink)) => {}
            (w, Some(k)) => {
                return Err(refuse(format!(
                    "{name} is a {} in the destination; the archive has a {} there",
                    k.as_str(),
                    w.name()
                )))
            }
        }
        if let What::Link(target) = &entry.what {
            check_link(name, target, entries, disk).map_err(refuse)?;
        }
    }
    Ok(())
}

/// A symlink of the archive must lead to a place inside the destination, however
/// it is followed: relative, never above the destination, and not through another
/// symlink on the way (whose own target would decide where `..` goes).
fn check_link(
    name: &str,
    target: &str,
    entries: &BTreeMap<String, Entry>,
    disk: &mut Disk,
) -> Result<(), String> {
    let out = || format!("the symlink {name} -> {target} points out of the destination");
    if target.is_empty() || target.starts_with('/') {
        return Err(out());
    }
    let mut at: Vec<&str> = name.split('/').collect();
    at.pop();
    let comps: Vec<&str> = target
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for (i, c) in comps.iter().enumerate() {
        if *c == ".." {
            if at.pop().is_none() {
                return Err(out());
            }
            continue;
        }
        at.push(c);
        let here = at.join("/");
        let last = i + 1 == comps.len();
        let is_link = match entries.get(&here) {
            Some(e) => matches!(e.what, What::Link(_)) && !last,
            None => disk.kind(&here).map_err(|e| e.to_string())? == Some(Kind::Symlink),
        };
        if is_link {
            return Err(format!(
                "the symlink {name} -> {target} leads through the symlink {here}; \
                 only links that stay inside the destination on their own are extracted"
            ));
        }
    }
    Ok(())
}

/// Unpack `archive` into `dest` (created when missing). See the module doc.
pub fn extract(ctx: &Ctx, archive: &str, dest: &str, spec: &ExtractSpec) -> OpResult<StepReport> {
    let t = ctx.target.as_ref();
    let subject = format!("{archive} -> {dest}");
    if let Some(c) = &spec.creates {
        if t.stat(c)?.is_some() {
            return Ok(StepReport::unchanged(OP, format!("{subject} ({c} exists)")));
        }
    }
    match t.stat(archive)? {
        None => return Err(invalid(format!("{OP}: {archive} does not exist"))),
        Some(m) if m.kind != Kind::File => {
            return Err(invalid(format!(
                "{OP}: {archive} is a {}, not an archive file",
                m.kind.as_str()
            )))
        }
        Some(m) if m.size > MAX_UNPACKED => {
            return Err(invalid(format!(
                "{OP}: {archive} is larger than {MAX_UNPACKED} bytes; unpack it with sh(\"tar …\")"
            )))
        }
        Some(_) => {}
    }
    let bytes = t.read(archive)?;
    let mut entries = entries(&bytes, spec.strip_components)
        .map_err(|why| invalid(format!("{OP}: {archive}: {why}")))?;
    drop(bytes);
    let dest_kind = t.stat(dest)?.map(|m| m.kind);
    match dest_kind {
        None | Some(Kind::Dir) => {}
        Some(k) => {
            return Err(invalid(format!(
                "{OP}: {dest} is a {}; the destination must be a directory (not a symlink to one)",
                k.as_str()
            )))
        }
    }
    let mut disk = Disk {
        t,
        dest,
        seen: BTreeMap::new(),
    };
    check(&mut entries, &mut disk)?;

    let mut paths = Vec::new();
    let mut said = String::new();
    if dest_kind.is_none() {
        let r = super::fs::dir(ctx, dest, None)?;
        paths.extend(r.paths);
        said.push_str(&format!("created {dest}/\n"));
    }
    // Sorted by path: a directory comes before everything below it.
    for (name, entry) in &entries {
        let path = join(dest, name);
        let before = disk.kind(name)?;
        let changed = match &entry.what {
            What::Dir if before.is_none() => {
                ctx.will(OP, Undo::RemoveDir { path: path.clone() })?;
                // Owner rwx whatever the archive says, or its contents could not be
                // written (nor removed again by a rollback).
                t.mkdir(&path, entry.mode | 0o700)?;
                said.push_str(&format!("created {name}/\n"));
                true
            }
            What::Dir => false,
            What::File(data) => {
                let r = file(ctx, OP, &path, data, Some(entry.mode), false)?;
                if r.changed {
                    let how = if before.is_none() {
                        "created"
                    } else {
                        "changed"
                    };
                    said.push_str(&format!("{how} {name} ({} bytes)\n", data.len()));
                }
                r.changed
            }
            What::Link(target) => {
                let r = link(ctx, &path, target)?;
                if r.changed {
                    said.push_str(&format!("linked {name} -> {target}\n"));
                }
                r.changed
            }
        };
        if changed {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Ok(StepReport::unchanged(OP, subject));
    }
    let mut r = StepReport::changed(OP, subject, paths);
    r.diff = Some(said);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_or_refused() {
        assert_eq!(clean("./a//b/./c", 0).unwrap(), Some("a/b/c".into()));
        assert_eq!(clean("pkg-1.0/bin/x", 1).unwrap(), Some("bin/x".into()));
        assert_eq!(clean("pkg-1.0/", 1).unwrap(), None);
        assert!(clean("/etc/passwd", 0).is_err());
        assert!(clean("a/../../b", 0).is_err());
        assert!(clean("pkg/../x", 1).is_err());
    }

    #[test]
    fn tar_is_known_by_its_header_checksum() {
        for mut h in [
            tar::Header::new_old(),
            tar::Header::new_gnu(),
            tar::Header::new_ustar(),
        ] {
            h.set_path("a").unwrap();
            h.set_size(0);
            h.set_cksum();
            assert!(is_tar(h.as_bytes()));
            let mut bad = h.as_bytes().to_vec();
            bad[0] = b'b';
            assert!(!is_tar(&bad));
        }
        assert!(!is_tar(&[0u8; 100]));
    }
}
