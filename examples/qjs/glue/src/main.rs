//! qjs-glue REACTOR.wasm SCRIPT.js OUT.wasm
//!
//! QuickJS-NG's WASI reactor (`qjs-wasi-reactor.wasm`, from PyPI) exports
//! `qjs_init_argv` and `qjs_get_context` but nothing to evaluate code in the
//! context it made. This tool adds three small functions to the module,
//! written in WebAssembly with wasm-encoder, that call the reactor's own
//! `JS_Eval` and wasi-libc's `__wasilibc_initialize_environ` (found by name in
//! its name section):
//!
//! - `wizer-initialize`: `qjs_init_argv(["qjs", "--std"])`, then evaluates
//!   SCRIPT (embedded as a passive data segment) in that context: the script
//!   builds its state and defines `handle()`.
//! - `wizer.resume`: re-reads the environment (wasi-libc caches it; the init
//!   saw none), then evaluates `handle()`, which answers the request on
//!   stdout with `std.out`.
//! - `_start`: the reactor's `_initialize` and `wizer-initialize` unless
//!   they already ran, then `wizer.resume`: the whole request, cold.
//!
//! `wcgid preinit OUT.wasm -o qjs.wasm --rename-func _start=wizer.resume`
//! then bakes the evaluated script into the module.

use std::collections::HashMap;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    ConstExpr, ExportKind, Function, GlobalType, Instruction as I, MemArg, MemArgTarget, SectionId, ValType,
};
use wasmparser::{KnownCustom, Name, Parser, Payload};

/// What the script's `handle()` runs in: errors become a 500, output is
/// flushed either way.
const CALL: &str = "try { handle(); } catch (e) { std.out.puts('Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\n' + e + '\\n'); std.err.puts(e + '\\n' + (e.stack || '')); } finally { std.out.flush(); }";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, reactor, script, out] = &args[..] else {
        eprintln!("usage: qjs-glue REACTOR.wasm SCRIPT.js OUT.wasm");
        std::process::exit(2);
    };
    let wasm = std::fs::read(reactor).unwrap_or_else(|e| fail(&format!("{reactor}: {e}")));
    let script = std::fs::read(script).unwrap_or_else(|e| fail(&format!("{script}: {e}")));
    let glued = glue(&wasm, &script).unwrap_or_else(|e| fail(&e));
    wasmparser::validate(&glued).unwrap_or_else(|e| fail(&format!("the glued module is invalid: {e}")));
    std::fs::write(out, glued).unwrap_or_else(|e| fail(&format!("{out}: {e}")));
}

fn fail(message: &str) -> ! {
    eprintln!("qjs-glue: {message}");
    std::process::exit(1);
}

/// The indices the new functions use, found in the module.
struct Found {
    types: u32,
    functions: u32,
    globals: u32,
    data: u32,
    func_by_name: HashMap<String, u32>,
}

impl Found {
    fn func(&self, name: &str) -> Result<u32, String> {
        self.func_by_name
            .get(name)
            .copied()
            .ok_or(format!("the reactor has no function `{name}`"))
    }
}

fn survey(wasm: &[u8]) -> Result<Found, String> {
    let mut found = Found {
        types: 0,
        functions: 0,
        globals: 0,
        data: 0,
        func_by_name: HashMap::new(),
    };
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::TypeSection(s) => found.types = s.count(),
            Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    if matches!(import.map_err(|e| e.to_string())?.ty, wasmparser::TypeRef::Func(_)) {
                        found.functions += 1;
                    }
                }
            }
            Payload::FunctionSection(s) => found.functions += s.count(),
            Payload::GlobalSection(s) => found.globals = s.count(),
            Payload::DataSection(s) => found.data = s.count(),
            Payload::ExportSection(s) => {
                for export in s {
                    let export = export.map_err(|e| e.to_string())?;
                    if export.kind == wasmparser::ExternalKind::Func {
                        found.func_by_name.insert(export.name.into(), export.index);
                    }
                }
            }
            Payload::CustomSection(s) => {
                if let KnownCustom::Name(names) = s.as_known() {
                    for name in names {
                        if let Name::Function(map) = name.map_err(|e| e.to_string())? {
                            for naming in map {
                                let naming = naming.map_err(|e| e.to_string())?;
                                found.func_by_name.entry(naming.name.into()).or_insert(naming.index);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

fn glue(wasm: &[u8], script: &[u8]) -> Result<Vec<u8>, String> {
    let found = survey(wasm)?;
    let mut glue = Glue::new(found, script)?;
    let mut module = wasm_encoder::Module::new();
    glue.parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| format!("{e:?}"))?;
    Ok(module.finish())
}

/// Passive data segments the new code copies into memory it mallocs.
const ARGV: u32 = 0; // "qjs\0--std\0"
const SCRIPT: u32 = 1; // the script, NUL-terminated
const NAME: u32 = 2; // "app.js\0"
const CALL_SEG: u32 = 3; // CALL, NUL-terminated

struct Glue {
    found: Found,
    segments: Vec<Vec<u8>>,
    /// Type index of `() -> ()`.
    void: u32,
    /// The new globals: ready flag, context, call string, file name.
    ready: u32,
    ctx: u32,
    call: u32,
    name: u32,
    data_count_done: bool,
}

impl Glue {
    fn new(found: Found, script: &[u8]) -> Result<Glue, String> {
        let nul = |s: &[u8]| [s, b"\0"].concat();
        for name in [
            "_initialize",
            "qjs_init_argv",
            "qjs_get_context",
            "malloc",
            "JS_Eval",
            "__wasilibc_initialize_environ",
        ] {
            found.func(name)?;
        }
        let g = found.globals;
        Ok(Glue {
            segments: vec![
                b"qjs\0--std\0".to_vec(),
                nul(script),
                nul(b"app.js"),
                nul(CALL.as_bytes()),
            ],
            void: found.types,
            ready: g,
            ctx: g + 1,
            call: g + 2,
            name: g + 3,
            found,
            data_count_done: false,
        })
    }

    fn segment(&self, id: u32) -> u32 {
        self.found.data + id
    }

    /// Code that mallocs room for passive segment `id`, copies it there and
    /// leaves the address in local `local` (and nothing on the stack).
    fn copy_segment(&self, f: &mut Function, id: u32, local: u32) {
        let len = self.segments[id as usize].len() as i32;
        f.instruction(&I::I32Const(len));
        f.instruction(&I::Call(self.found.func("malloc").unwrap()));
        f.instruction(&I::LocalTee(local));
        f.instruction(&I::I32Const(0));
        f.instruction(&I::I32Const(len));
        f.instruction(&I::MemoryInit {
            mem: 0,
            data_index: self.segment(id),
        });
    }

    /// `wizer-initialize`: the context, the script evaluated in it.
    fn init(&self) -> Function {
        let mut f = Function::new([(2, ValType::I32)]);
        let (tmp, argv) = (0, 1);
        let store = |f: &mut Function, offset: u64| {
            f.instruction(&I::I32Store(MemArg {
                offset,
                align: 2,
                target: MemArgTarget::Memory(0),
                ordering: None,
            }));
        };
        // argv = [strings, strings + 4] in 8 bytes of their own.
        self.copy_segment(&mut f, ARGV, tmp);
        f.instruction(&I::I32Const(8));
        f.instruction(&I::Call(self.found.func("malloc").unwrap()));
        f.instruction(&I::LocalTee(argv));
        f.instruction(&I::LocalGet(tmp));
        store(&mut f, 0);
        f.instruction(&I::LocalGet(argv));
        f.instruction(&I::LocalGet(tmp));
        f.instruction(&I::I32Const(4));
        f.instruction(&I::I32Add);
        store(&mut f, 4);
        f.instruction(&I::I32Const(2));
        f.instruction(&I::LocalGet(argv));
        f.instruction(&I::Call(self.found.func("qjs_init_argv").unwrap()));
        f.instruction(&I::Drop);
        f.instruction(&I::Call(self.found.func("qjs_get_context").unwrap()));
        f.instruction(&I::GlobalSet(self.ctx));
        self.copy_segment(&mut f, NAME, tmp);
        f.instruction(&I::LocalGet(tmp));
        f.instruction(&I::GlobalSet(self.name));
        self.copy_segment(&mut f, CALL_SEG, tmp);
        f.instruction(&I::LocalGet(tmp));
        f.instruction(&I::GlobalSet(self.call));
        // JS_Eval(ctx, script, len, name, JS_EVAL_TYPE_GLOBAL)
        f.instruction(&I::GlobalGet(self.ctx));
        self.copy_segment(&mut f, SCRIPT, tmp);
        f.instruction(&I::LocalGet(tmp));
        f.instruction(&I::I32Const(self.segments[SCRIPT as usize].len() as i32 - 1));
        f.instruction(&I::GlobalGet(self.name));
        f.instruction(&I::I32Const(0));
        f.instruction(&I::Call(self.found.func("JS_Eval").unwrap()));
        f.instruction(&I::Drop);
        f.instruction(&I::I32Const(1));
        f.instruction(&I::GlobalSet(self.ready));
        f.instruction(&I::End);
        f
    }

    /// `wizer.resume`: the environment re-read, `handle()` evaluated.
    fn resume(&self) -> Function {
        let mut f = Function::new([]);
        f.instruction(&I::Call(self.found.func("__wasilibc_initialize_environ").unwrap()));
        f.instruction(&I::GlobalGet(self.ctx));
        f.instruction(&I::GlobalGet(self.call));
        f.instruction(&I::I32Const(self.segments[CALL_SEG as usize].len() as i32 - 1));
        f.instruction(&I::GlobalGet(self.name));
        f.instruction(&I::I32Const(0));
        f.instruction(&I::Call(self.found.func("JS_Eval").unwrap()));
        f.instruction(&I::Drop);
        f.instruction(&I::End);
        f
    }

    /// `_start`: initialization unless it already ran, then the request.
    fn start(&self, init: u32, resume: u32) -> Function {
        let mut f = Function::new([]);
        f.instruction(&I::GlobalGet(self.ready));
        f.instruction(&I::I32Eqz);
        f.instruction(&I::If(wasm_encoder::BlockType::Empty));
        f.instruction(&I::Call(self.found.func("_initialize").unwrap()));
        f.instruction(&I::Call(init));
        f.instruction(&I::End);
        f.instruction(&I::Call(resume));
        f.instruction(&I::End);
        f
    }

    /// Indices of the new functions: init, resume, start.
    fn new_functions(&self) -> [u32; 3] {
        let first = self.found.functions;
        [first, first + 1, first + 2]
    }
}

type Result2 = Result<(), wasm_encoder::reencode::Error<std::convert::Infallible>>;

impl Reencode for Glue {
    type Error = std::convert::Infallible;

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result2 {
        RoundtripReencoder.parse_type_section(types, section)?;
        types.ty().function([], []);
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result2 {
        RoundtripReencoder.parse_function_section(functions, section)?;
        for _ in 0..3 {
            functions.function(self.void);
        }
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result2 {
        RoundtripReencoder.parse_global_section(globals, section)?;
        let ty = GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        };
        for _ in 0..4 {
            globals.global(ty, &ConstExpr::i32_const(0));
        }
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result2 {
        RoundtripReencoder.parse_export_section(exports, section)?;
        let [init, resume, start] = self.new_functions();
        exports.export("wizer-initialize", ExportKind::Func, init);
        exports.export("wizer.resume", ExportKind::Func, resume);
        exports.export("_start", ExportKind::Func, start);
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result2 {
        RoundtripReencoder.parse_code_section(code, section)?;
        let [init, resume, _] = self.new_functions();
        code.function(&self.init());
        code.function(&self.resume());
        code.function(&self.start(init, resume));
        Ok(())
    }

    fn parse_data_section(
        &mut self,
        data: &mut wasm_encoder::DataSection,
        section: wasmparser::DataSectionReader<'_>,
    ) -> Result2 {
        RoundtripReencoder.parse_data_section(data, section)?;
        for segment in &self.segments {
            data.passive(segment.iter().copied());
        }
        Ok(())
    }

    /// `memory.init` needs a data count section (before the code).
    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result2 {
        if before == Some(SectionId::Code) && !self.data_count_done {
            self.data_count_done = true;
            let count = self.found.data + self.segments.len() as u32;
            module.section(&wasm_encoder::DataCountSection { count });
        }
        Ok(())
    }
}
