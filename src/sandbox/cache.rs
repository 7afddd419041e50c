//! The ahead-of-time cache: compiled modules (and their memory images) kept
//! on disk, so that a restart or `wcgid serve` after `wcgid check` compiles
//! nothing.
//!
//! An entry is one file named after its key, the SHA-256 of the module's
//! bytes, the exact wasmer version, the compiler's id, the target and the
//! host's CPU features: a different wasmer or CPU never even finds another's
//! entry. The file repeats the key and carries a SHA-256 of each part, so a
//! truncated, corrupted or misplaced entry is recognised, logged and
//! recompiled; it is never loaded.
//!
//! Loading compiled code runs it natively: the cache directory must be
//! writable by the daemon's user alone, which [`Cache::open`] checks.

#![allow(unsafe_code)]

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Checks;

const MAGIC: &[u8; 10] = b"WCGID-AOT\0";
/// Bumped when the entry layout, or anything wcgid changes in compiled code
/// (its tunables, what `image::prepare` strips), changes.
const FORMAT: u32 = 4;
/// Magic, format, key, then length and digest of the artifact and the image.
const HEADER: usize = MAGIC.len() + 4 + 32 + (8 + 32) * 2;

pub struct Cache {
    dir: PathBuf,
    /// What besides the module's bytes decides whether an artifact fits.
    salt: String,
}

/// A compiled module and its memory image, as stored.
pub struct Entry {
    pub module: wasmer::Module,
    pub image: Option<Vec<u8>>,
}

impl Cache {
    /// Opens (creating if needed) `dir`, which must belong to this user and
    /// be writable by nobody else.
    pub fn open(dir: &Path, engine: &wasmer::Engine) -> io::Result<Cache> {
        std::fs::create_dir_all(dir)?;
        let meta = std::fs::metadata(dir)?;
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.permissions().mode() & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} must belong to this user and be writable by it alone (mode {:o}, owner {}): \
                     whoever can write it can run code in wcgid",
                    dir.display(),
                    meta.permissions().mode() & 0o777,
                    meta.uid()
                ),
            ));
        }
        let target = wasmer::sys::Target::default();
        let salt = format!(
            "wasmer {} | {} | {} | {:?} | format {FORMAT}",
            env!("WCGID_WASMER_VERSION"),
            engine.deterministic_id(),
            target.triple(),
            wasmer::sys::CpuFeature::for_host(),
        );
        Ok(Cache { dir: dir.into(), salt })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry's key: code with other checks compiled in (the interrupt
    /// check, fuel metering) is other code.
    fn key(&self, wasm: &[u8], checks: Checks) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.salt.as_bytes());
        hash.update([u8::from(checks.interrupt), u8::from(checks.fuel)]);
        hash.update(wasm);
        hash.finalize().into()
    }

    fn path(&self, key: &[u8; 32]) -> PathBuf {
        let name: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.aot"))
    }

    /// The entry for `wasm`, if a sound one is stored. A damaged entry is
    /// logged and removed.
    pub fn get(&self, engine: &wasmer::Engine, wasm: &[u8], checks: Checks) -> Option<Entry> {
        let key = self.key(wasm, checks);
        let path = self.path(&key);
        let file = match std::fs::read(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(entry = %path.display(), "cannot read AOT cache entry, recompiling: {e}");
                return None;
            }
        };
        match decode(&file, &key) {
            Ok((artifact, image)) => {
                // SAFETY: the artifact is byte for byte what `put` wrote for
                // this key (its SHA-256 matched, and the key covers the module,
                // the wasmer version, the compiler and the CPU), in a
                // directory only this user can write (`open` checked).
                match unsafe { wasmer::Module::deserialize(engine, artifact.to_vec()) } {
                    Ok(module) => {
                        return Some(Entry {
                            module,
                            image: image.map(<[u8]>::to_vec),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(entry = %path.display(), "AOT cache entry refused by wasmer, recompiling: {e}")
                    }
                }
            }
            Err(why) => tracing::warn!(entry = %path.display(), "AOT cache entry {why}, recompiling"),
        }
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Stores `module` and `image` for `wasm`. Failing to is logged, not
    /// fatal: the module is compiled, only not kept.
    pub fn put(&self, wasm: &[u8], checks: Checks, module: &wasmer::Module, image: Option<&[u8]>) {
        let key = self.key(wasm, checks);
        let path = self.path(&key);
        let stored = module
            .serialize()
            .map_err(io::Error::other)
            .and_then(|artifact| write_atomically(&path, &encode(&key, &artifact, image)));
        if let Err(e) = stored {
            tracing::warn!(entry = %path.display(), "cannot store AOT cache entry: {e}");
        }
    }
}

fn encode(key: &[u8; 32], artifact: &[u8], image: Option<&[u8]>) -> Vec<u8> {
    let image = image.unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + artifact.len() + image.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(key);
    for part in [artifact, image] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(part));
    }
    out.extend_from_slice(artifact);
    out.extend_from_slice(image);
    out
}

/// The artifact and image of a sound entry for `key`, or what is wrong.
fn decode<'a>(file: &'a [u8], key: &[u8; 32]) -> Result<(&'a [u8], Option<&'a [u8]>), &'static str> {
    let header = file.get(..HEADER).ok_or("is truncated")?;
    let (magic, rest) = header.split_at(MAGIC.len());
    if magic != MAGIC || rest[..4] != FORMAT.to_le_bytes() {
        return Err("has another format");
    }
    if &rest[4..36] != key {
        return Err("belongs to another module or wasmer");
    }
    let mut parts = Vec::with_capacity(2);
    let mut at = HEADER;
    for field in rest[36..].chunks_exact(40) {
        let len =
            usize::try_from(u64::from_le_bytes(field[..8].try_into().expect("8 bytes"))).map_err(|_| "is corrupt")?;
        let part = at
            .checked_add(len)
            .and_then(|end| file.get(at..end))
            .ok_or("is truncated")?;
        if Sha256::digest(part)[..] != field[8..] {
            return Err("is corrupt");
        }
        parts.push(part);
        at += len;
    }
    if at != file.len() {
        return Err("has trailing bytes");
    }
    Ok((parts[0], Some(parts[1]).filter(|image| !image.is_empty())))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a
/// reader sees the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Checks = Checks {
        interrupt: false,
        fuel: false,
    };

    const WAT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

    fn setup() -> (Cache, wasmer::Engine, Vec<u8>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "wcgid-cache-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let engine = wasmer::Engine::default();
        let cache = Cache::open(&dir, &engine).unwrap();
        (cache, engine, wat::parse_str(WAT).unwrap(), dir)
    }

    fn entry_file(dir: &Path) -> PathBuf {
        std::fs::read_dir(dir).unwrap().next().unwrap().unwrap().path()
    }

    #[test]
    fn a_stored_entry_comes_back_with_its_image() {
        let (cache, engine, wasm, dir) = setup();
        assert!(cache.get(&engine, &wasm, PLAIN).is_none());
        let module = wasmer::Module::new(&engine, &wasm).unwrap();
        cache.put(&wasm, PLAIN, &module, Some(b"image bytes"));
        let entry = cache.get(&engine, &wasm, PLAIN).expect("stored");
        for (interrupt, fuel) in [(true, false), (false, true), (true, true)] {
            let other = Checks { interrupt, fuel };
            assert!(cache.get(&engine, &wasm, other).is_none(), "{other:?} is other code");
        }
        assert_eq!(entry.image.as_deref(), Some(&b"image bytes"[..]));
        assert!(entry.module.exports().any(|e| e.name() == "_start"));
        // Another module's bytes find nothing.
        let mut other = wasm.clone();
        other.extend_from_slice(&[0, 1, b'x']); // a trailing custom section
        assert!(cache.get(&engine, &other, PLAIN).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn damaged_entries_are_refused_and_removed() {
        let (cache, engine, wasm, dir) = setup();
        let module = wasmer::Module::new(&engine, &wasm).unwrap();
        type Damage = fn(&mut Vec<u8>);
        let damages: [(&str, Damage); 5] = [
            ("truncated", |f| f.truncate(f.len() - 1)),
            ("header cut", |f| f.truncate(20)),
            ("artifact bit flipped", |f| {
                let at = HEADER + 10;
                f[at] ^= 1;
            }),
            ("another key", |f| f[MAGIC.len() + 4] ^= 1),
            ("trailing bytes", |f| f.push(0)),
        ];
        for (what, damage) in damages {
            cache.put(&wasm, PLAIN, &module, None);
            let path = entry_file(&dir);
            let mut file = std::fs::read(&path).unwrap();
            damage(&mut file);
            std::fs::write(&path, &file).unwrap();
            assert!(cache.get(&engine, &wasm, PLAIN).is_none(), "{what}: loaded anyway");
            assert!(!path.exists(), "{what}: not removed");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let (_, engine, _, dir) = setup();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Cache::open(&dir, &engine).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
