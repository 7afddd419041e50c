//! Modules written from the original's sections (WebAssembly core spec
//! §5.5): the copy that exports the state for the run, and the module
//! with the snapshot in it as global initializers and data segments.

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmer::WASM_PAGE_SIZE;
use wasmparser::{DataKind, ExternalKind, Parser, Payload, TypeRef};

use super::analyse::Shape;
use super::module::{self, Sections};
use crate::sandbox::{self, Probe, Scalar};

/// Zero bytes up to which two non-zero runs of memory share a data segment:
/// a segment costs about as many bytes of encoding.
const MERGE_GAP: usize = 64;
/// Data segments the output may have (validators stop at 100,000).
const MAX_SEGMENTS: usize = 50_000;

/// How the module written from a snapshot differs from the original,
/// besides holding the state.
#[derive(Default)]
pub(super) struct Changes {
    /// Exports dropped: init functions, already run.
    pub(super) removed: Vec<String>,
    /// (DST, SRC): the export DST becomes the function exported as SRC.
    pub(super) renames: Vec<(String, String)>,
    /// A `_start` added, that calls the export named with these arguments
    /// and then WASI's `proc_exit` with what it returns.
    pub(super) start: Option<(String, Vec<i32>)>,
    /// Custom sections added: (name, content).
    pub(super) custom: Vec<(&'static str, Vec<u8>)>,
}

/// A copy of `wasm` that also exports what `probe` names.
pub(super) fn instrument(wasm: &[u8], probe: &Probe) -> Result<Vec<u8>, String> {
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
pub(super) fn rewrite(
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
                        ty.minimum = ty.minimum.max((bytes.len() / WASM_PAGE_SIZE) as u64);
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
pub(super) fn nonzero_runs(memory: &[u8]) -> Vec<(usize, &[u8])> {
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
