//! `wcgid migrate`: reads a cgi-bin directory of legacy CGI scripts, tells
//! for each whether it runs under wcgid as it is, and writes the
//! configuration that serves the directory, with an `[[interpreter]]` per
//! language its scripts are written in (docs/migration.md).
//!
//! `classify` tells what each file is, [`crate::cgi::imports`] which
//! modules a Perl or Python script imports, `builtin` which of them the
//! interpreter has built in (read from its module), `resolve` where the
//! others are on this host, `assess` what that makes of each script, and
//! `emit` writes the configuration and the web server lines. The directory itself
//! is only read.

mod assess;
mod builtin;
mod classify;
mod emit;
mod resolve;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, Driver, Listen};
use assess::{Entry, Verdict};
use classify::Kind;
use resolve::{Found, HostLibs, Resolver, Source};

pub struct Options {
    /// The cgi-bin directory.
    pub source: PathBuf,
    /// Where `perl.wasm` and `python.wasm` are.
    pub interpreters: PathBuf,
    pub listen: Listen,
    /// Replace `output` if it exists.
    pub force: bool,
    pub output: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgi-bin {}: {source}", path.display())]
    Source { path: PathBuf, source: std::io::Error },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: a path a configuration file can hold is UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error(
        "--interpreters {}: {source}; scripts/fetch-interpreters DIR downloads the interpreters into DIR",
        path.display()
    )]
    Interpreters { path: PathBuf, source: std::io::Error },
    #[error(
        "{}: missing, and {} needs it (scripts/fetch-interpreters {} downloads the interpreters)",
        module.display(), script.display(), dir.display()
    )]
    MissingInterpreter {
        module: PathBuf,
        script: PathBuf,
        dir: PathBuf,
    },
    #[error("{}: cannot tell its built-in modules: {why}", module.display())]
    Interpreter { module: PathBuf, why: String },
    #[error("{}: exists (--force replaces it)", .0.display())]
    OutputExists(PathBuf),
    #[error("{}: inside {}, which migrate only reads", output.display(), source_dir.display())]
    OutputInSource { output: PathBuf, source_dir: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the configuration written does not load, a bug in wcgid migrate: {0}")]
    Generated(Box<crate::config::Error>),
}

impl Error {
    /// As `wcgid check`: 64 (EX_USAGE) for what was given, 1 when the
    /// output cannot be written, 70 (EX_SOFTWARE) for our own bug.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Write { .. } => 1,
            Error::Generated(_) => 70,
            _ => 64,
        }
    }
}

/// What `run` found and wrote; its `Display` is the report.
pub struct Migration {
    root: PathBuf,
    output: PathBuf,
    listen: Listen,
    entries: Vec<Entry>,
    /// The interpreters configured.
    interpreters: Vec<&'static str>,
}

/// The interpreters, their modules' names in the `--interpreters`
/// directory, and the scripts they run.
const LANGUAGES: [(Driver, &str, &[Kind]); 2] = [
    (Driver::Perl, "perl.wasm", &[Kind::Perl]),
    (Driver::Python, "python.wasm", &[Kind::Python, Kind::Python2]),
];

/// Reads `options.source`, writes the configuration to `options.output`.
pub fn run(options: &Options) -> Result<Migration, Error> {
    let root = options.source.canonicalize().map_err(|source| Error::Source {
        path: options.source.clone(),
        source,
    })?;
    if !root.is_dir() {
        return Err(Error::NotADirectory(root));
    }
    let output = output_path(&options.output, &root, options.force)?;
    let interpreters = options
        .interpreters
        .canonicalize()
        .and_then(|dir| match dir.is_dir() {
            true => Ok(dir),
            false => Err(std::io::ErrorKind::NotADirectory.into()),
        })
        .map_err(|source| Error::Interpreters {
            path: options.interpreters.clone(),
            source,
        })?;
    for path in [&root, &interpreters] {
        if path.to_str().is_none() {
            return Err(Error::NotUtf8(path.clone()));
        }
    }
    let files = classify::walk(&root).map_err(|source| Error::Source {
        path: root.clone(),
        source,
    })?;

    // Each language's interpreter and built-in modules, read once.
    let mut languages = Vec::new();
    for (driver, file, kinds) in LANGUAGES {
        let Some(script) = files.iter().find(|f| kinds.contains(&f.kind)) else {
            continue;
        };
        let module = interpreters.join(file);
        if !module.is_file() {
            return Err(Error::MissingInterpreter {
                module,
                script: script.name.clone(),
                dir: interpreters,
            });
        }
        let builtin = builtin::read(driver, &module).map_err(|why| Error::Interpreter {
            module: module.clone(),
            why,
        })?;
        languages.push(Language {
            driver,
            kinds,
            module,
            builtin,
        });
    }
    let empty = BTreeSet::new();
    let builtin = |driver| {
        languages
            .iter()
            .find(|l| l.driver == driver)
            .map_or(&empty, |l| &l.builtin)
    };
    let host = HostLibs::discover();
    let resolver = Resolver {
        host: &host,
        perl_builtin: builtin(Driver::Perl),
        python_builtin: builtin(Driver::Python),
    };
    let mut entries: Vec<Entry> = files.into_iter().map(|f| assess::assess(f, &resolver, &root)).collect();
    assess::mark_site_modules(&mut entries, &root);

    let configured: Vec<emit::Interpreter> = languages
        .iter()
        .map(|language| interpreter(language, &entries))
        .collect();
    let runs = entries
        .iter()
        .filter(|e| matches!(e.verdict, Verdict::Portable { .. } | Verdict::Ready))
        .count();
    let scripts = entries
        .iter()
        .filter(|e| !matches!(e.verdict, Verdict::NotAScript(_) | Verdict::Unknown(_)))
        .count();
    let header = [
        format!("wcgid configuration for the cgi-bin {}, written by", root.display()),
        format!(
            "`wcgid migrate` {} on {}.",
            env!("CARGO_PKG_VERSION"),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        ),
        format!("{runs} of its {scripts} scripts run as they are; the report migrate printed"),
        "says what to do with the others (docs/migration.md).".into(),
        String::new(),
        format!("Check it with `wcgid check -c {}`.", output.display()),
        "conf/wcgid.toml documents every key; the defaults of [limits] apply.".into(),
    ];
    let text = emit::config(&header, &root, &options.listen, &configured);
    write_validated(&output, &text, options.force)?;
    Ok(Migration {
        root,
        output,
        listen: options.listen.clone(),
        entries,
        interpreters: configured.iter().map(|i| i.driver.name()).collect(),
    })
}

/// `output` made absolute; refused inside `root` or, without `force`, when
/// it exists.
fn output_path(output: &Path, root: &Path, force: bool) -> Result<PathBuf, Error> {
    let write_error = |source| Error::Write {
        path: output.to_owned(),
        source,
    };
    let name = output
        .file_name()
        .ok_or_else(|| write_error(std::io::ErrorKind::InvalidInput.into()))?;
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .map_err(write_error)?;
    let absolute = dir.join(name);
    if absolute.starts_with(root) {
        return Err(Error::OutputInSource {
            output: absolute,
            source_dir: root.to_owned(),
        });
    }
    if !force && absolute.symlink_metadata().is_ok() {
        return Err(Error::OutputExists(absolute));
    }
    Ok(absolute)
}

/// Writes `text` to `output` if it loads as a configuration: into a file
/// beside it first, renamed over it once valid, so that `output` is never
/// a half-written or invalid file.
fn write_validated(output: &Path, text: &str, force: bool) -> Result<(), Error> {
    let write_error = |source| Error::Write {
        path: output.to_owned(),
        source,
    };
    let dir = output.parent().unwrap_or(Path::new("/"));
    let mut file = tempfile::Builder::new()
        .prefix(".wcgid-migrate-")
        .suffix(".toml")
        .tempfile_in(dir)
        .map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    // The packaged service reads its configuration as "others".
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(write_error)?;
    Config::load(file.path()).map_err(|e| Error::Generated(Box::new(e)))?;
    match force {
        true => file.persist(output).map(drop),
        false => file.persist_noclobber(output).map(drop),
    }
    .map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => Error::OutputExists(output.to_owned()),
        _ => write_error(e.error),
    })
}

/// An interpreter the cgi-bin needs.
struct Language {
    driver: Driver,
    /// The scripts it runs.
    kinds: &'static [Kind],
    module: PathBuf,
    builtin: BTreeSet<String>,
}

/// The `[[interpreter]]` section of `language` for the scripts of `entries`.
fn interpreter(language: &Language, entries: &[Entry]) -> emit::Interpreter {
    let driver = language.driver;
    let scripts = || entries.iter().filter(|e| language.kinds.contains(&e.file.kind));
    let portable = || scripts().filter(|e| matches!(e.verdict, Verdict::Portable { .. }));
    let (default_names, _) = driver.defaults();
    let extra: BTreeSet<&str> = scripts()
        .filter(|e| e.file.kind != Kind::Python2)
        .filter_map(|e| e.file.shebang.as_ref())
        .map(|s| s.program.as_str())
        .filter(|p| !default_names.contains(p))
        .collect();
    let names = match extra.is_empty() {
        true => Vec::new(),
        false => default_names.iter().copied().chain(extra).map(str::to_owned).collect(),
    };
    let lib = portable()
        .flat_map(|e| &e.modules)
        .filter_map(|f| match &f.source {
            // Canonical: `use lib "$FindBin::Bin/../lib"` names it with `..`.
            Source::HostPure { dir, .. } => dir.canonicalize().ok(),
            _ => None,
        })
        .collect();
    emit::Interpreter {
        driver,
        module: language.module.clone(),
        names,
        lib,
        preload: portable().flat_map(|e| e.preload.iter().cloned()).collect(),
    }
}

impl std::fmt::Display for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: {} files\n", self.root.display(), self.entries.len())?;
        let names: Vec<String> = self.entries.iter().map(|e| e.file.name.display().to_string()).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (entry, name) in self.entries.iter().zip(&names) {
            writeln!(
                f,
                "  {name:<width$}  {:<11}  {}",
                entry.file.kind.label(),
                entry.verdict
            )?;
            if entry.modules.iter().all(|m| m.source == Source::BuiltIn) {
                continue;
            }
            let (built_in, others): (Vec<&Found>, Vec<&Found>) =
                entry.modules.iter().partition(|m| m.source == Source::BuiltIn);
            if !built_in.is_empty() {
                let names: Vec<&str> = built_in.iter().map(|m| m.module.as_str()).collect();
                writeln!(f, "      built in: {}", names.join(", "))?;
            }
            // Where each comes from: the script's line, or the module
            // that loads it.
            let wheres: Vec<String> = others
                .iter()
                .map(|m| {
                    let at = match &m.via {
                        Some(via) => format!("via {via}"),
                        None => format!("line {}", m.line),
                    };
                    if m.optional { at + ", optional" } else { at }
                })
                .collect();
            let width = others.iter().map(|m| m.module.chars().count()).max().unwrap_or(0);
            let where_width = wheres.iter().map(|w| w.chars().count()).max().unwrap_or(0);
            for (m, at) in others.iter().zip(&wheres) {
                writeln!(f, "      {:<width$}  {at:<where_width$}  {}", m.module, m.source)?;
            }
        }
        writeln!(f, "\n{}\n", self.totals())?;
        let configured = match self.interpreters.is_empty() {
            true => "no interpreters".to_owned(),
            false => format!("interpreters: {}", self.interpreters.join(", ")),
        };
        writeln!(
            f,
            "Wrote {} ({configured}). Check it, which compiles its modules:\n    wcgid check -c {}\n",
            self.output.display(),
            self.output.display()
        )?;
        writeln!(
            f,
            "nginx: in the server {{ }} block, in place of the location that passes {} to fcgiwrap:\n",
            emit::URL_PREFIX
        )?;
        writeln!(f, "{}", emit::nginx(&self.root, &self.listen))?;
        writeln!(
            f,
            "Apache (a2enmod proxy_fcgi): in place of `ScriptAlias {} {}/`:\n",
            emit::URL_PREFIX,
            self.root.display()
        )?;
        write!(f, "{}", emit::apache(&self.root, &self.listen))
    }
}

impl Migration {
    fn totals(&self) -> String {
        let count = |p: fn(&Verdict) -> bool| self.entries.iter().filter(|e| p(&e.verdict)).count();
        let portable = count(|v| matches!(v, Verdict::Portable { .. }));
        let warned = count(|v| matches!(v, Verdict::Portable { warnings } if !warnings.is_empty()));
        let not_portable = count(|v| matches!(v, Verdict::NotPortable { .. }));
        let ready = count(|v| matches!(v, Verdict::Ready));
        let rebuild = count(|v| matches!(v, Verdict::Rebuild));
        let others = count(|v| matches!(v, Verdict::NotAScript(_) | Verdict::Unknown(_)));
        format!(
            "{} scripts: {portable} portable ({warned} with warnings), {not_portable} not portable; \
             {ready} ready as is (.wasm); {rebuild} to rebuild for WASI; {others} other files",
            portable + not_portable + ready + rebuild
        )
    }
}
