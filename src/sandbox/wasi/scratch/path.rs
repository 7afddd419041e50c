//! The scratch tree's path calls, and what they report of a file or
//! directory: its `filestat` and its entries (typenames.witx: `oflags`,
//! `fstflags`, `filestat`, `dirent`).

use super::{Dir, File, Handle, Kind, NodeId, Opened, Tree};
use super::{Errno, Result, bytes, new_name, now};
use super::{FDFLAG_APPEND, FIRST_POSITION, OFLAG_CREAT, OFLAG_DIRECTORY, OFLAG_EXCL, OFLAG_TRUNC, ROOT, rights};
use super::{FST_ATIM, FST_ATIM_NOW, FST_MTIM, FST_MTIM_NOW};
use crate::sandbox::wasi::abi::{Dirent, Filestat, dirents, filetype};

impl Tree {
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
