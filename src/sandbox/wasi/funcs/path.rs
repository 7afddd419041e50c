//! The `path_*` calls: under a mount read-only, in the scratch tree
//! whatever it allows (typenames.witx: `oflags`, `lookupflags`,
//! `fstflags`).

use wasmer::{FunctionEnvMut, MemoryView};

use crate::sandbox::Stdio;
use crate::sandbox::wasi::abi;
use crate::sandbox::wasi::fs::{self, Base};
use crate::sandbox::wasi::scratch::{NodeId, Tree};
use crate::sandbox::wasi::{Errno, Host, Result, addr, with_memory, write_bytes, write_u32};

/// A guest string argument (a path), as bytes.
fn read_path(mem: &MemoryView, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let len = len as u32 as usize;
    if len > 4096 {
        return Err(Errno::NAMETOOLONG);
    }
    let mut buf = vec![0u8; len];
    mem.read(addr(ptr), &mut buf).map_err(|_| Errno::FAULT)?;
    Ok(buf)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn path_open<S: Stdio>(
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

pub(super) fn path_filestat_get<S: Stdio>(
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
                let meta = if flags & abi::LOOKUP_SYMLINK_FOLLOW != 0 {
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

pub(super) fn path_readlink<S: Stdio>(
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

pub(super) fn path_create_directory<S: Stdio>(env: FunctionEnvMut<Host<S>>, dirfd: i32, path: i32, len: i32) -> i32 {
    change(env, dirfd, path, len, Tree::mkdir)
}

pub(super) fn path_remove_directory<S: Stdio>(env: FunctionEnvMut<Host<S>>, dirfd: i32, path: i32, len: i32) -> i32 {
    change(env, dirfd, path, len, Tree::rmdir)
}

pub(super) fn path_unlink_file<S: Stdio>(env: FunctionEnvMut<Host<S>>, dirfd: i32, path: i32, len: i32) -> i32 {
    change(env, dirfd, path, len, Tree::unlink)
}

/// No symlinks to follow or not: `flags` changes nothing.
#[allow(clippy::too_many_arguments)]
pub(super) fn path_filestat_set_times<S: Stdio>(
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
pub(super) fn path_link<S: Stdio>(
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
pub(super) fn path_rename<S: Stdio>(
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

pub(super) fn path_symlink<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    _old: i32,
    _old_len: i32,
    dirfd: i32,
    _new: i32,
    _new_len: i32,
) -> i32 {
    with_memory(env, |h, _| no_links(h, dirfd))
}
