//! Calls on a descriptor other than reads and writes: seek, close,
//! renumber, sync, `fdstat`, `filestat`, `prestat`, `fd_readdir`
//! (typenames.witx: `fdstat`, `filestat`, `prestat`, `dirent`), and the
//! socket calls, since a CGI program has no socket.

use wasmer::FunctionEnvMut;

use super::COPY_CHUNK;
use crate::sandbox::Stdio;
use crate::sandbox::wasi::abi::{filetype, rights};
use crate::sandbox::wasi::fs::{self, Base, Entry};
use crate::sandbox::wasi::{Errno, Host, Result, addr, with_memory, write_bytes, write_u32, write_u64};

pub(super) fn fd_seek<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    offset: i64,
    whence: i32,
    newoffset: i32,
) -> i32 {
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

pub(super) fn fd_tell<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, offset: i32) -> i32 {
    with_memory(env, |h, mem| match h.fds.get(fd)? {
        Entry::File(file) => write_u64(mem, offset, fs::seek(file, 0, 1)?),
        Entry::ScratchFile(file) => write_u64(mem, offset, file.offset()),
        Entry::Dir { .. } | Entry::ScratchDir { .. } => Err(Errno::BADF),
        _ => Err(Errno::SPIPE),
    })
}

pub(super) fn fd_close<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32) -> i32 {
    with_memory(env, |h, _| {
        let closed = h.fds.close(fd)?;
        release(h, closed);
        Ok(())
    })
}

pub(super) fn fd_renumber<S: Stdio>(env: FunctionEnvMut<Host<S>>, from: i32, to: i32) -> i32 {
    with_memory(env, |h, _| {
        if let Some(replaced) = h.fds.renumber(from, to)? {
            release(h, replaced);
        }
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

pub(super) fn fd_sync<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32) -> i32 {
    with_memory(env, |h, _| match h.fds.get(fd)? {
        Entry::Stdout => h.io().flush().map_err(|_| Errno::PIPE),
        _ => Ok(()),
    })
}

pub(super) fn fd_advise<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, _offset: i64, _len: i64, _advice: i32) -> i32 {
    with_memory(env, |h, _| h.fds.get(fd).map(drop))
}

pub(super) fn fd_allocate<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, offset: i64, len: i64) -> i32 {
    with_memory(env, |h, _| match h.fds.get(fd)? {
        Entry::ScratchFile(file) => h.scratch.tree().allocate(file, offset as u64, len as u64),
        _ => Err(Errno::BADF),
    })
}

pub(super) fn fd_fdstat_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, buf: i32) -> i32 {
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
pub(super) fn fd_fdstat_set_flags<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, flags: i32) -> i32 {
    with_memory(env, |h, _| {
        if let Entry::ScratchFile(file) = h.fds.get(fd)? {
            file.set_fdflags(flags as u16);
        }
        Ok(())
    })
}

pub(super) fn fd_fdstat_set_rights<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    _base: i64,
    _inheriting: i64,
) -> i32 {
    with_memory(env, |h, _| h.fds.get(fd).map(drop))
}

pub(super) fn fd_filestat_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, buf: i32) -> i32 {
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

pub(super) fn fd_filestat_set_size<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, size: i64) -> i32 {
    with_memory(env, |h, _| match h.fds.get(fd)? {
        Entry::ScratchFile(file) => h.scratch.tree().set_size(file, size as u64),
        _ => Err(Errno::BADF),
    })
}

pub(super) fn fd_filestat_set_times<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    atim: i64,
    mtim: i64,
    flags: i32,
) -> i32 {
    with_memory(env, |h, _| {
        let node = match h.fds.get(fd)? {
            Entry::ScratchFile(file) => file.node(),
            &mut Entry::ScratchDir { node, .. } => node,
            _ => return Err(Errno::ROFS),
        };
        h.scratch.tree().set_times(node, atim as u64, mtim as u64, flags as u16)
    })
}

pub(super) fn fd_prestat_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, buf: i32) -> i32 {
    with_memory(env, |h, mem| {
        h.touched.preopens = true;
        let len = h.fds.preopen_name(fd)?.len() as u32;
        let mut out = [0u8; 8];
        out[4..].copy_from_slice(&len.to_le_bytes());
        write_bytes(mem, addr(buf), &out)
    })
}

pub(super) fn fd_prestat_dir_name<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, path: i32, len: i32) -> i32 {
    with_memory(env, |h, mem| {
        let name = h.fds.preopen_name(fd)?;
        if (len as u32 as usize) < name.len() {
            return Err(Errno::NAMETOOLONG);
        }
        write_bytes(mem, addr(path), name.as_bytes())
    })
}

pub(super) fn fd_readdir<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    buf: i32,
    len: i32,
    cookie: i64,
    used: i32,
) -> i32 {
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

// ---- sockets: a CGI program has none ----------------------------------------

fn not_a_socket<S: Stdio>(h: &mut Host<S>, fd: i32) -> Result<()> {
    h.fds.get(fd).and(Err(Errno::NOTSOCK))
}

pub(super) fn sock_accept<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, _flags: i32, _ret: i32) -> i32 {
    with_memory(env, |h, _| not_a_socket(h, fd))
}

pub(super) fn sock_recv<S: Stdio>(
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

pub(super) fn sock_send<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    fd: i32,
    _si: i32,
    _si_len: i32,
    _si_flags: i32,
    _so_len: i32,
) -> i32 {
    with_memory(env, |h, _| not_a_socket(h, fd))
}

pub(super) fn sock_shutdown<S: Stdio>(env: FunctionEnvMut<Host<S>>, fd: i32, _how: i32) -> i32 {
    with_memory(env, |h, _| not_a_socket(h, fd))
}
