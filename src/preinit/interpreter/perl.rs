//! Perl: zeroperl (npm `@6over3/zeroperl-ts`), a WASI reactor build of
//! Perl 5. Its init, `zeroperl_init`, constructs the interpreter and parses
//! an empty program; `zeroperl_eval` evaluates a string in it. The snapshot
//! is taken after both and boot.pl; it gains a `_start` that evaluates
//! `WCGID::serve()`, whose text is left in the snapshot's memory.

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
