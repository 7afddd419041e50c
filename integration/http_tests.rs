//! Through nginx: what a browser sees of the example guests, and what the
//! guests see of the request.

use crate::support::fixture::{DATA_FILE, SECRET, SECRET_ENV};
use crate::support::{Fixture, cases_body, lines_starting, pseudo_random, tests};

tests! {
    Shared authorization_reaches_the_guest_and_an_indexed_query_is_no_argv,
    Shared cve_2019_11043_request_through_nginx_is_refused,
    Shared hello_greets_by_name,
    Shared hello_and_hello_c_give_identical_responses,
    Shared post_of_10_mib_is_echoed_byte_exact,
    Shared post_of_64_kib_is_echoed_byte_exact,
    Shared post_to_a_guest_that_ignores_its_body_completes,
    Shared concurrent_200_requests_each_get_their_own_answer,
    Shared counter_is_1_in_every_fresh_instance,
    Shared preinit_examples_answer_like_their_cold_builds,
    Shared every_request_starts_from_the_snapshot,
    Shared exit_before_headers_is_502,
    Shared bad_header_blocks_are_502,
    Shared repeated_set_cookie_headers_are_kept,
    Shared lf_only_header_lines_are_accepted,
    Shared location_without_status_is_302,
    Shared status_header_sets_the_status,
    Shared body_of_1_mib_is_byte_exact,
    Shared binary_body_is_byte_exact,
    Shared hop_by_hop_headers_are_dropped,
    Shared head_request_has_no_body,
    Shared proxy_header_never_reaches_the_guest,
    Shared pass_http_proxy_lets_it_through,
    Shared daemon_environment_does_not_reach_guests,
    Shared post_shows_content_type_and_length,
    Shared get_has_cgi_variables_and_empty_query_string,
    Shared path_after_the_route_is_path_info,
    Shared app_env_from_config_reaches_the_guest,
    Shared mounted_file_is_readable,
    Shared dotdot_out_of_a_mount_is_refused,
    Shared symlink_out_of_a_mount_is_refused,
    Shared mounts_are_read_only,
    Shared unknown_route_is_404_from_wcgid,
    Serial trap_is_502_logged_and_the_daemon_keeps_serving,
    Serial garbled_header_block_is_502_and_logged,
    Serial every_bad_response_is_502_and_logged,
    Serial guest_stderr_is_logged_with_its_app,
    Serial guest_stderr_flood_is_capped_in_the_log,
}

/// The guest env's output as lines (`argv: ...`, then `NAME=value`).
fn env_lines(f: &Fixture, target: &str, headers: &[(&str, &str)]) -> String {
    let r = f.request("GET", target, headers, b"");
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    r.text()
}

fn hello_greets_by_name(f: &Fixture) {
    let r = f.get("/hello?name=Ada");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), "Hello, Ada!\n");
    assert_eq!(f.get("/hello").text(), "Hello, world!\n");
    assert_eq!(f.get("/c/hello?name=J%C3%BCrgen+M").text(), "Hello, Jürgen M!\n");
}

fn hello_and_hello_c_give_identical_responses(f: &Fixture) {
    let long = format!("name={}", "x".repeat(2000));
    let queries = [
        "",
        "name=Ada",
        "name=J%C3%BCrgen+M",
        "name=%FF%FEx%E2%82",
        "name=100%25+%2",
        "other=1&name=second",
        "name=",
        long.as_str(),
    ];
    for q in queries {
        let rust = f.get(&format!("/hello?{q}"));
        let c = f.get(&format!("/c/hello?{q}"));
        assert_eq!((rust.status, c.status), (200, 200), "query {q:?}");
        assert_eq!(rust.header("Content-Type"), c.header("Content-Type"), "query {q:?}");
        assert_eq!(rust.body, c.body, "query {q:?}: {:?} vs {:?}", rust.text(), c.text());
    }
    // The 2000-byte name is cut to 1024 bytes by both.
    let body = f.get(&format!("/c/hello?{long}")).text();
    assert_eq!(body, format!("Hello, {}!\n", "x".repeat(1024)));
}

/// nginx stops sending the body once it has passed the response header on
/// (`ngx_http_upstream_send_request_handler`); echo writes its header first,
/// so this only works because wcgid reads the whole body before the guest.
fn post_of_10_mib_is_echoed_byte_exact(f: &Fixture) {
    assert_echoed(f, &pseudo_random(10 << 20, 0x5eed));
}

/// Small enough that nginx sends all of it before it reads the response.
fn post_of_64_kib_is_echoed_byte_exact(f: &Fixture) {
    assert_echoed(f, &pseudo_random(64 << 10, 0xbee));
}

fn assert_echoed(f: &Fixture, body: &[u8]) {
    assert!(body.contains(&0), "the body must hold NUL bytes");
    let r = f.request("POST", "/echo", &[("Content-Type", "application/octet-stream")], body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    assert_eq!(r.body.len(), body.len(), "echoed length");
    let first_difference = r.body.iter().zip(body).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "echoed body differs");
}

fn post_to_a_guest_that_ignores_its_body_completes(f: &Fixture) {
    let body = pseudo_random(10 << 20, 0x19);
    let r = f.request("POST", "/cases?stdin-ignore", &[], &body);
    assert_eq!((r.status, r.text().as_str()), (200, "ignored\n"));
}

fn concurrent_200_requests_each_get_their_own_answer(f: &Fixture) {
    let barrier = std::sync::Barrier::new(200);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let (r, want) = if i % 2 == 0 {
                        let r = crate::support::http::send(f.port(), "GET", &format!("/hello?name=user{i}"), &[], b"");
                        (r, format!("Hello, user{i}!\n").into_bytes())
                    } else {
                        let body = pseudo_random(1000 + 37 * i, i as u64);
                        let r = crate::support::http::send(f.port(), "POST", "/echo", &[], &body);
                        (r, body)
                    };
                    match r {
                        Ok(r) if r.status == 200 && r.body == want => None,
                        Ok(r) => Some(format!("request {i}: {} {:?}", r.status, r.text())),
                        Err(e) => Some(format!("request {i}: {e}")),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert!(
        errors.is_empty(),
        "{} of 200 wrong:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// dict.wasm and qjs.wasm are their cold builds after `wcgid preinit`: the
/// same answers, without running the init per request.
fn preinit_examples_answer_like_their_cold_builds(f: &Fixture) {
    for (warm, cold, queries) in [
        (
            "/dict",
            "/dict-cold",
            &["", "word=paisule", "word=nosuchword", "prefix=kai"][..],
        ),
        ("/js", "/js-cold", &["n=97", "n=1000000", "n=x"][..]),
    ] {
        for query in queries {
            let (w, c) = (f.get(&format!("{warm}?{query}")), f.get(&format!("{cold}?{query}")));
            assert_eq!(
                (w.status, w.text()),
                (c.status, c.text()),
                "{warm} vs {cold} for ?{query}"
            );
        }
    }
    let r = f.get("/dict?word=paisule");
    assert_eq!(
        (r.status, r.text().starts_with("paisule: ")),
        (200, true),
        "{}",
        r.text()
    );
    let r = f.get("/js?n=97");
    assert_eq!(
        r.text().lines().next(),
        Some("97 is prime; primes around it: 89 and 101")
    );
}

/// The JavaScript app bumps a counter the init left at 0: a request that
/// saw another's state would say 2.
fn every_request_starts_from_the_snapshot(f: &Fixture) {
    for i in 0..20 {
        let r = f.get("/js?n=5");
        assert!(
            r.text().ends_with("request 1 of this instance\n"),
            "request {i}: {}",
            r.text()
        );
    }
}

fn counter_is_1_in_every_fresh_instance(f: &Fixture) {
    for i in 0..100 {
        let r = f.get("/counter");
        assert_eq!((r.status, r.text().as_str()), (200, "1\n"), "sequential request {i}");
    }
    let bodies: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    crate::support::http::send(f.port(), "GET", "/counter", &[], b"")
                        .map_or_else(|e| (0, e.to_string()), |r| (r.status, r.text()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!((b.0, b.1.as_str()), (200, "1\n"), "concurrent request {i}");
    }
}

fn exit_before_headers_is_502(f: &Fixture) {
    let r = f.get("/cases?exit=3");
    assert_eq!(r.status, 502, "{}", r.text());
    // The guest's own output still works afterwards.
    assert_eq!(f.get("/cases?ok").text(), "ok\n");
}

fn bad_header_blocks_are_502(f: &Fixture) {
    for case in [
        "nothing",
        "no-blank-line",
        "empty-headers",
        "status-bad",
        "big-header=70000",
    ] {
        let r = f.get(&format!("/cases?{case}"));
        assert_eq!(r.status, 502, "{case}: {}", r.text());
    }
    // A big header under the daemon's limit passes (nginx's buffer allowing).
    let r = f.get("/cases?big-header=1000");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Big"), Some("a".repeat(1000).as_str()));
    assert_eq!(r.text(), "big\n");
}

fn repeated_set_cookie_headers_are_kept(f: &Fixture) {
    let r = f.get("/cases?cookies");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers_named("Set-Cookie"), vec!["a=1", "b=2"]);
    assert_eq!(r.text(), "cookies\n");
}

fn lf_only_header_lines_are_accepted(f: &Fixture) {
    let r = f.get("/cases?lf");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Case"), Some("lf"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.text(), "lf body\n");
}

fn location_without_status_is_302(f: &Fixture) {
    let r = f.get("/cases?redirect");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://example.com/elsewhere"));
    let r = f.get("/cases?local-redirect");
    assert_eq!(r.status, 302);
    let location = r.header("Location").unwrap_or_default();
    assert!(location.ends_with("/hello?name=redirected"), "Location {location:?}");
}

fn status_header_sets_the_status(f: &Fixture) {
    let r = f.get("/cases?status");
    assert_eq!((r.status, r.text().as_str()), (404, "not here\n"));
    let r = f.get("/cases?status-noreason");
    assert_eq!((r.status, r.text().as_str()), (418, "teapot\n"));
}

fn body_of_1_mib_is_byte_exact(f: &Fixture) {
    let r = f.get("/cases?body=1048576");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    assert_eq!(r.body.len(), 1 << 20);
    assert!(r.body == cases_body(1 << 20), "body differs from i % 251");
}

fn binary_body_is_byte_exact(f: &Fixture) {
    let r = f.get("/cases?binary");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, (0..=255u8).collect::<Vec<u8>>());
}

fn hop_by_hop_headers_are_dropped(f: &Fixture) {
    let r = f.get("/cases?hop-by-hop");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Kept"), Some("yes"));
    assert_eq!(r.header("Transfer-Encoding"), None);
    assert_eq!(r.text(), "hop\n");
}

fn head_request_has_no_body(f: &Fixture) {
    let r = f.request("HEAD", "/hello?name=head", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert!(r.body.is_empty(), "HEAD body {:?}", r.text());
}

fn proxy_header_never_reaches_the_guest(f: &Fixture) {
    let env = env_lines(f, "/env", &[("Proxy", "http://evil:3128"), ("X-Probe", "yes")]);
    // Other request headers do arrive, so the absence below means something.
    assert!(env.lines().any(|l| l == "HTTP_X_PROBE=yes"), "{env}");
    let proxy: Vec<&str> = env
        .lines()
        .filter(|l| l.to_ascii_uppercase().starts_with("HTTP_PROXY="))
        .collect();
    assert!(proxy.is_empty(), "{proxy:?}");
    assert!(!env.contains("evil"), "{env}");
}

fn pass_http_proxy_lets_it_through(f: &Fixture) {
    let env = env_lines(f, "/env-proxy", &[("Proxy", "http://evil:3128")]);
    assert_eq!(lines_starting(&env, "HTTP_PROXY="), vec!["HTTP_PROXY=http://evil:3128"]);
}

fn daemon_environment_does_not_reach_guests(f: &Fixture) {
    let environ = std::fs::read(format!("/proc/{}/environ", f.daemon.pid())).expect("read the daemon's environ");
    let secret = format!("{}={}", SECRET_ENV.0, SECRET_ENV.1);
    assert!(
        environ.split(|&b| b == 0).any(|e| e == secret.as_bytes()),
        "the daemon should have {secret} in its environment"
    );
    for target in ["/env", "/env-proxy", "/cgi-bin/env.wasm"] {
        let env = env_lines(f, target, &[]);
        assert!(!env.contains(SECRET_ENV.0), "{target}: {env}");
        for var in ["PATH=", "HOME=", "WCGID_LOG=", "USER="] {
            assert_eq!(lines_starting(&env, var), Vec::<&str>::new(), "{target}");
        }
    }
}

fn post_shows_content_type_and_length(f: &Fixture) {
    let r = f.request(
        "POST",
        "/env",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=1&b=22",
    );
    assert_eq!(r.status, 200);
    let env = r.text();
    assert_eq!(
        lines_starting(&env, "CONTENT_TYPE="),
        vec!["CONTENT_TYPE=application/x-www-form-urlencoded"]
    );
    assert_eq!(lines_starting(&env, "CONTENT_LENGTH="), vec!["CONTENT_LENGTH=8"]);
    assert_eq!(lines_starting(&env, "REQUEST_METHOD="), vec!["REQUEST_METHOD=POST"]);
}

fn get_has_cgi_variables_and_empty_query_string(f: &Fixture) {
    let env = env_lines(f, "/env", &[]);
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines[0], "argv: env.wasm");
    for want in [
        "QUERY_STRING=",
        "GATEWAY_INTERFACE=CGI/1.1",
        "REQUEST_METHOD=GET",
        "SCRIPT_NAME=/env",
        "SERVER_PROTOCOL=HTTP/1.0",
        "SERVER_NAME=localhost",
        "REMOTE_ADDR=127.0.0.1",
        &format!("SERVER_PORT={}", f.port()),
    ] {
        assert!(lines.contains(&want), "{want} missing from\n{env}");
    }
    // nginx sends CONTENT_LENGTH and CONTENT_TYPE empty on a GET: absent.
    assert_eq!(lines_starting(&env, "CONTENT_LENGTH"), Vec::<&str>::new());
    assert_eq!(lines_starting(&env, "CONTENT_TYPE"), Vec::<&str>::new());
    // Sorted by name, as env prints them: the output is well-formed.
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split('=').next().unwrap_or_default())
        .collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "names not unique and sorted: {names:?}"
    );
}

fn path_after_the_route_is_path_info(f: &Fixture) {
    let env = env_lines(f, "/env/a/b?x=1", &[]);
    assert_eq!(lines_starting(&env, "SCRIPT_NAME="), vec!["SCRIPT_NAME=/env"]);
    assert_eq!(lines_starting(&env, "PATH_INFO="), vec!["PATH_INFO=/a/b"]);
    assert_eq!(lines_starting(&env, "QUERY_STRING="), vec!["QUERY_STRING=x=1"]);
}

fn app_env_from_config_reaches_the_guest(f: &Fixture) {
    let env = env_lines(f, "/env", &[]);
    assert_eq!(lines_starting(&env, "X_APP="), vec!["X_APP=from-config"]);
    // Only the app it is configured for.
    let other = env_lines(f, "/env-proxy", &[]);
    assert_eq!(lines_starting(&other, "X_APP="), Vec::<&str>::new());
}

fn mounted_file_is_readable(f: &Fixture) {
    let r = f.get("/cases?read=/data/file.txt");
    assert_eq!((r.status, r.text().as_str()), (200, DATA_FILE));
    let r = f.get("/cases?read=/data/sub/inner.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "inner\n"));
    let r = f.get("/cases?read=/data/missing.txt");
    assert_eq!((r.status, r.text().as_str()), (404, "NotFound\n"));
    let r = f.get("/cases?ls=/data");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "file.txt\nlink\nrel-link\nsub\n");
}

/// A read that must not succeed: not 200, and not the secret.
fn assert_refused(f: &Fixture, query: &str) {
    let r = f.get(&format!("/cases?{query}"));
    assert_ne!(r.status, 200, "{query}: {:?}", r.text());
    assert!(!r.text().contains("SECRET"), "{query} leaked {:?}", r.text());
}

fn dotdot_out_of_a_mount_is_refused(f: &Fixture) {
    // The secret is right there for a host path: data/../outside.
    assert_eq!(std::fs::read_to_string(f.data.join("../outside")).unwrap(), SECRET);
    assert_refused(f, "read=/data/../outside");
    assert_refused(f, "read=/data/sub/../../outside");
    assert_refused(f, "ls=/data/..");
}

fn symlink_out_of_a_mount_is_refused(f: &Fixture) {
    assert_refused(f, "read=/data/link");
    assert_refused(f, "read=/data/rel-link");
}

fn mounts_are_read_only(f: &Fixture) {
    let r = f.get("/cases?write=/data/new.txt");
    assert_eq!(r.status, 403, "{:?}", r.text());
    assert!(!f.data.join("new.txt").exists(), "the guest created a file");
    let r = f.get("/cases?write=/data/file.txt");
    assert_eq!(r.status, 403, "{:?}", r.text());
    assert_eq!(std::fs::read_to_string(f.data.join("file.txt")).unwrap(), DATA_FILE);
}

fn unknown_route_is_404_from_wcgid(f: &Fixture) {
    let r = f.get("/nowhere");
    assert_eq!(r.status, 404);
    // wcgid's plain-text page, not nginx's HTML one.
    assert_eq!(r.text(), "404 Not Found\n");
}

/// WARN lines of the log text naming `app` and a request id.
fn warn_lines<'a>(log: &'a str, app: &str) -> Vec<&'a str> {
    let app = format!("app=\"{app}\"");
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains(&app) && l.contains("req="))
        .collect()
}

fn trap_is_502_logged_and_the_daemon_keeps_serving(f: &Fixture) {
    let mark = f.daemon.log_len();
    let r = f.get("/cases?trap");
    assert_eq!(r.status, 502, "{}", r.text());
    f.daemon
        .wait_log(mark, |log| !warn_lines(log, "cases").is_empty())
        .unwrap_or_else(|log| panic!("no WARN line with app=\"cases\" and req= after a trap; log:\n{log}"));
    for _ in 0..3 {
        let r = f.get("/hello?name=after");
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, after!\n"));
    }
}

fn garbled_header_block_is_502_and_logged(f: &Fixture) {
    let mark = f.daemon.log_len();
    let r = f.get("/cases?garbled");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        !r.text().contains("body"),
        "the guest's body must not pass: {:?}",
        r.text()
    );
    f.daemon
        .wait_log(mark, |log| !warn_lines(log, "cases").is_empty())
        .unwrap_or_else(|log| panic!("no WARN line with app=\"cases\" and req= after garbled; log:\n{log}"));
}

fn every_bad_response_is_502_and_logged(f: &Fixture) {
    for case in [
        "exit=3",
        "nothing",
        "no-blank-line",
        "empty-headers",
        "status-bad",
        "trap",
    ] {
        let mark = f.daemon.log_len();
        let r = f.get(&format!("/cases?{case}"));
        assert_eq!(r.status, 502, "{case}: {}", r.text());
        f.daemon
            .wait_log(mark, |log| !warn_lines(log, "cases").is_empty())
            .unwrap_or_else(|log| panic!("{case}: no WARN line with app=\"cases\" and req=; log:\n{log}"));
    }
    // A cgi-bin guest is named after its file.
    let mark = f.daemon.log_len();
    let r = f.get("/cgi-bin/cases-bin.wasm?exit=3");
    assert_eq!(r.status, 502, "{}", r.text());
    f.daemon
        .wait_log(mark, |log| !warn_lines(log, "cases-bin").is_empty())
        .unwrap_or_else(|log| panic!("no WARN line with app=\"cases-bin\" and req=; log:\n{log}"));
}

/// The `req=PID.N` of a log line.
fn request_id(line: &str) -> Option<&str> {
    let at = line.find("req=")? + 4;
    line[at..].split(|c: char| !c.is_ascii_digit() && c != '.').next()
}

fn guest_stderr_is_logged_with_its_app(f: &Fixture) {
    let mark = f.daemon.log_len();
    let r = f.get("/cases?stderr=3");
    assert_eq!((r.status, r.text().as_str()), (200, "stderr\n"));
    let has = |log: &str, text: &str| {
        log.lines()
            .any(|l| l.contains("app=\"cases\"") && l.contains("req=") && l.contains(text))
    };
    let log = f
        .daemon
        .wait_log(mark, |log| (0..3).all(|i| has(log, &format!("stderr line {i}"))))
        .unwrap_or_else(|log| panic!("stderr lines 0..3 not logged with app=\"cases\"; log:\n{log}"));
    assert!(!has(&log, "stderr line 3"), "{log}");
    // All three lines carry the same request id.
    let ids: Vec<_> = log
        .lines()
        .filter(|l| l.contains("stderr line"))
        .map(request_id)
        .collect();
    assert_eq!(ids.len(), 3, "{log}");
    assert!(ids[0].is_some_and(|id| !id.is_empty()), "{log}");
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "request ids differ: {ids:?}");
}

fn guest_stderr_flood_is_capped_in_the_log(f: &Fixture) {
    let mark = f.daemon.log_len();
    let r = f.get("/cases?stderr=20000");
    assert_eq!((r.status, r.text().as_str()), (200, "stderr\n"));
    let log = f
        .daemon
        .wait_log(mark, |log| log.contains("stderr line 0"))
        .unwrap_or_else(|log| panic!("no stderr logged; log:\n{log}"));
    let logged = log.lines().filter(|l| l.contains("stderr line")).count();
    assert!(logged > 0 && logged < 20_000, "{logged} of 20000 stderr lines logged");
    assert!(!log.contains("stderr line 19999"), "the whole flood was logged");
}

/// CVE-2019-11043's request (`%0a` in the path, a padded query, its
/// headers) through nginx with the vulnerable `fastcgi_split_path_info`
/// config: refused the same way whatever the padding, and the daemon serves
/// on (conformance.md #77).
fn cve_2019_11043_request_through_nginx_is_refused(f: &Fixture) {
    for padding in (1700..=1900).step_by(50) {
        let target = format!("/cve/hello.wasm/%0aindex.php?{}", "Q".repeat(padding));
        let r = f.request("GET", &target, &[("D-Pisos", "8=D"), ("Ebut", "mamku tvoyu")], b"");
        assert_eq!(r.status, 403, "padding {padding}: {}", r.text());
    }
    assert_eq!(f.get("/hello?name=after").text(), "Hello, after!\n");
}

/// An `Authorization` header reaches the guest as HTTP_AUTHORIZATION (the
/// guest checks credentials), and an indexed query (`?foo+bar`, RFC 3875
/// §4.4) becomes QUERY_STRING only, never argv words (conformance.md #24,
/// #30).
fn authorization_reaches_the_guest_and_an_indexed_query_is_no_argv(f: &Fixture) {
    let env = env_lines(f, "/env?foo+bar", &[("Authorization", "Basic YTpi")]);
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines[0], "argv: env.wasm", "{env}");
    assert!(lines.contains(&"HTTP_AUTHORIZATION=Basic YTpi"), "{env}");
    assert!(lines.contains(&"QUERY_STRING=foo+bar"), "{env}");
}
