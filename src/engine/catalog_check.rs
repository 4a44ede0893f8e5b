//! The operation catalog ([`crate::ops::catalog`]) lists every step the engine offers:
//! checked here against the engine itself, so an operation added without saying
//! whether rollback undoes it fails the build's tests.

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::engine::{for_host, HostContext, Limits, Mode};
    use crate::ops::{catalog, Ctx};
    use crate::transport::{local::Local, overlay::Overlay, Target};

    /// Namespaced functions that read and never change: not steps.
    const FACTS: &[&str] = &[
        "fs::exists",
        "fs::stat",
        "fs::read",
        "fs::glob",
        "fs::size",
        "fs::list",
        "fs::free",
        "log::info",
        "log::warn",
        "log::error",
        "time::now",
        "time::format",
        "time::parse",
        "logrotate::parse_config",
        "pkg::list",
        "pkg::version",
        "service::status",
        "user::info",
        "group::info",
    ];

    #[test]
    fn every_step_the_engine_offers_is_in_the_catalog() {
        let target: Arc<dyn Target> = Arc::new(Overlay::new(Arc::new(Local::new())));
        let host = Arc::new(HostContext::new(
            Ctx::plan(target),
            std::env::temp_dir(),
            Mode::Declare,
            Vec::new(),
            Default::default(),
            Arc::new(|_: &crate::event::Event| {}),
        ));
        let engine = for_host(host, &Limits::default());
        let mut missing: Vec<String> = engine
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|s| s.split('(').next().map(|n| n.trim().to_string()))
            .filter(|n| n.contains("::") && !FACTS.contains(&n.as_str()))
            .filter(|n| catalog::lookup(n).is_none())
            .collect();
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "steps without an entry in src/ops/catalog.rs: {missing:?}"
        );
        for plain in ["sh", "assert"] {
            assert!(catalog::lookup(plain).is_some(), "{plain}");
        }
    }
}
