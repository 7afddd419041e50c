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
//!
//! # Layout
//! This file is the command: [`Options`] in, [`Report`] out, and the run of
//! the init in between; `analyse` reads what the module has and may do,
//! `rewrite` writes modules (the copy instrumented for the run, and the
//! module with the snapshot in it); `module` is the section list both edit.

mod analyse;
pub mod interpreter;
mod module;
mod rewrite;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::sandbox::{self, Engine, Mount, Stdio};
use analyse::Shape;
use rewrite::{Changes, instrument, rewrite};

/// What `wcgid preinit` is asked to do.
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

/// The init exports looked for, in order, without `--init-func`.
const INIT_FUNCS: [&str; 2] = ["wizer-initialize", "wizer.initialize"];

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
