//! The application layer: what the CLI, the scheduler and library callers share, and
//! the explicit inputs they give the core instead of ambient process state: the
//! [`config::Config`] (the one reader of tend.toml) and the [`actor::Actor`] (who asks,
//! and through what). Policy such as vetting is decided from these, never by a caller.

pub mod actor;
mod audit_sink;
pub mod config;
mod daemon_settings;
pub mod doc;
pub mod exec;
mod hosts;
pub mod import_script;
pub mod library;
mod params;
mod prune;
pub mod recipe_test;
mod retention;
mod rollback;
mod run;
mod stores;
mod unlock;
mod vetting;

pub use actor::{Actor, Auth, Trigger};
use audit_sink::*;
pub use config::Config;
pub use daemon_settings::Settings as DaemonSettings;
pub use hosts::{load_inventory, select_hosts, HostQuery};
pub use library::{
    builtin_recipes, copy_builtin, load_recipe, trust_status, write_new_file, BuiltinRecipe,
};
pub use params::*;
pub use prune::*;
pub use retention::Retention;
pub use rollback::*;
pub use run::*;
pub use stores::{stores_for, stores_for_daemon};
pub use unlock::*;
pub use vetting::*;
