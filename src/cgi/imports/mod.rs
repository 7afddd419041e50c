//! Which modules a Perl or Python script imports, read from its text the
//! way a person skims it rather than parsed: statements that begin with
//! `use` or `require` (perlfunc), `import` or `from` (the Python language
//! reference, §7.11 "The import statement"). Perl's POD, here-documents and
//! everything after `__END__` are skipped, as are Python's strings and
//! comments. A module named at run time (`require $class`, a string `eval`
//! of a variable) is not seen.
//!
//! The Perl scanner is `perl`, the Python one `python`; this file holds
//! what they find.

mod perl;
mod python;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use perl::{perl, perl_switches};
pub use python::python;

/// A module a script loads.
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

/// What a Perl script loads, and the directories it adds to `@INC`.
#[derive(Debug, Default)]
pub struct Perl {
    pub imports: Vec<Import>,
    /// Directories of `use lib`, absolute.
    pub libs: Vec<PathBuf>,
    /// `use lib` arguments that name no directory known before run time.
    pub unknown_libs: Vec<String>,
}

/// What a Python script imports, and whether it is Python 2.
#[derive(Debug, Default)]
pub struct Python {
    pub imports: Vec<Import>,
    /// The first Python 2 statement: its line and what it is.
    pub python2: Option<(usize, &'static str)>,
}

/// The text after `word` when `text` starts with it as a whole word.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    text.strip_prefix(word)
        .filter(|rest| rest.starts_with(char::is_whitespace))
}
