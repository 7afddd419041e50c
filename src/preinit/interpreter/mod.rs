//! Interpreters pre-initialized for a site: the interpreter is booted once,
//! the modules the site's scripts import are loaded, and that state is
//! snapshotted (as `wcgid preinit` does) into a module whose every request
//! starts from it, copy-on-write.
//!
//! Two things of a request cannot be in a snapshot and do not come the
//! usual way: wasi-libc and the interpreter read the arguments and the
//! environment once, at boot. The snapshot therefore takes its request on
//! stdin, ahead of the body (see [`sandbox::Program::takes_request_on_stdin`]),
//! and a boot script in the interpreter's own language reads it there, sets
//! `%ENV`/`os.environ`, the arguments and the working directory, and runs
//! the script. The same holds for the preopened directories, which wasi-libc
//! lists once: an instance must get the very mounts the snapshot was taken
//! with, in the same order ([`Snapshot::mounts`]).
//!
//! Each kind of interpreter is one file here: how to boot it and where to
//! take the snapshot.
//! - [`perl`]: zeroperl, a reactor: the snapshot is taken after its init
//!   and a boot script, and gains a `_start` that calls into the script.
//! - [`python`]: CPython's command build, asyncified: the snapshot is taken
//!   inside `_start`, at the boot script's first read of stdin, and each
//!   request rewinds into that read.
//!
//! Snapshots are cached in the cache directory under `interpreters/`, keyed
//! by everything they depend on: wcgid's version, the interpreter's module,
//! the boot script, the preloads, and the mounts with the files in them that
//! a preload can resolve to.

mod perl;
mod python;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Changes, Error, Launch, Shape, capture, rewrite, write_atomically};
use crate::config::{Driver, Interpreter};
use crate::sandbox::{self, CStrings, Engine, Mount};

/// An interpreter's snapshot, ready to load.
pub struct Snapshot {
    /// Where the module is (in the cache, or a temporary directory).
    pub path: PathBuf,
    /// What every instance must be given, in this order.
    pub mounts: Vec<Mount>,
    /// Keeps a snapshot written outside the cache alive while it is used.
    _temporary: Option<tempfile::TempDir>,
}

/// The snapshot of `interpreter` for scripts under `root` (mounted
/// read-only at its own path), from the cache in `cache_dir` if it has it.
pub fn snapshot(
    engine: &Engine,
    interpreter: &Interpreter,
    root: &Path,
    cache_dir: Option<&Path>,
) -> Result<Snapshot, Error> {
    let path = &interpreter.module;
    let wasm = std::fs::read(path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let dev = DevNull::new().map_err(|source| Error::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut mounts: Vec<Mount> = interpreter
        .lib
        .iter()
        .chain([&root.to_path_buf()])
        .map(|dir| Mount {
            host: dir.clone(),
            guest: dir.to_string_lossy().into_owned(),
        })
        .collect();
    mounts.push(dev.mount());
    let boot = match interpreter.driver {
        Driver::Perl => perl::BOOT,
        Driver::Python => python::BOOT,
    };
    let key = key(&wasm, interpreter, boot, &mounts);
    let (file, temporary) = match cache_dir {
        Some(dir) => (
            dir.join("interpreters")
                .join(format!("{}-{}.wasm", interpreter.name, &key[..16])),
            None,
        ),
        None => {
            let dir = tempfile::tempdir().map_err(|source| Error::Write {
                path: std::env::temp_dir(),
                source,
            })?;
            (dir.path().join("snapshot.wasm"), Some(dir))
        }
    };
    if !file.exists() {
        let started = std::time::Instant::now();
        let output = build(engine, path, &wasm, interpreter, &mounts)?;
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                path: parent.into(),
                source,
            })?;
        }
        write_atomically(&file, &output).map_err(|source| Error::Write {
            path: file.clone(),
            source,
        })?;
        tracing::info!(
            interpreter = interpreter.name,
            snapshot = %file.display(),
            ms = started.elapsed().as_millis(),
            "snapshot taken"
        );
    }
    Ok(Snapshot {
        path: file,
        mounts,
        _temporary: temporary,
    })
}

fn build(
    engine: &Engine,
    path: &Path,
    wasm: &[u8],
    interpreter: &Interpreter,
    mounts: &[Mount],
) -> Result<Vec<u8>, Error> {
    let invalid = |why: String| Error::Invalid { path: path.into(), why };
    wasmparser::validate(wasm).map_err(|e| invalid(e.to_string()))?;
    let shape = Shape::of(wasm).map_err(|e| invalid(e.to_string()))?;
    let mut env = CStrings::default();
    env.push(&[b"WCGID_PRELOAD=", interpreter.preload.join(" ").as_bytes()]);
    let lib = std::env::join_paths(&interpreter.lib).map_err(|e| invalid(e.to_string()))?;
    let (snapshot, changes) = match interpreter.driver {
        Driver::Perl => {
            env.push(&[b"PERL5LIB=", lib.as_encoded_bytes()]);
            let launch = Launch {
                mounts,
                args: perl::args(),
                env,
            };
            let mut boot = perl::Boot::default();
            let snapshot = capture(engine, path, wasm, &shape, launch, &mut boot)?;
            (snapshot, boot.changes())
        }
        Driver::Python => {
            env.push(&[b"PYTHONPATH=", lib.as_encoded_bytes()]);
            let launch = Launch {
                mounts,
                args: python::args(),
                env,
            };
            let mut boot = python::Boot::default();
            let snapshot = capture(engine, path, wasm, &shape, launch, &mut boot)?;
            (snapshot, boot.changes())
        }
    };
    let (output, _, _) = rewrite(wasm, &shape, &snapshot, &changes).map_err(Error::Output)?;
    wasmparser::validate(&output).map_err(|e| Error::Output(e.to_string()))?;
    Ok(output)
}

/// What a snapshot depends on, hashed.
fn key(wasm: &[u8], interpreter: &Interpreter, boot: &str, mounts: &[Mount]) -> String {
    let mut hash = Sha256::new();
    for part in [
        env!("CARGO_PKG_VERSION").as_bytes(),
        interpreter.driver.name().as_bytes(),
        boot.as_bytes(),
        &Sha256::digest(wasm),
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    for module in &interpreter.preload {
        hash.update(module.as_bytes());
        hash.update([0]);
    }
    for mount in mounts {
        hash.update(mount.host.as_os_str().as_encoded_bytes());
        hash.update([0]);
    }
    // A host module changed, or a preload now resolves to another file.
    for module in &interpreter.preload {
        for file in candidates(interpreter.driver, module) {
            for dir in &interpreter.lib {
                if let Ok(meta) = std::fs::metadata(dir.join(&file)) {
                    use std::os::unix::fs::MetadataExt;
                    hash.update(dir.join(&file).as_os_str().as_encoded_bytes());
                    hash.update(meta.len().to_le_bytes());
                    hash.update(meta.mtime().to_le_bytes());
                    hash.update(meta.mtime_nsec().to_le_bytes());
                }
            }
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The files under a library directory that `module` can be loaded from.
fn candidates(driver: Driver, module: &str) -> Vec<PathBuf> {
    match driver {
        Driver::Perl => vec![PathBuf::from(format!("{}.pm", module.replace("::", "/")))],
        Driver::Python => {
            let base = module.replace('.', "/");
            vec![
                PathBuf::from(format!("{base}.py")),
                PathBuf::from(format!("{base}/__init__.py")),
            ]
        }
    }
}

/// A directory holding an empty file `null`, mounted as `/dev`: zeroperl's
/// boot opens `/dev/null`, and reading an empty file is what reading it
/// gives. The same directory (by path) must be mounted for every instance,
/// so it lives at a fixed place.
struct DevNull {
    dir: PathBuf,
}

impl DevNull {
    fn new() -> std::io::Result<DevNull> {
        let dir = std::env::temp_dir().join(format!("wcgid-dev-{}", nix::unistd::getuid()));
        std::fs::create_dir_all(&dir)?;
        let null = dir.join("null");
        if std::fs::metadata(&null).map(|m| m.len()).unwrap_or(1) != 0 {
            std::fs::write(&null, b"")?;
        }
        Ok(DevNull { dir })
    }

    fn mount(&self) -> Mount {
        Mount {
            host: self.dir.clone(),
            guest: "/dev".into(),
        }
    }
}

/// Writes `text` into the guest as a C string, in memory from its `malloc`.
fn c_string(guest: &mut sandbox::Guest<'_>, text: &str) -> Result<i32, String> {
    let len = i32::try_from(text.len() + 1).map_err(|_| "string too long")?;
    let at = guest.call_i32("malloc", &[len])?;
    if at == 0 {
        return Err("malloc failed".into());
    }
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    guest.write(at as u32, &bytes)?;
    Ok(at)
}
