//! Differential testing: the same requests sent through one web server to two
//! FastCGI upstreams, side A (the reference) and side B, and their answers
//! compared.
//!
//! The web server (nginx or Apache) picks the side by the request header
//! [`SIDE_HEADER`] and does not pass that header on, so that both sides see
//! the same request in every other respect: the same SCRIPT_NAME,
//! SERVER_PORT, HTTP_HOST, and the same treatment of their answers.
//!
//! What is compared, per [`Compare`]:
//!
//! - the status;
//! - the header fields, but [`IGNORED_HEADERS`] (`Date` and `Server` carry
//!   the time and the server's version), as a list sorted by lower-cased
//!   name: field names are case-insensitive and the order of different
//!   fields carries no meaning, but that of repeated ones does (two
//!   `Set-Cookie` fields), so the sort is stable and values are compared
//!   exactly;
//! - the body, byte for byte.
//!
//! Besides, side A must give the answer each [`Case`] expects, so that two
//! sides failing alike (a script that cannot even start) is no pass.

use std::fmt::Write as _;

use super::http::{self, Response};

/// The request header that sends a request to side B (value `b`); without
/// it, to side A.
pub const SIDE_HEADER: &str = "X-Legacy-Side";

/// Response header fields left out of the comparison (lower case).
pub const IGNORED_HEADERS: &[&str] = &["date", "server"];

/// How much of the two answers must be the same.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compare {
    /// Status, header fields and body.
    Whole,
    /// The status only: the body is the server's own error page, which
    /// differs from one server to another (fcgiwrap's "An error occurred
    /// while reading CGI reply" for a script that dies before its header).
    Status,
    /// Both refuse with a 4xx status, not necessarily the same one: nothing
    /// may run or be served (fcgiwrap answers 403 for a script that does not
    /// exist, where 404 is as right).
    Refused,
}

/// One request, what side A must answer, and what must be the same.
pub struct Case {
    pub method: &'static str,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub compare: Compare,
    /// Side A's status.
    pub status: u16,
    /// Texts side A's answer must hold, in its status line, its headers as
    /// [`view`] shows them ("name: value", lower-case names) or its body.
    pub contains: Vec<String>,
    /// Side A's whole body, when it is known.
    pub exact_body: Option<Vec<u8>>,
}

impl Case {
    pub fn get(target: impl Into<String>) -> Case {
        Case::new("GET", target, Vec::new())
    }

    pub fn head(target: impl Into<String>) -> Case {
        Case::new("HEAD", target, Vec::new())
    }

    pub fn post(target: impl Into<String>, content_type: &str, body: impl Into<Vec<u8>>) -> Case {
        Case::new("POST", target, body.into()).header("Content-Type", content_type)
    }

    fn new(method: &'static str, target: impl Into<String>, body: Vec<u8>) -> Case {
        Case {
            method,
            target: target.into(),
            headers: Vec::new(),
            body,
            compare: Compare::Whole,
            status: 200,
            contains: Vec::new(),
            exact_body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Case {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Side A answers `status` and its answer holds each of `texts`.
    pub fn expect(mut self, status: u16, texts: &[&str]) -> Case {
        self.status = status;
        self.contains.extend(texts.iter().map(|t| t.to_string()));
        self
    }

    /// Side A answers 200 with exactly `body`.
    pub fn expect_body(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.status = 200;
        self.exact_body = Some(body.into());
        self
    }

    pub fn compare(mut self, compare: Compare) -> Case {
        self.compare = compare;
        self
    }

    /// "POST /cgi-bin/form.pl (2 headers, 61 bytes)".
    pub fn label(&self) -> String {
        let mut label = format!("{} {}", self.method, self.target);
        if !self.headers.is_empty() || !self.body.is_empty() {
            let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
            let _ = write!(label, " ({}; {} bytes)", names.join(", "), self.body.len());
        }
        label
    }

    fn send(&self, port: u16, side_b: bool) -> Result<Response, String> {
        let mut headers: Vec<(&str, &str)> = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        if side_b {
            headers.push((SIDE_HEADER, "b"));
        }
        http::send(port, self.method, &self.target, &headers, &self.body).map_err(|e| e.to_string())
    }
}

/// The header fields compared: lower-case names, [`IGNORED_HEADERS`] left
/// out, sorted by name (stable: repeated fields keep their order).
pub fn normalized_headers(r: &Response) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| !IGNORED_HEADERS.contains(&n.as_str()))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

/// An answer as text: the status, the compared header fields, a blank line,
/// the body (invalid UTF-8 replaced).
pub fn view(r: &Response) -> String {
    let mut text = format!("{}\n", r.status);
    for (name, value) in normalized_headers(r) {
        let _ = writeln!(text, "{name}: {value}");
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&r.body));
    text
}

/// Sends each case to side A and to side B through the web server on
/// `port`; returns a report of every case that went wrong, empty if none.
pub fn run(port: u16, cases: &[Case]) -> String {
    let mut report = String::new();
    for case in cases {
        let problems = match (case.send(port, false), case.send(port, true)) {
            (Ok(a), Ok(b)) => problems(case, &a, &b),
            (a, b) => vec![format!(
                "no answer: side A {:?}, side B {:?}",
                a.err().unwrap_or_default(),
                b.err().unwrap_or_default()
            )],
        };
        if !problems.is_empty() {
            let _ = writeln!(report, "{}:", case.label());
            for problem in problems {
                for line in problem.lines() {
                    let _ = writeln!(report, "    {line}");
                }
            }
        }
    }
    report
}

/// What is wrong with side A's answer `a` and side B's `b` to `case`: how
/// `a` falls short of what the case expects, how `b` differs from it.
pub fn problems(case: &Case, a: &Response, b: &Response) -> Vec<String> {
    [expected(case, a), differences(case, a, b)].concat()
}

/// How side A's answer falls short of what `case` expects.
fn expected(case: &Case, a: &Response) -> Vec<String> {
    let mut problems = Vec::new();
    let text = view(a);
    if a.status != case.status {
        problems.push(format!("side A answered {}, not {}", a.status, case.status));
    }
    for want in &case.contains {
        if !text.contains(want.as_str()) {
            problems.push(format!("side A's answer lacks {want:?}"));
        }
    }
    if let Some(body) = &case.exact_body
        && a.body != *body
    {
        problems.push(format!(
            "side A's body is not the expected one: {}",
            first_difference(body, &a.body)
        ));
    }
    if !problems.is_empty() {
        problems.push(format!("side A's answer:\n{}", excerpt(&text)));
    }
    problems
}

/// How side B's answer differs from side A's, as far as `case` compares.
fn differences(case: &Case, a: &Response, b: &Response) -> Vec<String> {
    let mut problems = Vec::new();
    match case.compare {
        Compare::Refused => {
            for (side, r) in [("A", a), ("B", b)] {
                if !(400..500).contains(&r.status) {
                    problems.push(format!("side {side} answered {}, not a refusal (4xx)", r.status));
                }
            }
            return problems;
        }
        Compare::Status | Compare::Whole if a.status != b.status => {
            problems.push(format!("status: A {}, B {}", a.status, b.status));
        }
        _ => {}
    }
    if case.compare == Compare::Whole {
        let (ha, hb) = (normalized_headers(a), normalized_headers(b));
        if ha != hb {
            let show = |h: &[(String, String)]| h.iter().map(|(n, v)| format!("\n    {n}: {v}")).collect::<String>();
            problems.push(format!("header fields differ:\n  A:{}\n  B:{}", show(&ha), show(&hb)));
        }
        if a.body != b.body {
            problems.push(format!("bodies differ: {}", first_difference(&a.body, &b.body)));
        }
    }
    if !problems.is_empty() {
        problems.push(format!(
            "side A's answer:\n{}\nside B's answer:\n{}",
            excerpt(&view(a)),
            excerpt(&view(b))
        ));
    }
    problems
}

/// Where two byte strings first differ, with what each holds there.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let around = |s: &[u8]| {
        let from = at.saturating_sub(40);
        format!("{:?}", String::from_utf8_lossy(&s[from..s.len().min(at + 40)]))
    };
    format!(
        "{} and {} bytes, first difference at byte {at}:\n  A: {}\n  B: {}",
        a.len(),
        b.len(),
        around(a),
        around(b)
    )
}

/// The first 40 lines of `text`, indented.
fn excerpt(text: &str) -> String {
    let mut out: String = text.lines().take(40).map(|l| format!("  | {l}\n")).collect();
    if text.lines().count() > 40 {
        out.push_str("  | ...\n");
    }
    out
}
