//! Reads and writes through a guest's (c)iovecs: `fd_read`, `fd_write`,
//! `fd_pread`, `fd_pwrite` (typenames.witx: `iovec`, `ciovec`), gathered
//! from and scattered to guest memory in bounded steps.

use std::io::Read;

use wasmer::{FunctionEnvMut, MemoryView};

use super::COPY_CHUNK;
use crate::sandbox::Stdio;
use crate::sandbox::wasi::fs::{self, Entry};
use crate::sandbox::wasi::{Errno, Host, Result, addr, in_memory, with_memory, write_bytes, write_u32};

/// A guest's (c)iovec array, at most IOV_MAX entries, as (pointer, length)
/// pairs and their total length. That total must fit a `size` result
/// (INVAL), and every entry must lie in memory (FAULT), before anything is
/// read or written: a call that fails has no effect. Empty entries are
/// left out, so that their pointers, never used, are not checked either.
fn iovecs(mem: &MemoryView, ptr: i32, len: i32) -> Result<(Vec<(u64, usize)>, usize)> {
    let len = len as u32;
    if len > 1024 {
        return Err(Errno::INVAL);
    }
    let mut raw = vec![0u8; len as usize * 8];
    mem.read(addr(ptr), &mut raw).map_err(|_| Errno::FAULT)?;
    let iovs: Vec<(u64, usize)> = raw
        .chunks_exact(8)
        .map(|c| {
            let base = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let len = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            (u64::from(base), len as usize)
        })
        .filter(|&(_, len)| len > 0)
        .collect();
    let total = iovs.iter().map(|&(_, len)| len).sum::<usize>();
    if total > u32::MAX as usize {
        return Err(Errno::INVAL);
    }
    for &(base, len) in &iovs {
        in_memory(mem, base, len)?;
    }
    Ok((iovs, total))
}

pub(super) fn fd_write<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    with_memory(env, |h, mem| {
        let (iovs, len) = iovecs(mem, iovs, iovs_len)?;
        let is_stdout = match h.fds.get(fd)? {
            Entry::Stdout => true,
            Entry::Stderr => false,
            Entry::ScratchFile(file) => {
                h.scratch.tree().write(file, len, |dst| gather(mem, &iovs, dst))?;
                return write_u32(mem, nwritten, len as u32);
            }
            _ => return Err(Errno::BADF),
        };
        for (mut at, mut left) in iovs {
            while left > 0 {
                let n = left.min(COPY_CHUNK);
                h.buffer.resize(n, 0);
                mem.read(at, &mut h.buffer).map_err(|_| Errno::FAULT)?;
                let io = h.io.as_mut().expect("stdio is present until the run ends");
                if is_stdout {
                    io.write(&h.buffer).map_err(|_| Errno::PIPE)?;
                } else {
                    io.log(&h.buffer);
                }
                (at, left) = (at + n as u64, left - n);
            }
        }
        write_u32(mem, nwritten, len as u32)
    })
}

/// Reads once from `fd` into the guest's iovecs: at most one blocking read,
/// as `readv` does.
pub(super) fn fd_read<S: Stdio>(
    mut env: FunctionEnvMut<Host<S>>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> i32 {
    if let Some(stop) = env.data_mut().rewinding.take() {
        // The read a snapshot was taken in, rewound into: it now reads.
        if stop.call(&mut env).is_err() {
            return i32::from(Errno::FAULT.0);
        }
    } else if fd == 0
        && let Some(capture) = env.data_mut().capture.take()
    {
        // Unwinds the guest to the host, which snapshots it here.
        return match capture.unwind.call(&mut env, capture.data) {
            Ok(()) => 0,
            Err(_) => i32::from(Errno::FAULT.0),
        };
    }
    with_memory(env, |h, mem| {
        let (iovs, want) = iovecs(mem, iovs, iovs_len)?;
        let Host {
            fds,
            io,
            buffer,
            scratch,
            preamble,
            ..
        } = h;
        let data = match fds.get(fd)? {
            Entry::Stdin if !preamble.is_empty() => {
                buffer.resize(want.min(COPY_CHUNK), 0);
                let n = preamble.read(buffer).map_err(|_| Errno::IO)?;
                &buffer[..n]
            }
            Entry::Stdin => {
                let io = io.as_mut().expect("stdio is present until the run ends");
                // The guest may wait for more body: let what it wrote go out first.
                io.flush().map_err(|_| Errno::PIPE)?;
                buffer.resize(want.min(COPY_CHUNK), 0);
                let n = io.read(buffer).map_err(|_| Errno::IO)?;
                &buffer[..n]
            }
            Entry::File(file) => {
                buffer.resize(want.min(COPY_CHUNK), 0);
                let n = fs::read_file(file, buffer)?;
                &buffer[..n]
            }
            // Straight from the tree: no copy to bound.
            Entry::ScratchFile(file) => scratch.tree().read(file, want)?,
            Entry::Dir { .. } | Entry::ScratchDir { .. } => return Err(Errno::ISDIR),
            Entry::Stdout | Entry::Stderr => return Err(Errno::BADF),
        };
        scatter(mem, &iovs, data)?;
        write_u32(mem, nread, data.len() as u32)
    })
}

pub(super) fn fd_pread<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: i64,
    nread: i32,
) -> i32 {
    with_memory(env, |h, mem| {
        use cap_std::fs::FileExt;
        let (iovs, want) = iovecs(mem, iovs, iovs_len)?;
        let data = match h.fds.get(fd)? {
            Entry::File(file) => {
                h.buffer.resize(want.min(COPY_CHUNK), 0);
                let n = file.read_at(&mut h.buffer, offset as u64).map_err(fs::errno)?;
                &h.buffer[..n]
            }
            Entry::ScratchFile(file) => h.scratch.tree().pread(file, offset as u64, want)?,
            Entry::Dir { .. } | Entry::ScratchDir { .. } => return Err(Errno::ISDIR),
            _ => return Err(Errno::SPIPE),
        };
        scatter(mem, &iovs, data)?;
        write_u32(mem, nread, data.len() as u32)
    })
}

/// Copies the guest's iovecs, in order, into `dst`, their total length.
fn gather(mem: &MemoryView, iovs: &[(u64, usize)], dst: &mut [u8]) -> Result<()> {
    let mut at = 0;
    for &(ptr, len) in iovs {
        mem.read(ptr, &mut dst[at..at + len]).map_err(|_| Errno::FAULT)?;
        at += len;
    }
    Ok(())
}

/// Copies `data` into the guest's iovecs in order.
fn scatter(mem: &MemoryView, iovs: &[(u64, usize)], mut data: &[u8]) -> Result<()> {
    for &(at, len) in iovs {
        if data.is_empty() {
            break;
        }
        let (now, rest) = data.split_at(len.min(data.len()));
        write_bytes(mem, at, now)?;
        data = rest;
    }
    Ok(())
}

pub(super) fn fd_pwrite<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: i64,
    nwritten: i32,
) -> i32 {
    with_memory(env, |h, mem| match h.fds.get(fd)? {
        Entry::ScratchFile(file) => {
            let (iovs, len) = iovecs(mem, iovs, iovs_len)?;
            h.scratch
                .tree()
                .pwrite(file, offset as u64, len, |dst| gather(mem, &iovs, dst))?;
            write_u32(mem, nwritten, len as u32)
        }
        _ => Err(Errno::BADF),
    })
}
