//! Script selection (RFC 3875 §3.3): which program answers a request.
//!
//! - An `[[app]]` answers when its route is a path-segment prefix of
//!   `SCRIPT_NAME`; the longest route wins. If the web server sent no
//!   `PATH_INFO`, the rest of `SCRIPT_NAME` after the route becomes
//!   `PATH_INFO` and `SCRIPT_NAME` becomes the route (§4.1.5, §4.1.13).
//! - Otherwise, with `[cgi_bin]`, `SCRIPT_FILENAME` (or `DOCUMENT_ROOT` +
//!   `SCRIPT_NAME`) must name a file under the root, as with fcgiwrap:
//!   `foo.wasm` runs as is; `foo` runs `foo.wasm` when that exists; a name
//!   with neither is looked up one directory level higher at a time, the
//!   remainder becoming `PATH_INFO` (a `SCRIPT_FILENAME` that still carries
//!   path info). Apache's `proxy:fcgi://host:port` prefix is dropped.
//!   Any other regular file is a script if its `#!` line (see [`shebang`](super::shebang)) or,
//!   without one, its extension names an `[[interpreter]]`: it runs in that
//!   interpreter's snapshot (see `preinit::interpreter`), with argv the
//!   `#!` program and words and the script's path, as `execve` gives them.
//!   A path with `..`, outside the root, leading out of it through a symlink,
//!   or naming something that is neither a regular `.wasm` file nor a script
//!   of an interpreter is refused with 403; a missing one gets 404.
//! - Anything else gets 404.

use std::sync::Arc;

use crate::config;
use crate::sandbox::Engine;

pub use super::app::{App, LoadError};
use super::cgi_bin::CgiBin;
pub use super::cgi_bin::Refusal;
use super::env::MetaVars;

/// Where a request goes.
pub enum Route {
    App(Arc<App>),
    CgiBin,
    NotFound,
}

pub struct Router {
    /// Longest route first.
    apps: Vec<(String, Arc<App>)>,
    cgi_bin: Option<CgiBin>,
}

impl Router {
    /// Compiles every app, and every `.wasm` directly under the cgi-bin root.
    pub fn load(engine: &Engine, config: &config::Config) -> Result<Router, LoadError> {
        let mut apps = Vec::with_capacity(config.apps.len());
        for app in &config.apps {
            let loaded = App::load(engine, &app.name, &app.module, &app.guest).map_err(|source| LoadError::App {
                name: app.name.clone(),
                source,
            })?;
            apps.push((app.route.clone(), Arc::new(loaded)));
        }
        apps.sort_by_key(|(route, _)| std::cmp::Reverse(route.len()));
        let cgi_bin = config
            .cgi_bin
            .as_ref()
            .map(|c| CgiBin::load(engine, c, &config.interpreters))
            .transpose()?;
        Ok(Router { apps, cgi_bin })
    }

    /// The `[[interpreter]]`s booted and snapshotted for the cgi-bin.
    pub fn interpreter_count(&self) -> usize {
        self.cgi_bin.as_ref().map_or(0, CgiBin::interpreter_count)
    }

    pub fn app_count(&self) -> usize {
        self.apps.len() + self.cgi_bin.as_ref().map_or(0, CgiBin::cached)
    }

    /// Picks the app for `vars`, splitting SCRIPT_NAME/PATH_INFO at its route.
    pub fn route(&self, vars: &mut MetaVars) -> Route {
        let script = vars.get("SCRIPT_NAME").unwrap_or(b"");
        for (route, app) in &self.apps {
            let rest = match script.strip_prefix(route.as_bytes()) {
                Some(_) if route == "/" => &b""[..],
                Some(rest) if rest.is_empty() || rest.starts_with(b"/") => rest,
                _ => continue,
            };
            if vars.get("PATH_INFO").is_none() && !rest.is_empty() {
                let rest = bytes::Bytes::copy_from_slice(rest);
                vars.set("PATH_INFO", rest);
                vars.set("SCRIPT_NAME", route.clone());
            }
            return Route::App(app.clone());
        }
        if self.cgi_bin.is_some() {
            Route::CgiBin
        } else {
            Route::NotFound
        }
    }

    /// Resolves a `Route::CgiBin` request, loading its module if needed.
    pub fn resolve_cgi_bin(&self, engine: &Engine, vars: &mut MetaVars) -> Result<Arc<App>, Refusal> {
        self.cgi_bin.as_ref().ok_or(Refusal::NotFound)?.resolve(engine, vars)
    }
}
