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
mod engine;
mod image;
mod interrupt;
mod memory;
mod program;
mod wasi;
mod written;

use std::path::PathBuf;
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

/// What is compiled into a guest besides its own code. Other checks make
/// other code: the AOT cache keys on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checks {
    /// The interrupt check (see [`interrupt`]).
    pub interrupt: bool,
    /// Fuel metering (wasmer-middlewares' `Metering`, a point per operator).
    pub fuel: bool,
}

/// NUL-terminated strings laid out the way `args_get` and `environ_get`
/// hand them to a guest.
#[derive(Debug, Default, Clone)]
pub struct CStrings {
    bytes: Vec<u8>,
    count: u32,
}
