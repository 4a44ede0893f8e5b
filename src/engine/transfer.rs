//! `fs::extract` and `fs::download` for recipes: options checked and converted, then
//! the operations of [`crate::ops::extract`] and [`crate::ops::download`].

use std::sync::Arc;

use rhai::{Dynamic, Map, Module, NativeCallContext};

use super::check::{origin, timeout};
use super::fs::{check_keys, mode_of, opt_str};
use super::{err, HostContext, RResult};
use crate::ops::download::{self, DownloadSpec};
use crate::ops::extract::{self, ExtractSpec};

fn become_of(call: &NativeCallContext, opts: &Map) -> RResult<bool> {
    super::fs::opt_bool(call, opts, "become", false)
}

fn extract_spec(call: &NativeCallContext, opts: &Map) -> RResult<ExtractSpec> {
    const F: &str = "fs::extract";
    check_keys(call, F, opts, &["strip_components", "creates", "become"])?;
    let strip = match opts.get("strip_components") {
        None => 0,
        Some(v) => v
            .as_int()
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| err(call, format!("{F}: strip_components must be a number >= 0")))?,
    };
    Ok(ExtractSpec {
        strip_components: strip,
        creates: opt_str(call, opts, "creates")?,
    })
}

fn download_spec(call: &NativeCallContext, url: &str, opts: &Map) -> RResult<DownloadSpec> {
    const F: &str = "fs::download";
    check_keys(
        call,
        F,
        opts,
        &["sha256", "mode", "from", "timeout", "become"],
    )?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(err(
            call,
            format!("{F}: {url:?} is not an http:// or https:// URL"),
        ));
    }
    let sha256 = match opt_str(call, opts, "sha256")? {
        None => None,
        Some(s) => {
            let hex = s.strip_prefix("sha256:").unwrap_or(&s).to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(
                    call,
                    format!("{F}: sha256 must be 64 hex digits (what sha256sum prints), not {s:?}"),
                ));
            }
            Some(hex)
        }
    };
    let mode = opts
        .get("mode")
        .filter(|v: &&Dynamic| !v.is_unit())
        .map(|v| mode_of(call, v))
        .transpose()?;
    Ok(DownloadSpec {
        url: url.to_string(),
        sha256,
        mode,
        from: origin(call, F, opts)?,
        timeout: timeout(call, F, opts, 600)?,
    })
}

pub fn register(m: &mut Module, host: Arc<HostContext>) {
    let h = host.clone();
    let ex = move |call: NativeCallContext, archive: &str, dest: &str, opts: Map| {
        let spec = extract_spec(&call, &opts)?;
        let become_ = become_of(&call, &opts)?;
        h.check_scope(&call, "fs::extract", dest, Some(dest), false)?;
        h.step_as(&call, become_, |c| {
            extract::extract(c, archive, dest, &spec)
        })
    };
    let e2 = ex.clone();
    m.set_native_fn(
        "extract",
        move |call: NativeCallContext, archive: &str, dest: &str| {
            e2(call, archive, dest, Map::new())
        },
    );
    m.set_native_fn("extract", ex);

    let h = host;
    let dl = move |call: NativeCallContext, url: &str, dest: &str, opts: Map| {
        let spec = download_spec(&call, url, &opts)?;
        let become_ = become_of(&call, &opts)?;
        h.check_scope(&call, "fs::download", dest, None, false)?;
        h.step_as(&call, become_, |c| download::download(c, dest, &spec))
    };
    let d2 = dl.clone();
    m.set_native_fn(
        "download",
        move |call: NativeCallContext, url: &str, dest: &str| d2(call, url, dest, Map::new()),
    );
    m.set_native_fn("download", dl);
}
