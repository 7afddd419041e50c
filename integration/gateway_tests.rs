//! CGI over raw FastCGI, where nginx would hide the details: what the guest
//! gets as its environment and body, which program a SCRIPT_NAME picks, and
//! the exact STDOUT the daemon makes of the guest's response.

use crate::support::fcgi::{self, PARAMS, Params, REQUEST_COMPLETE, RESPONDER, STDIN, begin, record};
use crate::support::{Fixture, lines_starting, tests};

tests! {
    Shared param_names_keep_case_last_wins_empty_is_absent,
    Shared http_proxy_param_is_dropped_in_any_case,
    Shared app_env_wins_over_params,
    Shared head_request_gets_no_body,
    Shared header_blocks_are_normalized,
    Shared stdin_without_content_length_is_read_to_its_end,
    Shared body_shorter_than_content_length_ends_at_stdin_end,
    Shared missing_method_or_bad_content_length_is_400,
    Shared unknown_script_name_is_404,
    Shared routes_match_whole_path_segments,
}

const HELLO_STDOUT: &str = "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, raw!\n";

fn param_names_keep_case_last_wins_empty_is_absent(f: &Fixture) {
    let params = Params::get("/env", "")
        .with("X_Mixed_Case", "yes")
        .with("x_mixed_case", "lower")
        .with("X_DUP", "first")
        .with("X_DUP", "second")
        .with("X_EMPTY", "")
        .with("X_GONE", "set")
        .with("X_GONE", "");
    let env = f.fcgi(&params, b"").cgi().text();
    assert_eq!(lines_starting(&env, "X_Mixed_Case="), vec!["X_Mixed_Case=yes"]);
    assert_eq!(lines_starting(&env, "x_mixed_case="), vec!["x_mixed_case=lower"]);
    assert_eq!(lines_starting(&env, "X_DUP="), vec!["X_DUP=second"]);
    assert_eq!(lines_starting(&env, "X_EMPTY"), Vec::<&str>::new());
    assert_eq!(lines_starting(&env, "X_GONE"), Vec::<&str>::new());
}

fn http_proxy_param_is_dropped_in_any_case(f: &Fixture) {
    let params = Params::get("/env", "")
        .with("HTTP_PROXY", "http://evil:1")
        .with("http_proxy", "http://evil:2")
        .with("Http_Proxy", "http://evil:3")
        .with("HTTP_HOST", "example.org");
    let env = f.fcgi(&params, b"").cgi().text();
    assert_eq!(lines_starting(&env, "HTTP_HOST="), vec!["HTTP_HOST=example.org"]);
    assert!(!env.contains("evil"), "{env}");
}

fn app_env_wins_over_params(f: &Fixture) {
    let env = f
        .fcgi(&Params::get("/env", "").with("X_APP", "from-request"), b"")
        .cgi()
        .text();
    assert_eq!(lines_starting(&env, "X_APP="), vec!["X_APP=from-config"]);
}

fn head_request_gets_no_body(f: &Fixture) {
    let ex = f.fcgi(&Params::cgi("HEAD", "/hello", "name=raw"), b"");
    assert_eq!(
        String::from_utf8_lossy(&ex.stdout),
        "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    let ex = f.fcgi(&Params::cgi("HEAD", "/cases", "body=100000"), b"");
    assert!(ex.cgi().body.is_empty(), "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
}

fn header_blocks_are_normalized(f: &Fixture) {
    for (case, want) in [
        (
            "lf",
            "Status: 200 OK\r\nContent-Type: text/plain\r\nX-Case: lf\r\n\r\nlf body\n",
        ),
        (
            "hop-by-hop",
            "Status: 200 OK\r\nContent-Type: text/plain\r\nX-Kept: yes\r\n\r\nhop\n",
        ),
        (
            "redirect",
            "Status: 302 Found\r\nLocation: http://example.com/elsewhere\r\n\r\n",
        ),
        (
            "local-redirect",
            "Status: 302 Found\r\nLocation: /hello?name=redirected\r\n\r\n",
        ),
        (
            "cookies",
            "Status: 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\ncookies\n",
        ),
        (
            "status",
            "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnot here\n",
        ),
    ] {
        let ex = f.fcgi(&Params::get("/cases", case), b"");
        assert_eq!(String::from_utf8_lossy(&ex.stdout), want, "case {case}");
    }
    let ex = f.fcgi(&Params::get("/cases", "status-noreason"), b"");
    assert!(ex.cgi().head.starts_with("Status: 418 "), "{:?}", ex.cgi().head);
}

fn stdin_without_content_length_is_read_to_its_end(f: &Fixture) {
    let params = Params::cgi("POST", "/echo", "");
    let mut bytes = begin(1, RESPONDER, 0);
    bytes.extend(record(PARAMS, 1, &params.encode()));
    bytes.extend(record(PARAMS, 1, b""));
    for chunk in [&b"one "[..], b"", b"two ", b"three"] {
        // An empty STDIN record ends the stream: skip it here.
        if !chunk.is_empty() {
            bytes.extend(record(STDIN, 1, chunk));
        }
    }
    bytes.extend(record(STDIN, 1, b""));
    let mut conn = f.conn();
    conn.send(&bytes);
    let ex = conn.response(1);
    assert_eq!(ex.cgi().text(), "one two three", "{}", ex.summary());
}

fn body_shorter_than_content_length_ends_at_stdin_end(f: &Fixture) {
    let params = Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", "100");
    let mut conn = f.conn();
    conn.send(&fcgi::request(1, 0, &params, b"abc"));
    let ex = conn.response(1);
    assert_eq!(ex.cgi().text(), "abc", "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
}

fn missing_method_or_bad_content_length_is_400(f: &Fixture) {
    let ex = f.fcgi(&Params::get("/hello", "").without("REQUEST_METHOD"), b"");
    assert_eq!(ex.cgi().status, 400, "{}", ex.summary());
    let ex = f.fcgi(&Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", "12x"), b"12x");
    assert_eq!(ex.cgi().status, 400, "{}", ex.summary());
    let ex = f.fcgi(&Params::cgi("POST", "/echo", "").with("CONTENT_LENGTH", "-1"), b"");
    assert_eq!(ex.cgi().status, 400, "{}", ex.summary());
}

fn unknown_script_name_is_404(f: &Fixture) {
    let ex = f.fcgi(&Params::get("/no-such-app", ""), b"");
    assert_eq!(ex.cgi().status, 404, "{}", ex.summary());
    assert_eq!(ex.ended().protocol_status, REQUEST_COMPLETE);
}

fn routes_match_whole_path_segments(f: &Fixture) {
    let ex = f.fcgi(&Params::get("/hellox", "name=raw"), b"");
    assert_eq!(ex.cgi().status, 404, "/hellox must not run hello: {}", ex.summary());
    let ex = f.fcgi(&Params::get("/hello/more", "name=raw"), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT);
    // The longest route wins: /c/hello is not /counter or /cases.
    let ex = f.fcgi(&Params::get("/c/hello", "name=raw"), b"");
    assert_eq!(String::from_utf8_lossy(&ex.stdout), HELLO_STDOUT);
}
