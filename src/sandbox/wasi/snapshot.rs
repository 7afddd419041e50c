//! Running a module's initialization and capturing its state, for
//! `wcgid preinit`: the instance's defined globals, memories and tables are
//! reached through exports that the caller added for the purpose.

use std::sync::Arc;

use wasmer::{Extern, FunctionEnv, Instance, Store, Value};

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

/// Instantiates `module` (imports resolved as `imports`), calls the exports
/// `calls` in order, and captures the state through `probe`.
#[allow(clippy::too_many_arguments)]
pub fn take<S: Stdio>(
    engine: &wasmer::Engine,
    module: &wasmer::Module,
    imports: &[String],
    preopens: Arc<[Preopen]>,
    args: CStrings,
    stdio: S,
    calls: &[String],
    probe: &Probe,
) -> Result<Snapshot, String> {
    let mut store = Store::new(engine.clone());
    // No scratch directory: what an init writes there could not be in the
    // snapshot anyway.
    let host = FunctionEnv::new(&mut store, Host::new(args, CStrings::default(), stdio, preopens, 0));
    let externs: Vec<Extern> = imports
        .iter()
        .map(|name| funcs::host_function(name, &mut store, &host).expect("resolved").into())
        .collect();
    let instance =
        Instance::new_by_index(&mut store, module, &externs).map_err(|e| format!("instantiation failed: {e}"))?;
    host.as_mut(&mut store).memory = memory_of(&instance);
    let tables_before = table_sizes(&store, &instance, probe)?;
    for name in calls {
        let func = instance
            .exports
            .get_typed_function::<(), ()>(&store, name)
            .map_err(|e| format!("cannot call `{name}`: {e}"))?;
        func.call(&mut store)
            .map_err(|e| match e.downcast::<super::ExitCode>() {
                Ok(super::ExitCode(code)) => format!("`{name}` exited with status {code}"),
                Err(e) => format!("`{name}` trapped: {}", e.message()),
            })?;
    }
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
