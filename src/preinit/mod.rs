//! `wcgid preinit`: Wizer-compatible pre-initialization, run on Wasmer.
//!
//! Like Wizer: instantiate the module, call `_initialize` if it exports one,
//! then the init function (`wizer-initialize`, else `wizer.initialize`, or
//! `--init-func`), snapshot the defined mutable globals and the non-zero
//! bytes of memory, and write the module again with the snapshot as global
//! initializers and data segments, its start section and init export gone
//! (and `_initialize`, already run). `--rename-func DST=SRC` then makes the
//! function exported as SRC the export DST (`_start=wizer.resume`).
//!
//! The state is read through exports added to a copy of the module for the
//! run (the original is rewritten, not the copy). Refused, with a message:
//! imported memories, globals and tables (their state lives outside the
//! module); code that can set table elements (`table.set`, `table.fill`,
//! `table.copy`, `table.init`) and a table grown by the init (the snapshot
//! does not record tables; compilers emit these only for reference types);
//! and a global left holding a non-null reference.
//!
//! wasi-libc reads the environment and the preopened directories once and
//! caches them: an init that reads either bakes init-time values into every
//! request. This is warned about; a module can re-read them in the function
//! it exports as `wizer.resume` and is renamed to `_start` (see
//! docs/preinit.md).
//!
//! A module Wizer already pre-initialized has no init export left; it is
//! taken as it is (its state snapshotted again), with a note.

pub mod interpreter;
mod module;

use std::path::{Path, PathBuf};

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmparser::{DataKind, ExternalKind, Operator, Parser, Payload, TypeRef};

use crate::sandbox::{self, Engine, Mount, Probe, Scalar, Stdio};
use module::Sections;

/// The init exports looked for, in order, without `--init-func`.
const INIT_FUNCS: [&str; 2] = ["wizer-initialize", "wizer.initialize"];
/// Zero bytes up to which two non-zero runs of memory share a data segment:
/// a segment costs about as many bytes of encoding.
const MERGE_GAP: usize = 64;
/// Data segments the output may have (validators stop at 100,000).
const MAX_SEGMENTS: usize = 50_000;

pub struct Options {
    pub input: PathBuf,
    pub output: PathBuf,
    pub init_func: Option<String>,
    /// (DST, SRC): the export DST becomes the function exported as SRC.
    pub renames: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid WebAssembly module: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("{path} cannot be pre-initialized: {why}")]
    Refused { path: PathBuf, why: String },
    #[error(transparent)]
    Run(#[from] sandbox::Error),
    #[error("the pre-initialized module is invalid (a wcgid bug): {0}")]
    Output(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What was done, for the command's report.
#[derive(Debug)]
pub struct Report {
    pub calls: Vec<String>,
    pub globals: usize,
    pub memory_bytes: Vec<usize>,
    pub segments: usize,
    pub data_bytes: usize,
    pub output_bytes: usize,
    pub warnings: Vec<String>,
}

/// Pre-initializes `options.input` into `options.output`.
pub fn run(engine: &Engine, options: &Options) -> Result<Report, Error> {
    let path = &options.input;
    let wasm = std::fs::read(path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let invalid = |why: String| Error::Invalid {
        path: path.clone(),
        why,
    };
    let refused = |why: String| Error::Refused {
        path: path.clone(),
        why,
    };
    wasmparser::validate(&wasm).map_err(|e| invalid(e.to_string()))?;
    let shape = Shape::of(&wasm).map_err(|e| invalid(e.to_string()))?;
    let mut warnings = Vec::new();
    let mut calls = Vec::new();
    if shape.exports_func("_initialize") {
        calls.push("_initialize".to_owned());
    }
    let init = match &options.init_func {
        Some(name) if shape.exports_func(name) => Some(name.clone()),
        Some(name) => return Err(refused(format!("it exports no function `{name}` (--init-func)"))),
        None => INIT_FUNCS.iter().find(|n| shape.exports_func(n)).map(|n| n.to_string()),
    };
    match &init {
        Some(name) => calls.push(name.clone()),
        None => warnings.push(format!(
            "no init function ({}): taking the module's state as it is, e.g. one Wizer already pre-initialized",
            INIT_FUNCS.join(" or ")
        )),
    }
    for (dst, src) in &options.renames {
        if !shape.exports_func(src) {
            return Err(refused(format!("it exports no function `{src}` to rename to `{dst}`")));
        }
    }
    let mut args = sandbox::CStrings::default();
    args.push(&[path.file_name().unwrap_or(path.as_os_str()).as_encoded_bytes()]);
    let launch = Launch {
        mounts: &options.mounts,
        args,
        env: sandbox::CStrings::default(),
        // None: what an init writes there could not be in the snapshot.
        scratch: 0,
    };
    let snapshot = capture(engine, path, &wasm, &shape, launch, &mut sandbox::Calls(&calls))?;
    if snapshot.touched.environ {
        warnings.push(
            "the init read the environment: wasi-libc caches it, so every request would see the init's (empty) \
             environment; re-read it in the function renamed to _start (see docs/preinit.md)"
                .into(),
        );
    }
    if snapshot.touched.preopens {
        warnings.push(
            "the init looked up the preopened directories: wasi-libc caches them; open files per request \
             or re-read them in the function renamed to _start (see docs/preinit.md)"
                .into(),
        );
    }
    let changes = Changes {
        removed: calls.clone(),
        renames: options.renames.clone(),
        ..Changes::default()
    };
    let (output, segments, data_bytes) = rewrite(&wasm, &shape, &snapshot, &changes).map_err(Error::Output)?;
    wasmparser::validate(&output).map_err(|e| Error::Output(e.to_string()))?;
    write_atomically(&options.output, &output).map_err(|source| Error::Write {
        path: options.output.clone(),
        source,
    })?;
    Ok(Report {
        calls,
        globals: snapshot.globals.len(),
        memory_bytes: snapshot.memories.iter().map(|(_, m)| m.len()).collect(),
        segments,
        data_bytes,
        output_bytes: output.len(),
        warnings,
    })
}

/// What an instance being pre-initialized is given.
struct Launch<'a> {
    mounts: &'a [Mount],
    args: sandbox::CStrings,
    env: sandbox::CStrings,
    /// The budget of its scratch directory, 0 for none.
    scratch: u64,
}

/// Runs `init` in an instance of `wasm` and takes its state; refuses what
/// cannot be snapshotted.
fn capture(
    engine: &Engine,
    path: &Path,
    wasm: &[u8],
    shape: &Shape,
    launch: Launch,
    init: &mut dyn sandbox::Initializer,
) -> Result<sandbox::Snapshot, Error> {
    let refused = |why: String| Error::Refused { path: path.into(), why };
    if let Some(import) = &shape.stateful_import {
        return Err(refused(format!(
            "it imports {import}; the state of imported memories, globals and tables lives outside the module"
        )));
    }
    if let Some(op) = shape.table_writer {
        return Err(refused(format!(
            "its code can change table elements ({op}); a snapshot does not record tables"
        )));
    }
    let probe = shape.probe();
    let instrumented = instrument(wasm, &probe).map_err(|why| Error::Invalid { path: path.into(), why })?;
    Ok(engine.snapshot(
        path,
        &instrumented,
        launch.mounts,
        (launch.args, launch.env, launch.scratch),
        init,
        &probe,
        Console,
    )?)
}

/// How the module written from a snapshot differs from the original,
/// besides holding the state.
#[derive(Default)]
struct Changes {
    /// Exports dropped: init functions, already run.
    removed: Vec<String>,
    /// (DST, SRC): the export DST becomes the function exported as SRC.
    renames: Vec<(String, String)>,
    /// A `_start` added, that calls the export named with these arguments
    /// and then WASI's `proc_exit` with what it returns.
    start: Option<(String, Vec<i32>)>,
    /// Custom sections added: (name, content).
    custom: Vec<(&'static str, Vec<u8>)>,
}

/// What of the module matters here.
struct Shape {
    /// An imported memory, global or table, described.
    stateful_import: Option<String>,
    /// An instruction in the code that can set table elements.
    table_writer: Option<&'static str>,
    /// Defined globals: whether each is mutable.
    globals: Vec<bool>,
    memories: u32,
    tables: u32,
    exports: Vec<(String, ExternalKind)>,
}

impl Shape {
    fn of(wasm: &[u8]) -> wasmparser::Result<Shape> {
        let mut shape = Shape {
            stateful_import: None,
            table_writer: None,
            globals: Vec::new(),
            memories: 0,
            tables: 0,
            exports: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        let import = import?;
                        let kind = match import.ty {
                            TypeRef::Memory(_) => "memory",
                            TypeRef::Global(_) => "global",
                            TypeRef::Table(_) => "table",
                            _ => continue,
                        };
                        shape
                            .stateful_import
                            .get_or_insert(format!("a {kind}, {}::{}", import.module, import.name));
                    }
                }
                Payload::GlobalSection(globals) => {
                    for global in globals {
                        shape.globals.push(global?.ty.mutable);
                    }
                }
                Payload::MemorySection(memories) => shape.memories = memories.count(),
                Payload::TableSection(tables) => shape.tables = tables.count(),
                Payload::ExportSection(exports) => {
                    for export in exports {
                        let export = export?;
                        shape.exports.push((export.name.to_owned(), export.kind));
                    }
                }
                Payload::CodeSectionEntry(body) if shape.table_writer.is_none() => {
                    for op in body.get_operators_reader()? {
                        shape.table_writer = match op? {
                            Operator::TableSet { .. } => Some("table.set"),
                            Operator::TableFill { .. } => Some("table.fill"),
                            Operator::TableCopy { .. } => Some("table.copy"),
                            Operator::TableInit { .. } => Some("table.init"),
                            _ => continue,
                        };
                        break;
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }

    fn exports_func(&self, name: &str) -> bool {
        self.exports.iter().any(|(n, k)| n == name && *k == ExternalKind::Func)
    }

    /// Exports through which the snapshot reads the state.
    fn probe(&self) -> Probe {
        Probe {
            globals: (0u32..)
                .zip(&self.globals)
                .filter(|(_, mutable)| **mutable)
                .map(|(i, _)| (i, format!("__wcgid_preinit_global_{i}")))
                .collect(),
            memories: (0..self.memories)
                .map(|i| (i, format!("__wcgid_preinit_memory_{i}")))
                .collect(),
            tables: (0..self.tables)
                .map(|i| (i, format!("__wcgid_preinit_table_{i}")))
                .collect(),
        }
    }
}

/// A copy of `wasm` that also exports what `probe` names.
fn instrument(wasm: &[u8], probe: &Probe) -> Result<Vec<u8>, String> {
    let mut sections = Sections::parse(wasm)?;
    let mut exports = wasm_encoder::ExportSection::new();
    copy_exports(wasm, &mut exports, |_, _| true)?;
    for (kind, list) in [
        (wasm_encoder::ExportKind::Global, &probe.globals),
        (wasm_encoder::ExportKind::Memory, &probe.memories),
        (wasm_encoder::ExportKind::Table, &probe.tables),
    ] {
        for (index, name) in list {
            exports.export(name, kind, *index);
        }
    }
    sections.set(module::EXPORT, module::body(&exports));
    Ok(sections.finish())
}

/// Adds the module's exports for which `keep(name, kind)` holds.
fn copy_exports(
    wasm: &[u8],
    out: &mut wasm_encoder::ExportSection,
    mut keep: impl FnMut(&str, ExternalKind) -> bool,
) -> Result<(), String> {
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(exports) = payload.map_err(|e| e.to_string())? {
            for export in exports {
                let export = export.map_err(|e| e.to_string())?;
                if keep(export.name, export.kind) {
                    RoundtripReencoder
                        .parse_export(out, export)
                        .map_err(|e| format!("{e:?}"))?;
                }
            }
        }
    }
    Ok(())
}

/// The original module with the snapshot in it; also the number of data
/// segments and data bytes the snapshot became.
fn rewrite(
    wasm: &[u8],
    shape: &Shape,
    snapshot: &sandbox::Snapshot,
    changes: &Changes,
) -> Result<(Vec<u8>, usize, usize), String> {
    let mut sections = Sections::parse(wasm)?;
    let mut reencoder = RoundtripReencoder;
    let err = |e: wasm_encoder::reencode::Error<std::convert::Infallible>| format!("{e:?}");
    let mut memories = wasm_encoder::MemorySection::new();
    let mut globals = wasm_encoder::GlobalSection::new();
    let mut data = wasm_encoder::DataSection::new();
    let mut data_count = 0;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::MemorySection(section) => {
                for (index, memory) in (0u32..).zip(section) {
                    let mut ty = reencoder.memory_type(memory.map_err(|e| e.to_string())?).map_err(err)?;
                    if let Some((_, bytes)) = snapshot.memories.iter().find(|(i, _)| *i == index) {
                        // The init may have grown the memory.
                        ty.minimum = ty.minimum.max(bytes.len() as u64 / 65536);
                    }
                    memories.memory(ty);
                }
            }
            Payload::GlobalSection(section) => {
                for (index, global) in (0u32..).zip(section) {
                    let global = global.map_err(|e| e.to_string())?;
                    let ty = reencoder.global_type(global.ty).map_err(err)?;
                    let init = match snapshot.globals.iter().find(|(i, _)| *i == index) {
                        Some((_, value)) => constant(*value, &ty),
                        None => reencoder.const_expr(global.init_expr).map_err(err)?,
                    };
                    globals.global(ty, &init);
                }
            }
            Payload::DataSection(section) => {
                // The active segments' bytes are in the snapshot. Where code
                // can name segments (there is a data count section), they
                // stay, emptied, so that indices keep their meaning.
                let keep_indices = sections.has(module::DATA_COUNT);
                for datum in section {
                    let datum = datum.map_err(|e| e.to_string())?;
                    match datum.kind {
                        DataKind::Active {
                            memory_index,
                            offset_expr,
                        } if keep_indices => {
                            data.active(memory_index, &reencoder.const_expr(offset_expr).map_err(err)?, [])
                        }
                        DataKind::Active { .. } => continue,
                        DataKind::Passive => data.passive(datum.data.iter().copied()),
                    };
                    data_count += 1;
                }
            }
            _ => {}
        }
    }
    let (mut segments, mut data_bytes) = (0, 0);
    for (index, bytes) in &snapshot.memories {
        for (at, run) in nonzero_runs(bytes) {
            data.active(
                *index,
                &wasm_encoder::ConstExpr::i32_const(at as i32),
                run.iter().copied(),
            );
            (segments, data_bytes) = (segments + 1, data_bytes + run.len());
        }
    }
    let mut exports = wasm_encoder::ExportSection::new();
    let replaced = |name: &str| {
        changes.removed.iter().any(|r| r == name)
            || changes.renames.iter().any(|(dst, _)| dst == name)
            || (changes.start.is_some() && name == "_start")
    };
    copy_exports(wasm, &mut exports, |name, _| !replaced(name))?;
    // Renames point DST at what SRC exported; SRC stays exported too unless
    // it was an init function.
    for (dst, src) in &changes.renames {
        let index = function_export(wasm, src)?;
        exports.export(dst, wasm_encoder::ExportKind::Func, index);
    }
    if let Some((func, args)) = &changes.start {
        let index = add_start(wasm, &mut sections, func, args)?;
        exports.export("_start", wasm_encoder::ExportKind::Func, index);
    }
    for (name, content) in &changes.custom {
        sections.push_custom(name, content);
    }
    if shape.memories > 0 {
        sections.set(module::MEMORY, module::body(&memories));
    }
    if !shape.globals.is_empty() {
        sections.set(module::GLOBAL, module::body(&globals));
    }
    sections.set(module::EXPORT, module::body(&exports));
    sections.remove(module::START);
    if sections.has(module::DATA_COUNT) {
        sections.set(
            module::DATA_COUNT,
            module::body(&wasm_encoder::DataCountSection {
                count: data_count + segments as u32,
            }),
        );
    }
    sections.set(module::DATA, module::body(&data));
    Ok((sections.finish(), segments, data_bytes))
}

/// Adds a function that calls the export `func` with `args` (i32
/// constants) and then WASI's `proc_exit` with the i32 it returns; returns
/// its index.
fn add_start(wasm: &[u8], sections: &mut Sections, func: &str, args: &[i32]) -> Result<u32, String> {
    let callee = function_export(wasm, func)?;
    let (mut imported, mut proc_exit) = (0, None);
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ImportSection(imports) = payload.map_err(|e| e.to_string())? {
            for import in imports.into_imports() {
                let import = import.map_err(|e| e.to_string())?;
                if let TypeRef::Func(_) = import.ty {
                    if (import.module, import.name) == ("wasi_snapshot_preview1", "proc_exit") {
                        proc_exit = Some(imported);
                    }
                    imported += 1;
                }
            }
        }
    }
    let proc_exit = proc_exit.ok_or("it does not import proc_exit")?;
    // (func) takes nothing and returns nothing.
    let ty = sections.append(module::TYPE, &[0x60, 0, 0])?;
    let mut entry = Vec::new();
    wasm_encoder::Encode::encode(&ty, &mut entry);
    let defined = sections.append(module::FUNCTION, &entry)?;
    let mut body = wasm_encoder::Function::new([]);
    let mut code = body.instructions();
    for &arg in args {
        code.i32_const(arg);
    }
    code.call(callee).call(proc_exit).end();
    let mut entry = Vec::new();
    wasm_encoder::Encode::encode(&body, &mut entry);
    sections.append(module::CODE, &entry)?;
    Ok(imported + defined)
}

fn function_export(wasm: &[u8], name: &str) -> Result<u32, String> {
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(exports) = payload.map_err(|e| e.to_string())? {
            for export in exports {
                let export = export.map_err(|e| e.to_string())?;
                if export.name == name && export.kind == ExternalKind::Func {
                    return Ok(export.index);
                }
            }
        }
    }
    Err(format!("no function export `{name}`"))
}

/// The constant expression that gives `value` to a global of type `ty`.
fn constant(value: Scalar, ty: &wasm_encoder::GlobalType) -> wasm_encoder::ConstExpr {
    use wasm_encoder::ConstExpr;
    match value {
        Scalar::I32(v) => ConstExpr::i32_const(v),
        Scalar::I64(v) => ConstExpr::i64_const(v),
        Scalar::F32(bits) => ConstExpr::f32_const(wasm_encoder::Ieee32::new(bits)),
        Scalar::F64(bits) => ConstExpr::f64_const(wasm_encoder::Ieee64::new(bits)),
        Scalar::V128(v) => ConstExpr::v128_const(v as i128),
        Scalar::Null => match ty.val_type {
            wasm_encoder::ValType::Ref(r) => ConstExpr::ref_null(r.heap_type),
            _ => unreachable!("only reference globals hold null"),
        },
    }
}

/// The non-zero stretches of `memory` as (offset, bytes), runs closer than
/// [`MERGE_GAP`] merged; the gap doubles until there are at most
/// [`MAX_SEGMENTS`].
fn nonzero_runs(memory: &[u8]) -> Vec<(usize, &[u8])> {
    let mut gap = MERGE_GAP;
    loop {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < memory.len() {
            if memory[i] == 0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < memory.len() && memory[i] != 0 {
                i += 1;
            }
            match runs.last_mut() {
                Some((_, end)) if start - *end <= gap => *end = i,
                _ => runs.push((start, i)),
            }
        }
        if runs.len() <= MAX_SEGMENTS {
            return runs.into_iter().map(|(s, e)| (s, &memory[s..e])).collect();
        }
        gap *= 2;
    }
}

/// The init's stdout and stderr go to ours (stderr, so that a pipeline
/// reading our stdout is not mixed up with it); its stdin is empty.
struct Console;

impl Stdio for Console {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        std::io::stderr().write_all(data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn log(&mut self, data: &[u8]) {
        let _ = self.write(data);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preinit(wat: &str, init_func: Option<&str>, renames: &[(&str, &str)]) -> Result<(Vec<u8>, Report), Error> {
        let dir = std::env::temp_dir().join(format!(
            "wcgid-preinit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.wasm");
        std::fs::write(&input, wat::parse_str(wat).unwrap()).unwrap();
        let options = Options {
            input,
            output: dir.join("out.wasm"),
            init_func: init_func.map(Into::into),
            renames: renames.iter().map(|(d, s)| (d.to_string(), s.to_string())).collect(),
            mounts: Vec::new(),
        };
        let report = run(&Engine::default(), &options)?;
        Ok((std::fs::read(&options.output).unwrap(), report))
    }

    /// Instantiates `wasm` with no imports and returns the instance.
    fn instance(wasm: &[u8]) -> (wasmer::Store, wasmer::Instance) {
        let mut store = wasmer::Store::default();
        let module = wasmer::Module::new(&store, wasm).unwrap();
        let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
        (store, instance)
    }

    const COUNTER: &str = r#"(module
        (memory (export "memory") 1)
        (global $n (mut i32) (i32.const 0))
        (global $k i32 (i32.const 5))
        (global $f (mut f64) (f64.const 0))
        (func $start (global.set $n (i32.const 100)))
        (start $start)
        (func (export "wizer-initialize")
            (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (global.set $f (f64.const 2.5))
            (drop (memory.grow (i32.const 1)))
            (i32.store (i32.const 70000) (i32.const 0x01020304))
            (i32.store8 (i32.const 9) (i32.const 7)))
        (func (export "get") (result i32) (global.get $n))
        (func (export "getf") (result f64) (global.get $f))
        (func (export "peek") (param i32) (result i32) (i32.load (local.get 0)))
        (func (export "resume") (global.set $n (i32.add (global.get $n) (i32.const 1000))))
        (data (i32.const 8) "\01"))"#;

    #[test]
    fn globals_memory_and_growth_are_snapshotted_and_init_removed() {
        let (wasm, report) = preinit(COUNTER, None, &[]).unwrap();
        assert_eq!(report.calls, vec!["wizer-initialize".to_string()]);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let (mut store, instance) = instance(&wasm);
        let call = |store: &mut wasmer::Store, name: &str, arg: Option<i32>| -> wasmer::Value {
            let f = instance.exports.get_function(name).unwrap();
            let args: Vec<wasmer::Value> = arg.into_iter().map(wasmer::Value::I32).collect();
            f.call(store, &args).unwrap()[0].clone()
        };
        // The start function ran once (at preinit), not again: 100 + 1.
        assert_eq!(call(&mut store, "get", None), wasmer::Value::I32(101));
        assert_eq!(call(&mut store, "getf", None), wasmer::Value::F64(2.5));
        assert_eq!(call(&mut store, "peek", Some(70000)), wasmer::Value::I32(0x01020304));
        assert_eq!(call(&mut store, "peek", Some(8)), wasmer::Value::I32(0x0701));
        // The memory grew during the init: it starts at 2 pages now.
        let memory = instance.exports.get_memory("memory").unwrap();
        assert_eq!(memory.view(&store).size().0, 2);
        assert!(
            instance.exports.get_function("wizer-initialize").is_err(),
            "init export kept"
        );
        let parsed = Shape::of(&wasm).unwrap();
        assert!(
            !parsed.exports.iter().any(|(n, _)| n.starts_with("__wcgid")),
            "probe exports leaked"
        );
        let has_start = Parser::new(0)
            .parse_all(&wasm)
            .any(|p| matches!(p.unwrap(), Payload::StartSection { .. }));
        assert!(!has_start, "start section kept");
    }

    #[test]
    fn renames_point_an_export_at_another_function() {
        let wat = COUNTER.replace(
            r#"(data (i32.const 8)"#,
            r#"(func (export "_start")) (data (i32.const 8)"#,
        );
        let (wasm, _) = preinit(&wat, None, &[("_start", "resume")]).unwrap();
        let (mut store, instance) = instance(&wasm);
        instance
            .exports
            .get_function("_start")
            .unwrap()
            .call(&mut store, &[])
            .unwrap();
        // `_start` ran `resume`: 101 + 1000.
        let get = instance.exports.get_function("get").unwrap();
        assert_eq!(get.call(&mut store, &[]).unwrap()[0], wasmer::Value::I32(1101));
        assert!(
            Shape::of(&wasm).unwrap().exports_func("resume"),
            "the source export stays"
        );
    }

    #[test]
    fn an_explicit_init_func_must_exist_and_wizer_output_is_accepted() {
        assert!(matches!(
            preinit(COUNTER, Some("nope"), &[]),
            Err(Error::Refused { .. })
        ));
        let (once, _) = preinit(COUNTER, None, &[]).unwrap();
        // Pre-initialize the output again: no init export is left, so the
        // state is taken as it is, and nothing changes.
        let dir = std::env::temp_dir().join(format!("wcgid-preinit-twice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("once.wasm"), &once).unwrap();
        let options = Options {
            input: dir.join("once.wasm"),
            output: dir.join("twice.wasm"),
            init_func: None,
            renames: Vec::new(),
            mounts: Vec::new(),
        };
        let report = run(&Engine::default(), &options).unwrap();
        assert!(report.calls.is_empty());
        assert_eq!(report.warnings.len(), 1);
        let (mut store, instance) = instance(&std::fs::read(dir.join("twice.wasm")).unwrap());
        let get = instance.exports.get_function("get").unwrap();
        assert_eq!(get.call(&mut store, &[]).unwrap()[0], wasmer::Value::I32(101));
    }

    #[test]
    fn what_cannot_be_snapshotted_is_refused() {
        for (wat, needle) in [
            (
                r#"(module (import "env" "m" (memory 1)) (func (export "wizer-initialize")))"#,
                "memory, env::m",
            ),
            (
                r#"(module (import "env" "g" (global i32)) (func (export "wizer-initialize")))"#,
                "global, env::g",
            ),
            (
                r#"(module (import "env" "t" (table 1 funcref)) (func (export "wizer-initialize")))"#,
                "table, env::t",
            ),
        ] {
            let err = preinit(wat, None, &[]).unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains("cannot be pre-initialized"),
                "{err}"
            );
        }
        let mutates_table = r#"(module (table 2 funcref) (func $f) (elem declare func $f)
            (func (export "wizer-initialize") (table.set (i32.const 1) (ref.func $f))))"#;
        let err = preinit(mutates_table, None, &[]).unwrap_err().to_string();
        assert!(err.contains("table.set"), "{err}");
        let grows_table = r#"(module (table 2 funcref)
            (func (export "wizer-initialize") (drop (table.grow (ref.null func) (i32.const 3)))))"#;
        let err = preinit(grows_table, None, &[]).unwrap_err().to_string();
        assert!(err.contains("grew table 0 from 2 to 5"), "{err}");
        let traps = r#"(module (func (export "wizer-initialize") unreachable))"#;
        let err = preinit(traps, None, &[]).unwrap_err().to_string();
        assert!(err.contains("trapped"), "{err}");
        assert!(matches!(
            preinit(r#"(module)"#, None, &[("_start", "missing")]),
            Err(Error::Refused { .. })
        ));
    }

    #[test]
    fn reading_the_environment_during_init_is_warned_about() {
        let wat = r#"(module
            (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "wizer-initialize") (drop (call $sizes (i32.const 0) (i32.const 4)))))"#;
        let (_, report) = preinit(wat, None, &[]).unwrap();
        assert!(
            report.warnings.iter().any(|w| w.contains("environment")),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn nonzero_runs_merge_small_gaps() {
        let mut memory = vec![0u8; 1000];
        memory[10] = 1;
        memory[20] = 2;
        memory[500] = 3;
        let runs = nonzero_runs(&memory);
        assert_eq!(runs, vec![(10, &memory[10..21]), (500, &memory[500..501])]);
        assert!(nonzero_runs(&[0; 100]).is_empty());
    }
}
