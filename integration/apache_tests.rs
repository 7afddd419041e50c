//! Apache in front: the `mod_proxy_fcgi` setup the README documents, with a
//! real apache2 (Debian's) on a free port, its own daemon behind it.

use std::path::Path;
use std::process::Command;

use crate::support::apache::Apache;
use crate::support::daemon::Daemon;
use crate::support::{example_module, http, tests};

tests! {
    Alone apache_mod_proxy_fcgi_serves_apps,
}

/// The README's `ProxyPass` lines for `/hello` and `/echo`.
fn apache_mod_proxy_fcgi_serves_apps(dir: &Path) {
    let socket = dir.join("wcgid.sock");
    let mut config = format!(
        // Apache's children run as an unprivileged user: the socket must
        // let it in (force_socket_mode: this test alone, on its own dir).
        "[server]\nlisten = \"unix:{}\"\nsocket_mode = \"0666\"\nforce_socket_mode = true\nworkers = 1\n",
        socket.display()
    );
    for app in ["hello", "echo"] {
        config.push_str(&format!(
            "\n[[app]]\nname = \"{app}\"\nroute = \"/{app}\"\nmodule = \"{}\"\n",
            example_module(app).display()
        ));
    }
    let config_path = dir.join("wcgid.toml");
    std::fs::write(&config_path, config).unwrap();
    let _d = Daemon::start(&config_path, &dir.join("wcgid.log"), &socket, &[]).unwrap_or_else(|e| panic!("{e}"));

    // The parent directories must let Apache's user reach the socket.
    let _ = Command::new("chmod").arg("o+x").arg(dir).status();
    let proxy = |route: &str| {
        format!(
            "ProxyPass \"{route}\" \"unix:{}|fcgi://localhost{route}\" enablereuse=on\n",
            socket.display()
        )
    };
    let apache = Apache::start(
        &dir.join("apache"),
        &["proxy", "proxy_fcgi"],
        &format!("{}{}", proxy("/hello"), proxy("/echo")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (port, log) = (apache.port, || apache.log());

    let r = http::get(port, "/hello?name=apache");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, apache!\n"), "{}", log());
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = http::request(
        port,
        "POST",
        "/echo",
        &[("Content-Type", "application/octet-stream")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", log());
    assert!(r.body == body, "echoed body differs ({} bytes)", r.body.len());
}
