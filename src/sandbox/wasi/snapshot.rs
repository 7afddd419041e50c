//! Running a module's initialization and capturing its state, for
//! `wcgid preinit`: the instance's defined globals, memories and tables are
//! reached through exports that the caller added for the purpose.

use std::sync::Arc;

use wasmer::{Extern, FunctionEnv, Instance, Store, TypedFunction, Value};

use super::{Host, Preopen, funcs, memory_of};
use crate::sandbox::{CStrings, Stdio};

/// The exports, added to the module by the caller, through which the state
/// is read: (index in its index space, export name).
#[derive(Debug, Default, Clone)]
pub struct Probe {
    pub globals: Vec<(u32, String)>,
    pub memories: Vec<(u32, String)>,
    pub tables: Vec<(u32, String)>,
}

/// A global's value, as a constant expression can give it again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    /// A null reference (funcref or externref).
    Null,
}

/// What WASI state the initialization read: wasi-libc caches both the
/// environment and the preopened directories once read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Touched {
    pub environ: bool,
    pub preopens: bool,
}

#[derive(Debug)]
pub struct Snapshot {
    pub globals: Vec<(u32, Scalar)>,
    pub memories: Vec<(u32, Vec<u8>)>,
    pub touched: Touched,
}

/// Drives an instance through its initialization, up to where its state is
/// captured.
pub trait Initializer {
    fn run(&mut self, guest: &mut Guest<'_>) -> Result<(), String>;
}

/// Calls exports without arguments, in order: a Wizer-style init.
pub struct Calls<'a>(pub &'a [String]);

impl Initializer for Calls<'_> {
    fn run(&mut self, guest: &mut Guest<'_>) -> Result<(), String> {
        for name in self.0 {
            guest.call(name, &[])?;
        }
        Ok(())
    }
}

/// Where an initialization is captured when it first reads stdin: Binaryen
/// asyncify's `asyncify_start_unwind`, and the address of its data.
pub struct Capture {
    pub unwind: TypedFunction<i32, ()>,
    pub data: i32,
}

/// The instance being initialized, as an [`Initializer`] sees it.
pub struct Guest<'a> {
    store: &'a mut Store,
    instance: &'a Instance,
    arm: &'a dyn Fn(&mut Store, Capture),
}

impl Guest<'_> {
    /// Calls the export `name`; a trap or an exit is an error that says so.
    pub fn call(&mut self, name: &str, args: &[Value]) -> Result<Box<[Value]>, String> {
        let func = self
            .instance
            .exports
            .get_function(name)
            .map_err(|e| format!("cannot call `{name}`: {e}"))?;
        func.call(self.store, args)
            .map_err(|e| match e.downcast::<super::ExitCode>() {
                Ok(super::ExitCode(code)) => format!("`{name}` exited with status {code}"),
                Err(e) => format!("`{name}` trapped: {}", e.message()),
            })
    }

    /// Calls the export `name`, which returns an i32.
    pub fn call_i32(&mut self, name: &str, args: &[i32]) -> Result<i32, String> {
        let args: Vec<Value> = args.iter().map(|&a| Value::I32(a)).collect();
        match *self.call(name, &args)? {
            [Value::I32(result)] => Ok(result),
            _ => Err(format!("`{name}` does not return an i32")),
        }
    }

    /// The value of the exported i32 global `name`.
    pub fn global_i32(&mut self, name: &str) -> Result<i32, String> {
        match self.instance.exports.get_global(name).map(|g| g.get(self.store)) {
            Ok(Value::I32(v)) => Ok(v),
            _ => Err(format!("it exports no i32 global `{name}`")),
        }
    }

    /// Writes `bytes` into memory at `at`.
    pub fn write(&mut self, at: u32, bytes: &[u8]) -> Result<(), String> {
        let memory = super::memory_of(self.instance).ok_or("it exports no memory")?;
        memory
            .view(self.store)
            .write(u64::from(at), bytes)
            .map_err(|e| format!("cannot write {} bytes at {at}: {e}", bytes.len()))
    }

    /// The NUL-terminated string at `at`.
    pub fn read_c_string(&mut self, at: u32) -> Result<String, String> {
        let memory = super::memory_of(self.instance).ok_or("it exports no memory")?;
        let view = memory.view(self.store);
        let mut bytes = Vec::new();
        for offset in u64::from(at).. {
            match view.read_u8(offset) {
                Ok(0) => break,
                Ok(b) if bytes.len() < 64 * 1024 => bytes.push(b),
                _ => break,
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Grows memory by `pages`; returns the address of the first new byte.
    pub fn grow(&mut self, pages: u32) -> Result<u32, String> {
        let memory = super::memory_of(self.instance).ok_or("it exports no memory")?;
        let old = memory.grow(self.store, pages).map_err(|e| e.to_string())?;
        u32::try_from(old.bytes().0).map_err(|_| "memory is full".into())
    }

    /// Makes the guest's next read of stdin unwind it to the host, with
    /// Binaryen asyncify's data at `data`: the call that is running returns,
    /// and the state taken is that of the guest waiting in that read.
    pub fn capture_at_stdin(&mut self, data: u32) -> Result<(), String> {
        let unwind = self
            .instance
            .exports
            .get_typed_function::<i32, ()>(self.store, "asyncify_start_unwind")
            .map_err(|e| format!("it is not asyncified: {e}"))?;
        (self.arm)(
            self.store,
            Capture {
                unwind,
                data: data as i32,
            },
        );
        Ok(())
    }
}

/// Instantiates `module` (imports resolved as `imports`) with `args`, `env`
/// and a scratch directory of `scratch` bytes (0 for none: what an init
/// writes there is not in the snapshot, but wasi-libc lists the preopened
/// directories once, so an instance must get the ones its snapshot was taken
/// with), runs `init`, and captures the state through `probe`.
#[allow(clippy::too_many_arguments)]
pub fn take<S: Stdio>(
    engine: &wasmer::Engine,
    module: &wasmer::Module,
    imports: &[String],
    preopens: Arc<[Preopen]>,
    (args, env, scratch): (CStrings, CStrings, u64),
    stdio: S,
    init: &mut dyn Initializer,
    probe: &Probe,
) -> Result<Snapshot, String> {
    let mut store = Store::new(engine.clone());
    let host = FunctionEnv::new(&mut store, Host::new(args, env, stdio, preopens, scratch));
    let externs: Vec<Extern> = imports
        .iter()
        .map(|name| funcs::host_function(name, &mut store, &host).expect("resolved").into())
        .collect();
    let instance =
        Instance::new_by_index(&mut store, module, &externs).map_err(|e| format!("instantiation failed: {e}"))?;
    host.as_mut(&mut store).memory = memory_of(&instance);
    let tables_before = table_sizes(&store, &instance, probe)?;
    let arm_env = host.clone();
    let arm = move |store: &mut Store, capture: Capture| arm_env.as_mut(store).capture = Some(capture);
    init.run(&mut Guest {
        store: &mut store,
        instance: &instance,
        arm: &arm,
    })?;
    // The caller refuses code that can set table elements; what is left to
    // check is growth (table.grow).
    for ((index, _), (before, after)) in probe
        .tables
        .iter()
        .zip(tables_before.iter().zip(&table_sizes(&store, &instance, probe)?))
    {
        if before != after {
            return Err(format!(
                "the initialization grew table {index} from {before} to {after} elements; tables cannot be snapshotted"
            ));
        }
    }
    let mut globals = Vec::with_capacity(probe.globals.len());
    for (index, name) in &probe.globals {
        let value = instance
            .exports
            .get_global(name)
            .map_err(|e| e.to_string())?
            .get(&mut store);
        let scalar = match value {
            Value::I32(v) => Scalar::I32(v),
            Value::I64(v) => Scalar::I64(v),
            Value::F32(v) => Scalar::F32(v.to_bits()),
            Value::F64(v) => Scalar::F64(v.to_bits()),
            Value::V128(v) => Scalar::V128(v),
            Value::FuncRef(None) | Value::ExternRef(None) => Scalar::Null,
            _ => {
                return Err(format!(
                    "global {index} holds a reference after the initialization; only null references can be snapshotted"
                ));
            }
        };
        globals.push((*index, scalar));
    }
    let mut memories = Vec::with_capacity(probe.memories.len());
    for (index, name) in &probe.memories {
        let memory = instance.exports.get_memory(name).map_err(|e| e.to_string())?;
        let bytes = memory.view(&store).copy_to_vec().map_err(|e| e.to_string())?;
        memories.push((*index, bytes));
    }
    let touched = host.as_ref(&store).touched;
    Ok(Snapshot {
        globals,
        memories,
        touched,
    })
}

/// Each probed table's size.
fn table_sizes(store: &Store, instance: &Instance, probe: &Probe) -> Result<Vec<u32>, String> {
    probe
        .tables
        .iter()
        .map(|(_, name)| Ok(instance.exports.get_table(name).map_err(|e| e.to_string())?.size(store)))
        .collect()
}
