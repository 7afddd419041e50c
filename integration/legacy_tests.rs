//! The legacy cgi-bin, `examples/legacy-site` (Perl and Python CGI scripts
//! as a 2005 site had them), served two ways behind the same web server and
//! compared request by request (see `support/differential.rs` for what is
//! compared and how).
//!
//! Side A, the reference, is fcgiwrap running the scripts with the host's
//! perl and python3, as the site runs today. Side B is whatever
//! [`second_upstream`] starts: fcgiwrap again for now, which proves the
//! harness (two identical servers must agree on every request); wcgid with
//! the configuration `wcgid migrate` writes, once the WASI interpreters are
//! there ([`wcgid_for_legacy_site`]).
//!
//! Both sides serve the same copy of the site, `www/cgi-bin/` in the test's
//! directory, and their scripts' working directory is the script's own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::apache::Apache;
use crate::support::daemon::Daemon;
use crate::support::differential::{self, Case, Compare, SIDE_HEADER};
use crate::support::fcgi::{self, Params};
use crate::support::fcgiwrap::Fcgiwrap;
use crate::support::http::Response;
use crate::support::nginx::Nginx;
use crate::support::{pseudo_random, tests};

tests! {
    Alone warm_snapshots_keep_what_must_be_fresh_fresh,
    Alone legacy_site_answers_alike_through_nginx,
    Alone legacy_site_answers_alike_through_apache,
    Alone comparison_sees_what_differs,
}

/// fcgiwrap's processes per side (the harness sends one request at a time).
const FCGIWRAP_PROCESSES: usize = 2;
/// The uploaded file: 100 KiB of every byte value.
const UPLOAD_SIZE: usize = 100 * 1024;
const BOUNDARY: &str = "----wcgidLegacyBoundary7MA4YWxkTrZu0gW";
const URLENCODED: &str = "application/x-www-form-urlencoded";

/// A FastCGI server of the legacy site.
pub enum Upstream {
    /// fcgiwrap, running the scripts with the host's perl and python3.
    Native(Fcgiwrap),
    /// wcgid, running them with the WASI interpreters.
    Wcgid { daemon: Daemon, socket: PathBuf },
}

impl Upstream {
    pub fn socket(&self) -> &Path {
        match self {
            Upstream::Native(f) => &f.socket,
            Upstream::Wcgid { socket, .. } => socket,
        }
    }

    /// What its scripts wrote to stderr, and its own messages.
    pub fn log(&self) -> String {
        match self {
            Upstream::Native(f) => f.log(),
            Upstream::Wcgid { daemon, .. } => daemon.log_tail(60),
        }
    }
}

/// Side A: fcgiwrap with the host's interpreters, as the site runs today.
fn native_upstream(dir: &Path, name: &str) -> Result<Upstream, String> {
    // Scripts that cannot start would fail alike on both sides: say why.
    let perl_cgi = Command::new("/usr/bin/perl")
        .args(["-MCGI", "-MCGI::Cookie", "-e1"])
        .status();
    if !perl_cgi.is_ok_and(|s| s.success()) {
        return Err("/usr/bin/perl cannot load CGI.pm: apt-get install perl libcgi-pm-perl".into());
    }
    if !Path::new("/usr/bin/python3").is_file() {
        return Err("/usr/bin/python3 is missing: apt-get install python3".into());
    }
    Fcgiwrap::start(
        &dir.join(format!("{name}.sock")),
        FCGIWRAP_PROCESSES,
        &dir.join(format!("{name}-tmp")),
        &dir.join(format!("{name}.log")),
    )
    .map(Upstream::Native)
}

/// Side B, the upstream compared with the native one: wcgid, running the
/// site's scripts with the WASI interpreters, configured by `wcgid migrate`.
fn second_upstream(dir: &Path, site: &Path) -> Result<Upstream, String> {
    let interpreters = crate::support::interpreters()?;
    let config = dir.join("wcgid.toml");
    let migrate = Command::new(crate::support::daemon::binary())
        .arg("migrate")
        .arg("--interpreters")
        .arg(&interpreters)
        .arg("-o")
        .arg(&config)
        .arg(site)
        .output()
        .map_err(|e| format!("cannot run wcgid migrate: {e}"))?;
    if !migrate.status.success() {
        return Err(format!(
            "wcgid migrate failed ({}): {}{}",
            migrate.status,
            String::from_utf8_lossy(&migrate.stdout),
            String::from_utf8_lossy(&migrate.stderr)
        ));
    }
    wcgid_for_legacy_site(dir, &config)
}

/// The interpreters' snapshots and code, kept between runs in a cache of
/// their own: they take a minute to make, more than a daemon gets to start.
fn interpreter_cache() -> PathBuf {
    crate::support::shared_cache_dir("legacy")
}

/// wcgid serving the legacy site with the configuration at `config` (as
/// `wcgid migrate` writes it for the site), listening on `dir/wcgid.sock`
/// and with its admin socket, if any, at `dir/wcgid-admin.sock`, whatever
/// the configuration says: returns once it accepts connections.
pub fn wcgid_for_legacy_site(dir: &Path, config: &Path) -> Result<Upstream, String> {
    let socket = dir.join("wcgid.sock");
    let listen = format!("unix:{}", socket.display());
    let admin = format!("unix:{}", dir.join("wcgid-admin.sock").display());
    let cache = interpreter_cache();
    let cache = cache.to_string_lossy();
    // `check` fills the cache, taking the time it needs.
    let check = Command::new(crate::support::daemon::binary())
        .arg("check")
        .arg("-c")
        .arg(config)
        .env("WCGID_SERVER__CACHE_DIR", &*cache)
        .output()
        .map_err(|e| format!("cannot run wcgid check: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "wcgid check failed: {}",
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    let env = [
        ("WCGID_SERVER__LISTEN", listen.as_str()),
        ("WCGID_ADMIN__LISTEN", admin.as_str()),
        ("WCGID_SERVER__CACHE_DIR", &*cache),
    ];
    let daemon = Daemon::start(config, &dir.join("wcgid.log"), &socket, &env)?;
    Ok(Upstream::Wcgid { daemon, socket })
}

/// Copies `examples/legacy-site` to `www/cgi-bin` in the test's stable
/// directory (see `support::stable_dir`; modes kept: the scripts are
/// executable) and returns the copy.
fn site_copy(dir: &Path) -> PathBuf {
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
        for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
            let entry = entry.expect("directory entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
            }
        }
    }
    let site = crate::support::stable_dir(dir).join("www/cgi-bin");
    copy_tree(&crate::support::examples().join("legacy-site"), &site);
    site
}

/// A multipart/form-data body: `(name, file name, content)` per part.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some(filename) = filename {
            body.extend_from_slice(
                format!("; filename=\"{filename}\"\r\nContent-Type: application/octet-stream").as_bytes(),
            );
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// 32-bit FNV-1a, which upload.pl and upload.py compute by hand.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The requests of the nginx comparison: every script, GET with queries,
/// urlencoded POSTs with cookies, a multipart upload, PATH_INFO, the
/// redirect, the scripts that die, and paths that are no script.
fn site_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Scripts in pairs, Perl and Python, print the same bytes: the same
    // expectations hold for both.
    for script in ["hello.pl", "hello.py"] {
        let url = format!("/cgi-bin/{script}");
        cases.push(Case::get(format!("{url}?name=World")).expect_body("Hello, World!\n"));
        cases.push(Case::get(format!("{url}?name=J%C3%BCrgen+M%C3%BCller&x=1")).expect_body("Hello, Jürgen Müller!\n"));
        cases.push(Case::get(url).expect_body("Hello, world!\n"));
    }
    cases.push(Case::head("/cgi-bin/hello.pl?name=head").expect(200, &["content-type: text/plain; charset=utf-8"]));

    let post = "name=Bob+%3Cthe+builder%3E&comment=a+%26+b&topping=ham&topping=olives&go=Sign";
    cases.extend([
        Case::get("/cgi-bin/form.pl").expect(200, &["<h1>Guestbook</h1>", r#"action="form.pl""#]),
        Case::get("/cgi-bin/form.pl?name=%3Cb%3E&topping=ham")
            .header("Cookie", "visitor=Ann%20Lee; visits=3")
            .expect(200, &["Welcome back, Ann Lee", r#"value="&lt;b&gt;""#]),
        Case::post("/cgi-bin/form.pl", URLENCODED, post)
            .header("Cookie", "visitor=Ann%20Lee; visits=3")
            .expect(
                200,
                &[
                    "set-cookie: visitor=Bob%20%3Cthe%20builder%3E; path=/cgi-bin/\nset-cookie: visits=4; path=/cgi-bin/\n",
                    "Thank you, Bob &lt;the builder&gt;",
                    "You wrote: a &amp; b",
                    "Toppings: ham, olives",
                ],
            ),
        Case::get("/cgi-bin/form.py").expect(200, &["<h1>Guestbook</h1>", r#"action="form.py""#]),
        Case::get("/cgi-bin/form.py?name=%3Cb%3E&topping=ham")
            .header("Cookie", r#"visitor="Ann Lee"; visits=3"#)
            .expect(200, &["Welcome back, Ann Lee", r#"value="&lt;b&gt;""#, r#"value="ham" checked="checked""#]),
        Case::post("/cgi-bin/form.py", URLENCODED, post)
            .header("Cookie", r#"visitor="Ann Lee"; visits=3"#)
            .expect(
                200,
                &[
                    "set-cookie: visitor=\"Bob <the builder>\"; Path=/cgi-bin/\nset-cookie: visits=4; Path=/cgi-bin/\n",
                    "Thank you, Bob &lt;the builder&gt;",
                    "You wrote: a &amp; b",
                    "Toppings: ham, olives",
                ],
            ),
    ]);

    cases.extend([
        Case::get("/cgi-bin/env.pl?a=1&b=2").expect(
            200,
            &[
                "PATH_INFO unset\nQUERY_STRING=a=1&b=2\n",
                "REQUEST_METHOD=GET\n",
                "SCRIPT_NAME=/cgi-bin/env.pl\n",
                "SERVER_PROTOCOL=HTTP/1.0\n",
                "HTTPS unset\n",
                "cwd: the script's directory\n",
            ],
        ),
        Case::get("/cgi-bin/env.pl/extra/path?x").expect(
            200,
            &[
                "PATH_INFO=/extra/path\nQUERY_STRING=x\n",
                "SCRIPT_NAME=/cgi-bin/env.pl\n",
            ],
        ),
        Case::post("/cgi-bin/env.pl", "application/octet-stream", pseudo_random(5000, 11))
            .header("Cookie", "a=b")
            .expect(
                200,
                &[
                    "CONTENT_LENGTH=5000\nCONTENT_TYPE=application/octet-stream\n",
                    "HTTP_COOKIE=a=b\n",
                    "REQUEST_METHOD=POST\n",
                    "body: 5000 bytes\n",
                ],
            ),
        Case::get("/cgi-bin/redirect.pl?name=bob")
            .expect(302, &["location: /cgi-bin/hello.pl?name=bob\n", "This page has moved"]),
        Case::get("/cgi-bin/page.py/about").expect(200, &["<h1>About this site</h1>"]),
        Case::get("/cgi-bin/page.py/contact").expect(404, &["No page called /contact here."]),
        Case::get("/cgi-bin/page.py").expect(404, &["No page called (none) here."]),
    ]);

    for lang in ["pl", "py"] {
        let url = |script: &str, query: &str| format!("/cgi-bin/{script}.{lang}?{query}");
        cases.extend([
            Case::get(url("data", "n=3")).expect_body("Quote 3 of 20: Well begun is half done.\n"),
            Case::get(url("data", "n=99")).expect(404, &["There is no quote number 99."]),
            Case::get(url("data", "n=x")).expect(400, &["n must be a number"]),
            Case::get(url("compute", "n=20000"))
                .expect_body("primes below 20000: 2262\nsum: 21171191\nlargest: 19997\n"),
            Case::get(url("compute", "words=5"))
                .expect_body("words: 111, distinct: 86\n   9 a\n   6 the\n   5 is\n   3 than\n   2 in\n"),
        ]);
    }

    let file = pseudo_random(UPLOAD_SIZE, 2005);
    let upload = multipart(&[
        ("note", None, b"from the harness"),
        ("file", Some(r"C:\My Files\upload.bin"), &file),
    ]);
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let uploaded = format!(
        "file: upload.bin\nsize: {UPLOAD_SIZE}\nfnv1a32: {:08x}\nnote: from the harness\n",
        fnv1a32(&file)
    );
    for script in ["upload.pl", "upload.py"] {
        let url = format!("/cgi-bin/{script}");
        cases.push(Case::get(&url).expect(200, &[r#"enctype="multipart/form-data""#]));
        cases.push(Case::post(url, &content_type, upload.clone()).expect_body(uploaded.as_str()));
    }

    cases.extend([
        // Dead before their header: the server's error page, whose body is
        // the server's own (fcgiwrap's "An error occurred while reading
        // CGI reply"), so only the status is compared.
        Case::get("/cgi-bin/die.pl").expect(502, &[]).compare(Compare::Status),
        Case::get("/cgi-bin/die.py").expect(502, &[]).compare(Compare::Status),
        // No script: nothing runs, nothing is served (fcgiwrap says 403 even
        // for a script that does not exist).
        Case::get("/cgi-bin/missing.pl")
            .expect(403, &[])
            .compare(Compare::Refused),
        Case::get("/cgi-bin/data/quotes.txt")
            .expect(403, &[])
            .compare(Compare::Refused),
        Case::get("/cgi-bin/lib/Site/Util.pm")
            .expect(403, &[])
            .compare(Compare::Refused),
    ]);
    cases
}

/// Every request of [`site_cases`] through nginx to both sides.
fn legacy_site_answers_alike_through_nginx(dir: &Path) {
    let site = site_copy(dir);
    let a = native_upstream(dir, "native-a").unwrap_or_else(|e| panic!("side A: {e}"));
    let b = second_upstream(dir, &site).unwrap_or_else(|e| panic!("side B: {e}"));
    let vars = [
        ("DOCROOT", site.parent().expect("www").display().to_string()),
        ("SOCKET_A", a.socket().display().to_string()),
        ("SOCKET_B", b.socket().display().to_string()),
    ];
    let nginx = Nginx::start_template(&dir.join("nginx"), "legacy-nginx.conf", &vars).unwrap_or_else(|e| panic!("{e}"));
    let report = differential::run(nginx.port, &site_cases());
    assert!(
        report.is_empty(),
        "{report}\n--- side A's log ---\n{}\n--- side B's log ---\n{}\n--- nginx ---\n{}",
        a.log(),
        b.log(),
        nginx.logs()
    );
    // A script's stderr is the server's log, not the browser's page.
    let log = a.log();
    for message in [
        "die.pl: cannot read data/settings.conf",
        "RuntimeError: die.py: cannot connect",
    ] {
        assert!(log.contains(message), "side A's log lacks {message:?}:\n{log}");
    }
}

/// form.pl (CGI.pm) and form.py (cgi.FieldStorage) through Apache's
/// mod_proxy_fcgi: a cgi-bin directory whose handler is the FastCGI
/// upstream (SetHandler), picked by the same request header as with nginx.
/// `ProxyFCGIBackendType GENERIC`: SCRIPT_FILENAME is the script's path, not
/// the `proxy:fcgi://localhost/...` that php-fpm expects and fcgiwrap
/// cannot use. Apache adds `Vary: X-Legacy-Side` (the `<If>` reads it) to
/// both sides' answers alike.
fn legacy_site_answers_alike_through_apache(dir: &Path) {
    let site = site_copy(dir);
    let a = native_upstream(dir, "native-a").unwrap_or_else(|e| panic!("side A: {e}"));
    let b = second_upstream(dir, &site).unwrap_or_else(|e| panic!("side B: {e}"));
    // Apache's children run as www-data: let them reach the sockets (this
    // test's own, in its own directory) and look up the scripts.
    for socket in [a.socket(), b.socket()] {
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
    }
    for d in [dir, site.parent().expect("www"), &site] {
        let _ = Command::new("chmod").arg("o+x").arg(d).status();
    }
    let handler = |u: &Upstream| format!("\"proxy:unix:{}|fcgi://localhost\"", u.socket().display());
    let config = format!(
        "DocumentRoot {www}\n\
         <Directory {site}>\n\
         \x20   Require all granted\n\
         \x20   ProxyFCGIBackendType GENERIC\n\
         \x20   <If \"%{{HTTP:{SIDE_HEADER}}} == 'b'\">\n\
         \x20       SetHandler {b}\n\
         \x20   </If>\n\
         \x20   <Else>\n\
         \x20       SetHandler {a}\n\
         \x20   </Else>\n\
         </Directory>\n\
         RequestHeader unset {SIDE_HEADER}\n",
        www = site.parent().expect("www").display(),
        site = site.display(),
        a = handler(&a),
        b = handler(&b),
    );
    let apache = Apache::start(&dir.join("apache"), &["proxy", "proxy_fcgi", "headers"], &config)
        .unwrap_or_else(|e| panic!("{e}"));

    let post = "name=Eve&comment=%3Ci%3Ehi%3C%2Fi%3E&topping=cheese";
    let mut cases = Vec::new();
    for (script, cookie, set_cookie) in [
        (
            "form.pl",
            "visitor=Ann%20Lee; visits=1",
            "set-cookie: visitor=Eve; path=/cgi-bin/\nset-cookie: visits=2; path=/cgi-bin/\n",
        ),
        (
            "form.py",
            r#"visitor="Ann Lee"; visits=1"#,
            "set-cookie: visitor=Eve; Path=/cgi-bin/\nset-cookie: visits=2; Path=/cgi-bin/\n",
        ),
    ] {
        let url = format!("/cgi-bin/{script}");
        cases.extend([
            Case::get(&url).expect(200, &["<h1>Guestbook</h1>"]),
            Case::get(format!("{url}?name=x"))
                .header("Cookie", cookie)
                .expect(200, &["Welcome back, Ann Lee"]),
            Case::post(url, URLENCODED, post).header("Cookie", cookie).expect(
                200,
                &[
                    set_cookie,
                    "Thank you, Eve",
                    "You wrote: &lt;i&gt;hi&lt;/i&gt;",
                    "Toppings: cheese",
                ],
            ),
        ]);
    }
    let report = differential::run(apache.port, &cases);
    assert!(
        report.is_empty(),
        "{report}\n--- side A's log ---\n{}\n--- side B's log ---\n{}\n--- apache ---\n{}",
        a.log(),
        b.log(),
        apache.log()
    );
}

/// The comparison itself: what it must ignore, and what it must not.
fn comparison_sees_what_differs(_dir: &Path) {
    let answer = |status: u16, headers: &[(&str, &str)], body: &str| Response {
        status,
        headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        body: body.as_bytes().to_vec(),
    };
    let a = answer(
        200,
        &[
            ("Server", "nginx/1.22.1"),
            ("Date", "Mon, 07 Dec 2026 07:00:00 GMT"),
            ("Content-Type", "text/html"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ],
        "<h1>Hi</h1>\n",
    );
    let case = || Case::get("/x").expect(200, &["content-type: text/html\n", "<h1>Hi</h1>"]);
    let problems = |b: &Response| differential::problems(&case(), &a, b);
    // Another date and server, names in another case, fields in another
    // order (but the repeated ones): the same answer.
    let same = answer(
        200,
        &[
            ("set-cookie", "a=1"),
            ("content-type", "text/html"),
            ("Set-Cookie", "b=2"),
            ("Server", "wcgid"),
            ("Date", "Tue, 08 Dec 2026 08:00:00 GMT"),
        ],
        "<h1>Hi</h1>\n",
    );
    assert_eq!(problems(&same), Vec::<String>::new());
    let cookies = &[
        ("Content-Type", "text/html"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ];
    let differing = [
        ("status", answer(201, cookies, "<h1>Hi</h1>\n")),
        ("a body byte", answer(200, cookies, "<h1>Hi</h1>\r\n")),
        ("a missing field", answer(200, &cookies[..2], "<h1>Hi</h1>\n")),
        (
            "repeated fields swapped",
            answer(200, &[cookies[0], cookies[2], cookies[1]], "<h1>Hi</h1>\n"),
        ),
        (
            "a value's case",
            answer(
                200,
                &[("Content-Type", "text/HTML"), cookies[1], cookies[2]],
                "<h1>Hi</h1>\n",
            ),
        ),
    ];
    for (what, b) in &differing {
        assert!(!problems(b).is_empty(), "{what}: not seen");
    }
    // Status only: the bodies may differ; Refused: any 4xx on both sides.
    let status_only = Case::get("/x").compare(Compare::Status);
    assert!(differential::problems(&status_only, &a, &differing[1].1).is_empty());
    assert!(!differential::problems(&status_only, &a, &differing[0].1).is_empty());
    let refused = Case::get("/x").expect(403, &[]).compare(Compare::Refused);
    let (forbidden, not_found) = (answer(403, &[], "no"), answer(404, &[], "none"));
    assert!(differential::problems(&refused, &forbidden, &not_found).is_empty());
    assert!(!differential::problems(&refused, &forbidden, &a).is_empty());
    // Side A itself must answer as expected: two sides failing alike fail.
    let broken = answer(502, &[("Content-Type", "text/plain")], "An error occurred\n");
    assert!(!differential::problems(&case(), &broken, &broken).is_empty());
}

/// Scripts that show what a request finds when it starts: the random
/// source, hash order, a global and `/tmp` as an earlier request left them.
const FRESH: &[(&str, &str)] = &[
    (
        "fresh.pl",
        "#!/usr/bin/perl\nuse strict;\nour $runs; $runs++;\nmy %h = map { $_ => 1 } 'a' .. 't';\n\
         my $left = -e '/tmp/left' ? 'yes' : 'no';\nopen(my $f, '>', '/tmp/left') or die;\n\
         print \"Content-Type: text/plain\\n\\n\";\n\
         print \"rand=\", rand(), \"\\nkeys=\", join(',', keys %h), \"\\nruns=$runs\\ntmp=$left\\nq=$ENV{QUERY_STRING}\\n\";\n",
    ),
    (
        "fresh.py",
        "#!/usr/bin/env python3\nimport builtins, os, random\n\
         builtins.runs = getattr(builtins, 'runs', 0) + 1\nleft = 'yes' if os.path.exists('/tmp/left') else 'no'\n\
         open('/tmp/left', 'w').close()\nprint('Content-Type: text/plain')\nprint()\n\
         print(f\"rand={random.random()}\\nruns={builtins.runs}\\ntmp={left}\\nq={os.environ['QUERY_STRING']}\")\n",
    ),
    (
        "exit.pl",
        "#!/usr/bin/perl\nprint \"Content-Type: text/plain\\n\\nbye\\n\";\nexit 3;\n",
    ),
    (
        "exit.py",
        "#!/usr/bin/env python3\nimport sys\nprint('Content-Type: text/plain')\nprint()\nprint('bye')\nsys.exit(4)\n",
    ),
];

/// Requests restored from the same warm snapshot: each gets its own random
/// values (and, in Perl, hash order: see docs/migration.md for Python's),
/// none sees what another left in globals or `/tmp`, the exit status is the
/// appStatus, and a script that dies before its headers gets a 502 with a
/// log line naming it.
fn warm_snapshots_keep_what_must_be_fresh_fresh(dir: &Path) {
    let site = site_copy(dir);
    for (name, text) in FRESH {
        let path = site.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let upstream = second_upstream(dir, &site).unwrap_or_else(|e| panic!("{e}"));
    let Upstream::Wcgid { daemon, socket } = &upstream else {
        unreachable!("side B is wcgid")
    };
    let mut id = 0;
    let mut run = |script: &str, query: &str| {
        id += 1;
        let params = Params::get(&format!("/cgi-bin/{script}"), query)
            .with("SCRIPT_FILENAME", site.join(script).as_os_str().as_encoded_bytes());
        fcgi::Conn::connect(socket).exchange(id, 0, &params, b"")
    };
    let field = |body: &str, name: &str| -> String {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {body:?}"))
            .to_owned()
    };
    for script in ["fresh.pl", "fresh.py"] {
        let answers: Vec<String> = (0..4)
            .map(|n| {
                let ex = run(script, &format!("n={n}"));
                let body = String::from_utf8_lossy(&ex.cgi().body).into_owned();
                assert_eq!(ex.cgi().status, 200, "{script}: {}", ex.summary());
                assert_eq!(
                    field(&body, "runs"),
                    "1",
                    "{script} saw an earlier run's global: {body}"
                );
                assert_eq!(field(&body, "tmp"), "no", "{script} saw an earlier run's /tmp: {body}");
                assert_eq!(field(&body, "q"), format!("n={n}"), "{script}: {body}");
                body
            })
            .collect();
        let rands: std::collections::HashSet<String> = answers.iter().map(|b| field(b, "rand")).collect();
        assert_eq!(rands.len(), 4, "{script}: random values repeat: {answers:?}");
        if script.ends_with(".pl") {
            let orders: std::collections::HashSet<String> = answers.iter().map(|b| field(b, "keys")).collect();
            assert!(orders.len() > 1, "{script}: one hash order in 4 requests: {answers:?}");
        }
    }
    for (script, status) in [("exit.pl", 3), ("exit.py", 4)] {
        let ex = run(script, "");
        assert_eq!(ex.cgi().body, b"bye\n", "{script}: {}", ex.summary());
        assert_eq!(ex.ended().app_status, status, "{script}: {}", ex.summary());
    }
    for (script, message) in [
        ("die.pl", "cannot read data/settings.conf"),
        ("die.py", "cannot connect to database"),
    ] {
        let ex = run(script, "");
        assert_eq!(ex.cgi().status, 502, "{script}: {}", ex.summary());
        let log = daemon.log();
        assert!(
            log.lines().any(|l| l.contains(message) && l.contains(script)),
            "no log line names {script} with {message:?}:\n{log}"
        );
    }
}
