//! Frames between the daemon and its worker processes, over a Unix stream
//! socket: a little-endian u32 length (of what follows), a kind byte, the
//! payload. Written by hand: a handful of fixed messages between two builds
//! of the same binary needs no serialization framework.

use std::io::{self, Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts: a body chunk, a response chunk,
/// or a job with PARAMS of up to 1 MiB.
pub const MAX_FRAME: usize = 4 << 20;

/// Worker to daemon: loaded and waiting for jobs.
pub const READY: u8 = 1;
/// Daemon to worker: a [`JobSpec`].
pub const JOB: u8 = 2;
/// Daemon to worker: bytes of the request body; [`BODY_END`] ends it.
pub const BODY: u8 = 3;
pub const BODY_END: u8 = 4;
/// Worker to daemon: response bytes ([`crate::fastcgi::Reply::Stdout`]).
pub const STDOUT: u8 = 5;
/// Worker to daemon: the end of the response: u32 appStatus, last bytes.
pub const END: u8 = 6;
/// Worker to daemon: the response breaks off (the guest trapped after its
/// headers): the connection is to close without END_REQUEST.
pub const CUT: u8 = 7;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {0} bytes, more than {MAX_FRAME}")]
    TooLarge(usize),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("unexpected frame kind {0}")]
    Unexpected(u8),
}

/// Which program a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The `[[app]]` of this name.
    App(String),
    /// A `[cgi_bin]` script, found from the meta-variables.
    CgiBin,
}

/// A request for a worker: everything but the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub id: u64,
    pub head_only: bool,
    pub target: Target,
    /// The meta-variables, name and value.
    pub vars: Vec<(Bytes, Bytes)>,
}

impl JobSpec {
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::new();
        out.put_u64_le(self.id);
        out.put_u8(u8::from(self.head_only));
        let name = match &self.target {
            Target::App(name) => {
                out.put_u8(0);
                name.as_bytes()
            }
            Target::CgiBin => {
                out.put_u8(1);
                &[]
            }
        };
        put_bytes(&mut out, name);
        out.put_u32_le(self.vars.len() as u32);
        for (name, value) in &self.vars {
            put_bytes(&mut out, name);
            put_bytes(&mut out, value);
        }
        out
    }

    pub fn decode(mut payload: Bytes) -> Result<JobSpec, Error> {
        let bad = Error::Malformed("job");
        if payload.remaining() < 10 {
            return Err(bad);
        }
        let id = payload.get_u64_le();
        let head_only = payload.get_u8() != 0;
        let kind = payload.get_u8();
        let name = take_bytes(&mut payload).ok_or(Error::Malformed("job"))?;
        let target = match kind {
            0 => Target::App(String::from_utf8(name.to_vec()).map_err(|_| Error::Malformed("job"))?),
            1 => Target::CgiBin,
            _ => return Err(bad),
        };
        if payload.remaining() < 4 {
            return Err(bad);
        }
        let count = payload.get_u32_le() as usize;
        let mut vars = Vec::with_capacity(count.min(payload.remaining() / 8));
        for _ in 0..count {
            let name = take_bytes(&mut payload).ok_or(Error::Malformed("job"))?;
            let value = take_bytes(&mut payload).ok_or(Error::Malformed("job"))?;
            vars.push((name, value));
        }
        Ok(JobSpec {
            id,
            head_only,
            target,
            vars,
        })
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32_le(bytes.len() as u32);
    out.put_slice(bytes);
}

fn take_bytes(payload: &mut Bytes) -> Option<Bytes> {
    if payload.remaining() < 4 {
        return None;
    }
    let len = payload.get_u32_le() as usize;
    (payload.remaining() >= len).then(|| payload.split_to(len))
}

/// The END payload: appStatus, then the last response bytes.
pub fn end_payload(app_status: u32, stdout: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(4 + stdout.len());
    out.put_u32_le(app_status);
    out.put_slice(stdout);
    out
}

pub fn decode_end(mut payload: Bytes) -> Result<(u32, Bytes), Error> {
    if payload.remaining() < 4 {
        return Err(Error::Malformed("end"));
    }
    Ok((payload.get_u32_le(), payload))
}

fn header(kind: u8, len: usize) -> Result<[u8; 5], Error> {
    let total = len + 1;
    if total > MAX_FRAME {
        return Err(Error::TooLarge(total));
    }
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&(total as u32).to_le_bytes());
    head[4] = kind;
    Ok(head)
}

fn check_len(head: [u8; 4]) -> Result<usize, Error> {
    let total = u32::from_le_bytes(head) as usize;
    match total {
        0 => Err(Error::Malformed("empty")),
        n if n > MAX_FRAME => Err(Error::TooLarge(n)),
        n => Ok(n - 1),
    }
}

/// Appends a frame to `out`, to be written with others in one go.
pub fn put_frame(out: &mut BytesMut, kind: u8, payload: &[u8]) -> Result<(), Error> {
    out.put_slice(&header(kind, payload.len())?);
    out.put_slice(payload);
    Ok(())
}

/// Blocking frames, for the worker: one `write` per frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> Result<(), Error> {
    let mut frame = BytesMut::with_capacity(5 + payload.len());
    put_frame(&mut frame, kind, payload)?;
    w.write_all(&frame)?;
    Ok(())
}

/// The next frame, or `None` at the end of the stream. `r` should be
/// buffered: a frame is read as a header and a payload.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(u8, Bytes)>, Error> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = check_len(head[..4].try_into().expect("4 bytes"))?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[4], payload.into())))
}

/// Async frames, for the daemon; `r` should be buffered as for
/// [`read_frame`].
pub async fn write_frames_async(w: &mut (impl AsyncWrite + Unpin), frames: &[u8]) -> Result<(), Error> {
    w.write_all(frames).await?;
    Ok(())
}

pub async fn read_frame_async(r: &mut (impl AsyncRead + Unpin)) -> Result<Option<(u8, Bytes)>, Error> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = check_len(head[..4].try_into().expect("4 bytes"))?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[4], payload.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip() {
        for target in [Target::App("hello".into()), Target::CgiBin] {
            let spec = JobSpec {
                id: 7,
                head_only: true,
                target,
                vars: vec![
                    (Bytes::from_static(b"A"), Bytes::from_static(b"\0\xff")),
                    (Bytes::new(), Bytes::new()),
                ],
            };
            assert_eq!(JobSpec::decode(spec.encode().freeze()).unwrap(), spec);
        }
    }

    #[test]
    fn malformed_jobs_are_errors_not_panics() {
        let spec = JobSpec {
            id: 1,
            head_only: false,
            target: Target::App("a".into()),
            vars: vec![(Bytes::from_static(b"N"), Bytes::from_static(b"v"))],
        }
        .encode()
        .freeze();
        for cut in 0..spec.len() {
            assert!(JobSpec::decode(spec.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut huge_count = BytesMut::from(&spec[..]);
        huge_count[15..19].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(JobSpec::decode(huge_count.freeze()).is_err());
    }

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let mut wire = Vec::new();
        write_frame(&mut wire, STDOUT, b"abc").unwrap();
        write_frame(&mut wire, END, &end_payload(3, b"z")).unwrap();
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some((STDOUT, Bytes::from_static(b"abc"))));
        let (kind, payload) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(
            (kind, decode_end(payload).unwrap()),
            (END, (3, Bytes::from_static(b"z")))
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let too_big = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_frame(&mut &[too_big[0], too_big[1], too_big[2], too_big[3], 1][..]),
            Err(Error::TooLarge(_))
        ));
        assert!(write_frame(&mut Vec::new(), BODY, &vec![0; MAX_FRAME]).is_err());
    }
}
