//! Open files of the scratch tree: what a descriptor holds, and the calls
//! made through it.

use super::{Budget, Errno, FDFLAG_APPEND, Kind, NodeId, Result, Tree, bytes, now, rights};

/// An open file: what its descriptor holds.
#[derive(Debug)]
pub struct Handle {
    pub(super) node: NodeId,
    pub(super) offset: u64,
    pub(super) read: bool,
    pub(super) write: bool,
    pub(super) append: bool,
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

impl Tree {
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
