//! Stopping a guest that computes without ever calling the host, from
//! another thread, within microseconds.
//!
//! Every guest is compiled with an interrupt check, the way Wasmtime's epoch
//! interruption works: [`Check`], a Wasmer module middleware, gives the
//! module two more mutable globals, the flag (exported as [`EXPORT`] so that
//! it can be found; the guest's own code never names either), and puts a
//! check at the entry of every function and the head of every loop, so that
//! no guest runs long without passing one:
//!
//! ```text
//! global.get $flag  global.set $seen  global.get $seen  if  unreachable  end
//! ```
//!
//! The store to `$seen` is what makes the check work: Cranelift's alias
//! analysis puts all globals in one region, and would otherwise reuse the
//! flag's value loaded before a loop that stores to no global for every
//! turn of it (measured: a spinning guest never stopped). The store makes
//! each check's load a new one, and the load after it is forwarded from the
//! store, so a check costs a load, a store and a branch. A watcher sets the flag through an [`Interrupt`]; the guest traps at
//! its next check, and [`Interrupt::fired`] tells that trap from the guest's
//! own. A load and a well-predicted branch cost a fraction of what fuel
//! metering's count costs (see docs/performance.md).
//!
//! # Why by hand
//! Wasmer 7.4 offers no epochs, and its `experimental-host-interrupt`
//! stops a guest with a signal that takes the process down when a stray
//! one arrives. A global's storage is reachable from the host only through
//! its store, which the running guest holds, so the flag is found the way
//! compiled code finds it: module-defined globals live inline in the
//! instance's `VMContext` at offsets that Wasmer's public `VMOffsets` gives,
//! and the memory's definition, whose address our tunables receive, lives
//! there too. The `unsafe` of this module is that arithmetic and the store
//! through the pointer, guarded so that the pointer is never used once the
//! instance may be gone.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use wasmer::sys::vm::{VMMemoryDefinition, VMOffsets};
use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type};
use wasmer_types::{GlobalIndex, LocalMemoryIndex};

/// The export naming the flag. Not a valid identifier in any source
/// language, so no guest export collides with it.
pub const EXPORT: &str = "wcgid:interrupt";

/// The middleware that compiles the check in. One serves one module (it
/// keeps the flag's index between the module's and its functions' passes).
#[derive(Debug, Default)]
pub struct Check {
    /// The flag's and `$seen`'s global indices.
    globals: Mutex<Option<(u32, u32)>>,
}

impl ModuleMiddleware for Check {
    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let mut add = || {
            let global = info.globals.push(GlobalType::new(Type::I32, Mutability::Var));
            info.global_initializers.push(GlobalInit::I32Const(0));
            global
        };
        let (flag, seen) = (add(), add());
        info.exports.insert(EXPORT.to_owned(), ExportIndex::Global(flag));
        *lock(&self.globals) = Some((flag.as_u32(), seen.as_u32()));
        Ok(())
    }

    fn generate_function_middleware<'a>(&self, _: LocalFunctionIndex) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let (flag, seen) = lock(&self.globals).expect("the module pass runs first");
        Box::new(FunctionCheck {
            flag,
            seen,
            entered: false,
        })
    }
}

#[derive(Debug)]
struct FunctionCheck {
    flag: u32,
    seen: u32,
    entered: bool,
}

impl FunctionCheck {
    fn check<'a>(&self, state: &mut MiddlewareReaderState<'a>) {
        state.extend([
            Operator::GlobalGet {
                global_index: self.flag,
            },
            Operator::GlobalSet {
                global_index: self.seen,
            },
            Operator::GlobalGet {
                global_index: self.seen,
            },
            Operator::If {
                blockty: BlockType::Empty,
            },
            Operator::Unreachable,
            Operator::End,
        ]);
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionCheck {
    fn feed(&mut self, operator: Operator<'a>, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        if !self.entered {
            self.entered = true;
            self.check(state);
        }
        let head = matches!(operator, Operator::Loop { .. });
        state.push_operator(operator);
        if head {
            self.check(state);
        }
        Ok(())
    }
}

/// Where a module's flag lies in its instances' `VMContext`: this many
/// bytes after the definition of its memory.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    from_memory: isize,
}

impl Layout {
    /// The layout of a module compiled with [`Check`] whose only memory is
    /// its own; `None` for any other.
    pub fn of(module: &wasmer::Module) -> Option<Layout> {
        let info = module.info();
        let ExportIndex::Global(flag) = *info.exports.get(EXPORT)? else {
            return None;
        };
        let flag = info.local_global_index(GlobalIndex::from_u32(flag.as_u32()))?;
        if info.memories.len() != 1 || info.num_imported_memories != 0 {
            return None;
        }
        let offsets = VMOffsets::new(std::mem::size_of::<usize>() as u8, info);
        let memory = offsets.vmctx_vmmemory_definition(LocalMemoryIndex::from_u32(0));
        let flag = offsets.vmctx_vmglobal_definition(flag);
        Some(Layout {
            from_memory: flag as isize - memory as isize,
        })
    }
}

/// Stops one running instance from any thread: see [`Interrupt::interrupt`].
/// Does nothing for an instance compiled without the check, and nothing
/// once the instance is gone.
#[derive(Clone, Default)]
pub struct Interrupt {
    flag: Arc<Mutex<Option<Flag>>>,
}

/// The flag of a live instance.
struct Flag(std::ptr::NonNull<u32>);

// SAFETY: the pointer is only dereferenced under the mutex, while the
// instance it points into is alive (see `Armed`).
unsafe impl Send for Flag {}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // An Option set or taken by one store: a panic cannot leave it torn.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Interrupt {
    /// Makes the instance trap at its next check; returns whether there was
    /// one to interrupt.
    pub fn interrupt(&self) -> bool {
        let flag = lock(&self.flag);
        let Some(Flag(at)) = &*flag else {
            return false;
        };
        // SAFETY: `at` points to the flag's 4 aligned bytes inside the live
        // instance's VMContext (the lock keeps `Armed` from dropping while
        // we hold it). Compiled code only loads it, so an atomic store
        // races with nothing that could tear.
        unsafe { AtomicU32::from_ptr(at.as_ptr()) }.store(1, Ordering::Release);
        true
    }

    /// Whether the running instance's flag is set: a trap it raised is the
    /// check's. Only on the thread running the instance.
    pub fn fired(&self) -> bool {
        let flag = lock(&self.flag);
        // SAFETY: as in `interrupt`.
        flag.as_ref()
            .is_some_and(|Flag(at)| unsafe { AtomicU32::from_ptr(at.as_ptr()) }.load(Ordering::Acquire) != 0)
    }
}

/// The flag of an instance as long as it lives: dropped before the
/// instance (declared after its store), it disarms the [`Interrupt`].
pub struct Armed(Interrupt);

impl Armed {
    /// Arms an interrupt for the instance whose memory is defined at
    /// `memory`, compiled with `layout`.
    ///
    /// # Safety
    /// `memory` is the `VMMemoryDefinition` inside the `VMContext` of an
    /// instance of the module `layout` was taken from, and the instance
    /// outlives the returned value.
    pub unsafe fn new(memory: std::ptr::NonNull<VMMemoryDefinition>, layout: Layout) -> Armed {
        // SAFETY: both lie inside the same VMContext allocation, the offset
        // taken from the VMOffsets that laid it out (caller's contract).
        let flag = unsafe { memory.cast::<u8>().offset(layout.from_memory) }.cast::<u32>();
        let interrupt = Interrupt::default();
        *lock(&interrupt.flag) = Some(Flag(flag));
        Armed(interrupt)
    }

    pub fn interrupt(&self) -> &Interrupt {
        &self.0
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        lock(&self.0.flag).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_found_by_layout_is_the_global_the_checks_read() {
        let checks = crate::sandbox::Checks {
            interrupt: true,
            fuel: false,
        };
        // A loop that stores to memory only, as compiled code spins.
        let wat = r#"(module (memory (export "memory") 1)
            (func (export "spin") (loop (i32.store (i32.const 8) (i32.add (i32.load (i32.const 8)) (i32.const 1))) (br 0))))"#;
        // The engine that compiled the module holds its code.
        let engine = checks.compiler().unwrap();
        let module = wasmer::Module::new(&engine, wat).unwrap();
        let layout = Layout::of(&module).expect("compiled with the check");
        let mut store = wasmer::Store::new(engine);
        let (instance, memory) = crate::sandbox::memory::with_image(None, None, || {
            wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).map_err(|e| e.to_string())
        });
        let instance = instance.unwrap();
        // SAFETY: the memory of `instance`, which outlives `armed`.
        let armed = unsafe { Armed::new(memory.unwrap(), layout) };
        let global = instance.exports.get_global(EXPORT).unwrap();
        assert_eq!(global.get(&mut store), wasmer::Value::I32(0));
        let interrupt = armed.interrupt().clone();
        let spin = instance.exports.get_typed_function::<(), ()>(&store, "spin").unwrap();
        let (done, stopped) = std::sync::mpsc::channel();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let interrupted = interrupt.interrupt();
            if stopped.recv_timeout(std::time::Duration::from_secs(5)).is_err() {
                eprintln!("the guest did not stop within 5 s of its interrupt");
                std::process::abort();
            }
            interrupted
        });
        assert!(spin.call(&mut store).is_err(), "the spinning guest traps");
        done.send(()).unwrap();
        assert!(stopper.join().unwrap());
        assert!(armed.interrupt().fired());
        assert_eq!(global.get(&mut store), wasmer::Value::I32(1));
        let interrupt = armed.interrupt().clone();
        drop(armed);
        assert!(!interrupt.interrupt(), "disarmed with the instance");
    }
}
