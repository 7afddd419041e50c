//! The FastCGI decoder and connection state machine (FastCGI 1.0 §3–§6):
//! whatever bytes a peer sends, the connection answers, ends, or closes with
//! an error, never panics, and allocates no more than its bounds.

#![no_main]

use std::io::Read;
use std::os::fd::AsFd;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;
use wcgid::fastcgi::{self, Caps, Ending, Handler, Params, Start, Stdout};

const CAPS: Caps = Caps {
    max_conns: 4,
    max_reqs: 4,
    max_params_bytes: 16 << 10,
    max_params: 100,
};

/// Runs a request with its params and body echoed in its response.
struct Echo;

struct EchoJob(Vec<u8>);

impl Handler for Echo {
    type Job = EchoJob;

    fn start(&self, params: Params) -> Start<EchoJob> {
        let mut seen = Vec::new();
        for (name, value) in params.iter() {
            if name == b"RESPOND" {
                return Start::Respond(Bytes::copy_from_slice(value));
            }
            seen.extend_from_slice(name);
        }
        Start::Run(EchoJob(seen))
    }

    fn params_too_large(&self) -> Bytes {
        Bytes::from_static(b"Status: 431\r\n\r\n")
    }
}

impl fastcgi::Job for EchoJob {
    fn stdin(&mut self, chunk: Bytes) -> Result<(), Bytes> {
        if self.0.len() + chunk.len() > 100_000 {
            return Err(Bytes::from_static(b"Status: 413\r\n\r\n"));
        }
        self.0.extend_from_slice(&chunk);
        Ok(())
    }

    fn run(self, mut out: Stdout) -> Ending {
        let _ = out.send(&self.0);
        Ending::Complete {
            tail: Bytes::from_static(b"done"),
            app_status: 0,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        // The peer: sends the input, half-closes, reads everything back.
        let input = data.to_vec();
        let peer = std::thread::spawn(move || {
            use std::io::Write;
            let mut client = client;
            let _ = client.write_all(&input);
            let _ = client.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink);
        });
        server.set_nonblocking(true).unwrap();
        let line = std::sync::Arc::new(fastcgi::Line::new(server.as_fd().try_clone_to_owned().unwrap(), None));
        let server = tokio::net::UnixStream::from_std(server).unwrap();
        let (r, mut w) = server.into_split();
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let _ = fastcgi::serve(r, &mut w, line, &Echo, &CAPS, stop).await;
        let _ = w.shutdown().await;
        drop(w);
        peer.join().unwrap();
    });
});
