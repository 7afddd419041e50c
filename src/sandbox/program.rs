//! A compiled program's runs ([`Program`]), each in a fresh store and
//! instance, and the argv and environ strings they are given
//! ([`CStrings`]).

use std::path::Path;

use super::{CStrings, Error, Outcome, Program, Stdio, wasi};

impl Program {
    /// Caps each instance's memory at `bytes` (whole 64 KiB pages): growing
    /// past it fails as growing past the module's own maximum does. A
    /// module whose memory starts larger is refused.
    pub fn with_memory_limit(mut self, path: &Path, bytes: u64) -> Result<Program, Error> {
        let pages = u32::try_from(bytes / wasmer::WASM_PAGE_SIZE as u64).unwrap_or(u32::MAX);
        for export in self.module.exports() {
            if let wasmer::ExternType::Memory(ty) = export.ty()
                && u64::from(ty.minimum.0) > u64::from(pages)
            {
                return Err(Error::MemoryLimit {
                    path: path.into(),
                    needs: ty.minimum.bytes().0 as u64,
                    limit: bytes,
                });
            }
        }
        self.memory_limit = Some(wasmer::Pages(pages));
        Ok(self)
    }

    /// Gives each instance a private, empty, writable directory at
    /// [`SCRATCH_DIR`](super::SCRATCH_DIR), held in memory and dropped with the instance, of at
    /// most `bytes` (file contents, and a small cost per file, directory
    /// and name); 0 gives none.
    pub fn with_scratch(mut self, bytes: u64) -> Program {
        self.scratch = bytes;
        self
    }

    /// Gives each run of this metered program `fuel` points (one per Wasm
    /// operator executed); a run that spends them all is stopped. A program
    /// not loaded with [`Engine::load_metered`](super::Engine::load_metered) is left as it is.
    pub fn with_fuel(mut self, fuel: u64) -> Program {
        if self.fuel.is_some() {
            self.fuel = Some(fuel);
        }
        self
    }

    /// Whether the module is an interpreter snapshot that reads its
    /// arguments and environment from stdin, ahead of the body, rather than
    /// through `args_get` and `environ_get` (wasi-libc and the interpreter
    /// read those once, while the snapshot was taken). The layout is
    /// `wasi::request_preamble`'s.
    pub fn takes_request_on_stdin(&self) -> bool {
        self.request_on_stdin
    }

    /// Runs the guest's `_start` in a fresh instance, on the calling thread,
    /// and hands `stdio` back with the outcome.
    pub fn run<S: Stdio>(&self, args: CStrings, env: CStrings, stdio: S) -> (Outcome, S) {
        wasi::run(self, args, env, stdio)
    }
}

impl CStrings {
    /// Appends the concatenation of `parts` as one string. Refused (returns
    /// false) if it contains a NUL byte, which a C string cannot carry.
    pub fn push(&mut self, parts: &[&[u8]]) -> bool {
        if parts.iter().any(|p| p.contains(&0)) {
            return false;
        }
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
        self.bytes.push(0);
        self.count += 1;
        true
    }

    /// The strings, without their NUL terminators.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.split(|&b| b == 0).take(self.count as usize)
    }
}
