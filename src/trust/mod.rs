//! Vetting: who approved which exact content of a recipe, and what may run unapproved.
//!
//! `tend vet RECIPE --by NAME` records `{recipe, hash, by, at, note[, signature]}` in
//! the **trust file**, `vetted.toml` beside the config (`[trust] file = …` to move it;
//! without a config, `STATE/vetted.toml`). The hash is [`Recipe::hash`]: the recipe's
//! text and every module it imports, transitively, so editing one byte of the recipe or
//! of a stdlib or local module it uses makes it count as unvetted until vetted again.
//!
//! **Keys.** An entry names its recipe by path, canonicalized (symlinks resolved) and
//! made relative to the folder of the trust file when it lies under it, else absolute.
//! So a repository holding `tend.toml`, `vetted.toml` and `recipes/` stays vetted when
//! cloned elsewhere, and `tend vet recipes/x.rhai` and `tend run ./recipes/../recipes/x.rhai`
//! name the same entry. One entry per recipe: vetting again replaces it.
//!
//! **Signatures.** An entry may carry an SSH signature ([`sshsig`], `ssh-keygen -Y sign`
//! format, namespace `tend`) over its canonical [`message`]:
//!
//! ```text
//! tend-vet v1
//! recipe: recipes/backup.rhai
//! hash: sha256:…
//! by: alice
//! at: 2026-05-01T12:00:00Z
//! note: quarterly review          (only when there is a note)
//! ```
//!
//! Each line ends with `\n`; values are single lines. Signatures are checked against an
//! OpenSSH [`allowed_signers`] file as git checks SSH-signed commits: the signing key
//! must be listed, for namespace `tend`, valid at the entry's `at`. A signature that
//! does not verify makes the entry count as unvetted (a tampered or revoked approval is
//! no approval); with `require_signature = true`, so does an unsigned entry.
//!
//! **Policy** (`[trust] require_vetted`), for a non-dry `tend run` of an unvetted recipe
//! (a dry-run is always allowed):
//! - `"scheduled"` (default): only the scheduler requires vetting; an ad-hoc run goes
//!   ahead with a one-line note and is recorded `"vetted": false` in the audit log;
//! - `"flag"`: an ad-hoc run needs `--unvetted` (and is recorded as unvetted);
//! - `"always"`: refused (exit 77), `--unvetted` or not;
//! - `"never"`: vetting is not checked (runs are still recorded vetted or not).
//!
//! The vetted texts are kept in `STATE/vetted/<hash>/` ([`store`]) so that re-vetting an
//! edited recipe shows the diff against what was approved before.

pub mod allowed_signers;
pub mod sshsig;
pub mod store;

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{Error, Result};
use crate::recipe::Recipe;
use crate::state::{write_atomic, StateDir};
use allowed_signers::AllowedSigners;
pub use sshsig::Signer;
use store::Texts;

/// When vetting is required (`[trust] require_vetted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequireVetted {
    Never,
    #[default]
    Scheduled,
    Flag,
    Always,
}

impl RequireVetted {
    pub fn as_str(self) -> &'static str {
        match self {
            RequireVetted::Never => "never",
            RequireVetted::Scheduled => "scheduled",
            RequireVetted::Flag => "flag",
            RequireVetted::Always => "always",
        }
    }
}

/// The `[trust]` table of tend.toml, as written (read by `app::Config`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub file: Option<String>,
    pub require_vetted: Option<RequireVetted>,
    pub require_signature: Option<bool>,
    pub allowed_signers: Option<String>,
    /// `tend vet` refuses a recipe whose tests (`tend test`) do not pass.
    pub require_tests: Option<bool>,
}

impl Settings {
    /// The keys of `[trust]`, for "did you mean" suggestions.
    pub const KEYS: &[&str] = &[
        "file",
        "require_vetted",
        "require_signature",
        "allowed_signers",
        "require_tests",
    ];
}

/// One approval in the trust file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub recipe: String,
    pub hash: String,
    pub by: String,
    /// RFC 3339, UTC, whole seconds.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Armored SSHSIG over [`message`] of this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// What `tend test` said when it was vetted under `require_tests` (`5 passed, 0
    /// failed`); not part of the signed message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
}

impl Entry {
    fn who(&self) -> String {
        format!("{} at {}", self.by, self.at)
    }
}

/// The trust file's contents.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TrustFile {
    #[serde(default)]
    pub vetted: Vec<Entry>,
}

impl TrustFile {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.vetted.iter().find(|e| e.recipe == key)
    }
}

const HEADER: &str = "\
# Recipes approved with `tend vet`: each entry is the content hash (the recipe and every
# module it imports) that was reviewed, by whom and when. Edit with `tend vet`,
# `tend vet --revoke`; a hand edit that breaks a signature makes that entry unvetted.
";

/// A recipe's vetting status.
#[derive(Debug, Clone)]
pub enum Status {
    /// Approved as it is now. `signer`: who signed, if the signature was checked;
    /// `unchecked`: why a signature was not checked.
    Vetted {
        entry: Entry,
        signer: Option<Signer>,
        unchecked: Option<String>,
    },
    /// Approved, but the recipe or a module it imports changed since.
    Edited { entry: Entry },
    /// Never approved, or its approval does not hold (bad or missing signature).
    Unvetted { why: String, entry: Option<Entry> },
}

impl Status {
    pub fn is_vetted(&self) -> bool {
        matches!(self, Status::Vetted { .. })
    }

    pub fn entry(&self) -> Option<&Entry> {
        match self {
            Status::Vetted { entry, .. } | Status::Edited { entry } => Some(entry),
            Status::Unvetted { entry, .. } => entry.as_ref(),
        }
    }

    /// `vetted`, `edited` or `unvetted`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Vetted { .. } => "vetted",
            Status::Edited { .. } => "edited",
            Status::Unvetted { .. } => "unvetted",
        }
    }

    /// One line for people: `vetted by alice at … ("note"), signed by …` or why not.
    pub fn describe(&self) -> String {
        match self {
            Status::Vetted {
                entry,
                signer,
                unchecked,
            } => {
                let mut s = format!("vetted by {}", entry.who());
                if let Some(n) = &entry.note {
                    s.push_str(&format!(" ({n:?})"));
                }
                match (signer, unchecked) {
                    (Some(g), _) => s.push_str(&format!(", signed by {} ({})", g.principal, g.key)),
                    (None, Some(why)) => s.push_str(&format!(", signature not checked: {why}")),
                    (None, None) => s.push_str(", unsigned"),
                }
                s
            }
            Status::Edited { entry } => format!(
                "edited since vetted by {}: the recipe or a module it imports changed",
                entry.who()
            ),
            Status::Unvetted { why, .. } => why.clone(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "status": self.as_str(),
            "vetted": self.is_vetted(),
            "description": self.describe(),
        });
        if let Some(e) = self.entry() {
            v["by"] = e.by.clone().into();
            v["at"] = e.at.clone().into();
            v["vetted_hash"] = e.hash.clone().into();
            v["note"] = e.note.clone().into();
            v["signed"] = e.signature.is_some().into();
        }
        if let Status::Vetted {
            signer: Some(g), ..
        } = self
        {
            v["signer"] = serde_json::to_value(g).unwrap_or_default();
        }
        v
    }
}

/// How an approval is signed.
pub enum Sign {
    None,
    /// Sign with this private key file.
    Key(PathBuf),
    /// A signature made by `ssh-keygen -Y sign -n tend` over the message file
    /// (`None`: the signature's path without `.sig`, as ssh-keygen names it).
    File {
        signature: PathBuf,
        message: Option<PathBuf>,
    },
}

pub struct VetRequest<'a> {
    pub by: Option<&'a str>,
    pub note: Option<&'a str>,
    pub sign: Sign,
}

/// What `tend vet` did.
pub struct VetReport {
    pub entry: Entry,
    /// The entry this one replaced, if any.
    pub previous: Option<Entry>,
    /// Unified diff from the previously vetted texts (`None`: same hash or first vet).
    pub diff: Option<String>,
    /// The previous hash's texts were not in this state dir, so no diff.
    pub diff_missing: bool,
    pub signer: Option<Signer>,
    /// Why a signature was recorded without being checked.
    pub unchecked: Option<String>,
}

/// Vetting settings and where things are.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The trust file (`vetted.toml`).
    pub file: PathBuf,
    /// Recipe keys are relative to this folder (the trust file's, canonicalized).
    base: PathBuf,
    pub require_vetted: RequireVetted,
    pub require_signature: bool,
    pub allowed_signers: Option<PathBuf>,
    pub require_tests: bool,
    /// Where the settings came from, for messages: the config file or "defaults".
    pub source: String,
    /// `STATE/vetted`: kept texts and the lock.
    texts: PathBuf,
}

/// `~/x` → `$HOME/x`; relative paths against `base`.
fn resolve_path(p: &str, base: &Path) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    base.join(p)
}

/// `path` absolute and with symlinks resolved as far as it exists.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Not there (a deleted recipe being revoked): resolve the parent, normalize the rest.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    match (out.parent(), out.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map(|p| p.join(name))
            .unwrap_or(out.clone()),
        _ => out,
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_at(at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The text a signature covers: see the module documentation.
pub fn message(entry: &Entry) -> String {
    let mut m = format!(
        "tend-vet v1\nrecipe: {}\nhash: {}\nby: {}\nat: {}\n",
        entry.recipe, entry.hash, entry.by, entry.at
    );
    if let Some(n) = &entry.note {
        m.push_str(&format!("note: {n}\n"));
    }
    m
}

/// Read back a [`message`]: the entry it describes (without a signature). The text
/// must be exactly what [`message`] makes of that entry.
pub fn parse_message(text: &str) -> std::result::Result<Entry, String> {
    let mut lines = text.lines();
    if lines.next() != Some("tend-vet v1") {
        return Err(
            "does not start with `tend-vet v1`: not a message from `tend vet --print-message`"
                .into(),
        );
    }
    let mut field = |name: &str| -> std::result::Result<String, String> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
            .ok_or_else(|| format!("expected a `{name}: ` line"))
    };
    let mut entry = Entry {
        recipe: field("recipe")?,
        hash: field("hash")?,
        by: field("by")?,
        at: field("at")?,
        note: None,
        signature: None,
        tests: None,
    };
    if let Ok(n) = field("note") {
        entry.note = Some(n);
    }
    for (what, v) in [("by", &entry.by), ("recipe", &entry.recipe)]
        .into_iter()
        .chain(entry.note.as_ref().map(|n| ("note", n)))
    {
        if v.is_empty() || v.trim() != v {
            return Err(format!(
                "its `{what}:` value is empty or has surrounding spaces"
            ));
        }
    }
    if message(&entry) != text {
        return Err("was changed after `tend vet --print-message` wrote it (or is incomplete); print it again".into());
    }
    Ok(entry)
}

/// Names and notes go into the one-line-per-field message.
fn check_field(what: &str, value: &str) -> Result<()> {
    if value.chars().any(|c| c.is_control()) {
        return Err(Error::Usage(format!(
            "{what} must be one line without control characters"
        )));
    }
    if value.trim() != value {
        return Err(Error::Usage(format!(
            "{what} must not start or end with spaces"
        )));
    }
    Ok(())
}

impl Trust {
    /// Vetting as `settings` (the `[trust]` table of `config`, the file it was read
    /// from: relative paths are resolved against its folder) say. Without a config,
    /// the defaults and `STATE/vetted.toml`.
    pub fn load(settings: &Settings, config: Option<&Path>, state: &StateDir) -> Result<Trust> {
        let texts = state.root().join("vetted");
        let table = settings;
        let (base, source) = match config {
            None => (state.root().to_path_buf(), "defaults".to_string()),
            Some(path) => {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf();
                (dir, path.display().to_string())
            }
        };
        let file = match &table.file {
            Some(f) => resolve_path(f, &base),
            None => base.join("vetted.toml"),
        };
        let allowed_signers = table
            .allowed_signers
            .as_deref()
            .map(|p| resolve_path(p, &base));
        let require_signature = table.require_signature.unwrap_or(false);
        if require_signature && allowed_signers.is_none() {
            return Err(Error::Usage(format!(
                "{source}: [trust] require_signature = true needs allowed_signers = \"FILE\" \
                 (an OpenSSH allowed_signers file) to check signatures against"
            )));
        }
        let trust_dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(Trust {
            base: canonical(trust_dir),
            file,
            require_vetted: table.require_vetted.unwrap_or_default(),
            require_signature,
            allowed_signers,
            require_tests: table.require_tests.unwrap_or(false),
            source,
            texts,
        })
    }

    /// The trust file's key for a recipe path: see the module documentation.
    pub fn key(&self, recipe: &Path) -> String {
        let abs = canonical(recipe);
        match abs.strip_prefix(&self.base) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => abs.display().to_string(),
        }
    }

    /// The trust file (empty if it does not exist yet).
    pub fn read(&self) -> Result<TrustFile> {
        let shown = self.file.display();
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustFile::default()),
            Err(e) => return Err(Error::io(format!("cannot read trust file {shown}"), e)),
        };
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            Error::Usage(format!(
                "trust file {shown}{line}: {}; fix it or restore it from version control",
                e.message().trim_end()
            ))
        })
    }

    /// The trust file's folder must exist: creating a path that a typo in
    /// `[trust] file` named (as root, anywhere) is worse than refusing.
    fn check_folder(&self) -> Result<()> {
        let dir = self
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if dir.is_dir() {
            return Ok(());
        }
        Err(Error::Usage(format!(
            "trust file {}: its folder {} does not exist; create it, or fix `[trust] file` in {}",
            self.file.display(),
            dir.display(),
            self.source
        )))
    }

    fn write(&self, file: &TrustFile) -> Result<()> {
        let body = toml::to_string(file).map_err(|e| Error::Other(e.to_string()))?;
        self.check_folder()?;
        write_atomic(&self.file, format!("{HEADER}\n{body}").as_bytes()).map_err(|e| {
            Error::io(
                format!("cannot write trust file {}", self.file.display()),
                e,
            )
        })
    }

    /// Held while the trust file is read, changed and written back.
    fn lock(&self) -> Result<File> {
        std::fs::create_dir_all(&self.texts)
            .map_err(|e| Error::io(format!("cannot create {}", self.texts.display()), e))?;
        let path = self.texts.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        f.lock()
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Ok(f)
    }

    fn signers(&self) -> Result<Option<AllowedSigners>> {
        match &self.allowed_signers {
            None => Ok(None),
            Some(p) => AllowedSigners::load(p).map(Some).map_err(Error::Usage),
        }
    }

    /// The status of `recipe` as it is now.
    pub fn status(&self, recipe: &Recipe) -> Result<Status> {
        let file = self.read()?;
        let signers = self.signers()?;
        Ok(self.status_in(
            &file,
            signers.as_ref(),
            &self.key(&recipe.path),
            &recipe.hash,
        ))
    }

    fn status_in(
        &self,
        file: &TrustFile,
        signers: Option<&AllowedSigners>,
        key: &str,
        hash: &str,
    ) -> Status {
        let Some(entry) = file.get(key).cloned() else {
            return Status::Unvetted {
                why: format!(
                    "never vetted: no entry for {key} in {}",
                    self.file.display()
                ),
                entry: None,
            };
        };
        if entry.hash != hash {
            return Status::Edited { entry };
        }
        match (&entry.signature, signers) {
            (Some(sig), Some(signers)) => {
                let at = parse_at(&entry.at).unwrap_or_else(Utc::now);
                match sshsig::verify(sig, message(&entry).as_bytes(), signers, at) {
                    Ok(g) => Status::Vetted {
                        entry,
                        signer: Some(g),
                        unchecked: None,
                    },
                    Err(why) => Status::Unvetted {
                        why: format!("vetted by {}, but its signature is refused: {why}", entry.who()),
                        entry: Some(entry),
                    },
                }
            }
            (Some(_), None) => Status::Vetted {
                entry,
                signer: None,
                unchecked: Some("no [trust] allowed_signers configured".into()),
            },
            (None, _) if self.require_signature => Status::Unvetted {
                why: format!(
                    "vetted by {} without a signature, and {} requires one (require_signature = true)",
                    entry.who(),
                    self.source
                ),
                entry: Some(entry),
            },
            (None, _) => Status::Vetted {
                entry,
                signer: None,
                unchecked: None,
            },
        }
    }

    /// Every entry of the trust file with the status of its recipe now (`Err`: the
    /// recipe cannot be loaded, e.g. deleted).
    pub fn list(&self) -> Result<Vec<(Entry, std::result::Result<Status, String>)>> {
        let file = self.read()?;
        let signers = self.signers()?;
        Ok(file
            .vetted
            .iter()
            .map(|e| {
                let path = if Path::new(&e.recipe).is_absolute() {
                    PathBuf::from(&e.recipe)
                } else {
                    self.base.join(&e.recipe)
                };
                let status = Recipe::load(&path)
                    .map(|r| self.status_in(&file, signers.as_ref(), &e.recipe, &r.hash))
                    .map_err(|err| match err {
                        Error::RecipeRead { .. } => "missing: the recipe file is gone".to_string(),
                        other => format!("does not load: {other}"),
                    });
                (e.clone(), status)
            })
            .collect())
    }

    /// The entry `tend vet` would record for `recipe` now (no signature yet).
    pub fn draft(&self, recipe: &Recipe, by: &str, note: Option<&str>) -> Result<Entry> {
        check_field("--by", by)?;
        if by.is_empty() {
            return Err(Error::Usage("--by needs a name".into()));
        }
        if let Some(n) = note {
            check_field("--note", n)?;
        }
        Ok(Entry {
            recipe: self.key(&recipe.path),
            hash: recipe.hash.clone(),
            by: by.to_string(),
            at: now(),
            note: note.filter(|n| !n.is_empty()).map(str::to_string),
            signature: None,
            tests: None,
        })
    }

    /// Record `recipe` as vetted (the caller has checked it compiles and its
    /// parameters are sound).
    pub fn vet(&self, recipe: &Recipe, req: VetRequest) -> Result<VetReport> {
        self.vet_tested(recipe, req, None)
    }

    /// [`Trust::vet`], recording what the recipe's tests said (`require_tests`).
    pub fn vet_tested(
        &self,
        recipe: &Recipe,
        req: VetRequest,
        tests: Option<String>,
    ) -> Result<VetReport> {
        let key = self.key(&recipe.path);
        let mut entry = match &req.sign {
            Sign::File { signature, message } => {
                self.signed_entry(recipe, &key, signature, message.as_deref(), &req)?
            }
            _ => {
                let by = req
                    .by
                    .ok_or_else(|| Error::Usage("say who vets it: --by NAME".into()))?;
                self.draft(recipe, by, req.note)?
            }
        };
        entry.signature = match &req.sign {
            Sign::None => None,
            Sign::Key(k) => Some(
                sshsig::sign(k, message(&entry).as_bytes())
                    .map_err(|m| Error::Usage(format!("cannot sign: {m}")))?,
            ),
            Sign::File { signature, .. } => {
                Some(std::fs::read_to_string(signature).map_err(|e| {
                    Error::Usage(format!(
                        "cannot read signature {}: {}",
                        signature.display(),
                        crate::error::describe_io(&e)
                    ))
                })?)
            }
        };
        let (signer, unchecked) = match (&entry.signature, self.signers()?) {
            (Some(sig), Some(signers)) => {
                let at = parse_at(&entry.at).unwrap_or_else(Utc::now);
                let g =
                    sshsig::verify(sig, message(&entry).as_bytes(), &signers, at).map_err(|m| {
                        Error::Unvetted(format!("signature refused, nothing recorded: {m}"))
                    })?;
                (Some(g), None)
            }
            (Some(_), None) => (
                None,
                Some(format!(
                    "no [trust] allowed_signers in {} to check it against",
                    self.source
                )),
            ),
            (None, _) if self.require_signature => {
                return Err(Error::Unvetted(format!(
                    "{} requires signed vetting (require_signature = true): add --sign-key \
                     ~/.ssh/id_ed25519, or sign the output of --print-message with \
                     `ssh-keygen -Y sign -n tend` and pass --signature FILE; nothing recorded",
                    self.source
                )))
            }
            (None, _) => (None, None),
        };

        entry.tests = tests;
        // Before anything is kept in the state dir for an approval that can't be written.
        self.check_folder()?;
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let previous = file.get(&key).cloned();
        let texts = Texts::of(recipe, &key);
        let (mut diff, mut diff_missing) = (None, false);
        if let Some(prev) = previous.as_ref().filter(|p| p.hash != entry.hash) {
            match store::load(&self.texts, &prev.hash) {
                Some(old) => diff = Some(texts.diff_from(&old)),
                None => diff_missing = true,
            }
        }
        store::save(&self.texts, &entry.hash, &texts)?;
        file.vetted.retain(|e| e.recipe != key);
        file.vetted.push(entry.clone());
        file.vetted.sort_by(|a, b| a.recipe.cmp(&b.recipe));
        self.write(&file)?;
        Ok(VetReport {
            entry,
            previous,
            diff,
            diff_missing,
            signer,
            unchecked,
        })
    }

    /// The entry described by a message file that was signed outside tend: it must be
    /// for this recipe as it is now.
    fn signed_entry(
        &self,
        recipe: &Recipe,
        key: &str,
        signature: &Path,
        message_path: Option<&Path>,
        req: &VetRequest,
    ) -> Result<Entry> {
        let msg_path = match message_path {
            Some(p) => p.to_path_buf(),
            None => {
                let s = signature.display().to_string();
                match s.strip_suffix(".sig") {
                    Some(m) => PathBuf::from(m),
                    None => {
                        return Err(Error::Usage(format!(
                            "which message does {s} sign? pass --message FILE (the output of \
                             `tend vet --print-message`)"
                        )))
                    }
                }
            }
        };
        let shown = msg_path.display();
        let text = std::fs::read_to_string(&msg_path).map_err(|e| {
            Error::Usage(format!(
                "cannot read the signed message {shown}: {} (pass --message FILE)",
                crate::error::describe_io(&e)
            ))
        })?;
        let entry = parse_message(&text).map_err(|m| Error::Usage(format!("{shown}: {m}")))?;
        if entry.recipe != key {
            return Err(Error::Usage(format!(
                "{shown} is for recipe {}, not {key}",
                entry.recipe
            )));
        }
        if entry.hash != recipe.hash {
            return Err(Error::Unvetted(format!(
                "{shown} approves {} but {key} now hashes to {}: it changed since the message \
                 was printed; review it, print the message again and sign that",
                entry.hash, recipe.hash
            )));
        }
        if let Some(by) = req.by.filter(|b| *b != entry.by) {
            return Err(Error::Usage(format!(
                "--by {by} but {shown} says by: {}",
                entry.by
            )));
        }
        if let Some(n) = req.note.filter(|n| Some(*n) != entry.note.as_deref()) {
            return Err(Error::Usage(format!(
                "--note {n:?} differs from the note in {shown}; leave --note out"
            )));
        }
        Ok(entry)
    }

    /// Remove the entry of `recipe` (a path, or a key as `tend vet --list` shows it).
    pub fn revoke(&self, recipe: &Path) -> Result<Entry> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let key = self.key(recipe);
        let literal = recipe.display().to_string();
        let Some(pos) = file
            .vetted
            .iter()
            .position(|e| e.recipe == key)
            .or_else(|| file.vetted.iter().position(|e| e.recipe == literal))
        else {
            return Err(Error::Usage(format!(
                "{key} is not vetted in {}; `tend vet --list` shows what is",
                self.file.display()
            )));
        };
        let entry = file.vetted.remove(pos);
        self.write(&file)?;
        Ok(entry)
    }

    /// Whether a run may go ahead; `Ok(vetted)` for the audit record.
    /// `flag`: `--unvetted` was given.
    pub fn gate_run(
        &self,
        recipe: &Path,
        status: &Status,
        dry_run: bool,
        flag: bool,
    ) -> Result<bool> {
        if status.is_vetted() {
            return Ok(true);
        }
        if dry_run {
            return Ok(false);
        }
        let shown = recipe.display();
        let vet = format!("vet it with `tend vet {shown} --by NAME`");
        match self.require_vetted {
            RequireVetted::Never | RequireVetted::Scheduled => Ok(false),
            RequireVetted::Flag if flag => Ok(false),
            RequireVetted::Flag => Err(Error::Unvetted(format!(
                "{shown} is not vetted ({}); {} has require_vetted = \"flag\": pass --unvetted \
                 to run it anyway, plan it with --dry-run, or {vet}",
                status.describe(),
                self.source
            ))),
            RequireVetted::Always => Err(Error::Unvetted(format!(
                "{shown} is not vetted ({}); {} has require_vetted = \"always\": only vetted \
                 recipes run{} (--dry-run is allowed); {vet}",
                status.describe(),
                self.source,
                if flag { ", --unvetted or not" } else { "" }
            ))),
        }
    }

    /// Whether the scheduler may start `status`'s recipe: vetted, unless vetting is
    /// off (`require_vetted = "never"`).
    pub fn allows_scheduled(&self, status: &Status) -> bool {
        status.is_vetted() || self.require_vetted == RequireVetted::Never
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            recipe: "recipes/x.rhai".into(),
            hash: "sha256:00ff".into(),
            by: "alice".into(),
            at: "2026-05-01T12:00:00Z".into(),
            note: Some("quarterly review".into()),
            signature: None,
            tests: None,
        }
    }

    #[test]
    fn message_round_trips_exactly() {
        let e = entry();
        let m = message(&e);
        assert_eq!(
            m,
            "tend-vet v1\nrecipe: recipes/x.rhai\nhash: sha256:00ff\nby: alice\n\
             at: 2026-05-01T12:00:00Z\nnote: quarterly review\n"
        );
        assert_eq!(parse_message(&m).unwrap(), e);
        let plain = Entry { note: None, ..e };
        assert_eq!(parse_message(&message(&plain)).unwrap(), plain);
        assert!(parse_message(&m.replace("alice", "alice ")).is_err());
        assert!(parse_message(&format!("{m}extra\n")).is_err());
        assert!(parse_message("hello\n").is_err());
    }

    #[test]
    fn a_stdlib_module_edit_changes_the_hash() {
        let src = "import \"logrotate\" as lr;\n";
        let r = Recipe::from_text("t", src).unwrap();
        // logrotate imports logrotate_state: the hash covers that module too.
        let modules = hash_of_modules(&r);
        let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["stdlib/logrotate.rhai", "stdlib/logrotate_state.rhai"]
        );
        assert_eq!(crate::recipe::content_hash(src, &modules), r.hash);
        for i in 0..modules.len() {
            let mut edited = modules.clone();
            let mut bytes = edited[i].1.clone().into_bytes();
            bytes[0] ^= 1;
            edited[i].1 = String::from_utf8_lossy(&bytes).into_owned();
            assert_ne!(crate::recipe::content_hash(src, &edited), r.hash);
        }
    }

    fn hash_of_modules(r: &Recipe) -> Vec<(String, String)> {
        crate::recipe::hash_names(&r.modules, &r.dir)
    }

    #[test]
    fn policy_table_parses_and_rejects_typos() {
        let d: Settings =
            toml::from_str("require_vetted = \"flag\"\nallowed_signers = \"s\"\n").unwrap();
        assert_eq!(d.require_vetted, Some(RequireVetted::Flag));
        assert!(toml::from_str::<Settings>("require_vetted = \"often\"\n").is_err());
        assert!(toml::from_str::<Settings>("require_veted = \"always\"\n").is_err());
    }
}
