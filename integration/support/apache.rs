//! A real apache2 (Debian's) in the foreground, on a free port, with a
//! minimal configuration written into its own directory.
//!
//! Its children run as `www-data`: whatever they connect to (a FastCGI
//! socket) must let that user in, and the directories on the way must be
//! searchable by others.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::nginx::free_port;
use super::{poll, track, untrack};

const MODULES: &str = "/usr/lib/apache2/modules";

/// apache2 and its children; stopped on drop.
pub struct Apache {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Apache {
    /// Starts apache2 with `config` in `dir` (created), loading
    /// `mod_mpm_event`, `mod_authz_core` and `mod_NAME` for each of
    /// `modules`; returns once the port accepts connections.
    pub fn start(dir: &Path, modules: &[&str], config: &str) -> Result<Apache, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let port = free_port();
        let mut text = format!(
            "ServerRoot {dir}\nServerName localhost\nListen 127.0.0.1:{port}\nPidFile {dir}/apache2.pid\n\
             ErrorLog {dir}/error.log\nLogLevel warn\nUser www-data\nGroup www-data\n",
            dir = dir.display(),
        );
        for module in ["mpm_event", "authz_core"].iter().chain(modules) {
            text.push_str(&format!("LoadModule {module}_module {MODULES}/mod_{module}.so\n"));
        }
        text.push_str(config);
        let conf = dir.join("apache2.conf");
        std::fs::write(&conf, text).map_err(|e| format!("write {}: {e}", conf.display()))?;
        let stderr = std::fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
        let child = Command::new("apache2")
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            .env("APACHE_RUN_DIR", dir)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run apache2 (Debian package apache2): {e}"))?;
        track(child.id() as i32);
        let mut apache = Apache {
            child,
            port,
            dir: dir.into(),
        };
        let up = poll(Duration::from_secs(10), || {
            if let Ok(Some(status)) = apache.child.try_wait() {
                return Some(Err(format!("apache2 exited ({status})")));
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| Ok(()))
        })
        .unwrap_or_else(|| Err("apache2 not listening after 10 s".into()));
        up.map_err(|e| format!("{e}:\n{}", apache.log()))?;
        Ok(apache)
    }

    /// Its stderr and error log.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if poll(Duration::from_secs(5), || self.child.try_wait().ok().flatten()).is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        untrack(pid);
    }
}
