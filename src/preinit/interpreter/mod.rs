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
//! - `perl`: zeroperl, a reactor: the snapshot is taken after its init
//!   and a boot script, and gains a `_start` that calls into the script.
//! - `python`: CPython's command build, asyncified: the snapshot is taken
//!   inside `_start`, at the boot script's first read of stdin, and each
//!   request rewinds into that read.
//!
//! [`cold`] makes the same interpreters start from nothing at every run
//! instead, for measuring what a snapshot saves.
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
    /// Where the module is (in the cache, or in a temporary directory).
    pub path: PathBuf,
    /// What every instance must be given, in this order.
    pub mounts: Vec<Mount>,
    /// Keeps a snapshot written outside the cache alive while it is used.
    _temporary: Option<tempfile::TempDir>,
}

/// The snapshot of `interpreter` for scripts under `root` (mounted
/// read-only at its own path), whose instances get a scratch directory of
/// `scratch` bytes (0 for none), from the cache in `cache_dir` if it has it.
pub fn snapshot(
    engine: &Engine,
    interpreter: &Interpreter,
    root: &Path,
    scratch: u64,
    cache_dir: Option<&Path>,
) -> Result<Snapshot, Error> {
    let path = &interpreter.module;
    let wasm = std::fs::read(path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let (dir, temporary) = match cache_dir {
        Some(cache) => (cache.join("interpreters"), None),
        None => {
            let temporary = tempfile::tempdir().map_err(|source| Error::Write {
                path: std::env::temp_dir(),
                source,
            })?;
            (temporary.path().to_path_buf(), Some(temporary))
        }
    };
    // Also makes `dir`, which the snapshot goes in.
    let mounts = mounts(interpreter, root, &dir.join("support"))?;
    let boot = match interpreter.driver {
        Driver::Perl => perl::BOOT,
        Driver::Python => python::BOOT,
    };
    let key = key(&wasm, interpreter, boot, &mounts, scratch > 0);
    // One snapshot per interpreter and site: a new one replaces the last.
    let site: String = Sha256::digest(root.as_os_str().as_encoded_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefix = format!("{}-{site}-", interpreter.name);
    let file = dir.join(format!("{prefix}{}.wasm", &key[..16]));
    if !file.exists() {
        let started = std::time::Instant::now();
        let output = build(engine, path, &wasm, interpreter, &mounts, scratch)?;
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
        // A daemon that loaded an older one has its code and image already;
        // one still to load it takes a new snapshot.
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".wasm") && entry.path() != file {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(Snapshot {
        path: file,
        mounts,
        _temporary: temporary,
    })
}

/// `interpreter` without a snapshot, for measuring what the snapshot saves:
/// a module to run as the snapshot is run (given [`Snapshot::mounts`], and
/// the script's argv and the request's environment through
/// [`sandbox::Program::run`]), each run of which constructs the interpreter
/// and runs the script. CPython's module is such a command as it is: it runs
/// `python3 SCRIPT`. zeroperl, a reactor, is given a `_start` that runs
/// `perl -I... -e` with the boot script and a call of `WCGID::serve`, so that
/// it takes its request on stdin as the snapshot does: its `_initialize`,
/// run before the module is written, reads the environment, which wasi-libc
/// keeps from then on. Written to a temporary directory, not cached.
pub fn cold(engine: &Engine, interpreter: &Interpreter, root: &Path, scratch: u64) -> Result<Snapshot, Error> {
    let temporary = tempfile::tempdir().map_err(|source| Error::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let mounts = mounts(interpreter, root, &temporary.path().join("support"))?;
    let path = match interpreter.driver {
        Driver::Python => interpreter.module.clone(),
        Driver::Perl => {
            let path = &interpreter.module;
            let wasm = std::fs::read(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let invalid = |why: String| Error::Invalid { path: path.into(), why };
            let shape = Shape::of(&wasm).map_err(|e| invalid(e.to_string()))?;
            let launch = Launch {
                mounts: &mounts,
                args: perl::args(),
                env: CStrings::default(),
                scratch,
            };
            let mut boot = perl::Cold::new(&perl_inc(interpreter));
            let snapshot = capture(engine, path, &wasm, &shape, launch, &mut boot)?;
            let (output, _, _) = rewrite(&wasm, &shape, &snapshot, &boot.changes()).map_err(Error::Output)?;
            let file = temporary.path().join("perl-cold.wasm");
            std::fs::write(&file, output).map_err(|source| Error::Write {
                path: file.clone(),
                source,
            })?;
            file
        }
    };
    Ok(Snapshot {
        path,
        mounts,
        _temporary: Some(temporary),
    })
}

/// What an instance of `interpreter` is given, in this order: its library
/// directories and `root`, each at its own path, then what [`support`]
/// writes under `support_dir`.
fn mounts(interpreter: &Interpreter, root: &Path, support_dir: &Path) -> Result<Vec<Mount>, Error> {
    let mut mounts: Vec<Mount> = interpreter
        .lib
        .iter()
        .chain([&root.to_path_buf()])
        .map(|dir| Mount {
            host: dir.clone(),
            guest: dir.to_string_lossy().into_owned(),
        })
        .collect();
    mounts.extend(support(support_dir, interpreter.driver).map_err(|source| Error::Write {
        path: support_dir.into(),
        source,
    })?);
    Ok(mounts)
}

/// Where Perl looks for modules before its own library: the interpreter's
/// library directories, then the stand-ins of [`PERL_COMPAT`].
fn perl_inc(interpreter: &Interpreter) -> Vec<&Path> {
    interpreter
        .lib
        .iter()
        .map(PathBuf::as_path)
        .chain([Path::new(PERL_COMPAT)])
        .collect()
}

fn build(
    engine: &Engine,
    path: &Path,
    wasm: &[u8],
    interpreter: &Interpreter,
    mounts: &[Mount],
    scratch: u64,
) -> Result<Vec<u8>, Error> {
    let invalid = |why: String| Error::Invalid { path: path.into(), why };
    wasmparser::validate(wasm).map_err(|e| invalid(e.to_string()))?;
    let shape = Shape::of(wasm).map_err(|e| invalid(e.to_string()))?;
    let (search, lib, args) = match interpreter.driver {
        Driver::Perl => ("PERL5LIB=", perl_inc(interpreter), perl::args()),
        Driver::Python => (
            "PYTHONPATH=",
            interpreter.lib.iter().map(PathBuf::as_path).collect(),
            python::args(),
        ),
    };
    let lib = std::env::join_paths(lib).map_err(|e| invalid(e.to_string()))?;
    let mut env = CStrings::default();
    env.push(&[b"WCGID_PRELOAD=", interpreter.preload.join(" ").as_bytes()]);
    env.push(&[search.as_bytes(), lib.as_encoded_bytes()]);
    let launch = Launch {
        mounts,
        args,
        env,
        scratch,
    };
    let (snapshot, changes) = match interpreter.driver {
        Driver::Perl => {
            let mut boot = perl::Boot::default();
            (capture(engine, path, wasm, &shape, launch, &mut boot)?, boot.changes())
        }
        Driver::Python => {
            let mut boot = python::Boot::default();
            (capture(engine, path, wasm, &shape, launch, &mut boot)?, boot.changes())
        }
    };
    let (output, _, _) = rewrite(wasm, &shape, &snapshot, &changes).map_err(Error::Output)?;
    wasmparser::validate(&output).map_err(|e| Error::Output(e.to_string()))?;
    Ok(output)
}

/// What a snapshot depends on, hashed.
fn key(wasm: &[u8], interpreter: &Interpreter, boot: &str, mounts: &[Mount], scratch: bool) -> String {
    let mut hash = Sha256::new();
    hash.update([u8::from(scratch)]);
    let support: Vec<u8> = SUPPORT
        .iter()
        .flat_map(|(name, content)| [name.as_bytes(), content.as_bytes()].concat())
        .collect();
    for part in [
        env!("CARGO_PKG_VERSION").as_bytes(),
        &support,
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

/// Files wcgid gives interpreters, written under a directory of their own
/// (in the cache, so that every instance mounts the very path its snapshot
/// was taken with):
/// - `dev/null`, an empty file, mounted as `/dev`: zeroperl's boot opens
///   `/dev/null`, and reading an empty file is what reading it gives;
/// - `perl5/`, mounted at [`PERL_COMPAT`]: pure-Perl stand-ins for modules
///   whose originals need XS, which no WASI Perl can load (see each file).
const SUPPORT: [(&str, &str); 2] = [
    ("dev/null", ""),
    ("perl5/HTML/Entities.pm", include_str!("perl5/HTML/Entities.pm")),
];
/// Where the Perl stand-ins are, in the guest: searched after the host's
/// library directories.
const PERL_COMPAT: &str = "/usr/share/wcgid/perl5";

/// Writes [`SUPPORT`] under `dir` where it differs; returns the mounts.
fn support(dir: &Path, driver: Driver) -> std::io::Result<Vec<Mount>> {
    for (name, content) in SUPPORT {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(content.as_bytes()) {
            std::fs::create_dir_all(path.parent().expect("a relative path with a directory"))?;
            write_atomically(&path, content.as_bytes())?;
        }
    }
    let mut mounts = vec![Mount {
        host: dir.join("dev"),
        guest: "/dev".into(),
    }];
    if driver == Driver::Perl {
        mounts.push(Mount {
            host: dir.join("perl5"),
            guest: PERL_COMPAT.into(),
        });
    }
    Ok(mounts)
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
