//! The shared fixture: one wcgid serving the example guests on a temp Unix
//! socket, a real nginx in front of it, and the files the tests poke at.
//!
//! Layout of its directory:
//!
//! ```text
//! wcgid.sock  admin.sock  wcgid.toml  wcgid.log
//! data/                   mounted at /data for the cases app
//!   file.txt  sub/inner.txt
//!   link -> ../outside    (absolute symlink leading out of the mount)
//!   rel-link -> ../outside
//! outside                 a secret next to the mount
//! www/                    nginx's root
//!   cgi-bin/              wcgid's [cgi_bin] root
//!     hello.wasm env.wasm cases-bin.wasm sub/nested.wasm notes.txt
//!     alias.wasm -> hello.wasm           (inside the root: allowed)
//!     escape.wasm -> elsewhere/secret.wasm, outdir -> elsewhere  (out: refused)
//!   cgi-bin-evil/hello.wasm   a sibling whose name starts with the root's
//! elsewhere/secret.wasm   traversal bait (the counter guest)
//! nginx/                  nginx's own directory
//! ```

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::daemon::Daemon;
use super::nginx::{Nginx, Vars};
use super::{example_module, fcgi, http};

/// The fixture daemon's `max_connections` (what GET_VALUES must report).
pub const MAX_CONNECTIONS: usize = 300;
/// Set in the daemon's environment; must never reach a guest.
pub const SECRET_ENV: (&str, &str) = ("WCGID_TEST_SECRET", "leak");
/// The contents of `outside`, which no guest may read.
pub const SECRET: &str = "SECRET outside the mount\n";
/// The contents of `data/file.txt`.
pub const DATA_FILE: &str = "mounted file\n";
/// The scratch limit of the `upload-small` app.
pub const SMALL_SCRATCH: usize = 64 << 10;

pub struct Fixture {
    // nginx first: it stops before the daemon it talks to.
    pub nginx: Nginx,
    pub daemon: Daemon,
    pub socket: PathBuf,
    /// The daemon's admin socket (status, metrics, ping).
    pub admin: PathBuf,
    pub data: PathBuf,
    pub cgi_root: PathBuf,
    pub elsewhere: PathBuf,
    pub www: PathBuf,
}

fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    io(
        &format!("copy {} to {}", from.display(), to.display()),
        std::fs::copy(from, to),
    )
    .map(drop)
}

impl Fixture {
    pub fn start(dir: &Path) -> Result<Fixture, String> {
        for app in [
            "hello",
            "hello-c",
            "echo",
            "env",
            "counter",
            "cases",
            "dict",
            "dict-cold",
            "qjs",
            "qjs-cold",
            "upload-c",
        ] {
            if !example_module(app).is_file() {
                return Err(format!(
                    "{} is missing: run scripts/build-examples",
                    example_module(app).display()
                ));
            }
        }
        let (data, www, elsewhere) = (dir.join("data"), dir.join("www"), dir.join("elsewhere"));
        let cgi_root = www.join("cgi-bin");
        for d in [
            data.join("sub"),
            cgi_root.join("sub"),
            www.join("cgi-bin-evil"),
            elsewhere.clone(),
        ] {
            io("create fixture dirs", std::fs::create_dir_all(&d))?;
        }
        io("write", std::fs::write(data.join("file.txt"), DATA_FILE))?;
        io("write", std::fs::write(data.join("sub/inner.txt"), "inner\n"))?;
        io("write", std::fs::write(dir.join("outside"), SECRET))?;
        io("symlink", symlink(dir.join("outside"), data.join("link")))?;
        io("symlink", symlink("../outside", data.join("rel-link")))?;
        copy(&example_module("hello"), &cgi_root.join("hello.wasm"))?;
        copy(&example_module("env"), &cgi_root.join("env.wasm"))?;
        copy(&example_module("cases"), &cgi_root.join("cases-bin.wasm"))?;
        copy(&example_module("hello"), &cgi_root.join("sub/nested.wasm"))?;
        copy(&example_module("hello"), &www.join("cgi-bin-evil/hello.wasm"))?;
        copy(&example_module("counter"), &elsewhere.join("secret.wasm"))?;
        io("write", std::fs::write(cgi_root.join("notes.txt"), "not a module\n"))?;
        io("symlink", symlink("hello.wasm", cgi_root.join("alias.wasm")))?;
        io(
            "symlink",
            symlink(elsewhere.join("secret.wasm"), cgi_root.join("escape.wasm")),
        )?;
        io("symlink", symlink(&elsewhere, cgi_root.join("outdir")))?;

        let socket = dir.join("wcgid.sock");
        let admin = dir.join("admin.sock");
        let config = dir.join("wcgid.toml");
        io(
            "write config",
            std::fs::write(&config, config_text(&socket, &admin, &data, &cgi_root)),
        )?;
        let daemon = Daemon::start(&config, &dir.join("wcgid.log"), &socket, &[SECRET_ENV])?;
        let nginx_dir = dir.join("nginx");
        io("create nginx dir", std::fs::create_dir_all(&nginx_dir))?;
        let nginx = Nginx::start(
            &nginx_dir,
            &Vars {
                socket: &socket,
                admin: &admin,
                docroot: &www,
            },
        )?;
        let fixture = Fixture {
            nginx,
            daemon,
            socket,
            admin,
            data,
            cgi_root,
            elsewhere,
            www,
        };
        // The whole path works before any test runs.
        let hello = http::send(fixture.nginx.port, "GET", "/hello", &[], b"").map_err(|e| e.to_string())?;
        if hello.status != 200 {
            return Err(format!(
                "GET /hello through nginx: {} {:?}\nnginx:\n{}\nwcgid:\n{}",
                hello.status,
                hello.text(),
                fixture.nginx.logs(),
                fixture.daemon.log()
            ));
        }
        Ok(fixture)
    }

    pub fn port(&self) -> u16 {
        self.nginx.port
    }

    /// GET through nginx.
    pub fn get(&self, target: &str) -> http::Response {
        http::get(self.port(), target)
    }

    /// Any request through nginx.
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Response {
        http::request(self.port(), method, target, headers, body)
    }

    /// A raw FastCGI connection to the daemon.
    pub fn conn(&self) -> fcgi::Conn {
        fcgi::Conn::connect(&self.socket)
    }

    /// One raw FastCGI request (id 1, no FCGI_KEEP_CONN) on a new connection.
    pub fn fcgi(&self, params: &fcgi::Params, stdin: &[u8]) -> fcgi::Exchange {
        self.conn().exchange(1, 0, params, stdin)
    }
}

fn config_text(socket: &Path, admin: &Path, data: &Path, cgi_root: &Path) -> String {
    let module = |name: &str| example_module(name).display().to_string();
    format!(
        r#"# Written by integration/support/fixture.rs.
[server]
listen = "unix:{socket}"
workers = 4
max_connections = {MAX_CONNECTIONS}

[admin]
listen = "unix:{admin}"

[[app]]
name = "hello"
route = "/hello"
module = "{hello}"

[[app]]
name = "hello-c"
route = "/c/hello"
module = "{hello_c}"

[[app]]
name = "echo"
route = "/echo"
module = "{echo}"

[[app]]
name = "env"
route = "/env"
module = "{env}"
env = {{ X_APP = "from-config" }}

[[app]]
name = "env-proxy"
route = "/env-proxy"
module = "{env}"
pass_http_proxy = true

[[app]]
name = "env-no-tmp"
route = "/env-no-tmp"
module = "{env}"
[app.limits]
scratch = "0"

[[app]]
name = "counter"
route = "/counter"
module = "{counter}"

[[app]]
name = "dict"
route = "/dict"
module = "{dict}"

[[app]]
name = "dict-cold"
route = "/dict-cold"
module = "{dict_cold}"

[[app]]
name = "js"
route = "/js"
module = "{qjs}"

[[app]]
name = "js-cold"
route = "/js-cold"
module = "{qjs_cold}"

[[app]]
name = "cases"
route = "/cases"
module = "{cases}"
mounts = [{{ host = "{data}", guest = "/data" }}]

[[app]]
name = "upload"
route = "/upload"
module = "{upload}"

[[app]]
name = "upload-small"
route = "/upload-small"
module = "{upload}"
[app.limits]
scratch = "{SMALL_SCRATCH}"

[[app]]
name = "upload-none"
route = "/upload-none"
module = "{upload}"
[app.limits]
scratch = "0"

[cgi_bin]
root = "{cgi_root}"
env = {{ CGI_BIN = "yes" }}
"#,
        socket = socket.display(),
        admin = admin.display(),
        hello = module("hello"),
        hello_c = module("hello-c"),
        echo = module("echo"),
        env = module("env"),
        counter = module("counter"),
        cases = module("cases"),
        dict = module("dict"),
        dict_cold = module("dict-cold"),
        qjs = module("qjs"),
        qjs_cold = module("qjs-cold"),
        upload = module("upload-c"),
        data = data.display(),
        cgi_root = cgi_root.display(),
    )
}
