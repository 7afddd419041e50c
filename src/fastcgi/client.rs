//! The web server's side of one request (FastCGI 1.0 §5.1–§5.5): what
//! `wcgid status` speaks to the admin socket. Responses are read with the
//! same bounded `RecordReader` the responder uses.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::record::{RecordReader, put_record, put_stream};
use super::{Error, ROLE_RESPONDER, kind};

/// A response: its STDOUT bytes and END_REQUEST's two statuses.
#[derive(Debug)]
pub struct Response {
    pub stdout: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
}

/// Sends a request with `params` and no body on `io`, and reads its
/// response, keeping at most `max_stdout` bytes of it.
pub async fn request<S>(io: S, params: &[(&str, &str)], max_stdout: usize) -> Result<Response, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    const ID: u16 = 1;
    let mut out = BytesMut::new();
    let mut begin = [0u8; 8];
    begin[..2].copy_from_slice(&ROLE_RESPONDER.to_be_bytes());
    put_record(&mut out, kind::BEGIN_REQUEST, ID, &begin);
    let mut pairs = BytesMut::new();
    for (name, value) in params {
        super::params::put_pair(&mut pairs, name.as_bytes(), value.as_bytes());
    }
    put_stream(&mut out, kind::PARAMS, ID, &pairs);
    put_record(&mut out, kind::PARAMS, ID, &[]);
    put_record(&mut out, kind::STDIN, ID, &[]);
    let (r, mut w) = tokio::io::split(io);
    w.write_all(&out).await?;
    let mut records = RecordReader::new(r);
    let mut stdout = Vec::new();
    while let Some(record) = records.next().await? {
        match (record.kind, record.id) {
            (kind::STDOUT, ID) => {
                let room = max_stdout.saturating_sub(stdout.len());
                stdout.extend_from_slice(&record.content[..record.content.len().min(room)]);
            }
            (kind::STDERR, ID) => {}
            (kind::END_REQUEST, ID) if record.content.len() == 8 => {
                let c = &record.content;
                return Ok(Response {
                    stdout,
                    app_status: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    protocol_status: c[4],
                });
            }
            (kind, id) => return Err(Error::Unexpected { kind, id }),
        }
    }
    Err(Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the connection closed before END_REQUEST",
    )))
}
