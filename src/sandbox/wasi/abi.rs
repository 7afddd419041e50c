//! The WASI preview1 types and flags the descriptor calls share, in their
//! `typenames.witx` layouts (as in wasi-libc's `wasi/api.h`): used by the
//! mounted directories (`fs`) and the scratch tree alike.

use super::Result;

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
