//! The scratch directory: every guest's private, in-memory `/tmp`, through
//! nginx. The upload-c guest spools a multipart upload to a `mkstemp` file
//! and reads it back, as legacy CGI programs do; the cases guest writes,
//! reads and lists `/tmp` with Rust's std.

use crate::support::fixture::SMALL_SCRATCH;
use crate::support::{Fixture, lines_starting, pseudo_random, tests};

tests! {
    Shared an_upload_is_spooled_to_tmp_and_read_back,
    Shared every_request_starts_with_an_empty_tmp,
    Shared an_upload_over_the_scratch_limit_gets_enospc,
    Shared scratch_0_means_no_tmp_and_no_tmpdir,
    Shared guests_get_tmpdir,
}

const BOUNDARY: &str = "----wcgid-scratch-test-7f3a";

/// A `multipart/form-data` body: a text field, then `data` as `filename`.
fn multipart(filename: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot a file\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// POSTs `data` as a file upload to `route`; the status and the body.
fn upload(f: &Fixture, route: &str, filename: &str, data: &[u8]) -> (u16, String) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let r = f.request(
        "POST",
        route,
        &[("Content-Type", &content_type)],
        &multipart(filename, data),
    );
    (r.status, r.text())
}

/// What upload-c answers for `data` when it worked, its temp dir empty at start.
fn spooled(filename: &str, data: &[u8]) -> String {
    format!(
        "name={filename} size={} fnv1a={:016x}\ntmp-at-start=0\n",
        data.len(),
        fnv1a(data)
    )
}

fn an_upload_is_spooled_to_tmp_and_read_back(f: &Fixture) {
    let data = pseudo_random(300 << 10, 0x7e9);
    assert!(
        data.contains(&0) && data.contains(&b'\r'),
        "binary data, NUL and CR included"
    );
    assert_eq!(
        upload(f, "/upload", "data.bin", &data),
        (200, spooled("data.bin", &data))
    );
    // An empty file works too.
    assert_eq!(upload(f, "/upload", "empty", b""), (200, spooled("empty", b"")));
}

/// Each upload leaves its temp file behind, and a Rust guest writes one;
/// none is there for the next request. More requests than the fixture has
/// workers, one after the other: some run in an instance of a worker that
/// already ran one.
fn every_request_starts_with_an_empty_tmp(f: &Fixture) {
    for i in 0..8u64 {
        let data = pseudo_random(20_000 + i as usize, i);
        let name = format!("file-{i}");
        assert_eq!(
            upload(f, "/upload", &name, &data),
            (200, spooled(&name, &data)),
            "upload {i}"
        );
        let r = f.get("/cases?write=/tmp/left-behind");
        assert_eq!((r.status, r.text().as_str()), (200, "written\n"), "write {i}");
        let r = f.get("/cases?read=/tmp/left-behind");
        assert_eq!((r.status, r.text().as_str()), (404, "NotFound\n"), "read {i}");
        let r = f.get("/cases?ls=/tmp");
        assert_eq!((r.status, r.text().as_str()), (200, ""), "ls {i}");
    }
}

fn an_upload_over_the_scratch_limit_gets_enospc(f: &Fixture) {
    let data = pseudo_random(300 << 10, 0x5ca);
    let (status, text) = upload(f, "/upload-small", "big.bin", &data);
    assert_eq!(status, 500, "{text}");
    assert!(
        text.starts_with("/tmp/upload") && text.ends_with(": No space left on device\n"),
        "{text:?}"
    );
    // Under the limit, the same app works.
    let data = pseudo_random(SMALL_SCRATCH / 2, 0x5cb);
    assert_eq!(
        upload(f, "/upload-small", "half.bin", &data),
        (200, spooled("half.bin", &data))
    );
    // The failed request's files did not outlive it.
    assert_eq!(upload(f, "/upload", "after", b"x"), (200, spooled("after", b"x")));
}

fn scratch_0_means_no_tmp_and_no_tmpdir(f: &Fixture) {
    let (status, text) = upload(f, "/upload-none", "data.bin", b"data");
    assert_eq!(status, 500, "{text}");
    assert!(text.starts_with("/tmp: "), "{text:?}");
    let env = f.get("/env-no-tmp").text();
    assert_eq!(lines_starting(&env, "TMPDIR"), Vec::<&str>::new(), "{env}");
    assert!(env.contains("GATEWAY_INTERFACE=CGI/1.1"), "{env}");
}

fn guests_get_tmpdir(f: &Fixture) {
    for target in ["/env", "/cgi-bin/env.wasm"] {
        let env = f.get(target).text();
        assert_eq!(lines_starting(&env, "TMPDIR="), vec!["TMPDIR=/tmp"], "{target}: {env}");
    }
}
