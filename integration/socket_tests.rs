//! The listening socket: the Unix socket's mode and group, and bad values
//! for them; a stale socket, a live one or another file where the socket
//! goes; TCP. Each test starts its own daemon in its own directory.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use crate::support::alone::{RUN_TIMEOUT, assert_hello, assert_usage_error, config, start};
use crate::support::daemon::{self, Daemon};
use crate::support::fcgi::{self, END_REQUEST, Params, STDOUT};
use crate::support::{poll, tests};

tests! {
    Alone bad_socket_mode_is_64_naming_key_and_value,
    Alone socket_is_0660_by_default,
    Alone socket_mode_is_honoured,
    Alone socket_group_is_applied,
    Alone unknown_socket_group_is_64,
    Alone stale_socket_file_is_replaced,
    Alone live_socket_is_refused,
    Alone non_socket_file_is_not_replaced,
    Alone tcp_listener_serves_fastcgi,
}

fn mode_of(path: &Path) -> u32 {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.file_type().is_socket(), "{} is not a socket", path.display());
    meta.permissions().mode() & 0o7777
}

fn bad_socket_mode_is_64_naming_key_and_value(dir: &Path) {
    let (config, socket) = config(dir, "socket_mode = \"999\"", &["hello"]);
    let run = daemon::run(dir, &["-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert_usage_error(&run, &["server.socket_mode", "999"]);
    assert!(!socket.exists());
}

fn socket_is_0660_by_default(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    assert_eq!(mode_of(&socket), 0o660, "log:\n{}", d.log());
    assert_hello(&socket, "mode");
}

fn socket_mode_is_honoured(dir: &Path) {
    let (config, socket) = config(dir, "socket_mode = \"0600\"", &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    assert_eq!(mode_of(&socket), 0o600, "log:\n{}", d.log());
    assert_hello(&socket, "private");
}

fn socket_group_is_applied(dir: &Path) {
    // Root may give the socket any group; others only one of their own.
    let gid = if nix::unistd::geteuid().is_root() {
        1
    } else {
        nix::unistd::getegid().as_raw()
    };
    let (config, socket) = config(dir, &format!("socket_group = \"{gid}\""), &["hello"]);
    let d = start(dir, &config, &socket, &[]);
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.gid(), gid, "log:\n{}", d.log());
    assert_eq!(mode_of(&socket), 0o660);
    assert_hello(&socket, "group");
}

fn unknown_socket_group_is_64(dir: &Path) {
    let (config, socket) = config(dir, "socket_group = \"no-such-group-wcgid\"", &["hello"]);
    let run = daemon::run(dir, &["-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert_usage_error(&run, &["server.socket_group", "no-such-group-wcgid"]);
    assert!(!socket.exists());
}

fn stale_socket_file_is_replaced(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    // A dead daemon's socket: bound, then closed without unlinking.
    drop(UnixListener::bind(&socket).expect("bind the stale socket"));
    assert!(std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()));
    // Had the stale file stayed, binding would fail and the daemon exit.
    let _d = start(dir, &config, &socket, &[]);
    assert_hello(&socket, "fresh");
    assert_eq!(mode_of(&socket), 0o660);
}

fn live_socket_is_refused(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    let mut first = start(dir, &config, &socket, &[]);
    let ino = std::fs::metadata(&socket).unwrap().ino();
    let run = daemon::run(dir, &["-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert!(!run.status.success(), "a second daemon took a live socket");
    assert!(
        run.stderr.contains(&socket.display().to_string()),
        "the message must name the socket:\n{}",
        run.stderr
    );
    // The first daemon keeps its socket and serves on.
    assert_eq!(std::fs::metadata(&socket).unwrap().ino(), ino);
    assert_hello(&socket, "first");
    assert!(first.stop().is_some_and(|s| s.success()));
}

fn non_socket_file_is_not_replaced(dir: &Path) {
    let (config, socket) = config(dir, "", &["hello"]);
    std::fs::write(&socket, "precious").unwrap();
    let run = daemon::run(dir, &["-c", &config.display().to_string()], &[], RUN_TIMEOUT);
    assert!(!run.status.success(), "started over a regular file");
    assert!(run.stderr.contains(&socket.display().to_string()), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

fn tcp_listener_serves_fastcgi(dir: &Path) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (config, socket) = config(dir, "", &["hello"]);
    let listen = format!("tcp:127.0.0.1:{port}");
    let mut d = Daemon::spawn(&config, &dir.join("wcgid.log"), &[("WCGID_SERVER__LISTEN", &listen)]);
    let mut stream = poll(Duration::from_secs(60), || {
        assert!(d.try_wait().is_none(), "wcgid exited; log:\n{}", d.log());
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .unwrap_or_else(|| panic!("wcgid not listening on {listen}; log:\n{}", d.log()));
    assert!(!socket.exists(), "no Unix socket when listening on TCP");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
        .write_all(&fcgi::request(1, 0, &Params::get("/hello", "name=tcp"), b""))
        .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read until the daemon closes");
    let records = fcgi::parse_records(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"));
    let stdout: Vec<u8> = records
        .iter()
        .filter(|r| r.kind == STDOUT)
        .flat_map(|r| r.content.clone())
        .collect();
    assert_eq!(fcgi::CgiResponse::parse(&stdout).text(), "Hello, tcp!\n");
    assert_eq!(records.last().map(|r| r.kind), Some(END_REQUEST));
}
