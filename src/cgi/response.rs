//! The guest's stdout as a CGI response (RFC 3875 §6), rewritten for the web
//! server: a checked, CRLF-terminated header block, then the body byte for
//! byte.
//!
//! Header block rules:
//! - lines end in CRLF or a bare LF (§6.3.4 asks servers to accept both);
//! - each line is `name: value` with a token name (§6.3); a folded
//!   continuation line, a missing colon, or a control byte other than HTAB in
//!   a value makes the block invalid, as does an empty block (§6.2 requires
//!   at least one field) or one above [`MAX_HEAD`] bytes;
//! - `Status` (§6.3.3) must be a code from 200 to 599, optionally followed by
//!   a reason phrase (a missing one is supplied); a second `Status` is invalid;
//! - `Location` without `Status` is a redirect: both a client redirect
//!   (§6.2.3, an absolute URI) and a local redirect (§6.2.2, a path) are sent
//!   to the client as `302 Found`. wcgid does not re-dispatch local redirects
//!   internally; the browser follows the path on the same site instead;
//! - repeated fields are kept in order (two `Set-Cookie` stay two);
//! - hop-by-hop fields (`Connection`, `Keep-Alive`, `Transfer-Encoding`, `TE`,
//!   `Trailer`, `Upgrade`, `Proxy-Connection`) are dropped (§6.3.4: they belong
//!   to the server's connection, not the script's);
//! - the block always leaves with an explicit `Status` first.
//!
//! An invalid block, or output that ends before the block does, becomes a
//! `502 Bad Gateway` made by the gateway.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};

use crate::fastcgi::{Ending, Stdout};

/// The largest header block accepted from a guest.
pub const MAX_HEAD: usize = 64 * 1024;
/// Body bytes gathered before they are handed to the connection.
const FLUSH_AT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("no output")]
    NoOutput,
    #[error("output ended inside the header block")]
    Unterminated,
    #[error("header block larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("header block has no fields")]
    Empty,
    #[error("header line {0} is not a `name: value` field")]
    NotAField(usize),
    #[error("header line {0} has a control byte in its value")]
    BadValue(usize),
    #[error("Status is not a code from 200 to 599 with an optional reason")]
    BadStatus,
    #[error("more than one Status field")]
    TwoStatus,
}

const HOP_BY_HOP: [&[u8]; 7] = [
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-connection",
];

/// Checks the header block `block` (the bytes before the blank line) and
/// appends its normalized form, blank line included, to `out`. Returns the
/// response's status code.
pub fn normalize_head(block: &[u8], out: &mut BytesMut) -> Result<u16, HeadError> {
    let mut status: Option<(u16, &[u8])> = None;
    let mut location = false;
    let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
    let block = block.strip_suffix(b"\n").unwrap_or(block);
    if block.is_empty() {
        return Err(HeadError::Empty);
    }
    for (i, line) in block.split(|&b| b == b'\n').enumerate() {
        let number = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeadError::NotAField(number))?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::NotAField(number));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeadError::BadValue(number));
        }
        if name.eq_ignore_ascii_case(b"status") {
            if status.replace(parse_status(value)?).is_some() {
                return Err(HeadError::TwoStatus);
            }
        } else if !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            location |= name.eq_ignore_ascii_case(b"location") && !value.is_empty();
            fields.push((name, value));
        }
    }
    if fields.is_empty() && status.is_none() {
        return Err(HeadError::Empty);
    }
    let (code, reason) = match status {
        Some((code, reason)) if !reason.is_empty() => (code, reason),
        Some((code, _)) => (code, reason_phrase(code).as_bytes()),
        None if location => (302, &b"Found"[..]),
        None => (200, &b"OK"[..]),
    };
    out.put_slice(format!("Status: {code} ").as_bytes());
    out.put_slice(reason);
    out.put_slice(b"\r\n");
    for (name, value) in fields {
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    Ok(code)
}

fn parse_status(value: &[u8]) -> Result<(u16, &[u8]), HeadError> {
    let (code, reason) = match value.iter().position(|&b| b == b' ') {
        Some(sp) => (&value[..sp], trim(&value[sp + 1..])),
        None => (value, &b""[..]),
    };
    let code = std::str::from_utf8(code)
        .ok()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse().ok())
        .filter(|c| (200..=599).contains(c))
        .ok_or(HeadError::BadStatus)?;
    Ok((code, reason))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `tchar` of RFC 9110 §5.6.2: the bytes a field name may hold.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// A complete response made by the gateway itself.
pub fn error_page(code: u16) -> Bytes {
    let reason = reason_phrase(code);
    Bytes::from(format!(
        "Status: {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{code} {reason}\n"
    ))
}

enum State {
    /// Collecting the header block; `scanned` bytes hold no blank line.
    Head {
        buf: BytesMut,
        scanned: usize,
    },
    Body,
    Failed(HeadError),
}

/// Where the response goes: the connection's [`Stdout`] while serving.
pub trait Sink {
    /// Sends `data` on now. An error means nobody listens any more.
    fn send(&mut self, data: &[u8]) -> io::Result<()>;
}

impl Sink for Stdout {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        Stdout::send(self, data)
    }
}

/// Turns guest stdout into the response for the FastCGI connection.
pub struct ResponseWriter<S> {
    sink: S,
    state: State,
    pending: BytesMut,
    /// A HEAD request: the body is dropped (RFC 3875 §4.3.3).
    head_only: bool,
    /// The status of the header block, once it is parsed.
    status: Option<u16>,
    /// Bytes handed to the sink.
    sent: u64,
}

impl<S: Sink> ResponseWriter<S> {
    pub fn new(sink: S, head_only: bool) -> Self {
        ResponseWriter {
            sink,
            state: State::Head {
                buf: BytesMut::new(),
                scanned: 0,
            },
            pending: BytesMut::new(),
            head_only,
            status: None,
            sent: 0,
        }
    }

    /// The status of the header block, if it was parsed, the bytes sent so
    /// far and those pending: for the access log.
    pub fn summary(&self) -> (Option<u16>, u64, u64) {
        (self.status, self.sent, self.pending.len() as u64)
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.state {
            State::Body => {
                if !self.head_only {
                    self.pending.extend_from_slice(data);
                    if self.pending.len() >= FLUSH_AT {
                        self.flush()?;
                    }
                }
                Ok(())
            }
            State::Head { buf, scanned } => {
                buf.extend_from_slice(data);
                match find_blank_line(buf, *scanned) {
                    Some((block_end, _)) if block_end > MAX_HEAD => self.fail(HeadError::TooLarge),
                    Some((block_end, body_start)) => {
                        let mut head = std::mem::take(buf);
                        let body = head.split_off(body_start);
                        match normalize_head(&head[..block_end], &mut self.pending) {
                            Ok(code) => {
                                self.status = Some(code);
                                self.state = State::Body;
                                self.write(&body)
                            }
                            Err(e) => self.fail(e),
                        }
                    }
                    None if buf.len() > MAX_HEAD => self.fail(HeadError::TooLarge),
                    None => {
                        *scanned = buf.len().saturating_sub(2);
                        Ok(())
                    }
                }
            }
            State::Failed(_) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn fail(&mut self, e: HeadError) -> io::Result<()> {
        self.state = State::Failed(e);
        Err(io::ErrorKind::BrokenPipe.into())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() || !matches!(self.state, State::Body) {
            return Ok(());
        }
        let sent = self.sink.send(&self.pending);
        self.sent += self.pending.len() as u64;
        self.pending.clear();
        sent
    }

    /// Why no valid header block was sent, if none was.
    pub fn head_error(&self) -> Option<HeadError> {
        match &self.state {
            State::Body => None,
            State::Head { buf, .. } if buf.is_empty() => Some(HeadError::NoOutput),
            State::Head { .. } => Some(HeadError::Unterminated),
            State::Failed(e) => Some(e.clone()),
        }
    }

    /// Ends the request with `app_status`; what is left goes with the end.
    pub fn end(mut self, app_status: u32) -> Ending {
        Ending::Complete {
            tail: self.pending.split().freeze(),
            app_status,
        }
    }

    /// Sends what is left, then breaks the response off (see [`Ending::Cut`]).
    pub fn cut(mut self) -> Ending {
        let _ = self.flush();
        Ending::Cut
    }

    /// Replaces whatever the guest wrote with the gateway's own page. Only
    /// valid while no header block has gone out.
    pub fn end_with_error(self, code: u16, app_status: u32) -> Ending {
        debug_assert!(self.head_error().is_some());
        Ending::Complete {
            tail: error_page(code),
            app_status,
        }
    }
}

/// Finds the blank line ending a header block in `buf`, looking from
/// `from`: returns where the block ends (after its last line's LF) and where
/// the body starts.
fn find_blank_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    // A blank first line: an empty block (the parser rejects it).
    if buf.starts_with(b"\n") {
        return Some((0, 1));
    }
    if buf.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    let mut i = from;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let lf = i + off;
        match &buf[lf + 1..] {
            [b'\n', ..] => return Some((lf + 1, lf + 2)),
            [b'\r', b'\n', ..] => return Some((lf + 1, lf + 3)),
            _ => i = lf + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(block: &[u8]) -> Result<String, HeadError> {
        let mut out = BytesMut::new();
        normalize_head(block, &mut out)?;
        Ok(String::from_utf8(out.to_vec()).unwrap())
    }

    #[test]
    fn document_response_gets_an_explicit_status() {
        assert_eq!(
            norm(b"Content-Type: text/plain\r\n").unwrap(),
            "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"
        );
    }

    #[test]
    fn lf_only_and_mixed_endings_become_crlf() {
        assert_eq!(
            norm(b"Content-Type: text/plain\nX-A:  b \r\n").unwrap(),
            "Status: 200 OK\r\nContent-Type: text/plain\r\nX-A: b\r\n\r\n"
        );
    }

    #[test]
    fn status_rules() {
        assert_eq!(
            norm(b"Status: 404 Not Found\nContent-Type: text/plain\n").unwrap(),
            "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n"
        );
        assert!(
            norm(b"Status: 418\n")
                .unwrap()
                .starts_with("Status: 418 I'm a teapot\r\n")
        );
        for bad in [
            &b"Status: abc\n"[..],
            b"Status: 99\n",
            b"Status: 1000\n",
            b"Status: 600\n",
            b"Status:\n",
            b"Status: 20x\n",
        ] {
            assert_eq!(norm(bad), Err(HeadError::BadStatus), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(norm(b"Status: 200\nStatus: 404\n"), Err(HeadError::TwoStatus));
    }

    #[test]
    fn redirects_become_302() {
        assert_eq!(
            norm(b"Location: http://x/y\n").unwrap(),
            "Status: 302 Found\r\nLocation: http://x/y\r\n\r\n"
        );
        assert_eq!(
            norm(b"Location: /local?q\n").unwrap(),
            "Status: 302 Found\r\nLocation: /local?q\r\n\r\n"
        );
        // Redirect with document: the script's Status stands.
        assert!(
            norm(b"Status: 301 Moved\nLocation: /a\nContent-Type: text/html\n")
                .unwrap()
                .starts_with("Status: 301 Moved\r\n")
        );
    }

    #[test]
    fn repeated_fields_kept_and_hop_by_hop_dropped() {
        assert_eq!(
            norm(b"Set-Cookie: a=1\nConnection: close\nSet-Cookie: b=2\ntransfer-encoding: chunked\n").unwrap(),
            "Status: 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
        );
    }

    #[test]
    fn garbled_blocks_are_rejected() {
        assert_eq!(norm(b"this is not a header\n"), Err(HeadError::NotAField(1)));
        assert_eq!(norm(b"A: b\n continued\n"), Err(HeadError::NotAField(2)));
        assert_eq!(norm(b"Bad Name: x\n"), Err(HeadError::NotAField(1)));
        assert_eq!(norm(b": x\n"), Err(HeadError::NotAField(1)));
        assert_eq!(norm(b"A: b\0c\n"), Err(HeadError::BadValue(1)));
        assert_eq!(norm(b"A: b\rc\n"), Err(HeadError::BadValue(1)));
        assert_eq!(norm(b""), Err(HeadError::Empty));
        // An NPH script's status line is no CGI header field (FastCGI 1.0
        // §6.1 has no NPH): 502, conformance.md #49.
        assert_eq!(
            norm(b"HTTP/1.1 200 OK\nContent-Type: text/plain\n"),
            Err(HeadError::NotAField(1))
        );
    }

    /// A Content-Length the guest writes passes as written, right or wrong:
    /// the web server holds the body to it (conformance.md #55).
    #[test]
    fn content_length_passes_as_written() {
        let head = norm(b"Content-Type: text/plain\nContent-Length: 999\n").unwrap();
        assert!(head.contains("Content-Length: 999\r\n"), "{head:?}");
    }

    /// Collects what is sent.
    #[derive(Default)]
    struct Collect(Vec<u8>);

    impl Sink for &mut Collect {
        fn send(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }
    }

    fn run_writer(chunks: &[&[u8]], head_only: bool) -> (Vec<u8>, Option<HeadError>) {
        let mut sent = Collect::default();
        let mut w = ResponseWriter::new(&mut sent, head_only);
        for c in chunks {
            let _ = w.write(c);
        }
        let err = w.head_error();
        let tail = match err {
            None => match w.end(0) {
                Ending::Complete { tail, .. } => tail,
                Ending::Cut => unreachable!(),
            },
            Some(_) => Bytes::new(),
        };
        let mut out = sent.0;
        out.extend_from_slice(&tail);
        (out, err)
    }

    #[test]
    fn head_split_across_writes_and_body_passes_byte_exact() {
        let body: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let mut chunks: Vec<&[u8]> = vec![b"Content-Type: a/b\r", b"\n", b"\r", b"\nxy"];
        chunks.extend(body.chunks(7000));
        let (out, err) = run_writer(&chunks, false);
        assert_eq!(err, None);
        let mut want = b"Status: 200 OK\r\nContent-Type: a/b\r\n\r\nxy".to_vec();
        want.extend_from_slice(&body);
        assert_eq!(out, want);
    }

    #[test]
    fn every_split_point_of_a_small_response_gives_the_same_bytes() {
        let response = b"Content-Type: t\nX: y\n\nbody";
        for cut in 0..response.len() {
            let (out, err) = run_writer(&[&response[..cut], &response[cut..]], false);
            assert_eq!(err, None, "cut {cut}");
            assert_eq!(
                out, b"Status: 200 OK\r\nContent-Type: t\r\nX: y\r\n\r\nbody",
                "cut {cut}"
            );
        }
    }

    #[test]
    fn head_requests_drop_the_body() {
        let (out, _) = run_writer(&[b"Content-Type: t\n\nbody"], true);
        assert_eq!(out, b"Status: 200 OK\r\nContent-Type: t\r\n\r\n");
    }

    #[test]
    fn failures_are_reported() {
        assert_eq!(run_writer(&[], false).1, Some(HeadError::NoOutput));
        assert_eq!(
            run_writer(&[b"Content-Type: t\r\n"], false).1,
            Some(HeadError::Unterminated)
        );
        assert_eq!(run_writer(&[b"\r\nbody"], false).1, Some(HeadError::Empty));
        assert_eq!(
            run_writer(&[&vec![b'a'; MAX_HEAD + 10]], false).1,
            Some(HeadError::TooLarge)
        );
        let big = format!("X: {}\n", "a".repeat(70_000));
        assert_eq!(run_writer(&[big.as_bytes(), b"\n"], false).1, Some(HeadError::TooLarge));
        let big = format!("X: {}\n\nbody", "a".repeat(70_000));
        assert_eq!(run_writer(&[big.as_bytes()], false).1, Some(HeadError::TooLarge));
    }
}
