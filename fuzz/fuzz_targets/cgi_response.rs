//! The CGI response parser (RFC 3875 §6): guest stdout, cut into writes at
//! the points the input chooses, becomes a response or a reported error,
//! never a panic; bytes after a valid header block pass through unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wcgid::cgi::response::{ResponseWriter, Sink};

struct Collect(Vec<u8>);

impl Sink for Collect {
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the write size (1..=256), the second HEAD or not.
    let [size, head, stdout @ ..] = data else {
        return;
    };
    let mut writer = ResponseWriter::new(Collect(Vec::new()), head & 1 == 1);
    for chunk in stdout.chunks(usize::from(*size) + 1) {
        if writer.write(chunk).is_err() {
            break;
        }
    }
    let _ = writer.flush();
    let _ = writer.head_error();
    let _ = writer.end(0);
});
