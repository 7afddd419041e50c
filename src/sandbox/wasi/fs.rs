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

use super::scratch::{self, Handle, NodeId, Opened};
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
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    pub const PATH_CREATE_FILE: u64 = 1 << 10;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_READLINK: u64 = 1 << 15;
    pub const PATH_RENAME_SOURCE: u64 = 1 << 16;
    pub const PATH_RENAME_TARGET: u64 = 1 << 17;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    pub const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    pub const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
    pub const PATH_UNLINK_FILE: u64 = 1 << 26;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;

    pub const FILE: u64 = FD_READ | FD_SEEK | FD_TELL | FD_ADVISE | FD_SYNC | FD_FILESTAT_GET | POLL_FD_READWRITE;
    pub const DIR: u64 = PATH_OPEN | FD_READDIR | PATH_READLINK | PATH_FILESTAT_GET | FD_FILESTAT_GET;
    /// Any of these asks for a descriptor that could change a file.
    pub const WRITING: u64 = FD_DATASYNC | FD_WRITE | FD_ALLOCATE | FD_FILESTAT_SET_SIZE;
    /// A directory of the scratch tree: a mount's rights and those that
    /// change what it holds.
    pub const SCRATCH_DIR: u64 = DIR
        | PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_FILESTAT_SET_SIZE
        | PATH_FILESTAT_SET_TIMES
        | FD_FILESTAT_SET_TIMES
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE;
    /// A file of the scratch tree open for reading and writing. wasi-libc's
    /// `open` asks for no more than a directory's inheriting rights: these
    /// are what the scratch directories report.
    pub const SCRATCH_FILE: u64 = FILE | WRITING | FD_FDSTAT_SET_FLAGS | FD_FILESTAT_SET_TIMES;
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

/// `filestat` (typenames.witx); times in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filestat {
    pub dev: u64,
    pub ino: u64,
    pub filetype: u8,
    pub nlink: u64,
    pub size: u64,
    pub atim: u64,
    pub mtim: u64,
    pub ctim: u64,
}

impl Filestat {
    /// Its 64-byte layout.
    pub fn to_bytes(self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[0..8].copy_from_slice(&self.dev.to_le_bytes());
        out[8..16].copy_from_slice(&self.ino.to_le_bytes());
        out[16] = self.filetype;
        out[24..32].copy_from_slice(&self.nlink.to_le_bytes());
        out[32..40].copy_from_slice(&self.size.to_le_bytes());
        out[40..48].copy_from_slice(&self.atim.to_le_bytes());
        out[48..56].copy_from_slice(&self.mtim.to_le_bytes());
        out[56..64].copy_from_slice(&self.ctim.to_le_bytes());
        out
    }
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

/// A directory entry as `fd_readdir` gives it: a `dirent` (typenames.witx)
/// and its name.
pub struct Dirent<N> {
    /// The cookie of the entry after this one.
    pub next: u64,
    /// 0 when unknown: wasi-libc then asks `path_filestat_get`.
    pub ino: u64,
    pub filetype: u8,
    pub name: N,
}

/// `fd_readdir`'s buffer: `dirent` headers and names, cut at `len` bytes as
/// WASI allows (the guest retries with a larger buffer).
pub fn dirents<N: AsRef<[u8]>>(entries: impl Iterator<Item = Result<Dirent<N>>>, len: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.name.as_ref();
        out.extend_from_slice(&entry.next.to_le_bytes());
        out.extend_from_slice(&entry.ino.to_le_bytes());
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&[entry.filetype, 0, 0, 0]);
        out.extend_from_slice(name);
        if out.len() >= len {
            break;
        }
    }
    out.truncate(len);
    Ok(out)
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
