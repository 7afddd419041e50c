//! The request's scratch directory: a private, in-memory tree that a guest
//! sees, writable, as the preopened directory `/tmp` ([`GUEST_PATH`]), for
//! the temporary files CGI programs make (uploads spooled by CGI.pm or
//! Python's `cgi`, `mkstemp` in C).
//!
//! - It belongs to the request's `Host`, made at the guest's first use of it
//!   (a request that never touches `/tmp` allocates nothing for it) and
//!   dropped with the instance: every request starts with it empty, and no
//!   other request and no host path can see it.
//! - It holds at most its budget (the `scratch` limit) of file contents, plus
//!   [`ENTRY_COST`] per file or directory and the bytes of each name, so that
//!   a million empty files cannot fill the host's memory either. A call that
//!   would go over answers `NOSPC` and does nothing. File contents grow by
//!   doubling, so the host holds less than twice the budget.
//! - Paths are resolved in the tree only. An absolute path, or `..` above
//!   the root, answers `PERM` as under a mount (cap-std's answer there): no
//!   path leads out of it. There are no symlinks and no hard links; making
//!   either answers `PERM`, as POSIX has it on a file system without them.
//! - A file unlinked while open lives on until its last descriptor closes,
//!   as in POSIX (Python's `TemporaryFile` unlinks at once). A removed
//!   directory is gone at once: a descriptor still open on it finds nothing
//!   (`NOENT`).
//! - `fd_readdir` cookies are positions in a directory's creation order, not
//!   indexes, so removing entries while reading it (`rm -r`) skips none of
//!   the others.
//! - Times come from the realtime clock at each change; reads leave the
//!   access time alone (as `noatime` does).
//!
//! Layouts and error numbers are WASI preview1's (`typenames.witx`:
//! `filestat`, `dirent`, `fstflags`, `errno`); where POSIX leaves the error
//! open, it is the one Linux gives on tmpfs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::fs::{Dirent, FDFLAG_APPEND, Filestat, OFLAG_CREAT, OFLAG_DIRECTORY, OFLAG_EXCL, OFLAG_TRUNC};
use super::fs::{dirents, filetype, rights};
use super::{Errno, Result};

/// Where the guest sees the scratch directory.
pub const GUEST_PATH: &str = "/tmp";

/// What a file or directory costs against the budget besides its contents
/// and name: more than the host keeps for it (its node, its places in its
/// directory's two indexes, allocator overhead).
pub const ENTRY_COST: u64 = 256;

/// Longest name of an entry, as `NAME_MAX` on Linux.
const NAME_MAX: usize = 255;

/// `fstflags` (typenames.witx): which times `*_filestat_set_times` sets.
const FST_ATIM: u16 = 1;
const FST_ATIM_NOW: u16 = 2;
const FST_MTIM: u16 = 4;
const FST_MTIM_NOW: u16 = 8;

/// A file or directory of the tree (its inode number). Never reused within
/// a request, so a descriptor on a removed directory cannot reach another.
pub type NodeId = u64;

/// The scratch directory itself.
pub const ROOT: NodeId = 1;

/// The first position in a directory's creation order: `.` and `..` are
/// listed at 0 and 1.
const FIRST_POSITION: u64 = 2;

/// A request's scratch directory, made at first use.
pub struct Scratch {
    budget: u64,
    tree: Option<Tree>,
}

impl Scratch {
    /// A budget of 0 means no scratch directory: the guest has no preopen to
    /// reach it, so [`Scratch::tree`] is never called.
    pub fn new(budget: u64) -> Scratch {
        Scratch { budget, tree: None }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    pub fn tree(&mut self) -> &mut Tree {
        let budget = self.budget;
        self.tree.get_or_insert_with(|| Tree::new(budget))
    }
}

pub struct Tree {
    nodes: HashMap<NodeId, Node>,
    next_id: NodeId,
    budget: Budget,
}

struct Budget {
    used: u64,
    limit: u64,
}

impl Budget {
    fn charge(&mut self, bytes: u64) -> Result<()> {
        self.fits(bytes)?;
        self.used += bytes;
        Ok(())
    }

    /// Whether `bytes` more would fit.
    fn fits(&self, bytes: u64) -> Result<()> {
        match self.used.checked_add(bytes) {
            Some(used) if used <= self.limit => Ok(()),
            _ => Err(Errno::NOSPC),
        }
    }

    fn refund(&mut self, bytes: u64) {
        debug_assert!(bytes <= self.used, "refunding {bytes} of {}", self.used);
        self.used = self.used.saturating_sub(bytes);
    }
}

struct Node {
    kind: Kind,
    atim: u64,
    mtim: u64,
    ctim: u64,
}

enum Kind {
    File(File),
    Dir(Dir),
}

#[derive(Default)]
struct File {
    data: Vec<u8>,
    /// Whether a directory names it (it has no other links).
    unlinked: bool,
    /// Descriptors open on it.
    open: u32,
}

struct Dir {
    parent: NodeId,
    /// Entries by name, with their node and position.
    by_name: BTreeMap<Arc<[u8]>, (NodeId, u64)>,
    /// Entries by position in creation order, which readdir cookies follow.
    by_position: BTreeMap<u64, (Arc<[u8]>, NodeId)>,
    next_position: u64,
}

impl Dir {
    fn new(parent: NodeId) -> Dir {
        Dir {
            parent,
            by_name: BTreeMap::new(),
            by_position: BTreeMap::new(),
            next_position: FIRST_POSITION,
        }
    }

    fn get(&self, name: &[u8]) -> Option<NodeId> {
        self.by_name.get(name).map(|&(node, _)| node)
    }

    fn insert(&mut self, name: &[u8], node: NodeId) {
        let name: Arc<[u8]> = name.into();
        let position = self.next_position;
        self.next_position += 1;
        self.by_position.insert(position, (name.clone(), node));
        self.by_name.insert(name, (node, position));
    }

    fn remove(&mut self, name: &[u8]) {
        if let Some((_, position)) = self.by_name.remove(name) {
            self.by_position.remove(&position);
        }
    }
}

/// What `path_open` opened.
pub enum Opened {
    Dir(NodeId),
    File(Handle),
}

/// An open file: what its descriptor holds.
#[derive(Debug)]
pub struct Handle {
    node: NodeId,
    offset: u64,
    read: bool,
    write: bool,
    append: bool,
}

impl Handle {
    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its `rights`, as `fd_fdstat_get` reports them.
    pub fn rights(&self) -> u64 {
        let mut rights = rights::SCRATCH_FILE;
        if !self.read {
            rights &= !rights::FD_READ;
        }
        if !self.write {
            rights &= !rights::WRITING;
        }
        rights
    }

    /// Its `fdflags`: append mode or none.
    pub fn fdflags(&self) -> u16 {
        if self.append { FDFLAG_APPEND } else { 0 }
    }

    /// `fd_fdstat_set_flags`: append mode is the one flag that changes
    /// anything here.
    pub fn set_fdflags(&mut self, fdflags: u16) {
        self.append = fdflags & FDFLAG_APPEND != 0;
    }
}

/// The realtime clock in nanoseconds since the epoch, as `clock_time_get`
/// gives it to the guest.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `name` as the name of a new entry; `dots` is the error for `.` and `..`.
fn new_name(name: &[u8], dots: Errno) -> Result<&[u8]> {
    match name {
        b"." | b".." => Err(dots),
        n if n.len() > NAME_MAX => Err(Errno::NAMETOOLONG),
        n => Ok(n),
    }
}

fn bytes(len: usize) -> u64 {
    len as u64
}

impl Tree {
    fn new(limit: u64) -> Tree {
        let now = now();
        let root = Node {
            kind: Kind::Dir(Dir::new(ROOT)),
            atim: now,
            mtim: now,
            ctim: now,
        };
        Tree {
            nodes: HashMap::from([(ROOT, root)]),
            next_id: ROOT + 1,
            // The root is the preopen itself: it costs nothing.
            budget: Budget { used: 0, limit },
        }
    }

    fn node(&self, id: NodeId) -> Result<&Node> {
        self.nodes.get(&id).ok_or(Errno::NOENT)
    }

    fn node_mut(&mut self, id: NodeId) -> Result<&mut Node> {
        self.nodes.get_mut(&id).ok_or(Errno::NOENT)
    }

    fn dir(&self, id: NodeId) -> Result<&Dir> {
        match &self.node(id)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) => Err(Errno::NOTDIR),
        }
    }

    fn dir_mut(&mut self, id: NodeId) -> Result<&mut Dir> {
        match &mut self.node_mut(id)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) => Err(Errno::NOTDIR),
        }
    }

    fn contents(&self, id: NodeId) -> Result<&[u8]> {
        match &self.node(id)?.kind {
            Kind::File(file) => Ok(&file.data),
            Kind::Dir(_) => Err(Errno::ISDIR),
        }
    }

    // ---- paths ---------------------------------------------------------------

    /// The directory that holds the last component of `path` (relative to
    /// directory `dir`), and that component, which may be `.` or `..`.
    fn parent_of<'p>(&self, dir: NodeId, path: &'p [u8]) -> Result<(NodeId, &'p [u8])> {
        match path.first() {
            None => return Err(Errno::NOENT),
            Some(b'/') => return Err(Errno::PERM),
            Some(_) if path.contains(&0) => return Err(Errno::INVAL),
            Some(_) => {}
        }
        let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        let trimmed = &path[..end];
        let (head, last) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (&[][..], trimmed),
        };
        let mut at = dir;
        self.dir(at)?;
        for name in head.split(|&b| b == b'/') {
            at = self.step(at, name)?;
            self.dir(at)?;
        }
        Ok((at, last))
    }

    /// What `name` names in directory `dir`.
    fn step(&self, dir: NodeId, name: &[u8]) -> Result<NodeId> {
        let entries = self.dir(dir)?;
        match name {
            b"" | b"." => Ok(dir),
            // It would leave the scratch directory.
            b".." if dir == ROOT => Err(Errno::PERM),
            b".." => Ok(entries.parent),
            n if n.len() > NAME_MAX => Err(Errno::NAMETOOLONG),
            n => entries.get(n).ok_or(Errno::NOENT),
        }
    }

    /// What `path` names, relative to directory `dir`.
    pub fn lookup(&self, dir: NodeId, path: &[u8]) -> Result<NodeId> {
        let (parent, last) = self.parent_of(dir, path)?;
        let node = self.step(parent, last)?;
        if path.ends_with(b"/") {
            self.dir(node)?;
        }
        Ok(node)
    }

    /// A new file or directory, `name` in `dir`.
    fn create(&mut self, dir: NodeId, name: &[u8], kind: Kind) -> Result<NodeId> {
        self.budget.charge(ENTRY_COST + bytes(name.len()))?;
        let now = now();
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(
            id,
            Node {
                kind,
                atim: now,
                mtim: now,
                ctim: now,
            },
        );
        self.dir_mut(dir)?.insert(name, id);
        self.changed(dir, now);
        Ok(id)
    }

    /// Sets the modification and change times of `id`.
    fn changed(&mut self, id: NodeId, now: u64) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.mtim = now;
            node.ctim = now;
        }
    }

    /// Takes `name`, which names `id`, out of `dir`, refunding the name. A
    /// directory (only empty ones lose their name) goes at once; a file
    /// once no descriptor holds it.
    fn unlink_entry(&mut self, dir: NodeId, name: &[u8], id: NodeId, now: u64) -> Result<()> {
        self.dir_mut(dir)?.remove(name);
        self.budget.refund(bytes(name.len()));
        self.changed(dir, now);
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        node.ctim = now;
        let size = match &mut node.kind {
            Kind::File(file) if file.open > 0 => {
                file.unlinked = true;
                return Ok(());
            }
            Kind::File(file) => file.data.len(),
            Kind::Dir(_) => 0,
        };
        self.forget(id, size);
        Ok(())
    }

    /// Drops node `id`, refunding it and its `size` bytes of contents.
    fn forget(&mut self, id: NodeId, size: usize) {
        self.nodes.remove(&id);
        self.budget.refund(ENTRY_COST + bytes(size));
    }

    // ---- path calls ------------------------------------------------------------

    /// `path_open`: `oflags` CREAT, EXCL, TRUNC and DIRECTORY; the rights
    /// asked for decide whether the file may be read and written.
    pub fn open(&mut self, dir: NodeId, path: &[u8], oflags: u16, rights_base: u64, fdflags: u16) -> Result<Opened> {
        let (parent, last) = self.parent_of(dir, path)?;
        let wants_dir = oflags & OFLAG_DIRECTORY != 0 || path.ends_with(b"/");
        let node = match self.step(parent, last) {
            Ok(_) if oflags & OFLAG_CREAT != 0 && oflags & OFLAG_EXCL != 0 => return Err(Errno::EXIST),
            Ok(node) => node,
            Err(Errno::NOENT) if oflags & OFLAG_CREAT != 0 => {
                if wants_dir {
                    return Err(Errno::ISDIR);
                }
                let name = new_name(last, Errno::EXIST)?;
                self.create(parent, name, Kind::File(File::default()))?
            }
            Err(e) => return Err(e),
        };
        let write = rights_base & rights::FD_WRITE != 0;
        let Tree { nodes, budget, .. } = self;
        let entry = nodes.get_mut(&node).ok_or(Errno::NOENT)?;
        match &mut entry.kind {
            Kind::Dir(_) if write || oflags & OFLAG_TRUNC != 0 => Err(Errno::ISDIR),
            Kind::Dir(_) => Ok(Opened::Dir(node)),
            Kind::File(_) if wants_dir => Err(Errno::NOTDIR),
            Kind::File(file) => {
                if oflags & OFLAG_TRUNC != 0 && !file.data.is_empty() {
                    budget.refund(bytes(file.data.len()));
                    file.data = Vec::new();
                    let now = now();
                    (entry.mtim, entry.ctim) = (now, now);
                }
                file.open += 1;
                Ok(Opened::File(Handle {
                    node,
                    offset: 0,
                    read: rights_base & rights::FD_READ != 0,
                    write,
                    append: fdflags & FDFLAG_APPEND != 0,
                }))
            }
        }
    }

    /// `path_create_directory`.
    pub fn mkdir(&mut self, dir: NodeId, path: &[u8]) -> Result<()> {
        let (parent, last) = self.parent_of(dir, path)?;
        let name = new_name(last, Errno::EXIST)?;
        if self.dir(parent)?.get(name).is_some() {
            return Err(Errno::EXIST);
        }
        self.create(parent, name, Kind::Dir(Dir::new(parent))).map(drop)
    }

    /// `path_unlink_file`: the file is freed once no descriptor holds it.
    pub fn unlink(&mut self, dir: NodeId, path: &[u8]) -> Result<()> {
        let (parent, last) = self.parent_of(dir, path)?;
        let node = self.step(parent, last)?;
        match &self.node(node)?.kind {
            Kind::Dir(_) => return Err(Errno::ISDIR),
            Kind::File(_) if path.ends_with(b"/") => return Err(Errno::NOTDIR),
            Kind::File(_) => {}
        }
        self.unlink_entry(parent, last, node, now())
    }

    /// `path_remove_directory`: an empty directory.
    pub fn rmdir(&mut self, dir: NodeId, path: &[u8]) -> Result<()> {
        let (parent, last) = self.parent_of(dir, path)?;
        match last {
            b"." => return Err(Errno::INVAL),
            b".." => return Err(Errno::NOTEMPTY),
            _ => {}
        }
        let node = self.step(parent, last)?;
        if !self.dir(node)?.by_name.is_empty() {
            return Err(Errno::NOTEMPTY);
        }
        self.unlink_entry(parent, last, node, now())
    }

    /// `path_rename`, within the tree, replacing what `new` names if POSIX
    /// allows it (a file by a file, an empty directory by a directory).
    pub fn rename(&mut self, old_dir: NodeId, old: &[u8], new_dir: NodeId, new: &[u8]) -> Result<()> {
        let (from, old_name) = self.parent_of(old_dir, old)?;
        let (to, new_name) = self.parent_of(new_dir, new)?;
        if [old_name, new_name].iter().any(|n| matches!(*n, b"." | b"..")) {
            return Err(Errno::INVAL);
        }
        let node = self.step(from, old_name)?;
        let target = match self.step(to, new_name) {
            Ok(target) => Some(target),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(e),
        };
        if target == Some(node) {
            return Ok(());
        }
        let is_dir = matches!(self.node(node)?.kind, Kind::Dir(_));
        if !is_dir && (old.ends_with(b"/") || new.ends_with(b"/")) {
            return Err(Errno::NOTDIR);
        }
        match (is_dir, target.map(|t| self.dir(t))) {
            (true, Some(Err(_))) => return Err(Errno::NOTDIR),
            (true, Some(Ok(d))) if !d.by_name.is_empty() => return Err(Errno::NOTEMPTY),
            (false, Some(Ok(_))) => return Err(Errno::ISDIR),
            _ => {}
        }
        // A directory cannot move into itself.
        if is_dir {
            let mut at = to;
            while at != ROOT {
                if at == node {
                    return Err(Errno::INVAL);
                }
                at = self.dir(at)?.parent;
            }
        }
        // The new name costs nothing more if a replaced entry paid for it;
        // checked first, so that nothing is done if it does not fit.
        self.budget
            .fits(if target.is_some() { 0 } else { bytes(new_name.len()) })?;
        let now = now();
        if let Some(target) = target {
            self.unlink_entry(to, new_name, target, now)?;
        }
        self.dir_mut(from)?.remove(old_name);
        self.budget.refund(bytes(old_name.len()));
        self.changed(from, now);
        self.budget.charge(bytes(new_name.len()))?;
        self.dir_mut(to)?.insert(new_name, node);
        self.changed(to, now);
        let entry = self.node_mut(node)?;
        entry.ctim = now;
        if let Kind::Dir(moved) = &mut entry.kind {
            moved.parent = to;
        }
        Ok(())
    }

    /// `filestat` of `id`.
    pub fn stat(&self, id: NodeId) -> Result<Filestat> {
        let node = self.node(id)?;
        let (filetype, nlink, size) = match &node.kind {
            Kind::File(file) => (
                filetype::REGULAR_FILE,
                u64::from(!file.unlinked),
                bytes(file.data.len()),
            ),
            Kind::Dir(_) => (filetype::DIRECTORY, 1, 0),
        };
        Ok(Filestat {
            dev: 0,
            ino: id,
            filetype,
            nlink,
            size,
            atim: node.atim,
            mtim: node.mtim,
            ctim: node.ctim,
        })
    }

    /// `*_filestat_set_times`: each time given, or now, per `fstflags`.
    pub fn set_times(&mut self, id: NodeId, atim: u64, mtim: u64, fstflags: u16) -> Result<()> {
        if fstflags & (FST_ATIM | FST_ATIM_NOW) == FST_ATIM | FST_ATIM_NOW
            || fstflags & (FST_MTIM | FST_MTIM_NOW) == FST_MTIM | FST_MTIM_NOW
        {
            return Err(Errno::INVAL);
        }
        let now = now();
        let node = self.node_mut(id)?;
        let pick = |given, flag, now_flag, current| match fstflags {
            f if f & flag != 0 => given,
            f if f & now_flag != 0 => now,
            _ => current,
        };
        node.atim = pick(atim, FST_ATIM, FST_ATIM_NOW, node.atim);
        node.mtim = pick(mtim, FST_MTIM, FST_MTIM_NOW, node.mtim);
        node.ctim = now;
        Ok(())
    }

    /// `fd_readdir` of directory `id` from entry `cookie` on: `.`, `..`, then
    /// the entries in creation order.
    pub fn readdir(&self, id: NodeId, cookie: u64, len: usize) -> Result<Vec<u8>> {
        let dir = self.dir(id)?;
        let dots = [(&b"."[..], id), (&b".."[..], dir.parent)]
            .into_iter()
            .zip(1..)
            .skip(usize::try_from(cookie).unwrap_or(usize::MAX))
            .map(|((name, ino), next)| {
                Ok(Dirent {
                    next,
                    ino,
                    filetype: filetype::DIRECTORY,
                    name,
                })
            });
        let entries = dir
            .by_position
            .range(cookie.max(FIRST_POSITION)..)
            .map(|(&position, (name, node))| {
                let filetype = match self.node(*node)?.kind {
                    Kind::File(_) => filetype::REGULAR_FILE,
                    Kind::Dir(_) => filetype::DIRECTORY,
                };
                Ok(Dirent {
                    next: position + 1,
                    ino: *node,
                    filetype,
                    name: &name[..],
                })
            });
        dirents(dots.chain(entries), len)
    }

    // ---- descriptor calls ------------------------------------------------------

    /// `fd_close` of a file: freed if it was unlinked and this was its last
    /// descriptor.
    pub fn close(&mut self, handle: Handle) {
        let Some(Kind::File(file)) = self.nodes.get_mut(&handle.node).map(|n| &mut n.kind) else {
            return;
        };
        file.open = file.open.saturating_sub(1);
        if file.unlinked && file.open == 0 {
            let size = file.data.len();
            self.forget(handle.node, size);
        }
    }

    /// `fd_read`: up to `len` bytes at the offset, which moves past them.
    pub fn read(&self, handle: &mut Handle, len: usize) -> Result<&[u8]> {
        let bytes = self.pread(handle, handle.offset, len)?;
        handle.offset += bytes.len() as u64;
        Ok(bytes)
    }

    /// `fd_pread`: up to `len` bytes at `offset`.
    pub fn pread(&self, handle: &Handle, offset: u64, len: usize) -> Result<&[u8]> {
        if !handle.read {
            return Err(Errno::BADF);
        }
        let data = self.contents(handle.node)?;
        let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
        Ok(&data[start..start + len.min(data.len() - start)])
    }

    /// `fd_write`: `len` bytes, which `fill` puts in place, at the offset (at
    /// the end in append mode), which moves past them.
    pub fn write(&mut self, handle: &mut Handle, len: usize, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<()> {
        if !handle.write {
            return Err(Errno::BADF);
        }
        let at = if handle.append {
            bytes(self.contents(handle.node)?.len())
        } else {
            handle.offset
        };
        self.put(handle.node, at, len, fill)?;
        handle.offset = at + bytes(len);
        Ok(())
    }

    /// `fd_pwrite`: as [`Tree::write`], at `offset`, which stays as it is.
    pub fn pwrite(
        &mut self,
        handle: &Handle,
        offset: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        if !handle.write {
            return Err(Errno::BADF);
        }
        self.put(handle.node, offset, len, fill)
    }

    /// Makes room for `len` bytes at `at` in file `id` (a gap before them
    /// reads as zeros) and has `fill` write them. If it fails, the file
    /// keeps its size.
    fn put(&mut self, id: NodeId, at: u64, len: usize, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = at.checked_add(bytes(len)).ok_or(Errno::NOSPC)?;
        let Tree { nodes, budget, .. } = self;
        let node = nodes.get_mut(&id).ok_or(Errno::NOENT)?;
        let Kind::File(file) = &mut node.kind else {
            return Err(Errno::ISDIR);
        };
        let old = file.data.len();
        grow(&mut file.data, budget, end)?;
        // Within the file now: `end` fits in a usize.
        let (start, end) = (usize::try_from(at).unwrap_or(usize::MAX), end as usize);
        if let Err(e) = fill(&mut file.data[start..end]) {
            budget.refund(bytes(file.data.len() - old));
            truncate(&mut file.data, old);
            return Err(e);
        }
        let now = now();
        (node.mtim, node.ctim) = (now, now);
        Ok(())
    }

    /// `fd_seek`: `whence` 0 from the start, 1 from the offset, 2 from the
    /// end. The offset may go past the end, not before the start.
    pub fn seek(&self, handle: &mut Handle, delta: i64, whence: u8) -> Result<u64> {
        let from = match whence {
            0 => 0,
            1 => handle.offset,
            2 => bytes(self.contents(handle.node)?.len()),
            _ => return Err(Errno::INVAL),
        };
        handle.offset = from.checked_add_signed(delta).ok_or(Errno::INVAL)?;
        Ok(handle.offset)
    }

    /// `fd_filestat_set_size` (`ftruncate`): a descriptor open for writing.
    pub fn set_size(&mut self, handle: &Handle, size: u64) -> Result<()> {
        if !handle.write {
            return Err(Errno::INVAL);
        }
        let Tree { nodes, budget, .. } = self;
        let node = nodes.get_mut(&handle.node).ok_or(Errno::NOENT)?;
        let Kind::File(file) = &mut node.kind else {
            return Err(Errno::ISDIR);
        };
        match usize::try_from(size) {
            Ok(size) if size <= file.data.len() => {
                budget.refund(bytes(file.data.len() - size));
                truncate(&mut file.data, size);
            }
            _ => grow(&mut file.data, budget, size)?,
        }
        let now = now();
        (node.mtim, node.ctim) = (now, now);
        Ok(())
    }

    /// `fd_allocate`: the file grows to `offset + len` if it is shorter.
    pub fn allocate(&mut self, handle: &Handle, offset: u64, len: u64) -> Result<()> {
        if !handle.write {
            return Err(Errno::BADF);
        }
        let end = offset.checked_add(len).ok_or(Errno::NOSPC)?;
        if end > bytes(self.contents(handle.node)?.len()) {
            self.set_size(handle, end)?;
        }
        Ok(())
    }
}

/// Cuts `data` to `len` bytes, and gives back the memory growth by
/// doubling would not have kept: a file never holds more than twice its
/// size.
fn truncate(data: &mut Vec<u8>, len: usize) {
    data.truncate(len);
    if data.capacity() / 2 > len {
        data.shrink_to_fit();
    }
}

/// Zero-fills `data` up to `size` bytes if it is shorter, charging the
/// growth to `budget`.
fn grow(data: &mut Vec<u8>, budget: &mut Budget, size: u64) -> Result<()> {
    let growth = size.saturating_sub(bytes(data.len()));
    if growth == 0 {
        return Ok(());
    }
    budget.charge(growth)?;
    // Charged, so no more than the budget: it fits in memory's address
    // space, and if the host cannot have it, the guest is told as a full
    // tmpfs tells it.
    let grown = usize::try_from(size)
        .ok()
        .filter(|_| data.try_reserve(growth as usize).is_ok());
    match grown {
        Some(size) => {
            data.resize(size, 0);
            Ok(())
        }
        None => {
            budget.refund(growth);
            Err(Errno::NOSPC)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u64 = rights::FD_READ | rights::FD_WRITE;
    const CREAT_EXCL: u16 = OFLAG_CREAT | OFLAG_EXCL;

    fn tree(budget: u64) -> Tree {
        Tree::new(budget)
    }

    fn open(t: &mut Tree, path: &str, oflags: u16, rights: u64) -> Result<Handle> {
        match t.open(ROOT, path.as_bytes(), oflags, rights, 0)? {
            Opened::File(handle) => Ok(handle),
            Opened::Dir(_) => panic!("{path} is a directory"),
        }
    }

    fn write(t: &mut Tree, h: &mut Handle, data: &[u8]) -> Result<()> {
        t.write(h, data.len(), |dst| {
            dst.copy_from_slice(data);
            Ok(())
        })
    }

    fn read_all(t: &Tree, h: &Handle) -> Vec<u8> {
        t.pread(h, 0, usize::MAX).unwrap().to_vec()
    }

    /// The names `fd_readdir` lists from `cookie`, with each one's cookie.
    fn list(t: &Tree, dir: NodeId, cookie: u64) -> Vec<(String, u64)> {
        let buf = t.readdir(dir, cookie, 1 << 16).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let next = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
            let len = u32::from_le_bytes(buf[at + 16..at + 20].try_into().unwrap()) as usize;
            out.push((String::from_utf8(buf[at + 24..at + 24 + len].to_vec()).unwrap(), next));
            at += 24 + len;
        }
        out
    }

    fn names(t: &Tree, dir: NodeId) -> Vec<String> {
        list(t, dir, 0).into_iter().map(|(name, _)| name).collect()
    }

    #[test]
    fn nothing_is_allocated_until_first_use() {
        let mut scratch = Scratch::new(1 << 20);
        assert!(scratch.enabled() && scratch.tree.is_none());
        assert_eq!(names(scratch.tree(), ROOT), [".", ".."]);
        assert!(!Scratch::new(0).enabled());
    }

    #[test]
    fn create_excl_and_trunc() {
        let mut t = tree(1 << 20);
        assert_eq!(open(&mut t, "a", 0, RW).unwrap_err(), Errno::NOENT);
        let mut a = open(&mut t, "a", CREAT_EXCL, RW).unwrap();
        write(&mut t, &mut a, b"hello").unwrap();
        assert_eq!(open(&mut t, "a", CREAT_EXCL, RW).unwrap_err(), Errno::EXIST);
        // O_CREAT alone opens what is there, as it is.
        let again = open(&mut t, "a", OFLAG_CREAT, RW).unwrap();
        assert_eq!(read_all(&t, &again), b"hello");
        let truncated = open(&mut t, "a", OFLAG_TRUNC, RW).unwrap();
        assert_eq!(read_all(&t, &truncated), b"");
        assert_eq!(t.stat(a.node()).unwrap().size, 0);
        assert_eq!(t.budget.used, ENTRY_COST + 1);
    }

    #[test]
    fn read_write_seek_and_modes() {
        let mut t = tree(1 << 20);
        let mut f = open(&mut t, "f", OFLAG_CREAT, RW).unwrap();
        write(&mut t, &mut f, b"0123456789").unwrap();
        assert_eq!(t.seek(&mut f, 2, 0).unwrap(), 2);
        assert_eq!(t.read(&mut f, 3).unwrap(), b"234");
        assert_eq!(t.seek(&mut f, -1, 2).unwrap(), 9);
        assert_eq!(t.read(&mut f, 100).unwrap(), b"9");
        assert_eq!(t.read(&mut f, 100).unwrap(), b"");
        assert_eq!(t.seek(&mut f, -11, 2).unwrap_err(), Errno::INVAL);
        // Past the end: the gap reads as zeros.
        t.seek(&mut f, 12, 0).unwrap();
        write(&mut t, &mut f, b"!").unwrap();
        assert_eq!(read_all(&t, &f), b"0123456789\0\0!");
        t.pwrite(&f, 0, 1, |d| {
            d[0] = b'x';
            Ok(())
        })
        .unwrap();
        assert_eq!(f.offset(), 13);
        assert_eq!(t.pread(&f, 0, 2).unwrap(), b"x1");
        assert_eq!(t.pread(&f, 99, 2).unwrap(), b"");
        t.set_size(&f, 3).unwrap();
        assert_eq!(read_all(&t, &f), b"x12");
        t.set_size(&f, 5).unwrap();
        assert_eq!(read_all(&t, &f), b"x12\0\0");
        // Read-only and write-only descriptors, and append mode.
        let mut ro = open(&mut t, "f", 0, rights::FD_READ).unwrap();
        assert_eq!(write(&mut t, &mut ro, b"no").unwrap_err(), Errno::BADF);
        assert_eq!(t.set_size(&ro, 0).unwrap_err(), Errno::INVAL);
        let wo = open(&mut t, "f", 0, rights::FD_WRITE).unwrap();
        assert_eq!(t.pread(&wo, 0, 1).unwrap_err(), Errno::BADF);
        assert_eq!(wo.rights() & rights::FD_READ, 0);
        let mut app = match t.open(ROOT, b"f", 0, RW, FDFLAG_APPEND).unwrap() {
            Opened::File(h) => h,
            Opened::Dir(_) => unreachable!(),
        };
        assert_eq!(app.fdflags(), FDFLAG_APPEND);
        write(&mut t, &mut app, b"end").unwrap();
        assert_eq!(read_all(&t, &app), b"x12\0\0end");
        // A failed fill leaves the file as it was.
        let fault = t.write(&mut f, 4, |_| Err(Errno::FAULT));
        assert_eq!(fault.unwrap_err(), Errno::FAULT);
        assert_eq!(read_all(&t, &f), b"x12\0\0end");
        assert_eq!(t.budget.used, ENTRY_COST + 1 + 8);
    }

    #[test]
    fn over_the_budget_is_nospc_and_unlink_frees_it() {
        let budget = 2 * ENTRY_COST + 1000;
        let mut t = tree(budget);
        let mut big = open(&mut t, "big", CREAT_EXCL, RW).unwrap();
        write(&mut t, &mut big, &[7; 600]).unwrap();
        // All or nothing.
        assert_eq!(write(&mut t, &mut big, &[7; 700]).unwrap_err(), Errno::NOSPC);
        assert_eq!(t.stat(big.node()).unwrap().size, 600);
        assert_eq!(t.set_size(&big, 10_000).unwrap_err(), Errno::NOSPC);
        assert_eq!(t.pwrite(&big, u64::MAX, 1, |_| Ok(())).unwrap_err(), Errno::NOSPC);
        let mut small = open(&mut t, "s", CREAT_EXCL, RW).unwrap();
        write(&mut t, &mut small, &[1; 300]).unwrap();
        // Entries cost too: a third file does not fit.
        assert_eq!(open(&mut t, "c", CREAT_EXCL, RW).unwrap_err(), Errno::NOSPC);
        assert_eq!(t.mkdir(ROOT, b"d").unwrap_err(), Errno::NOSPC);
        // Unlinked but open: still held, as in POSIX.
        t.unlink(ROOT, b"big").unwrap();
        assert_eq!(open(&mut t, "big", 0, RW).unwrap_err(), Errno::NOENT);
        assert_eq!(read_all(&t, &big).len(), 600);
        assert_eq!(t.stat(big.node()).unwrap().nlink, 0);
        assert_eq!(open(&mut t, "c", CREAT_EXCL, RW).unwrap_err(), Errno::NOSPC);
        // The last close frees it.
        t.close(big);
        let mut c = open(&mut t, "c", CREAT_EXCL, RW).unwrap();
        write(&mut t, &mut c, &[2; 600]).unwrap();
        t.close(c);
        t.close(small);
        t.unlink(ROOT, b"c").unwrap();
        t.unlink(ROOT, b"s").unwrap();
        assert_eq!(t.budget.used, 0);
    }

    #[test]
    fn a_million_empty_files_do_not_fit() {
        let mut t = tree(1 << 20);
        let mut made = 0u64;
        while let Ok(h) = open(&mut t, &format!("f{made}"), CREAT_EXCL, RW) {
            t.close(h);
            made += 1;
        }
        assert!(made < (1 << 20) / ENTRY_COST, "{made} files");
    }

    #[test]
    fn directories_and_rename() {
        let mut t = tree(1 << 20);
        t.mkdir(ROOT, b"d").unwrap();
        assert_eq!(t.mkdir(ROOT, b"d/").unwrap_err(), Errno::EXIST);
        t.mkdir(ROOT, b"d/e").unwrap();
        let mut f = open(&mut t, "d/e/f", CREAT_EXCL, RW).unwrap();
        write(&mut t, &mut f, b"data").unwrap();
        t.close(f);
        assert_eq!(t.rmdir(ROOT, b"d").unwrap_err(), Errno::NOTEMPTY);
        assert_eq!(t.unlink(ROOT, b"d").unwrap_err(), Errno::ISDIR);
        assert_eq!(t.rmdir(ROOT, b"d/e/f").unwrap_err(), Errno::NOTDIR);
        assert_eq!(t.lookup(ROOT, b"d/e/f/").unwrap_err(), Errno::NOTDIR);
        // A file over a file; the replaced one is freed.
        let mut g = open(&mut t, "g", CREAT_EXCL, RW).unwrap();
        write(&mut t, &mut g, b"old").unwrap();
        t.close(g);
        t.rename(ROOT, b"d/e/f", ROOT, b"g").unwrap();
        assert_eq!(t.lookup(ROOT, b"d/e/f").unwrap_err(), Errno::NOENT);
        let g = open(&mut t, "g", 0, RW).unwrap();
        assert_eq!(read_all(&t, &g), b"data");
        t.close(g);
        assert_eq!(t.budget.used, 3 * ENTRY_COST + 3 + 4);
        // Directories: moved with what they hold, not into themselves, not
        // over a file or a non-empty directory.
        let e = t.lookup(ROOT, b"d/e").unwrap();
        t.rename(ROOT, b"d/e", ROOT, b"e2").unwrap();
        assert_eq!(t.lookup(ROOT, b"e2/..").unwrap(), ROOT);
        assert_eq!(t.lookup(ROOT, b"e2").unwrap(), e);
        assert_eq!(t.rename(ROOT, b"d", ROOT, b"d/x").unwrap_err(), Errno::INVAL);
        assert_eq!(t.rename(ROOT, b"d", ROOT, b"g").unwrap_err(), Errno::NOTDIR);
        assert_eq!(t.rename(ROOT, b"g", ROOT, b"d").unwrap_err(), Errno::ISDIR);
        open(&mut t, "e2/in", CREAT_EXCL, RW).map(|h| t.close(h)).unwrap();
        assert_eq!(t.rename(ROOT, b"d", ROOT, b"e2").unwrap_err(), Errno::NOTEMPTY);
        t.rename(ROOT, b"e2", ROOT, b"d").unwrap();
        assert_eq!(names(&t, ROOT), [".", "..", "g", "d"]);
        // Renaming to itself changes nothing.
        t.rename(ROOT, b"g", ROOT, b"./g").unwrap();
        assert_eq!(t.stat(t.lookup(ROOT, b"g").unwrap()).unwrap().size, 4);
        // A descriptor on a removed directory finds nothing.
        t.unlink(ROOT, b"d/in").unwrap();
        let d = t.lookup(ROOT, b"d").unwrap();
        t.rmdir(ROOT, b"d").unwrap();
        assert_eq!(t.open(d, b"x", OFLAG_CREAT, RW, 0).err(), Some(Errno::NOENT));
        assert_eq!(t.readdir(d, 0, 100).unwrap_err(), Errno::NOENT);
        assert_eq!(t.budget.used, ENTRY_COST + 1 + 4);
    }

    #[test]
    fn readdir_cookies_survive_removals() {
        let mut t = tree(1 << 20);
        for name in ["c", "a", "b", "d"] {
            open(&mut t, name, CREAT_EXCL, RW).map(|h| t.close(h)).unwrap();
        }
        let all = list(&t, ROOT, 0);
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [".", "..", "c", "a", "b", "d"]);
        // Read up to "a", remove what was read, go on from a's cookie.
        let after_a = all[3].1;
        t.unlink(ROOT, b"c").unwrap();
        t.unlink(ROOT, b"a").unwrap();
        let rest: Vec<String> = list(&t, ROOT, after_a).into_iter().map(|(n, _)| n).collect();
        assert_eq!(rest, ["b", "d"]);
        assert_eq!(list(&t, ROOT, 1)[0].0, "..");
        // Cut at the buffer's length, as WASI allows.
        assert_eq!(t.readdir(ROOT, 0, 30).unwrap().len(), 30);
    }

    #[test]
    fn no_path_leaves_the_root() {
        let mut t = tree(1 << 20);
        t.mkdir(ROOT, b"d").unwrap();
        for path in ["..", "../etc/passwd", "d/../..", "d/../../tmp", "./.."] {
            assert_eq!(t.lookup(ROOT, path.as_bytes()).unwrap_err(), Errno::PERM, "{path}");
            assert_eq!(
                t.open(ROOT, path.as_bytes(), OFLAG_CREAT, RW, 0).err(),
                Some(Errno::PERM),
                "{path}"
            );
        }
        for path in ["/", "/etc/passwd", "/tmp/x"] {
            assert_eq!(t.lookup(ROOT, path.as_bytes()).unwrap_err(), Errno::PERM, "{path}");
            assert_eq!(t.mkdir(ROOT, path.as_bytes()).unwrap_err(), Errno::PERM, "{path}");
        }
        let d = t.lookup(ROOT, b"d").unwrap();
        assert_eq!(t.lookup(d, b"..").unwrap(), ROOT);
        assert_eq!(t.lookup(d, b"../..").unwrap_err(), Errno::PERM);
        assert_eq!(t.rename(ROOT, b"d", ROOT, b"../d").unwrap_err(), Errno::PERM);
        assert_eq!(t.lookup(ROOT, b"d/./").unwrap(), d);
        assert_eq!(t.lookup(ROOT, b".").unwrap(), ROOT);
        // Names: no NUL, at most NAME_MAX bytes, never . or .. as new ones.
        assert_eq!(t.mkdir(ROOT, b"a\0b").unwrap_err(), Errno::INVAL);
        assert_eq!(t.mkdir(ROOT, &[b'n'; 256]).unwrap_err(), Errno::NAMETOOLONG);
        assert_eq!(t.mkdir(ROOT, b"d/..").unwrap_err(), Errno::EXIST);
        assert_eq!(t.rmdir(ROOT, b".").unwrap_err(), Errno::INVAL);
        assert_eq!(t.lookup(ROOT, b"").unwrap_err(), Errno::NOENT);
    }

    #[test]
    fn directories_cannot_be_opened_for_writing() {
        let mut t = tree(1 << 20);
        t.mkdir(ROOT, b"d").unwrap();
        assert!(matches!(
            t.open(ROOT, b"d", OFLAG_DIRECTORY, rights::FD_READ, 0),
            Ok(Opened::Dir(_))
        ));
        assert!(matches!(t.open(ROOT, b"d", 0, rights::FD_READ, 0), Ok(Opened::Dir(_))));
        assert_eq!(t.open(ROOT, b"d", 0, RW, 0).err(), Some(Errno::ISDIR));
        open(&mut t, "f", CREAT_EXCL, RW).map(|h| t.close(h)).unwrap();
        assert_eq!(
            t.open(ROOT, b"f", OFLAG_DIRECTORY, rights::FD_READ, 0).err(),
            Some(Errno::NOTDIR)
        );
        assert_eq!(t.open(ROOT, b"new/", OFLAG_CREAT, RW, 0).err(), Some(Errno::ISDIR));
    }

    #[test]
    fn times_follow_the_realtime_clock() {
        let mut t = tree(1 << 20);
        let before = now();
        let mut f = open(&mut t, "f", CREAT_EXCL, RW).unwrap();
        let created = t.stat(f.node()).unwrap();
        assert!(created.mtim >= before && created.mtim <= now());
        t.set_times(f.node(), 5, 0, FST_ATIM).unwrap();
        let stat = t.stat(f.node()).unwrap();
        assert_eq!((stat.atim, stat.mtim), (5, created.mtim));
        write(&mut t, &mut f, b"x").unwrap();
        assert!(t.stat(f.node()).unwrap().mtim >= created.mtim);
        assert_eq!(
            t.set_times(f.node(), 0, 0, FST_MTIM | FST_MTIM_NOW).unwrap_err(),
            Errno::INVAL
        );
    }
}
