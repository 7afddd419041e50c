//! The wcgid binary as a child process: started with a config file, its
//! stderr (the log) in a file, stopped with SIGTERM (SIGKILL if it hangs).

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{poll, track, untrack};

/// How long a daemon may take to compile its modules and bind its socket.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping daemon may take to drain before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// `wcgid` with a clean slate: no `WCGID_*` variable of the caller's
/// environment (they would override the test's config), log level info.
pub fn command() -> Command {
    let mut cmd = clean(Command::new(binary()));
    cmd.stdin(Stdio::null());
    cmd
}

/// [`command`] run by `wrapper` (a program and its arguments, the wcgid
/// binary appended to them).
pub fn wrapped(wrapper: &[&str]) -> Command {
    let mut cmd = clean(Command::new(wrapper[0]));
    cmd.args(&wrapper[1..]).arg(binary()).stdin(Stdio::null());
    cmd
}

/// `cmd` without the caller's `WCGID_*` variables, with log level info.
fn clean(mut cmd: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WCGID_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("WCGID_LOG", "info");
    cmd
}

/// A finished `wcgid` run.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `wcgid args` to its end (killed after `timeout`), output captured in
/// files under `dir`.
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Finished {
    let (out, err) = (dir.join("run.stdout"), dir.join("run.stderr"));
    let mut child = command()
        .args(args)
        .envs(env.iter().copied())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("spawn wcgid");
    track(child.id() as i32);
    let status = poll(timeout, || child.try_wait().expect("wait for wcgid"));
    untrack(child.id() as i32);
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "wcgid {args:?} still running after {timeout:?}; stderr:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        )
    });
    Finished {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

pub struct Daemon {
    child: Child,
    exited: Option<ExitStatus>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `wcgid serve -c config`, logging to `log`, without waiting.
    pub fn spawn(config: &Path, log: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::spawn_in(config, log, env, None)
    }

    /// [`Daemon::spawn`] with the working directory `cwd`.
    pub fn spawn_in(config: &Path, log: &Path, env: &[(&str, &str)], cwd: Option<&Path>) -> Daemon {
        let mut cmd = command();
        cmd.arg("serve")
            .arg("-c")
            .arg(config)
            .envs(env.iter().copied())
            .stdout(File::create(log.with_extension("stdout")).expect("create stdout file"))
            .stderr(File::create(log).expect("create log file"));
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd.spawn().expect("spawn wcgid");
        track(child.id() as i32);
        Daemon {
            child,
            exited: None,
            log: log.into(),
        }
    }

    /// Spawns the daemon and waits until `socket` accepts connections.
    pub fn start(config: &Path, log: &Path, socket: &Path, env: &[(&str, &str)]) -> Result<Daemon, String> {
        let mut daemon = Self::spawn(config, log, env);
        daemon.wait_ready(socket)?;
        Ok(daemon)
    }

    /// Waits until `socket` exists and accepts a connection; fails at once if
    /// the daemon exits, with its log.
    pub fn wait_ready(&mut self, socket: &Path) -> Result<(), String> {
        let ready = poll(START_TIMEOUT, || {
            if let Some(status) = self.try_wait() {
                return Some(Err(format!(
                    "wcgid exited ({status}) before serving; log:\n{}",
                    self.log()
                )));
            }
            UnixStream::connect(socket).ok().map(|_| Ok(()))
        });
        ready.unwrap_or_else(|| {
            Err(format!(
                "wcgid not accepting on {} after {START_TIMEOUT:?}; log:\n{}",
                socket.display(),
                self.log()
            ))
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The pids of its worker processes.
    pub fn workers(&self) -> Vec<i32> {
        let daemon = self.pid().to_string();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(str::trim);
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if ppid == Some(&daemon) && cmdline.windows(8).any(|w| w == b"__worker") {
                pids.push(pid);
            }
        }
        pids
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Length of the log so far, to read what comes after with [`Daemon::log_since`].
    pub fn log_len(&self) -> usize {
        std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize)
    }

    pub fn log_since(&self, mark: usize) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(log.get(mark..).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits up to 5 s for the log after `mark` to satisfy `pred`, and returns it.
    pub fn wait_log(&self, mark: usize, pred: impl Fn(&str) -> bool) -> Result<String, String> {
        poll(Duration::from_secs(5), || {
            let log = self.log_since(mark);
            pred(&log).then_some(log)
        })
        .ok_or_else(|| self.log_since(mark))
    }

    /// Resident memory of the daemon, in KiB (VmRSS of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    pub fn signal(&self, signal: Signal) {
        if self.exited.is_none() {
            let _ = kill(Pid::from_raw(self.pid()), signal);
        }
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("wait for wcgid");
            if self.exited.is_some() {
                untrack(self.pid());
            }
        }
        self.exited
    }

    /// Waits up to `timeout` for the daemon to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.try_wait())
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            untrack(self.pid());
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after [`STOP_TIMEOUT`].
    /// Returns how it exited, `None` if it had to be killed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait(STOP_TIMEOUT) {
            return Some(status);
        }
        self.kill();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.stop();
        }
    }
}

/// The daemon under test: `WCGID_TEST_BIN` (scripts/test sets it to the
/// `panic = "abort"` build for a second run), else the one cargo built.
pub fn binary() -> std::ffi::OsString {
    std::env::var_os("WCGID_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_wcgid").into())
}

/// `systemd-socket-activate` listening on `sockets` (named `fdnames`, as
/// `--fdname` takes them, if given), starting `wcgid -c config` with the
/// sockets passed as fds from 3 on the first connection; its output in
/// `log`.
pub fn socket_activated(sockets: &[&Path], fdnames: Option<&str>, config: &Path, log: &Path) -> Child {
    let log = File::create(log).expect("create log");
    let mut cmd = Command::new("systemd-socket-activate");
    for socket in sockets {
        cmd.arg("-l").arg(socket);
    }
    if let Some(names) = fdnames {
        cmd.arg(format!("--fdname={names}"));
    }
    cmd.arg(binary())
        .arg("-c")
        .arg(config)
        .stderr(log.try_clone().expect("clone log"))
        .stdout(log)
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd)")
}

/// `wcgid -c config` given `listener` as systemd passes a socket it keeps
/// (fd 3, `LISTEN_FDS`, `LISTEN_PID`): the caller's copy stays open, so
/// what waits in the backlog when wcgid exits is still there for the next
/// start. Its output in `log`.
pub fn activated_on(listener: &std::os::unix::net::UnixListener, config: &Path, log: &Path) -> Child {
    let log = File::create(log).expect("create log");
    let passed = listener.try_clone().expect("duplicate the listening socket");
    // The shell moves the socket from stdin to fd 3 and names its own pid,
    // which exec keeps.
    let child = clean(Command::new("sh"))
        .arg("-c")
        .arg(r#"exec 3<&0 0</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" -c "$1""#)
        .arg(binary())
        .arg(config)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(passed)))
        .stderr(log.try_clone().expect("clone log"))
        .stdout(log)
        .spawn()
        .expect("spawn sh");
    track(child.id() as i32);
    child
}
