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
//! [`ZERO_IN_PLACE`](reservation::ZERO_IN_PLACE) bytes, by `madvise(MADV_DONTNEED)`, which drops them and
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
//!
//! # Layout
//! This file is what the sandbox uses: [`Image`], [`with_image`] and
//! [`PooledTunables`]; `linear` is the memory Wasmer is given, and
//! `reservation` the mappings under it, their pool and their reset.

#![allow(unsafe_code)]

mod linear;
mod reservation;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::Arc;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, VMConfig, VMMemory, VMMemoryDefinition, VMTable};
use wasmer::sys::vm::{TableStyle, VMTableDefinition};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, Pages, TableType};

use linear::PooledMemory;

use super::written::page_size;

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
    /// (see [`Tracker`](super::written::Tracker)).
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

/// Wasmer's tunables with memories from [`Reservation`](reservation::Reservation)s.
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
        // SAFETY: `definition` is the memory's place in the new instance's
        // VMContext, which lives as long as the memory (our caller's
        // contract), and only the memory writes it.
        let memory: Box<dyn LinearMemory + Send + Sync> = Box::new(unsafe { PooledMemory::new(*ty, definition) }?);
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

#[derive(Default)]
struct Pending {
    image: Option<Arc<Image>>,
    /// Pages the memory may grow to, below what the module declares.
    limit: Option<Pages>,
}

thread_local! {
    /// The image and the page limit for the memory the instantiation in
    /// progress on this thread creates (see [`with_image`]).
    static PENDING: RefCell<Pending> = const { RefCell::new(Pending { image: None, limit: None }) };
    /// The definition of the first memory the instantiation in progress on
    /// this thread created.
    static CREATED: Cell<Option<NonNull<VMMemoryDefinition>>> = const { Cell::new(None) };
}
