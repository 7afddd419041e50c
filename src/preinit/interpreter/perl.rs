//! Perl: zeroperl (npm `@6over3/zeroperl-ts`), a WASI reactor build of
//! Perl 5. Its init, `zeroperl_init`, constructs the interpreter and parses
//! an empty program; `zeroperl_eval` evaluates a string in it. The snapshot
//! is taken after both and boot.pl; it gains a `_start` that evaluates
//! `WCGID::serve()`, whose text is left in the snapshot's memory.
//! [`Cold`] is the same boot, done at every run instead.

use std::path::Path;

use super::{Changes, c_string};
use crate::sandbox::{self, CStrings, INTERPRETER_SECTION};

pub const BOOT: &str = include_str!("boot.pl");

pub fn args() -> CStrings {
    let mut args = CStrings::default();
    args.push(&[b"perl"]);
    args
}

#[derive(Default)]
pub struct Boot {
    /// Where the text `WCGID::serve()` lies in the snapshot.
    serve: Option<i32>,
}

impl sandbox::Initializer for Boot {
    fn run(&mut self, guest: &mut sandbox::Guest<'_>) -> Result<(), String> {
        guest.call("_initialize", &[])?;
        match guest.call_i32("zeroperl_init", &[])? {
            0 => {}
            status => return Err(format!("zeroperl_init failed with status {status}")),
        }
        let boot = c_string(guest, BOOT)?;
        // (code, context 0 = void, argc, argv)
        if guest.call_i32("zeroperl_eval", &[boot, 0, 0, 0])? != 0 {
            let error = guest.call_i32("zeroperl_last_error", &[])?;
            return Err(format!(
                "the boot script failed: {}",
                guest.read_c_string(error as u32)?
            ));
        }
        self.serve = Some(c_string(guest, "WCGID::serve()")?);
        Ok(())
    }
}

impl Boot {
    pub fn changes(&self) -> Changes {
        Changes {
            removed: vec!["_initialize".into()],
            start: self.serve.map(|at| ("zeroperl_eval".to_owned(), vec![at, 0, 0, 0])),
            custom: vec![(INTERPRETER_SECTION, Vec::new())],
            ..Changes::default()
        }
    }
}

/// A cold start's state (see [`super::cold`]): wasi-libc's constructors run
/// (`_initialize`) and `perl -I DIR... -e CODE` written into memory, CODE
/// the boot script and a call of `WCGID::serve`, for a `_start` that
/// constructs the interpreter and parses and runs them
/// (`zeroperl_init_with_args`) at every run.
pub struct Cold {
    args: Vec<String>,
    /// Where the argv array lies.
    argv: Option<i32>,
}

impl Cold {
    /// `inc`: the directories searched before Perl's own library.
    pub fn new(inc: &[&Path]) -> Cold {
        let mut args = vec!["perl".to_owned()];
        args.extend(inc.iter().map(|dir| format!("-I{}", dir.display())));
        args.push("-e".into());
        args.push(format!("{BOOT}\nWCGID::serve();\n"));
        Cold { args, argv: None }
    }

    pub fn changes(&self) -> Changes {
        Changes {
            removed: vec!["_initialize".into()],
            start: self
                .argv
                .map(|at| ("zeroperl_init_with_args".to_owned(), vec![self.args.len() as i32, at])),
            custom: vec![(INTERPRETER_SECTION, Vec::new())],
            ..Changes::default()
        }
    }
}

impl sandbox::Initializer for Cold {
    fn run(&mut self, guest: &mut sandbox::Guest<'_>) -> Result<(), String> {
        guest.call("_initialize", &[])?;
        let mut argv = Vec::with_capacity(4 * self.args.len());
        for arg in &self.args {
            argv.extend_from_slice(&c_string(guest, arg)?.to_le_bytes());
        }
        let len = i32::try_from(argv.len()).map_err(|_| "too many arguments")?;
        let at = guest.call_i32("malloc", &[len])?;
        if at == 0 {
            return Err("malloc failed".into());
        }
        guest.write(at as u32, &argv)?;
        self.argv = Some(at);
        Ok(())
    }
}
