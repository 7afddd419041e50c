//! The daemon as a container's entrypoint, PID 1 of its PID namespace.
//!
//! PID 1 has duties no other process has: the kernel gives it every orphan
//! of the namespace to reap, and delivers it only the signals it handles
//! (signal(7): a signal's default action never applies to the namespace's
//! init). wcgid meets them the way tini and `docker run --init` do: the
//! process started as PID 1 forks before it does anything else; the child
//! goes on to be the supervisor, and PID 1 stays a small init that forwards
//! every signal an operator or a container runtime sends to the supervisor,
//! reaps whatever exits, and ends with the supervisor's exit status.
//!
//! # Why by hand
//! `fork` is `unsafe` in Rust, and sound here only because no other thread
//! exists yet: [`become_init_if_pid1`] checks that, and runs first in
//! `main`. The crates that run a process as init (tini, dumb-init) are
//! programs, not libraries, and a second binary in the image would be one
//! more thing for an operator to wire up.

#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid};

/// What the init passes on to the supervisor: every signal someone may
/// send to a service (the supervisor gives meaning to TERM, INT, QUIT and
/// HUP, and ignores USR1 and USR2).
const FORWARDED: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Returns at once unless this process is PID 1. If it is, forks: returns
/// in the child, which is to be the supervisor; the parent never returns,
/// and exits with the child's status once it ends. Call first in `main`,
/// while the process has one thread.
pub fn become_init_if_pid1() -> std::io::Result<()> {
    if getpid().as_raw() != 1 {
        return Ok(());
    }
    if std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count()) != 1 {
        return Err(std::io::Error::other(
            "PID 1 must fork before it starts any thread; it has several",
        ));
    }
    // Blocked before the fork, so that none is lost before the init waits
    // for them; the child unblocks them.
    let mut waited = SigSet::empty();
    for signal in FORWARDED {
        waited.add(signal);
    }
    waited.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), Some(&mut old))?;
    // SAFETY: the process has a single thread (checked above), so the child
    // inherits no lock held by another thread and may run any code.
    match unsafe { fork() }? {
        ForkResult::Child => {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
            Ok(())
        }
        ForkResult::Parent { child } => std::process::exit(init(child, &waited)),
    }
}

/// PID 1's loop: forwards signals to the supervisor `child`, reaps every
/// process that ends, returns the exit code to end with once the child is
/// gone (128 + the signal's number if a signal ended it, as shells report).
fn init(child: Pid, waited: &SigSet) -> i32 {
    loop {
        let signal = match waited.wait() {
            Ok(signal) => signal,
            Err(_) => continue,
        };
        if signal != Signal::SIGCHLD {
            // A child already gone is reaped below.
            let _ = kill(child, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => return 128 + signal as i32,
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(_) => {}
            }
        }
    }
}
