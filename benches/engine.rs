//! Per-request engine cost: a fresh Store and Instance of a guest, its
//! `_start` run to the end, stdio discarded. Side by side: a bare Wasmer
//! instantiate + call of an empty module (the floor), the hello guests, and
//! the dict guest run cold (its init on every request) and pre-initialized.
//! Then the legacy cgi-bin's hello scripts in the WASI Perl and Python,
//! booted per request and restored from their snapshots (see [`legacy`]).
//! Last, what the interrupt check compiled into every guest costs: compute-
//! heavy guests (a tight loop, dict and QuickJS cold) compiled with and
//! without it.
//!
//! Run with `cargo bench --bench engine` after `scripts/build-examples` (and
//! `scripts/fetch-interpreters ~/.cache/wcgid/interpreters` for the legacy
//! scripts).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use wcgid::cgi::{MetaVars, Router};
use wcgid::config::{self, Config, Driver};
use wcgid::sandbox::{CStrings, Engine, NullStdio, Outcome, Stdio};
use wcgid::{migrate, preinit};

/// A request's meta-variables, as nginx sends them.
const CGI_ENV: [(&str, &str); 12] = [
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("QUERY_STRING", "name=bench"),
    ("REQUEST_METHOD", "GET"),
    ("SCRIPT_NAME", "/hello"),
    ("SERVER_NAME", "localhost"),
    ("SERVER_PORT", "80"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("SERVER_SOFTWARE", "nginx"),
    ("REMOTE_ADDR", "127.0.0.1"),
    ("HTTP_HOST", "localhost"),
    ("HTTP_USER_AGENT", "bench"),
    ("HTTP_ACCEPT", "*/*"),
];

fn cgi_env() -> CStrings {
    let mut env = CStrings::default();
    for (name, value) in CGI_ENV {
        env.push(&[name.as_bytes(), b"=", value.as_bytes()]);
    }
    env
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("per request");

    let engine = wasmer::Engine::default();
    let module = wasmer::Module::new(
        &engine,
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#).expect("empty module"),
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

/// The legacy cgi-bin's `hello.pl` and `hello.py` (examples/legacy-site),
/// per request: cold, an interpreter constructed and the script run in a
/// fresh instance ([`preinit::interpreter::cold`]: `python3 hello.py`;
/// zeroperl's boot script run by `perl -e`), and restored from the
/// interpreter's snapshot, as the daemon runs them: configured by `wcgid
/// migrate`, the script resolved by the router, its argv and environment
/// made as for a request. Skipped, with a note, without the interpreters
/// (`WCGID_INTERPRETERS`, default ~/.cache/wcgid/interpreters, as for the
/// integration tests). The snapshots and compiled modules are kept in
/// ~/.cache/wcgid/bench-legacy, shared with scripts/bench: the first run
/// takes a minute or two to make them.
fn legacy(c: &mut Criterion) {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let interpreters = std::env::var_os("WCGID_INTERPRETERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/wcgid/interpreters"));
    if !["perl.wasm", "python.wasm"]
        .iter()
        .all(|f| interpreters.join(f).is_file())
    {
        println!(
            "note: no perl.wasm and python.wasm in {}: the legacy scripts are not measured \
             (scripts/fetch-interpreters {0} installs them)",
            interpreters.display()
        );
        return;
    }
    let cache = home.join(".cache/wcgid/bench-legacy");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cache)
            .expect("create the cache directory");
    }
    let site = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/legacy-site")
        .canonicalize()
        .expect("examples/legacy-site");
    let work = tempfile::tempdir().expect("a temporary directory");
    let toml = work.path().join("legacy.toml");
    migrate::run(&migrate::Options {
        source: site.clone(),
        interpreters,
        listen: config::parse_listen("unix:/run/wcgid/wcgid.sock").expect("a listen address"),
        force: true,
        output: toml.clone(),
    })
    .expect("wcgid migrate");
    let config = Config::load(&toml).expect("the configuration migrate wrote");
    let cgi_bin = config.cgi_bin.as_ref().expect("a [cgi_bin]");
    let scratch = cgi_bin.guest.limits.scratch;
    let engine = Engine::default().with_cache(&cache).expect("the cache");
    let router = Router::load(&engine, &config).expect("the interpreters' snapshots");

    let mut group = c.benchmark_group("legacy script per request");
    group.sample_size(10);
    for (name, script, driver) in [
        ("Perl hello.pl", "hello.pl", Driver::Perl),
        ("Python hello.py", "hello.py", Driver::Python),
    ] {
        let mut vars = MetaVars::from_params(
            CGI_ENV
                .iter()
                .map(|(n, v)| (Bytes::from_static(n.as_bytes()), Bytes::from_static(v.as_bytes())))
                .chain([
                    (
                        Bytes::from_static(b"SCRIPT_NAME"),
                        Bytes::from(format!("/cgi-bin/{script}")),
                    ),
                    (
                        Bytes::from_static(b"SCRIPT_FILENAME"),
                        Bytes::from(site.join(script).into_os_string().into_encoded_bytes()),
                    ),
                ])
                .collect(),
        );
        // As a request's job does it (src/cgi/job.rs).
        let app = router
            .resolve_cgi_bin(&engine, &mut vars)
            .unwrap_or_else(|_| panic!("{script}"));
        for (var, value) in &app.env {
            vars.set(var, value.clone());
        }
        let env = vars.to_env(app.guest.pass_http_proxy);
        let interpreter = config
            .interpreters
            .iter()
            .find(|i| i.driver == driver)
            .expect("configured");
        let cold = preinit::interpreter::cold(&engine, interpreter, &site, scratch).expect("the cold module");
        let cold_program = engine
            .load(&cold.path, &cold.mounts)
            .expect("the cold module")
            .with_scratch(scratch);
        for (how, program) in [
            ("cold: interpreter booted per request", &cold_program),
            ("snapshot restored", &app.program),
        ] {
            let (outcome, out) = program.run(app.args.clone(), env.clone(), Captured::default());
            let answer = String::from_utf8_lossy(&out.stdout);
            assert!(
                outcome == Outcome::Exit(0) && answer.ends_with("Hello, bench!\n"),
                "{name}, {how}: {outcome:?} {answer:?} {:?}",
                String::from_utf8_lossy(&out.stderr)
            );
            group.bench_function(format!("{name}, {how}"), |b| {
                b.iter(|| {
                    let (outcome, _) = program.run(app.args.clone(), env.clone(), NullStdio);
                    assert_eq!(outcome, Outcome::Exit(0));
                })
            });
        }
    }
    group.finish();
}

/// Keeps what a guest writes: to check its answer once before it is
/// measured.
#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Stdio for Captured {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.stdout.extend_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn log(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
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
    std::fs::write(&tight_loop, wat::parse_str(TIGHT_LOOP).unwrap()).unwrap();
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

criterion_group!(benches, engine, legacy, interrupt_check);
criterion_main!(benches);
