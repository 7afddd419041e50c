//! `wcgid migrate` on a cgi-bin built in the test's directory: a portable
//! Perl and Python script, one using an XS module (POSIX), a shell script, a
//! PHP page and a native program. The report names each and why, the
//! configuration written passes `wcgid check`, the directory is left as it
//! was, and bad input exits 64 as `check` does.
//!
//! The interpreters are the real ones (`support::interpreters`): migrate
//! reads their built-in modules from them, and `check` boots them.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::daemon::{self, Finished};
use crate::support::tests;

tests! {
    Alone migrate_reports_each_script_and_writes_a_config_that_checks,
    Alone migrate_refuses_bad_input_with_64,
}

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// `check` snapshots and compiles both interpreters when its cache has not
/// got them: about a minute each on a busy machine.
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// The cgi-bin: `(name, text)`; `true` is /bin/true, copied.
const SITE: &[(&str, &str)] = &[
    (
        "hello.pl",
        "#!/usr/bin/perl -wT\nuse strict;\nuse warnings;\nuse FindBin;\nuse lib \"$FindBin::Bin/lib\";\n\
         use List::Util qw(sum);\nuse Site::Page;\nprint \"Content-Type: text/plain\\n\\n\", sum(1, 2), \"\\n\";\n",
    ),
    ("lib/Site/Page.pm", "package Site::Page;\nuse strict;\n1;\n"),
    (
        "when.cgi",
        "#!/usr/bin/perl\nuse strict;\nuse POSIX qw(strftime);\nprint \"Content-Type: text/plain\\n\\n\";\n",
    ),
    (
        "greet.py",
        "#!/usr/bin/env python3\nimport os, sys, json\nfrom helpers import greet\n\
         print('Content-Type: text/plain\\n')\nprint(greet(os.environ.get('QUERY_STRING', '')))\n",
    ),
    ("helpers.py", "def greet(name):\n    return 'Hello, ' + name\n"),
    (
        "uptime.sh",
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nuptime\n",
    ),
    ("index.php", "<?php echo 'hello'; ?>\n"),
    ("notes.txt", "not a script\n"),
];

/// Writes [`SITE`] under `dir/site/cgi-bin`, with an interpreters directory
/// `dir/interpreters`. Returns both.
fn site(dir: &Path) -> (PathBuf, PathBuf) {
    let root = crate::support::stable_dir(dir).join("site/cgi-bin");
    for (name, text) in SITE {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::copy("/bin/true", root.join("true")).unwrap();
    let interpreters = dir.join("interpreters");
    std::fs::create_dir_all(&interpreters).unwrap();
    let real = crate::support::interpreters().unwrap();
    for name in ["perl.wasm", "python.wasm"] {
        std::os::unix::fs::symlink(real.join(name), interpreters.join(name)).unwrap();
    }
    (root, interpreters)
}

/// Every path under `root` with its size, mode and modification time.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u64, u32, i64, i64)> {
    let mut seen = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            if meta.is_dir() {
                dirs.push(path.clone());
            }
            seen.insert(path, (meta.len(), meta.mode(), meta.mtime(), meta.mtime_nsec()));
        }
    }
    seen
}

fn migrate(dir: &Path, root: &Path, interpreters: &Path, output: &Path, extra: &[&str]) -> Finished {
    let paths = [root, interpreters, output].map(|p| p.display().to_string());
    let mut args = vec!["migrate", &paths[0], "--interpreters", &paths[1], "-o", &paths[2]];
    args.extend_from_slice(extra);
    daemon::run(dir, &args, &[], RUN_TIMEOUT)
}

/// The report's line for `name`.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{report}"))
}

fn migrate_reports_each_script_and_writes_a_config_that_checks(dir: &Path) {
    // As migrate writes it.
    let dir = &dir.canonicalize().unwrap();
    let (root, interpreters) = site(dir);
    let output = dir.join("legacy.toml");
    let before = tree(root.parent().unwrap());
    let run = migrate(dir, &root, &interpreters, &output, &[]);
    assert!(run.status.success(), "{}; stderr:\n{}", run.status, run.stderr);
    let report = &run.stdout;
    for (name, needles) in [
        ("hello.pl", &["Perl", "portable with warnings", "taint"][..]),
        ("greet.py", &["Python", "portable"]),
        ("when.cgi", &["Perl", "not portable", "POSIX is XS/C"]),
        ("uptime.sh", &["shell", "not portable", "no fork/exec"]),
        ("index.php", &["PHP", "not portable", "no WASI build of PHP"]),
        ("true", &["ELF", "rebuild for WASI"]),
        ("helpers.py", &["not a script"]),
        ("lib/", &["not a script", "module tree"]),
        ("notes.txt", &["not a script"]),
    ] {
        let line = line(report, name);
        for needle in needles {
            assert!(line.contains(needle), "{name}: {needle:?} not in {line:?}\n{report}");
        }
    }
    assert!(!line(report, "greet.py").contains("not portable"), "{report}");
    assert!(report.contains("3 not portable"), "{report}");
    // The modules of the scripts that do not have them all built in.
    for (module, needles) in [
        ("Site::Page", &["line 7", "host, pure", "/lib)"][..]),
        ("POSIX", &["line 3", "host, XS/C"]),
        ("helpers", &["line 3", "host, pure"]),
    ] {
        let line = line(report, module);
        for needle in needles {
            assert!(line.contains(needle), "{module}: {needle:?} not in {line:?}\n{report}");
        }
    }
    assert!(report.contains("ProxyPassMatch \"^/cgi-bin/(.*)$\""), "{report}");
    assert!(
        report.contains(&format!("root {};", root.parent().unwrap().display())),
        "{report}"
    );
    assert_eq!(tree(root.parent().unwrap()), before, "migrate changed the cgi-bin");

    let config = std::fs::read_to_string(&output).unwrap();
    for needle in [
        format!("root = \"{}\"", root.display()),
        format!("module = \"{}\"", interpreters.join("perl.wasm").display()),
        format!("lib = [\"{}\"]", root.join("lib").display()),
        "preload = [\"FindBin\", \"List::Util\"]".into(),
        "preload = [\"json\", \"os\", \"sys\"]".into(),
    ] {
        assert!(config.contains(&needle), "{needle:?} not in:\n{config}");
    }
    let cache = crate::support::shared_cache_dir("legacy");
    let check = daemon::run(
        dir,
        &["check", "-c", &output.display().to_string()],
        &[("WCGID_SERVER__CACHE_DIR", &*cache.to_string_lossy())],
        CHECK_TIMEOUT,
    );
    assert!(check.status.success(), "{}; stderr:\n{}", check.status, check.stderr);
}

fn migrate_refuses_bad_input_with_64(dir: &Path) {
    let (root, interpreters) = site(dir);
    let output = dir.join("out.toml");
    let refused = |run: Finished, needles: &[&str]| {
        assert_eq!(run.status.code(), Some(64), "stderr:\n{}", run.stderr);
        for needle in needles {
            assert!(run.stderr.contains(needle), "{needle:?} not in:\n{}", run.stderr);
        }
    };
    let missing = dir.join("no-such-cgi-bin");
    refused(
        migrate(dir, &missing, &interpreters, &output, &[]),
        &[&missing.display().to_string()],
    );
    let empty = dir.join("no-interpreters");
    std::fs::create_dir_all(&empty).unwrap();
    refused(
        migrate(dir, &root, &empty, &output, &[]),
        &["perl.wasm", "scripts/fetch-interpreters"],
    );
    std::fs::write(&output, "# mine\n").unwrap();
    refused(migrate(dir, &root, &interpreters, &output, &[]), &["exists", "--force"]);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "# mine\n");
    let forced = migrate(dir, &root, &interpreters, &output, &["--force"]);
    assert!(forced.status.success(), "stderr:\n{}", forced.stderr);
    assert!(std::fs::read_to_string(&output).unwrap().contains("[cgi_bin]"));
    let leftovers = std::fs::read_dir(dir).unwrap().filter(|e| {
        let name = e.as_ref().unwrap().file_name();
        name.to_string_lossy().starts_with(".wcgid-migrate-")
    });
    assert_eq!(leftovers.count(), 0, "a temporary file is left in {}", dir.display());
}
