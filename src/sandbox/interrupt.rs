//! Stopping a guest that computes without ever calling the host, from
//! another thread, within microseconds.
//!
//! Every guest is compiled with an interrupt check, the way Wasmtime's epoch
//! interruption works: [`Check`], a Wasmer module middleware, puts
//! `global.get $flag; if; unreachable; end` at the head of every loop and
//! at the entry of every function that calls another, so that no guest
//! runs long without passing one: only loops and recursion can run long,
//! and a function that calls none and has no loop ends soon after it
//! starts (most small helpers, which need no check of their own). A watcher sets the flags through an [`Interrupt`]; the guest traps
//! at its next check, and [`Interrupt::fired`] tells that trap from the
//! guest's own.
//!
//! A check costs a load and a well-predicted branch, which run beside the
//! guest's own work: no store, so that even a one-cycle loop barely slows
//! (see docs/performance.md). The flags are mutable globals the module
//! gains (exported as [`EXPORT`] and [`EXPORT_LAST`] so that they can be
//! found; the guest's own code never names them), one per check of the
//! function with the most: within a function no two checks read the same
//! flag. That is what makes the checks work. Cranelift's alias analysis
//! puts every global in one region and replaces a load by an earlier one of
//! the same address when no global was stored in between: a loop that
//! stores to no global would otherwise reuse the flag its function's entry
//! loaded, for every turn, and never stop (measured). A store to another
//! global in every check would prevent it too, but doubles the time of a
//! tight loop.
//!
//! # Why by hand
//! Wasmer 7.4 offers no epochs, and its `experimental-host-interrupt`
//! stops a guest with a signal that takes the process down when a stray
//! one arrives. A global's storage is reachable from the host only through
//! its store, which the running guest holds, so the flags are found the way
//! compiled code finds them: module-defined globals live inline in the
//! instance's `VMContext` at offsets that Wasmer's public `VMOffsets` gives,
//! and the memory's definition, whose address our tunables receive, lives
//! there too. The `unsafe` of this module is that arithmetic and the stores
//! through the pointer, guarded so that the pointer is never used once the
//! instance may be gone.

#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use wasmer::sys::vm::{VMMemoryDefinition, VMOffsets};
use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type};
use wasmer_types::{GlobalIndex, LocalMemoryIndex};

/// The exports naming the first and the last flag. Not valid identifiers
/// in any source language, so no guest export collides with them.
pub const EXPORT: &str = "wcgid:interrupt";
pub const EXPORT_LAST: &str = "wcgid:interrupt-last";

/// The middleware that compiles the checks in. One serves one module (it
/// keeps the flags' first index between the module's and its functions'
/// passes).
#[derive(Debug)]
pub struct Check {
    /// Checks in the function with the most: the flags to add.
    flags: u32,
    /// Whether each function (by local index) calls another: its entry is
    /// checked.
    calls: Vec<bool>,
    first: Mutex<Option<u32>>,
}

impl Check {
    /// The middleware for the module `wasm`, whose functions it counts the
    /// checks of.
    pub fn for_module(wasm: &[u8]) -> Result<Check, String> {
        use wasmparser::Operator as Op;
        let mut most = 1;
        let mut calls = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            if let wasmparser::Payload::CodeSectionEntry(body) = payload.map_err(|e| e.to_string())? {
                let (mut loops, mut call) = (0, false);
                let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                while !ops.eof() {
                    match ops.read().map_err(|e| e.to_string())? {
                        Op::Loop { .. } => loops += 1,
                        Op::Call { .. }
                        | Op::CallIndirect { .. }
                        | Op::CallRef { .. }
                        | Op::ReturnCall { .. }
                        | Op::ReturnCallIndirect { .. }
                        | Op::ReturnCallRef { .. } => call = true,
                        _ => {}
                    }
                }
                most = most.max(loops + u32::from(call));
                calls.push(call);
            }
        }
        Ok(Check {
            flags: most,
            calls,
            first: Mutex::new(None),
        })
    }
}

impl ModuleMiddleware for Check {
    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let mut last = None;
        for _ in 0..self.flags {
            last = Some(info.globals.push(GlobalType::new(Type::I32, Mutability::Var)));
            info.global_initializers.push(GlobalInit::I32Const(0));
        }
        let last = last.expect("one flag at least");
        let first = GlobalIndex::from_u32(last.as_u32() + 1 - self.flags);
        info.exports.insert(EXPORT.to_owned(), ExportIndex::Global(first));
        info.exports.insert(EXPORT_LAST.to_owned(), ExportIndex::Global(last));
        *self.first.lock() = Some(first.as_u32());
        Ok(())
    }

    fn generate_function_middleware<'a>(&self, function: LocalFunctionIndex) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let first = self.first.lock().expect("the module pass runs first");
        // A function the count missed (none should be) is checked anyway.
        let calls = self.calls.get(function.as_u32() as usize).copied().unwrap_or(true);
        Box::new(FunctionCheck {
            next: first,
            end: first + self.flags,
            entered: !calls,
        })
    }
}

#[derive(Debug)]
struct FunctionCheck {
    /// The flag of the function's next check, and the end of the flags.
    next: u32,
    end: u32,
    /// The entry was passed (or needs no check).
    entered: bool,
}

impl FunctionCheck {
    fn check<'a>(&mut self, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        if self.next == self.end {
            return Err(MiddlewareError::new(
                "interrupt check",
                "a function has more loops than counted",
            ));
        }
        state.extend([
            Operator::GlobalGet {
                global_index: self.next,
            },
            Operator::If {
                blockty: BlockType::Empty,
            },
            Operator::Unreachable,
            Operator::End,
        ]);
        self.next += 1;
        Ok(())
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionCheck {
    fn feed(&mut self, operator: Operator<'a>, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        if !self.entered {
            self.entered = true;
            self.check(state)?;
        }
        let head = matches!(operator, Operator::Loop { .. });
        state.push_operator(operator);
        if head {
            self.check(state)?;
        }
        Ok(())
    }
}

/// Where a module's flags lie in its instances' `VMContext`: this many
/// bytes after the definition of its memory, and how many there are.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    from_memory: isize,
    flags: usize,
    /// Bytes from one flag to the next.
    stride: usize,
}

impl Layout {
    /// The layout of a module compiled with [`Check`] whose only memory is
    /// its own; `None` for any other.
    pub fn of(module: &wasmer::Module) -> Option<Layout> {
        let info = module.info();
        let flag = |name| match info.exports.get(name)? {
            ExportIndex::Global(global) => info.local_global_index(GlobalIndex::from_u32(global.as_u32())),
            _ => None,
        };
        let (first, last) = (flag(EXPORT)?, flag(EXPORT_LAST)?);
        if info.memories.len() != 1 || info.num_imported_memories != 0 || last < first {
            return None;
        }
        let offsets = VMOffsets::new(std::mem::size_of::<usize>() as u8, info);
        let memory = offsets.vmctx_vmmemory_definition(LocalMemoryIndex::from_u32(0));
        let start = offsets.vmctx_vmglobal_definition(first);
        Some(Layout {
            from_memory: start as isize - memory as isize,
            flags: (last.as_u32() - first.as_u32() + 1) as usize,
            stride: usize::from(offsets.size_of_vmglobal_local()),
        })
    }
}

/// Stops one running instance from any thread: see [`Interrupt::interrupt`].
/// Does nothing for an instance compiled without the check, and nothing
/// once the instance is gone.
#[derive(Clone, Default)]
pub struct Interrupt {
    flags: Arc<Mutex<Option<Flags>>>,
}

/// The flags of a live instance: the first, how many, and their stride.
struct Flags {
    first: std::ptr::NonNull<u8>,
    count: usize,
    stride: usize,
}

// SAFETY: the pointer is only dereferenced under the mutex, while the
// instance it points into is alive (see `Armed`).
unsafe impl Send for Flags {}

impl Flags {
    /// The `i`th flag, as compiled code reads it.
    fn flag(&self, i: usize) -> &AtomicU32 {
        // SAFETY: flag `i < count` is 4 aligned bytes inside the live
        // instance's VMContext (the caller holds the lock that keeps
        // `Armed` from dropping). Compiled code only loads the flags, so
        // atomic access races with nothing that could tear.
        unsafe { AtomicU32::from_ptr(self.first.as_ptr().add(i * self.stride).cast()) }
    }
}

impl Interrupt {
    /// Makes the instance trap at its next check; returns whether there was
    /// one to interrupt.
    pub fn interrupt(&self) -> bool {
        let flags = self.flags.lock();
        let Some(flags) = &*flags else {
            return false;
        };
        for i in 0..flags.count {
            flags.flag(i).store(1, Ordering::Release);
        }
        true
    }

    /// Whether the running instance's flags are set: a trap it raised is
    /// the check's. Only on the thread running the instance.
    pub fn fired(&self) -> bool {
        let flags = self.flags.lock();
        flags.as_ref().is_some_and(|f| f.flag(0).load(Ordering::Acquire) != 0)
    }
}

/// The flags of an instance as long as it lives: dropped before the
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
        let first = unsafe { memory.cast::<u8>().offset(layout.from_memory) };
        let interrupt = Interrupt::default();
        *interrupt.flags.lock() = Some(Flags {
            first,
            count: layout.flags,
            stride: layout.stride,
        });
        Armed(interrupt)
    }

    pub fn interrupt(&self) -> &Interrupt {
        &self.0
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.flags.lock().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `function` of `wat` (compiled with the checks) and interrupts
    /// it 50 ms in; aborts the tests if it does not stop within 5 s.
    fn interrupted(wat: &str, function: &str) {
        let checks = crate::sandbox::Checks {
            interrupt: true,
            fuel: false,
        };
        // The engine that compiled the module holds its code.
        let engine = checks.compiler(&wat::parse_str(wat).unwrap()).unwrap().unwrap();
        let module = wasmer::Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let layout = Layout::of(&module).expect("compiled with the check");
        let mut store = wasmer::Store::new(engine);
        let (instance, memory) = crate::sandbox::memory::with_image(None, None, || {
            wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).map_err(|e| e.to_string())
        });
        let instance = instance.unwrap();
        // SAFETY: the memory of `instance`, which outlives `armed`.
        let armed = unsafe { Armed::new(memory.unwrap(), layout) };
        let last = instance.exports.get_global(EXPORT_LAST).unwrap();
        assert_eq!(last.get(&mut store), wasmer::Value::I32(0));
        let interrupt = armed.interrupt().clone();
        let run = instance.exports.get_function(function).unwrap();
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
        assert!(run.call(&mut store, &[]).is_err(), "{function}: the guest traps");
        done.send(()).unwrap();
        assert!(stopper.join().unwrap());
        assert!(armed.interrupt().fired());
        assert_eq!(last.get(&mut store), wasmer::Value::I32(1), "every flag is set");
        let interrupt = armed.interrupt().clone();
        drop(armed);
        assert!(!interrupt.interrupt(), "disarmed with the instance");
    }

    /// Nested loops storing to memory only, as compiled code spins: a check
    /// whose load Cranelift could share with an earlier one would never
    /// see its flag.
    #[test]
    fn nested_loops_are_stopped() {
        interrupted(
            r#"(module (memory (export "memory") 1)
                (func (export "spin")
                    (loop (loop (i32.store (i32.const 8) (i32.add (i32.load (i32.const 8)) (i32.const 1))) (br 0)))))"#,
            "spin",
        );
    }

    /// Recursion without a loop (an exponential one, that would run for
    /// years): stopped at a function entry.
    #[test]
    fn recursion_is_stopped() {
        interrupted(
            r#"(module (memory (export "memory") 1)
                (func $fib (param i32) (result i32)
                    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
                        (then (local.get 0))
                        (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                                       (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
                (func (export "fib") (drop (call $fib (i32.const 80)))))"#,
            "fib",
        );
    }
}
