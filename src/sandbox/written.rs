//! Which pages of a memory image an instance wrote: so that a reset
//! restores those alone and the pages it only read stay mapped for the next
//! instance (see [`super::memory`]).
//!
//! The kernel keeps the record. A mapped image is registered with a
//! userfaultfd in asynchronous write-protect mode (`UFFD_FEATURE_WP_ASYNC`,
//! Linux 6.7; `UFFD_FEATURE_WP_UNPOPULATED` so that pages not yet faulted in
//! are covered too) and write-protected: a write to a protected page is
//! resolved by the kernel itself, which clears the protection, and no
//! message is ever queued. `PAGEMAP_SCAN` on `/proc/self/pagemap` (Linux
//! 6.7) then lists the pages whose protection is gone, as ranges:
//! `PAGE_IS_WRITTEN` (Documentation/admin-guide/mm/pagemap.rst). After a
//! reset puts their bytes back, they are protected again
//! (`UFFDIO_WRITEPROTECT`). The fd is opened `UFFD_USER_MODE_ONLY`, which an
//! unprivileged process may do whatever `vm.unprivileged_userfaultfd`
//! says; faults the kernel itself takes while writing guest memory are
//! resolved the same way (asynchronous write-protect faults never reach
//! the user-mode-only check).
//!
//! Where any of this is missing (an older kernel, a seccomp filter without
//! `userfaultfd`), [`Tracker::get`] has none, and resets discard a whole
//! image as before. Soft-dirty bits would do without userfaultfd, but they
//! are not compiled into every kernel (not into this project's test
//! machines'), and clearing them costs a walk of every mapping.
//!
//! # Why by hand
//! No crate wraps `PAGEMAP_SCAN`, and the `userfaultfd` crate predates the
//! asynchronous mode. The ioctls, their argument structs (from
//! `linux/userfaultfd.h` and `linux/fs.h`) and the `unsafe` they need are
//! this module.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::OnceLock;

/// `linux/userfaultfd.h`.
const UFFD_API: u64 = 0xaa;
const UFFD_USER_MODE_ONLY: i32 = 1;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// `linux/fs.h`.
const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

nix::ioctl_readwrite!(uffdio_api, 0xaa, 0x3f, UffdioApi);
nix::ioctl_readwrite!(uffdio_register, 0xaa, 0x00, UffdioRegister);
nix::ioctl_readwrite!(uffdio_writeprotect, 0xaa, 0x06, UffdioWriteprotect);
nix::ioctl_readwrite!(pagemap_scan, b'f', 16, PmScanArg);

/// Ranges a scan returns at once; more take another call.
const SCAN_BATCH: usize = 256;

/// This process's userfaultfd and pagemap, once found to work.
pub struct Tracker {
    uffd: OwnedFd,
    pagemap: File,
}

impl Tracker {
    /// The process's tracker, if the kernel and the process's restrictions
    /// allow one; the first call decides, and logs why not.
    pub fn get() -> Option<&'static Tracker> {
        static TRACKER: OnceLock<Option<Tracker>> = OnceLock::new();
        TRACKER
            .get_or_init(|| match Tracker::open() {
                Ok(tracker) => Some(tracker),
                Err(e) => {
                    tracing::info!(
                        "no written-page tracking ({e}): a reset discards a whole memory image, \
                         and each request faults its reads in again"
                    );
                    None
                }
            })
            .as_ref()
    }

    /// How resets work in this process, for the status page.
    pub fn method() -> &'static str {
        match Tracker::get() {
            Some(_) => "written pages (userfaultfd + PAGEMAP_SCAN)",
            None => "whole image (MADV_DONTNEED)",
        }
    }

    fn open() -> io::Result<Tracker> {
        // SAFETY: a system call that takes flags and returns a new fd.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
            )
        };
        if fd < 0 {
            return Err(io::Error::other(format!("userfaultfd: {}", io::Error::last_os_error())));
        }
        // SAFETY: the fd was just created and is owned by nothing else.
        let uffd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
            ioctls: 0,
        };
        // SAFETY: the argument is a live, correctly laid out uffdio_api.
        unsafe { uffdio_api(uffd.as_raw_fd(), &mut api) }
            .map_err(|e| io::Error::other(format!("asynchronous write-protect (Linux 6.7): {e}")))?;
        let pagemap = File::open("/proc/self/pagemap")?;
        let tracker = Tracker { uffd, pagemap };
        tracker.probe()?;
        Ok(tracker)
    }

    /// Tracks a page of its own and checks that a write to it is seen:
    /// `PAGEMAP_SCAN` (Linux 6.7) may be missing where userfaultfd is not.
    fn probe(&self) -> io::Result<()> {
        let page = page_size();
        // SAFETY: a fresh private anonymous page, unmapped below.
        let at = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                std::num::NonZeroUsize::new(page).expect("pages are not empty"),
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_PRIVATE,
            )
        }?
        .cast::<u8>();
        let seen = (|| -> io::Result<bool> {
            self.track(at, page)?;
            let mut written = Vec::new();
            self.written(at, page, &mut written)?;
            if !written.is_empty() {
                return Ok(false);
            }
            // SAFETY: the page is ours, mapped read-write.
            unsafe { at.as_ptr().write_volatile(1) };
            self.written(at, page, &mut written)?;
            Ok(written.len() == 1 && written[0] == (0..page))
        })();
        // SAFETY: our own mapping, which nothing refers to any more.
        let _ = unsafe { nix::sys::mman::munmap(at.cast(), page) };
        match seen {
            Ok(true) => Ok(()),
            Ok(false) => Err(io::Error::other("PAGEMAP_SCAN does not see writes")),
            Err(e) => Err(io::Error::other(format!("PAGEMAP_SCAN (Linux 6.7): {e}"))),
        }
    }

    /// Registers `len` bytes at `start` and write-protects them: from now
    /// on a write there is seen. The range must be one mapping of ours
    /// (registering ends with it).
    pub fn track(&self, start: NonNull<u8>, len: usize) -> io::Result<()> {
        let mut register = UffdioRegister {
            range: range(start, 0, len),
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: a live uffdio_register; the kernel checks the range.
        unsafe { uffdio_register(self.uffd.as_raw_fd(), &mut register) }?;
        self.protect(start, 0..len)
    }

    /// Write-protects the bytes `range` of the tracked mapping at `start`
    /// again: a later write there is seen.
    pub fn protect(&self, start: NonNull<u8>, range: std::ops::Range<usize>) -> io::Result<()> {
        let mut protect = UffdioWriteprotect {
            range: self::range(start, range.start, range.len()),
            mode: UFFDIO_WRITEPROTECT_MODE_WP,
        };
        // SAFETY: a live uffdio_writeprotect; the kernel checks the range.
        unsafe { uffdio_writeprotect(self.uffd.as_raw_fd(), &mut protect) }?;
        Ok(())
    }

    /// Puts in `written` (emptied first) the byte ranges, relative to
    /// `start`, of the pages among the `len` bytes there written since they
    /// were last protected. Protects nothing.
    pub fn written(&self, start: NonNull<u8>, len: usize, written: &mut Vec<std::ops::Range<usize>>) -> io::Result<()> {
        written.clear();
        let base = start.as_ptr() as u64;
        let end = base + len as u64;
        let mut from = base;
        let mut regions = [PageRegion::default(); SCAN_BATCH];
        while from < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags: PM_SCAN_CHECK_WPASYNC,
                start: from,
                end,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: SCAN_BATCH as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: PAGE_IS_WRITTEN,
                category_anyof_mask: 0,
                return_mask: PAGE_IS_WRITTEN,
            };
            // SAFETY: `arg` is a live pm_scan_arg whose vec points to
            // SCAN_BATCH writable page_regions.
            let found = unsafe { pagemap_scan(self.pagemap.as_raw_fd(), &mut arg) }?;
            let found = usize::try_from(found).unwrap_or(0).min(SCAN_BATCH);
            written.extend(
                regions[..found]
                    .iter()
                    .map(|r| (r.start - base) as usize..(r.end - base) as usize),
            );
            if arg.walk_end <= from {
                return Err(io::Error::other("PAGEMAP_SCAN made no progress"));
            }
            from = arg.walk_end;
        }
        Ok(())
    }
}

fn range(start: NonNull<u8>, offset: usize, len: usize) -> UffdioRange {
    UffdioRange {
        start: start.as_ptr() as u64 + offset as u64,
        len: len as u64,
    }
}

/// The OS's page size.
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(4096)
    })
}
