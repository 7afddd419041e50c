//! fcgiwrap (Debian's), the FastCGI server wcgid replaces: it forks and
//! execs the program `SCRIPT_FILENAME` names, in the program's directory,
//! with the FastCGI params and its own environment as the program's.
//!
//! Started with an environment of its own choosing, not the test runner's:
//! `PATH=/usr/bin:/bin`, so that a `#!/usr/bin/env python3` script runs
//! Debian's python3 and not a shim from a developer's PATH (pyenv's), and
//! `TMPDIR` in the test's directory, where CGI.pm and `cgi.FieldStorage`
//! spool uploads. A program's stderr goes to fcgiwrap's log.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{kill_tree, poll, track, untrack};

/// Debian installs it outside a user's usual PATH.
const BINARY: &str = "/usr/sbin/fcgiwrap";

/// An fcgiwrap and the processes it preforked, in a process group of their
/// own; stopped (the whole group) on drop.
pub struct Fcgiwrap {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Fcgiwrap {
    /// `fcgiwrap -c processes -s unix:socket`, its output in `log`, `tmp`
    /// its programs' TMPDIR (created); returns once the socket accepts.
    pub fn start(socket: &Path, processes: usize, tmp: &Path, log: &Path) -> Result<Fcgiwrap, String> {
        if !Path::new(BINARY).is_file() {
            return Err(format!("{BINARY} is missing: apt-get install fcgiwrap"));
        }
        std::fs::create_dir_all(tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let out = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = Command::new(BINARY)
            .arg("-c")
            .arg(processes.to_string())
            .arg("-s")
            .arg(format!("unix:{}", socket.display()))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {BINARY}: {e}"))?;
        track(child.id() as i32);
        let mut fcgiwrap = Fcgiwrap {
            child,
            socket: socket.into(),
            log: log.into(),
        };
        let ready = poll(Duration::from_secs(10), || {
            if let Ok(Some(status)) = fcgiwrap.child.try_wait() {
                return Some(Err(format!("fcgiwrap exited ({status})")));
            }
            UnixStream::connect(socket).ok().map(|_| Ok(()))
        })
        .unwrap_or_else(|| Err(format!("fcgiwrap not accepting on {} after 10 s", socket.display())));
        ready.map_err(|e| format!("{e}; its log:\n{}", fcgiwrap.log()))?;
        Ok(fcgiwrap)
    }

    /// Its output so far: what the programs wrote to stderr.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Fcgiwrap {
    /// SIGTERM to the group (fcgiwrap leaves its preforked processes
    /// behind otherwise), SIGKILL to it after 5 s.
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        if poll(Duration::from_secs(5), || self.child.try_wait().ok().flatten()).is_none() {
            kill_tree(pid);
            let _ = self.child.wait();
        }
        let _ = killpg(group, Signal::SIGKILL);
        untrack(pid);
    }
}
