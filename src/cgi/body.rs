//! The request body (RFC 3875 §4.2), read whole before the guest starts.
//!
//! Why not stream it: nginx stops sending the request body to a FastCGI
//! server as soon as it has passed that server's response header on to the
//! client (`ngx_http_upstream_send_request_handler`). A CGI program that
//! writes its header before reading its body (echo does) would wait forever
//! for the rest. So the body is collected first, like php-fpm does, kept in
//! memory up to `SPILL_AT` and in an unlinked temporary file beyond, and
//! only then does the guest start. The guest's output still streams.
//!
//! The body is cut at CONTENT_LENGTH; without CONTENT_LENGTH it is whatever
//! STDIN carries up to its end (e.g. nginx with `fastcgi_request_buffering
//! off` and a chunked upload). A body larger than the app's `max_body` limit
//! is refused (413) before any instance is made: at once when CONTENT_LENGTH
//! says so, else when the bytes pass the limit.

use std::collections::VecDeque;
use std::io::{self, Read, Seek};

use bytes::Bytes;

/// Body bytes kept in memory; the rest goes to a temporary file.
const SPILL_AT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("request body larger than the limit")]
    TooLarge,
    #[error("cannot spool the request body to a temporary file: {0}")]
    Spool(io::Error),
}

/// A complete request body, read by the guest through fd 0.
#[derive(Default)]
pub struct Body {
    chunks: VecDeque<Bytes>,
    file: Option<std::fs::File>,
}

/// Builds a [`Body`] from STDIN's chunks: cut at CONTENT_LENGTH, in memory up
/// to `SPILL_AT` bytes, then in an unlinked temporary file (written
/// synchronously: page-cache writes of uncommon large bodies).
#[derive(Default)]
pub struct BodyBuilder {
    body: Body,
    len: u64,
    /// Bytes still wanted: CONTENT_LENGTH minus what came.
    left: u64,
    /// The largest body accepted.
    max: u64,
}

impl BodyBuilder {
    /// A builder for a body of `content_length` bytes, or of whatever STDIN
    /// carries without one, of at most `max` bytes.
    pub fn new(content_length: Option<u64>, max: u64) -> Result<BodyBuilder, Error> {
        if content_length.is_some_and(|len| len > max) {
            return Err(Error::TooLarge);
        }
        Ok(BodyBuilder {
            left: content_length.unwrap_or(u64::MAX),
            max,
            ..BodyBuilder::default()
        })
    }

    pub fn push(&mut self, mut chunk: Bytes) -> Result<(), Error> {
        use std::io::Write;
        chunk.truncate(usize::try_from(self.left).unwrap_or(usize::MAX));
        if chunk.is_empty() {
            return Ok(());
        }
        self.left -= chunk.len() as u64;
        self.len += chunk.len() as u64;
        if self.len > self.max {
            return Err(Error::TooLarge);
        }
        if self.body.file.is_none() && self.len > SPILL_AT {
            let mut file = tempfile::tempfile().map_err(Error::Spool)?;
            for held in self.body.chunks.drain(..) {
                file.write_all(&held).map_err(Error::Spool)?;
            }
            self.body.file = Some(file);
        }
        match &mut self.body.file {
            Some(file) => file.write_all(&chunk).map_err(Error::Spool),
            None => {
                self.body.chunks.push_back(chunk);
                Ok(())
            }
        }
    }

    pub fn finish(mut self) -> Result<Body, Error> {
        if let Some(file) = &mut self.body.file {
            file.rewind().map_err(Error::Spool)?;
        }
        Ok(self.body)
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(file) = &mut self.file {
            return file.read(buf);
        }
        let Some(chunk) = self.chunks.front_mut() else {
            return Ok(0);
        };
        let n = buf.len().min(chunk.len());
        buf[..n].copy_from_slice(&chunk.split_to(n));
        if chunk.is_empty() {
            self.chunks.pop_front();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: u64 = 16 << 20;

    fn collect(chunks: Vec<Vec<u8>>, content_length: Option<u64>) -> Result<Vec<u8>, Error> {
        let mut builder = BodyBuilder::new(content_length, MAX_BODY)?;
        for c in chunks {
            builder.push(Bytes::from(c))?;
        }
        let mut out = Vec::new();
        builder.finish()?.read_to_end(&mut out).unwrap();
        Ok(out)
    }

    #[test]
    fn cut_at_content_length() {
        assert_eq!(
            collect(vec![b"abc".to_vec(), b"def".to_vec()], Some(4)).unwrap(),
            b"abcd"
        );
        assert_eq!(collect(vec![b"abc".to_vec()], Some(0)).unwrap(), b"");
        // Shorter than announced: the guest sees what came.
        assert_eq!(collect(vec![b"ab".to_vec()], Some(10)).unwrap(), b"ab");
        // No CONTENT_LENGTH: everything until the end of STDIN.
        assert_eq!(collect(vec![b"ab".to_vec(), b"cd".to_vec()], None).unwrap(), b"abcd");
    }

    #[test]
    fn large_bodies_spill_to_a_file_byte_exact() {
        let chunks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 65535]).collect();
        let want: Vec<u8> = chunks.concat();
        let got = collect(chunks, Some(want.len() as u64)).unwrap();
        assert!(got == want, "spooled body differs");
    }

    #[test]
    fn oversized_bodies_are_refused() {
        assert!(matches!(collect(vec![], Some(MAX_BODY + 1)), Err(Error::TooLarge)));
        let chunks: Vec<Vec<u8>> = (0..(MAX_BODY / 65535 + 2)).map(|_| vec![0; 65535]).collect();
        assert!(matches!(collect(chunks, None), Err(Error::TooLarge)));
    }
}
