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
//!
//! The tree and its path resolution are here; the calls through a path are
//! in `path`, those through an open file in `file`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::abi::{FDFLAG_APPEND, OFLAG_CREAT, OFLAG_DIRECTORY, OFLAG_EXCL, OFLAG_TRUNC, rights};
use super::{Errno, Result};

mod file;
mod path;
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
}
