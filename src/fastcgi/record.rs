//! Record framing (FastCGI 1.0 §3.3): an 8-byte header, up to 65535 content
//! bytes and up to 255 padding bytes.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Error;

pub const HEADER_LEN: usize = 8;
const VERSION_1: u8 = 1;
/// The largest output chunk that is a multiple of 8, so full records need no
/// padding (§3.3 recommends 8-byte alignment).
const MAX_OUT_CHUNK: usize = 0xfff8;
/// Read-buffer capacity of an idle connection; it grows to one whole record
/// (at most 8 + 65535 + 255 bytes) only while a large record arrives.
const INITIAL_READ_CAPACITY: usize = 4096;

/// One decoded record: padding stripped, content shared with the read buffer.
#[derive(Debug)]
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Bytes,
}

/// Reads records from a byte stream. Its only buffer holds at most one record,
/// so a peer cannot make it allocate more than 65798 bytes.
pub struct RecordReader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> RecordReader<R> {
    pub fn new(io: R) -> Self {
        RecordReader {
            io,
            buf: BytesMut::with_capacity(INITIAL_READ_CAPACITY),
        }
    }

    /// The next record, or `None` when the peer closed between records.
    ///
    /// Cancel-safe: bytes already read stay in the buffer, so this can be a
    /// branch of `tokio::select!`.
    pub async fn next(&mut self) -> Result<Option<Record>, Error> {
        loop {
            if let Some(record) = self.parse()? {
                return Ok(Some(record));
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::TruncatedRecord)
                };
            }
        }
    }

    /// Whether bytes the peer sent are waiting, unread.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The bytes read but not yet parsed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    #[cfg(test)]
    pub fn io_mut(&mut self) -> &mut R {
        &mut self.io
    }

    fn parse(&mut self) -> Result<Option<Record>, Error> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        if header[0] != VERSION_1 {
            return Err(Error::Version(header[0]));
        }
        let kind = header[1];
        let id = u16::from_be_bytes([header[2], header[3]]);
        let content_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let total = HEADER_LEN + content_len + usize::from(header[6]);
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut record = self.buf.split_to(total);
        let _header = record.split_to(HEADER_LEN);
        record.truncate(content_len);
        Ok(Some(Record {
            kind,
            id,
            content: record.freeze(),
        }))
    }
}

/// Walks the whole records at the start of `bytes`: whether one of them is
/// an FCGI_ABORT_REQUEST (§5.4) for request `id`, and where the records
/// walked end (where a record cut short, if any, starts).
pub fn scan_for_abort(bytes: &[u8], id: u16) -> (bool, usize) {
    let mut at = 0;
    while let Some(header) = bytes[at..].first_chunk::<HEADER_LEN>() {
        let total = HEADER_LEN + usize::from(u16::from_be_bytes([header[4], header[5]])) + usize::from(header[6]);
        if bytes.len() - at < total {
            break;
        }
        if header[1] == super::kind::ABORT_REQUEST && u16::from_be_bytes([header[2], header[3]]) == id {
            return (true, at);
        }
        at += total;
    }
    (false, at)
}

/// Walks the whole records at the start of `bytes`: if they begin with a
/// BEGIN_REQUEST and hold that request's whole input (up to its empty STDIN
/// record, §5.3), its id and where its records end.
pub fn complete_request(bytes: &[u8]) -> Option<(u16, usize)> {
    let mut at = 0;
    let mut id = None;
    while let Some(header) = bytes[at..].first_chunk::<HEADER_LEN>() {
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let total = HEADER_LEN + len + usize::from(header[6]);
        if bytes.len() - at < total {
            return None;
        }
        let (kind, this) = (header[1], u16::from_be_bytes([header[2], header[3]]));
        match id {
            None if kind == super::kind::BEGIN_REQUEST && this != 0 => id = Some(this),
            None => return None,
            Some(id) if this == id && kind == super::kind::STDIN && len == 0 => return Some((id, at + total)),
            Some(_) => {}
        }
        at += total;
    }
    None
}

/// Appends one record with `content` (at most 65535 bytes), padded to a
/// multiple of 8 bytes.
pub fn put_record(out: &mut BytesMut, kind: u8, id: u16, content: &[u8]) {
    let len = u16::try_from(content.len()).expect("callers pass at most 65535 bytes");
    let padding = (8 - content.len() % 8) % 8;
    out.reserve(HEADER_LEN + content.len() + padding);
    out.put_u8(VERSION_1);
    out.put_u8(kind);
    out.put_u16(id);
    out.put_u16(len);
    out.put_u8(padding as u8);
    out.put_u8(0);
    out.put_slice(content);
    out.put_bytes(0, padding);
}

/// Appends `data` as a stream of records of at most 65528 content bytes each.
/// Empty data appends nothing: the empty record ends a stream (§3.3) and is
/// written on purpose with [`put_record`].
pub fn put_stream(out: &mut BytesMut, kind: u8, id: u16, data: &[u8]) {
    for chunk in data.chunks(MAX_OUT_CHUNK) {
        put_record(out, kind, id, chunk);
    }
}

/// The end of a response: the last of its STDOUT, the empty STDOUT record
/// that ends the stream (§5.3), and END_REQUEST (§5.5).
pub fn put_response_end(out: &mut BytesMut, id: u16, stdout: &[u8], app_status: u32, protocol_status: u8) {
    put_stream(out, super::kind::STDOUT, id, stdout);
    put_record(out, super::kind::STDOUT, id, &[]);
    put_end_request(out, id, app_status, protocol_status);
}

/// FCGI_END_REQUEST (§5.5).
pub fn put_end_request(out: &mut BytesMut, id: u16, app_status: u32, protocol_status: u8) {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&app_status.to_be_bytes());
    body[4] = protocol_status;
    put_record(out, super::kind::END_REQUEST, id, &body);
}

/// FCGI_UNKNOWN_TYPE (§4.2).
pub fn put_unknown_type(out: &mut BytesMut, kind: u8) {
    put_record(out, super::kind::UNKNOWN_TYPE, 0, &[kind, 0, 0, 0, 0, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, id: u16, len: u16, pad: u8) -> Vec<u8> {
        let [l1, l0] = len.to_be_bytes();
        let [i1, i0] = id.to_be_bytes();
        vec![1, kind, i1, i0, l1, l0, pad, 0]
    }

    async fn read_all(bytes: Vec<u8>) -> Result<Vec<Record>, Error> {
        let mut reader = RecordReader::new(&bytes[..]);
        let mut out = Vec::new();
        while let Some(r) = reader.next().await? {
            out.push(r);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn strips_padding_and_keeps_content() {
        let mut bytes = header(5, 7, 3, 5);
        bytes.extend_from_slice(b"abc\0\0\0\0\0");
        bytes.extend(header(5, 7, 0, 255));
        bytes.extend([0u8; 255]);
        let records = read_all(bytes).await.unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].kind, records[0].id), (5, 7));
        assert_eq!(&records[0].content[..], b"abc");
        assert!(records[1].content.is_empty());
    }

    #[tokio::test]
    async fn rejects_other_versions() {
        let mut bytes = header(1, 1, 0, 0);
        bytes[0] = 2;
        assert!(matches!(read_all(bytes).await, Err(Error::Version(2))));
    }

    #[test]
    fn a_complete_request_is_found_only_whole_and_from_its_begin() {
        let mut request = BytesMut::new();
        put_record(
            &mut request,
            super::super::kind::BEGIN_REQUEST,
            7,
            &[0, 1, 0, 0, 0, 0, 0, 0],
        );
        put_record(&mut request, super::super::kind::PARAMS, 7, b"\x01\x01ab");
        put_record(&mut request, super::super::kind::PARAMS, 7, &[]);
        put_record(&mut request, super::super::kind::STDIN, 7, b"body");
        let before_end = request.len();
        put_record(&mut request, super::super::kind::STDIN, 7, &[]);
        assert_eq!(complete_request(&request), Some((7, request.len())));
        assert_eq!(complete_request(&request[..before_end]), None);
        assert_eq!(complete_request(&request[..request.len() - 1]), None);
        // Not from a BEGIN_REQUEST: not a request we can tell the start of.
        assert_eq!(complete_request(&request[16..]), None);
    }

    #[tokio::test]
    async fn eof_inside_a_record_is_an_error() {
        let mut bytes = header(5, 1, 10, 0);
        bytes.extend_from_slice(b"short");
        assert!(matches!(read_all(bytes).await, Err(Error::TruncatedRecord)));
        assert!(matches!(read_all(vec![1, 5, 0]).await, Err(Error::TruncatedRecord)));
    }

    #[test]
    fn output_is_aligned_and_split() {
        let mut out = BytesMut::new();
        put_stream(&mut out, 6, 1, &vec![7u8; 70_000]);
        // 65528 + 4472 content bytes: two records, the second padded to 4472 (aligned already).
        assert_eq!(&out[..8], &[1, 6, 0, 1, 0xff, 0xf8, 0, 0]);
        let second = &out[8 + 0xfff8..];
        assert_eq!(&second[..8], &[1, 6, 0, 1, 0x11, 0x78, 0, 0]);
        assert_eq!(out.len() % 8, 0);
        let mut out = BytesMut::new();
        put_record(&mut out, 6, 1, b"abc");
        assert_eq!(out.len(), 16);
        assert_eq!(out[6], 5);
    }
}
