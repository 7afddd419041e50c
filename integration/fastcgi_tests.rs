//! Raw FastCGI records against the daemon's socket: framing, keep-alive,
//! management records, protocol errors, PARAMS decoding and its limits.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::fcgi::{
    self, ABORT_REQUEST, AUTHORIZER, BEGIN_REQUEST, CANT_MPX_CONN, DATA, END_REQUEST, FILTER, GET_VALUES,
    GET_VALUES_RESULT, KEEP_CONN, PARAMS, Params, REQUEST_COMPLETE, RESPONDER, STDIN, STDOUT, State, UNKNOWN_ROLE,
    UNKNOWN_TYPE, begin, pair, record, record_padded,
};
use crate::support::fixture::MAX_CONNECTIONS;
use crate::support::{Fixture, cases_body, lines_starting, pseudo_random, tests};

tests! {
    Shared minimal_request_ends_and_closes_without_keep_conn,
    Shared keep_conn_serves_id_1_twice,
    Shared keep_conn_serves_ids_1_2_and_65535,
    Shared pipelined_request_with_another_id_is_served_after_the_first,
    Shared pipelined_request_with_the_same_id_is_served_after_the_first,
    Shared full_duplex_echo_of_10_mib,
    Shared get_values_reports_the_configured_caps,
    Shared unknown_management_type_gets_unknown_type,
    Shared second_begin_while_active_gets_cant_mpx_conn,
    Shared unknown_roles_get_unknown_role,
    Shared app_status_is_the_exit_code,
    Shared large_output_comes_in_bounded_aligned_records,
    Shared trap_after_headers_truncates_without_end_request,
    Shared bad_version_closes_only_that_connection,
    Shared begin_request_without_content_closes_the_connection,
    Shared begin_request_on_id_0_closes_the_connection,
    Shared pair_split_across_records_is_decoded,
    Shared request_sent_a_byte_at_a_time_is_served,
    Shared padding_on_every_record_is_ignored,
    Shared records_for_inactive_requests_are_ignored,
    Shared records_smuggled_in_stdin_are_plain_data,
    Shared data_record_in_a_responder_request_does_not_hang,
    Shared unread_body_is_skipped_and_the_connection_reused,
    Shared thousands_of_params_pass,
    Shared too_many_params_get_431,
    Serial huge_claimed_param_length_closes_without_allocating,
    Serial params_over_the_limit_get_431,
}

const HELLO_STDOUT: &str = "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, raw!\n";

fn hello() -> Params {
    Params::get("/hello", "name=raw")
}

/// The daemon still answers a fresh request.
fn assert_serving(f: &Fixture) {
    let ex = f.fcgi(&hello(), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT, "{}", ex.summary());
}

fn minimal_request_ends_and_closes_without_keep_conn(f: &Fixture) {
    let mut conn = f.conn();
    let ex = conn.exchange(1, 0, &hello(), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT);
    assert_eq!(
        ex.ended(),
        fcgi::End {
            app_status: 0,
            protocol_status: REQUEST_COMPLETE
        }
    );
    // STDOUT ends with its empty record, just before END_REQUEST (§6.2).
    let n = ex.records.len();
    assert!(n >= 3, "{}", ex.summary());
    assert_eq!((ex.records[n - 2].kind, ex.records[n - 2].content.len()), (STDOUT, 0));
    assert!(ex.records.iter().all(|r| r.id == 1), "{}", ex.summary());
    assert_eq!(conn.state(Duration::from_secs(5)), State::Closed);
}

fn keep_conn_serves_id_1_twice(f: &Fixture) {
    let mut conn = f.conn();
    for round in 0..2 {
        let ex = conn.exchange(1, KEEP_CONN, &hello(), b"");
        assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT, "round {round}");
        assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
    }
    assert_eq!(conn.state(Duration::from_millis(300)), State::Open);
}

fn keep_conn_serves_ids_1_2_and_65535(f: &Fixture) {
    let mut conn = f.conn();
    for id in [1, 2, 65535, 3] {
        let ex = conn.exchange(id, KEEP_CONN, &Params::get("/hello", &format!("name=id{id}")), b"");
        let want = format!("Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, id{id}!\n");
        assert_eq!(String::from_utf8_lossy(&ex.stdout), want, "id {id}");
        assert!(ex.records.iter().all(|r| r.id == id), "id {id}: {}", ex.summary());
    }
    // The last request without KEEP_CONN: the daemon closes after it.
    let ex = conn.exchange(4, 0, &hello(), b"");
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
    assert_eq!(conn.state(Duration::from_secs(5)), State::Closed);
}

/// Two requests in one write, the second with id 2 while the first runs:
/// the worker reads nothing while a guest runs, so the second is served after
/// the first ends (conformance.md 9.5 #66, the non-multiplexing answer).
fn pipelined_request_with_another_id_is_served_after_the_first(f: &Fixture) {
    let mut conn = f.conn();
    let mut bytes = fcgi::request(1, KEEP_CONN, &Params::get("/cases", "sleep=200"), b"");
    bytes.extend(fcgi::request(2, KEEP_CONN, &Params::get("/hello", "name=second"), b""));
    conn.send(&bytes);
    let first = conn.response(1);
    assert_eq!(first.cgi().text(), "slept\n", "{}", first.summary());
    assert_eq!(first.ended().protocol_status, REQUEST_COMPLETE);
    let second = conn.response(2);
    assert_eq!(second.ended().protocol_status, REQUEST_COMPLETE, "{}", second.summary());
    assert_eq!(second.cgi().text(), "Hello, second!\n", "{}", second.summary());
}

/// Two keep-alive requests, both id 1 (as nginx and Apache number them), in
/// one write: both served in order (conformance.md 9.1 #6, 9.5 #66). Commit
/// e8e53b0 failed this: it took the second BEGIN_REQUEST for a protocol error
/// ("record type 1 is not valid for request 1 at this point") and closed the
/// connection, losing the first request's response too.
fn pipelined_request_with_the_same_id_is_served_after_the_first(f: &Fixture) {
    let mut conn = f.conn();
    let mut bytes = fcgi::request(1, KEEP_CONN, &Params::get("/hello", "name=first"), b"");
    bytes.extend(fcgi::request(
        1,
        KEEP_CONN,
        &Params::get("/c/hello", "name=second"),
        b"",
    ));
    conn.send(&bytes);
    let first = conn.response(1);
    assert_eq!(
        first.end.map(|e| e.protocol_status),
        Some(REQUEST_COMPLETE),
        "first: {}",
        first.summary()
    );
    assert_eq!(first.cgi().text(), "Hello, first!\n", "{}", first.summary());
    let second = conn.response(1);
    assert_eq!(second.cgi().text(), "Hello, second!\n", "{}", second.summary());
}

/// A 10 MiB body sent while the response is read: the daemon spools the body
/// (to a file past 1 MiB) before echo starts, then streams echo's output.
fn full_duplex_echo_of_10_mib(f: &Fixture) {
    let body = pseudo_random(10 << 20, 0xd0);
    let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", body.len().to_string());
    let bytes = fcgi::request(1, 0, &params, &body);
    let mut conn = f.conn();
    let mut writer = conn.writer();
    let ex = std::thread::scope(|s| {
        let written = s.spawn(move || writer.write_all(&bytes));
        let ex = conn.response(1);
        written.join().expect("writer thread").expect("send the request");
        ex
    });
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
    let echoed = ex.cgi().body;
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "echoed body differs");
}

fn get_values_reports_the_configured_caps(f: &Fixture) {
    let query: Vec<u8> = [
        pair(b"FCGI_MAX_CONNS", b"", false),
        pair(b"FCGI_MAX_REQS", b"", false),
        pair(b"FCGI_MPXS_CONNS", b"", false),
        pair(b"FCGI_NO_SUCH_VALUE", b"", false),
    ]
    .concat();
    let want = vec![
        ("FCGI_MAX_CONNS".to_string(), MAX_CONNECTIONS.to_string()),
        ("FCGI_MAX_REQS".to_string(), MAX_CONNECTIONS.to_string()),
        ("FCGI_MPXS_CONNS".to_string(), "0".to_string()),
    ];
    let mut conn = f.conn();
    // On a fresh connection, with no request following.
    conn.send(&record(GET_VALUES, 0, &query));
    let rec = conn.read_record().expect("GET_VALUES_RESULT");
    assert_eq!((rec.kind, rec.id), (GET_VALUES_RESULT, 0));
    assert_eq!(fcgi::decode_pairs(&rec.content), want);
    // Between keep-alive requests too.
    let ex = conn.exchange(1, KEEP_CONN, &hello(), b"");
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
    conn.send(&record(GET_VALUES, 0, &query));
    let rec = conn.read_record().expect("GET_VALUES_RESULT");
    assert_eq!((rec.kind, fcgi::decode_pairs(&rec.content)), (GET_VALUES_RESULT, want));
}

fn unknown_management_type_gets_unknown_type(f: &Fixture) {
    let mut conn = f.conn();
    conn.send(&record(42, 0, b"whatever"));
    let rec = conn.read_record().expect("UNKNOWN_TYPE");
    assert_eq!((rec.kind, rec.id), (UNKNOWN_TYPE, 0));
    assert_eq!(rec.content, [42, 0, 0, 0, 0, 0, 0, 0]);
    // The connection is still good.
    let ex = conn.exchange(1, 0, &hello(), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT);
}

/// A BEGIN_REQUEST with another id while the active request's body is still
/// arriving: §5.5's CANT_MPX_CONN, the active request unaffected
/// (conformance.md #13).
fn second_begin_while_active_gets_cant_mpx_conn(f: &Fixture) {
    let mut conn = f.conn();
    let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", "6");
    let mut bytes = begin(1, RESPONDER, KEEP_CONN);
    bytes.extend(record(PARAMS, 1, &params.encode()));
    bytes.extend(record(PARAMS, 1, b""));
    bytes.extend(record(STDIN, 1, b"abc"));
    conn.send(&bytes);
    conn.send(&begin(2, RESPONDER, KEEP_CONN));
    let rec = conn.read_record().expect("a record");
    assert_eq!((rec.kind, rec.id), (END_REQUEST, 2), "{rec:?}");
    assert_eq!(rec.end().protocol_status, CANT_MPX_CONN);
    // Management records are answered mid-request too.
    conn.send(&record(GET_VALUES, 0, &pair(b"FCGI_MPXS_CONNS", b"", false)));
    let rec = conn.read_record().expect("a record");
    assert_eq!((rec.kind, rec.id), (GET_VALUES_RESULT, 0), "{rec:?}");
    assert_eq!(
        fcgi::decode_pairs(&rec.content),
        vec![("FCGI_MPXS_CONNS".into(), "0".into())]
    );
    // The active request is unaffected.
    let mut bytes = record(STDIN, 1, b"def");
    bytes.extend(record(STDIN, 1, b""));
    conn.send(&bytes);
    let ex = conn.response(1);
    assert_eq!(ex.cgi().body, b"abcdef", "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
    // And the connection serves the next one.
    let ex = conn.exchange(2, 0, &hello(), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT);
}

fn unknown_roles_get_unknown_role(f: &Fixture) {
    for role in [AUTHORIZER, FILTER, 9] {
        let mut conn = f.conn();
        conn.send(&begin(1, role, 0));
        let rec = conn
            .read_record()
            .unwrap_or_else(|| panic!("role {role}: closed without END_REQUEST"));
        assert_eq!((rec.kind, rec.id), (END_REQUEST, 1), "role {role}");
        assert_eq!(rec.end().protocol_status, UNKNOWN_ROLE, "role {role}");
        assert_eq!(conn.state(Duration::from_secs(5)), State::Closed, "role {role}");
    }
    // With KEEP_CONN the connection stays usable.
    let mut conn = f.conn();
    conn.send(&begin(1, 9, KEEP_CONN));
    assert_eq!(
        conn.read_record().expect("END_REQUEST").end().protocol_status,
        UNKNOWN_ROLE
    );
    let ex = conn.exchange(1, 0, &hello(), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT);
}

fn app_status_is_the_exit_code(f: &Fixture) {
    let ex = f.fcgi(&Params::get("/cases", "exit-after-body=7"), b"");
    assert_eq!(ex.ended().app_status, 7);
    assert_eq!(ex.cgi().header("Content-Type"), Some("text/plain"));
    assert_eq!((ex.cgi().status, ex.cgi().text().as_str()), (200, "partial\n"));
    let ex = f.fcgi(&Params::get("/cases", "ok"), b"");
    assert_eq!(ex.ended().app_status, 0);
    let ex = f.fcgi(&Params::get("/cases", "exit=3"), b"");
    assert_eq!((ex.ended().app_status, ex.cgi().status), (3, 502));
    let ex = f.fcgi(&Params::get("/cases", "trap"), b"");
    assert_eq!((ex.ended().app_status, ex.cgi().status), (134, 502));
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
}

fn large_output_comes_in_bounded_aligned_records(f: &Fixture) {
    let ex = f.fcgi(&Params::get("/cases", "body=300000"), b"");
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
    let stdout: Vec<_> = ex.records.iter().filter(|r| r.kind == STDOUT).collect();
    assert!(stdout.len() >= 6, "300000 bytes in {} STDOUT records", stdout.len());
    for r in &stdout {
        assert!(r.content.len() <= 65535);
        assert_eq!((r.content.len() + r.padding) % 8, 0, "record not 8-byte aligned");
    }
    assert!(ex.cgi().body == cases_body(300_000), "body differs from i % 251");
}

fn trap_after_headers_truncates_without_end_request(f: &Fixture) {
    let mut conn = f.conn();
    let ex = conn.exchange(1, KEEP_CONN, &Params::get("/cases", "trap-after-body"), b"");
    assert!(ex.closed, "{}", ex.summary());
    assert_eq!(ex.end, None, "a trap must not end as a complete request");
    let stdout = String::from_utf8_lossy(&ex.stdout);
    assert!(stdout.starts_with("Status: 200 OK\r\n"), "{stdout:?}");
    assert!(stdout.ends_with("partial\n"), "{stdout:?}");
    assert_serving(f);
}

/// Sends `bad` on a connection of its own while another connection runs a
/// request: `bad`'s connection closes, the other completes, the daemon serves.
fn assert_closes_only_its_connection(f: &Fixture, bad: &[u8]) {
    let mut good = f.conn();
    good.send(&fcgi::request(1, 0, &Params::get("/cases", "sleep=200"), b""));
    let mut conn = f.conn();
    // The daemon may close before it has read everything: a failed write is fine.
    let _ = conn.try_send(bad);
    let started = Instant::now();
    loop {
        match conn.state(Duration::from_secs(5)) {
            State::Closed => break,
            State::Open => panic!("connection still open 5 s after {bad:?}"),
            // An error reply (END_REQUEST) before the close is allowed.
            State::Data(_) => assert!(started.elapsed() < Duration::from_secs(5), "endless data"),
        }
    }
    let ex = good.response(1);
    assert_eq!(ex.cgi().text(), "slept\n", "{}", ex.summary());
    assert_serving(f);
}

fn bad_version_closes_only_that_connection(f: &Fixture) {
    let mut bad = begin(1, RESPONDER, 0);
    bad[0] = 2;
    assert_closes_only_its_connection(f, &bad);
    // Version 0 in the middle of a request, too.
    let mut bad = begin(1, RESPONDER, 0);
    let mut params = record(PARAMS, 1, &Params::get("/hello", "").encode());
    params[0] = 0;
    bad.extend(params);
    assert_closes_only_its_connection(f, &bad);
}

fn begin_request_without_content_closes_the_connection(f: &Fixture) {
    assert_closes_only_its_connection(f, &record(BEGIN_REQUEST, 1, b""));
    assert_closes_only_its_connection(f, &record(BEGIN_REQUEST, 1, &[0, 1, 0]));
}

fn begin_request_on_id_0_closes_the_connection(f: &Fixture) {
    assert_closes_only_its_connection(f, &begin(0, RESPONDER, 0));
}

fn pair_split_across_records_is_decoded(f: &Fixture) {
    let value = "v".repeat(300);
    let mut stream = Params::get("/env", "").with("X_SHORT", "short").encode();
    let long_at = stream.len();
    // 4-byte value length: name length (1 byte), value length (4 bytes).
    stream.extend(pair(b"X_SPLIT_LONG", value.as_bytes(), false));
    stream.extend(pair(b"X_FORCED_LONG", b"four-byte lengths", true));
    // Cut inside X_SHORT's name, inside X_SPLIT_LONG's 4-byte length, and
    // inside X_FORCED_LONG's 4-byte name length.
    let short_at = long_at - 10;
    let cuts = [short_at, long_at + 3, long_at + 5 + 12 + 300 + 2, stream.len()];
    let mut bytes = begin(1, RESPONDER, 0);
    let mut from = 0;
    for cut in cuts {
        bytes.extend(record(PARAMS, 1, &stream[from..cut]));
        from = cut;
    }
    bytes.extend(record(PARAMS, 1, b""));
    bytes.extend(record(STDIN, 1, b""));
    let mut conn = f.conn();
    conn.send(&bytes);
    let ex = conn.response(1);
    let env = ex.cgi().text();
    assert_eq!(
        lines_starting(&env, "X_SHORT="),
        vec!["X_SHORT=short"],
        "{}",
        ex.summary()
    );
    assert_eq!(
        lines_starting(&env, "X_SPLIT_LONG="),
        vec![format!("X_SPLIT_LONG={value}")]
    );
    assert_eq!(
        lines_starting(&env, "X_FORCED_LONG="),
        vec!["X_FORCED_LONG=four-byte lengths"]
    );
}

fn request_sent_a_byte_at_a_time_is_served(f: &Fixture) {
    let mut conn = f.conn();
    let bytes = fcgi::request(
        1,
        0,
        &Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", "5"),
        b"12345",
    );
    for b in &bytes {
        conn.send(std::slice::from_ref(b));
    }
    let ex = conn.response(1);
    assert_eq!(ex.cgi().text(), "12345", "{}", ex.summary());
}

fn padding_on_every_record_is_ignored(f: &Fixture) {
    let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", "6").encode();
    let (half, rest) = params.split_at(params.len() / 2);
    let mut bytes = record_padded(BEGIN_REQUEST, 1, &[0, 1, 0, 0, 0, 0, 0, 0], 7);
    bytes.extend(record_padded(PARAMS, 1, half, 255));
    bytes.extend(record_padded(PARAMS, 1, rest, 1));
    bytes.extend(record_padded(PARAMS, 1, b"", 8));
    bytes.extend(record_padded(STDIN, 1, b"abc", 5));
    bytes.extend(record_padded(STDIN, 1, b"def", 200));
    bytes.extend(record_padded(STDIN, 1, b"", 3));
    let mut conn = f.conn();
    conn.send(&bytes);
    let ex = conn.response(1);
    assert_eq!(ex.cgi().text(), "abcdef", "{}", ex.summary());
}

/// A body that holds FastCGI records (another request, an END_REQUEST) is
/// the body, byte for byte: nothing in it is taken for a record
/// (conformance.md #74).
fn records_smuggled_in_stdin_are_plain_data(f: &Fixture) {
    let mut smuggled = fcgi::request(2, 0, &Params::get("/cases", "trap"), b"");
    smuggled.extend(record(END_REQUEST, 1, &[0, 0, 0, 0, 0, 0, 0, 0]));
    let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", smuggled.len().to_string());
    let mut conn = f.conn();
    let ex = conn.exchange(1, KEEP_CONN, &params, &smuggled);
    assert_eq!(ex.cgi().body, smuggled, "{}", ex.summary());
    assert!(ex.records.iter().all(|r| r.id == 1), "{}", ex.summary());
    let ex = conn.exchange(1, 0, &hello(), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT);
}

fn records_for_inactive_requests_are_ignored(f: &Fixture) {
    let mut conn = f.conn();
    conn.send(&record(STDIN, 9, b"stray body"));
    conn.send(&record(ABORT_REQUEST, 9, b""));
    conn.send(&record(PARAMS, 9, &Params::get("/cases", "trap").encode()));
    let ex = conn.exchange(
        1,
        0,
        &Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", "4"),
        b"mine",
    );
    assert_eq!(ex.cgi().text(), "mine", "{}", ex.summary());
}

fn data_record_in_a_responder_request_does_not_hang(f: &Fixture) {
    let mut conn = f.conn();
    let mut bytes = begin(1, RESPONDER, 0);
    bytes.extend(record(PARAMS, 1, &Params::get("/hello", "").encode()));
    bytes.extend(record(PARAMS, 1, b""));
    bytes.extend(record(DATA, 1, b"filter data"));
    bytes.extend(record(STDIN, 1, b""));
    let _ = conn.try_send(&bytes);
    let started = Instant::now();
    // Either an END_REQUEST or a close, within a few seconds; never silence.
    loop {
        match conn.state(Duration::from_secs(5)) {
            State::Closed => break,
            State::Open => panic!("no answer and no close 5 s after a DATA record"),
            State::Data(d) if d.windows(2).any(|w| w == [1, END_REQUEST]) => break,
            State::Data(_) => assert!(started.elapsed() < Duration::from_secs(5)),
        }
    }
    assert_serving(f);
}

fn huge_claimed_param_length_closes_without_allocating(f: &Fixture) {
    let before = f.daemon.rss_kib();
    for _ in 0..20 {
        let mut conn = f.conn();
        let mut bytes = begin(1, RESPONDER, 0);
        // Name length 0x7fffffff, value length 1, then one byte.
        bytes.extend(record(PARAMS, 1, &[0xff, 0xff, 0xff, 0xff, 0x01, b'a']));
        bytes.extend(record(PARAMS, 1, b""));
        bytes.extend(record(STDIN, 1, b""));
        let _ = conn.try_send(&bytes);
        let started = Instant::now();
        match conn.state(Duration::from_secs(3)) {
            State::Closed => {}
            other => panic!("expected a close, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed after {:?}",
            started.elapsed()
        );
    }
    let after = f.daemon.rss_kib();
    assert!(
        after < before + 64 * 1024,
        "daemon RSS grew from {before} KiB to {after} KiB"
    );
    assert_serving(f);
}

fn params_over_the_limit_get_431(f: &Fixture) {
    let before = f.daemon.rss_kib();
    let mut conn = f.conn();
    let mut bytes = begin(1, RESPONDER, 0);
    bytes.extend(record(PARAMS, 1, &Params::get("/hello", "").encode()));
    // 1.5 MiB of cookie in 24 records: over the daemon's 1 MiB cap.
    let cookie = vec![b'c'; 1536 * 1024];
    bytes.extend(fcgi::stream(PARAMS, 1, &pair(b"HTTP_COOKIE", &cookie, false)));
    bytes.extend(record(PARAMS, 1, b""));
    bytes.extend(record(STDIN, 1, b""));
    conn.send(&bytes);
    let ex = conn.response(1);
    assert_eq!(ex.cgi().status, 431, "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
    let after = f.daemon.rss_kib();
    assert!(
        after < before + 64 * 1024,
        "daemon RSS grew from {before} KiB to {after} KiB"
    );
    assert_serving(f);
}

/// The guest answers without reading its 10 MiB body: the rest of STDIN is
/// skipped, and the connection serves the next request.
fn unread_body_is_skipped_and_the_connection_reused(f: &Fixture) {
    let body = pseudo_random(10 << 20, 0x1d);
    let params = Params::cgi("POST", "/cases", "stdin-ignore").with("CONTENT_LENGTH", body.len().to_string());
    let bytes = fcgi::request(1, KEEP_CONN, &params, &body);
    let mut conn = f.conn();
    let mut writer = conn.writer();
    let ex = std::thread::scope(|s| {
        let written = s.spawn(move || writer.write_all(&bytes));
        let ex = conn.response(1);
        written.join().expect("writer thread").expect("send the request");
        ex
    });
    assert_eq!(ex.cgi().text(), "ignored\n", "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
    let ex = conn.exchange(1, 0, &hello(), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT, "{}", ex.summary());
}

fn thousands_of_params_pass(f: &Fixture) {
    let mut params = Params::get("/env", "");
    for i in 0..5000 {
        params = params.with(format!("X_P_{i}"), format!("v{i}"));
    }
    let ex = f.fcgi(&params, b"");
    let env = ex.cgi().text();
    assert_eq!(lines_starting(&env, "X_P_").len(), 5000, "{}", ex.summary());
    assert_eq!(lines_starting(&env, "X_P_4999="), vec!["X_P_4999=v4999"]);
}

fn too_many_params_get_431(f: &Fixture) {
    let mut params = Params::get("/env", "");
    for i in 0..10_001 {
        params = params.with(format!("X_P_{i}"), "v");
    }
    let ex = f.fcgi(&params, b"");
    assert_eq!(ex.cgi().status, 431, "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
}
