//! Which modules a Perl or Python script imports, read from its text the
//! way a person skims it rather than parsed: statements that begin with
//! `use` or `require` (perlfunc), `import` or `from` (the Python language
//! reference, §7.11 "The import statement"). Perl's POD, here-documents and
//! everything after `__END__` are skipped, as are Python's strings and
//! comments. A module named at run time (`require $class`, a string `eval`
//! of a variable) is not seen.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// `Foo::Bar`, or Python's dotted name as written: `xml.etree.ElementTree`.
    pub module: String,
    /// Of the statement, from 1.
    pub line: usize,
    /// Guarded (inside Perl's `eval`, a Python `try` or `except` block):
    /// the script copes without it.
    pub optional: bool,
    /// Loaded whenever the file is: Perl's `use`, done at compile time; a
    /// Python import at module level. A module's lazy imports (a `require`
    /// in a sub) are not followed into its own dependencies.
    pub eager: bool,
}

impl Import {
    /// The name the import system looks up first: `xml` for `xml.etree`.
    pub fn top_level(&self) -> &str {
        self.module.split('.').next().unwrap_or(&self.module)
    }
}

#[derive(Debug, Default)]
pub struct Perl {
    pub imports: Vec<Import>,
    /// Directories of `use lib`, absolute.
    pub libs: Vec<PathBuf>,
    /// `use lib` arguments that name no directory known before run time.
    pub unknown_libs: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Python {
    pub imports: Vec<Import>,
    /// The first Python 2 statement: its line and what it is.
    pub python2: Option<(usize, &'static str)>,
}

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

/// The text after `word` when `text` starts with it as a whole word.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    text.strip_prefix(word)
        .filter(|rest| rest.starts_with(char::is_whitespace))
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

/// The imports of Python source `text`, and the first Python 2 statement.
pub fn python(text: &str) -> Python {
    let mut scan = Python::default();
    let mut lexer = Lexer::default();
    // Enclosing blocks: their indentation, and whether they are `try` or
    // `except` blocks.
    let mut blocks: Vec<(usize, bool)> = Vec::new();
    let mut logical = String::new();
    let (mut start, mut indent) = (0, 0);
    for (i, line) in text.lines().enumerate() {
        let continued = !logical.is_empty();
        let code = lexer.code(line);
        if !continued {
            start = i + 1;
            indent = line.len() - line.trim_start().len();
        }
        logical.push_str(code.strip_suffix('\\').unwrap_or(&code));
        logical.push(' ');
        if lexer.depth > 0 || lexer.triple.is_some() || code.ends_with('\\') {
            continue;
        }
        let statement = std::mem::take(&mut logical);
        let statement = statement.trim();
        if statement.is_empty() {
            continue;
        }
        blocks.retain(|(outer, _)| *outer < indent);
        let guarded = blocks.iter().any(|(_, guard)| *guard);
        let (head, body) = statement.split_once(':').unwrap_or((statement, ""));
        let guard = keyword(head, "except").is_some() || head == "except" || head == "try";
        if statement.ends_with(':') {
            blocks.push((indent, guard));
        }
        // `try: import json` has its statement after the colon.
        let simple = if guard { body } else { statement };
        for part in simple.split(';') {
            scan.import(start, part.trim(), guarded || guard, indent == 0 && !guard);
        }
        // A compound statement's body may be on its line: `if x: print y`.
        for part in statement.split(';').chain(body.split(';')) {
            if scan.python2.is_none() {
                scan.python2 = python2(part.trim()).map(|what| (start, what));
            }
        }
    }
    scan
}

impl Python {
    fn import(&mut self, line: usize, statement: &str, optional: bool, eager: bool) {
        let import = |module: &str| Import {
            module: module.to_owned(),
            line,
            optional,
            eager,
        };
        if let Some(names) = keyword(statement, "import") {
            for name in names.split(',') {
                let module = name.split_whitespace().next().unwrap_or("");
                if is_python_module(module) {
                    self.imports.push(import(module));
                }
            }
        } else if let Some(rest) = keyword(statement, "from") {
            let module = rest.split_whitespace().next().unwrap_or("");
            // Relative imports (`from . import x`) are the script's own;
            // `__future__` is a directive to the compiler (§7.11.1).
            if is_python_module(module) && module != "__future__" {
                self.imports.push(import(module));
            }
        }
    }
}

fn is_python_module(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            part.starts_with(|c: char| c.is_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// What makes `statement` (its strings emptied) Python 2 only, if anything.
fn python2(statement: &str) -> Option<&'static str> {
    let after = |word| keyword(statement, word).map(str::trim_start);
    if after("print").is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['(', '=', ',', ')'])) {
        return Some("a print statement");
    }
    if after("exec").is_some_and(|rest| rest.starts_with(['"', '\''])) {
        return Some("an exec statement");
    }
    // `except E, name:` and `raise E, value`: a comma before any parenthesis.
    let comma_first = |rest: &str| rest.find(',').is_some_and(|c| rest.find('(').is_none_or(|p| c < p));
    if after("except").is_some_and(|rest| comma_first(rest.split(':').next().unwrap_or(""))) {
        return Some("except E, name:");
    }
    if after("raise").is_some_and(comma_first) {
        return Some("raise E, value");
    }
    if statement.contains('`') {
        return Some("backquotes");
    }
    if statement.contains("<>") {
        return Some("the <> operator");
    }
    None
}

/// Python's strings and comments, line by line: what is left is code, with
/// each string's quotes kept and its contents dropped.
#[derive(Default)]
struct Lexer {
    /// Inside a triple-quoted string, opened by this quote.
    triple: Option<char>,
    /// Brackets open: the logical line goes on.
    depth: usize,
}

impl Lexer {
    fn code(&mut self, line: &str) -> String {
        let mut code = String::new();
        let mut chars = line.char_indices().peekable();
        let mut single: Option<char> = None;
        while let Some((i, c)) = chars.next() {
            let triple_at = |q: char| line[i..].starts_with(&q.to_string().repeat(3));
            if let Some(q) = self.triple {
                if c == '\\' {
                    chars.next();
                } else if c == q && triple_at(q) {
                    chars.nth(1);
                    self.triple = None;
                    code.push_str(&q.to_string().repeat(3));
                }
                continue;
            }
            if let Some(q) = single {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    single = None;
                    code.push(q);
                }
                continue;
            }
            match c {
                '#' => break,
                '"' | '\'' if triple_at(c) => {
                    chars.nth(1);
                    self.triple = Some(c);
                    code.push_str(&c.to_string().repeat(3));
                }
                '"' | '\'' => {
                    single = Some(c);
                    code.push(c);
                }
                '(' | '[' | '{' => {
                    self.depth += 1;
                    code.push(c);
                }
                ')' | ']' | '}' => {
                    self.depth = self.depth.saturating_sub(1);
                    code.push(c);
                }
                _ => code.push(c),
            }
        }
        code.truncate(code.trim_end().len());
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(imports: &[Import]) -> Vec<(&str, usize, bool, bool)> {
        imports
            .iter()
            .map(|i| (i.module.as_str(), i.line, i.optional, i.eager))
            .collect()
    }

    #[test]
    fn perl_use_and_require() {
        let text = "#!/usr/bin/perl -w\n\
                    use strict; use warnings;\n\
                    use CGI qw(:standard);   # forms\n\
                    use POSIX ();\n\
                    require Data::Dumper;\n\
                    use 5.010;\n\
                    use v5.36;\n\
                    require \"cgi-lib.pl\";\n\
                    my $ok = eval { require JSON::XS; 1 };\n\
                    eval \"use Storable; 1\" or die;\n\
                    if ($x) { require File::Temp }\n\
                    # use Commented::Out;\n\
                    print \"use Not::A::Module;\\n\";\n";
        let scan = perl(text, Path::new("/cgi"));
        assert_eq!(
            names(&scan.imports),
            [
                ("strict", 2, false, true),
                ("warnings", 2, false, true),
                ("CGI", 3, false, true),
                ("POSIX", 4, false, true),
                ("Data::Dumper", 5, false, false),
                ("JSON::XS", 9, true, false),
                ("Storable", 10, true, true),
                ("File::Temp", 11, false, false),
            ]
        );
    }

    #[test]
    fn perl_pod_heredocs_and_end_are_not_code() {
        let text = "use A;\n\
                    =head1 SYNOPSIS\n\n  use Pod::Example;\n\n=cut\n\
                    print <<\"HTML\", <<~EOT;\n\
                    use Html::Text;\n\
                    HTML\n\
                    \x20 use Indented::Text;\n\
                    \x20 EOT\n\
                    my $n = 1 << 2;\n\
                    print qq{<p>\n  use the form below,\n  require more help?\n</p>};\n\
                    use B;\n\
                    __END__\n\
                    use After::End;\n";
        assert_eq!(
            perl(text, Path::new("/"))
                .imports
                .iter()
                .map(|i| i.module.as_str())
                .collect::<Vec<_>>(),
            ["A", "B"]
        );
    }

    #[test]
    fn perl_base_parent_and_lib() {
        let text = "use base qw(Class::Accessor\n  My::Base);\n\
                    use parent -norequire, 'Local::Thing';\n\
                    use parent 'Some::Parent';\n\
                    use FindBin;\n\
                    use lib \"$FindBin::Bin/lib\", 'vendor', '/opt/site/lib';\n\
                    use lib $FindBin::RealBin . '/../lib';\n\
                    use lib qw(/usr/local/myapp);\n\
                    use lib $ENV{MYAPP_LIB};\n";
        let scan = perl(text, Path::new("/srv/cgi"));
        let modules: Vec<_> = scan.imports.iter().map(|i| i.module.as_str()).collect();
        assert_eq!(
            modules,
            [
                "base",
                "Class::Accessor",
                "My::Base",
                "parent",
                "parent",
                "Some::Parent",
                "FindBin",
                "lib",
                "lib",
                "lib",
                "lib"
            ]
        );
        assert_eq!(scan.imports[2].line, 1);
        assert_eq!(
            scan.libs,
            [
                "/srv/cgi/lib",
                "/srv/cgi/vendor",
                "/opt/site/lib",
                "/srv/cgi/../lib",
                "/usr/local/myapp"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(scan.unknown_libs, ["$ENV{MYAPP_LIB}"]);
    }

    #[test]
    fn perl_switches_find_taint_and_includes() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(perl_switches(&args("-w")), (false, vec![]));
        assert_eq!(perl_switches(&args("-wT")), (true, vec![]));
        assert_eq!(perl_switches(&args("-t")), (true, vec![]));
        assert_eq!(
            perl_switches(&args("-Ilib -I /opt/lib -w")),
            (false, vec!["lib".into(), "/opt/lib".into()])
        );
        // -M's argument is no switch.
        assert_eq!(perl_switches(&args("-MTest")), (false, vec![]));
    }

    #[test]
    fn python_imports() {
        let text = "#!/usr/bin/env python3\n\
                    \"\"\"A docstring.\n\
                    import not_code\n\
                    \"\"\"\n\
                    import os, sys as system\n\
                    import xml.etree.ElementTree\n\
                    from email.mime.text import MIMEText\n\
                    from . import sibling\n\
                    from .pkg import thing\n\
                    from __future__ import annotations\n\
                    from helpers import (greet,\n\
                    \x20   farewell)\n\
                    x = 'import in_a_string'  # import in_a_comment\n\
                    import json; import cgi\n\
                    try:\n\
                    \x20   import simplejson\n\
                    except ImportError:\n\
                    \x20   import fallback\n\
                    try: import inline_try\n\
                    except ImportError: pass\n\
                    def f():\n\
                    \x20   import lazy\n";
        let scan = python(text);
        assert_eq!(
            names(&scan.imports),
            [
                ("os", 5, false, true),
                ("sys", 5, false, true),
                ("xml.etree.ElementTree", 6, false, true),
                ("email.mime.text", 7, false, true),
                ("helpers", 11, false, true),
                ("json", 14, false, true),
                ("cgi", 14, false, true),
                ("simplejson", 16, true, false),
                ("fallback", 18, true, false),
                ("inline_try", 19, true, false),
                ("lazy", 22, false, false),
            ]
        );
        assert_eq!(scan.imports[2].top_level(), "xml");
        assert_eq!(scan.python2, None);
    }

    #[test]
    fn python2_statements_are_found() {
        let first = |text: &str| python(text).python2;
        assert_eq!(first("import os\nprint \"hello\"\n"), Some((2, "a print statement")));
        assert_eq!(first("print >>sys.stderr, 'x'\n"), Some((1, "a print statement")));
        assert_eq!(
            first("try:\n    pass\nexcept ValueError, e:\n    pass\n"),
            Some((3, "except E, name:"))
        );
        assert_eq!(first("raise ValueError, 'bad'\n"), Some((1, "raise E, value")));
        assert_eq!(first("exec \"x = 1\"\n"), Some((1, "an exec statement")));
        assert_eq!(first("x = `y`\n"), Some((1, "backquotes")));
        // Python 3.
        for text in [
            "print('x')\n",
            "print ('x', file=sys.stderr)\n",
            "print\n",
            "print = log\n",
            "except (A, B) as e:\n",
            "raise ValueError('a, b')\n",
            "s = \"print 'x'\"\n",
            "x = '`'\n",
        ] {
            assert_eq!(first(text), None, "{text}");
        }
    }
}
