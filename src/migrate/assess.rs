//! The verdict on each file of the cgi-bin: a script is portable when
//! every module it needs is built into its interpreter or pure code on the
//! host; anything else says why not, and what was not found where.

use std::path::{Path, PathBuf};

use super::classify::{File, Kind};
use super::resolve::{Found, Resolver, Source};
use crate::cgi::imports as scan;

/// A file of the cgi-bin, and what migrate made of it.
pub struct Entry {
    pub file: File,
    pub verdict: Verdict,
    /// A script's modules: those it imports, and those host modules load.
    pub modules: Vec<Found>,
    /// What its interpreter's snapshot may load for it: its imports that
    /// are available and not part of the site (which changes).
    pub preload: Vec<String>,
}

impl Entry {
    fn new(file: File, verdict: Verdict) -> Entry {
        Entry {
            file,
            verdict,
            modules: Vec::new(),
            preload: Vec::new(),
        }
    }
}

pub enum Verdict {
    Portable {
        warnings: Vec<String>,
    },
    NotPortable {
        reasons: Vec<String>,
        warnings: Vec<String>,
    },
    /// A WebAssembly module.
    Ready,
    /// A native program.
    Rebuild,
    NotAScript(String),
    Unknown(String),
}

/// What `file` is under wcgid, with what its script imports.
pub fn assess(file: File, resolver: &Resolver, root: &Path) -> Entry {
    let not_portable = |reason: &str| Verdict::NotPortable {
        reasons: vec![reason.to_owned()],
        warnings: Vec::new(),
    };
    let verdict = match &file.kind {
        Kind::Perl | Kind::Python | Kind::Python2 => return assess_script(file, resolver, root),
        Kind::WebAssembly => Verdict::Ready,
        Kind::Elf => Verdict::Rebuild,
        Kind::Shell => not_portable("WASI has no fork/exec, so a shell script cannot run the programs it calls"),
        Kind::Php => not_portable("no WASI build of PHP is installable by package name"),
        Kind::Ruby => not_portable("wcgid has no Ruby interpreter (its drivers: perl, python)"),
        Kind::JavaScript => not_portable(
            "wcgid has no JavaScript interpreter for cgi-bin (its drivers: perl, python); \
             QuickJS can serve it as an [[app]], see examples/qjs",
        ),
        Kind::NotAScript(why) => Verdict::NotAScript((*why).to_owned()),
        Kind::Unknown(why) => Verdict::Unknown(why.clone()),
    };
    Entry::new(file, verdict)
}

fn assess_script(file: File, resolver: &Resolver, root: &Path) -> Entry {
    let text = match std::fs::read(&file.path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return Entry::new(file, Verdict::Unknown(format!("unreadable: {e}"))),
    };
    let dir = file.path.parent().unwrap_or(root);
    let (mut reasons, mut warnings) = (Vec::new(), Vec::new());
    let in_site = |found: &Found| matches!(&found.source, Source::HostPure { path, .. } if path.starts_with(root));
    let (modules, preload) = if file.kind == Kind::Perl {
        let scan = scan::perl(&text, dir);
        let (taint, includes) = file
            .shebang
            .as_ref()
            .map(|s| scan::perl_switches(&s.args))
            .unwrap_or_default();
        if taint {
            warnings.push("-T: taint checks are not supported, the script runs without them".to_owned());
        }
        for lib in &scan.unknown_libs {
            warnings.push(format!("use lib {lib}: not known before it runs; looked up without it"));
        }
        let libs: Vec<PathBuf> = scan
            .libs
            .iter()
            .cloned()
            .chain(includes.iter().map(|i| dir.join(i)))
            .collect();
        let mut modules = resolver.perl(&scan.imports, &libs, dir);
        // Pragmas (strict, warnings, lib...) are lower-case by convention
        // (perlmodlib); built in, they say nothing about portability.
        modules.retain(|f| !(f.source == Source::BuiltIn && f.module.starts_with(|c: char| c.is_ascii_lowercase())));
        let preload = modules
            .iter()
            .filter(|f| f.via.is_none() && f.source.available() && !in_site(f))
            .map(|f| f.module.clone())
            .collect();
        (modules, preload)
    } else {
        let scan = scan::python(&text);
        match (&file.kind, scan.python2) {
            (Kind::Python2, _) => reasons.push("needs porting to Python 3 (its #! names Python 2)".to_owned()),
            (_, Some((line, what))) => {
                reasons.push(format!("needs porting to Python 3: line {line} is Python 2 ({what})"))
            }
            _ => {}
        }
        let modules = resolver.python(&scan.imports, dir);
        let loadable = |top: &str| {
            modules
                .iter()
                .any(|f| f.module == top && f.source.available() && !in_site(f))
        };
        let preload = scan
            .imports
            .iter()
            .filter(|i| loadable(i.top_level()))
            .map(|i| i.module.clone())
            .collect();
        (modules, preload)
    };
    for found in &modules {
        let name = match &found.via {
            Some(via) => format!("{} (loaded by {via})", found.module),
            None => found.module.clone(),
        };
        match (&found.source, found.optional) {
            (Source::HostNative { .. }, false) => reasons.push(format!("{name} is XS/C")),
            (Source::Missing { .. }, false) => reasons.push(format!("{name} is missing")),
            (source, true) if !source.available() => {
                warnings.push(format!("{name} is not available (imported optionally)"))
            }
            _ => {}
        }
    }
    let verdict = match reasons.is_empty() {
        true => Verdict::Portable { warnings },
        false => Verdict::NotPortable { reasons, warnings },
    };
    Entry {
        file,
        verdict,
        modules,
        preload,
    }
}

/// Python files of the site that a script imports, without a `#!` line of
/// their own, are modules rather than scripts.
pub fn mark_site_modules(entries: &mut [Entry], root: &Path) {
    let mut imported: Vec<(PathBuf, String)> = Vec::new();
    for entry in entries.iter() {
        if !matches!(entry.file.kind, Kind::Python | Kind::Python2) {
            continue;
        }
        for found in &entry.modules {
            if let Source::HostPure { path, .. } = &found.source
                && path.starts_with(root)
            {
                // A package: all of it.
                let path = match path.file_name() == Some("__init__.py".as_ref()) {
                    true => path.parent().unwrap_or(path),
                    false => path,
                };
                imported.push((path.to_owned(), found.module.clone()));
            }
        }
    }
    for entry in entries.iter_mut() {
        let file = &entry.file;
        if !matches!(file.kind, Kind::Python | Kind::Python2) || file.shebang.is_some() {
            continue;
        }
        if let Some((_, module)) = imported.iter().find(|(path, _)| file.path.starts_with(path)) {
            entry.verdict = Verdict::NotAScript(format!("the Python module {module} of the scripts here"));
            entry.modules.clear();
            entry.preload.clear();
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Portable { warnings } if warnings.is_empty() => write!(f, "portable"),
            Verdict::Portable { warnings } => write!(f, "portable with warnings: {}", warnings.join("; ")),
            Verdict::NotPortable { reasons, warnings } => {
                write!(f, "not portable: {}", reasons.join("; "))?;
                match warnings.is_empty() {
                    true => Ok(()),
                    false => write!(f, " (and: {})", warnings.join("; ")),
                }
            }
            Verdict::Ready => write!(f, "ready as is"),
            Verdict::Rebuild => write!(f, "needs a rebuild for WASI (a native program)"),
            Verdict::NotAScript(why) => write!(f, "not a script ({why})"),
            Verdict::Unknown(why) => write!(f, "unknown: {why}"),
        }
    }
}
