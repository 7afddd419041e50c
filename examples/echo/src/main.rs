//! echo: sends the request body back, byte for byte.
//!
//! The headers go out before any of the body is read, then the body is
//! streamed through a 64 KiB buffer, so memory stays constant however big the
//! body is. With a valid `CONTENT_LENGTH` the response carries the same
//! `Content-Length` and copies at most that many bytes; without one it copies
//! until end of input.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

const CHUNK: usize = 64 * 1024;

fn main() -> io::Result<()> {
    let length = std::env::var("CONTENT_LENGTH")
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());

    let mut out = raw_fd(1);
    let mut head = String::from("Content-Type: application/octet-stream\r\n");
    if let Some(n) = length {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;

    let mut input = raw_fd(0);
    let mut buf = vec![0; CHUNK];
    let mut left = length.unwrap_or(u64::MAX);
    while left > 0 {
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let n = match input.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Standard input (0) or output (1) without std's buffering, so each chunk is
/// one read and one write.
fn raw_fd(fd: i32) -> ManuallyDrop<File> {
    // SAFETY: fds 0 and 1 stay open for the whole run, and ManuallyDrop keeps
    // this File from closing them.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}
