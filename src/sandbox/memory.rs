//! Guest linear memories: reservations reused instead of mapped and unmapped
//! for every request, and memory images restored copy-on-write. Every
//! `unsafe` block of the sandbox's memory handling lives in this module.
//!
//! # Why
//! Wasmer maps a fresh 8 GiB reservation for each instance's memory and
//! unmaps it when the store drops. In a multi-threaded process each `munmap`
//! frees page tables and sends TLB-shootdown interrupts to every CPU running
//! one of our threads; measured on this machine kind, that and the page-table
//! walk of the unmap took about half of a hello request's time. A reservation
//! here is mapped once per worker thread and kept: a request's memory is reset
//! by zeroing the pages the guest touched (found with `mincore`), or, past
//! [`ZERO_IN_PLACE`] bytes, by `madvise(MADV_DONTNEED)`, which drops them and
//! frees no page tables.
//!
//! Wasmer also copies every data segment into every new instance, which costs
//! about 6 ms per request for a 16 MiB pre-initialized heap. A module with a
//! large memory image instead gets an [`Image`]: its initial bytes in a sealed
//! memfd, mapped `MAP_PRIVATE` at the start of the reservation. An instance
//! reads the image's pages in place and copies only those it writes.
//! Where the kernel tracks written pages (see [`super::written`]), the reset
//! puts the image's bytes back into the pages written and nothing else, so
//! the pages an instance only read stay mapped for the next one: a request
//! pays for the pages it writes, not for those it reads (a page fault costs
//! microseconds, and an interpreter's heap is many pages walked per
//! request). Elsewhere the reset discards every copy with `MADV_DONTNEED`,
//! and the next instance faults in again whatever it reads. Either way
//! restoring costs what the guest touches, not the image's size.
//!
//! # Isolation
//! Compiled code uses Wasmer's static memory style: no bounds checks, an
//! 8 GiB reservation whose pages beyond the memory's current length are
//! `PROT_NONE`, so any access past the end faults (a trap). The invariants
//! kept here:
//! - the pages readable and writable are exactly `[0, current length)`;
//! - after a reset, `[0, image length)` reads as the image attached to the
//!   reservation (none: zero), and every other page reads as zero; a
//!   tracked image is write-protected again wherever it was written, so the
//!   next reset sees every page the next guest writes;
//! - a reservation is reset before it is reused, and one that cannot be reset
//!   is unmapped instead;
//! - an image is sealed against writes, shrinking and growing before it is
//!   first mapped, so what instances see cannot change under them.
//!
//! So a guest sees its module's initial memory, never a previous request's
//! bytes.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::Arc;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap, mmap_anonymous, mprotect, munmap};
use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, VMConfig, VMMemory, VMMemoryDefinition, VMTable};
use wasmer::sys::vm::{TableStyle, VMTableDefinition};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, Pages, TableType};

use super::written::Tracker;

/// Bytes reserved per memory: the wasm32 address space and Wasmer's offset
/// guard behind it (what its static memory style assumes).
const RESERVED: usize =
    (MemoryStyle::static_bound().0 as usize) * WASM_PAGE + MemoryStyle::static_offset_guard_size() as usize;
const WASM_PAGE: usize = 65536;
/// Touched bytes up to which a reset zeroes pages rather than discarding them.
const ZERO_IN_PLACE: usize = 1 << 20;
/// Reservations a thread keeps for reuse; a guest has one memory, so one
/// would do, but a module with several must not thrash.
const KEPT_PER_THREAD: usize = 4;

pub(super) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(4096)
    })
}

thread_local! {
    static FREE: RefCell<Vec<Reservation>> = const { RefCell::new(Vec::new()) };
    /// The image and the page limit for the memory the instantiation in
    /// progress on this thread creates (see [`with_image`]).
    static PENDING: RefCell<Pending> = const { RefCell::new(Pending { image: None, limit: None }) };
    /// The definition of the first memory the instantiation in progress on
    /// this thread created.
    static CREATED: std::cell::Cell<Option<NonNull<VMMemoryDefinition>>> = const { std::cell::Cell::new(None) };
}

/// A module's initial memory contents, sealed in a memfd.
#[derive(Debug)]
pub struct Image {
    fd: OwnedFd,
    /// Bytes mapped: the contents rounded up to whole OS pages.
    len: usize,
    /// Reset by restoring the pages written, where the kernel tracks them.
    track: bool,
}

impl Image {
    /// Seals `bytes` (zero-padded to a page multiple) into a memfd; its
    /// resets restore only the pages written if `track` and the kernel can
    /// (see [`Tracker`]).
    pub fn new(bytes: &[u8], track: bool) -> io::Result<Arc<Image>> {
        let len = bytes.len().div_ceil(page_size()) * page_size();
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty memory image"));
        }
        let fd = memfd_create(c"wcgid-image", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)?;
        file.set_len(len as u64)?;
        let fd = OwnedFd::from(file);
        let seals = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        Ok(Arc::new(Image { fd, len, track }))
    }
}

#[derive(Default)]
struct Pending {
    image: Option<Arc<Image>>,
    /// Pages the memory may grow to, below what the module declares.
    limit: Option<Pages>,
}

/// Runs `instantiate` with `image` as the initial contents of the memory the
/// instantiation creates on this thread (the module's data segments having
/// been stripped in favour of the image), and `limit` pages as its maximum
/// if that is lower than the module's. Also returns where that memory's
/// definition lies, in the new instance's `VMContext` (see
/// [`super::interrupt`]).
pub fn with_image<R>(
    image: Option<&Arc<Image>>,
    limit: Option<Pages>,
    instantiate: impl FnOnce() -> R,
) -> (R, Option<NonNull<VMMemoryDefinition>>) {
    PENDING.set(Pending {
        image: image.cloned(),
        limit,
    });
    CREATED.set(None);
    let result = instantiate();
    PENDING.take();
    (result, CREATED.take())
}

/// Wasmer's tunables with memories from [`Reservation`]s.
pub struct PooledTunables {
    base: BaseTunables,
}

impl PooledTunables {
    pub fn new() -> Self {
        PooledTunables {
            base: BaseTunables::new(),
        }
    }
}

impl Tunables for PooledTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(ty, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        definition: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        if *style != MemoryStyle::Static || ty.shared {
            return Err(MemoryError::Generic(format!(
                "unsupported memory {ty:?} in style {style:?}"
            )));
        }
        let memory: Box<dyn LinearMemory + Send + Sync> = Box::new(PooledMemory::new(*ty, definition)?);
        Ok(VMMemory::from_custom(memory))
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        definition: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: the caller's contract (a valid definition in the
        // instance's VMContext) is passed on unchanged.
        unsafe { self.base.create_vm_table(ty, style, definition) }
    }

    fn vmconfig(&self) -> &VMConfig {
        self.base.vmconfig()
    }
}

/// One mapped reservation of [`RESERVED`] bytes, the first `accessible` of
/// them readable and writable, the rest `PROT_NONE`, the first pages mapping
/// `image` if it has one.
#[derive(Debug)]
struct Reservation {
    base: NonNull<u8>,
    accessible: usize,
    image: Option<Arc<Image>>,
    /// mincore's answer for the accessible pages, kept to reuse its buffer.
    resident: Vec<u8>,
    /// The image's pages written since the last reset are known (see
    /// [`Tracker`]), and the buffer for their ranges.
    tracked: bool,
    written: Vec<Range<usize>>,
}

impl Reservation {
    /// One from this thread's free list (one already showing `image` if
    /// there is one), or a new mapping; then shows `image`.
    fn take(image: Option<&Arc<Image>>) -> io::Result<Reservation> {
        let same = |r: &Reservation| match (&r.image, image) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let found = FREE.with_borrow_mut(|free| {
            let at = free.iter().position(same).or(free.len().checked_sub(1))?;
            Some(free.swap_remove(at))
        });
        let mut reservation = match found {
            Some(r) => r,
            None => Reservation::map()?,
        };
        if !same(&reservation) {
            reservation.show(image)?;
        }
        Ok(reservation)
    }

    fn map() -> io::Result<Reservation> {
        // SAFETY: a new private anonymous mapping, chosen by the kernel, so
        // it aliases nothing; PROT_NONE until parts are made accessible.
        let base = unsafe {
            mmap_anonymous(
                None,
                RESERVED.try_into().expect("non-zero"),
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }?;
        // Transparent huge pages would turn a guest's few touched bytes
        // into 2 MiB to fault in and to zero.
        // SAFETY: advice on our own fresh mapping; it changes no contents.
        unsafe { madvise(base, RESERVED, MmapAdvise::MADV_NOHUGEPAGE) }?;
        Ok(Reservation {
            base: base.cast(),
            accessible: 0,
            image: None,
            resident: Vec::new(),
            tracked: false,
            written: Vec::new(),
        })
    }

    /// Replaces what the start of the reservation shows: fresh `PROT_NONE`
    /// pages over everything used so far, then `image` (if any) mapped
    /// private and writable. Leaves `accessible` as the image's length.
    fn show(&mut self, image: Option<&Arc<Image>>) -> io::Result<()> {
        let used = self.accessible.max(self.image.as_ref().map_or(0, |i| i.len));
        if let Some(used) = NonZeroUsize::new(used) {
            // SAFETY: MAP_FIXED over the start of our own reservation: it
            // replaces only our pages, which nothing refers to now.
            unsafe {
                mmap_anonymous(
                    Some(self.base.addr()),
                    used,
                    ProtFlags::PROT_NONE,
                    MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE | MapFlags::MAP_FIXED,
                )
            }?;
        }
        (self.image, self.accessible, self.tracked) = (None, 0, false);
        if let Some(image) = image {
            // SAFETY: MAP_FIXED over the start of our own reservation, which
            // is larger than any image (at most 4 GiB); the memfd is sealed,
            // so MAP_PRIVATE pages read as the image until written.
            unsafe {
                mmap(
                    Some(self.base.addr()),
                    NonZeroUsize::new(image.len).expect("images are not empty"),
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED,
                    &image.fd,
                    0,
                )
            }?;
            (self.image, self.accessible) = (Some(image.clone()), image.len);
            if let Some(tracker) = Tracker::get().filter(|_| image.track) {
                tracker.track(self.base, image.len)?;
                self.tracked = true;
            }
        }
        Ok(())
    }

    /// Makes exactly the first `bytes` accessible. Only growth may happen
    /// while a guest runs; shrinking is for a freshly reset reservation,
    /// whose pages beyond the image hold nothing.
    fn set_accessible(&mut self, bytes: usize) -> io::Result<()> {
        debug_assert!(bytes <= RESERVED && bytes.is_multiple_of(page_size()));
        let (from, to, prot) = if bytes > self.accessible {
            (self.accessible, bytes, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE)
        } else {
            (bytes, self.accessible, ProtFlags::PROT_NONE)
        };
        if from == to {
            return Ok(());
        }
        // SAFETY: [from, to) lies inside our own reservation; changing its
        // protection affects no other Rust object. Code that may run the
        // guest sees the change through the updated VMMemoryDefinition.
        unsafe { mprotect(self.at(from), to - from, prot) }?;
        self.accessible = bytes;
        Ok(())
    }

    /// Brings the reservation back to what it showed when taken: the image
    /// pages the guest wrote are discarded (the image shows through again),
    /// and the other touched pages are zeroed in place while they are few:
    /// that changes no page-table entry, so no other CPU needs a TLB flush,
    /// and the next guest finds them already mapped. A larger footprint is
    /// discarded with MADV_DONTNEED.
    fn reset(&mut self) -> io::Result<()> {
        let image_len = self.image.as_ref().map_or(0, |i| i.len).min(self.accessible);
        if image_len > 0 && self.tracked {
            self.restore_written(image_len)?;
        } else if image_len > 0 {
            // SAFETY: the range is inside our reservation and no guest runs
            // on it any more (the memory is being dropped); on a private file
            // mapping MADV_DONTNEED drops the written copies, and the pages
            // read as the (sealed) image again.
            unsafe { madvise(self.base.cast(), image_len, MmapAdvise::MADV_DONTNEED) }?;
        }
        let anon = self.accessible - image_len;
        if anon == 0 {
            return Ok(());
        }
        let page = page_size();
        self.resident.resize(anon / page, 0);
        // SAFETY: mincore writes one byte per page of the range, and the
        // buffer holds exactly that many; the range is our own mapping.
        let rc = unsafe { nix::libc::mincore(self.at(image_len).as_ptr(), anon, self.resident.as_mut_ptr()) };
        let resident = self.resident.iter().filter(|&&b| b & 1 != 0).count() * page;
        if rc != 0 || resident > ZERO_IN_PLACE {
            // SAFETY: as above, on the anonymous part: its pages become
            // zero-fill-on-demand.
            unsafe { madvise(self.at(image_len), anon, MmapAdvise::MADV_DONTNEED) }?;
            return Ok(());
        }
        let mut i = 0;
        while i < self.resident.len() {
            if self.resident[i] & 1 == 0 {
                i += 1;
                continue;
            }
            let run = self.resident[i..].iter().take_while(|&&b| b & 1 != 0).count();
            // SAFETY: these pages are inside the accessible (read-write),
            // anonymous part of our reservation, and nothing else refers to
            // them now.
            unsafe { std::ptr::write_bytes(self.at(image_len + i * page).as_ptr().cast::<u8>(), 0, run * page) };
            i += run;
        }
        Ok(())
    }

    /// Puts the image's bytes back into the pages of `[0, image_len)` the
    /// guest wrote, and protects them again; the pages it only read stay
    /// as they are, mapped.
    fn restore_written(&mut self, image_len: usize) -> io::Result<()> {
        let tracker = Tracker::get().expect("tracked with it");
        let image = self.image.as_ref().expect("an image is shown");
        tracker.written(self.base, image_len, &mut self.written)?;
        for range in &self.written {
            // SAFETY: the range lies inside the accessible (read-write) image
            // mapping of our reservation, and no guest runs on it any more.
            let pages =
                unsafe { std::slice::from_raw_parts_mut(self.at(range.start).as_ptr().cast::<u8>(), range.len()) };
            let mut done = 0;
            while done < pages.len() {
                match nix::sys::uio::pread(&image.fd, &mut pages[done..], (range.start + done) as i64) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => done += n,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            tracker.protect(self.base, range.clone())?;
        }
        Ok(())
    }

    fn at(&self, offset: usize) -> NonNull<std::ffi::c_void> {
        // SAFETY: callers pass offsets within the reservation.
        unsafe { self.base.add(offset) }.cast()
    }

    /// Back to this thread's free list, reset; unmapped if that fails or the
    /// list is full.
    fn release(mut self) {
        if self.reset().is_ok() {
            let kept = FREE.with_borrow_mut(|free| {
                if free.len() < KEPT_PER_THREAD {
                    free.push(self);
                    None
                } else {
                    Some(self)
                }
            });
            drop(kept);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing refers into it any more.
        if let Err(e) = unsafe { munmap(self.base.cast(), RESERVED) } {
            tracing::error!("munmap of a guest memory failed: {e}");
        }
    }
}

/// A guest's linear memory on a [`Reservation`].
#[derive(Debug)]
struct PooledMemory {
    reservation: Option<Reservation>,
    /// Where compiled code reads base and length: in the instance's VMContext.
    definition: NonNull<VMMemoryDefinition>,
    ty: MemoryType,
    pages: Pages,
    maximum: Pages,
}

// SAFETY: the raw pointers refer to the reservation this value owns and to
// the instance's VMContext, which Wasmer keeps alive and in place for as
// long as the memory; Wasmer only touches a store from one thread at a time.
unsafe impl Send for PooledMemory {}
// SAFETY: as above; `&self` methods only read.
unsafe impl Sync for PooledMemory {}

impl PooledMemory {
    fn new(ty: MemoryType, definition: NonNull<VMMemoryDefinition>) -> Result<Self, MemoryError> {
        let Pending { image, limit } = PENDING.take();
        let maximum = ty
            .maximum
            .unwrap_or(MemoryStyle::static_bound())
            .min(MemoryStyle::static_bound())
            .min(limit.unwrap_or(MemoryStyle::static_bound()));
        if ty.minimum > maximum {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: ty.minimum,
                max_allowed: maximum,
            });
        }
        let region = |e: io::Error| MemoryError::Region(e.to_string());
        if image.as_ref().is_some_and(|i| i.len > ty.minimum.bytes().0) {
            return Err(MemoryError::Generic(
                "the memory image is larger than the memory".into(),
            ));
        }
        let mut reservation = Reservation::take(image.as_ref()).map_err(region)?;
        if let Err(e) = reservation.set_accessible(ty.minimum.bytes().0) {
            // Its state is unknown: unmap rather than reuse.
            drop(reservation);
            return Err(region(e));
        }
        if CREATED.get().is_none() {
            CREATED.set(Some(definition));
        }
        let memory = PooledMemory {
            definition,
            ty,
            pages: ty.minimum,
            maximum,
            reservation: Some(reservation),
        };
        memory.publish();
        Ok(memory)
    }

    /// Writes base and length where compiled code reads them.
    fn publish(&self) {
        let reservation = self.reservation.as_ref().expect("present until drop");
        // SAFETY: `definition` points into the live VMContext of the instance
        // that owns this memory (the Tunables contract), and nothing else
        // writes it while Wasmer calls into this memory.
        unsafe {
            *self.definition.as_ptr() = VMMemoryDefinition {
                base: reservation.base.as_ptr(),
                current_length: reservation.accessible,
            };
        }
    }
}

impl LinearMemory for PooledMemory {
    fn ty(&self) -> MemoryType {
        MemoryType {
            minimum: self.pages,
            ..self.ty
        }
    }

    fn size(&self) -> Pages {
        self.pages
    }

    fn style(&self) -> MemoryStyle {
        MemoryStyle::Static
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let previous = self.pages;
        let could_not = || MemoryError::CouldNotGrow {
            current: previous,
            attempted_delta: delta,
        };
        let pages = previous
            .checked_add(delta)
            .filter(|p| *p <= self.maximum)
            .ok_or_else(could_not)?;
        let reservation = self.reservation.as_mut().expect("present until drop");
        reservation.set_accessible(pages.bytes().0).map_err(|_| could_not())?;
        self.pages = pages;
        self.publish();
        Ok(previous)
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::MemoryNotShared)
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::UnsupportedOperation {
            message: "guest memories are not copied".into(),
        })
    }
}

impl Drop for PooledMemory {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            reservation.release();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each test runs instances one after another on one thread, so the
    //! second reuses the first one's reservation.

    use wasmer::{Instance, Module, Store, TypedFunction, imports};

    use super::*;

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
        first.store(3 * 65536 - 4, 0x7a11).unwrap();
        drop(first);
        assert_eq!(FREE.with_borrow(Vec::len), 1, "the reservation went back to the pool");
        let mut second = Probe::new(&module);
        assert_eq!(FREE.with_borrow(Vec::len), 0, "and was reused");
        assert_eq!(second.load(60_000).unwrap(), 0);
        // The pages the first instance grew into are gone, and zero when grown again.
        assert!(second.load(3 * 65536 - 4).is_err());
        assert_eq!(second.grow(2), 1);
        assert_eq!(second.load(3 * 65536 - 4).unwrap(), 0);
    }

    #[test]
    fn access_beyond_the_end_traps_and_growth_stops_at_the_maximum() {
        let module = probe_module();
        let mut p = Probe::new(&module);
        assert!(p.load(65536 - 4).is_ok());
        assert!(p.load(65536 - 3).is_err(), "a load straddling the end traps");
        assert!(p.store(65536, 1).is_err());
        assert!(p.load(u32::MAX - 3).is_err());
        assert_eq!(p.grow(9), 1);
        assert!(p.load(10 * 65536 - 4).is_ok());
        assert_eq!(p.grow(1), -1, "past the declared maximum of 10 pages");
        assert!(p.load(10 * 65536).is_err());
    }

    #[test]
    fn a_limit_below_the_declared_maximum_stops_growth_there() {
        let module = probe_module();
        let mut p = Probe::with(&module, None, Some(Pages(4)));
        assert_eq!(p.grow(3), 1);
        assert_eq!(p.grow(1), -1, "past the limit of 4 pages");
        assert!(p.load(4 * 65536).is_err());
        // A limit above the declared maximum changes nothing.
        let mut p = Probe::with(&module, None, Some(Pages(64)));
        assert_eq!(p.grow(9), 1);
        assert_eq!(p.grow(1), -1);
    }

    #[test]
    fn a_smaller_memory_after_a_larger_one_gets_exactly_its_size() {
        let big = Module::new(&engine(), wat::parse_str(PROBE.replace("1 10", "8 10")).unwrap()).unwrap();
        let mut first = Probe::new(&big);
        first.store(8 * 65536 - 4, 9).unwrap();
        drop(first);
        let mut second = Probe::new(&probe_module());
        assert!(second.load(65536).is_err(), "pages beyond one must not stay accessible");
        assert_eq!(second.grow(7), 1);
        assert_eq!(second.load(8 * 65536 - 4).unwrap(), 0);
    }

    #[test]
    fn both_ways_of_resetting_leave_only_zeros() {
        // Below and above ZERO_IN_PLACE: zeroed in place, then discarded.
        for pages in [4u32, 40] {
            let wat = PROBE.replace("1 10", &format!("{pages} {pages}"));
            let module = Module::new(&engine(), wat::parse_str(wat).unwrap()).unwrap();
            let bytes = pages * 65536;
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
        want.resize(pages as usize * 65536, 0);
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
        for at in (0..3 << 20).step_by(65536) {
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
                reader.load(5 * 65536).unwrap(),
                i32::from_le_bytes(want[5 * 65536..][..4].try_into().unwrap())
            );
            drop(reader);
            // Twice: the pages a reset restored must be seen written again.
            for round in 0..2 {
                let mut writer = Probe::with_image(&module, Some(&image));
                for addr in [5 * 65536, 70_000, (2 << 20) - 2, (3 << 20) + 8, (4 << 20) - 4] {
                    writer.store(addr, SECRET).unwrap();
                }
                assert_eq!(writer.grow(8), 64);
                writer.store((70 << 16) - 4, SECRET).unwrap();
                drop(writer);
                let mut next = Probe::with_image(&module, Some(&image));
                assert!(
                    next.memory() == want,
                    "untracked {untracked}, round {round}: the memory differs from the image"
                );
                assert_eq!(next.grow(8), 64);
                assert_eq!(
                    next.load((70 << 16) - 4).unwrap(),
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
            first.load(page * 65536).unwrap();
        }
        first.store(7 * 65536, 1).unwrap();
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
        let rc = unsafe { nix::libc::mincore(base.cast(), 48 * 65536, resident.as_mut_ptr()) };
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
            (&plain, None, &vec![0u8; 65536]),
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
}
