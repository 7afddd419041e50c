//! counter: the isolation test.
//!
//! A static counter, bumped once per run and printed. A server that reused
//! one instance for several requests would print 1, 2, 3...; under wcgid
//! every request gets a fresh instance, so every response is `1`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn main() -> io::Result<()> {
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let response = format!("Content-Type: text/plain\r\n\r\n{count}\n");
    let mut out = io::stdout().lock();
    out.write_all(response.as_bytes())?;
    out.flush()
}
