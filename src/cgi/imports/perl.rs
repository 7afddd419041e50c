//! Perl's `use` and `require` statements (perlfunc), read line by line:
//! POD (perlpod), here-documents and what follows `__END__` or `__DATA__`
//! (perldata) are not code; a statement inside `eval` is optional.

use std::collections::VecDeque;
use std::path::Path;

use super::{Import, Perl, keyword};

/// Perl's switches on a `#!` line: whether taint mode (`-T`, `-t`) is on, and
/// the `-I` directories.
pub fn perl_switches(args: &[String]) -> (bool, Vec<String>) {
    let (mut taint, mut includes) = (false, Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.starts_with('-')) else {
            continue;
        };
        for (i, switch) in cluster.char_indices() {
            match switch {
                'T' | 't' => taint = true,
                'I' => {
                    let dir = &cluster[i + 1..];
                    match dir.is_empty() {
                        true => includes.extend(args.next().cloned()),
                        false => includes.push(dir.to_owned()),
                    }
                    break;
                }
                // The rest of the cluster is this switch's argument.
                'M' | 'm' | 'e' | 'E' | 'x' | '0' | 'l' | 'i' | 'C' | 'd' | 'D' | 'V' => break,
                _ => {}
            }
        }
    }
    (taint, includes)
}

/// The imports of Perl source `text`; `bin` is the script's directory, which
/// `$FindBin::Bin` names and relative `use lib` directories are relative to
/// (a CGI script runs in its own directory: RFC 3875 §7.2).
pub fn perl(text: &str, bin: &Path) -> Perl {
    let mut scan = Perl::default();
    // A `use` whose list goes on past the end of its line.
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in perl_code(text) {
        let mut rest = line;
        if let Some((start, mut statement)) = pending.take() {
            statement.push(' ');
            match rest.split_once(';') {
                Some((end, after)) => {
                    statement.push_str(end);
                    scan.statement(start, &statement, false, bin);
                    rest = after;
                }
                None => {
                    statement.push_str(rest);
                    pending = Some((start, statement));
                    continue;
                }
            }
        }
        let segments: Vec<&str> = rest.split(';').collect();
        for (i, segment) in segments.iter().enumerate() {
            for (at, optional) in statement_starts(segment) {
                let statement = &segment[at..];
                if i == segments.len() - 1 && statement.starts_with("use") {
                    pending = Some((number, statement.to_owned()));
                } else {
                    scan.statement(number, statement, optional, bin);
                }
            }
        }
    }
    if let Some((start, statement)) = pending {
        scan.statement(start, &statement, false, bin);
    }
    scan
}

impl Perl {
    fn statement(&mut self, line: usize, statement: &str, optional: bool, bin: &Path) {
        let Some((eager, rest)) = keyword(statement, "use")
            .map(|rest| (true, rest))
            .or_else(|| keyword(statement, "require").map(|rest| (false, rest)))
        else {
            return;
        };
        let rest = rest.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let (module, args) = rest.split_at(end);
        // `use 5.010;`, `use v5.36;`, `require "file.pl"`, `require $class`.
        let version = module.strip_prefix('v').unwrap_or(module);
        if module.is_empty()
            || version.starts_with(|c: char| c.is_ascii_digit())
            || module.starts_with(':')
            || !ends_a_statement(args)
        {
            return;
        }
        let import = |module: &str| Import {
            module: module.to_owned(),
            line,
            optional,
            eager,
        };
        self.imports.push(import(module));
        let items = if eager { perl_list(args, bin) } else { Vec::new() };
        match module {
            "lib" => {
                for item in items {
                    match item {
                        Ok(dir) => self.libs.push(bin.join(dir)),
                        Err(raw) => self.unknown_libs.push(raw),
                    }
                }
            }
            // `-norequire`: the classes are defined elsewhere in the file.
            "base" | "parent" if !items.iter().any(|i| i.as_deref() == Ok("-norequire")) => {
                let classes = items.into_iter().flatten().filter(|c| is_perl_module(c));
                self.imports.extend(classes.map(|c| import(&c)));
            }
            _ => {}
        }
    }
}

/// The lines of Perl code in `text`, numbered from 1: POD, the bodies of
/// here-documents and everything after `__END__` or `__DATA__` left out,
/// comments cut off.
fn perl_code(text: &str) -> Vec<(usize, &str)> {
    let mut code = Vec::new();
    let mut pod = false;
    let mut heredocs: VecDeque<(String, bool)> = VecDeque::new();
    for (i, line) in text.lines().enumerate() {
        if let Some((end, indented)) = heredocs.front() {
            if (if *indented { line.trim_start() } else { line }) == end {
                heredocs.pop_front();
            }
            continue;
        }
        if pod {
            pod = !line.starts_with("=cut");
            continue;
        }
        // perlpod: a line that starts with `=` and a letter opens POD.
        if line.starts_with('=') && line[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            pod = true;
            continue;
        }
        if matches!(line.trim_end(), "__END__" | "__DATA__") {
            break;
        }
        let line = without_comment(line);
        heredocs.extend(heredoc_ends(line));
        code.push((i + 1, line));
    }
    code
}

/// The terminators of the here-documents that `line` opens, in order, and
/// whether each may be indented (`<<~`).
fn heredoc_ends(line: &str) -> Vec<(String, bool)> {
    let mut ends = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("<<") {
        rest = &rest[at + 2..];
        let indented = rest.starts_with('~');
        let after = rest.trim_start_matches('~');
        let quoted = after.trim_start();
        let end = match quoted.chars().next() {
            Some(q @ ('"' | '\'')) => quoted[1..].split_once(q).map(|(end, _)| end),
            // A bare terminator follows `<<` at once: `1 << 2` is a shift.
            Some(c) if (c.is_ascii_alphabetic() || c == '_') && quoted.len() == after.len() => {
                let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
                Some(&after[..len.unwrap_or(after.len())])
            }
            _ => None,
        };
        ends.extend(end.map(|end| (end.to_owned(), indented)));
    }
    ends
}

/// `line` up to its comment: the first `#` outside quotes that starts the
/// line or follows a space, a `;` or a closing bracket (`$#array` and
/// `s#a#b#` are code).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && (previous.is_whitespace() || ";)}]".contains(previous)) => {
                return &line[..i];
            }
            None => {}
        }
        previous = c;
    }
    line
}

/// Where `use` or `require` statements start in a `;`-delimited segment:
/// at its start and after a brace. Inside `eval { }` or a string `eval`, a
/// failure to load is caught: optional.
fn statement_starts(segment: &str) -> Vec<(usize, bool)> {
    let mut starts = Vec::new();
    let mut consider = |at: usize, optional: bool| {
        let at = segment.len() - segment[at..].trim_start().len();
        if keyword(&segment[at..], "use").is_some() || keyword(&segment[at..], "require").is_some() {
            starts.push((at, optional));
        }
    };
    consider(0, false);
    for (i, c) in segment.char_indices() {
        let after_eval = || ends_with_word(segment[..i].trim_end(), "eval");
        match c {
            '{' => consider(i + 1, after_eval()),
            '}' => consider(i + 1, false),
            '"' | '\'' if after_eval() => consider(i + 1, true),
            _ => {}
        }
    }
    starts
}

/// Whether `rest` can follow a module name in a `use` or `require`
/// statement: its import list or version, or the end of the statement.
/// Prose in a string that spans lines ("use the form below") cannot.
fn ends_a_statement(rest: &str) -> bool {
    let rest = rest.trim_start();
    rest.is_empty()
        || rest.starts_with(|c: char| c.is_ascii_digit() || "('\"-$@{}),+".contains(c))
        || [
            "qw", "q(", "q{", "qq", "or ", "and ", "if ", "unless ", "||", "&&", "=>",
        ]
        .iter()
        .any(|next| rest.starts_with(next))
}

fn ends_with_word(text: &str, word: &str) -> bool {
    text.strip_suffix(word)
        .is_some_and(|before| !before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
}

fn is_perl_module(name: &str) -> bool {
    name.split("::")
        .all(|part| part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The values of a `use` argument list, as far as they are known before
/// run time: `qw()` words, strings, `$FindBin::Bin` and the like, joined by
/// `.`; `Err` with the source of anything else.
fn perl_list(args: &str, bin: &Path) -> Vec<Result<String, String>> {
    let bin = bin.to_string_lossy();
    let interpolate = |s: &str| {
        let s = [
            "${FindBin::RealBin}",
            "${FindBin::Bin}",
            "$FindBin::RealBin",
            "$FindBin::Bin",
            "$RealBin",
            "$Bin",
        ]
        .iter()
        .fold(s.to_owned(), |s, var| s.replace(var, &bin));
        if s.contains(['$', '@']) { Err(s) } else { Ok(s) }
    };
    let mut items: Vec<Result<String, String>> = Vec::new();
    let mut joining = false;
    let mut rest = args.trim_start();
    while let Some(c) = rest.chars().next() {
        let (values, len): (Vec<Result<String, String>>, usize) = match c {
            c if c.is_whitespace() || ",()".contains(c) => (Vec::new(), c.len_utf8()),
            '=' if rest.starts_with("=>") => (Vec::new(), 2),
            '.' => {
                joining = true;
                (Vec::new(), 1)
            }
            '\'' | '"' => {
                let Some(end) = rest[1..].find(c) else { break };
                let text = &rest[1..1 + end];
                let value = if c == '"' {
                    interpolate(text)
                } else {
                    Ok(text.to_owned())
                };
                (vec![value], end + 2)
            }
            'q' if rest.starts_with("qw") && rest[2..].starts_with(|c: char| c.is_ascii_punctuation()) => {
                let open = rest[2..].chars().next().unwrap_or(' ');
                let close = match open {
                    '(' => ')',
                    '[' => ']',
                    '{' => '}',
                    '<' => '>',
                    other => other,
                };
                let Some(end) = rest[3..].find(close) else { break };
                let words = rest[3..3 + end].split_whitespace().map(|w| Ok(w.to_owned()));
                (words.collect(), end + 4)
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || ",.()".contains(c))
                    .unwrap_or(rest.len());
                let word = &rest[..end];
                let value = match word.starts_with('$') {
                    true => interpolate(word),
                    false if word.starts_with('-') => Ok(word.to_owned()),
                    false => Err(word.to_owned()),
                };
                (vec![value], end)
            }
        };
        for value in values {
            match (joining, items.last_mut()) {
                (true, Some(last)) => {
                    *last = match (last.clone(), value) {
                        (Ok(a), Ok(b)) => Ok(a + &b),
                        (a, b) => Err(format!("{} . {}", a.unwrap_or_else(|e| e), b.unwrap_or_else(|e| e))),
                    }
                }
                _ => items.push(value),
            }
            joining = false;
        }
        rest = &rest[len..];
    }
    items
}
