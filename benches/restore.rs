//! Restore cost against snapshot size: a module whose memory starts with N
//! MiB of data (a pre-initialized heap), instantiated and run per request.
//! Side by side for 1, 16 and 64 MiB: plain Wasmer instantiation, which
//! copies the data into every instance, and wcgid's copy-on-write restore
//! from a memory image. The guest's `_start` reads and writes one word in
//! each of 16 pages spread over the data, as a request would touch a few.
//!
//! Run with `cargo bench --bench restore`.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemArg,
    MemArgTarget, MemorySection, MemoryType, Module, TypeSection,
};
use wcgid::sandbox::{CStrings, Engine, NullStdio, Outcome};

const MIB: u32 = 1 << 20;

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
        minimum: u64::from(bytes / 65536 + 1),
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
    let mut start = Function::new([]);
    let arg = MemArg {
        offset: 0,
        align: 2,
        target: MemArgTarget::Memory(0),
        ordering: None,
    };
    for i in 0..16u32 {
        let addr = (i * (bytes / 16)) as i32;
        start.instruction(&Instruction::I32Const(addr));
        start.instruction(&Instruction::I32Const(addr));
        start.instruction(&Instruction::I32Load(arg));
        start.instruction(&Instruction::I32Const(1));
        start.instruction(&Instruction::I32Add);
        start.instruction(&Instruction::I32Store(arg));
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

fn restore(c: &mut Criterion) {
    let mut group = c.benchmark_group("restore per request");
    group.sample_size(20);
    let dir = std::env::temp_dir().join(format!("wcgid-restore-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let engine = Engine::default();
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
        let program = engine.load(&path, &[]).unwrap();
        group.bench_function(format!("{mib:>2} MiB, wcgid copy-on-write restore"), |b| {
            b.iter(|| {
                let (outcome, _) = program.run(CStrings::default(), CStrings::default(), NullStdio);
                assert_eq!(outcome, Outcome::Exit(0));
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, restore);
criterion_main!(benches);
