//! What each file of a cgi-bin directory is, as the web server that ran it
//! would tell: its `#!` line names the program `execve(2)` runs, else its
//! extension says (`.php` for mod_php or php-fpm, `.wasm` for wcgid), else
//! its first bytes (`\x7fELF`, a native program). Hidden files are skipped;
//! a `lib/` or `__pycache__/` directory is one entry, a module tree.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cgi::shebang::{MAX_LINE, Shebang};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Perl,
    Python,
    /// `#!/usr/bin/python2`.
    Python2,
    Ruby,
    JavaScript,
    Shell,
    Php,
    WebAssembly,
    Elf,
    /// Not run by the web server: why.
    NotAScript(&'static str),
    /// Nothing says what runs it: why.
    Unknown(String),
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Perl => "Perl",
            Kind::Python => "Python",
            Kind::Python2 => "Python 2",
            Kind::Ruby => "Ruby",
            Kind::JavaScript => "JavaScript",
            Kind::Shell => "shell",
            Kind::Php => "PHP",
            Kind::WebAssembly => "WebAssembly",
            Kind::Elf => "ELF binary",
            Kind::NotAScript(_) => "-",
            Kind::Unknown(_) => "unknown",
        }
    }
}

#[derive(Debug)]
pub struct File {
    /// Relative to the cgi-bin directory; a module tree's ends with `/`.
    pub name: PathBuf,
    pub path: PathBuf,
    pub kind: Kind,
    pub shebang: Option<Shebang>,
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "ksh", "ksh93", "mksh", "zsh", "csh", "tcsh", "fish", "busybox",
];
const DATA: &[&str] = &[
    "txt", "html", "htm", "shtml", "css", "json", "xml", "csv", "tsv", "png", "jpg", "jpeg", "gif", "ico", "svg",
    "webp", "pdf", "dat", "db", "sqlite", "conf", "cfg", "ini", "yml", "yaml", "md", "pod", "log", "tmpl", "tpl", "tt",
    "map", "bak", "old", "orig", "gz", "zip", "tar",
];
const MODULE_TREES: &[&str] = &["lib", "__pycache__"];

/// Every file under `root`, sorted by name. Only `root` itself being
/// unreadable is an error; what cannot be read below it is listed as such.
pub fn walk(root: &Path) -> std::io::Result<Vec<File>> {
    let mut files = Vec::new();
    let entries = sorted_entries(root)?;
    let mut stack = vec![entries];
    while let Some(entries) = stack.last_mut() {
        let Some(path) = entries.pop() else {
            stack.pop();
            continue;
        };
        let name = path.strip_prefix(root).unwrap_or(&path).to_owned();
        let unknown = |why: String| File {
            name: name.clone(),
            path: path.clone(),
            kind: Kind::Unknown(why),
            shebang: None,
        };
        let file_name = path.file_name().unwrap_or(OsStr::new(""));
        if file_name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let linked = path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
        let meta = match path.metadata() {
            Ok(meta) => meta,
            Err(e) => {
                files.push(unknown(format!("unreadable: {e}")));
                continue;
            }
        };
        if meta.is_dir() {
            let tree = |why| File {
                name: name.join(""),
                path: path.clone(),
                kind: Kind::NotAScript(why),
                shebang: None,
            };
            if linked {
                // wcgid refuses a path that leaves the root through a link.
                files.push(tree("a link to a directory, not followed"));
            } else if MODULE_TREES.iter().any(|t| file_name == *t) {
                files.push(tree("a module tree"));
            } else {
                match sorted_entries(&path) {
                    Ok(entries) => stack.push(entries),
                    Err(e) => files.push(unknown(format!("unreadable: {e}"))),
                }
            }
            continue;
        }
        match classify(&path) {
            Ok((kind, shebang)) => files.push(File {
                name,
                path,
                kind,
                shebang,
            }),
            Err(e) => files.push(unknown(format!("unreadable: {e}"))),
        }
    }
    Ok(files)
}

/// The entries of `dir`, last name first (popped in order).
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by(|a, b| b.cmp(a));
    Ok(entries)
}

fn classify(path: &Path) -> std::io::Result<(Kind, Option<Shebang>)> {
    let mut head = Vec::with_capacity(MAX_LINE);
    std::fs::File::open(path)?
        .take(MAX_LINE as u64)
        .read_to_end(&mut head)?;
    if head.starts_with(b"\x7fELF") {
        return Ok((Kind::Elf, None));
    }
    if let Some(shebang) = Shebang::parse(&head) {
        return Ok((by_program(&shebang.program), Some(shebang)));
    }
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let kind = match extension.as_str() {
        "pl" => Kind::Perl,
        "py" => Kind::Python,
        "rb" => Kind::Ruby,
        "js" | "mjs" => Kind::JavaScript,
        "sh" | "bash" => Kind::Shell,
        "php" | "php3" | "php4" | "php5" | "phtml" => Kind::Php,
        "wasm" if head.starts_with(b"\0asm") => Kind::WebAssembly,
        "wasm" => Kind::Unknown("named .wasm but not WebAssembly: `wcgid check` refuses it".into()),
        "pm" => Kind::NotAScript("a Perl module"),
        "pyc" => Kind::NotAScript("compiled Python"),
        e if DATA.contains(&e) => Kind::NotAScript("data"),
        _ if head.contains(&0) => Kind::NotAScript("binary data"),
        _ => Kind::Unknown("no #! line, and an extension no interpreter answers to".into()),
    };
    Ok((kind, None))
}

fn by_program(program: &str) -> Kind {
    match program {
        p if p.starts_with("perl") => Kind::Perl,
        p if p.starts_with("python2") => Kind::Python2,
        p if p.starts_with("python") => Kind::Python,
        p if p.starts_with("ruby") => Kind::Ruby,
        "node" | "nodejs" | "qjs" | "deno" => Kind::JavaScript,
        p if p.starts_with("php") => Kind::Php,
        p if SHELLS.contains(&p) => Kind::Shell,
        p => Kind::Unknown(format!("#! names {p}, which no interpreter here runs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_apart_by_their_line_extension_or_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        };
        write("a.cgi", b"#!/usr/bin/perl -wT\nprint 1;\n");
        write("b.py", b"print('x')\n");
        write("c", b"#!/usr/bin/env python2.7\n");
        write("d.sh", b"echo hi\n");
        write("e", b"#!/bin/bash\n");
        write("f.php", b"<?php echo 1; ?>\n");
        write("g", b"#!/usr/bin/php-cgi\n");
        write("h", b"\x7fELF\x02\x01\x01");
        write("i.wasm", b"\0asm\x01\0\0\0");
        write("j.wasm", b"not wasm");
        write("k.rb", b"puts 1\n");
        write("l", b"#!/usr/bin/node\n");
        write("m.txt", b"notes\n");
        write("n", b"plain text, no line\n");
        write("o", b"#!/usr/bin/awk -f\n");
        write("p.pm", b"package P; 1;\n");
        write("lib/My/Module.pm", b"package My::Module; 1;\n");
        write("sub/q.pl", b"print 1;\n");
        write(".hidden", b"#!/bin/sh\n");
        write(".git/config", b"[core]\n");
        let files = walk(dir.path()).unwrap();
        let got: Vec<(String, Kind)> = files
            .iter()
            .map(|f| (f.name.display().to_string(), f.kind.clone()))
            .collect();
        let unknown = |why: &str| Kind::Unknown(why.into());
        assert_eq!(
            got,
            [
                ("a.cgi".into(), Kind::Perl),
                ("b.py".into(), Kind::Python),
                ("c".into(), Kind::Python2),
                ("d.sh".into(), Kind::Shell),
                ("e".into(), Kind::Shell),
                ("f.php".into(), Kind::Php),
                ("g".into(), Kind::Php),
                ("h".into(), Kind::Elf),
                ("i.wasm".into(), Kind::WebAssembly),
                (
                    "j.wasm".into(),
                    unknown("named .wasm but not WebAssembly: `wcgid check` refuses it")
                ),
                ("k.rb".into(), Kind::Ruby),
                ("l".into(), Kind::JavaScript),
                ("lib/".into(), Kind::NotAScript("a module tree")),
                ("m.txt".into(), Kind::NotAScript("data")),
                (
                    "n".into(),
                    unknown("no #! line, and an extension no interpreter answers to")
                ),
                ("o".into(), unknown("#! names awk, which no interpreter here runs")),
                ("p.pm".into(), Kind::NotAScript("a Perl module")),
                ("sub/q.pl".into(), Kind::Perl),
            ]
        );
        assert_eq!(files[0].shebang.as_ref().unwrap().args, ["-wT"]);
    }

    #[test]
    fn an_unreadable_root_is_an_error() {
        assert!(walk(Path::new("/nonexistent/cgi-bin")).is_err());
    }
}
