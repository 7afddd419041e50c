//! Host calls without a guest, for the `wasi_host` fuzz target and the host
//! functions' tests: a `Host` bound to a memory made as an instance's is
//! (a pooled reservation, `PROT_NONE` past the memory's end), each call made
//! through the Wasmer `Function` that a guest's import would get.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmer::{FunctionEnv, Instance, Memory, RuntimeError, Store, Type, Value};

use super::{Host, Preopen, funcs, memory_of};
use crate::sandbox::{CStrings, Mount, Stdio, memory};

pub use funcs::NAMES;

/// Bytes of stdout and of stderr kept; past them, stdout fails as towards a
/// client that went away, so that no sequence of calls fills the host.
const KEPT: usize = 1 << 20;

/// A request's streams over bytes: stdin from a buffer, stdout and stderr
/// kept, and sleeps that return at once.
#[derive(Default)]
pub struct Bytes {
    pub stdin: VecDeque<u8>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// What the guest asked to sleep, in all.
    pub slept: Duration,
}

impl Stdio for Bytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stdin.read(buf)
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.stdout.len() + data.len() > KEPT {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.stdout.extend_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn log(&mut self, data: &[u8]) {
        let room = KEPT.saturating_sub(self.stderr.len());
        self.stderr.extend_from_slice(&data[..data.len().min(room)]);
    }
    fn sleep(&mut self, wait: Duration) -> bool {
        self.slept = self.slept.saturating_add(wait);
        true
    }
}

/// A module of one exported memory, of one page that may grow to two,
/// compiled once by the engine requests run in.
fn memory_module() -> &'static (wasmer::Engine, wasmer::Module) {
    static MODULE: OnceLock<(wasmer::Engine, wasmer::Module)> = OnceLock::new();
    MODULE.get_or_init(|| {
        use wasm_encoder::{ExportKind, ExportSection, MemorySection, MemoryType};
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: 1,
            maximum: Some(2),
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut exports = ExportSection::new();
        exports.export("memory", ExportKind::Memory, 0);
        let mut wasm = wasm_encoder::Module::new();
        wasm.section(&memories).section(&exports);
        let engine = crate::sandbox::Engine::default().engine;
        let module = wasmer::Module::new(&engine, wasm.finish()).expect("a memory alone compiles");
        (engine, module)
    })
}

/// A host and the memory its calls work on.
pub struct Calls {
    store: Store,
    host: FunctionEnv<Host<Bytes>>,
    memory: Memory,
}

impl Calls {
    /// A host with `args`, `env`, `stdin`, `mounts` and a scratch directory
    /// of `scratch` bytes (0 for none), its memory one page that may grow to
    /// two.
    pub fn new(args: CStrings, env: CStrings, stdin: &[u8], mounts: &[Mount], scratch: u64) -> io::Result<Calls> {
        let preopens = mounts.iter().map(Preopen::open).collect::<io::Result<Arc<[_]>>>()?;
        let (engine, module) = memory_module();
        let mut store = Store::new(engine.clone());
        let stdio = Bytes {
            stdin: stdin.iter().copied().collect(),
            ..Bytes::default()
        };
        let host = FunctionEnv::new(&mut store, Host::new(args, env, stdio, preopens, scratch));
        let (instance, _) = memory::with_image(None, None, || {
            Instance::new_by_index(&mut store, module, &[]).map_err(io::Error::other)
        });
        let memory = memory_of(&instance?).expect("the module exports its memory");
        host.as_mut(&mut store).memory = Some(memory.clone());
        Ok(Calls { store, host, memory })
    }

    /// Calls the host function `name` (one of [`NAMES`]) with `args`, the
    /// missing ones 0, as [`Calls::call_with`].
    pub fn call(&mut self, name: &str, args: &[i64]) -> Result<i32, RuntimeError> {
        let mut args = args.iter().copied();
        self.call_with(name, || args.next().unwrap_or(0))
    }

    /// Calls the host function `name` (one of [`NAMES`]) with a value from
    /// `arg` for each parameter in turn, cut to the parameter's type: its
    /// errno, or what it unwound the guest with (`proc_exit`; a sleep
    /// stopped).
    pub fn call_with(&mut self, name: &str, mut arg: impl FnMut() -> i64) -> Result<i32, RuntimeError> {
        let func = funcs::host_function(name, &mut self.store, &self.host)
            .ok_or_else(|| RuntimeError::new(format!("no host function {name}")))?;
        let params: Vec<Value> = (func.ty(&self.store).params().iter())
            .map(|ty| match ty {
                Type::I64 => Value::I64(arg()),
                _ => Value::I32(arg() as i32),
            })
            .collect();
        let results = func.call(&mut self.store, &params)?;
        Ok(results.first().and_then(Value::i32).unwrap_or(0))
    }

    /// The memory's size in bytes.
    pub fn size(&self) -> u64 {
        self.memory.view(&self.store).data_size()
    }

    /// Grows the memory by `pages`; false past its maximum.
    pub fn grow(&mut self, pages: u32) -> bool {
        self.memory.grow(&mut self.store, pages).is_ok()
    }

    /// `len` bytes of memory at `at`, if all are in it.
    pub fn read(&self, at: u64, len: usize) -> Option<Vec<u8>> {
        let mut bytes = vec![0; len];
        self.memory.view(&self.store).read(at, &mut bytes).ok()?;
        Some(bytes)
    }

    /// Writes `bytes` into memory at `at`; false, writing nothing, unless
    /// all fit.
    pub fn write(&mut self, at: u64, bytes: &[u8]) -> bool {
        self.memory.view(&self.store).write(at, bytes).is_ok()
    }

    /// The streams as the calls left them.
    pub fn stdio(&self) -> &Bytes {
        self.host
            .as_ref(&self.store)
            .io
            .as_ref()
            .expect("stdio is never taken here")
    }
}
