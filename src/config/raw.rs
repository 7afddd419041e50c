//! The configuration as read from TOML and the environment (see
//! `conf/wcgid.toml`): every key, its default, unknown keys refused.
//! Values stay text where `validate` reads a unit from them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::DEFAULT_LISTEN;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default, rename = "app")]
    pub(super) apps: Vec<RawApp>,
    pub(super) cgi_bin: Option<RawCgiBin>,
    #[serde(default, rename = "interpreter")]
    pub(super) interpreters: Vec<RawInterpreter>,
    pub(super) admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: String,
    #[serde(default = "default_socket_mode")]
    pub(super) socket_mode: String,
    pub(super) socket_group: Option<String>,
    #[serde(default)]
    pub(super) force_socket_mode: bool,
}

fn default_socket_mode() -> String {
    "0660".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) socket_mode: String,
    pub(super) socket_group: Option<String>,
    pub(super) force_socket_mode: bool,
    pub(super) workers: usize,
    pub(super) queue_timeout: String,
    pub(super) access_log: bool,
    pub(super) max_connections: usize,
    pub(super) cache_dir: Option<PathBuf>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: DEFAULT_LISTEN.into(),
            socket_mode: default_socket_mode(),
            socket_group: None,
            force_socket_mode: false,
            workers: 0,
            queue_timeout: "5s".into(),
            access_log: false,
            max_connections: 1024,
            cache_dir: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub(super) name: String,
    pub(super) route: String,
    pub(super) module: PathBuf,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) mounts: Vec<RawMount>,
    #[serde(default)]
    pub(super) pass_http_proxy: bool,
    pub(super) limits: Option<RawGuestLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCgiBin {
    pub(super) root: PathBuf,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) mounts: Vec<RawMount>,
    #[serde(default)]
    pub(super) pass_http_proxy: bool,
    pub(super) limits: Option<RawGuestLimits>,
}

/// `[[interpreter]]`: a WASI build of a scripting language that runs the
/// `[cgi_bin]` scripts its `#!` names or extensions select.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterpreter {
    pub(super) name: String,
    pub(super) module: PathBuf,
    pub(super) driver: String,
    #[serde(default)]
    pub(super) names: Vec<String>,
    #[serde(default)]
    pub(super) extensions: Vec<String>,
    #[serde(default)]
    pub(super) lib: Vec<PathBuf>,
    #[serde(default)]
    pub(super) preload: Vec<String>,
}

/// `[limits]`: the defaults of every guest's limits, and the bounds on what
/// the FastCGI decoder accepts before any app is known.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) memory: String,
    pub(super) timeout: String,
    pub(super) max_body: String,
    pub(super) max_output: String,
    pub(super) max_stderr: String,
    pub(super) fuel: u64,
    pub(super) scratch: String,
    pub(super) max_params: String,
    pub(super) max_params_count: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            memory: "128MiB".into(),
            timeout: "30s".into(),
            max_body: "16MiB".into(),
            max_output: "64MiB".into(),
            max_stderr: "64KiB".into(),
            fuel: 0,
            scratch: "16MiB".into(),
            max_params: "1MiB".into(),
            max_params_count: 10_000,
        }
    }
}

/// `[app.limits]` and `[cgi_bin.limits]`: overrides of the guest limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuestLimits {
    pub(super) memory: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) max_body: Option<String>,
    pub(super) max_output: Option<String>,
    pub(super) max_stderr: Option<String>,
    pub(super) fuel: Option<u64>,
    pub(super) scratch: Option<String>,
}

/// The guest settings shared by `[[app]]` and `[cgi_bin]` (kept as plain
/// fields there: serde cannot deny unknown keys through `flatten`).
pub(super) struct RawGuest {
    pub(super) env: BTreeMap<String, String>,
    pub(super) mounts: Vec<RawMount>,
    pub(super) pass_http_proxy: bool,
    pub(super) limits: Option<RawGuestLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMount {
    pub(super) host: PathBuf,
    pub(super) guest: String,
}
