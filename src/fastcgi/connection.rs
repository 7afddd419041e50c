//! One FastCGI connection: the responder state machine of FastCGI 1.0 §5–§6.
//!
//! A connection carries one request at a time. Its body (STDIN, §5.3) goes
//! to the request's [`Job`] as it arrives, so the connection reads no faster
//! than the job takes it. When the body is complete the job runs, right here
//! on the connection's thread, and writes its response through [`Stdout`].
//! Nothing is read while it runs: records that arrive meanwhile are handled
//! after the request ends, so a BEGIN_REQUEST pipelined behind a running
//! request is served after it (the non-multiplexing answer conformance 9.5
//! #66 allows). The worker's watchdog notices an abort or a hang-up during a
//! long run without reading (see `cgi::watchdog`).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::params::{Params, put_pair};
use super::queue::Line;
use super::record::{
    Record, RecordReader, put_end_request, put_record, put_response_end, put_unknown_type, scan_for_abort,
};
use super::stdout::{Ending, Gone, Stdout};
use super::{Error, KEEP_CONN, ROLE_RESPONDER, kind, status};

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

/// What a request becomes once its PARAMS are complete.
pub enum Start<J> {
    /// A complete response, known at once (an error page): sent as STDOUT
    /// with appStatus 0, whatever STDIN still brings is ignored.
    Respond(Bytes),
    /// A job that takes the body, then runs.
    Run(J),
}

/// What runs requests.
pub trait Handler {
    type Job: Job;
    fn start(&self, params: Params) -> Start<Self::Job>;
    /// A connection was accepted (for the counts).
    fn connected(&self) {}
    /// The complete response for a request whose PARAMS exceed [`Caps`].
    fn params_too_large(&self) -> Bytes;
}

/// One request's work.
pub trait Job {
    /// Takes the next chunk of the body. `Err` carries a complete response
    /// to send instead of running (the body is too large, say).
    fn stdin(&mut self, chunk: Bytes) -> Result<(), Bytes>;
    /// Runs, once the body is complete, writing to `out`; blocks the thread.
    fn run(self, out: Stdout) -> Ending;
}

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
/// worker's [`Queue`](super::Queue) when a request could be waiting.
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
mod tests {
    //! The connection speaking raw records to a test handler, in process.
    //! Each of tokio-fastcgi 1.3.0's measured defects has a test here.

    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::super::record::{RecordReader, put_record};
    use super::*;

    const CAPS: Caps = Caps {
        max_conns: 7,
        max_reqs: 5,
        max_params_bytes: 4096,
        max_params: 50,
    };

    /// Answers with its params (`name=value` lines) and the length and
    /// checksum of its body, after `output` bytes of `z` sent through
    /// [`Stdout`]. Refuses bodies over `max_body` bytes.
    #[derive(Default)]
    struct Echo {
        output: usize,
        max_body: Option<usize>,
        /// Chunks received by any job so far.
        chunks: Arc<AtomicUsize>,
        /// Ids of the requests run, in order.
        runs: Arc<Mutex<Vec<String>>>,
    }

    struct EchoJob {
        text: String,
        len: usize,
        sum: u64,
        output: usize,
        max_body: Option<usize>,
        chunks: Arc<AtomicUsize>,
        runs: Arc<Mutex<Vec<String>>>,
    }

    impl Handler for Echo {
        type Job = EchoJob;

        fn start(&self, params: Params) -> Start<EchoJob> {
            let mut text = String::new();
            for (n, v) in params.iter() {
                text += &format!("{}={}\n", String::from_utf8_lossy(n), String::from_utf8_lossy(v));
            }
            Start::Run(EchoJob {
                text,
                len: 0,
                sum: 0,
                output: self.output,
                max_body: self.max_body,
                chunks: self.chunks.clone(),
                runs: self.runs.clone(),
            })
        }

        fn params_too_large(&self) -> Bytes {
            Bytes::from_static(b"too large")
        }
    }

    impl Job for EchoJob {
        fn stdin(&mut self, chunk: Bytes) -> Result<(), Bytes> {
            self.chunks.fetch_add(1, Ordering::SeqCst);
            self.len += chunk.len();
            if self.max_body.is_some_and(|max| self.len > max) {
                return Err(Bytes::from_static(b"body too large"));
            }
            self.sum = chunk
                .iter()
                .fold(self.sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
            Ok(())
        }

        fn run(self, mut out: Stdout) -> Ending {
            self.runs.lock().unwrap().push(self.text.clone());
            if self.output > 0 && out.send(&vec![b'z'; self.output]).is_err() {
                return Ending::Cut;
            }
            Ending::Complete {
                tail: Bytes::from(format!("{}stdin {} {}\n", self.text, self.len, self.sum)),
                app_status: 7,
            }
        }
    }

    struct Server {
        task: tokio::task::JoinHandle<Result<(), Error>>,
        stop: watch::Sender<bool>,
    }

    fn start(handler: Echo) -> (UnixStream, Server) {
        let (client, server) = UnixStream::pair().unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let line = super::super::Queue::default().register(server.as_fd().try_clone_to_owned().unwrap());
            let (r, w) = server.into_split();
            serve(r, w, line, &handler, &CAPS, stopped).await
        });
        (client, Server { task, stop })
    }

    impl Server {
        async fn result(self) -> Result<(), Error> {
            self.task.await.unwrap()
        }
    }

    fn rec(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_record(&mut out, kind, id, content);
        out.to_vec()
    }

    fn begin(id: u16, role: u16, flags: u8) -> Vec<u8> {
        let [r1, r0] = role.to_be_bytes();
        rec(kind::BEGIN_REQUEST, id, &[r1, r0, flags, 0, 0, 0, 0, 0])
    }

    fn pairs(list: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for (n, v) in list {
            put_pair(&mut out, n, v);
        }
        out.to_vec()
    }

    /// BEGIN, PARAMS and the empty PARAMS: a request waiting for its body.
    fn head(id: u16, flags: u8, params: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = begin(id, ROLE_RESPONDER, flags);
        if !params.is_empty() {
            out.extend(rec(kind::PARAMS, id, &pairs(params)));
        }
        out.extend(rec(kind::PARAMS, id, &[]));
        out
    }

    /// A whole request: BEGIN, PARAMS, empty PARAMS, STDIN, empty STDIN.
    fn request(id: u16, flags: u8, params: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
        let mut out = head(id, flags, params);
        for chunk in body.chunks(65535) {
            out.extend(rec(kind::STDIN, id, chunk));
        }
        out.extend(rec(kind::STDIN, id, &[]));
        out
    }

    /// Reads records until END_REQUEST for `id`: (stdout, appStatus, protocolStatus).
    async fn response(reader: &mut RecordReader<&mut UnixStream>, id: u16) -> (Vec<u8>, u32, u8) {
        let mut stdout = Vec::new();
        loop {
            let r = reader.next().await.unwrap().expect("END_REQUEST before EOF");
            assert_eq!(r.id, id, "record for another request: {r:?}");
            match r.kind {
                kind::STDOUT => {
                    assert!(r.content.len() <= 65535);
                    stdout.extend_from_slice(&r.content)
                }
                kind::END_REQUEST => {
                    let c = &r.content;
                    return (stdout, u32::from_be_bytes([c[0], c[1], c[2], c[3]]), c[4]);
                }
                other => panic!("unexpected record type {other}"),
            }
        }
    }

    async fn at_eof(client: &mut UnixStream) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn serves_a_request_and_keeps_the_connection() {
        let (mut client, server) = start(Echo::default());
        client
            .write_all(&request(1, KEEP_CONN, &[(b"A", b"1")], b"hi"))
            .await
            .unwrap();
        let mut reader = RecordReader::new(&mut client);
        let (out, app, proto) = response(&mut reader, 1).await;
        assert_eq!(String::from_utf8(out).unwrap(), "A=1\nstdin 2 3329\n");
        assert_eq!((app, proto), (7, status::REQUEST_COMPLETE));
        // Same id again, then a new id, on the same connection (§5.1).
        for id in [1, 2] {
            reader
                .io_mut()
                .write_all(&request(id, KEEP_CONN, &[(b"B", b"2")], b""))
                .await
                .unwrap();
            let (out, _, _) = response(&mut reader, id).await;
            assert_eq!(String::from_utf8(out).unwrap(), "B=2\nstdin 0 0\n");
        }
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    #[tokio::test]
    async fn without_keep_conn_the_server_closes_after_the_response() {
        let (mut client, server) = start(Echo::default());
        client.write_all(&request(65535, 0, &[], b"")).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        let (_, app, _) = response(&mut reader, 65535).await;
        assert_eq!(app, 7);
        assert!(reader.next().await.unwrap().is_none());
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    // tokio-fastcgi: panics on a BEGIN_REQUEST with no content.
    #[tokio::test]
    async fn begin_request_without_content_closes_the_connection() {
        let (mut client, server) = start(Echo::default());
        client.write_all(&rec(kind::BEGIN_REQUEST, 1, &[])).await.unwrap();
        assert!(at_eof(&mut client).await);
        assert!(matches!(server.result().await, Err(Error::BadBeginRequest(0))));
    }

    // tokio-fastcgi: allocates 2 GiB when a name length claims 0x7fffffff.
    #[tokio::test]
    async fn a_param_length_of_2_gib_closes_the_connection() {
        let (mut client, server) = start(Echo::default());
        let mut bytes = begin(1, ROLE_RESPONDER, 0);
        bytes.extend(rec(kind::PARAMS, 1, &[0xff, 0xff, 0xff, 0xff, 0x01, b'a', b'b']));
        bytes.extend(rec(kind::PARAMS, 1, &[]));
        client.write_all(&bytes).await.unwrap();
        assert!(at_eof(&mut client).await);
        assert!(matches!(server.result().await, Err(Error::Params(_))));
    }

    // tokio-fastcgi: drops the connection when a pair spans two PARAMS records.
    #[tokio::test]
    async fn a_pair_may_span_params_records_at_any_byte() {
        let value = vec![b'v'; 300]; // 4-byte value length
        let stream = pairs(&[(b"SPLIT_NAME", &value), (b"Z", b"z")]);
        // An empty record would end the stream, so cuts start at 1.
        for cut in 1..stream.len() {
            let (mut client, server) = start(Echo::default());
            let mut bytes = begin(1, ROLE_RESPONDER, 0);
            bytes.extend(rec(kind::PARAMS, 1, &stream[..cut]));
            bytes.extend(rec(kind::PARAMS, 1, &stream[cut..]));
            bytes.extend(rec(kind::PARAMS, 1, &[]));
            bytes.extend(rec(kind::STDIN, 1, &[]));
            client.write_all(&bytes).await.unwrap();
            let (out, _, _) = response(&mut RecordReader::new(&mut client), 1).await;
            let want = format!("SPLIT_NAME={}\nZ=z\nstdin 0 0\n", "v".repeat(300));
            assert_eq!(String::from_utf8(out).unwrap(), want, "cut at {cut}");
            drop(client);
            server.result().await.unwrap();
        }
    }

    // tokio-fastcgi: closes instead of answering FCGI_UNKNOWN_ROLE.
    #[tokio::test]
    async fn unknown_roles_get_unknown_role_and_the_connection_stays() {
        let (mut client, server) = start(Echo::default());
        let mut reader = RecordReader::new(&mut client);
        for role in [2, 3, 9] {
            reader.io_mut().write_all(&begin(1, role, KEEP_CONN)).await.unwrap();
            let (out, _, proto) = response(&mut reader, 1).await;
            assert!(out.is_empty());
            assert_eq!(proto, status::UNKNOWN_ROLE);
        }
        reader.io_mut().write_all(&request(1, 0, &[], b"")).await.unwrap();
        assert_eq!(response(&mut reader, 1).await.2, status::REQUEST_COMPLETE);
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    // tokio-fastcgi: lowercases every param name.
    #[tokio::test]
    async fn param_names_keep_their_case() {
        let (mut client, server) = start(Echo::default());
        client
            .write_all(&request(
                1,
                0,
                &[(b"Script_Filename", b"/X"), (b"HTTP_X_UPPER", b"Y")],
                b"",
            ))
            .await
            .unwrap();
        let (out, _, _) = response(&mut RecordReader::new(&mut client), 1).await;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Script_Filename=/X\nHTTP_X_UPPER=Y\nstdin 0 0\n"
        );
        drop(client);
        server.result().await.unwrap();
    }

    // tokio-fastcgi: buffers STDIN without limit. Here each chunk reaches the
    // job as it arrives, before the rest of the body is even sent.
    #[tokio::test]
    async fn the_body_reaches_the_job_chunk_by_chunk_as_it_arrives() {
        let echo = Echo::default();
        let chunks = echo.chunks.clone();
        let (mut client, server) = start(echo);
        let mut bytes = head(1, 0, &[]);
        bytes.extend(rec(kind::STDIN, 1, b"first"));
        client.write_all(&bytes).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while chunks.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the first chunk never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut rest = rec(kind::STDIN, 1, b"second");
        rest.extend(rec(kind::STDIN, 1, &[]));
        client.write_all(&rest).await.unwrap();
        let (out, _, _) = response(&mut RecordReader::new(&mut client), 1).await;
        assert!(String::from_utf8(out).unwrap().starts_with("stdin 11 "));
        assert_eq!(chunks.load(Ordering::SeqCst), 2);
        drop(client);
        server.result().await.unwrap();
    }

    /// A job that refuses its body is answered at once; the rest of the body
    /// is ignored and the connection serves the next request.
    #[tokio::test]
    async fn a_refused_body_is_answered_at_once_and_the_rest_ignored() {
        let (mut client, server) = start(Echo {
            max_body: Some(4),
            ..Echo::default()
        });
        let mut bytes = head(1, KEEP_CONN, &[]);
        bytes.extend(rec(kind::STDIN, 1, b"too long"));
        client.write_all(&bytes).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        assert_eq!(response(&mut reader, 1).await, (b"body too large".to_vec(), 0, 0));
        let mut bytes = rec(kind::STDIN, 1, b"more of it");
        bytes.extend(rec(kind::STDIN, 1, &[]));
        bytes.extend(request(1, 0, &[], b"ok"));
        reader.io_mut().write_all(&bytes).await.unwrap();
        assert_eq!(response(&mut reader, 1).await.0, b"stdin 2 3548\n");
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    // tokio-fastcgi: advertises FCGI_MPXS_CONNS=1, then panics on concurrent writers.
    #[tokio::test]
    async fn get_values_tells_the_truth_and_a_second_request_is_refused() {
        let (mut client, server) = start(Echo::default());
        let mut reader = RecordReader::new(&mut client);
        let query = pairs(&[
            (b"FCGI_MPXS_CONNS", b""),
            (b"FCGI_MAX_CONNS", b""),
            (b"FCGI_MAX_REQS", b""),
            (b"X", b""),
        ]);
        reader
            .io_mut()
            .write_all(&rec(kind::GET_VALUES, 0, &query))
            .await
            .unwrap();
        let r = reader.next().await.unwrap().unwrap();
        assert_eq!((r.kind, r.id), (kind::GET_VALUES_RESULT, 0));
        let got: Vec<_> = Params::decode(r.content, 10)
            .unwrap()
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = [
            ("FCGI_MPXS_CONNS", "0"),
            ("FCGI_MAX_CONNS", "7"),
            ("FCGI_MAX_REQS", "5"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(got, want);
        // Request 1 is receiving its body; request 2 must be refused, 1
        // unaffected.
        reader
            .io_mut()
            .write_all(&head(1, KEEP_CONN, &[(b"R", b"1")]))
            .await
            .unwrap();
        reader
            .io_mut()
            .write_all(&begin(2, ROLE_RESPONDER, KEEP_CONN))
            .await
            .unwrap();
        let r = reader.next().await.unwrap().unwrap();
        assert_eq!(
            (r.kind, r.id, r.content[4]),
            (kind::END_REQUEST, 2, status::CANT_MPX_CONN)
        );
        // GET_VALUES is answered mid-request too.
        reader
            .io_mut()
            .write_all(&rec(kind::GET_VALUES, 0, &pairs(&[(b"FCGI_MPXS_CONNS", b"")])))
            .await
            .unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().kind, kind::GET_VALUES_RESULT);
        reader.io_mut().write_all(&rec(kind::STDIN, 1, &[])).await.unwrap();
        let (out, _, _) = response(&mut reader, 1).await;
        assert_eq!(String::from_utf8(out).unwrap(), "R=1\nstdin 0 0\n");
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    /// A request with another id, sent in the same write as a complete one,
    /// is read once the first has run: it is served after it, in order.
    #[tokio::test]
    async fn a_request_pipelined_behind_a_running_one_is_served_after_it() {
        let echo = Echo::default();
        let runs = echo.runs.clone();
        let (mut client, server) = start(echo);
        let mut bytes = request(1, KEEP_CONN, &[(b"N", b"1")], b"");
        bytes.extend(request(2, 0, &[(b"N", b"2")], b""));
        client.write_all(&bytes).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        assert_eq!(response(&mut reader, 1).await.0, b"N=1\nstdin 0 0\n");
        assert_eq!(response(&mut reader, 2).await.0, b"N=2\nstdin 0 0\n");
        assert_eq!(*runs.lock().unwrap(), ["N=1\n", "N=2\n"]);
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    #[tokio::test]
    async fn unknown_management_types_get_unknown_type() {
        let (mut client, server) = start(Echo::default());
        client.write_all(&rec(42, 0, b"whatever")).await.unwrap();
        let r = RecordReader::new(&mut client).next().await.unwrap().unwrap();
        assert_eq!(
            (r.kind, r.id, &r.content[..]),
            (kind::UNKNOWN_TYPE, 0, &[42, 0, 0, 0, 0, 0, 0, 0][..])
        );
        drop(client);
        server.result().await.unwrap();
    }

    #[tokio::test]
    async fn padding_and_one_byte_writes_change_nothing() {
        let (mut client, server) = start(Echo::default());
        // Every record with 255 bytes of padding, written a byte at a time.
        let mut bytes = Vec::new();
        for (kind, content) in [
            (kind::BEGIN_REQUEST, vec![0, 1, 0, 0, 0, 0, 0, 0]),
            (kind::PARAMS, pairs(&[(b"P", b"q")])),
            (kind::PARAMS, vec![]),
            (kind::STDIN, b"abc".to_vec()),
            (kind::STDIN, vec![]),
        ] {
            let mut r = vec![1, kind, 0, 1, 0, content.len() as u8, 255, 0];
            r.extend(&content);
            r.extend([0u8; 255]);
            bytes.extend(r);
        }
        for b in bytes {
            client.write_all(&[b]).await.unwrap();
        }
        let (out, _, _) = response(&mut RecordReader::new(&mut client), 1).await;
        assert_eq!(String::from_utf8(out).unwrap(), "P=q\nstdin 3 96354\n");
        drop(client);
        server.result().await.unwrap();
    }

    #[tokio::test]
    async fn pipelined_requests_in_one_write_are_served_in_order() {
        let (mut client, server) = start(Echo::default());
        let mut bytes = request(1, KEEP_CONN, &[(b"N", b"1")], b"");
        bytes.extend(request(1, 0, &[(b"N", b"2")], b"xy"));
        client.write_all(&bytes).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        assert_eq!(response(&mut reader, 1).await.0, b"N=1\nstdin 0 0\n");
        assert_eq!(response(&mut reader, 1).await.0, b"N=2\nstdin 2 3841\n");
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    #[tokio::test]
    async fn protocol_errors_close_the_connection() {
        let cases: Vec<Vec<u8>> = vec![
            // Version 2.
            vec![2, kind::BEGIN_REQUEST, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            // BEGIN_REQUEST on the management id.
            begin(0, ROLE_RESPONDER, 0),
            // STDIN before the params ended.
            [begin(1, ROLE_RESPONDER, 0), rec(kind::STDIN, 1, b"x")].concat(),
            // The same id begun again while its body is arriving.
            [head(1, 0, &[]), begin(1, ROLE_RESPONDER, 0)].concat(),
            // DATA for a Responder.
            [
                begin(1, ROLE_RESPONDER, 0),
                rec(kind::PARAMS, 1, &[]),
                rec(kind::DATA, 1, b"x"),
            ]
            .concat(),
            // A truncated pair at the end of the params.
            [
                begin(1, ROLE_RESPONDER, 0),
                rec(kind::PARAMS, 1, &[5, 5, b'a']),
                rec(kind::PARAMS, 1, &[]),
            ]
            .concat(),
        ];
        for bytes in cases {
            let (mut client, server) = start(Echo::default());
            client.write_all(&bytes).await.unwrap();
            assert!(at_eof(&mut client).await, "{bytes:?}");
            assert!(server.result().await.is_err(), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn records_for_other_requests_are_ignored() {
        let (mut client, server) = start(Echo::default());
        let mut bytes = rec(kind::STDIN, 9, b"stray");
        bytes.extend(rec(kind::PARAMS, 9, &pairs(&[(b"S", b"s")])));
        bytes.extend(request(1, 0, &[(b"A", b"b")], b""));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(
            response(&mut RecordReader::new(&mut client), 1).await.0,
            b"A=b\nstdin 0 0\n"
        );
        drop(client);
        server.result().await.unwrap();
    }

    /// An abort read together with the end of the body: the job never runs,
    /// though the abort is no longer in the socket for the watchdog to see.
    #[tokio::test]
    async fn abort_behind_the_end_of_the_body_stops_the_run() {
        let echo = Echo::default();
        let runs = echo.runs.clone();
        let (mut client, server) = start(echo);
        let mut bytes = request(1, KEEP_CONN, &[(b"N", b"1")], b"body");
        bytes.extend(rec(kind::ABORT_REQUEST, 1, &[]));
        bytes.extend(request(2, 0, &[(b"N", b"2")], b""));
        client.write_all(&bytes).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        assert_eq!(response(&mut reader, 1).await, (Vec::new(), ABORTED_APP_STATUS, 0));
        assert_eq!(response(&mut reader, 2).await.0, b"N=2\nstdin 0 0\n");
        assert_eq!(*runs.lock().unwrap(), ["N=2\n"]);
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    #[tokio::test]
    async fn abort_request_ends_the_request_at_once() {
        let echo = Echo::default();
        let runs = echo.runs.clone();
        let (mut client, server) = start(echo);
        let mut bytes = head(1, KEEP_CONN, &[]);
        bytes.extend(rec(kind::STDIN, 1, b"part of a body"));
        bytes.extend(rec(kind::ABORT_REQUEST, 1, &[]));
        client.write_all(&bytes).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        let r = reader.next().await.unwrap().unwrap();
        assert_eq!((r.kind, r.content[4]), (kind::END_REQUEST, status::REQUEST_COMPLETE));
        assert_eq!(
            u32::from_be_bytes(r.content[..4].try_into().unwrap()),
            ABORTED_APP_STATUS
        );
        // The connection is still good for the next request; the aborted
        // one never ran.
        reader.io_mut().write_all(&request(1, 0, &[], b"")).await.unwrap();
        assert_eq!(response(&mut reader, 1).await.0, b"stdin 0 0\n");
        assert_eq!(runs.lock().unwrap().len(), 1);
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    #[tokio::test]
    async fn oversized_params_get_the_handlers_answer() {
        let (mut client, server) = start(Echo::default());
        let big = vec![b'x'; 3000];
        let mut bytes = begin(1, ROLE_RESPONDER, KEEP_CONN);
        bytes.extend(rec(kind::PARAMS, 1, &pairs(&[(b"A", &big)])));
        bytes.extend(rec(kind::PARAMS, 1, &pairs(&[(b"B", &big)])));
        bytes.extend(rec(kind::PARAMS, 1, &[]));
        bytes.extend(rec(kind::STDIN, 1, b"ignored"));
        bytes.extend(rec(kind::STDIN, 1, &[]));
        // Too many pairs, though few bytes.
        let many: Vec<(&[u8], &[u8])> = (0..60).map(|_| (&b"K"[..], &b"v"[..])).collect();
        bytes.extend(request(2, 0, &many, b""));
        client.write_all(&bytes).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        assert_eq!(response(&mut reader, 1).await, (b"too large".to_vec(), 0, 0));
        assert_eq!(response(&mut reader, 2).await, (b"too large".to_vec(), 0, 0));
        drop(reader);
        drop(client);
        server.result().await.unwrap();
    }

    /// Output sent while the job runs comes in records of at most 65535
    /// bytes, before the tail; the socket's small buffer forces the job to
    /// wait for the reader (on another thread: the job blocks its own).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_output_is_split_into_records_of_at_most_65535_bytes() {
        let (mut client, server) = start(Echo {
            output: 3_000_000,
            ..Echo::default()
        });
        client.write_all(&request(1, 0, &[], b"")).await.unwrap();
        let (out, app, _) = response(&mut RecordReader::new(&mut client), 1).await;
        assert_eq!(app, 7);
        assert_eq!(out.len(), 3_000_000 + "stdin 0 0\n".len());
        assert!(out[..3_000_000].iter().all(|&b| b == b'z'));
        drop(client);
        server.result().await.unwrap();
    }

    /// A connection that never speaks is closed after FIRST_REQUEST_WITHIN;
    /// one that served a request may idle far longer.
    #[tokio::test(start_paused = true)]
    async fn silent_connections_are_closed() {
        let (mut silent, server) = start(Echo::default());
        tokio::time::sleep(FIRST_REQUEST_WITHIN + Duration::from_secs(1)).await;
        assert!(at_eof(&mut silent).await);
        server.result().await.unwrap();

        let (mut kept, server) = start(Echo::default());
        kept.write_all(&request(1, KEEP_CONN, &[], b"")).await.unwrap();
        assert_eq!(response(&mut RecordReader::new(&mut kept), 1).await.0, b"stdin 0 0\n");
        tokio::time::sleep(FIRST_REQUEST_WITHIN * 3).await;
        kept.write_all(&request(1, 0, &[], b"")).await.unwrap();
        assert_eq!(response(&mut RecordReader::new(&mut kept), 1).await.0, b"stdin 0 0\n");
        server.result().await.unwrap();
    }

    /// A request whose input stalls, or trickles on for too long, closes the
    /// connection (slowloris); its job never runs.
    #[tokio::test(start_paused = true)]
    async fn stalled_or_trickling_input_closes_the_connection() {
        let echo = Echo::default();
        let runs = echo.runs.clone();
        let (mut stalled, server) = start(echo);
        stalled.write_all(&head(1, 0, &[])).await.unwrap();
        tokio::time::sleep(INPUT_PAUSE + Duration::from_secs(1)).await;
        assert!(at_eof(&mut stalled).await);
        assert!(matches!(server.result().await, Err(Error::Slow { id: 1 })));

        // PARAMS a record at a time, each well within the pause.
        let (mut trickle, server) = start(Echo::default());
        trickle.write_all(&begin(1, ROLE_RESPONDER, 0)).await.unwrap();
        let mut closed = false;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if trickle
                .write_all(&rec(kind::PARAMS, 1, &pairs(&[(b"A", b"b")])))
                .await
                .is_err()
            {
                closed = true;
                break;
            }
        }
        assert!(closed || at_eof(&mut trickle).await);
        assert!(matches!(server.result().await, Err(Error::Slow { id: 1 })));
        assert!(runs.lock().unwrap().is_empty());
    }

    /// A stop closes idle connections at once, and lets a request whose body
    /// is arriving finish first.
    #[tokio::test]
    async fn stop_closes_idle_connections_and_lets_requests_finish() {
        let (mut idle, idle_server) = start(Echo::default());
        idle_server.stop.send_replace(true);
        assert!(at_eof(&mut idle).await);
        idle_server.result().await.unwrap();

        let (mut busy, busy_server) = start(Echo::default());
        busy.write_all(&head(1, KEEP_CONN, &[])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        busy_server.stop.send_replace(true);
        busy.write_all(&rec(kind::STDIN, 1, &[])).await.unwrap();
        let mut reader = RecordReader::new(&mut busy);
        assert_eq!(response(&mut reader, 1).await.0, b"stdin 0 0\n");
        assert!(reader.next().await.unwrap().is_none());
        drop(reader);
        busy_server.result().await.unwrap();
    }
}
