//! The modules an interpreter has built in, read from its module file.
//!
//! Both WASI builds carry their standard library inside the module, as the
//! files of an in-memory file system held in data segments. They are read
//! from the memory the module starts with ([`sandbox::initial_memory`]), where
//! a name that straddles two segments is whole again (CPython's file system
//! is cut into some 24,000 segments):
//!
//! - Perl (zeroperl): `Config.pm`'s `privlibexp`, `archlibexp`, `sitelibexp`
//!   and `sitearchexp` are the library directories of `@INC`; the embedded
//!   file system keeps each file's absolute path as a C string, so every
//!   NUL-delimited `DIR/Foo/Bar.pm` is the module `Foo::Bar`.
//! - Python (CPython): the pure-Python library is a zip (`python312.zip`,
//!   imported as PEP 273 describes), found by its end of central directory
//!   record (PKWARE's APPNOTE.TXT §4.3.16) and listed by its central
//!   directory (§4.3.12). The modules written in C are compiled in and named
//!   by `_PyImport_Inittab` (CPython's `Modules/config.c`), found by the two
//!   entries every build has there in this order, `{"builtins", NULL}` and
//!   `{"sys", NULL}`.
//!
//! A module in which these are not found is refused, rather than taken to
//! have no library and call every module missing.

use std::collections::BTreeSet;
use std::path::Path;

use wasmparser::{Parser, Payload, TypeRef};

use crate::config::Driver;
use crate::sandbox;

/// `Config.pm`'s keys whose values are the library directories of `@INC`.
const PERL_LIBRARY_KEYS: [&str; 4] = ["privlibexp", "archlibexp", "sitelibexp", "sitearchexp"];
/// A zip's end of central directory record, and a central directory entry.
const ZIP_END: &[u8] = b"PK\x05\x06";
const ZIP_ENTRY: &[u8] = b"PK\x01\x02";

/// The modules that `module`, an interpreter of kind `driver`, has built in:
/// Perl module names (`List::Util`) or Python top-level names (`json`).
pub fn read(driver: Driver, module: &Path) -> Result<BTreeSet<String>, String> {
    let wasm = std::fs::read(module).map_err(|e| e.to_string())?;
    let memory = sandbox::initial_memory(&wasm)
        .map_err(|e| format!("not a WebAssembly module: {e}"))?
        .ok_or("its data is not in one memory of its own at constant offsets")?;
    match driver {
        Driver::Perl => perl(&memory.bytes),
        Driver::Python => python(&memory.bytes, function_table(&wasm)?),
    }
}

fn perl(memory: &[u8]) -> Result<BTreeSet<String>, String> {
    let mut roots = Vec::new();
    let mut paths = Vec::new();
    // Config.pm's lines and the file system's C strings, in one pass.
    for piece in memory.split(|&b| b == 0 || b == b'\n') {
        if piece.starts_with(b"/") && piece.ends_with(b".pm") {
            paths.push(piece);
        } else if let Some(root) = config_library(piece) {
            roots.push(root);
        }
    }
    if roots.is_empty() {
        return Err("no Config.pm naming its library directories (privlibexp) in it".into());
    }
    // The longest first: archlib lies inside privlib.
    roots.sort_by_key(|root| std::cmp::Reverse(root.len()));
    roots.dedup();
    let modules: BTreeSet<String> = paths
        .iter()
        .filter_map(|path| {
            let root = roots
                .iter()
                .find(|root| path.starts_with(root) && path.get(root.len()) == Some(&b'/'))?;
            let file = std::str::from_utf8(&path[root.len() + 1..path.len() - ".pm".len()]).ok()?;
            Some(file.replace('/', "::"))
        })
        .collect();
    if !modules.contains("strict") {
        let roots: Vec<_> = roots.iter().map(|r| String::from_utf8_lossy(r)).collect();
        return Err(format!(
            "no strict.pm under its library directories ({})",
            roots.join(", ")
        ));
    }
    Ok(modules)
}

/// The directory of a `Config.pm` line like
/// `    archlibexp       => '/zeroperl/lib/5.42.0/wasm32-wasi',`.
fn config_library(line: &[u8]) -> Option<&[u8]> {
    let line = line.trim_ascii_start();
    let rest = PERL_LIBRARY_KEYS
        .iter()
        .find_map(|key| line.strip_prefix(key.as_bytes()))?;
    let rest = rest.trim_ascii_start().strip_prefix(b"=>")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"'")?;
    let path = &rest[..rest.iter().position(|&b| b == b'\'')?];
    path.starts_with(b"/").then_some(path)
}

fn python(memory: &[u8], table: u64) -> Result<BTreeSet<String>, String> {
    let mut modules: BTreeSet<String> = find_all(memory, ZIP_END)
        .filter_map(|end| central_directory(memory, end))
        .flatten()
        .filter_map(|entry| top_level(&entry).map(str::to_owned))
        .collect();
    if !modules.contains("os") {
        return Err("no zip of its standard library (holding os.pyc) in it".into());
    }
    modules.extend(inittab(memory, table).ok_or("no _PyImport_Inittab (its modules written in C) in it")?);
    Ok(modules)
}

/// The file names in the central directory that the end of central
/// directory record at `end` describes, if it is one: the directory lies
/// right before the record, and holds as many entries as it says.
fn central_directory(memory: &[u8], end: usize) -> Option<Vec<String>> {
    let record = memory.get(end..end + 22)?;
    let entries = u16::from_le_bytes([record[10], record[11]]);
    let size = u32::from_le_bytes([record[12], record[13], record[14], record[15]]);
    let mut at = end.checked_sub(usize::try_from(size).ok()?)?;
    let mut names = Vec::with_capacity(entries.into());
    for _ in 0..entries {
        let header = memory.get(at..at + 46)?;
        if !header.starts_with(ZIP_ENTRY) {
            return None;
        }
        let field = |i: usize| usize::from(u16::from_le_bytes([header[i], header[i + 1]]));
        let (name, extra, comment) = (field(28), field(30), field(32));
        names.push(String::from_utf8_lossy(memory.get(at + 46..at + 46 + name)?).into_owned());
        at += 46 + name + extra + comment;
    }
    (at == end).then_some(names)
}

/// The importable name a zip entry provides: `json` for `json/decoder.pyc`,
/// `os` for `os.pyc`.
fn top_level(entry: &str) -> Option<&str> {
    let name = match entry.split_once('/') {
        Some((package, _)) => package,
        None => entry.strip_suffix(".pyc").or_else(|| entry.strip_suffix(".py"))?,
    };
    is_identifier(name.as_bytes()).then_some(name)
}

/// The names in `_PyImport_Inittab`: an array of `{const char *name;
/// PyObject *(*initfunc)(void);}`, in wasm32 a pointer into memory and an
/// index into the function table, 8 bytes, ended by `{0, 0}`.
fn inittab(memory: &[u8], table: u64) -> Option<Vec<String>> {
    let word = |at: usize| {
        let b = memory.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // A linker merges C strings that end alike ("sys" is the end of
    // "colorsys"), so a name need not follow a NUL.
    let names = |pointer: Option<u32>, name: &[u8]| {
        pointer
            .filter(|&p| p != 0)
            .and_then(|p| memory.get(p as usize..))
            .is_some_and(|rest| rest.starts_with(name) && rest.get(name.len()) == Some(&0))
    };
    // The array is 4-byte aligned, as its pointers are.
    let anchor = (0..memory.len().saturating_sub(16)).step_by(4).find(|&at| {
        word(at + 4) == Some(0)
            && word(at + 12) == Some(0)
            && names(word(at), b"builtins")
            && names(word(at + 8), b"sys")
    })?;
    let name = |pointer: u32| c_identifier(memory, pointer as usize);
    // Back over the entries before: each names a module and a function.
    let mut start = anchor;
    while let Some(previous) = start.checked_sub(8) {
        let (Some(pointer), Some(function)) = (word(previous), word(previous + 4)) else {
            break;
        };
        if function == 0 || u64::from(function) >= table || name(pointer).is_none() {
            break;
        }
        start = previous;
    }
    let mut names = Vec::new();
    for at in (start..).step_by(8) {
        match (word(at)?, word(at + 4)?) {
            (0, 0) => return Some(names),
            (pointer, _) => names.push(name(pointer)?.to_owned()),
        }
    }
    None
}

/// The NUL-terminated module name at `at`, if there is one.
fn c_identifier(memory: &[u8], at: usize) -> Option<&str> {
    let rest = memory.get(at..)?;
    let name = &rest[..rest.iter().take(64).position(|&b| b == 0)?];
    is_identifier(name).then(|| std::str::from_utf8(name).ok()).flatten()
}

/// A Python name, dotted or not.
fn is_identifier(name: &[u8]) -> bool {
    name.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name.iter().all(|b| b.is_ascii_alphanumeric() || b"_.".contains(b))
}

/// The initial size of table 0, into which a C function pointer indexes.
fn function_table(wasm: &[u8]) -> Result<u64, String> {
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            // Imported tables come first in the index space.
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if let TypeRef::Table(table) = import.map_err(|e| e.to_string())?.ty {
                        return Ok(table.initial);
                    }
                }
            }
            Payload::TableSection(tables) => {
                if let Some(table) = tables.into_iter().next() {
                    return Ok(table.map_err(|e| e.to_string())?.ty.initial);
                }
            }
            _ => {}
        }
    }
    Err("it has no function table".into())
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, window)| *window == needle)
        .map(|(at, _)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("\\{b:02x}")).collect()
    }

    /// A module whose memory holds `segments` (offset, bytes) and whose
    /// function table has 10 entries.
    fn module(dir: &Path, segments: &[(u32, Vec<u8>)]) -> std::path::PathBuf {
        let data: String = segments
            .iter()
            .map(|(at, bytes)| format!("(data (i32.const {at}) \"{}\")", hex(bytes)))
            .collect();
        let wat = format!("(module (memory 1) (table 10 funcref) {data})");
        let path = dir.join("interpreter.wasm");
        std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
        path
    }

    #[test]
    fn perl_modules_are_the_files_under_configs_library() {
        let dir = tempfile::tempdir().unwrap();
        let config = b"tie %Config, 'Config', {\n    archlibexp => '/zp/lib/arch',\n    \
                       privlibexp      => '/zp/lib',\n    sitelibexp => '/zp/site',\n}\n";
        // A name cut by a segment boundary.
        let table = (
            b"\0/zp/lib/strict.pm\0/zp/lib/arch/List/Ut".to_vec(),
            b"il.pm\0/zp/site/Foo/Bar.pm\0/zp/lib/Carp.pod\0/elsewhere/X.pm\0".to_vec(),
        );
        let split = 1000 + table.0.len() as u32;
        let path = module(dir.path(), &[(100, config.to_vec()), (1000, table.0), (split, table.1)]);
        let modules = read(Driver::Perl, &path).unwrap();
        assert_eq!(
            modules.into_iter().collect::<Vec<_>>(),
            ["Foo::Bar", "List::Util", "strict"]
        );
    }

    #[test]
    fn a_perl_without_its_library_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = module(dir.path(), &[(0, b"/zp/lib/strict.pm\0".to_vec())]);
        assert!(read(Driver::Perl, &path).unwrap_err().contains("privlibexp"));
        let path = module(
            dir.path(),
            &[(0, b"privlibexp => '/zp/lib',\n/zp/lib/Carp.pm\0".to_vec())],
        );
        assert!(read(Driver::Perl, &path).unwrap_err().contains("strict.pm"));
    }

    /// A zip's central directory listing `names`, and its end record.
    fn zip_directory(names: &[&str]) -> Vec<u8> {
        let mut directory = Vec::new();
        for name in names {
            let mut header = vec![0u8; 46];
            header[..4].copy_from_slice(ZIP_ENTRY);
            header[28..30].copy_from_slice(&(name.len() as u16).to_le_bytes());
            directory.extend(header);
            directory.extend(name.as_bytes());
        }
        let mut end = vec![0u8; 22];
        end[..4].copy_from_slice(ZIP_END);
        end[10..12].copy_from_slice(&(names.len() as u16).to_le_bytes());
        end[12..16].copy_from_slice(&(directory.len() as u32).to_le_bytes());
        directory.extend(end);
        directory
    }

    /// The names of `entries` at 2000, and at 3000 an inittab of them.
    fn inittab_segments(entries: &[(&str, u32)]) -> Vec<(u32, Vec<u8>)> {
        let mut strings = vec![0u8];
        let mut table = Vec::new();
        for (name, function) in entries {
            table.extend((2000 + strings.len() as u32).to_le_bytes());
            table.extend(function.to_le_bytes());
            strings.extend(name.as_bytes());
            strings.push(0);
        }
        table.extend([0u8; 8]);
        vec![(2000, strings), (3000, table)]
    }

    #[test]
    fn python_modules_are_the_zip_and_the_inittab() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_directory(&[
            "os.pyc",
            "json/__init__.pyc",
            "json/decoder.pyc",
            "_sysconfigdata__wasi_wasm32-wasi.pyc",
            "README",
        ]);
        let mut segments = vec![(8, b"PK\x05\x06 not a record".to_vec()), (100, zip)];
        // Before math's entry, one whose function is no table index: not
        // part of it.
        segments.extend(inittab_segments(&[
            ("zlib", 999_999),
            ("math", 5),
            ("builtins", 0),
            ("sys", 0),
            ("gc", 6),
        ]));
        let path = module(dir.path(), &segments);
        let modules = read(Driver::Python, &path).unwrap();
        assert_eq!(
            modules.into_iter().collect::<Vec<_>>(),
            ["builtins", "gc", "json", "math", "os", "sys"]
        );
    }

    #[test]
    fn a_python_without_its_library_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = module(dir.path(), &inittab_segments(&[("builtins", 0), ("sys", 0)]));
        assert!(read(Driver::Python, &path).unwrap_err().contains("os.pyc"));
        let path = module(dir.path(), &[(100, zip_directory(&["os.pyc"]))]);
        assert!(read(Driver::Python, &path).unwrap_err().contains("_PyImport_Inittab"));
        std::fs::write(&path, b"not wasm").unwrap();
        assert!(
            read(Driver::Python, &path)
                .unwrap_err()
                .contains("not a WebAssembly module")
        );
    }
}
