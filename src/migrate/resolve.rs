//! Where each module a script imports would come from under wcgid, looked
//! up in the order its interpreter looks: its own library first (built in),
//! then the host directories an `[[interpreter]]` can be given as `lib`
//! (pure Perl or Python, portable), else native code on the host (Perl XS,
//! a Python C extension: not portable, the interpreter cannot load a `.so`),
//! else nowhere.
//!
//! A host module is read in turn, for the modules it loads whenever it is
//! loaded (Perl's `use`, a Python import at module level): `CGI.pm` is only
//! as portable as what it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::cgi::imports::{self as scan, Import};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    BuiltIn,
    /// Pure Perl or Python at `path`, found in the search directory `dir`.
    HostPure {
        dir: PathBuf,
        path: PathBuf,
    },
    /// Native code at `path`.
    HostNative {
        path: PathBuf,
    },
    /// With a hint of what to do, if there is one.
    Missing {
        hint: Option<&'static str>,
    },
}

impl Source {
    /// Whether the interpreter can load it.
    pub fn available(&self) -> bool {
        matches!(self, Source::BuiltIn | Source::HostPure { .. })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::BuiltIn => write!(f, "built in"),
            Source::HostPure { dir, .. } => write!(f, "host, pure ({})", dir.display()),
            Source::HostNative { path } => write!(f, "host, XS/C ({}): not portable", path.display()),
            Source::Missing { hint: None } => write!(f, "missing"),
            Source::Missing { hint: Some(hint) } => write!(f, "missing: {hint}"),
        }
    }
}

/// A module a script needs, once however often it is imported.
#[derive(Debug, Clone)]
pub struct Found {
    /// Perl's `Foo::Bar`, Python's top-level name.
    pub module: String,
    /// Where it is first imported.
    pub line: usize,
    /// Every import of it is guarded.
    pub optional: bool,
    pub source: Source,
    /// The host module that loads it, for a module the script does not
    /// import itself.
    pub via: Option<String>,
}

/// The host's directories of modules, in search order.
#[derive(Debug, Clone, Default)]
pub struct HostLibs {
    /// Pure Perl: `PERL5LIB`, then Debian's site and vendor directories.
    pub perl_pure: Vec<PathBuf>,
    /// Perl's architecture-specific directories, where XS modules live.
    pub perl_native: Vec<PathBuf>,
    /// `PYTHONPATH`, then Debian's `dist-packages` and `site-packages`.
    pub python: Vec<PathBuf>,
}

impl HostLibs {
    /// Debian's (perl(1)'s `@INC` on Debian; `site.getsitepackages()` of
    /// its python3), after `PERL5LIB` and `PYTHONPATH`. The host Perl's own
    /// core library (`/usr/share/perl/5.*`) is left out: it belongs to
    /// another Perl version than the interpreter's.
    pub fn discover() -> HostLibs {
        let var = |name| std::env::var_os(name).map(|v| std::env::split_paths(&v).collect::<Vec<_>>());
        let usr_lib_arch = subdirs(Path::new("/usr/lib"), |n| n.contains("-linux-"));
        let local_lib_arch = subdirs(Path::new("/usr/local/lib"), |n| n.contains("-linux-"));
        let local_pythons = subdirs(Path::new("/usr/local/lib"), |n| n.starts_with("python3"));
        let mut perl_pure = var("PERL5LIB").unwrap_or_default();
        perl_pure.extend(subdirs(Path::new("/usr/local/share/perl"), |_| true));
        perl_pure.push("/usr/share/perl5".into());
        let mut perl_native = Vec::new();
        for arch in local_lib_arch.iter().chain(&usr_lib_arch) {
            perl_native.extend(subdirs(&arch.join("perl"), |_| true));
            perl_native.extend(subdirs(&arch.join("perl5"), |_| true));
            perl_native.push(arch.join("perl-base"));
        }
        let mut python = var("PYTHONPATH").unwrap_or_default();
        for dir in &local_pythons {
            python.extend([dir.join("dist-packages"), dir.join("site-packages")]);
        }
        python.push("/usr/lib/python3/dist-packages".into());
        let exists = |dirs: Vec<PathBuf>| dirs.into_iter().filter(|d| d.is_dir()).collect();
        HostLibs {
            perl_pure: exists(perl_pure),
            perl_native: exists(perl_native),
            python: exists(python),
        }
    }
}

/// The directories in `dir` whose names `keep`, sorted.
fn subdirs(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(&keep))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

pub struct Resolver<'a> {
    pub host: &'a HostLibs,
    pub perl_builtin: &'a BTreeSet<String>,
    pub python_builtin: &'a BTreeSet<String>,
}

impl Resolver<'_> {
    /// The modules of a Perl script in `bin` whose `use lib` and `-I`
    /// directories, absolute, are `libs`.
    pub fn perl(&self, imports: &[Import], libs: &[PathBuf], bin: &Path) -> Vec<Found> {
        let dirs: Vec<PathBuf> = libs.iter().chain(&self.host.perl_pure).cloned().collect();
        self.closure(
            imports,
            |module| self.perl_module(module, &dirs, bin),
            |text, dir| scan::perl(text, dir).imports,
        )
    }

    /// The modules of a Python script in `dir` (the first directory of
    /// `sys.path`).
    pub fn python(&self, imports: &[Import], dir: &Path) -> Vec<Found> {
        let dirs: Vec<PathBuf> = std::iter::once(dir.to_owned())
            .chain(self.host.python.iter().cloned())
            .collect();
        let tops: Vec<Import> = imports
            .iter()
            .map(|i| Import {
                module: i.top_level().to_owned(),
                ..i.clone()
            })
            .collect();
        self.closure(
            &tops,
            |module| self.python_module(module, &dirs),
            |text, _| {
                let imports = scan::python(text).imports;
                imports
                    .iter()
                    .map(|i| Import {
                        module: i.top_level().to_owned(),
                        ..i.clone()
                    })
                    .collect()
            },
        )
    }

    /// `imports` looked up by `lookup`, once each, then what the host
    /// modules among them load (read by `imports_of`), and so on: those
    /// that are not built in.
    fn closure(
        &self,
        imports: &[Import],
        lookup: impl Fn(&str) -> Source,
        imports_of: impl Fn(&str, &Path) -> Vec<Import>,
    ) -> Vec<Found> {
        let mut found: BTreeMap<String, Found> = BTreeMap::new();
        let mut order = Vec::new();
        for import in imports {
            if let Some(seen) = found.get_mut(&import.module) {
                seen.optional &= import.optional;
                continue;
            }
            order.push(import.module.clone());
            found.insert(
                import.module.clone(),
                Found {
                    module: import.module.clone(),
                    line: import.line,
                    optional: import.optional,
                    source: lookup(&import.module),
                    via: None,
                },
            );
        }
        let mut work: Vec<(String, PathBuf)> = order
            .iter()
            .filter_map(|m| match &found[m].source {
                Source::HostPure { path, .. } if path.is_file() => Some((m.clone(), path.clone())),
                _ => None,
            })
            .collect();
        while let Some((parent, path)) = work.pop() {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
            let dir = path.parent().unwrap_or(Path::new("/"));
            for import in imports_of(&text, dir) {
                if !import.eager || import.optional || found.contains_key(&import.module) {
                    continue;
                }
                let source = lookup(&import.module);
                if let Source::HostPure { path, .. } = &source
                    && path.is_file()
                {
                    work.push((import.module.clone(), path.clone()));
                }
                order.push(import.module.clone());
                found.insert(
                    import.module.clone(),
                    Found {
                        module: import.module.clone(),
                        line: import.line,
                        optional: false,
                        source,
                        via: Some(parent.clone()),
                    },
                );
            }
        }
        order
            .into_iter()
            .filter_map(|m| found.remove(&m))
            .filter(|f| f.via.is_none() || f.source != Source::BuiltIn)
            .collect()
    }

    fn perl_module(&self, module: &str, dirs: &[PathBuf], bin: &Path) -> Source {
        if self.perl_builtin.contains(module) {
            return Source::BuiltIn;
        }
        let file = format!("{}.pm", module.replace("::", "/"));
        for dir in dirs {
            let path = dir.join(&file);
            if path.is_file() {
                return match self.loads_xs(module, &path, dirs) {
                    true => Source::HostNative { path },
                    false => Source::HostPure { dir: dir.clone(), path },
                };
            }
        }
        if let Some(path) = self
            .host
            .perl_native
            .iter()
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
        {
            return Source::HostNative { path };
        }
        let hint = bin
            .join(&file)
            .is_file()
            .then_some("it is next to the script, where Perl 5.26 and later no longer look: add `use FindBin; use lib $FindBin::Bin;`");
        Source::Missing { hint }
    }

    /// Whether the Perl module at `path` loads a shared object: it calls
    /// XSLoader or DynaLoader, and its `auto/Foo/Bar/Bar.so` (perlxstut)
    /// is in a library directory.
    fn loads_xs(&self, module: &str, path: &Path, dirs: &[PathBuf]) -> bool {
        let last = module.rsplit("::").next().unwrap_or(module);
        let object = format!("auto/{}/{last}.so", module.replace("::", "/"));
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        (text.contains("XSLoader") || text.contains("DynaLoader"))
            && dirs
                .iter()
                .chain(&self.host.perl_native)
                .any(|d| d.join(&object).is_file())
    }

    /// As CPython's path finder looks in each directory: a package, an
    /// extension module, a module; a directory without `__init__.py` (a
    /// namespace package, PEP 420) counts too.
    fn python_module(&self, module: &str, dirs: &[PathBuf]) -> Source {
        if self.python_builtin.contains(module) {
            return Source::BuiltIn;
        }
        for dir in dirs {
            let package = dir.join(module);
            let init = package.join("__init__.py");
            if let Some(path) = extension_module(dir, module).or_else(|| shared_object_in(&package)) {
                return Source::HostNative { path };
            }
            for path in [init, dir.join(format!("{module}.py")), package] {
                if path.exists() {
                    return Source::HostPure { dir: dir.clone(), path };
                }
            }
        }
        Source::Missing { hint: None }
    }
}

/// `module.so` or `module.TAG.so` (`_yaml.cpython-311-x86_64-linux-gnu.so`)
/// in `dir`.
fn extension_module(dir: &Path, module: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|path| {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(module))
            .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(".so"))
    })
}

/// A `.so` anywhere in the package directory `package`.
fn shared_object_in(package: &Path) -> Option<PathBuf> {
    let mut dirs = vec![package.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "so") => return Some(path),
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn summary(found: &[Found]) -> Vec<(String, String, Option<String>)> {
        found
            .iter()
            .map(|f| {
                let source = match &f.source {
                    Source::BuiltIn => "built in".to_owned(),
                    Source::HostPure { path, .. } => format!("pure {}", path.file_name().unwrap().to_string_lossy()),
                    Source::HostNative { path } => format!("native {}", path.file_name().unwrap().to_string_lossy()),
                    Source::Missing { hint } => format!("missing{}", if hint.is_some() { " (hint)" } else { "" }),
                };
                (f.module.clone(), source, f.via.clone())
            })
            .collect()
    }

    #[test]
    fn perl_modules_are_built_in_pure_xs_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (pure, arch, cgi) = (
            dir.path().join("share"),
            dir.path().join("arch"),
            dir.path().join("cgi"),
        );
        write(
            &pure.join("Web/Form.pm"),
            "package Web::Form;\nuse strict;\nuse Web::Util;\nrequire Lazy::Thing;\n",
        );
        write(&pure.join("Web/Util.pm"), "package Web::Util;\nuse Fast::Parse;\n1;\n");
        write(
            &pure.join("Fast/Parse.pm"),
            "package Fast::Parse;\nrequire XSLoader;\nXSLoader::load();\n",
        );
        write(&arch.join("auto/Fast/Parse/Parse.so"), "");
        write(&arch.join("POSIX.pm"), "package POSIX;\n");
        write(&cgi.join("lib/Site/Page.pm"), "package Site::Page;\n1;\n");
        write(&cgi.join("Local.pm"), "package Local;\n1;\n");
        let host = HostLibs {
            perl_pure: vec![pure.clone()],
            perl_native: vec![arch],
            python: vec![],
        };
        let builtin = set(&["strict", "CGI::Util"]);
        let resolver = Resolver {
            host: &host,
            perl_builtin: &builtin,
            python_builtin: &BTreeSet::new(),
        };
        let scan = scan::perl(
            "use strict;\nuse Web::Form;\nuse POSIX;\nuse Site::Page;\nuse Local;\nuse Nowhere;\n\
             eval { require Nowhere::Optional };\nuse Site::Page;\n",
            &cgi,
        );
        let found = resolver.perl(&scan.imports, &[cgi.join("lib")], &cgi);
        assert_eq!(
            summary(&found),
            [
                ("strict".into(), "built in".into(), None),
                ("Web::Form".into(), "pure Form.pm".into(), None),
                ("POSIX".into(), "native POSIX.pm".into(), None),
                ("Site::Page".into(), "pure Page.pm".into(), None),
                ("Local".into(), "missing (hint)".into(), None),
                ("Nowhere".into(), "missing".into(), None),
                ("Nowhere::Optional".into(), "missing".into(), None),
                ("Web::Util".into(), "pure Util.pm".into(), Some("Web::Form".into())),
                ("Fast::Parse".into(), "native Parse.pm".into(), Some("Web::Util".into())),
            ]
        );
        assert!(found[6].optional && !found[5].optional);
        let Source::HostPure { dir, .. } = &found[1].source else {
            panic!()
        };
        assert_eq!(dir, &pure);
    }

    #[test]
    fn python_modules_are_built_in_pure_c_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (site, cgi) = (dir.path().join("dist-packages"), dir.path().join("cgi"));
        write(
            &site.join("markup/__init__.py"),
            "import os\nfrom markup import parse\nimport yaml\ntry:\n    import ujson\nexcept ImportError:\n    pass\n",
        );
        write(&site.join("yaml/__init__.py"), "from yaml._yaml import *\n");
        write(&site.join("yaml/_yaml.cpython-311-x86_64-linux-gnu.so"), "");
        write(&site.join("_speedups.abi3.so"), "");
        write(&site.join("six.py"), "import sys\n");
        write(&cgi.join("helpers.py"), "import markup\n");
        let host = HostLibs {
            perl_pure: vec![],
            perl_native: vec![],
            python: vec![site],
        };
        let builtin = set(&["os", "sys", "json"]);
        let resolver = Resolver {
            host: &host,
            perl_builtin: &BTreeSet::new(),
            python_builtin: &builtin,
        };
        let scan = scan::python("import os.path, json\nimport helpers, six\nimport _speedups\nimport requests\n");
        assert_eq!(
            summary(&resolver.python(&scan.imports, &cgi)),
            [
                ("os".into(), "built in".into(), None),
                ("json".into(), "built in".into(), None),
                ("helpers".into(), "pure helpers.py".into(), None),
                ("six".into(), "pure six.py".into(), None),
                ("_speedups".into(), "native _speedups.abi3.so".into(), None),
                ("requests".into(), "missing".into(), None),
                ("markup".into(), "pure __init__.py".into(), Some("helpers".into())),
                (
                    "yaml".into(),
                    "native _yaml.cpython-311-x86_64-linux-gnu.so".into(),
                    Some("markup".into())
                ),
            ]
        );
    }
}
