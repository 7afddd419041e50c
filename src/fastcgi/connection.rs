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
    /// The last STDOUT bytes (possibly none) and the request's end, in one
    /// message so that a short response costs one wake-up and one write.
    End {
        stdout: Bytes,
        app_status: u32,
    },
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
    /// The empty STDIN record arrived: the peer has sent the whole request.
    input_ended: bool,
}

/// What the connection does after an event.
enum Next {
    Continue,
    /// A request without FCGI_KEEP_CONN ended: close, first reading what the
    /// peer still sends if `linger` (the request's input had not ended).
    Close {
        linger: bool,
    },
    /// Close at once (the peer left, or the response broke off).
    Drop,
}

/// Serves FastCGI requests from `reader`/`writer` until the peer closes, a
/// request without FCGI_KEEP_CONN ends, or the peer breaks the protocol.
pub async fn serve<R, W>(reader: R, writer: W, handler: &dyn Handler, caps: &Caps) -> Result<(), Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut conn = Connection {
        reader: RecordReader::new(reader),
        out: Output {
            writer,
            buf: BytesMut::new(),
        },
        handler,
        caps,
        current: None,
        stdin: None,
        pending_stdin: None,
        replies: None,
        deferred: None,
    };
    loop {
        let next = tokio::select! {
            biased;
            reply = next_reply(&mut conn.replies) => conn.on_reply(reply).await?,
            permit = reserve(&conn.stdin), if conn.pending_stdin.is_some() => conn.on_stdin_room(permit),
            record = next_record(&mut conn.reader, &mut conn.deferred), if conn.reading() => match record? {
                Some(record) => conn.on_record(record).await?,
                None => Next::Drop,
            },
        };
        match next {
            Next::Continue => {}
            Next::Close { linger } => return conn.out.close(conn.reader, linger).await,
            // Dropping the channels cancels a running request.
            Next::Drop => return Ok(()),
        }
    }
}

struct Connection<'a, R, W> {
    reader: RecordReader<R>,
    out: Output<W>,
    handler: &'a dyn Handler,
    caps: &'a Caps,
    current: Option<Current>,
    // Channels of the running request; `None` when there is none, or when
    // that direction has finished.
    stdin: Option<mpsc::Sender<Bytes>>,
    /// A STDIN chunk waiting for room in the handler's queue; reading pauses
    /// meanwhile.
    pending_stdin: Option<Bytes>,
    replies: Option<mpsc::Receiver<Reply>>,
    /// A pipelined BEGIN_REQUEST reusing the current id, held until the
    /// current request ends; reading pauses meanwhile.
    deferred: Option<Record>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Connection<'_, R, W> {
    fn reading(&self) -> bool {
        self.pending_stdin.is_none() && (self.deferred.is_none() || self.current.is_none())
    }

    async fn on_reply(&mut self, reply: Option<Reply>) -> Result<Next, Error> {
        let id = self.current.as_ref().expect("replies belong to the current request").id;
        let Some(reply) = reply else {
            tracing::warn!("response ended without END_REQUEST; closing the connection");
            self.out.flush().await?;
            return Ok(Next::Drop);
        };
        let ended = self.out.put_reply(id, reply, self.replies.as_mut());
        self.out.flush().await?;
        Ok(if ended { self.end_request() } else { Next::Continue })
    }

    /// The current request is over: forget it and its channels.
    fn end_request(&mut self) -> Next {
        let (keep_conn, input_ended) = self
            .current
            .take()
            .map_or((false, false), |c| (c.keep_conn, c.input_ended));
        (self.stdin, self.pending_stdin, self.replies) = (None, None, None);
        if keep_conn {
            Next::Continue
        } else {
            Next::Close { linger: !input_ended }
        }
    }

    fn on_stdin_room(&mut self, permit: Option<mpsc::OwnedPermit<Bytes>>) -> Next {
        match permit {
            Some(permit) => {
                permit.send(self.pending_stdin.take().expect("guarded"));
            }
            // The handler stopped reading its body: drop the rest.
            None => (self.stdin, self.pending_stdin) = (None, None),
        }
        Next::Continue
    }

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
                if self.current.as_ref().is_some_and(|c| c.params.is_some()) {
                    return Err(unexpected);
                }
                if record.content.is_empty() {
                    self.current.as_mut().expect("active").input_ended = true;
                }
                self.on_stdin(record.content);
                Ok(Next::Continue)
            }
            kind::ABORT_REQUEST if active => {
                put_end_request(
                    &mut self.out.buf,
                    record.id,
                    ABORTED_APP_STATUS,
                    status::REQUEST_COMPLETE,
                );
                self.out.flush().await?;
                Ok(self.end_request())
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
            Some(cur) if cur.id == record.id => {
                // Pipelined after a complete request: served after it.
                // Before the request's input ended, it is nonsense.
                if cur.params.is_some() || self.stdin.is_some() {
                    return Err(Error::Unexpected {
                        kind: record.kind,
                        id: record.id,
                    });
                }
                self.deferred = Some(record);
                return Ok(Next::Continue);
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
                    params: Some(BytesMut::new()),
                    oversized: false,
                    input_ended: false,
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
        let response = match params {
            Some(params) => {
                let (tx, rx) = mpsc::channel(STDIN_QUEUE);
                self.stdin = Some(tx);
                self.handler.start(Request { params, stdin: rx })
            }
            None => self.handler.params_too_large(),
        };
        match response {
            Response::Streaming(rx) => {
                self.replies = Some(rx);
                Ok(Next::Continue)
            }
            Response::Complete { stdout, app_status } => {
                let id = cur.id;
                self.out.put_reply(id, Reply::End { stdout, app_status }, None);
                self.out.flush().await?;
                Ok(self.end_request())
            }
        }
    }

    /// Passes a STDIN chunk on; the empty record ends the stream (§5.3).
    fn on_stdin(&mut self, content: Bytes) {
        if content.is_empty() {
            self.stdin = None;
        } else if let Some(tx) = &self.stdin {
            match tx.try_send(content) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(chunk)) => self.pending_stdin = Some(chunk),
                Err(mpsc::error::TrySendError::Closed(_)) => self.stdin = None,
            }
        }
    }
}

async fn next_record<R: AsyncRead + Unpin>(
    reader: &mut RecordReader<R>,
    deferred: &mut Option<Record>,
) -> Result<Option<Record>, Error> {
    match deferred.take() {
        Some(record) => Ok(Some(record)),
        None => reader.next().await,
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
                Reply::End { stdout, app_status } => {
                    put_stream(&mut self.buf, kind::STDOUT, id, &stdout);
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

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::{Notify, mpsc};

    use super::super::params::put_pair;
    use super::super::record::{RecordReader, put_record};
    use super::*;

    const CAPS: Caps = Caps {
        max_conns: 7,
        max_reqs: 5,
        max_params_bytes: 4096,
        max_params: 50,
    };

    /// Answers with its params (`name=value` lines) and the length and
    /// checksum of its body. With `hold`, it reads no body until notified.
    #[derive(Default)]
    struct Echo {
        hold: Option<Arc<Notify>>,
    }

    impl Handler for Echo {
        fn start(&self, mut request: Request) -> Response {
            let (tx, rx) = mpsc::channel(4);
            let hold = self.hold.clone();
            tokio::spawn(async move {
                if let Some(hold) = hold {
                    hold.notified().await;
                }
                let mut out = String::new();
                for (n, v) in request.params.iter() {
                    out += &format!("{}={}\n", String::from_utf8_lossy(n), String::from_utf8_lossy(v));
                }
                let (mut len, mut sum) = (0usize, 0u64);
                while let Some(chunk) = request.stdin.recv().await {
                    len += chunk.len();
                    sum = chunk
                        .iter()
                        .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
                }
                out += &format!("stdin {len} {sum}\n");
                let _ = tx
                    .send(Reply::End {
                        stdout: Bytes::from(out),
                        app_status: 7,
                    })
                    .await;
            });
            Response::Streaming(rx)
        }

        fn params_too_large(&self) -> Response {
            Response::Complete {
                stdout: Bytes::from_static(b"too large"),
                app_status: 431,
            }
        }
    }

    fn start(handler: Echo) -> (DuplexStream, tokio::task::JoinHandle<Result<(), Error>>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            let (r, w) = tokio::io::split(server);
            serve(r, w, &*handler, &CAPS).await
        });
        (client, task)
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

    /// A whole request: BEGIN, PARAMS, empty PARAMS, STDIN, empty STDIN.
    fn request(id: u16, flags: u8, params: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
        let mut out = begin(id, ROLE_RESPONDER, flags);
        if !params.is_empty() {
            out.extend(rec(kind::PARAMS, id, &pairs(params)));
        }
        out.extend(rec(kind::PARAMS, id, &[]));
        for chunk in body.chunks(65535) {
            out.extend(rec(kind::STDIN, id, chunk));
        }
        out.extend(rec(kind::STDIN, id, &[]));
        out
    }

    /// Reads records until END_REQUEST for `id`: (stdout, appStatus, protocolStatus).
    async fn response(reader: &mut RecordReader<&mut DuplexStream>, id: u16) -> (Vec<u8>, u32, u8) {
        let mut stdout = Vec::new();
        loop {
            let r = reader.next().await.unwrap().expect("END_REQUEST before EOF");
            assert_eq!(r.id, id, "record for another request: {r:?}");
            match r.kind {
                kind::STDOUT => stdout.extend_from_slice(&r.content),
                kind::END_REQUEST => {
                    let c = &r.content;
                    return (stdout, u32::from_be_bytes([c[0], c[1], c[2], c[3]]), c[4]);
                }
                other => panic!("unexpected record type {other}"),
            }
        }
    }

    async fn at_eof(client: &mut DuplexStream) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn serves_a_request_and_keeps_the_connection() {
        let (mut client, task) = start(Echo::default());
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
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn without_keep_conn_the_server_closes_after_the_response() {
        let (mut client, task) = start(Echo::default());
        client.write_all(&request(65535, 0, &[], b"")).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        let (_, app, _) = response(&mut reader, 65535).await;
        assert_eq!(app, 7);
        assert!(reader.next().await.unwrap().is_none());
        drop(reader);
        drop(client);
        task.await.unwrap().unwrap();
    }

    // tokio-fastcgi: panics on a BEGIN_REQUEST with no content.
    #[tokio::test]
    async fn begin_request_without_content_closes_the_connection() {
        let (mut client, task) = start(Echo::default());
        client.write_all(&rec(kind::BEGIN_REQUEST, 1, &[])).await.unwrap();
        assert!(at_eof(&mut client).await);
        assert!(matches!(task.await.unwrap(), Err(Error::BadBeginRequest(0))));
    }

    // tokio-fastcgi: allocates 2 GiB when a name length claims 0x7fffffff.
    #[tokio::test]
    async fn a_param_length_of_2_gib_closes_the_connection() {
        let (mut client, task) = start(Echo::default());
        let mut bytes = begin(1, ROLE_RESPONDER, 0);
        bytes.extend(rec(kind::PARAMS, 1, &[0xff, 0xff, 0xff, 0xff, 0x01, b'a', b'b']));
        bytes.extend(rec(kind::PARAMS, 1, &[]));
        client.write_all(&bytes).await.unwrap();
        assert!(at_eof(&mut client).await);
        assert!(matches!(task.await.unwrap(), Err(Error::Params(_))));
    }

    // tokio-fastcgi: drops the connection when a pair spans two PARAMS records.
    #[tokio::test]
    async fn a_pair_may_span_params_records_at_any_byte() {
        let value = vec![b'v'; 300]; // 4-byte value length
        let stream = pairs(&[(b"SPLIT_NAME", &value), (b"Z", b"z")]);
        // An empty record would end the stream, so cuts start at 1.
        for cut in 1..stream.len() {
            let (mut client, task) = start(Echo::default());
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
            task.await.unwrap().unwrap();
        }
    }

    // tokio-fastcgi: closes instead of answering FCGI_UNKNOWN_ROLE.
    #[tokio::test]
    async fn unknown_roles_get_unknown_role_and_the_connection_stays() {
        let (mut client, task) = start(Echo::default());
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
        task.await.unwrap().unwrap();
    }

    // tokio-fastcgi: lowercases every param name.
    #[tokio::test]
    async fn param_names_keep_their_case() {
        let (mut client, task) = start(Echo::default());
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
        task.await.unwrap().unwrap();
    }

    // tokio-fastcgi: buffers STDIN without limit.
    #[tokio::test]
    async fn stdin_waits_for_the_handler_instead_of_piling_up() {
        let hold = Arc::new(Notify::new());
        let (client, task) = start(Echo {
            hold: Some(hold.clone()),
        });
        let (mut rd, mut wr) = tokio::io::split(client);
        let sent = Arc::new(AtomicUsize::new(0));
        const BODY: usize = 16 << 20;
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut head = begin(1, ROLE_RESPONDER, 0);
                head.extend(rec(kind::PARAMS, 1, &[]));
                wr.write_all(&head).await.unwrap();
                let chunk = rec(kind::STDIN, 1, &[0xab; 65528]);
                while sent.load(Ordering::SeqCst) < BODY {
                    wr.write_all(&chunk).await.unwrap();
                    sent.fetch_add(65528, Ordering::SeqCst);
                }
                wr.write_all(&rec(kind::STDIN, 1, &[])).await.unwrap();
                wr
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Queue (8 records) + read buffer + the pipe's 64 KiB: well under 1 MiB.
        let stalled_at = sent.load(Ordering::SeqCst);
        assert!(
            stalled_at < 1 << 20,
            "the connection took {stalled_at} bytes of an unread body"
        );
        hold.notify_one();
        let _wr = writer.await.unwrap();
        let mut buf = Vec::new();
        let mut reader = RecordReader::new(&mut rd);
        while let Some(r) = reader.next().await.unwrap() {
            if r.kind == kind::STDOUT {
                buf.extend_from_slice(&r.content);
            }
            if r.kind == kind::END_REQUEST {
                break;
            }
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with(&format!("stdin {} ", BODY.div_ceil(65528) * 65528)),
            "{text}"
        );
        drop(reader);
        drop(rd);
        drop(_wr);
        task.await.unwrap().unwrap();
    }

    // tokio-fastcgi: advertises FCGI_MPXS_CONNS=1, then panics on concurrent writers.
    #[tokio::test]
    async fn get_values_tells_the_truth_and_a_second_request_is_refused() {
        let hold = Arc::new(Notify::new());
        let (mut client, task) = start(Echo {
            hold: Some(hold.clone()),
        });
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
        // Request 1 is running; request 2 must be refused, 1 unaffected.
        reader
            .io_mut()
            .write_all(&request(1, KEEP_CONN, &[(b"R", b"1")], b""))
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
        hold.notify_one();
        let (out, _, _) = response(&mut reader, 1).await;
        assert_eq!(String::from_utf8(out).unwrap(), "R=1\nstdin 0 0\n");
        drop(reader);
        drop(client);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn unknown_management_types_get_unknown_type() {
        let (mut client, task) = start(Echo::default());
        client.write_all(&rec(42, 0, b"whatever")).await.unwrap();
        let r = RecordReader::new(&mut client).next().await.unwrap().unwrap();
        assert_eq!(
            (r.kind, r.id, &r.content[..]),
            (kind::UNKNOWN_TYPE, 0, &[42, 0, 0, 0, 0, 0, 0, 0][..])
        );
        drop(client);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn padding_and_one_byte_writes_change_nothing() {
        let (mut client, task) = start(Echo::default());
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
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn pipelined_requests_in_one_write_are_served_in_order() {
        let (mut client, task) = start(Echo::default());
        let mut bytes = request(1, KEEP_CONN, &[(b"N", b"1")], b"");
        bytes.extend(request(1, 0, &[(b"N", b"2")], b"xy"));
        client.write_all(&bytes).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        assert_eq!(response(&mut reader, 1).await.0, b"N=1\nstdin 0 0\n");
        assert_eq!(response(&mut reader, 1).await.0, b"N=2\nstdin 2 3841\n");
        drop(reader);
        drop(client);
        task.await.unwrap().unwrap();
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
            let (mut client, task) = start(Echo::default());
            client.write_all(&bytes).await.unwrap();
            assert!(at_eof(&mut client).await, "{bytes:?}");
            assert!(task.await.unwrap().is_err(), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn records_for_other_requests_are_ignored() {
        let (mut client, task) = start(Echo::default());
        let mut bytes = rec(kind::STDIN, 9, b"stray");
        bytes.extend(rec(kind::PARAMS, 9, &pairs(&[(b"S", b"s")])));
        bytes.extend(request(1, 0, &[(b"A", b"b")], b""));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(
            response(&mut RecordReader::new(&mut client), 1).await.0,
            b"A=b\nstdin 0 0\n"
        );
        drop(client);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn abort_request_ends_the_request_at_once() {
        let hold = Arc::new(Notify::new());
        let (mut client, task) = start(Echo { hold: Some(hold) });
        let mut bytes = begin(1, ROLE_RESPONDER, KEEP_CONN);
        bytes.extend(rec(kind::PARAMS, 1, &[]));
        bytes.extend(rec(kind::ABORT_REQUEST, 1, &[]));
        client.write_all(&bytes).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        let r = reader.next().await.unwrap().unwrap();
        assert_eq!((r.kind, r.content[4]), (kind::END_REQUEST, status::REQUEST_COMPLETE));
        assert_eq!(
            u32::from_be_bytes(r.content[..4].try_into().unwrap()),
            ABORTED_APP_STATUS
        );
        // The connection is still good for the next request.
        reader.io_mut().write_all(&request(1, 0, &[], b"")).await.unwrap();
        drop(reader);
        drop(client);
        assert!(task.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn oversized_params_get_the_handlers_answer() {
        let (mut client, task) = start(Echo::default());
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
        assert_eq!(response(&mut reader, 1).await, (b"too large".to_vec(), 431, 0));
        assert_eq!(response(&mut reader, 2).await, (b"too large".to_vec(), 431, 0));
        drop(reader);
        drop(client);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn large_output_is_split_into_records_of_at_most_65535_bytes() {
        struct Big;
        impl Handler for Big {
            fn start(&self, _: Request) -> Response {
                Response::Complete {
                    stdout: Bytes::from(vec![b'z'; 200_000]),
                    app_status: 0,
                }
            }
            fn params_too_large(&self) -> Response {
                unreachable!()
            }
        }
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(async move {
            let (r, w) = tokio::io::split(server);
            serve(r, w, &Big, &CAPS).await
        });
        client.write_all(&request(1, 0, &[], b"")).await.unwrap();
        let mut reader = RecordReader::new(&mut client);
        let mut total = 0;
        loop {
            let r = reader.next().await.unwrap().unwrap();
            if r.kind == kind::END_REQUEST {
                break;
            }
            assert!(r.content.len() <= 65535);
            total += r.content.len();
        }
        assert_eq!(total, 200_000);
        drop(reader);
        task.await.unwrap().unwrap();
    }
}
