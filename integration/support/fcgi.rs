//! A raw FastCGI 1.0 client: records built byte by byte, so a test sends
//! exactly what a web server (or a hostile peer) would, and sees every record
//! that comes back.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::poll;

/// Record types (FastCGI 1.0 §8).
pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const DATA: u8 = 8;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

pub const RESPONDER: u16 = 1;
pub const AUTHORIZER: u16 = 2;
pub const FILTER: u16 = 3;
pub const KEEP_CONN: u8 = 1;

/// protocolStatus of END_REQUEST (§5.5).
pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const OVERLOADED: u8 = 2;
pub const UNKNOWN_ROLE: u8 = 3;

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Conn::wait_read`] waits for the daemon to read what was sent.
const READ_WITHIN: Duration = Duration::from_secs(10);

/// One record with `padding` zero bytes after its content.
pub fn record_padded(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
    let len = u16::try_from(content.len()).expect("content fits a record");
    let mut out = vec![1, kind];
    out.extend(id.to_be_bytes());
    out.extend(len.to_be_bytes());
    out.extend([padding, 0]);
    out.extend_from_slice(content);
    out.resize(out.len() + usize::from(padding), 0);
    out
}

pub fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    record_padded(kind, id, content, 0)
}

/// `data` as records of at most 65535 bytes, without the empty record that
/// ends a stream.
pub fn stream(kind: u8, id: u16, data: &[u8]) -> Vec<u8> {
    data.chunks(0xffff).flat_map(|c| record(kind, id, c)).collect()
}

pub fn begin(id: u16, role: u16, flags: u8) -> Vec<u8> {
    let [r1, r0] = role.to_be_bytes();
    record(BEGIN_REQUEST, id, &[r1, r0, flags, 0, 0, 0, 0, 0])
}

/// A name-value length (§3.4): one byte below 128 unless `long`, else four.
fn put_len(out: &mut Vec<u8>, len: usize, long: bool) {
    if len < 128 && !long {
        out.push(len as u8);
    } else {
        out.extend((u32::try_from(len).expect("length under 2 GiB") | 0x8000_0000).to_be_bytes());
    }
}

/// One encoded name-value pair; `long` forces 4-byte lengths.
pub fn pair(name: &[u8], value: &[u8], long: bool) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, name.len(), long);
    put_len(&mut out, value.len(), long);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    out
}

/// An ordered list of params, duplicates allowed.
#[derive(Clone, Default)]
pub struct Params(Vec<(Vec<u8>, Vec<u8>)>);

impl Params {
    /// What nginx sends for `METHOD SCRIPT_NAME?QUERY`.
    pub fn cgi(method: &str, script_name: &str, query: &str) -> Params {
        Params::default()
            .with("GATEWAY_INTERFACE", "CGI/1.1")
            .with("REQUEST_METHOD", method)
            .with("SCRIPT_NAME", script_name)
            .with("QUERY_STRING", query)
            .with("REQUEST_URI", format!("{script_name}?{query}"))
            .with("SERVER_PROTOCOL", "HTTP/1.1")
            .with("SERVER_NAME", "localhost")
            .with("SERVER_PORT", "80")
            .with("REMOTE_ADDR", "127.0.0.1")
    }

    /// GET `script_name?query`.
    pub fn get(script_name: &str, query: &str) -> Params {
        Params::cgi("GET", script_name, query)
    }

    pub fn with(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Params {
        self.0.push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Drops every pair called `name`.
    pub fn without(mut self, name: &str) -> Params {
        self.0.retain(|(n, _)| n != name.as_bytes());
        self
    }

    /// The PARAMS stream's bytes (short lengths where they fit).
    pub fn encode(&self) -> Vec<u8> {
        self.0.iter().flat_map(|(n, v)| pair(n, v, false)).collect()
    }
}

/// A whole request: BEGIN_REQUEST, the PARAMS stream, the STDIN stream, each
/// stream ended by its empty record.
pub fn request(id: u16, flags: u8, params: &Params, stdin: &[u8]) -> Vec<u8> {
    let mut out = begin(id, RESPONDER, flags);
    out.extend(stream(PARAMS, id, &params.encode()));
    out.extend(record(PARAMS, id, b""));
    out.extend(stream(STDIN, id, stdin));
    out.extend(record(STDIN, id, b""));
    out
}

#[derive(Debug)]
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
    pub padding: usize,
}

/// END_REQUEST's body (§5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Record {
    pub fn end(&self) -> End {
        assert_eq!(self.kind, END_REQUEST, "not an END_REQUEST: {self:?}");
        assert_eq!(self.content.len(), 8, "END_REQUEST body: {self:?}");
        let c = &self.content;
        End {
            app_status: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            protocol_status: c[4],
        }
    }
}

/// Everything one request got back.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Every record, END_REQUEST included.
    pub records: Vec<Record>,
    pub stdout: Vec<u8>,
    pub end: Option<End>,
    /// The connection closed before END_REQUEST.
    pub closed: bool,
}

impl Exchange {
    /// The STDOUT stream as a CGI response.
    pub fn cgi(&self) -> CgiResponse {
        CgiResponse::parse(&self.stdout)
    }

    /// END_REQUEST, which must have come.
    pub fn ended(&self) -> End {
        self.end
            .unwrap_or_else(|| panic!("no END_REQUEST; got {:?}", self.summary()))
    }

    /// The records' kinds and lengths, and the start of STDOUT, for messages.
    pub fn summary(&self) -> String {
        let kinds: Vec<_> = self.records.iter().map(|r| (r.kind, r.id, r.content.len())).collect();
        let head = String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(300)]).into_owned();
        format!(
            "records (kind, id, len) {kinds:?}, closed {}, stdout {head:?}",
            self.closed
        )
    }
}

/// The daemon's STDOUT: a `Status:` line first, then the other fields, a
/// blank line and the body.
#[derive(Debug)]
pub struct CgiResponse {
    pub status: u16,
    /// The head as sent, blank line included.
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CgiResponse {
    pub fn parse(stdout: &[u8]) -> CgiResponse {
        let end = stdout
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no CRLF CRLF in STDOUT {:?}", String::from_utf8_lossy(stdout)));
        let head = String::from_utf8_lossy(&stdout[..end + 4]).into_owned();
        let headers: Vec<(String, String)> = head[..end]
            .split("\r\n")
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap_or_else(|| panic!("bad header line {l:?}"));
                (n.to_owned(), v.to_owned())
            })
            .collect();
        let status = headers
            .iter()
            .find(|(n, _)| n == "Status")
            .and_then(|(_, v)| v.get(..3)?.parse().ok())
            .unwrap_or_else(|| panic!("no Status in {head:?}"));
        CgiResponse {
            status,
            head,
            headers,
            body: stdout[end + 4..].to_vec(),
        }
    }

    /// The first field called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a read found on a connection that should have nothing more to say.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    /// EOF (or a reset): the peer closed.
    Closed,
    /// Nothing within the wait: still open.
    Open,
    /// Bytes arrived.
    Data(Vec<u8>),
}

pub struct Conn {
    stream: UnixStream,
}

impl Conn {
    pub fn connect(socket: &Path) -> Conn {
        Conn::try_connect(socket).unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()))
    }

    /// Like [`Conn::connect`], but the error is the caller's to judge.
    pub fn try_connect(socket: &Path) -> io::Result<Conn> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        Ok(Conn { stream })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to wcgid");
    }

    /// How long a read may wait before it fails the test.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).expect("set timeout");
    }

    /// A second handle on the socket, to write from another thread while
    /// this one reads.
    pub fn writer(&self) -> UnixStream {
        self.stream.try_clone().expect("clone the socket")
    }

    /// Like [`Conn::send`], but the error is the caller's to judge.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next record; `None` at EOF between records. Panics on a timeout
    /// or on EOF inside a record.
    pub fn read_record(&mut self) -> Option<Record> {
        let mut header = [0u8; 8];
        let mut got = 0;
        while got < 8 {
            match self.stream.read(&mut header[got..]) {
                Ok(0) if got == 0 => return None,
                Ok(0) => panic!("EOF inside a record header"),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && got == 0 => return None,
                Err(e) => panic!("reading a record: {e}"),
            }
        }
        assert_eq!(header[0], 1, "record version in {header:?}");
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let padding = usize::from(header[6]);
        let mut body = vec![0; len + padding];
        self.stream.read_exact(&mut body).expect("record content");
        body.truncate(len);
        Some(Record {
            kind: header[1],
            id: u16::from_be_bytes([header[2], header[3]]),
            content: body,
            padding,
        })
    }

    /// Reads records until the END_REQUEST of request `id`, or EOF.
    pub fn response(&mut self, id: u16) -> Exchange {
        let mut ex = Exchange::default();
        loop {
            let Some(rec) = self.read_record() else {
                ex.closed = true;
                return ex;
            };
            if rec.kind == STDOUT && rec.id == id {
                ex.stdout.extend_from_slice(&rec.content);
            }
            let end = (rec.kind == END_REQUEST && rec.id == id).then(|| rec.end());
            ex.records.push(rec);
            if end.is_some() {
                ex.end = end;
                return ex;
            }
        }
    }

    /// Sends a whole request and reads its response.
    pub fn exchange(&mut self, id: u16, flags: u8, params: &Params, stdin: &[u8]) -> Exchange {
        self.send(&request(id, flags, params, stdin));
        self.response(id)
    }

    /// Bytes sent that the daemon has not read yet.
    fn unread(&self) -> usize {
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer,
        // which points at one, to the socket's unread bytes; the fd is open
        // while `self` lives. (No safe wrapper exists in nix or libc.)
        #[allow(unsafe_code)]
        let r = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        assert_eq!(r, 0, "SIOCOUTQ: {}", io::Error::last_os_error());
        queued as usize
    }

    /// Waits until the daemon has read everything sent. A worker reads a
    /// request and runs its guest with no other read between, and reads
    /// nothing while the guest runs: once a whole request is read, its guest
    /// runs (or has run). Panics after [`READ_WITHIN`].
    pub fn wait_read(&self) {
        let read = poll(READ_WITHIN, || (self.unread() == 0).then_some(()));
        assert!(
            read.is_some(),
            "{} bytes still unread by the daemon after {READ_WITHIN:?}",
            self.unread()
        );
    }

    /// Reads with a `wait` timeout: did the peer close, stay silent or talk?
    pub fn state(&mut self, wait: Duration) -> State {
        self.stream.set_read_timeout(Some(wait)).expect("set timeout");
        let mut buf = [0u8; 4096];
        let state = match self.stream.read(&mut buf) {
            Ok(0) => State::Closed,
            Ok(n) => State::Data(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => State::Open,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => State::Closed,
            Err(e) => panic!("reading: {e}"),
        };
        self.stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
        state
    }
}

/// Splits bytes read from a connection into records; a partial record at
/// the end is an error.
pub fn parse_records(mut bytes: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header = bytes.get(..8).ok_or("partial record header")?;
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let padding = usize::from(header[6]);
        let content = bytes.get(8..8 + len).ok_or("partial record content")?;
        out.push(Record {
            kind: header[1],
            id: u16::from_be_bytes([header[2], header[3]]),
            content: content.to_vec(),
            padding,
        });
        bytes = bytes.get(8 + len + padding..).ok_or("partial record padding")?;
    }
    Ok(out)
}

/// Decodes a name-value stream (GET_VALUES_RESULT).
pub fn decode_pairs(mut data: &[u8]) -> Vec<(String, String)> {
    fn len(data: &mut &[u8]) -> usize {
        if data[0] < 0x80 {
            let l = usize::from(data[0]);
            *data = &data[1..];
            l
        } else {
            let l = u32::from_be_bytes([data[0] & 0x7f, data[1], data[2], data[3]]) as usize;
            *data = &data[4..];
            l
        }
    }
    let mut out = Vec::new();
    while !data.is_empty() {
        let (n, v) = (len(&mut data), len(&mut data));
        let name = String::from_utf8_lossy(&data[..n]).into_owned();
        let value = String::from_utf8_lossy(&data[n..n + v]).into_owned();
        data = &data[n + v..];
        out.push((name, value));
    }
    out
}
