//! The mappings under guest memories: each the size of Wasmer's static
//! memory style, kept per thread and reset between instances (see the
//! parent module for why and for the invariants kept).

use std::cell::RefCell;
use std::io;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;

use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap, mmap_anonymous, mprotect, munmap};
use wasmer::WASM_PAGE_SIZE;
use wasmer::sys::vm::MemoryStyle;

use super::Image;
use crate::sandbox::written::Tracker;
use crate::sandbox::written::page_size;

/// Bytes reserved per memory: the wasm32 address space and Wasmer's offset
/// guard behind it (what its static memory style assumes).
const RESERVED: usize =
    (MemoryStyle::static_bound().0 as usize) * WASM_PAGE_SIZE + MemoryStyle::static_offset_guard_size() as usize;
/// Touched bytes up to which a reset zeroes pages rather than discarding them.
pub(super) const ZERO_IN_PLACE: usize = 1 << 20;
/// Reservations a thread keeps for reuse; a guest has one memory, so one
/// would do, but a module with several must not thrash.
const KEPT_PER_THREAD: usize = 4;

thread_local! {
    /// This thread's reservations, reset, for the next memories it creates.
    pub(super) static FREE: RefCell<Vec<Reservation>> = const { RefCell::new(Vec::new()) };
}

/// One mapped reservation of [`RESERVED`] bytes, the first `accessible` of
/// them readable and writable, the rest `PROT_NONE`, the first pages mapping
/// `image` if it has one.
#[derive(Debug)]
pub(super) struct Reservation {
    pub(super) base: NonNull<u8>,
    /// Bytes readable and writable, from the start.
    pub(super) accessible: usize,
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
    pub(super) fn take(image: Option<&Arc<Image>>) -> io::Result<Reservation> {
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
    pub(super) fn set_accessible(&mut self, bytes: usize) -> io::Result<()> {
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
        unsafe { mprotect(self.at(from, to - from), to - from, prot) }?;
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
        let rc = unsafe { nix::libc::mincore(self.at(image_len, anon).as_ptr(), anon, self.resident.as_mut_ptr()) };
        let resident = self.resident.iter().filter(|&&b| b & 1 != 0).count() * page;
        if rc != 0 || resident > ZERO_IN_PLACE {
            // SAFETY: as above, on the anonymous part: its pages become
            // zero-fill-on-demand.
            unsafe { madvise(self.at(image_len, anon), anon, MmapAdvise::MADV_DONTNEED) }?;
            return Ok(());
        }
        let mut i = 0;
        while i < self.resident.len() {
            if self.resident[i] & 1 == 0 {
                i += 1;
                continue;
            }
            let run = self.resident[i..].iter().take_while(|&&b| b & 1 != 0).count();
            let (at, len) = (image_len + i * page, run * page);
            // SAFETY: these pages are inside the accessible (read-write),
            // anonymous part of our reservation, and nothing else refers to
            // them now.
            unsafe { std::ptr::write_bytes(self.at(at, len).as_ptr().cast::<u8>(), 0, len) };
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
            let pages = unsafe {
                std::slice::from_raw_parts_mut(self.at(range.start, range.len()).as_ptr().cast::<u8>(), range.len())
            };
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

    /// Where the `len` bytes at `offset` begin; they must lie inside the
    /// reservation, which the unsafe operations on them rely on.
    fn at(&self, offset: usize, len: usize) -> NonNull<std::ffi::c_void> {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= RESERVED),
            "{len} bytes at {offset} are outside the reservation"
        );
        // SAFETY: the offset is inside the mapping `base` starts (asserted).
        unsafe { self.base.add(offset) }.cast()
    }

    /// Back to this thread's free list, reset; unmapped if that fails or the
    /// list is full.
    pub(super) fn release(mut self) {
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
