//! Sizes and durations as the configuration writes them: `"16MiB"`,
//! `"30s"`.

use std::time::Duration;

/// A size: bytes, or a number with the unit B, KiB, MiB or GiB ("16MiB").
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || "must be a size like \"16MiB\" (B, KiB, MiB or GiB)".to_owned();
    let digits = text
        .trim()
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.trim().len());
    let (number, unit) = text.trim().split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(bad()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(bad)
}

pub(super) fn show_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

/// A duration in humantime's syntax: a number and a unit, ms, s, m or h
/// (`"30s"`) as documented, or any other it knows (`"1m 30s"`, `"2.5s"`).
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| "must be a duration like \"30s\" (ms, s, m or h)".to_owned())
}
