//! The per-request descriptor table and read-only file access under the
//! mounted directories.
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

use super::{Errno, Result};
use crate::sandbox::Mount;

/// Descriptors one request may hold open, preopens and stdio included.
const MAX_FDS: usize = 1024;

/// `filetype` (typenames.witx).
pub mod filetype {
    pub const UNKNOWN: u8 = 0;
    pub const BLOCK_DEVICE: u8 = 1;
    pub const CHARACTER_DEVICE: u8 = 2;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
    pub const SOCKET_STREAM: u8 = 6;
    pub const SYMBOLIC_LINK: u8 = 7;
}

/// `rights` bits (typenames.witx) reported by `fd_fdstat_get` and checked by
/// `path_open`.
pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_READLINK: u64 = 1 << 15;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;

    pub const FILE: u64 = FD_READ | FD_SEEK | FD_TELL | FD_ADVISE | FD_SYNC | FD_FILESTAT_GET | POLL_FD_READWRITE;
    pub const DIR: u64 = PATH_OPEN | FD_READDIR | PATH_READLINK | PATH_FILESTAT_GET | FD_FILESTAT_GET;
    /// Any of these asks for a descriptor that could change a file.
    pub const WRITING: u64 = FD_DATASYNC | FD_WRITE | FD_ALLOCATE | FD_FILESTAT_SET_SIZE;
}

/// `oflags` and `fdflags` bits that `path_open` looks at.
pub const OFLAG_CREAT: u16 = 1;
pub const OFLAG_DIRECTORY: u16 = 2;
pub const OFLAG_EXCL: u16 = 4;
pub const OFLAG_TRUNC: u16 = 8;
pub const FDFLAG_APPEND: u16 = 1;
pub const LOOKUP_SYMLINK_FOLLOW: i32 = 1;

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
}

pub struct FdTable {
    entries: Vec<Option<Entry>>,
    preopens: Arc<[Preopen]>,
}

impl FdTable {
    pub fn new(preopens: Arc<[Preopen]>) -> Self {
        let mut entries = Vec::with_capacity(3 + preopens.len());
        entries.extend([Some(Entry::Stdin), Some(Entry::Stdout), Some(Entry::Stderr)]);
        entries.extend(preopens.iter().enumerate().map(|(i, p)| {
            Some(Entry::Dir {
                dir: p.dir.clone(),
                preopen: Some(i),
            })
        }));
        FdTable { entries, preopens }
    }

    pub fn get(&mut self, fd: i32) -> Result<&mut Entry> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(Errno::BADF)
    }

    pub fn dir(&mut self, fd: i32) -> Result<Arc<Dir>> {
        match self.get(fd)? {
            Entry::Dir { dir, .. } => Ok(dir.clone()),
            _ => Err(Errno::NOTDIR),
        }
    }

    /// The guest path of a preopened directory (`fd_prestat_get`).
    pub fn preopen_name(&mut self, fd: i32) -> Result<&str> {
        match self.get(fd)? {
            &mut Entry::Dir { preopen: Some(i), .. } => Ok(&self.preopens[i].guest),
            _ => Err(Errno::BADF),
        }
    }

    pub fn close(&mut self, fd: i32) -> Result<()> {
        self.get(fd)?;
        self.entries[fd as usize] = None;
        Ok(())
    }

    pub fn renumber(&mut self, from: i32, to: i32) -> Result<()> {
        self.get(to)?;
        self.get(from)?;
        self.entries[to as usize] = self.entries[from as usize].take();
        Ok(())
    }

    fn insert(&mut self, entry: Entry) -> Result<u32> {
        let slot = match self.entries.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if self.entries.len() < MAX_FDS => {
                self.entries.push(None);
                self.entries.len() - 1
            }
            None => return Err(Errno::MFILE),
        };
        self.entries[slot] = Some(entry);
        Ok(slot as u32)
    }

    /// `path_open`, read-only: anything that could create, truncate or write
    /// is refused with EROFS before the host is asked.
    pub fn open(&mut self, dirfd: i32, path: &[u8], oflags: u16, rights_base: u64, fdflags: u16) -> Result<u32> {
        let dir = self.dir(dirfd)?;
        if oflags & (OFLAG_CREAT | OFLAG_EXCL | OFLAG_TRUNC) != 0
            || rights_base & rights::WRITING != 0
            || fdflags & FDFLAG_APPEND != 0
        {
            return Err(Errno::ROFS);
        }
        let path = guest_path(path)?;
        let entry = if oflags & OFLAG_DIRECTORY != 0 {
            Entry::Dir {
                dir: Arc::new(dir.open_dir(path).map_err(errno)?),
                preopen: None,
            }
        } else {
            // O_NONBLOCK: opening a FIFO must not hang the guest's thread.
            let file = dir
                .open_with(path, OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK))
                .map_err(errno)?;
            let meta = file.metadata().map_err(errno)?;
            if meta.is_dir() {
                Entry::Dir {
                    dir: Arc::new(Dir::from_std_file(file.into_std())),
                    preopen: None,
                }
            } else if meta.is_file() {
                Entry::File(file)
            } else {
                return Err(Errno::ACCES);
            }
        };
        self.insert(entry)
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

/// The 64-byte `filestat` of `meta`.
pub fn filestat(meta: &Metadata) -> [u8; 64] {
    let mut out = [0u8; 64];
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
    out[0..8].copy_from_slice(&meta.dev().to_le_bytes());
    out[8..16].copy_from_slice(&meta.ino().to_le_bytes());
    out[16] = kind;
    out[24..32].copy_from_slice(&meta.nlink().to_le_bytes());
    out[32..40].copy_from_slice(&meta.len().to_le_bytes());
    out[40..48].copy_from_slice(&nanos(meta.atime(), meta.atime_nsec()).to_le_bytes());
    out[48..56].copy_from_slice(&nanos(meta.mtime(), meta.mtime_nsec()).to_le_bytes());
    out[56..64].copy_from_slice(&nanos(meta.ctime(), meta.ctime_nsec()).to_le_bytes());
    out
}

/// `fd_readdir`'s buffer: `dirent` headers and names from entry `cookie` on,
/// cut at `len` bytes as WASI allows (the guest retries with a larger buffer).
pub fn readdir(dir: &Dir, cookie: u64, len: usize) -> Result<Vec<u8>> {
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
    let mut out = Vec::new();
    for (index, entry) in (1u64..)
        .zip(dots.into_iter().chain(entries))
        .skip(cookie.try_into().unwrap_or(usize::MAX))
    {
        let (name, kind): (std::ffi::OsString, u8) = entry?;
        let name = name.as_bytes();
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&[kind, 0, 0, 0]);
        out.extend_from_slice(name);
        if out.len() >= len {
            break;
        }
    }
    out.truncate(len);
    Ok(out)
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
