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

mod file;
#[cfg(test)]
mod tests;

pub use file::Handle;

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
}
