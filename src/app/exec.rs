//! `tend exec`: how the words typed after `--` become the one command line each host
//! runs, and which run options an ad-hoc command cannot honour.

use crate::error::{Error, Result};
use crate::transport::shell_quote;

/// One argument is a shell command line, run as typed (`tend exec -- 'a | b'`);
/// several are words, each quoted, so `tend exec -- sh -c 'echo hi; exit 3'` runs
/// `sh` with the two arguments `-c` and `echo hi; exit 3`, as `ssh host -- …` users
/// expect from `sudo`, `env` or `xargs`, not as `ssh` itself joins them.
pub fn command_line(words: &[String]) -> String {
    match words {
        [one] => one.clone(),
        many => many
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `--atomic` rolls back the hosts that succeeded when one fails; an ad-hoc command
/// has no undo, so there would be nothing to roll them back with. Refused rather
/// than accepted and ignored.
pub fn refuse_atomic(atomic: bool) -> Result<()> {
    if atomic {
        return Err(Error::Usage(
            "tend exec --atomic: an ad-hoc command has no undo, so the hosts where it succeeded \
             could not be rolled back when another fails; put the command in a recipe with \
             sh(cmd, #{undo: \"…\"}) and use `tend run --atomic`"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_one_line_is_not() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command_line(&w(&["echo hi; exit 3"])), "echo hi; exit 3");
        assert_eq!(
            command_line(&w(&["sh", "-c", "echo hi; exit 3"])),
            "sh -c 'echo hi; exit 3'"
        );
        assert_eq!(
            command_line(&w(&["printf", "%s\n", "it's"])),
            r"printf '%s
' 'it'\''s'"
        );
    }
}
