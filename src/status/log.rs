//! The log lines every wcgid process writes: to stderr, as text or JSON, and
//! as the journal wants them when stderr is the journal.

/// Logs to stderr, filtered by `WCGID_LOG` (tracing env-filter syntax,
/// default `info`), as text or, with `WCGID_LOG_FORMAT=json`, one JSON
/// object per line. When stderr is the journal (systemd's `JOURNAL_STREAM`
/// names it), text lines carry no timestamp (journald stamps them) and
/// start with their syslog priority, `<3>` for an error (sd-daemon(3)), so
/// that `journalctl -p` and `systemctl status` tell errors from the rest.
pub fn init() -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WCGID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("WCGID_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().init(),
        Ok("text") | Err(std::env::VarError::NotPresent) if stderr_is_the_journal() => logs
            .event_format(Journal(
                tracing_subscriber::fmt::format().without_time().with_ansi(false),
            ))
            .init(),
        Ok("text") | Err(std::env::VarError::NotPresent) => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok(other) => return Err(format!("WCGID_LOG_FORMAT = {other:?}: use \"text\" or \"json\"")),
        Err(e) => return Err(format!("WCGID_LOG_FORMAT: {e}")),
    }
    Ok(())
}

/// Whether stderr is the stream `JOURNAL_STREAM` ("device:inode") names,
/// as systemd.exec(5) says to check.
fn stderr_is_the_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    stream == format!("{}:{}", stat.st_dev, stat.st_ino)
}

/// A text line prefixed with its event's syslog priority.
struct Journal<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Journal<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}
