//! env: shows what the guest was given.
//!
//! The body is one `argv: ` line (the arguments joined by single spaces),
//! then every environment variable as `NAME=value`, sorted by name. Names and
//! values are written as raw bytes, so non-UTF-8 ones pass through untouched.

use std::ffi::OsStr;
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
#[cfg(target_os = "wasi")]
use std::os::wasi::ffi::OsStrExt;

fn main() -> io::Result<()> {
    let mut body = b"Content-Type: text/plain; charset=utf-8\r\n\r\nargv: ".to_vec();
    for (i, arg) in std::env::args_os().enumerate() {
        if i > 0 {
            body.push(b' ');
        }
        body.extend_from_slice(bytes(&arg));
    }
    body.push(b'\n');

    let mut vars: Vec<_> = std::env::vars_os().collect();
    vars.sort_by(|(a, _), (b, _)| bytes(a).cmp(bytes(b)));
    for (name, value) in &vars {
        body.extend_from_slice(bytes(name));
        body.push(b'=');
        body.extend_from_slice(bytes(value));
        body.push(b'\n');
    }

    let mut out = io::stdout().lock();
    out.write_all(&body)?;
    out.flush()
}

fn bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}
