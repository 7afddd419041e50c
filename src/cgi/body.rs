//! The request body (RFC 3875 §4.2), read whole before the guest starts.
//!
//! Why not stream it: nginx stops sending the request body to a FastCGI
//! server as soon as it has passed that server's response header on to the
//! client (`ngx_http_upstream_send_request_handler`). A CGI program that
//! writes its header before reading its body (echo does) would wait forever
//! for the rest. So the body is collected first, like php-fpm does, kept in
//! memory up to [`SPILL_AT`] and in an unlinked temporary file beyond, and
//! only then is a worker taken; the worker rebuilds it the same way. The
//! guest's output still streams.
//!
//! The body is cut at CONTENT_LENGTH; without CONTENT_LENGTH it is whatever
//! STDIN carries up to its end (e.g. nginx with `fastcgi_request_buffering
//! off` and a chunked upload). A body larger than [`MAX_BODY`] is refused.

use std::collections::VecDeque;
use std::io::{self, Read, Seek};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Body bytes kept in memory; the rest goes to a temporary file.
const SPILL_AT: u64 = 1 << 20;
/// The largest body accepted.
pub const MAX_BODY: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("request body larger than {MAX_BODY} bytes")]
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

/// Builds a [`Body`]: in memory up to [`SPILL_AT`] bytes, then in an
/// unlinked temporary file (written synchronously: page-cache writes of
/// uncommon large bodies).
#[derive(Default)]
pub struct BodyBuilder {
    body: Body,
    len: u64,
}

impl BodyBuilder {
    pub fn push(&mut self, chunk: Bytes) -> Result<(), Error> {
        use std::io::Write;
        self.len += chunk.len() as u64;
        if self.len > MAX_BODY {
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

impl Body {
    /// Receives STDIN until its end, or until `content_length` bytes.
    pub async fn collect(mut stdin: mpsc::Receiver<Bytes>, content_length: Option<u64>) -> Result<Body, Error> {
        if content_length.is_some_and(|len| len > MAX_BODY) {
            return Err(Error::TooLarge);
        }
        let mut left = content_length.unwrap_or(u64::MAX);
        let mut builder = BodyBuilder::default();
        while left > 0 {
            let Some(mut chunk) = stdin.recv().await else { break };
            chunk.truncate(usize::try_from(left).unwrap_or(usize::MAX));
            left -= chunk.len() as u64;
            builder.push(chunk)?;
        }
        builder.finish()
    }

    /// The body in chunks of at most `max` bytes, to send elsewhere.
    pub fn chunks(mut self, max: usize) -> impl Iterator<Item = io::Result<Bytes>> {
        let mut buf = vec![0u8; max];
        std::iter::from_fn(move || match self.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => Some(Ok(Bytes::copy_from_slice(&buf[..n]))),
            Err(e) => Some(Err(e)),
        })
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

    async fn collect(chunks: Vec<Vec<u8>>, content_length: Option<u64>) -> Result<Vec<u8>, Error> {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for c in chunks {
                if tx.send(Bytes::from(c)).await.is_err() {
                    break;
                }
            }
        });
        let mut body = Body::collect(rx, content_length).await?;
        let mut out = Vec::new();
        body.read_to_end(&mut out).unwrap();
        Ok(out)
    }

    #[tokio::test]
    async fn cut_at_content_length() {
        assert_eq!(
            collect(vec![b"abc".to_vec(), b"def".to_vec()], Some(4)).await.unwrap(),
            b"abcd"
        );
        assert_eq!(collect(vec![b"abc".to_vec()], Some(0)).await.unwrap(), b"");
        // Shorter than announced: the guest sees what came.
        assert_eq!(collect(vec![b"ab".to_vec()], Some(10)).await.unwrap(), b"ab");
        // No CONTENT_LENGTH: everything until the end of STDIN.
        assert_eq!(
            collect(vec![b"ab".to_vec(), b"cd".to_vec()], None).await.unwrap(),
            b"abcd"
        );
    }

    #[tokio::test]
    async fn large_bodies_spill_to_a_file_byte_exact() {
        let chunks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 65535]).collect();
        let want: Vec<u8> = chunks.concat();
        let got = collect(chunks, Some(want.len() as u64)).await.unwrap();
        assert!(got == want, "spooled body differs");
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        assert!(matches!(
            collect(vec![], Some(MAX_BODY + 1)).await,
            Err(Error::TooLarge)
        ));
        let chunks: Vec<Vec<u8>> = (0..(MAX_BODY / 65535 + 2)).map(|_| vec![0; 65535]).collect();
        assert!(matches!(collect(chunks, None).await, Err(Error::TooLarge)));
    }
}
