//! Vetting: whether this actor may run this recipe now, decided inside the run from
//! the recipe's content hash, the trust file and the `[trust]` policy, so that no
//! caller (the CLI, the scheduler, a library user) can skip it.

use super::*;
use crate::app::{Actor, Config, Trigger};
use crate::error::{Error, Result};
use crate::recipe::Recipe;
use crate::store::Stores;
use crate::trust::RequireVetted;

/// The recipe behind `tend exec`: the command is a parameter, never spliced into code.
pub(crate) const EXEC_RECIPE: &str = "//! Ad-hoc command (tend exec).
let p = params(#{ command: \"\", timeout: 0 });
let opts = #{ allow_fail: true };
if p.timeout > 0 { opts.timeout = p.timeout; }
let r = sh(p.command, opts);
if r.code != 0 { throw `exited with status ${r.code}`; }
";

/// The built-in recipe of `tend exec`, which runs `-p command=…` through `sh`.
pub fn exec_recipe() -> Result<Recipe> {
    Recipe::from_text("exec", EXEC_RECIPE)
}

/// A run's vetting, as decided by [`vetting`].
#[derive(Debug, Clone)]
pub struct Vetting {
    /// Vetted as it is now (what the audit log records).
    pub vetted: bool,
    /// Why it runs although it is not vetted, for a note to the person who ran it.
    pub unvetted_note: Option<String>,
}

/// Whether `actor` may run `recipe` as `req` asks, under the `[trust]` policy of
/// `config`; Err is the refusal (exit 77). Decided here, inside the run, from the
/// recipe's content hash and the trust file, so no caller can skip it:
/// - a scheduled run needs the recipe vetted as it is now (an edit since un-vets it),
///   unless the policy is `never`; it takes no `--unvetted` and no ad-hoc command;
/// - a person (`cli`, `api`) follows the policy: a dry-run always goes, a real run of
///   an unvetted recipe as `require_vetted` and `req.unvetted` say. `tend exec` is an
///   explicit ad-hoc command: it runs unvetted, as it always has.
pub fn vetting(
    stores: &Stores,
    config: &Config,
    actor: &Actor,
    recipe: &Recipe,
    req: &RunRequest,
) -> Result<Vetting> {
    let trust = config.trust(&stores.state)?;
    let status = super::library::trust_status(&trust, recipe)?;
    let shown = recipe.path.display();
    let adhoc = recipe.hash == exec_recipe()?.hash;
    let vetted = match actor.trigger {
        Trigger::Schedule if adhoc => {
            return Err(Error::Unvetted(format!(
                "{shown} is an ad-hoc command: a schedule runs only vetted recipes"
            )))
        }
        Trigger::Schedule if trust.allows_scheduled(&status) => status.is_vetted(),
        Trigger::Schedule => {
            return Err(Error::Unvetted(format!(
                "{shown} is not vetted ({}); a scheduled run needs it vetted as it is now: \
                 review it and `tend vet {shown} --by NAME`",
                status.describe()
            )))
        }
        Trigger::Cli | Trigger::Api if adhoc => false,
        Trigger::Cli | Trigger::Api => {
            trust.gate_run(&recipe.path, &status, req.dry_run, req.unvetted)?
        }
    };
    let unvetted_note =
        (!vetted && !adhoc && !req.dry_run && trust.require_vetted == RequireVetted::Scheduled)
            .then(|| {
                format!(
                "{shown} is not vetted ({}): it ran anyway, recorded as unvetted in the audit log",
                status.describe()
            )
            });
    Ok(Vetting {
        vetted,
        unvetted_note,
    })
}
