//! One FastCGI connection: the responder state machine of FastCGI 1.0 §5–§6.
//!
//! A connection carries one request at a time. Its body (STDIN, §5.3) goes
//! to the request's [`Job`] as it arrives, so the connection reads no faster
//! than the job takes it. When the body is complete the job runs, right here
//! on the connection's thread, and writes its response through [`Stdout`].
//! Nothing is read while it runs: records that arrive meanwhile are handled
//! after the request ends, so a BEGIN_REQUEST pipelined behind a running
//! request is served after it: the connection does not multiplex
//! (`FCGI_MPXS_CONNS=0`), so a web server that pipelines anyway waits its
//! turn rather than getting FCGI_CANT_MPX_CONN for a request that was not
//! concurrent. The worker's watchdog notices an abort or a hang-up during a
//! long run without reading (see `worker::watchdog`).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::line::Line;
use super::params::{Params, put_pair};
use super::record::{
    Record, RecordReader, put_end_request, put_record, put_response_end, put_unknown_type, scan_for_abort,
};
use super::stdout::{Ending, Gone, Stdout};
use super::{ABORTED_APP_STATUS, Caps, Error, Handler, Job, KEEP_CONN, ROLE_RESPONDER, Start, kind, status};

/// How long a closing connection waits for the peer's remaining bytes, so that
/// closing with unread input cannot reset the tail of the response (§3.5).
const LINGER: Duration = Duration::from_secs(2);
/// How long a new connection may stay silent before its first request.
const FIRST_REQUEST_WITHIN: Duration = Duration::from_secs(10);
/// How long a kept connection may idle between requests: longer than nginx
/// keeps an idle upstream connection (60 s), so that nginx closes first.
const IDLE_WITHIN: Duration = Duration::from_secs(600);
/// How long a request's PARAMS may take, from its BEGIN_REQUEST.
const PARAMS_WITHIN: Duration = Duration::from_secs(10);
/// How long a request's whole input (PARAMS and STDIN) may take, and how
/// long it may pause between records: a peer trickling bytes (slowloris)
/// holds a connection that long at most, and never an instance.
const INPUT_WITHIN: Duration = Duration::from_secs(300);
const INPUT_PAUSE: Duration = Duration::from_secs(30);
/// How long a stopping worker waits for the first request of a connection
/// it accepted just before the stop.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// The request this connection is serving.
struct Current<J> {
    id: u16,
    keep_conn: bool,
    /// When its BEGIN_REQUEST came.
    began: Instant,
    /// The PARAMS stream while it is being received. `oversized` once it
    /// passed the caps: the rest is dropped.
    params: Option<BytesMut>,
    oversized: bool,
    /// Set when PARAMS end; the job's body is still arriving.
    job: Option<J>,
}

/// What the connection does after a record.
enum Next {
    Continue,
    /// A request without FCGI_KEEP_CONN ended: close, first reading what the
    /// peer still sends if `linger` (the request's input had not ended).
    Close {
        linger: bool,
    },
    /// Close at once: the response broke off.
    Drop,
}

/// Serves FastCGI requests from `reader`/`writer` until the peer closes, a
/// request without FCGI_KEEP_CONN ends, the peer breaks the protocol, or
/// `stop` turns true while no request is in progress. `line` holds the
/// connection's socket, which jobs write to directly, and tells the
/// worker's watchdog when a request could be waiting.
pub async fn serve<R, W, H>(
    reader: R,
    writer: W,
    line: Arc<Line>,
    handler: &H,
    caps: &Caps,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: Handler,
{
    let mut conn = Connection {
        reader: RecordReader::new(Tracked {
            io: reader,
            line: line.clone(),
        }),
        out: Output {
            writer,
            buf: BytesMut::new(),
        },
        socket: line.socket.clone(),
        handler,
        caps,
        current: None,
    };
    // Whether the peer has sent anything yet, and when it last did.
    let mut heard = false;
    let mut last = Instant::now();
    loop {
        // Handed to another worker while a guest ran here: not a byte of it
        // was read, and it is that worker's now.
        if line.is_handed_over() {
            return Ok(());
        }
        line.set_idle(conn.current.is_none() && !conn.reader.has_buffered());
        let record = match &conn.current {
            None => {
                let stopping = *stop.borrow();
                // Stopping, an idle connection closes; nothing is lost: one
                // with a request waiting is served first, and a new one gets
                // a moment for its first request (it was accepted for it).
                let deadline = if !stopping {
                    last + if heard { IDLE_WITHIN } else { FIRST_REQUEST_WITHIN }
                } else if conn.reader.has_buffered() || line.readable() {
                    Instant::now() + INPUT_PAUSE
                } else if !heard {
                    Instant::now() + STOP_GRACE
                } else {
                    return Ok(());
                };
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop), if !stopping => continue,
                    record = tokio::time::timeout_at(deadline, conn.reader.next()) => match record {
                        Ok(record) => record?,
                        Err(_) => return Ok(()),
                    },
                }
            }
            Some(cur) => {
                let phase = if cur.params.is_some() {
                    cur.began + PARAMS_WITHIN
                } else {
                    cur.began + INPUT_WITHIN
                };
                let deadline = phase.min(last + INPUT_PAUSE);
                tokio::time::timeout_at(deadline, conn.reader.next())
                    .await
                    .map_err(|_| Error::Slow { id: cur.id })??
            }
        };
        let Some(record) = record else {
            return Ok(());
        };
        let next = conn.on_record(record).await?;
        (heard, last) = (true, Instant::now());
        match next {
            Next::Continue => {}
            Next::Close { linger } => return conn.out.close(conn.reader, linger).await,
            Next::Drop => return Ok(()),
        }
    }
}

/// A connection's input, telling its [`Line`] when bytes were read: from
/// then on the connection cannot be handed over. Once it was handed over it
/// reads as ended, reading nothing: its bytes are the other worker's.
struct Tracked<R> {
    io: R,
    line: Arc<Line>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Tracked<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.line.is_handed_over() {
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.line.set_idle(false);
        }
        polled
    }
}

struct Connection<'a, R, W, H: Handler> {
    reader: RecordReader<Tracked<R>>,
    out: Output<W>,
    socket: Arc<OwnedFd>,
    handler: &'a H,
    caps: &'a Caps,
    current: Option<Current<H::Job>>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin, H: Handler> Connection<'_, R, W, H> {
    async fn on_record(&mut self, record: Record) -> Result<Next, Error> {
        if record.id == 0 {
            management(&mut self.out, record, self.caps)?;
            self.out.flush().await?;
            return Ok(Next::Continue);
        }
        let active = self.current.as_ref().is_some_and(|c| c.id == record.id);
        let unexpected = Error::Unexpected {
            kind: record.kind,
            id: record.id,
        };
        match record.kind {
            kind::BEGIN_REQUEST => self.on_begin(record).await,
            kind::PARAMS if active => self.on_params(record).await,
            kind::STDIN if active => {
                let cur = self.current.as_mut().expect("active");
                let Some(job) = cur.job.as_mut() else {
                    // STDIN before the PARAMS ended.
                    return Err(unexpected);
                };
                if record.content.is_empty() {
                    let job = cur.job.take().expect("checked");
                    return self.run(job).await;
                }
                match job.stdin(record.content) {
                    Ok(()) => Ok(Next::Continue),
                    Err(stdout) => self.respond(stdout, 0, false).await,
                }
            }
            kind::ABORT_REQUEST if active => {
                let id = record.id;
                put_end_request(&mut self.out.buf, id, ABORTED_APP_STATUS, status::REQUEST_COMPLETE);
                self.out.flush().await?;
                Ok(self.end_request(false))
            }
            // DATA (a Filter's stream), and the application's own record
            // types, have no place in a Responder's request.
            _ if active => Err(unexpected),
            // Records for inactive requests are ignored (§3.3): the tail of a
            // body the program did not read, or an aborted request.
            _ => Ok(Next::Continue),
        }
    }

    async fn on_begin(&mut self, record: Record) -> Result<Next, Error> {
        let (role, flags) = begin_body(&record)?;
        let keep_conn = flags & KEEP_CONN != 0;
        match &self.current {
            // The same id again before its request's input ended: nonsense.
            Some(cur) if cur.id == record.id => {
                return Err(Error::Unexpected {
                    kind: record.kind,
                    id: record.id,
                });
            }
            Some(_) => put_end_request(&mut self.out.buf, record.id, 0, status::CANT_MPX_CONN),
            None if role != ROLE_RESPONDER => {
                put_end_request(&mut self.out.buf, record.id, 0, status::UNKNOWN_ROLE);
                if !keep_conn {
                    self.out.flush().await?;
                    return Ok(Next::Close { linger: true });
                }
            }
            None => {
                self.current = Some(Current {
                    id: record.id,
                    keep_conn,
                    began: Instant::now(),
                    params: Some(BytesMut::new()),
                    oversized: false,
                    job: None,
                })
            }
        }
        self.out.flush().await?;
        Ok(Next::Continue)
    }

    /// Collects the PARAMS stream (§5.2); at its end, starts the request.
    async fn on_params(&mut self, record: Record) -> Result<Next, Error> {
        let caps = self.caps;
        let cur = self.current.as_mut().expect("active");
        let Some(buf) = cur.params.as_mut() else {
            // A repeated terminator is harmless; more params are not.
            if record.content.is_empty() {
                return Ok(Next::Continue);
            }
            return Err(Error::Unexpected {
                kind: record.kind,
                id: record.id,
            });
        };
        if !record.content.is_empty() {
            if buf.len() + record.content.len() > caps.max_params_bytes {
                cur.oversized = true;
                *buf = BytesMut::new();
            } else if !cur.oversized {
                buf.extend_from_slice(&record.content);
            }
            return Ok(Next::Continue);
        }
        let stream = cur.params.take().expect("checked").freeze();
        let params = match cur.oversized {
            true => None,
            false => match Params::decode(stream, caps.max_params) {
                Ok(params) => Some(params),
                Err(super::params::Error::TooMany(_)) => None,
                Err(e) => return Err(e.into()),
            },
        };
        let start = match params {
            Some(params) => self.handler.start(params),
            None => Start::Respond(self.handler.params_too_large()),
        };
        match start {
            Start::Run(job) => {
                cur.job = Some(job);
                Ok(Next::Continue)
            }
            Start::Respond(stdout) => self.respond(stdout, 0, false).await,
        }
    }

    /// Runs the current request's job, its body complete.
    async fn run(&mut self, job: H::Job) -> Result<Next, Error> {
        let id = self.current.as_ref().expect("running").id;
        // Records read along with the body's end are not in the socket any
        // more, where the watchdog looks for an abort: look here first.
        let buffered = self.reader.buffered();
        let (aborted, walked) = scan_for_abort(buffered, id);
        if aborted {
            return self.respond(Bytes::new(), ABORTED_APP_STATUS, true).await;
        }
        let aligned = walked == buffered.len();
        let out = Stdout::new(id, self.socket.clone(), aligned);
        // A request that waited behind others may have been given up
        // meanwhile (nginx closes the connection when its client leaves).
        match out.peer().wait_gone(Duration::ZERO) {
            Some(Gone::Closed) => return Ok(Next::Drop),
            Some(Gone::Aborted) => return self.respond(Bytes::new(), ABORTED_APP_STATUS, true).await,
            None => {}
        }
        match job.run(out) {
            Ending::Complete { tail, app_status } => self.respond(tail, app_status, true).await,
            Ending::Cut => Ok(Next::Drop),
        }
    }

    /// Sends the last of the current request's STDOUT and ends it (§5.5).
    async fn respond(&mut self, stdout: Bytes, app_status: u32, input_ended: bool) -> Result<Next, Error> {
        let id = self.current.as_ref().expect("responding").id;
        put_response_end(&mut self.out.buf, id, &stdout, app_status, status::REQUEST_COMPLETE);
        self.out.flush().await?;
        Ok(self.end_request(input_ended))
    }

    /// The current request is over: forget it.
    fn end_request(&mut self, input_ended: bool) -> Next {
        let keep_conn = self.current.take().is_some_and(|c| c.keep_conn);
        if keep_conn {
            Next::Continue
        } else {
            Next::Close { linger: !input_ended }
        }
    }
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
    async fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.writer.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Ends the connection after a request without FCGI_KEEP_CONN (§3.5):
    /// half-close, and if the peer may still be sending (`linger`, or bytes
    /// already waiting), read until it closes, so that unread input cannot
    /// reset the connection before the response arrives.
    async fn close<R: AsyncRead + Unpin>(mut self, mut reader: RecordReader<R>, linger: bool) -> Result<(), Error> {
        self.writer.shutdown().await?;
        if linger || reader.has_buffered() {
            let _ = tokio::time::timeout(LINGER, async { while let Ok(Some(_)) = reader.next().await {} }).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
