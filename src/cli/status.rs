//! `tend status`: the status page and `/metrics` served on their own, without the
//! scheduler daemon (which serves the same with `--metrics ADDR`). Handy to look at a
//! machine's schedules and runs from a browser, and what the tests drive.

use std::net::SocketAddr;

use clap::Args;

use crate::app::Config;
use crate::error::{exit, Result};
use crate::out::outln;
use crate::state::StateDir;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Where to listen; port 0 picks a free one (the address is printed)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
    /// Allow an address other than loopback: the page has no authentication
    #[arg(long)]
    allow_remote: bool,
    /// Print the address as one JSON object (`event: listening`)
    #[arg(long)]
    pub json: bool,
}

/// Serve until killed. Prints `http://ADDR/` once listening.
pub fn run(args: &StatusArgs, config: &Config, state: StateDir) -> Result<i32> {
    let server = crate::status::serve(
        args.listen,
        state,
        config.schedules.clone(),
        args.allow_remote,
    )?;
    server.set_daemon_up(false);
    let url = format!("http://{}/", server.addr());
    if args.json {
        let v = serde_json::json!({"event": "listening", "address": server.addr().to_string(), "url": url});
        outln!("{v}");
    } else {
        outln!("{url}");
    }
    server.wait();
    Ok(exit::OK)
}
