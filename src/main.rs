//! The `wcgid` binary.
//!
//! A panic is a bug, and the process that hits it ends at once (SIGABRT), as
//! a `panic = "abort"` build would: a caught panic could leave shared state
//! half updated behind it (a tokio task's, say), where an ended worker is
//! replaced by the supervisor. A hook rather than the profile setting, so
//! that the tests and the binary they run share one build of every
//! dependency (tests always unwind).
fn main() -> std::process::ExitCode {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    wcgid::cli::main()
}
