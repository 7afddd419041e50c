use wasmparser::{Parser, Payload};

use super::rewrite::nonzero_runs;
use super::*;

fn preinit(wat: &str, init_func: Option<&str>, renames: &[(&str, &str)]) -> Result<(Vec<u8>, Report), Error> {
    let dir = std::env::temp_dir().join(format!(
        "wcgid-preinit-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.wasm");
    std::fs::write(&input, wat::parse_str(wat).unwrap()).unwrap();
    let options = Options {
        input,
        output: dir.join("out.wasm"),
        init_func: init_func.map(Into::into),
        renames: renames.iter().map(|(d, s)| (d.to_string(), s.to_string())).collect(),
        mounts: Vec::new(),
    };
    let report = run(&Engine::default(), &options)?;
    Ok((std::fs::read(&options.output).unwrap(), report))
}

/// Instantiates `wasm` with no imports and returns the instance.
fn instance(wasm: &[u8]) -> (wasmer::Store, wasmer::Instance) {
    let mut store = wasmer::Store::default();
    let module = wasmer::Module::new(&store, wasm).unwrap();
    let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
    (store, instance)
}

const COUNTER: &str = r#"(module
    (memory (export "memory") 1)
    (global $n (mut i32) (i32.const 0))
    (global $k i32 (i32.const 5))
    (global $f (mut f64) (f64.const 0))
    (func $start (global.set $n (i32.const 100)))
    (start $start)
    (func (export "wizer-initialize")
        (global.set $n (i32.add (global.get $n) (i32.const 1)))
        (global.set $f (f64.const 2.5))
        (drop (memory.grow (i32.const 1)))
        (i32.store (i32.const 70000) (i32.const 0x01020304))
        (i32.store8 (i32.const 9) (i32.const 7)))
    (func (export "get") (result i32) (global.get $n))
    (func (export "getf") (result f64) (global.get $f))
    (func (export "peek") (param i32) (result i32) (i32.load (local.get 0)))
    (func (export "resume") (global.set $n (i32.add (global.get $n) (i32.const 1000))))
    (data (i32.const 8) "\01"))"#;

#[test]
fn globals_memory_and_growth_are_snapshotted_and_init_removed() {
    let (wasm, report) = preinit(COUNTER, None, &[]).unwrap();
    assert_eq!(report.calls, vec!["wizer-initialize".to_string()]);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let (mut store, instance) = instance(&wasm);
    let call = |store: &mut wasmer::Store, name: &str, arg: Option<i32>| -> wasmer::Value {
        let f = instance.exports.get_function(name).unwrap();
        let args: Vec<wasmer::Value> = arg.into_iter().map(wasmer::Value::I32).collect();
        f.call(store, &args).unwrap()[0].clone()
    };
    // The start function ran once (at preinit), not again: 100 + 1.
    assert_eq!(call(&mut store, "get", None), wasmer::Value::I32(101));
    assert_eq!(call(&mut store, "getf", None), wasmer::Value::F64(2.5));
    assert_eq!(call(&mut store, "peek", Some(70000)), wasmer::Value::I32(0x01020304));
    assert_eq!(call(&mut store, "peek", Some(8)), wasmer::Value::I32(0x0701));
    // The memory grew during the init: it starts at 2 pages now.
    let memory = instance.exports.get_memory("memory").unwrap();
    assert_eq!(memory.view(&store).size().0, 2);
    assert!(
        instance.exports.get_function("wizer-initialize").is_err(),
        "init export kept"
    );
    let parsed = Shape::of(&wasm).unwrap();
    assert!(
        !parsed.exports.iter().any(|(n, _)| n.starts_with("__wcgid")),
        "probe exports leaked"
    );
    let has_start = Parser::new(0)
        .parse_all(&wasm)
        .any(|p| matches!(p.unwrap(), Payload::StartSection { .. }));
    assert!(!has_start, "start section kept");
}

#[test]
fn renames_point_an_export_at_another_function() {
    let wat = COUNTER.replace(
        r#"(data (i32.const 8)"#,
        r#"(func (export "_start")) (data (i32.const 8)"#,
    );
    let (wasm, _) = preinit(&wat, None, &[("_start", "resume")]).unwrap();
    let (mut store, instance) = instance(&wasm);
    instance
        .exports
        .get_function("_start")
        .unwrap()
        .call(&mut store, &[])
        .unwrap();
    // `_start` ran `resume`: 101 + 1000.
    let get = instance.exports.get_function("get").unwrap();
    assert_eq!(get.call(&mut store, &[]).unwrap()[0], wasmer::Value::I32(1101));
    assert!(
        Shape::of(&wasm).unwrap().exports_func("resume"),
        "the source export stays"
    );
}

#[test]
fn an_explicit_init_func_must_exist_and_wizer_output_is_accepted() {
    assert!(matches!(
        preinit(COUNTER, Some("nope"), &[]),
        Err(Error::Refused { .. })
    ));
    let (once, _) = preinit(COUNTER, None, &[]).unwrap();
    // Pre-initialize the output again: no init export is left, so the
    // state is taken as it is, and nothing changes.
    let dir = std::env::temp_dir().join(format!("wcgid-preinit-twice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("once.wasm"), &once).unwrap();
    let options = Options {
        input: dir.join("once.wasm"),
        output: dir.join("twice.wasm"),
        init_func: None,
        renames: Vec::new(),
        mounts: Vec::new(),
    };
    let report = run(&Engine::default(), &options).unwrap();
    assert!(report.calls.is_empty());
    assert_eq!(report.warnings.len(), 1);
    let (mut store, instance) = instance(&std::fs::read(dir.join("twice.wasm")).unwrap());
    let get = instance.exports.get_function("get").unwrap();
    assert_eq!(get.call(&mut store, &[]).unwrap()[0], wasmer::Value::I32(101));
}

#[test]
fn what_cannot_be_snapshotted_is_refused() {
    for (wat, needle) in [
        (
            r#"(module (import "env" "m" (memory 1)) (func (export "wizer-initialize")))"#,
            "memory, env::m",
        ),
        (
            r#"(module (import "env" "g" (global i32)) (func (export "wizer-initialize")))"#,
            "global, env::g",
        ),
        (
            r#"(module (import "env" "t" (table 1 funcref)) (func (export "wizer-initialize")))"#,
            "table, env::t",
        ),
    ] {
        let err = preinit(wat, None, &[]).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("cannot be pre-initialized"),
            "{err}"
        );
    }
    let mutates_table = r#"(module (table 2 funcref) (func $f) (elem declare func $f)
        (func (export "wizer-initialize") (table.set (i32.const 1) (ref.func $f))))"#;
    let err = preinit(mutates_table, None, &[]).unwrap_err().to_string();
    assert!(err.contains("table.set"), "{err}");
    let grows_table = r#"(module (table 2 funcref)
        (func (export "wizer-initialize") (drop (table.grow (ref.null func) (i32.const 3)))))"#;
    let err = preinit(grows_table, None, &[]).unwrap_err().to_string();
    assert!(err.contains("grew table 0 from 2 to 5"), "{err}");
    let traps = r#"(module (func (export "wizer-initialize") unreachable))"#;
    let err = preinit(traps, None, &[]).unwrap_err().to_string();
    assert!(err.contains("trapped"), "{err}");
    assert!(matches!(
        preinit(r#"(module)"#, None, &[("_start", "missing")]),
        Err(Error::Refused { .. })
    ));
}

#[test]
fn reading_the_environment_during_init_is_warned_about() {
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "wizer-initialize") (drop (call $sizes (i32.const 0) (i32.const 4)))))"#;
    let (_, report) = preinit(wat, None, &[]).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("environment")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn nonzero_runs_merge_small_gaps() {
    let mut memory = vec![0u8; 1000];
    memory[10] = 1;
    memory[20] = 2;
    memory[500] = 3;
    let runs = nonzero_runs(&memory);
    assert_eq!(runs, vec![(10, &memory[10..21]), (500, &memory[500..501])]);
    assert!(nonzero_runs(&[0; 100]).is_empty());
}
