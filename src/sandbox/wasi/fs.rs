//! The per-request descriptor table and read-only file access under the
//! mounted directories; the scratch directory's tree is in `scratch`.
//!
//! Every path is resolved by `cap-std` relative to a directory descriptor, so
//! neither `..` nor a symlink can lead outside a mount: cap-std refuses such a
//! path instead of following it.

use std::ffi::OsStr;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use cap_std::fs::{Dir, File, FileTypeExt, Metadata, MetadataExt, OpenOptions, OpenOptionsExt};

use super::abi::{
    Dirent, FDFLAG_APPEND, Filestat, OFLAG_CREAT, OFLAG_DIRECTORY, OFLAG_EXCL, OFLAG_TRUNC, dirents, filetype, rights,
};
use super::scratch::{self, Handle, NodeId, Opened};
use super::{Errno, Result};
use crate::sandbox::Mount;

/// Descriptors one request may hold open, preopens and stdio included.
const MAX_FDS: usize = 1024;

/// A mounted host directory, opened once at load and shared by all requests.
pub struct Preopen {
    guest: String,
    dir: Arc<Dir>,
}

impl Preopen {
    pub fn open(mount: &Mount) -> io::Result<Preopen> {
        let dir = Dir::open_ambient_dir(&mount.host, cap_std::ambient_authority())?;
        Ok(Preopen {
            guest: mount.guest.clone(),
            dir: Arc::new(dir),
        })
    }
}

pub enum Entry {
    Stdin,
    Stdout,
    Stderr,
    /// A directory; `preopen` indexes the mount it came from, if it is one.
    Dir {
        dir: Arc<Dir>,
        preopen: Option<usize>,
    },
    File(File),
    /// A directory of the scratch tree; `preopen` for the scratch
    /// directory's own preopen.
    ScratchDir {
        node: NodeId,
        preopen: bool,
    },
    /// A file of the scratch tree.
    ScratchFile(Handle),
}

impl From<Opened> for Entry {
    fn from(opened: Opened) -> Entry {
        match opened {
            Opened::Dir(node) => Entry::ScratchDir { node, preopen: false },
            Opened::File(handle) => Entry::ScratchFile(handle),
        }
    }
}

/// The directory a `path_*` call's path is relative to.
pub enum Base {
    Mount(Arc<Dir>),
    Scratch(NodeId),
}

pub struct FdTable {
    entries: Vec<Option<Entry>>,
    preopens: Arc<[Preopen]>,
}

impl FdTable {
    /// Stdio, then the mounts, then the scratch directory if there is one.
    pub fn new(preopens: Arc<[Preopen]>, scratch: bool) -> Self {
        let mut entries = Vec::with_capacity(4 + preopens.len());
        entries.extend([Some(Entry::Stdin), Some(Entry::Stdout), Some(Entry::Stderr)]);
        entries.extend(preopens.iter().enumerate().map(|(i, p)| {
            Some(Entry::Dir {
                dir: p.dir.clone(),
                preopen: Some(i),
            })
        }));
        if scratch {
            entries.push(Some(Entry::ScratchDir {
                node: scratch::ROOT,
                preopen: true,
            }));
        }
        FdTable { entries, preopens }
    }

    pub fn get(&mut self, fd: i32) -> Result<&mut Entry> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(Errno::BADF)
    }

    /// What the paths of a `path_*` call on `fd` are relative to.
    pub fn base(&mut self, fd: i32) -> Result<Base> {
        match self.get(fd)? {
            Entry::Dir { dir, .. } => Ok(Base::Mount(dir.clone())),
            &mut Entry::ScratchDir { node, .. } => Ok(Base::Scratch(node)),
            _ => Err(Errno::NOTDIR),
        }
    }

    /// The guest path of a preopened directory (`fd_prestat_get`).
    pub fn preopen_name(&mut self, fd: i32) -> Result<&str> {
        match self.get(fd)? {
            &mut Entry::Dir { preopen: Some(i), .. } => Ok(&self.preopens[i].guest),
            Entry::ScratchDir { preopen: true, .. } => Ok(scratch::GUEST_PATH),
            _ => Err(Errno::BADF),
        }
    }

    /// Frees `fd`; what it held is the caller's to release.
    pub fn close(&mut self, fd: i32) -> Result<Entry> {
        self.get(fd)?;
        Ok(self.entries[fd as usize].take().expect("checked by get"))
    }

    /// Moves `from` to `to`, and hands back what `to` held; onto itself, as
    /// `dup2`, nothing moves.
    pub fn renumber(&mut self, from: i32, to: i32) -> Result<Option<Entry>> {
        self.get(to)?;
        self.get(from)?;
        if from == to {
            return Ok(None);
        }
        let moved = self.entries[from as usize].take();
        Ok(std::mem::replace(&mut self.entries[to as usize], moved))
    }

    /// Puts what `open` opens at the lowest free descriptor. With none free
    /// (MFILE), `open` is not called, so nothing is created.
    pub fn insert_with(&mut self, open: impl FnOnce() -> Result<Entry>) -> Result<u32> {
        let slot = match self.entries.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if self.entries.len() < MAX_FDS => {
                self.entries.push(None);
                self.entries.len() - 1
            }
            None => return Err(Errno::MFILE),
        };
        self.entries[slot] = Some(open()?);
        Ok(slot as u32)
    }
}

/// `path_open` under a mount, read-only: anything that could create,
/// truncate or write is refused with EROFS before the host is asked.
pub fn open(dir: &Dir, path: &[u8], oflags: u16, rights_base: u64, fdflags: u16) -> Result<Entry> {
    if oflags & (OFLAG_CREAT | OFLAG_EXCL | OFLAG_TRUNC) != 0
        || rights_base & rights::WRITING != 0
        || fdflags & FDFLAG_APPEND != 0
    {
        return Err(Errno::ROFS);
    }
    let path = guest_path(path)?;
    if oflags & OFLAG_DIRECTORY != 0 {
        return Ok(Entry::Dir {
            dir: Arc::new(dir.open_dir(path).map_err(errno)?),
            preopen: None,
        });
    }
    // O_NONBLOCK: opening a FIFO must not hang the guest's thread.
    let file = dir
        .open_with(path, OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK))
        .map_err(errno)?;
    let meta = file.metadata().map_err(errno)?;
    if meta.is_dir() {
        Ok(Entry::Dir {
            dir: Arc::new(Dir::from_std_file(file.into_std())),
            preopen: None,
        })
    } else if meta.is_file() {
        Ok(Entry::File(file))
    } else {
        Err(Errno::ACCES)
    }
}

/// A guest path as a host path relative to a directory descriptor.
pub fn guest_path(path: &[u8]) -> Result<&Path> {
    if path.is_empty() {
        return Err(Errno::NOENT);
    }
    Ok(Path::new(OsStr::from_bytes(path)))
}

pub fn read_file(file: &mut File, buf: &mut [u8]) -> Result<usize> {
    file.read(buf).map_err(errno)
}

pub fn seek(file: &mut File, offset: i64, whence: u8) -> Result<u64> {
    let pos = match whence {
        0 => SeekFrom::Start(u64::try_from(offset).map_err(|_| Errno::INVAL)?),
        1 => SeekFrom::Current(offset),
        2 => SeekFrom::End(offset),
        _ => return Err(Errno::INVAL),
    };
    file.seek(pos).map_err(errno)
}

/// The `filestat` of a host file.
pub fn filestat(meta: &Metadata) -> Filestat {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        filetype::DIRECTORY
    } else if ft.is_file() {
        filetype::REGULAR_FILE
    } else if ft.is_symlink() {
        filetype::SYMBOLIC_LINK
    } else if ft.is_block_device() {
        filetype::BLOCK_DEVICE
    } else if ft.is_char_device() {
        filetype::CHARACTER_DEVICE
    } else if ft.is_socket() {
        filetype::SOCKET_STREAM
    } else {
        filetype::UNKNOWN
    };
    let nanos = |s: i64, ns: i64| u64::try_from(i128::from(s) * 1_000_000_000 + i128::from(ns)).unwrap_or(0);
    Filestat {
        dev: meta.dev(),
        ino: meta.ino(),
        filetype: kind,
        nlink: meta.nlink(),
        size: meta.len(),
        atim: nanos(meta.atime(), meta.atime_nsec()),
        mtim: nanos(meta.mtime(), meta.mtime_nsec()),
        ctim: nanos(meta.ctime(), meta.ctime_nsec()),
    }
}

/// A host directory's entries from entry `cookie` on, as [`dirents`].
pub fn readdir(dir: &Dir, cookie: u64, len: usize) -> Result<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    let dots = [".", ".."].map(|n| Ok((n.into(), filetype::DIRECTORY)));
    let entries = dir.entries().map_err(errno)?.map(|entry| {
        let entry = entry.map_err(errno)?;
        let kind = match entry.file_type() {
            Ok(t) if t.is_dir() => filetype::DIRECTORY,
            Ok(t) if t.is_file() => filetype::REGULAR_FILE,
            Ok(t) if t.is_symlink() => filetype::SYMBOLIC_LINK,
            _ => filetype::UNKNOWN,
        };
        Ok((entry.file_name(), kind))
    });
    let numbered = (1u64..)
        .zip(dots.into_iter().chain(entries))
        .skip(cookie.try_into().unwrap_or(usize::MAX))
        .map(|(next, entry)| {
            let (name, filetype): (std::ffi::OsString, u8) = entry?;
            Ok(Dirent {
                next,
                ino: 0,
                filetype,
                name: name.into_vec(),
            })
        });
    dirents(numbered, len)
}

/// The WASI errno for a host error.
pub fn errno(e: io::Error) -> Errno {
    use nix::errno::Errno as E;
    if let Some(code) = e.raw_os_error() {
        return match E::from_raw(code) {
            E::ENOENT => Errno::NOENT,
            E::EACCES => Errno::ACCES,
            E::EPERM => Errno::PERM,
            E::ENOTDIR => Errno::NOTDIR,
            E::EISDIR => Errno::ISDIR,
            E::ELOOP => Errno::LOOP,
            E::ENAMETOOLONG => Errno::NAMETOOLONG,
            E::EEXIST => Errno::EXIST,
            E::EINVAL => Errno::INVAL,
            E::EROFS => Errno::ROFS,
            E::EBADF => Errno::BADF,
            E::ENOTEMPTY => Errno::NOTEMPTY,
            E::EMFILE | E::ENFILE => Errno::MFILE,
            E::ENOMEM => Errno::NOMEM,
            E::EAGAIN => Errno::AGAIN,
            E::ESPIPE => Errno::SPIPE,
            E::EOVERFLOW => Errno::OVERFLOW,
            _ => Errno::IO,
        };
    }
    match e.kind() {
        io::ErrorKind::NotFound => Errno::NOENT,
        // cap-std's answer to a path that would leave the mount.
        io::ErrorKind::PermissionDenied => Errno::PERM,
        io::ErrorKind::InvalidInput => Errno::INVAL,
        _ => Errno::IO,
    }
}
