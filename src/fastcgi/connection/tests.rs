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
        let line = Arc::new(Line::new(server.as_fd().try_clone_to_owned().unwrap(), None));
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
