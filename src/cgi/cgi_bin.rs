//! `[cgi_bin]`: a request names a file under the root, as with fcgiwrap
//! (RFC 3875 §3.3 script selection; see [`super::router`] for the rules);
//! modules are compiled and scripts' interpreters snapshotted on first use,
//! and loaded again when their file changes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{self, Guest};
use crate::preinit;
use crate::sandbox::{self, CStrings, Engine, Program};

use super::app::{App, LoadError, extra_env, load_program};
use super::env::MetaVars;
use super::imports;
use super::shebang::Shebang;

/// Why a `[cgi_bin]` request is not run: the HTTP status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Forbidden = 403,
    NotFound = 404,
    /// The module exists but cannot be loaded.
    Broken = 500,
}

/// Identity of a module file: a change of any part means it was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

pub(super) struct CgiBin {
    /// The root as configured, and canonical: requests may name either.
    prefix: PathBuf,
    root: PathBuf,
    guest: Guest,
    interpreters: Vec<Interpreter>,
    /// Compiled modules and scripts by canonical path, loaded again when the
    /// file changes.
    cache: Mutex<HashMap<PathBuf, (FileId, Arc<App>)>>,
}

/// An interpreter, loaded from its snapshot for the scripts of the root.
struct Interpreter {
    config: config::Interpreter,
    program: Program,
    /// Keeps the snapshot's file while the program may be loaded again.
    _snapshot: preinit::interpreter::Snapshot,
}

impl Interpreter {
    fn load(
        engine: &Engine,
        config: &config::Interpreter,
        root: &Path,
        guest: &Guest,
    ) -> Result<Interpreter, LoadError> {
        let failed = |source| LoadError::Interpreter {
            name: config.name.clone(),
            source,
        };
        let mut with_imports = config.clone();
        with_imports.preload.extend(site_imports(config, root));
        with_imports.preload.sort();
        with_imports.preload.dedup();
        let snapshot =
            preinit::interpreter::snapshot(engine, &with_imports, root, guest.limits.scratch, engine.cache_dir())
                .map_err(failed)?;
        let program = load_program(engine, &snapshot.path, &snapshot.mounts, guest)
            .map_err(|e| failed(preinit::Error::Run(e)))?;
        Ok(Interpreter {
            config: config.clone(),
            program,
            _snapshot: snapshot,
        })
    }
}

/// Whether `interpreter` runs a script with this `#!` line, or with none
/// and this file name.
fn runs(interpreter: &config::Interpreter, shebang: Option<&Shebang>, path: &Path) -> bool {
    match shebang {
        Some(line) => interpreter.names.contains(&line.program),
        None => path
            .extension()
            .and_then(OsStr::to_str)
            .is_some_and(|ext| interpreter.extensions.iter().any(|e| e == ext)),
    }
}

/// What the scripts under `root` that `interpreter` runs import whenever
/// they run (not guarded, not inside a sub), but for the site's own modules
/// (found beside a script or in a `use lib` directory under the root): they
/// join the snapshot's preloads, so that the snapshot follows the scripts.
/// The site's own modules change with it, and stay out of the snapshot.
fn site_imports(interpreter: &config::Interpreter, root: &Path) -> Vec<String> {
    /// Larger files are not scripts a person wrote.
    const MAX_SCRIPT: u64 = 1 << 20;
    let mut found = std::collections::BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(meta) = path.symlink_metadata() else { continue };
            if entry.file_name().as_bytes().starts_with(b".") {
                continue;
            }
            if meta.is_dir() {
                dirs.push(path);
                continue;
            }
            let line = Shebang::read(&path).ok().flatten();
            if !meta.is_file() || meta.len() > MAX_SCRIPT || !runs(interpreter, line.as_ref(), &path) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let (imports, mut own_dirs) = match interpreter.driver {
                config::Driver::Perl => {
                    let scan = imports::perl(&text, &dir);
                    (scan.imports, scan.libs)
                }
                config::Driver::Python => (imports::python(&text).imports, Vec::new()),
            };
            own_dirs.retain(|d| d.starts_with(root));
            own_dirs.push(dir.clone());
            for import in imports.into_iter().filter(|i| i.eager && !i.optional) {
                let files = match interpreter.driver {
                    config::Driver::Perl => vec![format!("{}.pm", import.module.replace("::", "/"))],
                    config::Driver::Python => vec![format!("{}.py", import.top_level()), import.top_level().to_owned()],
                };
                if !own_dirs.iter().any(|d| files.iter().any(|f| d.join(f).exists())) {
                    found.insert(import.module);
                }
            }
        }
    }
    found.into_iter().collect()
}

impl CgiBin {
    pub(super) fn load(
        engine: &Engine,
        config: &config::CgiBin,
        interpreters: &[config::Interpreter],
    ) -> Result<CgiBin, LoadError> {
        let root = config.root.canonicalize().map_err(|e| LoadError::App {
            name: "cgi_bin".into(),
            source: sandbox::Error::Read {
                path: config.root.clone(),
                source: e,
            },
        })?;
        let interpreters = interpreters
            .iter()
            .map(|i| Interpreter::load(engine, i, &root, &config.guest))
            .collect::<Result<_, _>>()?;
        let cgi_bin = CgiBin {
            prefix: config.root.clone(),
            root,
            guest: config.guest.clone(),
            interpreters,
            cache: Mutex::default(),
        };
        let entries = std::fs::read_dir(&cgi_bin.root).map_err(|e| LoadError::App {
            name: "cgi_bin".into(),
            source: sandbox::Error::Read {
                path: cgi_bin.root.clone(),
                source: e,
            },
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension() == Some(OsStr::new("wasm")) && path.is_file() {
                cgi_bin.module(engine, &path).map_err(|source| LoadError::App {
                    name: format!("cgi_bin {}", path.display()),
                    source,
                })?;
            }
        }
        Ok(cgi_bin)
    }

    /// The `[[interpreter]]`s booted and snapshotted for the root.
    pub(super) fn interpreter_count(&self) -> usize {
        self.interpreters.len()
    }

    /// The modules and scripts loaded so far.
    pub(super) fn cached(&self) -> usize {
        self.cache.lock().len()
    }

    pub(super) fn resolve(&self, engine: &Engine, vars: &mut MetaVars) -> Result<Arc<App>, Refusal> {
        let requested = script_filename(vars).ok_or(Refusal::NotFound)?;
        if !requested.is_absolute() || requested.components().any(|c| c == Component::ParentDir) {
            return Err(Refusal::Forbidden);
        }
        let base = [&self.prefix, &self.root]
            .into_iter()
            .find(|base| requested.starts_with(base))
            .ok_or(Refusal::Forbidden)?;
        // Walk up from the full path until a file is found; what was cut off
        // is path info.
        let mut candidate = requested.clone();
        let (file, path_info) = loop {
            if let Some(file) = self.existing_file(&candidate) {
                let path_info = requested.strip_prefix(&candidate).expect("candidate is a prefix");
                break (file, path_info);
            }
            if !candidate.pop() || !candidate.starts_with(base) || candidate == *base {
                return Err(Refusal::NotFound);
            }
        };
        let real = file.canonicalize().map_err(|_| Refusal::NotFound)?;
        if !real.starts_with(&self.root) {
            return Err(Refusal::Forbidden);
        }
        let meta = std::fs::metadata(&real).map_err(|_| Refusal::NotFound)?;
        if !meta.is_file() {
            return Err(Refusal::Forbidden);
        }
        if !path_info.as_os_str().is_empty() && vars.get("PATH_INFO").is_none() {
            let info = format!("/{}", path_info.display());
            if let Some(name) = vars.get("SCRIPT_NAME").and_then(|s| s.strip_suffix(info.as_bytes())) {
                let name = bytes::Bytes::copy_from_slice(name);
                vars.set("SCRIPT_NAME", name);
            }
            vars.set("PATH_INFO", info);
        }
        vars.set(
            "SCRIPT_FILENAME",
            bytes::Bytes::copy_from_slice(real.as_os_str().as_bytes()),
        );
        if real.extension() != Some(OsStr::new("wasm")) {
            return self.script(&real, &meta);
        }
        self.module(engine, &real).map_err(|e| {
            tracing::error!(module = %real.display(), "cannot load cgi-bin module: {e}");
            Refusal::Broken
        })
    }

    /// `path` itself if it is a `.wasm` file, else `path.wasm` if that
    /// exists, else `path` if it exists and is not a directory (a script,
    /// or refused later).
    fn existing_file(&self, path: &Path) -> Option<PathBuf> {
        if path.extension() == Some(OsStr::new("wasm")) && path.symlink_metadata().is_ok() {
            return Some(path.to_owned());
        }
        let mut with_ext = path.as_os_str().to_owned();
        with_ext.push(".wasm");
        let with_ext = PathBuf::from(with_ext);
        if with_ext.symlink_metadata().is_ok() {
            return Some(with_ext);
        }
        path.symlink_metadata()
            .is_ok_and(|meta| !meta.is_dir())
            .then(|| path.to_owned())
    }

    /// The script at canonical `path`, run by the interpreter its `#!` line
    /// or extension names; refused if none does.
    fn script(&self, path: &Path, meta: &std::fs::Metadata) -> Result<Arc<App>, Refusal> {
        let id = FileId::of(meta);
        if let Some((cached_id, app)) = self.cache.lock().get(path)
            && *cached_id == id
        {
            return Ok(app.clone());
        }
        let line = Shebang::read(path).map_err(|_| Refusal::Forbidden)?;
        let Some(interpreter) = self.interpreters.iter().find(|i| runs(&i.config, line.as_ref(), path)) else {
            match &line {
                Some(line) if !self.interpreters.is_empty() => tracing::warn!(
                    script = %path.display(),
                    "no [[interpreter]] runs #!{} scripts",
                    line.program
                ),
                _ => {}
            }
            return Err(Refusal::Forbidden);
        };
        // argv as execve(2) gives it for a #! line: the program, its words,
        // the script.
        let mut args = CStrings::default();
        let program = line
            .as_ref()
            .map_or(interpreter.config.name.as_str(), |l| l.program.as_str());
        args.push(&[program.as_bytes()]);
        for word in line.iter().flat_map(|l| &l.args) {
            args.push(&[word.as_bytes()]);
        }
        if !args.push(&[path.as_os_str().as_bytes()]) {
            return Err(Refusal::Forbidden);
        }
        let name = path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy();
        let app = Arc::new(App {
            name: name.into(),
            program: interpreter.program.clone(),
            env: extra_env(&self.guest),
            guest: self.guest.clone(),
            args,
        });
        self.cache.lock().insert(path.to_owned(), (id, app.clone()));
        Ok(app)
    }

    /// The compiled module at canonical `path`, compiled now if the cache has
    /// none or an outdated one.
    fn module(&self, engine: &Engine, path: &Path) -> Result<Arc<App>, sandbox::Error> {
        let meta = std::fs::metadata(path).map_err(|source| sandbox::Error::Read {
            path: path.into(),
            source,
        })?;
        let id = FileId::of(&meta);
        if let Some((cached_id, app)) = self.cache.lock().get(path)
            && *cached_id == id
        {
            return Ok(app.clone());
        }
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let app = Arc::new(App::load(engine, &name, path, &self.guest)?);
        self.cache.lock().insert(path.to_owned(), (id, app.clone()));
        Ok(app)
    }
}

/// SCRIPT_FILENAME, or DOCUMENT_ROOT + SCRIPT_NAME, without Apache's
/// `proxy:fcgi://host:port` prefix.
fn script_filename(vars: &MetaVars) -> Option<PathBuf> {
    let raw = match vars.get("SCRIPT_FILENAME") {
        Some(f) => f.to_vec(),
        None => [vars.get("DOCUMENT_ROOT")?, vars.get("SCRIPT_NAME")?].concat(),
    };
    let raw = match raw.strip_prefix(b"proxy:fcgi://") {
        Some(rest) => &rest[rest.iter().position(|&b| b == b'/')?..],
        None => &raw[..],
    };
    Some(PathBuf::from(OsStr::from_bytes(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_imports_are_the_scripts_imports_but_the_sites_own() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let files = [
            (
                "a.pl",
                "#!/usr/bin/perl\nuse strict;\nuse FindBin;\nuse lib \"$FindBin::Bin/lib\";\nuse CGI;\nuse Site::Own;\n\
                 eval { require Optional::Thing };\nsub later { require Lazy::Thing }\n",
            ),
            ("lib/Site/Own.pm", "package Site::Own;\n1;\n"),
            ("sub/b.cgi", "#!/usr/bin/env perl\nuse JSON::PP;\n"),
            (
                "c.py",
                "import os, json\nimport helpers\ntry:\n    import yaml\nexcept ImportError:\n    pass\n",
            ),
            ("helpers.py", "import re\n"),
            (".hidden/d.pl", "use Hidden::Thing;\n"),
        ];
        for (name, text) in files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let interpreter = |driver, names: &[&str], extensions: &[&str]| config::Interpreter {
            name: "x".into(),
            module: PathBuf::new(),
            driver,
            names: names.iter().map(|s| s.to_string()).collect(),
            extensions: extensions.iter().map(|s| s.to_string()).collect(),
            lib: Vec::new(),
            preload: Vec::new(),
        };
        let perl = site_imports(&interpreter(config::Driver::Perl, &["perl"], &["pl"]), root);
        assert_eq!(perl, ["CGI", "FindBin", "JSON::PP", "lib", "strict"]);
        // helpers is the site's own; yaml is guarded. helpers.py is also a
        // file the interpreter runs when a request names it: its imports count.
        let python = site_imports(&interpreter(config::Driver::Python, &["python3"], &["py"]), root);
        assert_eq!(python, ["json", "os", "re"]);
    }
}
