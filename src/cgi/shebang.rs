//! A script's `#!` line, read as Linux's `execve(2)` reads it
//! (`binfmt_script`): the first line of at most [`MAX_LINE`] bytes, the
//! interpreter's path, then its arguments. `#!/usr/bin/env NAME` names the
//! interpreter by `NAME`, as `env` would find it on `PATH`.
//!
//! Linux passes everything after the path as one argument; perl and python
//! re-split it themselves (`#!/usr/bin/perl -w -T`), so the words are kept
//! apart here.

use std::io::Read;
use std::path::Path;

/// Bytes of the first line that count, as Linux's `BINPRM_BUF_SIZE`.
pub const MAX_LINE: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter's file name without its directory: `perl` for
    /// `#!/usr/bin/perl`, `python3` for `#!/usr/bin/env python3`.
    pub program: String,
    /// The words after it: `["-w"]` for `#!/usr/bin/perl -w`.
    pub args: Vec<String>,
}

impl Shebang {
    /// The `#!` line of the file at `path`, if it has one.
    pub fn read(path: &Path) -> std::io::Result<Option<Shebang>> {
        let mut head = Vec::with_capacity(MAX_LINE);
        std::fs::File::open(path)?
            .take(MAX_LINE as u64)
            .read_to_end(&mut head)?;
        Ok(Shebang::parse(&head))
    }

    /// The `#!` line at the start of `head`, if there is one that names a
    /// program. Bytes after the first [`MAX_LINE`] are not looked at.
    pub fn parse(head: &[u8]) -> Option<Shebang> {
        let head = &head[..head.len().min(MAX_LINE)];
        let line = head.strip_prefix(b"#!")?;
        let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
        let line = std::str::from_utf8(line).ok()?;
        let mut words = line.split([' ', '\t', '\r']).filter(|w| !w.is_empty());
        let mut program = basename(words.next()?);
        if program == "env" {
            // `env -S perl -w` splits its argument as a shell would; other
            // options of env (`-i`, `-u NAME`) do not occur in cgi-bin.
            program = basename(words.find(|w| !w.starts_with('-'))?);
        }
        Some(Shebang {
            program: program.to_owned(),
            args: words.map(str::to_owned).collect(),
        })
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Option<(String, Vec<String>)> {
        Shebang::parse(line.as_bytes()).map(|s| (s.program, s.args))
    }

    #[test]
    fn names_the_program_and_its_words() {
        assert_eq!(
            parsed("#!/usr/bin/perl -w\nprint 1;\n"),
            Some(("perl".into(), vec!["-w".into()]))
        );
        assert_eq!(
            parsed("#! /usr/local/bin/perl5 -w -T\r\n"),
            Some(("perl5".into(), vec!["-w".into(), "-T".into()]))
        );
        assert_eq!(parsed("#!/usr/bin/python3"), Some(("python3".into(), vec![])));
    }

    #[test]
    fn env_names_the_program_by_its_argument() {
        assert_eq!(parsed("#!/usr/bin/env python3\n"), Some(("python3".into(), vec![])));
        assert_eq!(
            parsed("#!/usr/bin/env -S perl -w\n"),
            Some(("perl".into(), vec!["-w".into()]))
        );
        assert_eq!(parsed("#!/usr/bin/env\n"), None);
    }

    #[test]
    fn without_a_line_there_is_none() {
        assert_eq!(parsed("print 1;\n"), None);
        assert_eq!(parsed("#!\n"), None);
        assert_eq!(parsed(""), None);
        assert_eq!(Shebang::parse(b"#!/usr/bin/perl\xff\n"), None);
    }

    #[test]
    fn only_the_first_256_bytes_count() {
        let long = format!("#!/usr/bin/perl {}x -w\n", " ".repeat(300));
        assert_eq!(parsed(&long), Some(("perl".into(), vec![])));
    }
}
