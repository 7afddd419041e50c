//! hello: the smallest useful CGI guest.
//!
//! Prints `{greeting}, {name}!` where `greeting` is the `GREETING`
//! environment variable (default `Hello`) and `name` is the percent-decoded
//! `name` parameter of the query string (default `world`). The C version in
//! `examples/hello-c/hello.c` behaves the same byte for byte.

use std::env;
use std::io::{self, Write};

/// Longest name kept, in bytes after percent-decoding (the C version's bound).
const MAX_NAME: usize = 1024;

fn main() -> io::Result<()> {
    let greeting = env::var_os("GREETING")
        .filter(|g| !g.is_empty())
        .map(|g| g.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Hello".to_owned());
    let query = env::var_os("QUERY_STRING").unwrap_or_default();
    let name = param(query.as_encoded_bytes(), b"name")
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .unwrap_or_else(|| "world".to_owned());

    let response = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{greeting}, {name}!\n");
    let mut out = io::stdout().lock();
    out.write_all(response.as_bytes())?;
    out.flush()
}

/// The decoded value of the first `key` parameter of `query`, cut to
/// `MAX_NAME` bytes; `None` when there is none. A parameter without `=` has
/// an empty value.
fn param(query: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (decode(k, usize::MAX) == key).then(|| decode(v, MAX_NAME))
    })
}

/// Form-style percent-decoding: `+` is a space, `%XY` is the byte 0xXY, and a
/// `%` not followed by two hex digits stays as it is. Stops after `limit`
/// output bytes.
fn decode(s: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len().min(limit));
    let mut i = 0;
    while i < s.len() && out.len() < limit {
        let byte = match s[i] {
            b'+' => b' ',
            b'%' => match (hex_at(s, i + 1), hex_at(s, i + 2)) {
                (Some(hi), Some(lo)) => {
                    i += 2;
                    hi << 4 | lo
                }
                _ => b'%',
            },
            b => b,
        };
        out.push(byte);
        i += 1;
    }
    out
}

/// The value of the hex digit at `s[i]`, if there is one.
fn hex_at(s: &[u8], i: usize) -> Option<u8> {
    let c = *s.get(i)?;
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
