//! A minimal HTTP/1.0 client over `std::net::TcpStream`: one request per
//! connection (`Connection: close`), the response read to EOF, headers kept as
//! a list so repeated fields stay repeated.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every field called `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to 127.0.0.1:`port` and reads the whole response. The
/// body is written from its own thread, so a server that answers before it has
/// read everything cannot deadlock the client.
pub fn send(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = format!("{method} {target} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    std::thread::scope(|s| {
        let mut writer = stream.try_clone()?;
        let written = s.spawn(move || writer.write_all(body));
        let read = (&stream).read_to_end(&mut raw);
        // A write error after a complete response (the server refused the
        // body early) is not the client's problem.
        let written = written.join().expect("writer thread");
        read.map(drop)
            .or_else(|e| if raw.is_empty() { Err(e) } else { Ok(()) })?;
        written.or_else(|e| if raw.is_empty() { Err(e) } else { Ok(()) })
    })?;
    parse(&raw).map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {:?}", String::from_utf8_lossy(raw)))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header {line:?}"))?;
            Ok((name.to_owned(), value.trim().to_owned()))
        })
        .collect::<Result<_, String>>()?;
    Ok(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// GET `target` from nginx on `port`; panics on I/O errors.
pub fn get(port: u16, target: &str) -> Response {
    request(port, "GET", target, &[], b"")
}

/// Any request; panics on I/O errors, naming the request.
pub fn request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    send(port, method, target, headers, body).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}
