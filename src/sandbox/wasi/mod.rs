//! WASI preview1 (`wasi_snapshot_preview1`) as CGI programs use it: args,
//! environ, stdio, clocks, random, proc_exit, read-only preopened directories,
//! a private writable `/tmp` held in memory for the request (`scratch`), and
//! `poll_oneoff` for sleeping. Calls that would change a mounted directory
//! answer EROFS; sockets answer ENOTSOCK. Types and layouts follow
//! `typenames.witx` of the WASI snapshot (as in wasi-libc's `wasi/api.h`).
//!
//! Only the functions a module imports are created, per request, from a name
//! list resolved and type-checked once at load.

mod abi;
mod fs;
mod funcs;
#[doc(hidden)]
pub mod fuzzing;
mod scratch;
pub mod snapshot;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use std::collections::VecDeque;

use wasmer::{Extern, FunctionEnv, FunctionEnvMut, Instance, Memory, MemoryView, Store, TypedFunction};
use wasmer_middlewares::metering::{self, MeteringPoints};

use super::interrupt::Armed;
use super::{CStrings, NullStdio, Program, Stdio, memory};
pub use fs::Preopen;
pub use scratch::GUEST_PATH as SCRATCH_DIR;
pub use snapshot::{Probe, Scalar, Snapshot, Touched};

const NAMESPACE: &str = "wasi_snapshot_preview1";
/// The one import outside WASI that is provided, as a stub: zeroperl's call
/// into its JavaScript host (see `funcs::process::call_host_function`).
const ZEROPERL_HOST_CALL: &str = "env.call_host_function";

/// How a guest's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `_start` returned (0) or the guest called `proc_exit`.
    Exit(u32),
    /// The guest trapped, or could not be instantiated; the message says why.
    Trap(String),
    /// It was stopped: by its [`Stdio`] (see [`Stdio::sleep`]), or by the
    /// [`Interrupt`](super::Interrupt) it was given.
    Stopped,
    /// It spent all its fuel (see [`Program::with_fuel`]).
    OutOfFuel,
}

/// `proc_exit` unwinds the guest with this error.
#[derive(Debug, thiserror::Error)]
#[error("guest exited with {0}")]
struct ExitCode(u32);

/// A host call unwinds the guest with this error when its [`Stdio`] stops it.
#[derive(Debug, thiserror::Error)]
#[error("guest stopped by the host")]
struct Stopped;

/// A WASI error number (`errno` in typenames.witx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(u16);

impl Errno {
    pub const SUCCESS: Errno = Errno(0);
    pub const ACCES: Errno = Errno(2);
    pub const AGAIN: Errno = Errno(6);
    pub const BADF: Errno = Errno(8);
    pub const EXIST: Errno = Errno(20);
    pub const FAULT: Errno = Errno(21);
    pub const INVAL: Errno = Errno(28);
    pub const IO: Errno = Errno(29);
    pub const ISDIR: Errno = Errno(31);
    pub const LOOP: Errno = Errno(32);
    pub const MFILE: Errno = Errno(33);
    pub const NAMETOOLONG: Errno = Errno(37);
    pub const NOENT: Errno = Errno(44);
    pub const NOMEM: Errno = Errno(48);
    pub const NOSPC: Errno = Errno(51);
    pub const NOSYS: Errno = Errno(52);
    pub const NOTDIR: Errno = Errno(54);
    pub const NOTEMPTY: Errno = Errno(55);
    pub const NOTSOCK: Errno = Errno(57);
    pub const OVERFLOW: Errno = Errno(61);
    pub const PERM: Errno = Errno(63);
    pub const PIPE: Errno = Errno(64);
    pub const ROFS: Errno = Errno(69);
    pub const SPIPE: Errno = Errno(70);
    pub const XDEV: Errno = Errno(75);
}

type Result<T> = std::result::Result<T, Errno>;

/// Per-request state behind every host function.
pub struct Host<S> {
    memory: Option<Memory>,
    args: CStrings,
    env: CStrings,
    /// Taken back by [`run`] when the guest is done.
    io: Option<S>,
    fds: fs::FdTable,
    /// The request's `/tmp`, made at its first use.
    scratch: scratch::Scratch,
    /// Reused buffer for copies between guest memory and the host.
    buffer: Vec<u8>,
    /// What the guest read that wasi-libc caches (for `wcgid preinit`).
    touched: snapshot::Touched,
    /// Read from stdin before the body: the request's arguments and
    /// environment, for an interpreter that takes them there (see
    /// [`Program::takes_request_on_stdin`]).
    preamble: VecDeque<u8>,
    /// Set while a snapshot is taken at the first read of stdin.
    capture: Option<snapshot::Capture>,
    /// Set while an instance rewinds into the read its snapshot was taken
    /// in: Binaryen asyncify's `asyncify_stop_rewind`, to call there.
    rewinding: Option<TypedFunction<(), ()>>,
}

impl<S: Stdio> Host<S> {
    fn io(&mut self) -> &mut S {
        self.io.as_mut().expect("stdio is present until the run ends")
    }
}

/// Resolves a module's imports against our WASI functions and checks their
/// types, so that instantiation cannot fail to link.
pub fn resolve_imports(engine: &wasmer::Engine, module: &wasmer::Module) -> std::result::Result<Vec<String>, String> {
    let mut store = Store::new(engine.clone());
    let env = FunctionEnv::new(
        &mut store,
        Host::new(CStrings::default(), CStrings::default(), NullStdio, Arc::new([]), 0),
    );
    let mut names = Vec::new();
    for import in module.imports() {
        let (ns, name) = (import.module(), import.name());
        let wasmer::ExternType::Function(wanted) = import.ty() else {
            return Err(format!(
                "it imports {ns}::{name}, which is not a function; wcgid provides only WASI functions"
            ));
        };
        let name = match ns {
            NAMESPACE => name.to_owned(),
            _ if format!("{ns}.{name}") == ZEROPERL_HOST_CALL => ZEROPERL_HOST_CALL.to_owned(),
            _ => return Err(format!("it imports {ns}::{name}; wcgid provides only {NAMESPACE}")),
        };
        let name = name.as_str();
        let Some(func) = funcs::host_function(name, &mut store, &env) else {
            return Err(format!(
                "it imports {NAMESPACE}::{name}, which is not a WASI preview1 function"
            ));
        };
        let have = func.ty(&store);
        if &have != wanted {
            return Err(format!(
                "it imports {NAMESPACE}::{name} as {wanted}, but WASI defines it as {have}"
            ));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// [`resolve_imports`], and checks that the module is a WASI command that
/// exports its memory, as a CGI program must be.
pub fn resolve(engine: &wasmer::Engine, module: &wasmer::Module) -> std::result::Result<Vec<String>, String> {
    let names = resolve_imports(engine, module)?;
    let exports_start = module.exports().any(|e| {
        e.name() == "_start"
            && matches!(e.ty(), wasmer::ExternType::Function(f) if f.params().is_empty() && f.results().is_empty())
    });
    if !exports_start {
        return Err("it does not export `_start` as a function; a CGI program must be a WASI command".into());
    }
    if !module
        .exports()
        .any(|e| e.name() == "memory" && matches!(e.ty(), wasmer::ExternType::Memory(_)))
    {
        return Err("it does not export its memory as `memory`".into());
    }
    Ok(names)
}

/// Instantiates `program` in a new store and runs `_start` to the end.
pub fn run<S: Stdio>(program: &Program, args: CStrings, env: CStrings, stdio: S) -> (Outcome, S) {
    let mut store = Store::new(program.engine.clone());
    let host = FunctionEnv::new(
        &mut store,
        Host::new(args, env, stdio, program.preopens.clone(), program.scratch),
    );
    let outcome = instantiate_and_start(program, &mut store, &host);
    let stdio = host
        .as_mut(&mut store)
        .io
        .take()
        .expect("stdio is present until the run ends");
    (outcome, stdio)
}

fn instantiate_and_start<S: Stdio>(program: &Program, store: &mut Store, host: &FunctionEnv<Host<S>>) -> Outcome {
    let externs: Vec<Extern> = program
        .imports
        .iter()
        .map(|name| {
            funcs::host_function(name, store, host)
                .expect("resolved at load")
                .into()
        })
        .collect();
    let (instantiated, memory_definition) = memory::with_image(program.image.as_ref(), program.memory_limit, || {
        Instance::new_by_index(store, &program.module, &externs).map_err(|e| e.to_string())
    });
    let instance = match instantiated {
        Ok(instance) => instance,
        Err(e) => return Outcome::Trap(format!("instantiation failed: {e}")),
    };
    // Dropped before this function returns, so before `store` and the
    // instance it holds.
    let armed = match (program.interrupt, memory_definition) {
        #[allow(unsafe_code)]
        // SAFETY: the definition is that of the memory `instance` just
        // created, an instance of the module the layout was taken from,
        // and `store` keeps it alive for longer than `armed` lives.
        (Some(layout), Some(memory)) => Some(unsafe { Armed::new(memory, layout) }),
        _ => None,
    };
    if let Some(fuel) = program.fuel {
        metering::set_remaining_points(store, &instance, fuel);
    }
    let (Some(memory), Ok(start)) = (
        memory_of(&instance),
        instance.exports.get_typed_function::<(), ()>(store, "_start"),
    ) else {
        return Outcome::Trap("exports changed since load".into());
    };
    if program.request_on_stdin {
        let state = host.as_mut(store);
        state.preamble = request_preamble(&state.args, &state.env).into();
    }
    if let Some(data) = program.rewind {
        let rewind = instance
            .exports
            .get_typed_function::<i32, ()>(store, "asyncify_start_rewind")
            .and_then(|start| {
                Ok((
                    start,
                    instance
                        .exports
                        .get_typed_function::<(), ()>(store, "asyncify_stop_rewind")?,
                ))
            });
        let Ok((start, stop)) = rewind else {
            return Outcome::Trap("exports changed since load".into());
        };
        if let Err(e) = start.call(store, data as i32) {
            return Outcome::Trap(e.message());
        }
        host.as_mut(store).rewinding = Some(stop);
    }
    let state = host.as_mut(store);
    state.memory = Some(memory.clone());
    if let Some(io) = state.io.as_mut() {
        io.instantiated(armed.as_ref().map(Armed::interrupt));
    }
    let ended = start.call(store);
    let memory_bytes = memory.view(store).data_size();
    if let Some(io) = host.as_mut(store).io.as_mut() {
        io.ended(memory_bytes);
    }
    match ended {
        Ok(()) => Outcome::Exit(0),
        Err(e) => match e.downcast::<ExitCode>() {
            Ok(ExitCode(code)) => Outcome::Exit(code),
            Err(e) if e.downcast_ref::<Stopped>().is_some() => Outcome::Stopped,
            Err(_) if armed.as_ref().is_some_and(|a| a.interrupt().fired()) => Outcome::Stopped,
            Err(_)
                if program.fuel.is_some()
                    && metering::get_remaining_points(store, &instance) == MeteringPoints::Exhausted =>
            {
                Outcome::OutOfFuel
            }
            Err(e) => Outcome::Trap(e.message()),
        },
    }
}

impl<S: Stdio> Host<S> {
    /// `scratch`: the budget of its `/tmp` in bytes; 0 for none.
    fn new(args: CStrings, env: CStrings, io: S, preopens: Arc<[Preopen]>, scratch: u64) -> Self {
        let scratch = scratch::Scratch::new(scratch);
        Host {
            memory: None,
            args,
            env,
            io: Some(io),
            fds: fs::FdTable::new(preopens, scratch.enabled()),
            scratch,
            buffer: Vec::new(),
            touched: snapshot::Touched::default(),
            preamble: VecDeque::new(),
            capture: None,
            rewinding: None,
        }
    }
}

/// What an interpreter that takes its request on stdin reads there before
/// the body: the length of the rest (u32, little-endian), the number of
/// arguments (u32), the arguments and the environment as NUL-terminated
/// strings.
fn request_preamble(args: &CStrings, env: &CStrings) -> Vec<u8> {
    let rest = 4 + args.bytes.len() + env.bytes.len();
    let mut bytes = Vec::with_capacity(4 + rest);
    bytes.extend_from_slice(&(rest as u32).to_le_bytes());
    bytes.extend_from_slice(&args.count.to_le_bytes());
    bytes.extend_from_slice(&args.bytes);
    bytes.extend_from_slice(&env.bytes);
    bytes
}

/// The memory WASI calls work on: the one exported as `memory`.
fn memory_of(instance: &Instance) -> Option<Memory> {
    instance.exports.get_memory("memory").ok().cloned()
}

/// Runs `f` with the host state and a view of the guest's memory, and turns
/// its result into the errno the guest receives.
fn with_memory<S: Stdio>(
    mut env: FunctionEnvMut<Host<S>>,
    f: impl FnOnce(&mut Host<S>, &MemoryView) -> Result<()>,
) -> i32 {
    let (host, store) = env.data_and_store_mut();
    let Some(memory) = host.memory.clone() else {
        return i32::from(Errno::FAULT.0);
    };
    let view = memory.view(&store);
    match f(host, &view) {
        Ok(()) => 0,
        Err(Errno(e)) => i32::from(e),
    }
}

/// Guest pointers and lengths arrive as i32 and are unsigned in WASI.
fn addr(ptr: i32) -> u64 {
    u64::from(ptr as u32)
}

fn read_bytes<const N: usize>(mem: &MemoryView, ptr: u64) -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    mem.read(ptr, &mut buf).map_err(|_| Errno::FAULT)?;
    Ok(buf)
}

/// Whether `len` bytes at `ptr` lie in memory (FAULT if not): checked
/// before a call has any effect when it writes in several steps, so that
/// one that faults has none.
fn in_memory(mem: &MemoryView, ptr: u64, len: usize) -> Result<()> {
    match ptr.checked_add(len as u64) {
        Some(end) if end <= mem.data_size() => Ok(()),
        _ => Err(Errno::FAULT),
    }
}

fn write_bytes(mem: &MemoryView, ptr: u64, bytes: &[u8]) -> Result<()> {
    mem.write(ptr, bytes).map_err(|_| Errno::FAULT)
}

fn write_u32(mem: &MemoryView, ptr: i32, value: u32) -> Result<()> {
    write_bytes(mem, addr(ptr), &value.to_le_bytes())
}

fn write_u64(mem: &MemoryView, ptr: i32, value: u64) -> Result<()> {
    write_bytes(mem, addr(ptr), &value.to_le_bytes())
}
