//! A real nginx in front of the daemon, in the foreground, from a checked-in
//! template (`integration/nginx.conf`, or another one beside it): every path
//! it writes (pid, logs, temp files) is inside its own directory.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{kill_tree, poll, track, untrack};

/// Values for the template's `{{NAME}}` placeholders, besides `{{DIR}}`,
/// `{{PORT}}`, `{{USER}}` and `{{INTEGRATION}}`, which [`Nginx::start`] fills in.
pub struct Vars<'a> {
    pub socket: &'a Path,
    /// wcgid's admin socket.
    pub admin: &'a Path,
    pub docroot: &'a Path,
}

pub struct Nginx {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

/// A port nobody listens on right now: bound to port 0, then released.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

fn nginx_bin() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nginx"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| "/usr/sbin/nginx".into())
}

/// `user NAME GROUP;` for the user running the tests: as root, nginx would
/// otherwise run its workers as `nobody`, who cannot use the 0660 socket.
/// When not root, nginx ignores the directive with a warning.
fn user_directive() -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten();
    let group = nix::unistd::Group::from_gid(nix::unistd::getegid()).ok().flatten();
    match (user, group) {
        (Some(u), Some(g)) => format!("user {} {};", u.name, g.name),
        _ => String::new(),
    }
}

impl Nginx {
    /// Renders `integration/nginx.conf` into `dir` and starts nginx on a
    /// free port; returns once the port accepts connections.
    pub fn start(dir: &Path, vars: &Vars) -> Result<Nginx, String> {
        let vars = [
            ("SOCKET", vars.socket.display().to_string()),
            ("ADMIN", vars.admin.display().to_string()),
            ("DOCROOT", vars.docroot.display().to_string()),
        ];
        Self::start_template(dir, "nginx.conf", &vars)
    }

    /// [`Nginx::start`] with the template `integration/{template}`, its
    /// `{{NAME}}` placeholders filled from `vars` besides `{{DIR}}`,
    /// `{{PORT}}`, `{{USER}}` and `{{INTEGRATION}}`.
    pub fn start_template(dir: &Path, template: &str, vars: &[(&str, String)]) -> Result<Nginx, String> {
        let integration = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration");
        let template = std::fs::read_to_string(integration.join(template))
            .map_err(|e| format!("{}: {e}", integration.join(template).display()))?;
        for sub in [
            "client_body_temp",
            "fastcgi_temp",
            "proxy_temp",
            "uwsgi_temp",
            "scgi_temp",
        ] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        let port = free_port();
        let mut conf = template
            .replace("{{USER}}", &user_directive())
            .replace("{{DIR}}", &dir.display().to_string())
            .replace("{{PORT}}", &port.to_string())
            .replace("{{INTEGRATION}}", &integration.display().to_string());
        for (name, value) in vars {
            conf = conf.replace(&format!("{{{{{name}}}}}"), value);
        }
        if let Some(at) = conf.find("{{") {
            let end = conf[at..].find("}}").map_or(conf.len(), |e| at + e + 2);
            return Err(format!(
                "unfilled placeholder in the nginx template: {}",
                &conf[at..end]
            ));
        }
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let file = |name: &str| File::create(dir.join(name)).map_err(|e| e.to_string());
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(file("nginx.stdout")?)
            .stderr(file("nginx.stderr")?)
            .spawn()
            .map_err(|e| format!("cannot run nginx ({}): {e}", nginx_bin().display()))?;
        track(child.id() as i32);
        let mut nginx = Nginx {
            child: Some(child),
            port,
            dir: dir.into(),
        };
        let ready = poll(Duration::from_secs(20), || {
            let child = nginx.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!("nginx exited ({status})")));
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| Ok(()))
        })
        .unwrap_or_else(|| Err("nginx not listening after 20 s".into()));
        ready.map_err(|e| format!("{e}; stderr and error.log:\n{}", nginx.logs()))?;
        Ok(nginx)
    }

    /// nginx's stderr and error log.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("nginx.stderr"), read("error.log"))
    }

    /// Fast shutdown (SIGTERM); SIGKILL for the master and its workers if it
    /// takes more than 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if poll(Duration::from_secs(10), || child.try_wait().ok().flatten()).is_none() {
            kill_tree(pid);
            let _ = child.wait();
        }
        untrack(pid);
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
