//! What ships inside the binary: the stdlib modules (`stdlib/*.rhai`) and the built-in
//! recipes (`recipes/*.rhai`), embedded by build.rs, so an installed `tend` works
//! anywhere. A file added to either folder is picked up by the next build.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The text of the stdlib module `name` (`logrotate`).
pub fn stdlib_source(name: &str) -> Option<&'static str> {
    STDLIB.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The text of the built-in recipe `name` (`log-rotate`).
pub fn recipe_source(name: &str) -> Option<&'static str> {
    RECIPES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of the built-in recipes, sorted.
pub fn recipe_names() -> impl Iterator<Item = &'static str> {
    RECIPES.iter().map(|(n, _)| *n)
}

/// A recipe's one-line summary: the first line of its `//!` header.
pub fn summary(source: &str) -> String {
    super::doc_of(source)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_folders_are_embedded() {
        assert!(super::stdlib_source("logrotate").is_some());
        let text = super::recipe_source("log-rotate").expect("log-rotate is built in");
        assert_eq!(text, include_str!("../../recipes/log-rotate.rhai"));
        assert!(super::summary(text).starts_with("Rotate log files"));
        // Test files of recipes/tests/ are not recipes.
        assert!(super::recipe_names().all(|n| !n.ends_with(".test")));
    }

    /// A built-in recipe has no folder (`tend run NAME` from anywhere): it can use no
    /// file beside it, and each compiles with the stdlib alone.
    #[test]
    fn builtin_recipes_stand_alone() {
        for (name, text) in super::RECIPES {
            for needs_a_file in ["src:", "fs::template("] {
                assert!(!text.contains(needs_a_file), "{name} uses {needs_a_file}");
            }
            let r = crate::recipe::Recipe::builtin(name).unwrap();
            assert!(r.is_ok(), "{name}: {:?}", r.err().map(|e| e.to_string()));
        }
    }
}
