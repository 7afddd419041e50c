//! Runs one request's guest: a fresh Wasmer `Store` and `Instance` of a
//! compiled [`Program`], WASI preview1 host functions of our own, and the
//! request's stdin, stdout and stderr.
//!
//! Nothing outlives a request but the compiled module and the mounted
//! directories: memory, globals, tables, open files and the scratch
//! directory (`/tmp`) all belong to the request's `Store`, which is dropped
//! when the guest returns.
//!
//! # Why our own WASI host
//! `wasmer-wasix`'s builder creates all 374 WASI/WASIX host functions for every
//! instance (200–390 µs per request measured); its preview1 set alone costs
//! about 20 µs, its pipes are unbounded and its host filesystem follows
//! symlinks out of a mount. `wasi` creates only the functions a module
//! imports, resolved once at load, confines file access with `cap-std`, and
//! streams stdio through the bounded [`Stdio`] the caller provides.

mod cache;
mod image;
mod interrupt;
mod memory;
mod wasi;
mod written;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use image::{InitialMemory, initial_memory};
pub use interrupt::Interrupt;

/// How this process resets guest memories between requests (see
/// `memory`), for the status page.
pub fn memory_reset_method() -> &'static str {
    written::Tracker::method()
}
/// Host calls without a guest, for the `wasi_host` fuzz target.
#[doc(hidden)]
pub use wasi::fuzzing;
pub use wasi::snapshot::{Calls, Guest, Initializer};
pub use wasi::{Outcome, Probe, SCRATCH_DIR, Scalar, Snapshot, Touched};

/// The custom section that marks a module as an interpreter snapshot which
/// takes its request on stdin (see [`Program::takes_request_on_stdin`]);
/// its content, if not empty, is the address (u32, little-endian) of the
/// Binaryen asyncify data to rewind from.
pub const INTERPRETER_SECTION: &str = "wcgid.interpreter";

/// A compiled, linked-checked guest, shared by all of its requests.
#[derive(Clone)]
pub struct Program {
    module: wasmer::Module,
    /// The initial memory, mapped rather than copied into each instance.
    image: Option<Arc<memory::Image>>,
    /// The engine that holds the module's code: instances run in its stores.
    engine: wasmer::Engine,
    /// The WASI functions it imports, in import order.
    imports: Vec<String>,
    preopens: Arc<[wasi::Preopen]>,
    /// Pages a memory may grow to, if lower than the module declares.
    memory_limit: Option<wasmer::Pages>,
    /// Bytes its scratch directory may hold; 0 for none.
    scratch: u64,
    /// Fuel of a run, for a module compiled with metering.
    fuel: Option<u64>,
    /// Where its instances' interrupt flag lies, if it has the check.
    interrupt: Option<interrupt::Layout>,
    /// See [`Program::takes_request_on_stdin`].
    request_on_stdin: bool,
    /// Where an asyncify snapshot's data lies: instances rewind from there
    /// into the read of stdin the snapshot was taken in.
    rewind: Option<u32>,
}

/// A host directory a guest sees, read-only, at `guest` (an absolute path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
}

/// The request's byte streams, as the guest sees them through fds 0, 1 and 2.
/// Calls may block: they run on the guest's own thread.
pub trait Stdio: Send + 'static {
    /// Reads request body bytes into `buf`; `Ok(0)` at the end of the body.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Takes stdout bytes. An error (the client went away) is reported to the
    /// guest as EPIPE.
    fn write(&mut self, data: &[u8]) -> std::io::Result<()>;
    /// Pushes buffered stdout out: called before the guest blocks (reading
    /// stdin, sleeping) so that a streaming response is not held back.
    fn flush(&mut self) -> std::io::Result<()>;
    /// Takes stderr bytes.
    fn log(&mut self, data: &[u8]);
    /// Called once the instance exists, just before `_start` runs: where
    /// the restore ends and the guest's own work begins. `interrupt`, if
    /// the guest was compiled with the check, stops it from any thread
    /// while it runs.
    fn instantiated(&mut self, _interrupt: Option<&Interrupt>) {}
    /// Called when the guest's run ends (an instance existed), with the
    /// size its memory reached, in bytes: memory never shrinks.
    fn ended(&mut self, _memory: u64) {}
    /// Waits `wait` for a guest that sleeps (`poll_oneoff` on clocks).
    /// `false` stops the guest: whoever it runs for is gone.
    fn sleep(&mut self, wait: std::time::Duration) -> bool {
        std::thread::sleep(wait);
        true
    }
}

/// Stdio with an empty stdin that discards all output: what a program gets
/// when it is type-checked at load, or benchmarked.
pub struct NullStdio;

impl Stdio for NullStdio {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }
    fn write(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn log(&mut self, _: &[u8]) {}
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read module {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("AOT cache {dir}: {source}")]
    Cache { dir: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid WebAssembly module: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("cannot compile module {path}: {source}")]
    Compile {
        path: PathBuf,
        source: wasmer::CompileError,
    },
    #[error("module {path} cannot run here: {why}")]
    Link { path: PathBuf, why: String },
    #[error("initializing {path} failed: {why}")]
    Init { path: PathBuf, why: String },
    #[error("module {path} needs {needs} bytes of memory at start, over the limit of {limit}")]
    MemoryLimit { path: PathBuf, needs: u64, limit: u64 },
    #[error("cannot make the memory image of {path}: {source}")]
    Image { path: PathBuf, source: std::io::Error },
    #[error("cannot open mount {host} (for {guest}): {source}")]
    Mount {
        host: PathBuf,
        guest: String,
        source: std::io::Error,
    },
}

/// The compiler and its settings, shared by every program.
#[derive(Clone)]
pub struct Engine {
    engine: wasmer::Engine,
    cache: Option<Arc<cache::Cache>>,
    /// Whether guests are compiled with the interrupt check.
    interruptible: bool,
    /// Whether memory images are reset by restoring the pages written,
    /// where the kernel can track them.
    track_writes: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            engine: engine_with(wasmer::sys::Cranelift::default()),
            cache: None,
            interruptible: true,
            track_writes: true,
        }
    }
}

fn engine_with(compiler: wasmer::sys::Cranelift) -> wasmer::Engine {
    use wasmer::sys::NativeEngineExt;
    let mut engine: wasmer::Engine = compiler.into();
    engine.set_tunables(memory::PooledTunables::new());
    engine
}

/// What is compiled into a guest besides its own code. Other checks make
/// other code: the AOT cache keys on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checks {
    /// The interrupt check (see [`interrupt`]).
    pub interrupt: bool,
    /// Fuel metering (wasmer-middlewares' `Metering`, a point per operator).
    pub fuel: bool,
}

impl Checks {
    /// A compiler that adds these checks to `wasm`, the one module it
    /// compiles (a middleware serves one module); `None` when there are
    /// none. Its code
    /// runs in any of our engines: the tunables are the same.
    fn compiler(self, wasm: &[u8]) -> Result<Option<wasmer::Engine>, String> {
        use wasmer::sys::CompilerConfig;
        if !self.interrupt && !self.fuel {
            return Ok(None);
        }
        let mut compiler = wasmer::sys::Cranelift::default();
        if self.interrupt {
            compiler.push_middleware(Arc::new(interrupt::Check::for_module(wasm)?));
        }
        if self.fuel {
            // No fuel until a run is given some: an instance never runs
            // unmetered.
            compiler.push_middleware(Arc::new(wasmer_middlewares::Metering::new(
                0,
                |_: &wasmer::wasmparser::Operator| 1,
            )));
        }
        Ok(Some(engine_with(compiler)))
    }
}

impl Engine {
    /// Compiles guests without the interrupt check: a guest that computes
    /// without calling the host then cannot be stopped but by ending its
    /// process. For measuring what the check costs.
    pub fn without_interrupt_check(mut self) -> Engine {
        self.interruptible = false;
        self
    }

    /// Resets memory images by discarding them whole, as where the kernel
    /// cannot track written pages: the next request faults in again every
    /// page it reads. For measuring the difference.
    pub fn without_write_tracking(mut self) -> Engine {
        self.track_writes = false;
        self
    }

    /// Keeps compiled modules in `dir` (see `cache`).
    pub fn with_cache(mut self, dir: &Path) -> Result<Engine, Error> {
        let cache = cache::Cache::open(dir, &self.engine).map_err(|source| Error::Cache {
            dir: dir.into(),
            source,
        })?;
        self.cache = Some(Arc::new(cache));
        Ok(self)
    }

    /// The directory compiled modules are kept in, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_deref().map(cache::Cache::dir)
    }

    /// Reads, compiles (or loads from the cache) and link-checks the module
    /// at `path`, and opens its mounts. Everything a request could trip over
    /// later is found here.
    pub fn load(&self, path: &Path, mounts: &[Mount]) -> Result<Program, Error> {
        self.load_as(path, mounts, false)
    }

    /// [`Engine::load`], the code compiled with fuel metering
    /// (wasmer-middlewares' `Metering`, a point per operator): every run then
    /// stops once it has spent the fuel given by [`Program::with_fuel`].
    /// Metered code runs slower: +70–80 % on a tight loop, as measured
    /// on this machine kind when the limits were specified.
    pub fn load_metered(&self, path: &Path, mounts: &[Mount]) -> Result<Program, Error> {
        self.load_as(path, mounts, true)
    }

    fn load_as(&self, path: &Path, mounts: &[Mount], metered: bool) -> Result<Program, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.into(),
            source,
        })?;
        let checks = Checks {
            interrupt: self.interruptible,
            fuel: metered,
        };
        let (engine, module, image) = self.compile(path, &bytes, checks)?;
        let image = image
            .map(|bytes| memory::Image::new(&bytes, self.track_writes))
            .transpose()
            .map_err(|source| Error::Image {
                path: path.into(),
                source,
            })?;
        let imports = wasi::resolve(&self.engine, &module).map_err(|why| Error::Link { path: path.into(), why })?;
        let preopens = open_mounts(mounts)?;
        let interpreter = module.custom_sections(INTERPRETER_SECTION).next();
        Ok(Program {
            image,
            engine,
            imports,
            preopens,
            memory_limit: None,
            scratch: 0,
            fuel: metered.then_some(0),
            interrupt: interrupt::Layout::of(&module),
            request_on_stdin: interpreter.is_some(),
            rewind: interpreter.and_then(|s| Some(u32::from_le_bytes(s.get(..4)?.try_into().ok()?))),
            module,
        })
    }

    /// Compiles `wasm` as it is (no cache, no image), instantiates it with
    /// `mounts`, `args`, `env` and a scratch directory of `scratch` bytes,
    /// runs `init` and captures the state
    /// through the exports named in `probe`: the work of `wcgid preinit`.
    #[allow(clippy::too_many_arguments)]
    pub fn snapshot<S: Stdio>(
        &self,
        path: &Path,
        wasm: &[u8],
        mounts: &[Mount],
        launch: (CStrings, CStrings, u64),
        init: &mut dyn Initializer,
        probe: &Probe,
        stdio: S,
    ) -> Result<Snapshot, Error> {
        let module = wasmer::Module::new(&self.engine, wasm).map_err(|source| Error::Compile {
            path: path.into(),
            source,
        })?;
        let imports =
            wasi::resolve_imports(&self.engine, &module).map_err(|why| Error::Link { path: path.into(), why })?;
        let preopens = open_mounts(mounts)?;
        wasi::snapshot::take(&self.engine, &module, &imports, preopens, launch, stdio, init, probe)
            .map_err(|why| Error::Init { path: path.into(), why })
    }

    /// The module compiled for serving, with `checks`, the engine that
    /// holds its code, and its memory image: from the cache if it has them,
    /// else compiled now (and stored).
    fn compile(
        &self,
        path: &Path,
        wasm: &[u8],
        checks: Checks,
    ) -> Result<(wasmer::Engine, wasmer::Module, Option<Vec<u8>>), Error> {
        if let Some(entry) = self.cache.as_ref().and_then(|c| c.get(&self.engine, wasm, checks)) {
            tracing::debug!(module = %path.display(), "loaded from the AOT cache");
            return Ok((self.engine.clone(), entry.module, entry.image));
        }
        let started = std::time::Instant::now();
        let prepared = image::prepare(wasm).map_err(|why| Error::Invalid { path: path.into(), why })?;
        let compiler = checks
            .compiler(&prepared.module)
            .map_err(|why| Error::Invalid { path: path.into(), why })?
            .unwrap_or_else(|| self.engine.clone());
        let module = wasmer::Module::new(&compiler, &prepared.module).map_err(|source| Error::Compile {
            path: path.into(),
            source,
        })?;
        tracing::info!(
            module = %path.display(),
            ms = started.elapsed().as_millis(),
            interrupt = checks.interrupt,
            metered = checks.fuel,
            "compiled"
        );
        if let Some(cache) = &self.cache {
            cache.put(wasm, checks, &module, prepared.image.as_deref());
        }
        Ok((compiler, module, prepared.image))
    }
}

fn open_mounts(mounts: &[Mount]) -> Result<Arc<[wasi::Preopen]>, Error> {
    mounts
        .iter()
        .map(|m| {
            wasi::Preopen::open(m).map_err(|source| Error::Mount {
                host: m.host.clone(),
                guest: m.guest.clone(),
                source,
            })
        })
        .collect()
}

impl Program {
    /// Caps each instance's memory at `bytes` (whole 64 KiB pages): growing
    /// past it fails as growing past the module's own maximum does. A
    /// module whose memory starts larger is refused.
    pub fn with_memory_limit(mut self, path: &Path, bytes: u64) -> Result<Program, Error> {
        let pages = u32::try_from(bytes / wasmer::WASM_PAGE_SIZE as u64).unwrap_or(u32::MAX);
        for export in self.module.exports() {
            if let wasmer::ExternType::Memory(ty) = export.ty()
                && u64::from(ty.minimum.0) > u64::from(pages)
            {
                return Err(Error::MemoryLimit {
                    path: path.into(),
                    needs: ty.minimum.bytes().0 as u64,
                    limit: bytes,
                });
            }
        }
        self.memory_limit = Some(wasmer::Pages(pages));
        Ok(self)
    }

    /// Gives each instance a private, empty, writable directory at
    /// [`SCRATCH_DIR`], held in memory and dropped with the instance, of at
    /// most `bytes` (file contents, and a small cost per file, directory
    /// and name); 0 gives none.
    pub fn with_scratch(mut self, bytes: u64) -> Program {
        self.scratch = bytes;
        self
    }

    /// Gives each run of this metered program `fuel` points (one per Wasm
    /// operator executed); a run that spends them all is stopped. A program
    /// not loaded with [`Engine::load_metered`] is left as it is.
    pub fn with_fuel(mut self, fuel: u64) -> Program {
        if self.fuel.is_some() {
            self.fuel = Some(fuel);
        }
        self
    }

    /// Whether the module is an interpreter snapshot that reads its
    /// arguments and environment from stdin, ahead of the body, rather than
    /// through `args_get` and `environ_get` (wasi-libc and the interpreter
    /// read those once, while the snapshot was taken). The layout is
    /// `wasi::request_preamble`'s.
    pub fn takes_request_on_stdin(&self) -> bool {
        self.request_on_stdin
    }

    /// Runs the guest's `_start` in a fresh instance, on the calling thread,
    /// and hands `stdio` back with the outcome.
    pub fn run<S: Stdio>(&self, args: CStrings, env: CStrings, stdio: S) -> (Outcome, S) {
        wasi::run(self, args, env, stdio)
    }
}

/// NUL-terminated strings laid out the way `args_get` and `environ_get`
/// hand them to a guest.
#[derive(Debug, Default, Clone)]
pub struct CStrings {
    bytes: Vec<u8>,
    count: u32,
}

impl CStrings {
    /// Appends the concatenation of `parts` as one string. Refused (returns
    /// false) if it contains a NUL byte, which a C string cannot carry.
    pub fn push(&mut self, parts: &[&[u8]]) -> bool {
        if parts.iter().any(|p| p.contains(&0)) {
            return false;
        }
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
        self.bytes.push(0);
        self.count += 1;
        true
    }

    /// The strings, without their NUL terminators.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.split(|&b| b == 0).take(self.count as usize)
    }
}
