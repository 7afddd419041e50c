//! heap: a CGI program whose init fills a heap of 1, 16 or 64 MiB, and
//! whose every request walks it the way a request walks an interpreter's
//! heap: it reads one byte in every 64 KiB and writes to 8 pages spread
//! over it, then answers the sum of what it read.
//!
//! Pre-initialized with `wcgid preinit --init-func heap.init-N` (N = 1, 16
//! or 64) into heap-N.wasm; `scripts/bench` measures what a request costs
//! against the heap's size, with and without the pages it only read staying
//! mapped between requests (docs/performance.md).

use std::io::{self, Write};
use std::sync::OnceLock;

const MIB: usize = 1 << 20;
const READ_EVERY: usize = 64 * 1024;
const PAGES_WRITTEN: usize = 8;

static HEAP: OnceLock<Vec<u8>> = OnceLock::new();

fn fill(mib: usize) {
    HEAP.get_or_init(|| (0..mib * MIB).map(|i| (i % 251) as u8 | 1).collect());
}

#[unsafe(export_name = "heap.init-1")]
pub extern "C" fn init_1() {
    fill(1);
}

#[unsafe(export_name = "heap.init-16")]
pub extern "C" fn init_16() {
    fill(16);
}

#[unsafe(export_name = "heap.init-64")]
pub extern "C" fn init_64() {
    fill(64);
}

fn main() -> io::Result<()> {
    // Not pre-initialized: the smallest heap, built now.
    let heap = HEAP.get_or_init(|| vec![1; MIB]);
    let sum: u64 = heap.iter().step_by(READ_EVERY).map(|&b| u64::from(b)).sum();
    // Writes through a pointer the compiler cannot see through: the heap
    // stays shared (no copy of it), and the stores stay.
    let base = std::hint::black_box(heap.as_ptr().cast_mut());
    for page in 0..PAGES_WRITTEN {
        let at = page * (heap.len() / PAGES_WRITTEN);
        // SAFETY: `at` is inside the heap, which nothing else uses during
        // the request; the next request starts from the snapshot again.
        unsafe { base.add(at).write_volatile(sum as u8) };
    }
    let mut out = io::stdout().lock();
    write!(out, "Content-Type: text/plain\r\n\r\n{} MiB, sum {sum}\n", heap.len() / MIB)?;
    out.flush()
}
