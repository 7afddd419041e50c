//! One FastCGI connection: the responder state machine of FastCGI 1.0 §5–§6.
//!
//! A connection carries one request at a time. STDIN flows to the handler
//! through a bounded channel: when it is full the connection stops reading
//! the socket, so the web server waits instead of the daemon buffering the
//! body. Replies flow back through a bounded channel the same way.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::params::{Params, put_pair};
use super::record::{Record, RecordReader, put_end_request, put_record, put_stream, put_unknown_type};
use super::{Error, KEEP_CONN, ROLE_RESPONDER, kind, status};

/// STDIN records queued for a handler before the connection stops reading.
const STDIN_QUEUE: usize = 8;
/// Reply bytes gathered into one write before it is issued.
const WRITE_BATCH: usize = 256 * 1024;
/// How long a closing connection waits for the peer's remaining bytes, so that
/// closing with unread input cannot reset the tail of the response (§3.5).
const LINGER: Duration = Duration::from_secs(2);
/// appStatus of a request ended by FCGI_ABORT_REQUEST (§5.4) before its
/// program finished.
pub const ABORTED_APP_STATUS: u32 = 1;

/// What the connection tells peers through FCGI_GET_VALUES (§4.1), and the
/// bounds it enforces on PARAMS.
#[derive(Debug, Clone)]
pub struct Caps {
    /// FCGI_MAX_CONNS: connections served at once.
    pub max_conns: usize,
    /// FCGI_MAX_REQS: requests accepted at once.
    pub max_reqs: usize,
    /// Total bytes of one request's PARAMS stream.
    pub max_params_bytes: usize,
    /// Name-value pairs in one request's PARAMS stream.
    pub max_params: usize,
}

/// A request whose PARAMS are complete. `stdin` yields the STDIN stream's
/// chunks and ends at its empty record, or early if the request is aborted.
#[derive(Debug)]
pub struct Request {
    pub params: Params,
    pub stdin: mpsc::Receiver<Bytes>,
}

/// The handler's answer to a [`Request`].
#[derive(Debug)]
pub enum Response {
    /// Known at once: written as STDOUT, then END_REQUEST.
    Complete { stdout: Bytes, app_status: u32 },
    /// Produced elsewhere, reply by reply, ending with [`Reply::End`]. A channel
    /// that closes without `End` closes the connection, so a failure mid-way
    /// is never passed off as a complete response.
    Streaming(mpsc::Receiver<Reply>),
}

#[derive(Debug)]
pub enum Reply {
    Stdout(Bytes),
    End { app_status: u32 },
}

/// What runs requests. `start` is called on the connection's task and must
/// not block.
pub trait Handler: Send + Sync + 'static {
    fn start(&self, request: Request) -> Response;
    /// The answer for a request whose PARAMS exceed [`Caps`].
    fn params_too_large(&self) -> Response;
}

/// The request this connection is serving.
struct Current {
    id: u16,
    keep_conn: bool,
    /// The PARAMS stream while it is being received; `None` once the request
    /// has started. `oversized` once it passed the caps: the rest is dropped.
    params: Option<BytesMut>,
    oversized: bool,
}

/// Serves FastCGI requests from `reader`/`writer` until the peer closes, a
/// request without FCGI_KEEP_CONN ends, or the peer breaks the protocol.
pub async fn serve<R, W>(reader: R, writer: W, handler: &dyn Handler, caps: &Caps) -> Result<(), Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = RecordReader::new(reader);
    let mut out = Output {
        writer,
        buf: BytesMut::new(),
    };
    let mut current: Option<Current> = None;
    // Channels of the running request; `None` when there is none, or when
    // that direction has finished.
    let mut stdin: Option<mpsc::Sender<Bytes>> = None;
    let mut pending_stdin: Option<Bytes> = None;
    let mut replies: Option<mpsc::Receiver<Reply>> = None;

    loop {
        tokio::select! {
            biased;
            reply = next_reply(&mut replies) => {
                let cur = current.as_ref().expect("replies belong to the current request");
                let Some(reply) = reply else {
                    tracing::warn!("response ended without END_REQUEST; closing the connection");
                    out.flush().await?;
                    return Ok(());
                };
                let keep_conn = cur.keep_conn;
                if out.put_reply(cur.id, reply, replies.as_mut()) {
                    out.flush().await?;
                    current = None;
                    stdin = None;
                    pending_stdin = None;
                    replies = None;
                    if !keep_conn {
                        return out.close(reader).await;
                    }
                } else {
                    out.flush().await?;
                }
            }
            permit = reserve(&stdin), if pending_stdin.is_some() => {
                match permit {
                    Some(permit) => {
                        permit.send(pending_stdin.take().expect("guarded"));
                    }
                    // The handler stopped reading its body: drop the rest.
                    None => (stdin, pending_stdin) = (None, None),
                }
            }
            record = reader.next(), if pending_stdin.is_none() => {
                let Some(record) = record? else {
                    // The peer closed; dropping the channels cancels any request.
                    return Ok(());
                };
                if record.id == 0 {
                    management(&mut out, record, caps)?;
                    out.flush().await?;
                    continue;
                }
                let active = current.as_ref().is_some_and(|c| c.id == record.id);
                match record.kind {
                    kind::BEGIN_REQUEST => {
                        let (role, flags) = begin_body(&record)?;
                        let keep_conn = flags & KEEP_CONN != 0;
                        if active {
                            return Err(Error::Unexpected { kind: record.kind, id: record.id });
                        }
                        if current.is_some() {
                            put_end_request(&mut out.buf, record.id, 0, status::CANT_MPX_CONN);
                        } else if role != ROLE_RESPONDER {
                            put_end_request(&mut out.buf, record.id, 0, status::UNKNOWN_ROLE);
                            if !keep_conn {
                                out.flush().await?;
                                return out.close(reader).await;
                            }
                        } else {
                            current = Some(Current {
                                id: record.id,
                                keep_conn,
                                params: Some(BytesMut::new()),
                                oversized: false,
                            });
                        }
                        out.flush().await?;
                    }
                    kind::PARAMS if active => {
                        let cur = current.as_mut().expect("active");
                        let Some(buf) = cur.params.as_mut() else {
                            return Err(Error::Unexpected { kind: record.kind, id: record.id });
                        };
                        if !record.content.is_empty() {
                            if buf.len() + record.content.len() > caps.max_params_bytes {
                                cur.oversized = true;
                                *buf = BytesMut::new();
                            } else if !cur.oversized {
                                buf.extend_from_slice(&record.content);
                            }
                            continue;
                        }
                        let stream = cur.params.take().expect("checked").freeze();
                        let params = if cur.oversized {
                            None
                        } else {
                            match Params::decode(stream, caps.max_params) {
                                Ok(params) => Some(params),
                                Err(super::params::Error::TooMany(_)) => None,
                                Err(e) => return Err(e.into()),
                            }
                        };
                        let response = match params {
                            Some(params) => {
                                let (tx, rx) = mpsc::channel(STDIN_QUEUE);
                                stdin = Some(tx);
                                handler.start(Request { params, stdin: rx })
                            }
                            None => handler.params_too_large(),
                        };
                        match response {
                            Response::Streaming(rx) => replies = Some(rx),
                            Response::Complete { stdout, app_status } => {
                                let keep_conn = cur.keep_conn;
                                out.put_reply(cur.id, Reply::Stdout(stdout), None);
                                out.put_reply(cur.id, Reply::End { app_status }, None);
                                out.flush().await?;
                                current = None;
                                stdin = None;
                                if !keep_conn {
                                    return out.close(reader).await;
                                }
                            }
                        }
                    }
                    kind::STDIN if active => {
                        if current.as_ref().is_some_and(|c| c.params.is_some()) {
                            return Err(Error::Unexpected { kind: record.kind, id: record.id });
                        }
                        if record.content.is_empty() {
                            stdin = None;
                        } else if let Some(tx) = &stdin {
                            match tx.try_send(record.content) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(chunk)) => pending_stdin = Some(chunk),
                                Err(mpsc::error::TrySendError::Closed(_)) => stdin = None,
                            }
                        }
                    }
                    kind::ABORT_REQUEST if active => {
                        let keep_conn = current.take().expect("active").keep_conn;
                        (stdin, pending_stdin, replies) = (None, None, None);
                        put_end_request(&mut out.buf, record.id, ABORTED_APP_STATUS, status::REQUEST_COMPLETE);
                        out.flush().await?;
                        if !keep_conn {
                            return out.close(reader).await;
                        }
                    }
                    // DATA (a Filter's stream), and the application's own record
                    // types, have no place in a Responder's request.
                    _ if active => return Err(Error::Unexpected { kind: record.kind, id: record.id }),
                    // Records for inactive requests are ignored (§3.3): the tail
                    // of a body the program did not read, or an aborted request.
                    _ => {}
                }
            }
        }
    }
}

async fn next_reply(replies: &mut Option<mpsc::Receiver<Reply>>) -> Option<Reply> {
    match replies {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn reserve(stdin: &Option<mpsc::Sender<Bytes>>) -> Option<mpsc::OwnedPermit<Bytes>> {
    stdin.clone()?.reserve_owned().await.ok()
}

/// Decodes BEGIN_REQUEST's body (§5.1) into role and flags.
fn begin_body(record: &Record) -> Result<(u16, u8), Error> {
    match record.content[..] {
        [r1, r0, flags, _, _, _, _, _] => Ok((u16::from_be_bytes([r1, r0]), flags)),
        _ => Err(Error::BadBeginRequest(record.content.len())),
    }
}

/// Answers a management record (§4): GET_VALUES with the values we know,
/// anything else with UNKNOWN_TYPE.
fn management(out: &mut Output<impl AsyncWrite + Unpin>, record: Record, caps: &Caps) -> Result<(), Error> {
    match record.kind {
        kind::BEGIN_REQUEST => Err(Error::BeginOnNullId),
        kind::GET_VALUES => {
            let wanted = Params::decode(record.content, 64)?;
            let mut body = BytesMut::new();
            for (name, _) in wanted.iter() {
                let value = match name {
                    b"FCGI_MAX_CONNS" => caps.max_conns,
                    b"FCGI_MAX_REQS" => caps.max_reqs,
                    b"FCGI_MPXS_CONNS" => 0,
                    _ => continue,
                };
                put_pair(&mut body, name, value.to_string().as_bytes());
            }
            put_record(&mut out.buf, kind::GET_VALUES_RESULT, 0, &body);
            Ok(())
        }
        other => {
            put_unknown_type(&mut out.buf, other);
            Ok(())
        }
    }
}

/// Framed output waiting to be written.
struct Output<W> {
    writer: W,
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    /// Frames `reply`, and any further replies already queued in `more`, into
    /// the buffer. Returns whether the request ended.
    fn put_reply(&mut self, id: u16, mut reply: Reply, mut more: Option<&mut mpsc::Receiver<Reply>>) -> bool {
        loop {
            match reply {
                Reply::Stdout(data) => put_stream(&mut self.buf, kind::STDOUT, id, &data),
                Reply::End { app_status } => {
                    put_record(&mut self.buf, kind::STDOUT, id, &[]);
                    put_end_request(&mut self.buf, id, app_status, status::REQUEST_COMPLETE);
                    return true;
                }
            }
            if self.buf.len() >= WRITE_BATCH {
                return false;
            }
            match more.as_mut().map(|rx| rx.try_recv()) {
                Some(Ok(next)) => reply = next,
                _ => return false,
            }
        }
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.writer.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Ends the connection after a request without FCGI_KEEP_CONN (§3.5):
    /// half-close, then read what the peer still sends until it closes, so
    /// unread input cannot reset the connection before the response arrives.
    async fn close<R: AsyncRead + Unpin>(mut self, mut reader: RecordReader<R>) -> Result<(), Error> {
        self.writer.shutdown().await?;
        let _ = tokio::time::timeout(LINGER, async { while let Ok(Some(_)) = reader.next().await {} }).await;
        Ok(())
    }
}
