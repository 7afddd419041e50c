//! cases: a test fixture guest. The whole query string names one behaviour,
//! `name` or `name=ARG`; see README.md for the list.
//!
//! Output goes straight to fd 1 with no buffering in between, so whatever a
//! case wrote is already out when it exits or traps.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
#[cfg(target_os = "wasi")]
use std::os::wasi::ffi::OsStrExt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

const TEXT: &str = "Content-Type: text/plain\r\n\r\n";
const OCTETS: &str = "Content-Type: application/octet-stream\r\n\r\n";
const CHUNK: usize = 64 * 1024;

fn main() {
    let query = std::env::var_os("QUERY_STRING").unwrap_or_default();
    let query = query.to_string_lossy();
    let (case, arg) = match query.split_once('=') {
        Some((case, arg)) => (case, Some(arg)),
        None => (&*query, None),
    };
    match (case, arg) {
        ("ok", None) => send(format!("{TEXT}ok\n")),
        ("trap", None) => trap(),
        ("exit", Some(n)) => std::process::exit(number(n)),
        ("exit-after-body", Some(n)) => exit_after_body(number(n)),
        ("trap-after-body", None) => trap_after_body(),
        ("nothing", None) => {}
        ("garbled", None) => send("this is not a header\r\n\r\nbody\n"),
        ("no-blank-line", None) => send("Content-Type: text/plain\r\n"),
        ("empty-headers", None) => send("\r\nbody\n"),
        ("lf", None) => send("Content-Type: text/plain\nX-Case: lf\n\nlf body\n"),
        ("cookies", None) => cookies(),
        ("status", None) => send(format!("Status: 404 Not Found\r\n{TEXT}not here\n")),
        ("status-bad", None) => send(format!("Status: abc\r\n{TEXT}x\n")),
        ("status-noreason", None) => send(format!("Status: 418\r\n{TEXT}teapot\n")),
        ("redirect", None) => send("Location: http://example.com/elsewhere\r\n\r\n"),
        ("local-redirect", None) => send("Location: /hello?name=redirected\r\n\r\n"),
        ("big-header", Some(n)) => big_header(number(n)),
        ("body", Some(n)) => body(number(n)),
        ("binary", None) => binary(),
        ("hop-by-hop", None) => hop_by_hop(),
        ("stderr", Some(n)) => stderr(number(n)),
        ("read", Some(path)) => read(path),
        ("ls", Some(path)) => ls(path),
        ("write", Some(path)) => write(path),
        ("stdin-ignore", None) => send(format!("{TEXT}ignored\n")),
        ("sleep", Some(ms)) => sleep(number(ms)),
        ("stream", Some(n)) => stream(number(n)),
        ("spin", None) => spin(),
        ("grow", Some(mib)) => grow(number(mib)),
        ("clock", None) => clock(),
        _ => send(format!("Status: 400 Bad Request\r\n{TEXT}unknown case\n")),
    }
}

fn exit_after_body(code: i32) -> ! {
    send(format!("{TEXT}partial\n"));
    std::process::exit(code)
}

fn trap_after_body() -> ! {
    send(format!("{TEXT}partial\n"));
    trap()
}

fn cookies() {
    send("Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\ncookies\n");
}

fn big_header(n: usize) {
    let mut response = b"Content-Type: text/plain\r\nX-Big: ".to_vec();
    response.resize(response.len() + n, b'a');
    response.extend_from_slice(b"\r\n\r\nbig\n");
    send(response);
}

/// `n` bytes where byte `i` is `i % 251`, in 64 KiB writes.
fn body(n: u64) {
    send(OCTETS);
    // One period of slack, so every chunk is a slice starting at `offset % 251`.
    let pattern: Vec<u8> = (0..CHUNK + 251).map(|i| (i % 251) as u8).collect();
    let mut offset = 0;
    while offset < n {
        let len = (n - offset).min(CHUNK as u64) as usize;
        let start = (offset % 251) as usize;
        send(&pattern[start..start + len]);
        offset += len as u64;
    }
}

fn binary() {
    let mut response = OCTETS.as_bytes().to_vec();
    response.extend(0..=255u8);
    send(response);
}

fn hop_by_hop() {
    send(
        "Content-Type: text/plain\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\
         X-Kept: yes\r\n\r\nhop\n",
    );
}

fn stderr(n: u64) {
    let lines: String = (0..n).map(|i| format!("stderr line {i}\n")).collect();
    // Whatever happens to stderr, the response still goes out.
    let _ = io::stderr().lock().write_all(lines.as_bytes());
    send(format!("{TEXT}stderr\n"));
}

fn read(path: &str) {
    match std::fs::read(path) {
        Ok(contents) => {
            let mut response = OCTETS.as_bytes().to_vec();
            response.extend_from_slice(&contents);
            send(response);
        }
        Err(e) => not_found(e),
    }
}

fn ls(path: &str) {
    let names = std::fs::read_dir(path).and_then(|dir| {
        dir.map(|entry| Ok(entry?.file_name()))
            .collect::<io::Result<Vec<_>>>()
    });
    match names {
        Ok(mut names) => {
            names.sort_by(|a, b| bytes(a).cmp(bytes(b)));
            let mut response = TEXT.as_bytes().to_vec();
            for name in &names {
                response.extend_from_slice(bytes(name));
                response.push(b'\n');
            }
            send(response);
        }
        Err(e) => not_found(e),
    }
}

fn write(path: &str) {
    match std::fs::write(path, b"x") {
        Ok(()) => send(format!("{TEXT}written\n")),
        Err(e) => send(format!("Status: 403 Forbidden\r\n{TEXT}{:?}\n", e.kind())),
    }
}

/// The header, then `n` lines 300 ms apart: a streamed response.
fn stream(n: u64) {
    send(TEXT);
    for i in 0..n {
        send(format!("line {i}\n"));
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    send(format!("{TEXT}slept\n"));
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates `mib` MiB and touches every 4 KiB of it. If the memory cannot be
/// had (a memory limit, or more than a 32-bit guest can address), it says so
/// on stderr and traps.
fn grow(mib: usize) {
    let mut memory = Vec::<u8>::new();
    if let Err(e) = memory.try_reserve_exact(mib.saturating_mul(1 << 20)) {
        eprintln!("grow: cannot allocate {mib} MiB: {e}");
        trap();
    }
    for byte in memory.spare_capacity_mut().iter_mut().step_by(4096) {
        byte.write(1);
    }
    std::hint::black_box(&mut memory);
    send(format!("{TEXT}grew\n"));
}

/// Realtime seconds since the epoch, then the nanoseconds between two reads of
/// the monotonic clock.
fn clock() {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let start = Instant::now();
    let elapsed = Instant::now().duration_since(start);
    send(format!(
        "{TEXT}{}\n{}\n",
        since_epoch.as_secs(),
        elapsed.as_nanos()
    ));
}

fn not_found(e: io::Error) {
    send(format!("Status: 404 Not Found\r\n{TEXT}{:?}\n", e.kind()));
}

fn number<T: FromStr>(arg: &str) -> T {
    arg.parse().unwrap_or_else(|_| bad_argument())
}

fn bad_argument() -> ! {
    send(format!("Status: 400 Bad Request\r\n{TEXT}bad argument\n"));
    std::process::exit(0)
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// Writes `data` to fd 1 at once, unbuffered. A failed write ends the run
/// with exit code 1.
fn send(data: impl AsRef<[u8]>) {
    // SAFETY: fd 1 stays open for the whole run, and ManuallyDrop keeps this
    // File from closing it.
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    if out.write_all(data.as_ref()).is_err() {
        std::process::exit(1);
    }
}

fn bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}
