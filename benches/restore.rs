//! Restore cost against snapshot size: a module whose memory starts with N
//! MiB of data (a pre-initialized heap), instantiated and run per request;
//! its `_start` reads one byte in every 64 KiB of the data and writes a
//! word in 8 pages, as a request walks an interpreter's heap. Side by side
//! for 1, 16 and 64 MiB: plain Wasmer instantiation, which copies the data
//! into every instance; wcgid's copy-on-write restore from a memory image,
//! whose reset discards the whole image (what a kernel without written-page
//! tracking gets: every read faults again); and the same with the pages
//! written tracked, so reads stay mapped. Then the pre-initialized examples
//! (dict, QuickJS) both ways.
//!
//! Run with `cargo bench --bench restore` after `scripts/build-examples`.

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemArg,
    MemArgTarget, MemorySection, MemoryType, Module, TypeSection, ValType,
};
use wcgid::sandbox::{CStrings, Engine, NullStdio, Outcome};

const MIB: u32 = 1 << 20;
const READ_EVERY: u32 = 64 * 1024;
const PAGES_WRITTEN: u32 = 8;

/// A WASI-less command module with `mib` MiB of non-zero data at address 0.
fn snapshot_module(mib: u32) -> Vec<u8> {
    let bytes = mib * MIB;
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: (bytes as usize / wasmer::WASM_PAGE_SIZE + 1) as u64,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0);
    exports.export("memory", ExportKind::Memory, 0);
    module.section(&exports);
    let mut code = CodeSection::new();
    // Locals: the address, and the sum of the bytes read.
    let mut start = Function::new([(2, ValType::I32)]);
    let arg = |align| MemArg {
        offset: 0,
        align,
        target: MemArgTarget::Memory(0),
        ordering: None,
    };
    // for (addr = 0; addr < bytes; addr += READ_EVERY) sum += mem[addr];
    start.instruction(&Instruction::Block(wasm_encoder::BlockType::Empty));
    start.instruction(&Instruction::Loop(wasm_encoder::BlockType::Empty));
    start.instruction(&Instruction::LocalGet(0));
    start.instruction(&Instruction::I32Const(bytes as i32));
    start.instruction(&Instruction::I32GeU);
    start.instruction(&Instruction::BrIf(1));
    start.instruction(&Instruction::LocalGet(1));
    start.instruction(&Instruction::LocalGet(0));
    start.instruction(&Instruction::I32Load8U(arg(0)));
    start.instruction(&Instruction::I32Add);
    start.instruction(&Instruction::LocalSet(1));
    start.instruction(&Instruction::LocalGet(0));
    start.instruction(&Instruction::I32Const(READ_EVERY as i32));
    start.instruction(&Instruction::I32Add);
    start.instruction(&Instruction::LocalSet(0));
    start.instruction(&Instruction::Br(0));
    start.instruction(&Instruction::End);
    start.instruction(&Instruction::End);
    // Then a word in each of 8 pages spread over the data, the sum in it.
    for i in 0..PAGES_WRITTEN {
        start.instruction(&Instruction::I32Const((i * (bytes / PAGES_WRITTEN)) as i32));
        start.instruction(&Instruction::LocalGet(1));
        start.instruction(&Instruction::I32Store(arg(2)));
    }
    start.instruction(&Instruction::End);
    code.function(&start);
    module.section(&code);
    let mut data = DataSection::new();
    let heap: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8 | 1).collect();
    data.active(0, &ConstExpr::i32_const(0), heap);
    module.section(&data);
    module.finish()
}

/// The two ways a reset can go, as two engines.
fn engines() -> [(&'static str, Engine); 2] {
    [
        ("image discarded", Engine::default().without_write_tracking()),
        ("written pages restored", Engine::default()),
    ]
}

fn restore(c: &mut Criterion) {
    let mut group = c.benchmark_group("restore per request, reads every 64 KiB, writes 8 pages");
    group.sample_size(20);
    let dir = std::env::temp_dir().join(format!("wcgid-restore-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = wasmer::Engine::default();
    for mib in [1, 16, 64] {
        let wasm = snapshot_module(mib);
        let module = wasmer::Module::new(&plain, &wasm).unwrap();
        group.bench_function(format!("{mib:>2} MiB, plain instantiate (copies the data)"), |b| {
            b.iter(|| {
                let mut store = wasmer::Store::new(plain.clone());
                let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
                let start = instance.exports.get_typed_function::<(), ()>(&store, "_start").unwrap();
                start.call(&mut store).unwrap();
            })
        });
        let path: PathBuf = dir.join(format!("snapshot-{mib}.wasm"));
        std::fs::write(&path, &wasm).unwrap();
        for (how, engine) in engines() {
            let program = engine.load(&path, &[]).unwrap();
            group.bench_function(format!("{mib:>2} MiB, wcgid copy-on-write, {how}"), |b| {
                b.iter(|| {
                    let (outcome, _) = program.run(CStrings::default(), CStrings::default(), NullStdio);
                    assert_eq!(outcome, Outcome::Exit(0));
                })
            });
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut group = c.benchmark_group("pre-initialized examples per request");
    for (name, path, query) in [
        ("dict", "dict/dict.wasm", "QUERY_STRING=word=paisule"),
        ("QuickJS", "qjs/qjs.wasm", "QUERY_STRING=n=97"),
    ] {
        let mut env = CStrings::default();
        for var in ["REQUEST_METHOD=GET", "GATEWAY_INTERFACE=CGI/1.1", query] {
            env.push(&[var.as_bytes()]);
        }
        for (how, engine) in engines() {
            let program = engine
                .load(&root.join(path), &[])
                .expect("run scripts/build-examples first");
            group.bench_function(format!("{name}, {how}"), |b| {
                b.iter(|| {
                    let (outcome, _) = program.run(CStrings::default(), env.clone(), NullStdio);
                    assert_eq!(outcome, Outcome::Exit(0));
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, restore);
criterion_main!(benches);
