//! The host functions' bounds checks, called as a guest calls them (through
//! their Wasmer `Function`s) on a one-page memory: each bad pointer, length
//! or descriptor gets its errno, and a call that faults writes nothing, in
//! memory or out of it.

use std::ops::{Deref, DerefMut};

use super::Errno;
use super::fuzzing::Calls;
use crate::sandbox::{CStrings, Mount};

const PAGE: u64 = 65536;
/// The byte every test's memory is filled with, so that a write of zeros
/// shows too.
const FILL: u8 = 0xa5;
const STDIN: &[u8] = b"request body";

/// Descriptors: stdio, the mount at `/data`, the scratch directory `/tmp`.
const STDOUT: i64 = 1;
const MOUNT: i64 = 3;
const SCRATCH: i64 = 4;

/// A host with arguments, environment, stdin, a mount and a scratch
/// directory, its memory filled with [`FILL`].
struct Host {
    calls: Calls,
    _mount: tempfile::TempDir,
}

impl Deref for Host {
    type Target = Calls;
    fn deref(&self) -> &Calls {
        &self.calls
    }
}

impl DerefMut for Host {
    fn deref_mut(&mut self) -> &mut Calls {
        &mut self.calls
    }
}

fn strings(items: &[&str]) -> CStrings {
    let mut strings = CStrings::default();
    for item in items {
        assert!(strings.push(&[item.as_bytes()]));
    }
    strings
}

fn host() -> Host {
    let mount = tempfile::tempdir().unwrap();
    std::fs::write(mount.path().join("file"), b"mounted").unwrap();
    let mounts = [Mount {
        host: mount.path().into(),
        guest: "/data".into(),
    }];
    let args = strings(&["prog", "-v"]);
    let env = strings(&["A=1", "PATH_INFO=/x"]);
    let mut calls = Calls::new(args, env, STDIN, &mounts, 1 << 16).unwrap();
    assert!(calls.write(0, &[FILL; PAGE as usize]));
    Host { calls, _mount: mount }
}

impl Host {
    /// Calls `name`, which must return an errno, not trap.
    fn errno(&mut self, name: &str, args: &[i64]) -> Errno {
        let errno = self.call(name, args).unwrap_or_else(|e| panic!("{name} trapped: {e}"));
        Errno(u16::try_from(errno).unwrap())
    }

    fn memory(&self) -> Vec<u8> {
        self.read(0, self.size() as usize).unwrap()
    }

    /// Writes an iovec array at `at`.
    fn iovecs(&mut self, at: u64, iovecs: &[(u32, u32)]) {
        let bytes: Vec<u8> = iovecs
            .iter()
            .flat_map(|&(base, len)| [base.to_le_bytes(), len.to_le_bytes()].concat())
            .collect();
        assert!(self.write(at, &bytes));
    }

    fn u32_at(&self, at: u64) -> u32 {
        u32::from_le_bytes(self.read(at, 4).unwrap().try_into().unwrap())
    }

    /// Grows the memory by a page, and checks that nothing was written
    /// past the old end: the new page reads as zeros.
    fn nothing_past_the_end(&mut self) {
        assert!(self.grow(1));
        assert_eq!(self.read(PAGE, PAGE as usize).unwrap(), vec![0; PAGE as usize]);
    }

    /// Calls `name`, which must answer `errno` and leave memory, stdout and
    /// stdin as they were.
    fn fails_without_effect(&mut self, errno: Errno, name: &str, args: &[i64]) {
        let before = self.memory();
        assert_eq!(self.errno(name, args), errno, "{name}{args:?}");
        assert!(self.memory() == before, "{name}{args:?} changed memory");
        assert_eq!(self.stdio().stdout, b"", "{name}{args:?} wrote to stdout");
        assert_eq!(self.stdio().stdin.len(), STDIN.len(), "{name}{args:?} read stdin");
    }
}

/// `ptr` as the guest passes it: a u32 in an i32.
fn ptr(at: u64) -> i64 {
    i64::from(u32::try_from(at).unwrap() as i32)
}

// ---- iovecs ------------------------------------------------------------------

#[test]
fn an_iovec_array_past_the_end_of_memory_faults() {
    let mut h = host();
    for name in ["fd_write", "fd_read"] {
        let fd = if name == "fd_write" { STDOUT } else { 0 };
        // Its last entry is 4 bytes short; its pointer wraps past 4 GiB.
        h.fails_without_effect(Errno::FAULT, name, &[fd, ptr(PAGE - 12), 2, 0]);
        h.fails_without_effect(Errno::FAULT, name, &[fd, ptr(PAGE), 1, 0]);
        h.fails_without_effect(Errno::FAULT, name, &[fd, ptr(u64::from(u32::MAX) - 3), 1, 0]);
        // More than IOV_MAX entries, or a negative count.
        h.fails_without_effect(Errno::INVAL, name, &[fd, 0, 1025, 0]);
        h.fails_without_effect(Errno::INVAL, name, &[fd, 0, -1, 0]);
    }
    h.nothing_past_the_end();
}

#[test]
fn an_iovec_reaching_past_the_end_of_memory_faults() {
    let mut h = host();
    for iovec in [(PAGE - 2, 8), (PAGE, 1), (u64::from(u32::MAX), 2), (1, u32::MAX - 4)] {
        // A good entry first: nothing is copied before the bad one is found.
        h.iovecs(0x100, &[(0x1000, 4), (iovec.0 as u32, iovec.1)]);
        h.fails_without_effect(Errno::FAULT, "fd_write", &[STDOUT, 0x100, 2, 0x200]);
        h.fails_without_effect(Errno::FAULT, "fd_read", &[0, 0x100, 2, 0x200]);
    }
    h.nothing_past_the_end();
}

#[test]
fn iovec_lengths_summing_past_u32_are_invalid() {
    let mut h = host();
    assert!(h.write(0x1000, b"tmp"));
    assert_eq!(
        h.errno("path_open", &[SCRATCH, 0, 0x1000, 3, 1, 0x42, 0, 0, 0x200]),
        Errno::SUCCESS
    );
    let file = i64::from(h.u32_at(0x200));
    h.iovecs(0x100, &[(0, PAGE as u32), (0, u32::MAX - PAGE as u32 + 1)]);
    h.fails_without_effect(Errno::INVAL, "fd_write", &[STDOUT, 0x100, 2, 0x200]);
    h.fails_without_effect(Errno::INVAL, "fd_read", &[0, 0x100, 2, 0x200]);
    for name in ["fd_write", "fd_read"] {
        h.fails_without_effect(Errno::INVAL, name, &[file, 0x100, 2, 0x200]);
    }
    for name in ["fd_pwrite", "fd_pread"] {
        h.fails_without_effect(Errno::INVAL, name, &[file, 0x100, 2, 0, 0x200]);
    }
    // IOV_MAX entries of a page each, the same page: 64 MiB, all in memory.
    h.iovecs(0x100, &[(0, PAGE as u32); 1024]);
    let before = h.memory();
    assert_eq!(h.errno("fd_read", &[0, 0x100, 1024, 0x200]), Errno::SUCCESS);
    assert_eq!(h.u32_at(0x200), STDIN.len() as u32);
    assert_eq!(h.read(0, STDIN.len()).unwrap(), STDIN);
    assert_eq!(h.memory()[STDIN.len()..0x200], before[STDIN.len()..0x200]);
}

#[test]
fn empty_iovecs_are_never_touched() {
    let mut h = host();
    assert!(h.write(0x1000, b"hello"));
    h.iovecs(0x100, &[(u32::MAX, 0), (0x1000, 5), (PAGE as u32 + 7, 0)]);
    assert_eq!(h.errno("fd_write", &[STDOUT, 0x100, 3, 0x200]), Errno::SUCCESS);
    assert_eq!(h.stdio().stdout, b"hello");
    assert_eq!(h.u32_at(0x200), 5);
    h.iovecs(0x100, &[(u32::MAX, 0), (0x2000, 7), (0x3000, 100)]);
    assert_eq!(h.errno("fd_read", &[0, 0x100, 3, 0x200]), Errno::SUCCESS);
    assert_eq!(h.u32_at(0x200), STDIN.len() as u32);
    assert_eq!(h.read(0x2000, 7).unwrap(), &STDIN[..7]);
    assert_eq!(h.read(0x3000, 5).unwrap(), &STDIN[7..]);
}

#[test]
fn a_read_into_memory_not_yet_grown_faults_and_loses_no_input() {
    let mut h = host();
    // Where the memory will be once grown: mapped, PROT_NONE for now.
    h.iovecs(0x100, &[(PAGE as u32, 16)]);
    h.fails_without_effect(Errno::FAULT, "fd_read", &[0, 0x100, 1, 0x200]);
    h.nothing_past_the_end();
    // Grown, the same read reads the whole body.
    assert_eq!(h.errno("fd_read", &[0, 0x100, 1, 0x200]), Errno::SUCCESS);
    assert_eq!(h.read(PAGE, STDIN.len()).unwrap(), STDIN);
}

#[test]
fn a_count_out_pointer_past_the_end_faults() {
    let mut h = host();
    assert!(h.write(0x1000, b"hi"));
    h.iovecs(0x100, &[(0x1000, 2)]);
    // The bytes are gone by then, as when `readv` or `writev` fault on
    // their result.
    assert_eq!(h.errno("fd_write", &[STDOUT, 0x100, 1, ptr(PAGE - 2)]), Errno::FAULT);
    assert_eq!(h.stdio().stdout, b"hi");
    h.iovecs(0x100, &[(0x2000, 4)]);
    assert_eq!(h.errno("fd_read", &[0, 0x100, 1, ptr(PAGE)]), Errno::FAULT);
    assert_eq!(h.read(0x2000, 4).unwrap(), &STDIN[..4]);
    h.nothing_past_the_end();
}

#[test]
fn a_scratch_file_written_from_outside_memory_is_left_as_it_was() {
    let mut h = host();
    assert!(h.write(0x1000, b"tmp"));
    assert_eq!(
        h.errno("path_open", &[SCRATCH, 0, 0x1000, 3, 1, 0x42, 0, 0, 0x200]),
        Errno::SUCCESS
    );
    let fd = i64::from(h.u32_at(0x200));
    h.iovecs(0x100, &[(0x1000, 3), (PAGE as u32 - 1, 2)]);
    h.fails_without_effect(Errno::FAULT, "fd_write", &[fd, 0x100, 2, 0x200]);
    h.fails_without_effect(Errno::FAULT, "fd_pwrite", &[fd, 0x100, 2, 0, 0x200]);
    // The file is still empty.
    assert_eq!(h.errno("fd_filestat_get", &[fd, 0x300]), Errno::SUCCESS);
    assert_eq!(h.read(0x300 + 32, 8).unwrap(), [0; 8]);
}

// ---- paths -------------------------------------------------------------------

#[test]
fn a_path_past_the_end_of_memory_faults() {
    let mut h = host();
    for dir in [MOUNT, SCRATCH] {
        for (path, len) in [(PAGE - 2, 4), (PAGE, 1), (u64::from(u32::MAX), 2)] {
            let (path, len) = (ptr(path), len);
            h.fails_without_effect(Errno::FAULT, "path_open", &[dir, 0, path, len, 0, 0, 0, 0, 0x200]);
            h.fails_without_effect(Errno::FAULT, "path_filestat_get", &[dir, 0, path, len, 0x200]);
            h.fails_without_effect(Errno::FAULT, "path_readlink", &[dir, path, len, 0x200, 16, 0x300]);
        }
        h.fails_without_effect(Errno::NAMETOOLONG, "path_open", &[dir, 0, 0, 4097, 0, 0, 0, 0, 0x200]);
        h.fails_without_effect(Errno::NAMETOOLONG, "path_open", &[dir, 0, 0, -1, 0, 0, 0, 0, 0x200]);
    }
    h.fails_without_effect(
        Errno::FAULT,
        "path_rename",
        &[SCRATCH, ptr(PAGE - 1), 2, SCRATCH, 0x1000, 1],
    );
    h.fails_without_effect(
        Errno::FAULT,
        "path_rename",
        &[SCRATCH, 0x1000, 1, SCRATCH, ptr(PAGE), 1],
    );
    for name in ["path_create_directory", "path_remove_directory", "path_unlink_file"] {
        h.fails_without_effect(Errno::FAULT, name, &[SCRATCH, ptr(PAGE - 1), 2]);
        // A mount is read-only whatever the path.
        h.fails_without_effect(Errno::ROFS, name, &[MOUNT, ptr(PAGE - 1), 2]);
    }
    h.nothing_past_the_end();
}

#[test]
fn a_path_call_on_a_bad_directory_is_badf_or_notdir() {
    let mut h = host();
    assert!(h.write(0x1000, b"file"));
    for (dir, errno) in [(-1, Errno::BADF), (99, Errno::BADF), (STDOUT, Errno::NOTDIR)] {
        h.fails_without_effect(errno, "path_open", &[dir, 0, 0x1000, 4, 0, 0, 0, 0, 0x200]);
        h.fails_without_effect(errno, "path_filestat_get", &[dir, 0, 0x1000, 4, 0x200]);
        h.fails_without_effect(errno, "path_create_directory", &[dir, 0x1000, 4]);
    }
}

#[test]
fn paths_are_bytes_not_utf8_and_a_nul_is_invalid() {
    let mut h = host();
    assert!(h.write(0x1000, b"\xff\xfe"));
    // Opened as the bytes they are: no such file under the mount; created
    // in the scratch directory.
    h.fails_without_effect(Errno::NOENT, "path_open", &[MOUNT, 0, 0x1000, 2, 0, 0, 0, 0, 0x200]);
    assert_eq!(
        h.errno("path_open", &[SCRATCH, 0, 0x1000, 2, 1, 0x42, 0, 0, 0x200]),
        Errno::SUCCESS
    );
    assert_eq!(
        h.errno("path_filestat_get", &[SCRATCH, 0, 0x1000, 2, 0x300]),
        Errno::SUCCESS
    );
    assert!(h.write(0x1000, b"file\0x"));
    for dir in [MOUNT, SCRATCH] {
        h.fails_without_effect(Errno::INVAL, "path_open", &[dir, 0, 0x1000, 6, 0, 0, 0, 0, 0x200]);
        h.fails_without_effect(Errno::INVAL, "path_filestat_get", &[dir, 0, 0x1000, 6, 0x200]);
    }
    h.fails_without_effect(Errno::INVAL, "path_create_directory", &[SCRATCH, 0x1000, 6]);
}

#[test]
fn a_result_past_the_end_of_memory_faults() {
    let mut h = host();
    assert!(h.write(0x1000, b"file"));
    h.fails_without_effect(
        Errno::FAULT,
        "path_filestat_get",
        &[MOUNT, 0, 0x1000, 4, ptr(PAGE - 63)],
    );
    h.fails_without_effect(Errno::FAULT, "fd_filestat_get", &[MOUNT, ptr(PAGE - 8)]);
    h.fails_without_effect(Errno::FAULT, "fd_fdstat_get", &[STDOUT, ptr(PAGE - 23)]);
    h.fails_without_effect(Errno::FAULT, "fd_prestat_get", &[MOUNT, ptr(PAGE - 4)]);
    h.fails_without_effect(Errno::FAULT, "fd_prestat_dir_name", &[MOUNT, ptr(PAGE - 4), 5]);
    h.fails_without_effect(Errno::NAMETOOLONG, "fd_prestat_dir_name", &[MOUNT, 0x200, 4]);
    h.fails_without_effect(Errno::FAULT, "fd_readdir", &[MOUNT, ptr(PAGE - 8), 64, 0, 0x200]);
    h.fails_without_effect(Errno::FAULT, "clock_time_get", &[0, 0, ptr(PAGE - 4)]);
    h.fails_without_effect(Errno::FAULT, "clock_res_get", &[1, ptr(PAGE)]);
    h.fails_without_effect(Errno::INVAL, "clock_time_get", &[4, 0, 0x200]);
    h.fails_without_effect(Errno::FAULT, "random_get", &[ptr(PAGE - 8), 16]);
    h.fails_without_effect(Errno::FAULT, "random_get", &[0, -1]);
    // Up to the last byte is in.
    assert_eq!(h.errno("random_get", &[ptr(PAGE - 16), 16]), Errno::SUCCESS);
    assert_eq!(h.errno("clock_time_get", &[1, 0, ptr(PAGE - 8)]), Errno::SUCCESS);
    h.nothing_past_the_end();
}

// ---- args and environment ----------------------------------------------------

#[test]
fn args_and_environ_past_the_end_of_memory_fault_and_write_nothing() {
    let mut h = host();
    for (get, sizes) in [("args_get", "args_sizes_get"), ("environ_get", "environ_sizes_get")] {
        h.fails_without_effect(Errno::FAULT, sizes, &[ptr(PAGE - 2), 0x200]);
        h.fails_without_effect(Errno::FAULT, sizes, &[0x200, ptr(PAGE)]);
        assert_eq!(h.errno(sizes, &[0x200, 0x204]), Errno::SUCCESS);
        let (count, size) = (u64::from(h.u32_at(0x200)), u64::from(h.u32_at(0x204)));
        // The pointers, or the strings, one byte short; or wrapping.
        h.fails_without_effect(Errno::FAULT, get, &[ptr(PAGE - 4 * count + 1), 0x1000]);
        h.fails_without_effect(Errno::FAULT, get, &[0x300, ptr(PAGE - size + 1)]);
        h.fails_without_effect(Errno::FAULT, get, &[ptr(u64::from(u32::MAX) - 3), 0x1000]);
        // Both ending at the last byte.
        let (ptrs, buf) = (PAGE - 4 * count, PAGE - 4 * count - size);
        assert_eq!(h.errno(get, &[ptr(ptrs), ptr(buf)]), Errno::SUCCESS);
        assert_eq!(h.u32_at(ptrs), buf as u32);
    }
    assert_eq!(h.read(PAGE - 8 - 17, 17).unwrap(), b"A=1\0PATH_INFO=/x\0");
    h.nothing_past_the_end();
}

// ---- poll_oneoff -------------------------------------------------------------

const SUBSCRIPTION: usize = 48;
const EVENT: u64 = 32;

/// A subscription: `userdata`, then the tag and its contents (a clock's
/// id, timeout and flags; a descriptor).
fn subscription(userdata: u64, tag: u8, id_or_fd: u32, timeout: u64, flags: u16) -> [u8; SUBSCRIPTION] {
    let mut sub = [0; SUBSCRIPTION];
    sub[0..8].copy_from_slice(&userdata.to_le_bytes());
    sub[8] = tag;
    sub[16..20].copy_from_slice(&id_or_fd.to_le_bytes());
    sub[24..32].copy_from_slice(&timeout.to_le_bytes());
    sub[40..42].copy_from_slice(&flags.to_le_bytes());
    sub
}

const CLOCK: u8 = 0;
const FD_READ: u8 = 1;
const FD_WRITE: u8 = 2;

impl Host {
    fn subscribe(&mut self, subs: &[[u8; SUBSCRIPTION]]) {
        assert!(self.write(0x100, &subs.concat()));
    }

    /// The events `poll_oneoff` wrote at 0x1000, as (userdata, errno, tag).
    fn events(&self) -> Vec<(u64, Errno, u8)> {
        (0..u64::from(self.u32_at(0x200)))
            .map(|i| {
                let event = self.read(0x1000 + EVENT * i, EVENT as usize).unwrap();
                let userdata = u64::from_le_bytes(event[0..8].try_into().unwrap());
                (userdata, Errno(u16::from_le_bytes([event[8], event[9]])), event[10])
            })
            .collect()
    }
}

#[test]
fn poll_without_subscriptions_or_with_too_many_is_invalid() {
    let mut h = host();
    h.fails_without_effect(Errno::INVAL, "poll_oneoff", &[0x100, 0x1000, 0, 0x200]);
    h.fails_without_effect(Errno::INVAL, "poll_oneoff", &[0x100, 0x1000, 257, 0x200]);
    h.fails_without_effect(Errno::INVAL, "poll_oneoff", &[0x100, 0x1000, -1, 0x200]);
}

#[test]
fn poll_subscriptions_past_the_end_of_memory_fault() {
    let mut h = host();
    let sub = subscription(7, CLOCK, 1, 1000, 0);
    assert!(h.write(PAGE - 2 * SUBSCRIPTION as u64, &[sub, sub].concat()));
    // The second of three is the last in memory.
    h.fails_without_effect(Errno::FAULT, "poll_oneoff", &[ptr(PAGE - 96), 0x1000, 3, 0x200]);
    h.fails_without_effect(Errno::FAULT, "poll_oneoff", &[ptr(PAGE - 47), 0x1000, 1, 0x200]);
    h.fails_without_effect(
        Errno::FAULT,
        "poll_oneoff",
        &[ptr(u64::from(u32::MAX) - 15), 0x1000, 1, 0x200],
    );
    assert_eq!(h.stdio().slept, std::time::Duration::ZERO);
}

#[test]
fn poll_events_past_the_end_of_memory_fault_before_any_sleep() {
    let mut h = host();
    h.subscribe(&[subscription(7, CLOCK, 1, 1000, 0), subscription(8, CLOCK, 1, 2000, 0)]);
    // Room for one event, not for one per subscription.
    h.fails_without_effect(Errno::FAULT, "poll_oneoff", &[0x100, ptr(PAGE - EVENT), 2, 0x200]);
    h.fails_without_effect(Errno::FAULT, "poll_oneoff", &[0x100, 0x1000, 2, ptr(PAGE - 2)]);
    assert_eq!(h.stdio().slept, std::time::Duration::ZERO);
    h.nothing_past_the_end();
}

#[test]
fn poll_with_an_unknown_tag_or_clock_is_invalid() {
    let mut h = host();
    for bad in [
        subscription(7, 3, 0, 0, 0),
        subscription(7, 0xff, 0, 0, 0),
        subscription(7, CLOCK, 4, 1000, 0),
        subscription(7, CLOCK, u32::MAX, 1000, 1),
    ] {
        // Beside a good subscription, before or after it.
        for subs in [
            [subscription(1, FD_READ, 0, 0, 0), bad],
            [bad, subscription(1, CLOCK, 1, 5, 0)],
        ] {
            h.subscribe(&subs);
            h.fails_without_effect(Errno::INVAL, "poll_oneoff", &[0x100, 0x1000, 2, 0x200]);
        }
    }
    assert_eq!(h.stdio().slept, std::time::Duration::ZERO);
}

#[test]
fn poll_on_a_bad_descriptor_reports_it_in_its_event() {
    let mut h = host();
    h.subscribe(&[
        subscription(1, FD_READ, 0, 0, 0),
        subscription(2, FD_READ, 99, 0, 0),
        subscription(3, FD_WRITE, STDOUT as u32, 0, 0),
        subscription(4, FD_WRITE, u32::MAX, 0, 0),
        subscription(5, CLOCK, 1, 1_000_000_000, 0),
    ]);
    assert_eq!(h.errno("poll_oneoff", &[0x100, 0x1000, 5, 0x200]), Errno::SUCCESS);
    assert_eq!(
        h.events(),
        [
            (1, Errno::SUCCESS, FD_READ),
            (2, Errno::BADF, FD_READ),
            (3, Errno::SUCCESS, FD_WRITE),
            (4, Errno::BADF, FD_WRITE)
        ]
    );
    // Descriptors are ready: the clock is not waited for.
    assert_eq!(h.stdio().slept, std::time::Duration::ZERO);
}

#[test]
fn poll_on_clocks_sleeps_until_the_earliest() {
    let mut h = host();
    h.subscribe(&[
        subscription(1, CLOCK, 1, 3_000, 0),
        subscription(2, CLOCK, 0, 1_000, 0),
        subscription(3, CLOCK, 1, 1_000, 0),
    ]);
    assert_eq!(h.errno("poll_oneoff", &[0x100, 0x1000, 3, 0x200]), Errno::SUCCESS);
    assert_eq!(h.events(), [(2, Errno::SUCCESS, CLOCK), (3, Errno::SUCCESS, CLOCK)]);
    assert!(h.stdio().slept <= std::time::Duration::from_micros(1));
}

// ---- descriptors -------------------------------------------------------------

#[test]
fn renumbering_a_descriptor_onto_itself_keeps_it() {
    let mut h = host();
    assert_eq!(h.errno("fd_renumber", &[STDOUT, STDOUT]), Errno::SUCCESS);
    assert_eq!(h.errno("fd_renumber", &[MOUNT, MOUNT]), Errno::SUCCESS);
    h.fails_without_effect(Errno::BADF, "fd_renumber", &[99, 99]);
    assert!(h.write(0x1000, b"still here"));
    h.iovecs(0x100, &[(0x1000, 10)]);
    assert_eq!(h.errno("fd_write", &[STDOUT, 0x100, 1, 0x200]), Errno::SUCCESS);
    assert_eq!(h.stdio().stdout, b"still here");
    assert_eq!(h.errno("fd_prestat_get", &[MOUNT, 0x200]), Errno::SUCCESS);
}

#[test]
fn every_name_is_a_host_function() {
    let mut h = host();
    for name in super::fuzzing::NAMES {
        // Arguments that are all zero: a call may fail, but only proc_exit
        // unwinds.
        match h.call(name, &[]) {
            Ok(_) => {}
            Err(e) if *name == "proc_exit" => assert!(matches!(e.downcast(), Ok(super::ExitCode(0)))),
            Err(e) => panic!("{name}: {e}"),
        }
    }
}
