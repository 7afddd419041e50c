//! The scratch tree's calls, without a guest.

use super::*;

const RW: u64 = rights::FD_READ | rights::FD_WRITE;
const CREAT_EXCL: u16 = OFLAG_CREAT | OFLAG_EXCL;

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
    let mut t = Tree::new(1 << 20);
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
    let mut t = Tree::new(1 << 20);
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
    let mut t = Tree::new(budget);
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
    let mut t = Tree::new(1 << 20);
    let mut made = 0u64;
    while let Ok(h) = open(&mut t, &format!("f{made}"), CREAT_EXCL, RW) {
        t.close(h);
        made += 1;
    }
    assert!(made < (1 << 20) / ENTRY_COST, "{made} files");
}

#[test]
fn directories_and_rename() {
    let mut t = Tree::new(1 << 20);
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
    let mut t = Tree::new(1 << 20);
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
    let mut t = Tree::new(1 << 20);
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
    let mut t = Tree::new(1 << 20);
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
    let mut t = Tree::new(1 << 20);
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
