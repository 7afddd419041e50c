//! Apache in front: the `mod_proxy_fcgi` setup the README documents, with a
//! real apache2 (Debian's) on a free port, its own daemon behind it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::daemon::Daemon;
use crate::support::nginx::free_port;
use crate::support::{example_module, http, poll, tests};

tests! {
    Alone apache_mod_proxy_fcgi_serves_apps,
}

const MODULES: &str = "/usr/lib/apache2/modules";

/// apache2 in the foreground with a minimal configuration; killed on drop.
struct Apache(Child);

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        if poll(Duration::from_secs(5), || self.0.try_wait().ok().flatten()).is_none() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
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

    let port = free_port();
    let conf = dir.join("apache2.conf");
    let run = dir.join("apache");
    std::fs::create_dir_all(&run).unwrap();
    // The parent directories must let Apache's user reach the socket.
    let _ = Command::new("chmod").arg("o+x").arg(dir).status();
    let proxy = |route: &str| {
        format!(
            "ProxyPass \"{route}\" \"unix:{}|fcgi://localhost{route}\" enablereuse=on\n",
            socket.display()
        )
    };
    let text = format!(
        "ServerRoot {run}\nServerName localhost\nListen 127.0.0.1:{port}\nPidFile {run}/apache2.pid\n\
         ErrorLog {run}/error.log\nLogLevel warn\nUser www-data\nGroup www-data\n\
         LoadModule mpm_event_module {MODULES}/mod_mpm_event.so\n\
         LoadModule authz_core_module {MODULES}/mod_authz_core.so\n\
         LoadModule proxy_module {MODULES}/mod_proxy.so\n\
         LoadModule proxy_fcgi_module {MODULES}/mod_proxy_fcgi.so\n\
         {}{}",
        proxy("/hello"),
        proxy("/echo"),
        run = run.display(),
    );
    std::fs::write(&conf, text).unwrap();
    let child = Command::new("apache2")
        .arg("-f")
        .arg(&conf)
        .arg("-DFOREGROUND")
        .env("APACHE_RUN_DIR", &run)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(run.join("stderr.log")).unwrap())
        .spawn()
        .expect("apache2 (Debian package apache2)");
    let _apache = Apache(child);
    let log = || {
        let read = |f: &str| std::fs::read_to_string(run.join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    };
    let up = poll(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
    assert!(up.is_some(), "apache2 did not listen:\n{}", log());

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
