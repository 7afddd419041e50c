//! `[cgi_bin]`: modules picked by SCRIPT_FILENAME under a root, the way
//! fcgiwrap serves a cgi-bin, and every way of asking for something outside it.
//! Through nginx (`SCRIPT_FILENAME $document_root$fastcgi_script_name`), and
//! raw, where nginx would have normalised the path away.

use crate::support::fcgi::{KEEP_CONN, Params};
use crate::support::{Fixture, lines_starting, tests};

tests! {
    Shared module_named_by_the_url_runs,
    Shared name_without_wasm_runs_the_wasm_file,
    Shared path_after_the_module_is_path_info,
    Shared cgi_bin_env_reaches_the_guest,
    Shared non_wasm_file_is_403,
    Shared missing_module_is_404,
    Shared symlinks_out_of_the_root_are_403,
    Shared symlink_inside_the_root_runs,
    Shared module_in_a_subdirectory_runs,
    Shared nginx_normalises_traversal_away,
    Shared raw_traversal_is_403,
    Shared raw_paths_outside_the_root_are_403,
    Shared document_root_and_script_name_without_script_filename,
    Shared apache_proxy_fcgi_prefix_is_dropped,
    Shared cve_2019_11043_param_shape_changes_nothing,
    Shared replaced_module_is_recompiled,
}

fn hello_from(f: &Fixture, target: &str) -> String {
    let r = f.get(target);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    r.text()
}

fn status_of(f: &Fixture, target: &str) -> u16 {
    let r = f.get(target);
    assert!(
        !r.text().contains("Hello") && r.text() != "1\n",
        "{target} ran: {:?}",
        r.text()
    );
    r.status
}

/// A raw request naming `script_filename` (SCRIPT_NAME under /cgi-bin/).
fn raw(f: &Fixture, script_filename: &str) -> (u16, String) {
    let params = Params::get("/cgi-bin/x", "name=raw").with("SCRIPT_FILENAME", script_filename);
    let ex = f.fcgi(&params, b"");
    let cgi = ex.cgi();
    (cgi.status, cgi.text())
}

fn module_named_by_the_url_runs(f: &Fixture) {
    assert_eq!(hello_from(f, "/cgi-bin/hello.wasm?name=bin"), "Hello, bin!\n");
}

fn name_without_wasm_runs_the_wasm_file(f: &Fixture) {
    assert_eq!(hello_from(f, "/cgi-bin/hello?name=bare"), "Hello, bare!\n");
}

fn path_after_the_module_is_path_info(f: &Fixture) {
    let env = hello_from(f, "/cgi-bin/env.wasm/extra/more?q=1");
    assert_eq!(
        lines_starting(&env, "PATH_INFO="),
        vec!["PATH_INFO=/extra/more"],
        "{env}"
    );
    assert_eq!(
        lines_starting(&env, "SCRIPT_NAME="),
        vec!["SCRIPT_NAME=/cgi-bin/env.wasm"]
    );
    let file = format!("SCRIPT_FILENAME={}", f.cgi_root.join("env.wasm").display());
    assert_eq!(lines_starting(&env, "SCRIPT_FILENAME="), vec![file.as_str()]);
    assert_eq!(lines_starting(&env, "QUERY_STRING="), vec!["QUERY_STRING=q=1"]);
    // Without the extension too.
    let env = hello_from(f, "/cgi-bin/env/x");
    assert_eq!(lines_starting(&env, "PATH_INFO="), vec!["PATH_INFO=/x"], "{env}");
    // No path info: none at all (nginx's empty PATH_INFO is absent).
    let env = hello_from(f, "/cgi-bin/env.wasm");
    assert_eq!(lines_starting(&env, "PATH_INFO"), Vec::<&str>::new(), "{env}");
}

fn cgi_bin_env_reaches_the_guest(f: &Fixture) {
    let env = hello_from(f, "/cgi-bin/env.wasm");
    assert_eq!(lines_starting(&env, "CGI_BIN="), vec!["CGI_BIN=yes"]);
    assert_eq!(lines_starting(&env, "argv: "), vec!["argv: env.wasm"]);
}

fn non_wasm_file_is_403(f: &Fixture) {
    assert_eq!(status_of(f, "/cgi-bin/notes.txt"), 403);
    assert_eq!(status_of(f, "/cgi-bin/notes.txt/more"), 403);
}

fn missing_module_is_404(f: &Fixture) {
    assert_eq!(status_of(f, "/cgi-bin/missing.wasm"), 404);
    assert_eq!(status_of(f, "/cgi-bin/missing"), 404);
    assert_eq!(status_of(f, "/cgi-bin/missing/with/path"), 404);
    assert_eq!(status_of(f, "/cgi-bin/sub/"), 404);
}

fn symlinks_out_of_the_root_are_403(f: &Fixture) {
    assert_eq!(status_of(f, "/cgi-bin/escape.wasm"), 403);
    assert_eq!(status_of(f, "/cgi-bin/escape"), 403);
    assert_eq!(status_of(f, "/cgi-bin/outdir/secret.wasm"), 403);
}

fn symlink_inside_the_root_runs(f: &Fixture) {
    assert_eq!(hello_from(f, "/cgi-bin/alias.wasm?name=alias"), "Hello, alias!\n");
}

fn module_in_a_subdirectory_runs(f: &Fixture) {
    assert_eq!(hello_from(f, "/cgi-bin/sub/nested.wasm?name=deep"), "Hello, deep!\n");
}

fn nginx_normalises_traversal_away(f: &Fixture) {
    // nginx resolves these before choosing a location, so none of them may
    // reach the bait as a module: whatever answers, it is not a 200.
    for target in [
        "/cgi-bin/../elsewhere/secret.wasm",
        "/cgi-bin/%2e%2e/elsewhere/secret.wasm",
        "/cgi-bin/sub/../../elsewhere/secret.wasm",
    ] {
        let r = f.get(target);
        assert_ne!(r.status, 200, "{target}: {:?}", r.text());
    }
}

fn raw_traversal_is_403(f: &Fixture) {
    let root = f.cgi_root.display();
    for path in [
        format!("{root}/../elsewhere/secret.wasm"),
        format!("{root}/sub/../hello.wasm"),
        format!("{root}/../cgi-bin/hello.wasm"),
        format!("{root}/./sub/../../elsewhere/secret.wasm"),
        format!("{root}/hello.wasm/../../elsewhere/secret.wasm"),
    ] {
        assert_eq!(raw(f, &path).0, 403, "{path}");
    }
}

fn raw_paths_outside_the_root_are_403(f: &Fixture) {
    let root = f.cgi_root.display();
    for path in [
        f.elsewhere.join("secret.wasm").display().to_string(),
        // A sibling whose name starts with the root's name.
        format!("{root}-evil/hello.wasm"),
        "/etc/passwd".to_string(),
        "relative/hello.wasm".to_string(),
        format!("{root}/escape.wasm"),
        format!("{root}/outdir/secret.wasm"),
    ] {
        assert_eq!(raw(f, &path).0, 403, "{path}");
    }
    // The root itself, and a directory in it, are no module.
    assert_eq!(raw(f, &root.to_string()).0, 404);
    assert_eq!(raw(f, &format!("{root}/sub")).0, 404);
    // The same raw request with a good path runs: the 403s above mean something.
    assert_eq!(
        raw(f, &format!("{root}/hello.wasm")),
        (200, "Hello, raw!\n".to_string())
    );
}

fn document_root_and_script_name_without_script_filename(f: &Fixture) {
    let www = f.www.display().to_string();
    let request = |script_name: &str| {
        let params = Params::get(script_name, "name=docroot").with("DOCUMENT_ROOT", &www);
        f.fcgi(&params, b"").cgi()
    };
    let ok = request("/cgi-bin/hello.wasm");
    assert_eq!((ok.status, ok.text().as_str()), (200, "Hello, docroot!\n"));
    assert_eq!(request("/cgi-bin/../elsewhere/secret.wasm").status, 403);
    assert_eq!(request("/cgi-bin/notes.txt").status, 403);
    assert_eq!(request("/cgi-bin/nothing.wasm").status, 404);
}

fn apache_proxy_fcgi_prefix_is_dropped(f: &Fixture) {
    let path = format!("proxy:fcgi://localhost:9000{}", f.cgi_root.join("hello.wasm").display());
    assert_eq!(raw(f, &path), (200, "Hello, raw!\n".to_string()));
    let path = format!(
        "proxy:fcgi://localhost:9000{}/../elsewhere/secret.wasm",
        f.cgi_root.display()
    );
    assert_eq!(raw(f, &path).0, 403);
}

fn replaced_module_is_recompiled(f: &Fixture) {
    let swap = f.cgi_root.join("swap.wasm");
    let next = f.cgi_root.join(".swap.tmp");
    std::fs::copy(crate::support::example_module("hello"), &swap).unwrap();
    assert_eq!(hello_from(f, "/cgi-bin/swap.wasm?name=v1"), "Hello, v1!\n");
    // Replaced the way deployments do it: a new file renamed over the old.
    std::fs::copy(crate::support::example_module("counter"), &next).unwrap();
    std::fs::rename(&next, &swap).unwrap();
    assert_eq!(hello_from(f, "/cgi-bin/swap.wasm"), "1\n");
    std::fs::remove_file(&swap).unwrap();
    assert_eq!(status_of(f, "/cgi-bin/swap.wasm"), 404);
}

/// The params nginx sends for CVE-2019-11043's request (`/x.wasm/%0a…` with
/// the vulnerable `fastcgi_split_path_info` config: the regex fails on the
/// newline, PATH_INFO is empty, SCRIPT_FILENAME holds the whole path, and a
/// long query string pads the params), replayed on a kept connection: an
/// answer, no crash, and the next request on that connection is unaffected
/// (conformance.md #77).
fn cve_2019_11043_param_shape_changes_nothing(f: &Fixture) {
    let root = f.cgi_root.display();
    let path = format!("{root}/hello.wasm/\nindex.php");
    let mut conn = f.conn();
    for padding in [1700, 1750, 1800, 1850] {
        let params = Params::get(
            "/cgi-bin/hello.wasm/\nindex.php",
            &format!("name=x&{}", "Q".repeat(padding)),
        )
        .with("SCRIPT_FILENAME", &path)
        .with("PATH_INFO", "")
        .with("HTTP_D_PISOS", "8=D")
        .with("HTTP_EBUT", "mamku tvoyu");
        let ex = conn.exchange(1, KEEP_CONN, &params, b"");
        let status = ex.cgi().status;
        assert!([200, 403, 404].contains(&status), "padding {padding}: {}", ex.summary());
    }
    let ex = conn.exchange(1, 0, &Params::get("/hello", "name=after"), b"");
    assert_eq!(ex.cgi().text(), "Hello, after!\n", "{}", ex.summary());
}
