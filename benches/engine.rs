//! Per-request engine cost: a fresh Store and Instance of a guest, its
//! `_start` run to the end, stdio discarded. Side by side: a bare Wasmer
//! instantiate + call of an empty module (the floor), the hello guests, and
//! the dict guest run cold (its init on every request) and pre-initialized.
//! Then what the interrupt check compiled into every guest costs: compute-
//! heavy guests (a tight loop, dict and QuickJS cold) compiled with and
//! without it.
//!
//! Run with `cargo bench --bench engine` after `scripts/build-examples`.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use wcgid::sandbox::{CStrings, Engine, NullStdio, Outcome};

fn cgi_env() -> CStrings {
    let mut env = CStrings::default();
    for var in [
        "GATEWAY_INTERFACE=CGI/1.1",
        "QUERY_STRING=name=bench",
        "REQUEST_METHOD=GET",
        "SCRIPT_NAME=/hello",
        "SERVER_NAME=localhost",
        "SERVER_PORT=80",
        "SERVER_PROTOCOL=HTTP/1.1",
        "SERVER_SOFTWARE=nginx",
        "REMOTE_ADDR=127.0.0.1",
        "HTTP_HOST=localhost",
        "HTTP_USER_AGENT=bench",
        "HTTP_ACCEPT=*/*",
    ] {
        env.push(&[var.as_bytes()]);
    }
    env
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("per request");

    let engine = wasmer::Engine::default();
    let module = wasmer::Module::new(
        &engine,
        r#"(module (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .expect("empty module");
    group.bench_function("bare wasmer instantiate + call", |b| {
        b.iter(|| {
            let mut store = wasmer::Store::new(engine.clone());
            let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
            let start = instance.exports.get_typed_function::<(), ()>(&store, "_start").unwrap();
            start.call(&mut store).unwrap();
        })
    });

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let engine = Engine::default();
    let env = cgi_env();
    for (name, path) in [
        ("hello.wasm (C)", "hello-c/hello.wasm"),
        ("hello.wasm (Rust)", "hello/hello.wasm"),
    ] {
        // The default scratch directory, as every app has it: made only if
        // the guest uses /tmp, which hello does not.
        let program = engine
            .load(&root.join(path), &[])
            .expect("run scripts/build-examples first")
            .with_scratch(16 << 20);
        group.bench_function(format!("wcgid {name}"), |b| {
            b.iter(|| {
                let (outcome, _) = program.run(CStrings::default(), env.clone(), NullStdio);
                assert_eq!(outcome, Outcome::Exit(0));
            })
        });
    }
    group.finish();

    // The pre-initialization examples, cold (init on every request) and
    // restored from their snapshot.
    for (group_name, query, cold, warm) in [
        (
            "dict lookup per request",
            "QUERY_STRING=word=paisule",
            "dict/dict-cold.wasm",
            "dict/dict.wasm",
        ),
        (
            "QuickJS request per request",
            "QUERY_STRING=n=97",
            "qjs/qjs-cold.wasm",
            "qjs/qjs.wasm",
        ),
    ] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10);
        let mut env = cgi_env();
        env.push(&[query.as_bytes()]);
        for (name, path) in [
            ("cold: init on every request", cold),
            ("preinit: snapshot restored", warm),
        ] {
            let program = engine
                .load(&root.join(path), &[])
                .expect("run scripts/build-examples first");
            group.bench_function(name, |b| {
                b.iter(|| {
                    let (outcome, _) = program.run(CStrings::default(), env.clone(), NullStdio);
                    assert_eq!(outcome, Outcome::Exit(0));
                })
            });
        }
        group.finish();
    }
}

/// A command module whose `_start` counts to 100 million in a tight loop,
/// storing the count to memory (as compiled code keeps its loop variable in
/// a register, the store keeps the loop from being folded away).
const TIGHT_LOOP: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "_start") (local $i i32)
        (loop $next
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (i32.store (i32.const 16) (local.get $i))
            (br_if $next (i32.lt_u (local.get $i) (i32.const 100000000))))))"#;

fn interrupt_check(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = std::env::temp_dir().join(format!("wcgid-engine-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tight_loop = dir.join("tight-loop.wasm");
    std::fs::write(&tight_loop, wasmer::wat2wasm(TIGHT_LOOP.as_bytes()).unwrap()).unwrap();
    let mut env = cgi_env();
    env.push(&[b"QUERY_STRING=word=paisule&n=97"]);
    let mut group = c.benchmark_group("interrupt check");
    group.sample_size(10);
    for (name, path) in [
        ("tight loop, 10^8 turns", tight_loop.clone()),
        ("dict cold", root.join("dict/dict-cold.wasm")),
        ("QuickJS cold", root.join("qjs/qjs-cold.wasm")),
    ] {
        for (checked, engine) in [
            ("without", Engine::default().without_interrupt_check()),
            ("with", Engine::default()),
        ] {
            let program = engine.load(&path, &[]).expect("run scripts/build-examples first");
            group.bench_function(format!("{name}, {checked} the check"), |b| {
                b.iter(|| {
                    let (outcome, _) = program.run(CStrings::default(), env.clone(), NullStdio);
                    assert_eq!(outcome, Outcome::Exit(0));
                })
            });
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, engine, interrupt_check);
criterion_main!(benches);
