//! Python's `import` and `from` statements (the language reference,
//! §7.11), read by logical line (§2.1: brackets and backslashes join
//! physical lines) with strings and comments dropped; an import inside a
//! `try` or `except` block is optional. Also the statements only Python 2
//! has.

use super::{Import, Python, keyword};

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
