//! The programs requests run: a module or a script's interpreter, loaded
//! with its guest's limits, and what its requests get besides the request.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Guest;
use crate::preinit;
use crate::sandbox::{self, CStrings, Engine, Program, SCRATCH_DIR};

/// A loaded program with what its requests get besides the request.
pub struct App {
    pub name: Arc<str>,
    pub program: Program,
    pub guest: Guest,
    /// What its requests' environment gets after their meta-variables:
    /// see `extra_env`.
    pub env: Vec<(String, Bytes)>,
    /// `argv`: the script's name alone (RFC 3875 §4.4 search-string argv
    /// words are not supported).
    pub args: CStrings,
}

/// The module at `module` loaded with `mounts` and `guest`'s limits: fuel,
/// memory and scratch directory.
pub(super) fn load_program(
    engine: &Engine,
    module: &Path,
    mounts: &[sandbox::Mount],
    guest: &Guest,
) -> Result<Program, sandbox::Error> {
    Ok(match guest.limits.fuel {
        0 => engine.load(module, mounts)?,
        fuel => engine.load_metered(module, mounts)?.with_fuel(fuel),
    }
    .with_memory_limit(module, guest.limits.memory)?
    .with_scratch(guest.limits.scratch))
}

impl App {
    pub(super) fn load(engine: &Engine, name: &str, module: &Path, guest: &Guest) -> Result<App, sandbox::Error> {
        let program = load_program(engine, module, &guest.mounts, guest)?;
        let mut args = CStrings::default();
        args.push(&[module.file_name().unwrap_or(module.as_os_str()).as_bytes()]);
        Ok(App {
            name: name.into(),
            program,
            env: extra_env(guest),
            guest: guest.clone(),
            args,
        })
    }
}

/// The configured `env`, and `TMPDIR` naming the scratch directory when
/// the guest has one and `env` does not set it: where POSIX programs,
/// Python's `tempfile` and Perl's `File::Temp` look first. Made once per
/// app; a request takes its values by reference count.
pub(super) fn extra_env(guest: &Guest) -> Vec<(String, Bytes)> {
    let mut env: Vec<(String, Bytes)> = guest
        .env
        .iter()
        .map(|(name, value)| (name.clone(), Bytes::from(value.clone())))
        .collect();
    if guest.limits.scratch > 0 && !env.iter().any(|(name, _)| name == "TMPDIR") {
        env.push(("TMPDIR".into(), Bytes::from_static(SCRATCH_DIR.as_bytes())));
    }
    env
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("app {name}: {source}")]
    App { name: String, source: sandbox::Error },
    #[error("interpreter {name}: {source}")]
    Interpreter { name: String, source: preinit::Error },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn guest(env: &[(&str, &str)], scratch: u64) -> Guest {
        Guest {
            env: env.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            mounts: Vec::new(),
            pass_http_proxy: false,
            limits: config::Limits {
                memory: 1 << 20,
                timeout: std::time::Duration::from_secs(1),
                max_body: 0,
                max_output: 1024,
                max_stderr: 0,
                fuel: 0,
                scratch,
            },
        }
    }

    #[test]
    fn tmpdir_names_the_scratch_directory_unless_configured() {
        let env = extra_env(&guest(&[("A", "1")], 1 << 20));
        assert_eq!(
            env,
            [("A".into(), Bytes::from("1")), ("TMPDIR".into(), Bytes::from("/tmp"))]
        );
        let env = extra_env(&guest(&[("TMPDIR", "/tmp/mine")], 1 << 20));
        assert_eq!(env, [("TMPDIR".into(), Bytes::from("/tmp/mine"))]);
        assert!(extra_env(&guest(&[], 0)).is_empty());
    }
}
