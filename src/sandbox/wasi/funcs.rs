//! The host functions of `wasi_snapshot_preview1`, one per import name, with
//! the core-Wasm signatures of the WASI snapshot (pointers and sizes as i32,
//! 64-bit values as i64, an errno as the i32 result).

use std::io::Read;
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_getres, clock_gettime};
use wasmer::{Function, FunctionEnv, FunctionEnvMut, MemoryView, Store};

use super::fs::{self, Base, Entry, filetype, rights};
use super::scratch::{NodeId, Tree};
use super::{
    Errno, ExitCode, Host, Result, Stopped, addr, iovecs, read_bytes, read_path, with_memory, write_bytes, write_u32,
    write_u64,
};
use crate::sandbox::{CStrings, Stdio};

/// Host memory copied per step between guest memory and a stream, so that a
/// guest cannot make the host allocate its whole memory at once.
const COPY_CHUNK: usize = 64 * 1024;

/// The function WASI defines under `name`, bound to `env`, or `None`.
pub fn host_function<S: Stdio>(name: &str, store: &mut Store, env: &FunctionEnv<Host<S>>) -> Option<Function> {
    macro_rules! f {
        ($func:expr) => {
            Function::new_typed_with_env(store, env, $func)
        };
    }
    Some(match name {
        "args_get" => f!(args_get::<S>),
        "args_sizes_get" => f!(args_sizes_get::<S>),
        "environ_get" => f!(environ_get::<S>),
        "environ_sizes_get" => f!(environ_sizes_get::<S>),
        "clock_res_get" => f!(clock_res_get::<S>),
        "clock_time_get" => f!(clock_time_get::<S>),
        "fd_advise" => f!(fd_advise::<S>),
        "fd_allocate" => f!(fd_allocate::<S>),
        "fd_close" => f!(fd_close::<S>),
        "fd_datasync" => f!(fd_sync::<S>),
        "fd_fdstat_get" => f!(fd_fdstat_get::<S>),
        "fd_fdstat_set_flags" => f!(fd_fdstat_set_flags::<S>),
        "fd_fdstat_set_rights" => f!(fd_fdstat_set_rights::<S>),
        "fd_filestat_get" => f!(fd_filestat_get::<S>),
        "fd_filestat_set_size" => f!(fd_filestat_set_size::<S>),
        "fd_filestat_set_times" => f!(fd_filestat_set_times::<S>),
        "fd_pread" => f!(fd_pread::<S>),
        "fd_prestat_get" => f!(fd_prestat_get::<S>),
        "fd_prestat_dir_name" => f!(fd_prestat_dir_name::<S>),
        "fd_pwrite" => f!(fd_pwrite::<S>),
        "fd_read" => f!(fd_read::<S>),
        "fd_readdir" => f!(fd_readdir::<S>),
        "fd_renumber" => f!(fd_renumber::<S>),
        "fd_seek" => f!(fd_seek::<S>),
        "fd_sync" => f!(fd_sync::<S>),
        "fd_tell" => f!(fd_tell::<S>),
        "fd_write" => f!(fd_write::<S>),
        "path_create_directory" => f!(path_create_directory::<S>),
        "path_filestat_get" => f!(path_filestat_get::<S>),
        "path_filestat_set_times" => f!(path_filestat_set_times::<S>),
        "path_link" => f!(path_link::<S>),
        "path_open" => f!(path_open::<S>),
        "path_readlink" => f!(path_readlink::<S>),
        "path_remove_directory" => f!(path_remove_directory::<S>),
        "path_rename" => f!(path_rename::<S>),
        "path_symlink" => f!(path_symlink::<S>),
        "path_unlink_file" => f!(path_unlink_file::<S>),
        "poll_oneoff" => f!(poll_oneoff::<S>),
        "proc_exit" => f!(proc_exit::<S>),
        "proc_raise" => f!(proc_raise::<S>),
        "random_get" => f!(random_get::<S>),
        "sched_yield" => f!(sched_yield::<S>),
        "sock_accept" => f!(sock_accept::<S>),
        "sock_recv" => f!(sock_recv::<S>),
        "sock_send" => f!(sock_send::<S>),
        "sock_shutdown" => f!(sock_shutdown::<S>),
        super::ZEROPERL_HOST_CALL => f!(call_host_function::<S>),
        _ => return None,
    })
}

// ---- args and environment --------------------------------------------------

fn sizes(mem: &MemoryView, strings: &CStrings, count_ptr: i32, size_ptr: i32) -> Result<()> {
    write_u32(mem, count_ptr, strings.count)?;
    write_u32(mem, size_ptr, strings.bytes.len() as u32)
}

/// Writes the strings at `buf` and a pointer to each at `ptrs`.
fn strings_to(mem: &MemoryView, strings: &CStrings, ptrs: i32, buf: i32) -> Result<()> {
    write_bytes(mem, addr(buf), &strings.bytes)?;
    let mut offset = buf as u32;
    for (i, s) in strings.iter().enumerate() {
        write_u32(mem, ptrs.wrapping_add(4 * i as i32), offset)?;
        offset = offset.wrapping_add(s.len() as u32 + 1);
    }
    Ok(())
}

fn args_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, argv: i32, buf: i32) -> i32 {
    with_memory(env, |h, mem| strings_to(mem, &h.args, argv, buf))
}

fn args_sizes_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, count: i32, size: i32) -> i32 {
    with_memory(env, |h, mem| sizes(mem, &h.args, count, size))
}

fn environ_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, environ: i32, buf: i32) -> i32 {
    with_memory(env, |h, mem| {
        h.touched.environ = true;
        strings_to(mem, &h.env, environ, buf)
    })
}

fn environ_sizes_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, count: i32, size: i32) -> i32 {
    with_memory(env, |h, mem| {
        h.touched.environ = true;
        sizes(mem, &h.env, count, size)
    })
}

// ---- clocks, randomness, process ------------------------------------------

fn clock(id: i32) -> Result<ClockId> {
    Ok(match id {
        0 => ClockId::CLOCK_REALTIME,
        1 => ClockId::CLOCK_MONOTONIC,
        2 => ClockId::CLOCK_PROCESS_CPUTIME_ID,
        3 => ClockId::CLOCK_THREAD_CPUTIME_ID,
        _ => return Err(Errno::INVAL),
    })
}

fn nanos(ts: nix::sys::time::TimeSpec) -> u64 {
    Duration::from(ts).as_nanos() as u64
}

fn clock_res_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, id: i32, res: i32) -> i32 {
    with_memory(env, |_, mem| {
        let ts = clock_getres(clock(id)?).map_err(|_| Errno::INVAL)?;
        write_u64(mem, res, nanos(ts))
    })
}

fn clock_time_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, id: i32, _precision: i64, time: i32) -> i32 {
    with_memory(env, |_, mem| {
        let ts = clock_gettime(clock(id)?).map_err(|_| Errno::INVAL)?;
        write_u64(mem, time, nanos(ts))
    })
}

fn random_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, buf: i32, len: i32) -> i32 {
    with_memory(env, |h, mem| {
        let (mut at, mut left) = (addr(buf), len as u32 as usize);
        while left > 0 {
            let n = left.min(COPY_CHUNK);
            h.buffer.resize(n, 0);
            getrandom::fill(&mut h.buffer).map_err(|_| Errno::IO)?;
            write_bytes(mem, at, &h.buffer)?;
            (at, left) = (at + n as u64, left - n);
        }
        Ok(())
    })
}

fn proc_exit<S: Stdio>(_env: FunctionEnvMut<Host<S>>, code: i32) -> std::result::Result<(), ExitCode> {
    Err(ExitCode(code as u32))
}

/// zeroperl's bridge to functions its JavaScript host registers. wcgid
/// registers none, and a script cannot: this answers as zeroperl's own host
/// does for an unknown function, with a null value.
fn call_host_function<S: Stdio>(_env: FunctionEnvMut<Host<S>>, _id: i32, _argc: i32, _argv: i32) -> i32 {
    0
}

fn proc_raise<S: Stdio>(_env: FunctionEnvMut<Host<S>>, _sig: i32) -> i32 {
    i32::from(Errno::NOSYS.0)
}

fn sched_yield<S: Stdio>(_env: FunctionEnvMut<Host<S>>) -> i32 {
    0
}

// ---- descriptors -------------------------------------------------------------

fn fd_write<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32 {
    with_memory(env, |h, mem| {
        let iovs = iovecs(mem, iovs, iovs_len)?;
        let is_stdout = match h.fds.get(fd)? {
            Entry::Stdout => true,
            Entry::Stderr => false,
            Entry::ScratchFile(file) => {
                let len = total_len(&iovs)?;
                h.scratch.tree().write(file, len, |dst| gather(mem, &iovs, dst))?;
                return write_u32(mem, nwritten, len as u32);
            }
            _ => return Err(Errno::BADF),
        };
        let mut total = 0u32;
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
                (at, left, total) = (at + n as u64, left - n, total.wrapping_add(n as u32));
            }
        }
        write_u32(mem, nwritten, total)
    })
}

/// Reads once from `fd` into the guest's iovecs: at most one blocking read,
/// as `readv` does.
fn fd_read<S: Stdio>(mut env: FunctionEnvMut<Host<S>>, fd: i32, iovs: i32, iovs_len: i32, nread: i32) -> i32 {
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
        let iovs = iovecs(mem, iovs, iovs_len)?;
        let want = total_len(&iovs)?;
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

fn fd_pread<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, iovs: i32, iovs_len: i32, offset: i64, nread: i32) -> i32 {
    with_memory(env, |h, mem| {
        use cap_std::fs::FileExt;
        let iovs = iovecs(mem, iovs, iovs_len)?;
        let want = total_len(&iovs)?;
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

/// The bytes the guest's iovecs hold or ask for: at most what a `size`
/// result can report.
fn total_len(iovs: &[(u64, usize)]) -> Result<usize> {
    let total = iovs.iter().map(|&(_, len)| len).sum::<usize>();
    if total > u32::MAX as usize {
        return Err(Errno::INVAL);
    }
    Ok(total)
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

fn fd_pwrite<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: i64,
    nwritten: i32,
) -> i32 {
    with_memory(env, |h, mem| match h.fds.get(fd)? {
        Entry::ScratchFile(file) => {
            let iovs = iovecs(mem, iovs, iovs_len)?;
            let len = total_len(&iovs)?;
            h.scratch
                .tree()
                .pwrite(file, offset as u64, len, |dst| gather(mem, &iovs, dst))?;
            write_u32(mem, nwritten, len as u32)
        }
        _ => Err(Errno::BADF),
    })
}

fn fd_seek<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, offset: i64, whence: i32, newoffset: i32) -> i32 {
    with_memory(env, |h, mem| {
        let whence = u8::try_from(whence).map_err(|_| Errno::INVAL);
        let at = match h.fds.get(fd)? {
            Entry::File(file) => fs::seek(file, offset, whence?)?,
            Entry::ScratchFile(file) => h.scratch.tree().seek(file, offset, whence?)?,
            Entry::Dir { .. } | Entry::ScratchDir { .. } => return Err(Errno::BADF),
            _ => return Err(Errno::SPIPE),
        };
        write_u64(mem, newoffset, at)
    })
}

fn fd_tell<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, offset: i32) -> i32 {
    with_memory(env, |h, mem| match h.fds.get(fd)? {
        Entry::File(file) => write_u64(mem, offset, fs::seek(file, 0, 1)?),
        Entry::ScratchFile(file) => write_u64(mem, offset, file.offset()),
        Entry::Dir { .. } | Entry::ScratchDir { .. } => Err(Errno::BADF),
        _ => Err(Errno::SPIPE),
    })
}

fn fd_close<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32) -> i32 {
    with_memory(env, |h, _| {
        let closed = h.fds.close(fd)?;
        release(h, closed);
        Ok(())
    })
}

fn fd_renumber<S: Stdio>(env: FunctionEnvMut<Host<S>>, from: i32, to: i32) -> i32 {
    with_memory(env, |h, _| {
        let replaced = h.fds.renumber(from, to)?;
        release(h, replaced);
        Ok(())
    })
}

/// What a closed descriptor held: a scratch file goes once unlinked and
/// closed everywhere.
fn release<S: Stdio>(h: &mut Host<S>, entry: Entry) {
    if let Entry::ScratchFile(file) = entry {
        h.scratch.tree().close(file);
    }
}

fn fd_sync<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32) -> i32 {
    with_memory(env, |h, _| match h.fds.get(fd)? {
        Entry::Stdout => h.io().flush().map_err(|_| Errno::PIPE),
        _ => Ok(()),
    })
}

fn fd_advise<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, _offset: i64, _len: i64, _advice: i32) -> i32 {
    with_memory(env, |h, _| h.fds.get(fd).map(drop))
}

fn fd_allocate<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, offset: i64, len: i64) -> i32 {
    with_memory(env, |h, _| match h.fds.get(fd)? {
        Entry::ScratchFile(file) => h.scratch.tree().allocate(file, offset as u64, len as u64),
        _ => Err(Errno::BADF),
    })
}

fn fd_fdstat_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, buf: i32) -> i32 {
    with_memory(env, |h, mem| {
        let (kind, flags, base, inheriting) = match h.fds.get(fd)? {
            Entry::Stdin => (filetype::UNKNOWN, 0, rights::FD_READ | rights::POLL_FD_READWRITE, 0),
            Entry::Stdout | Entry::Stderr => (filetype::UNKNOWN, 0, rights::FD_WRITE | rights::POLL_FD_READWRITE, 0),
            Entry::Dir { .. } => (filetype::DIRECTORY, 0, rights::DIR, rights::DIR | rights::FILE),
            Entry::File(_) => (filetype::REGULAR_FILE, 0, rights::FILE, 0),
            Entry::ScratchDir { .. } => (
                filetype::DIRECTORY,
                0,
                rights::SCRATCH_DIR,
                rights::SCRATCH_DIR | rights::SCRATCH_FILE,
            ),
            Entry::ScratchFile(file) => (filetype::REGULAR_FILE, file.fdflags(), file.rights(), 0),
        };
        let mut out = [0u8; 24];
        out[0] = kind;
        out[2..4].copy_from_slice(&flags.to_le_bytes());
        out[8..16].copy_from_slice(&base.to_le_bytes());
        out[16..24].copy_from_slice(&inheriting.to_le_bytes());
        write_bytes(mem, addr(buf), &out)
    })
}

/// Append mode is the one flag that changes how a descriptor behaves here,
/// on a scratch file; the others are accepted for valid descriptors.
fn fd_fdstat_set_flags<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, flags: i32) -> i32 {
    with_memory(env, |h, _| {
        if let Entry::ScratchFile(file) = h.fds.get(fd)? {
            file.set_fdflags(flags as u16);
        }
        Ok(())
    })
}

fn fd_fdstat_set_rights<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, _base: i64, _inheriting: i64) -> i32 {
    with_memory(env, |h, _| h.fds.get(fd).map(drop))
}

fn fd_filestat_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, buf: i32) -> i32 {
    with_memory(env, |h, mem| {
        let stat = match h.fds.get(fd)? {
            Entry::File(file) => fs::filestat(&file.metadata().map_err(fs::errno)?).to_bytes(),
            Entry::Dir { dir, .. } => fs::filestat(&dir.dir_metadata().map_err(fs::errno)?).to_bytes(),
            Entry::ScratchFile(file) => h.scratch.tree().stat(file.node())?.to_bytes(),
            &mut Entry::ScratchDir { node, .. } => h.scratch.tree().stat(node)?.to_bytes(),
            Entry::Stdin | Entry::Stdout | Entry::Stderr => [0u8; 64],
        };
        write_bytes(mem, addr(buf), &stat)
    })
}

fn fd_filestat_set_size<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, size: i64) -> i32 {
    with_memory(env, |h, _| match h.fds.get(fd)? {
        Entry::ScratchFile(file) => h.scratch.tree().set_size(file, size as u64),
        _ => Err(Errno::BADF),
    })
}

fn fd_filestat_set_times<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, atim: i64, mtim: i64, flags: i32) -> i32 {
    with_memory(env, |h, _| {
        let node = match h.fds.get(fd)? {
            Entry::ScratchFile(file) => file.node(),
            &mut Entry::ScratchDir { node, .. } => node,
            _ => return Err(Errno::ROFS),
        };
        h.scratch.tree().set_times(node, atim as u64, mtim as u64, flags as u16)
    })
}

fn fd_prestat_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, buf: i32) -> i32 {
    with_memory(env, |h, mem| {
        h.touched.preopens = true;
        let len = h.fds.preopen_name(fd)?.len() as u32;
        let mut out = [0u8; 8];
        out[4..].copy_from_slice(&len.to_le_bytes());
        write_bytes(mem, addr(buf), &out)
    })
}

fn fd_prestat_dir_name<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, path: i32, len: i32) -> i32 {
    with_memory(env, |h, mem| {
        let name = h.fds.preopen_name(fd)?;
        if (len as u32 as usize) < name.len() {
            return Err(Errno::NAMETOOLONG);
        }
        write_bytes(mem, addr(path), name.as_bytes())
    })
}

fn fd_readdir<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, buf: i32, len: i32, cookie: i64, used: i32) -> i32 {
    with_memory(env, |h, mem| {
        let len = (len as u32 as usize).min(COPY_CHUNK);
        let out = match h.fds.base(fd).map_err(|_| Errno::BADF)? {
            Base::Mount(dir) => fs::readdir(&dir, cookie as u64, len)?,
            Base::Scratch(node) => h.scratch.tree().readdir(node, cookie as u64, len)?,
        };
        write_bytes(mem, addr(buf), &out)?;
        write_u32(mem, used, out.len() as u32)
    })
}

// ---- paths -----------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn path_open<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    dirfd: i32,
    _dirflags: i32,
    path: i32,
    path_len: i32,
    oflags: i32,
    rights_base: i64,
    _rights_inheriting: i64,
    fdflags: i32,
    fd: i32,
) -> i32 {
    with_memory(env, |h, mem| {
        let path = read_path(mem, path, path_len)?;
        let (oflags, rights_base, fdflags) = (oflags as u16, rights_base as u64, fdflags as u16);
        let opened = match h.fds.base(dirfd)? {
            Base::Mount(dir) => h
                .fds
                .insert_with(|| fs::open(&dir, &path, oflags, rights_base, fdflags))?,
            Base::Scratch(node) => {
                let tree = h.scratch.tree();
                h.fds
                    .insert_with(|| Ok(tree.open(node, &path, oflags, rights_base, fdflags)?.into()))?
            }
        };
        write_u32(mem, fd, opened)
    })
}

fn path_filestat_get<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    dirfd: i32,
    flags: i32,
    path: i32,
    len: i32,
    buf: i32,
) -> i32 {
    with_memory(env, |h, mem| {
        let base = h.fds.base(dirfd)?;
        let path = read_path(mem, path, len)?;
        let stat = match base {
            Base::Mount(dir) => {
                let path = fs::guest_path(&path)?;
                let meta = if flags & fs::LOOKUP_SYMLINK_FOLLOW != 0 {
                    dir.metadata(path)
                } else {
                    dir.symlink_metadata(path)
                };
                fs::filestat(&meta.map_err(fs::errno)?)
            }
            // No symlinks to follow or not.
            Base::Scratch(node) => {
                let tree = h.scratch.tree();
                tree.stat(tree.lookup(node, &path)?)?
            }
        };
        write_bytes(mem, addr(buf), &stat.to_bytes())
    })
}

fn path_readlink<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    dirfd: i32,
    path: i32,
    len: i32,
    buf: i32,
    buf_len: i32,
    used: i32,
) -> i32 {
    with_memory(env, |h, mem| {
        use std::os::unix::ffi::OsStrExt;
        let base = h.fds.base(dirfd)?;
        let path = read_path(mem, path, len)?;
        let dir = match base {
            Base::Mount(dir) => dir,
            // What is there is no symlink.
            Base::Scratch(node) => return h.scratch.tree().lookup(node, &path).and(Err(Errno::INVAL)),
        };
        let target = dir.read_link(fs::guest_path(&path)?).map_err(fs::errno)?;
        let target = target.as_os_str().as_bytes();
        let n = target.len().min(buf_len as u32 as usize);
        write_bytes(mem, addr(buf), &target[..n])?;
        write_u32(mem, used, n as u32)
    })
}

/// A call that changes what `dirfd` holds: under a mount, read-only
/// (EROFS); in the scratch tree, `change` does it.
fn change<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    dirfd: i32,
    path: i32,
    len: i32,
    change: impl FnOnce(&mut Tree, NodeId, &[u8]) -> Result<()>,
) -> i32 {
    with_memory(env, |h, mem| match h.fds.base(dirfd)? {
        Base::Mount(_) => Err(Errno::ROFS),
        Base::Scratch(node) => change(h.scratch.tree(), node, &read_path(mem, path, len)?),
    })
}

fn path_create_directory<S: Stdio>(env: FunctionEnvMut<Host<S>>, dirfd: i32, path: i32, len: i32) -> i32 {
    change(env, dirfd, path, len, Tree::mkdir)
}

fn path_remove_directory<S: Stdio>(env: FunctionEnvMut<Host<S>>, dirfd: i32, path: i32, len: i32) -> i32 {
    change(env, dirfd, path, len, Tree::rmdir)
}

fn path_unlink_file<S: Stdio>(env: FunctionEnvMut<Host<S>>, dirfd: i32, path: i32, len: i32) -> i32 {
    change(env, dirfd, path, len, Tree::unlink)
}

/// No symlinks to follow or not: `flags` changes nothing.
#[allow(clippy::too_many_arguments)]
fn path_filestat_set_times<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    dirfd: i32,
    _flags: i32,
    path: i32,
    len: i32,
    atim: i64,
    mtim: i64,
    fst: i32,
) -> i32 {
    change(env, dirfd, path, len, |tree, node, path| {
        let target = tree.lookup(node, path)?;
        tree.set_times(target, atim as u64, mtim as u64, fst as u16)
    })
}

/// Links of either kind: a mount is read-only (EROFS); the scratch tree has
/// none, and answers as POSIX does where a file system cannot make them
/// (EPERM).
fn no_links<S: Stdio>(h: &mut Host<S>, dirfd: i32) -> Result<()> {
    match h.fds.base(dirfd)? {
        Base::Mount(_) => Err(Errno::ROFS),
        Base::Scratch(_) => Err(Errno::PERM),
    }
}

#[allow(clippy::too_many_arguments)]
fn path_link<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    old_dirfd: i32,
    _flags: i32,
    _old: i32,
    _old_len: i32,
    new_dirfd: i32,
    _new: i32,
    _new_len: i32,
) -> i32 {
    with_memory(env, |h, _| {
        h.fds.base(old_dirfd)?;
        no_links(h, new_dirfd)
    })
}

/// Within the scratch tree; between it and a mount, EXDEV, as between two
/// file systems.
fn path_rename<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    old_dirfd: i32,
    old: i32,
    old_len: i32,
    new_dirfd: i32,
    new: i32,
    new_len: i32,
) -> i32 {
    with_memory(env, |h, mem| match (h.fds.base(old_dirfd)?, h.fds.base(new_dirfd)?) {
        (Base::Scratch(from), Base::Scratch(to)) => {
            let (old, new) = (read_path(mem, old, old_len)?, read_path(mem, new, new_len)?);
            h.scratch.tree().rename(from, &old, to, &new)
        }
        (Base::Mount(_), Base::Mount(_)) => Err(Errno::ROFS),
        _ => Err(Errno::XDEV),
    })
}

fn path_symlink<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    _old: i32,
    _old_len: i32,
    dirfd: i32,
    _new: i32,
    _new_len: i32,
) -> i32 {
    with_memory(env, |h, _| no_links(h, dirfd))
}

// ---- poll ------------------------------------------------------------------

const EVENTTYPE_CLOCK: u8 = 0;
const SUBCLOCK_ABSTIME: u16 = 1;
/// Subscriptions one `poll_oneoff` may carry.
const MAX_SUBSCRIPTIONS: u32 = 256;

/// Clock subscriptions sleep (stdout flushed first) unless the guest's
/// [`Stdio`] stops it meanwhile; fd subscriptions are reported ready at once:
/// stdin and files never block for long here.
fn poll_oneoff<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    subs: i32,
    events: i32,
    nsubs: i32,
    nevents: i32,
) -> std::result::Result<i32, Stopped> {
    let mut stopped = false;
    let errno = with_memory(env, |h, mem| {
        let n = nsubs as u32;
        if n == 0 || n > MAX_SUBSCRIPTIONS {
            return Err(Errno::INVAL);
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut earliest: Option<(Instant, Vec<u64>)> = None;
        for i in 0..u64::from(n) {
            let sub: [u8; 48] = read_bytes(mem, addr(subs) + 48 * i)?;
            let userdata = u64::from_le_bytes(sub[0..8].try_into().expect("8 bytes"));
            let tag = sub[8];
            if tag == EVENTTYPE_CLOCK {
                let id = u32::from_le_bytes(sub[16..20].try_into().expect("4 bytes"));
                let timeout = u64::from_le_bytes(sub[24..32].try_into().expect("8 bytes"));
                let flags = u16::from_le_bytes(sub[40..42].try_into().expect("2 bytes"));
                let wait = if flags & SUBCLOCK_ABSTIME != 0 {
                    let now_ns = nanos(clock_gettime(clock(id as i32)?).map_err(|_| Errno::INVAL)?);
                    Duration::from_nanos(timeout.saturating_sub(now_ns))
                } else {
                    Duration::from_nanos(timeout)
                };
                let due = now + wait;
                match &mut earliest {
                    Some((at, ids)) if *at == due => ids.push(userdata),
                    Some((at, _)) if *at < due => {}
                    _ => earliest = Some((due, vec![userdata])),
                }
            } else {
                ready.push((userdata, tag, Errno::SUCCESS));
            }
        }
        if ready.is_empty() {
            let (due, ids) = earliest.expect("n > 0 and no fd subscriptions");
            h.io().flush().map_err(|_| Errno::PIPE)?;
            if !h.io().sleep(due.saturating_duration_since(Instant::now())) {
                stopped = true;
                return Ok(());
            }
            ready.extend(ids.into_iter().map(|u| (u, EVENTTYPE_CLOCK, Errno::SUCCESS)));
        }
        for (i, (userdata, tag, errno)) in ready.iter().enumerate() {
            let mut event = [0u8; 32];
            event[0..8].copy_from_slice(&userdata.to_le_bytes());
            event[8..10].copy_from_slice(&errno.0.to_le_bytes());
            event[10] = *tag;
            write_bytes(mem, addr(events) + 32 * i as u64, &event)?;
        }
        write_u32(mem, nevents, ready.len() as u32)
    });
    if stopped { Err(Stopped) } else { Ok(errno) }
}

// ---- sockets: a CGI program has none ----------------------------------------

fn not_a_socket<S: Stdio>(h: &mut Host<S>, fd: i32) -> Result<()> {
    h.fds.get(fd).and(Err(Errno::NOTSOCK))
}

fn sock_accept<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, _flags: i32, _ret: i32) -> i32 {
    with_memory(env, |h, _| not_a_socket(h, fd))
}

fn sock_recv<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    _ri: i32,
    _ri_len: i32,
    _ri_flags: i32,
    _ro_len: i32,
    _ro_flags: i32,
) -> i32 {
    with_memory(env, |h, _| not_a_socket(h, fd))
}

fn sock_send<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    _si: i32,
    _si_len: i32,
    _si_flags: i32,
    _so_len: i32,
) -> i32 {
    with_memory(env, |h, _| not_a_socket(h, fd))
}

fn sock_shutdown<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, _how: i32) -> i32 {
    with_memory(env, |h, _| not_a_socket(h, fd))
}
