//! Each test runs instances one after another on one thread, so the
//! second reuses the first one's reservation.

use wasmer::{Instance, Module, Store, TypedFunction, WASM_PAGE_SIZE, imports};

use super::reservation::FREE;
use super::*;
use crate::sandbox::written::Tracker;

/// A Wasm page, in the probe's addresses.
const PAGE: u32 = WASM_PAGE_SIZE as u32;

const PROBE: &str = r#"(module
    (memory (export "memory") 1 10)
    (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1)))
    (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
    (func (export "fill") (param i32 i32) (memory.fill (local.get 0) (i32.const 0xff) (local.get 1))))"#;

struct Probe {
    store: Store,
    instance: Instance,
}

impl Probe {
    fn new(module: &Module) -> Probe {
        Probe::with_image(module, None)
    }
    fn with_image(module: &Module, image: Option<&Arc<Image>>) -> Probe {
        Probe::with(module, image, None)
    }
    fn with(module: &Module, image: Option<&Arc<Image>>, limit: Option<Pages>) -> Probe {
        let mut store = Store::new(engine());
        let instance = with_image(image, limit, || {
            Instance::new(&mut store, module, &imports! {}).map_err(|e| e.to_string())
        })
        .0
        .unwrap();
        Probe { store, instance }
    }
    fn memory(&self) -> Vec<u8> {
        let memory = self.instance.exports.get_memory("memory").unwrap();
        memory.view(&self.store).copy_to_vec().unwrap()
    }
    fn func<A: wasmer::WasmTypeList, R: wasmer::WasmTypeList>(&self, name: &str) -> TypedFunction<A, R> {
        self.instance.exports.get_typed_function(&self.store, name).unwrap()
    }
    fn store(&mut self, addr: u32, value: i32) -> Result<(), wasmer::RuntimeError> {
        self.func::<(i32, i32), ()>("store")
            .call(&mut self.store, addr as i32, value)
    }
    fn load(&mut self, addr: u32) -> Result<i32, wasmer::RuntimeError> {
        self.func::<i32, i32>("load").call(&mut self.store, addr as i32)
    }
    fn grow(&mut self, pages: i32) -> i32 {
        self.func::<i32, i32>("grow").call(&mut self.store, pages).unwrap()
    }
}

thread_local! {
    static ENGINE: wasmer::Engine = crate::sandbox::Engine::default().engine;
}

/// The thread's engine (with the pooled tunables).
fn engine() -> wasmer::Engine {
    ENGINE.with(Clone::clone)
}

fn probe_module() -> Module {
    Module::new(&engine(), wat::parse_str(PROBE).unwrap()).unwrap()
}

#[test]
fn a_write_in_one_instance_is_invisible_to_the_next() {
    let module = probe_module();
    let mut first = Probe::new(&module);
    first.store(60_000, 0x5eed).unwrap();
    assert_eq!(first.grow(2), 1);
    first.store(3 * PAGE - 4, 0x7a11).unwrap();
    drop(first);
    assert_eq!(FREE.with_borrow(Vec::len), 1, "the reservation went back to the pool");
    let mut second = Probe::new(&module);
    assert_eq!(FREE.with_borrow(Vec::len), 0, "and was reused");
    assert_eq!(second.load(60_000).unwrap(), 0);
    // The pages the first instance grew into are gone, and zero when grown again.
    assert!(second.load(3 * PAGE - 4).is_err());
    assert_eq!(second.grow(2), 1);
    assert_eq!(second.load(3 * PAGE - 4).unwrap(), 0);
}

#[test]
fn access_beyond_the_end_traps_and_growth_stops_at_the_maximum() {
    let module = probe_module();
    let mut p = Probe::new(&module);
    assert!(p.load(PAGE - 4).is_ok());
    assert!(p.load(PAGE - 3).is_err(), "a load straddling the end traps");
    assert!(p.store(PAGE, 1).is_err());
    assert!(p.load(u32::MAX - 3).is_err());
    assert_eq!(p.grow(9), 1);
    assert!(p.load(10 * PAGE - 4).is_ok());
    assert_eq!(p.grow(1), -1, "past the declared maximum of 10 pages");
    assert!(p.load(10 * PAGE).is_err());
}

#[test]
fn a_limit_below_the_declared_maximum_stops_growth_there() {
    let module = probe_module();
    let mut p = Probe::with(&module, None, Some(Pages(4)));
    assert_eq!(p.grow(3), 1);
    assert_eq!(p.grow(1), -1, "past the limit of 4 pages");
    assert!(p.load(4 * PAGE).is_err());
    // A limit above the declared maximum changes nothing.
    let mut p = Probe::with(&module, None, Some(Pages(64)));
    assert_eq!(p.grow(9), 1);
    assert_eq!(p.grow(1), -1);
}

#[test]
fn a_smaller_memory_after_a_larger_one_gets_exactly_its_size() {
    let big = Module::new(&engine(), wat::parse_str(PROBE.replace("1 10", "8 10")).unwrap()).unwrap();
    let mut first = Probe::new(&big);
    first.store(8 * PAGE - 4, 9).unwrap();
    drop(first);
    let mut second = Probe::new(&probe_module());
    assert!(second.load(PAGE).is_err(), "pages beyond one must not stay accessible");
    assert_eq!(second.grow(7), 1);
    assert_eq!(second.load(8 * PAGE - 4).unwrap(), 0);
}

#[test]
fn both_ways_of_resetting_leave_only_zeros() {
    // Below and above ZERO_IN_PLACE: zeroed in place, then discarded.
    for pages in [4u32, 40] {
        let wat = PROBE.replace("1 10", &format!("{pages} {pages}"));
        let module = Module::new(&engine(), wat::parse_str(wat).unwrap()).unwrap();
        let bytes = pages * PAGE;
        let mut first = Probe::new(&module);
        first
            .func::<(i32, i32), ()>("fill")
            .call(&mut first.store, 0, bytes as i32)
            .unwrap();
        drop(first);
        let mut second = Probe::new(&module);
        for addr in (0..bytes).step_by(4096).chain([bytes - 4]) {
            assert_eq!(second.load(addr).unwrap(), 0, "byte {addr} of {pages} pages");
        }
    }
}

/// PROBE with `pages` pages (up to `maximum`) and `extra` before its
/// functions, prepared for serving: the module compiled without its
/// data, its image's bytes, and the memory an instance must start with.
fn prepared(pages: u32, maximum: u32, extra: &str) -> (Module, Vec<u8>, Vec<u8>) {
    let wat = PROBE
        .replace("1 10", &format!("{pages} {maximum}"))
        .replace("(func (export \"store\")", &format!("{extra}(func (export \"store\")"));
    let prepared = crate::sandbox::image::prepare(&wat::parse_str(wat).unwrap()).unwrap();
    let image_bytes = prepared.image.expect("large enough for an image");
    let mut want = image_bytes.clone();
    want.resize(pages as usize * WASM_PAGE_SIZE, 0);
    let module = Module::new(&engine(), &prepared.module).unwrap();
    (module, image_bytes, want)
}

/// A module with a large data segment and a global, prepared for
/// serving: the compiled module without data, and its image.
fn imaged(seed: u8) -> (Module, Arc<Image>, Vec<u8>) {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i as u8).wrapping_mul(seed) ^ seed).collect();
    let hex: String = data.iter().map(|b| format!("\\{b:02x}")).collect();
    let extra = format!("(global (export \"g\") (mut i32) (i32.const {seed})) (data (i32.const 1000) \"{hex}\") ");
    let (module, image, want) = prepared(5, 10, &extra);
    (module, Image::new(&image, true).unwrap(), want)
}

/// A module of 64 pages (up to 128) whose image spans 3 MiB: 2 KiB of
/// data at the start of every 64 KiB, zeros between; see [`prepared`].
fn sparse_imaged() -> (Module, Vec<u8>, Vec<u8>) {
    let mut segments = String::new();
    for at in (0..3 << 20).step_by(WASM_PAGE_SIZE) {
        let data: String = (0..2048u32).map(|i| format!("\\{:02x}", (i + at) as u8 | 1)).collect();
        segments.push_str(&format!("(data (i32.const {at}) \"{data}\") "));
    }
    prepared(64, 128, &segments)
}

/// Isolation of the resets, tracked (where the kernel can) and not: a
/// secret written in image pages, in an image page an earlier instance
/// only read (so mapped for this one), across a 2 MiB (huge page)
/// boundary, in the zero part of the memory and in memory grown, is
/// never seen by the next instance, which sees the image and zeros.
#[test]
fn no_secret_survives_a_reset_tracked_or_not() {
    const SECRET: i32 = 0x5ec2e7;
    let (module, bytes, want) = sparse_imaged();
    for untracked in [false, true] {
        let image = Image::new(&bytes, !untracked).unwrap();
        FREE.with_borrow_mut(Vec::clear);
        // Reads a page: mapped from here on if resets are tracked.
        let mut reader = Probe::with_image(&module, Some(&image));
        assert_eq!(
            reader.load(5 * PAGE).unwrap(),
            i32::from_le_bytes(want[5 * WASM_PAGE_SIZE..][..4].try_into().unwrap())
        );
        drop(reader);
        // Twice: the pages a reset restored must be seen written again.
        for round in 0..2 {
            let mut writer = Probe::with_image(&module, Some(&image));
            for addr in [5 * PAGE, 70_000, (2 << 20) - 2, (3 << 20) + 8, (4 << 20) - 4] {
                writer.store(addr, SECRET).unwrap();
            }
            assert_eq!(writer.grow(8), 64);
            writer.store(70 * PAGE - 4, SECRET).unwrap();
            drop(writer);
            let mut next = Probe::with_image(&module, Some(&image));
            assert!(
                next.memory() == want,
                "untracked {untracked}, round {round}: the memory differs from the image"
            );
            assert_eq!(next.grow(8), 64);
            assert_eq!(
                next.load(70 * PAGE - 4).unwrap(),
                0,
                "untracked {untracked}: grown memory"
            );
        }
    }
}

/// With tracking, the pages an instance only read are still mapped for
/// the next one (no fault to read them again), and the ones it wrote
/// are mapped again, restored.
#[test]
fn read_pages_stay_mapped_across_a_tracked_reset() {
    assert!(
        Tracker::get().is_some(),
        "this kernel (Linux >= 6.7 with userfaultfd) should track written pages"
    );
    let (module, bytes, want) = sparse_imaged();
    let image = Image::new(&bytes, true).unwrap();
    FREE.with_borrow_mut(Vec::clear);
    let mut first = Probe::with_image(&module, Some(&image));
    for page in 0..48u32 {
        first.load(page * PAGE).unwrap();
    }
    first.store(7 * PAGE, 1).unwrap();
    let base = first
        .instance
        .exports
        .get_memory("memory")
        .unwrap()
        .view(&first.store)
        .data_ptr();
    drop(first);
    let mut resident = vec![0u8; 48 * 16];
    // SAFETY: the reservation is mapped (kept in this thread's pool),
    // and mincore only reads the page tables.
    let rc = unsafe { nix::libc::mincore(base.cast(), 48 * WASM_PAGE_SIZE, resident.as_mut_ptr()) };
    assert_eq!(rc, 0);
    for page in 0..48 {
        assert!(
            resident[page * 16] & 1 != 0,
            "page {page} of 64 KiB was dropped by the reset"
        );
    }
    // The page written is protected again: the next write is seen.
    let mut written = Vec::new();
    let tracker = Tracker::get().unwrap();
    tracker
        .written(NonNull::new(base).unwrap(), image.len, &mut written)
        .unwrap();
    assert!(written.is_empty(), "pages left unprotected by the reset: {written:?}");
    let next = Probe::with_image(&module, Some(&image));
    assert!(next.memory() == want);
}

#[test]
fn a_restored_memory_equals_the_snapshot_byte_for_byte() {
    let (module, image, want) = imaged(7);
    for round in 0..3 {
        let mut p = Probe::with_image(&module, Some(&image));
        assert!(p.memory() == want, "round {round}: memory differs from the snapshot");
        let global = p.instance.exports.get_global("g").unwrap().get(&mut p.store);
        assert_eq!(global, wasmer::Value::I32(7));
        // Dirty the image and the zero part; the next round must not see it.
        for addr in [1000, 4096, 150_000, 300_000] {
            p.store(addr, -1).unwrap();
        }
        p.instance
            .exports
            .get_global("g")
            .unwrap()
            .set(&mut p.store, wasmer::Value::I32(99))
            .unwrap();
    }
}

#[test]
fn reservations_switch_between_images() {
    let (a, image_a, want_a) = imaged(3);
    let (b, image_b, want_b) = imaged(5);
    let plain = probe_module();
    for (module, image, want) in [
        (&a, Some(&image_a), &want_a),
        (&b, Some(&image_b), &want_b),
        (&plain, None, &vec![0u8; WASM_PAGE_SIZE]),
        (&a, Some(&image_a), &want_a),
    ] {
        let p = Probe::with_image(module, image);
        assert!(p.memory() == *want, "memory differs");
    }
}

#[test]
fn an_image_larger_than_the_memory_is_refused() {
    let (_, image, _) = imaged(9);
    let mut store = Store::new(engine());
    let small = probe_module();
    let (instantiated, _) = with_image(Some(&image), None, || {
        Instance::new(&mut store, &small, &imports! {}).map_err(|e| e.to_string())
    });
    assert!(instantiated.is_err());
}

#[test]
fn data_segments_are_restored_for_every_instance() {
    let wat = PROBE.replace(
        "(func (export \"store\")",
        "(data (i32.const 100) \"\\2a\\00\\00\\00\") (func (export \"store\")",
    );
    let module = Module::new(&engine(), wat::parse_str(wat).unwrap()).unwrap();
    for _ in 0..3 {
        let mut p = Probe::new(&module);
        assert_eq!(p.load(100).unwrap(), 42);
        p.store(100, 7).unwrap();
    }
}
