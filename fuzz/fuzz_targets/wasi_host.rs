//! The WASI host functions (`wasi_snapshot_preview1`, typenames.witx) as a
//! guest calls them: any sequence of calls, with any arguments, on a memory
//! of one or two pages filled from the input, with stdin from the input, a
//! mounted directory and a scratch one. Each call answers an errno or ends
//! the guest, never panics, and touches no memory but the guest's (the
//! pages past its end are mapped `PROT_NONE`: a stray access kills the
//! process).
//!
//! The input: a flags byte (bit 0: memory of two pages); stdin, then the
//! memory's first bytes, each as a length (u16, little-endian) and bytes;
//! then calls, to its end: a byte picks the function in `NAMES`, and each
//! parameter is a selector byte and a value (see `Input::arg`).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wcgid::sandbox::fuzzing::{Calls, NAMES};
use wcgid::sandbox::{CStrings, Mount};

const PAGE: i64 = 65536;
/// Bytes the scratch directory may hold.
const SCRATCH: u64 = 64 << 10;

/// The mounted directory: a file, a subdirectory with a file, a symlink
/// inside, one out of it and one to itself. Made, the same each time, at a
/// path of its own under the temporary directory, shared by every run.
fn mount() -> &'static Mount {
    static MOUNT: OnceLock<Mount> = OnceLock::new();
    MOUNT.get_or_init(|| {
        let dir = std::env::temp_dir().join("wcgid-fuzz-wasi-host");
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("a"), b"mounted file\n").unwrap();
        std::fs::write(dir.join("d/b"), vec![b'b'; 5000]).unwrap();
        for (link, target) in [("in", "a"), ("out", "/etc"), ("loop", "loop")] {
            match std::os::unix::fs::symlink(target, dir.join(link)) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => panic!("{link}: {e}"),
                _ => {}
            }
        }
        Mount {
            host: dir,
            guest: "/data".into(),
        }
    })
}

fn strings(items: &[&[u8]]) -> CStrings {
    let mut strings = CStrings::default();
    for item in items {
        strings.push(&[item]);
    }
    strings
}

/// The input, read from the front; past its end, zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn byte(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    fn le<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let bytes = self.bytes(N);
        out[..bytes.len()].copy_from_slice(bytes);
        out
    }

    /// A length-prefixed field.
    fn field(&mut self) -> &[u8] {
        let len = u16::from_le_bytes(self.le());
        self.bytes(usize::from(len))
    }

    /// A parameter: its selector's low two bits say what follows. 0: a byte
    /// (a descriptor, a flag, a short length, an address among the first
    /// bytes); 1: a signed byte from a page boundary the selector picks
    /// (0, 64 Ki, 128 Ki, 192 Ki: the ends of memory); 2: an i32; 3: an i64.
    fn arg(&mut self) -> i64 {
        let selector = self.byte();
        match selector & 3 {
            0 => i64::from(self.byte()),
            1 => PAGE * i64::from(selector >> 2 & 3) + i64::from(self.byte() as i8),
            2 => i64::from(i32::from_le_bytes(self.le())),
            _ => i64::from_le_bytes(self.le()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.byte();
    let stdin = input.field();
    let args = strings(&[b"prog", b"-x", b"arg"]);
    let env = strings(&[b"REQUEST_METHOD=GET", b"PATH_INFO=/a/b", b"EMPTY="]);
    let mut calls = Calls::new(args, env, stdin, std::slice::from_ref(mount()), SCRATCH).unwrap();
    if flags & 1 != 0 {
        assert!(calls.grow(1));
    }
    let memory = input.field();
    let fits = memory.len().min(calls.size() as usize);
    assert!(calls.write(0, &memory[..fits]));
    while !input.0.is_empty() {
        let name = NAMES[usize::from(input.byte()) % NAMES.len()];
        // Errors and exits are answers: the guest would go on or end.
        let _ = calls.call_with(name, || input.arg());
    }
});
