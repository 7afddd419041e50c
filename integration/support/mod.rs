//! What the tests share: how a test is declared, the temp directory of a run,
//! the bookkeeping that makes sure no child process outlives the run, and the
//! [`Fixture`]: wcgid on a temp Unix socket behind a real nginx.

pub mod alone;
pub mod apache;
pub mod daemon;
pub mod differential;
pub mod fcgi;
pub mod fcgiwrap;
pub mod fixture;
pub mod http;
pub mod nginx;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use fixture::Fixture;

/// How a test runs.
pub enum Kind {
    /// Against the shared fixture, alongside other tests.
    Shared(fn(&Fixture)),
    /// Against the shared fixture, with no other test running: it reads the
    /// daemon's log or measures the daemon's memory.
    Serial(fn(&Fixture)),
    /// On its own, alongside other tests, with a fresh empty directory for
    /// whatever it starts (its own daemon, its own config).
    Alone(fn(&Path)),
}

pub struct Test {
    /// `module::function`.
    pub name: &'static str,
    pub kind: Kind,
}

/// Declares a test module's `TESTS`: `Shared name, Serial name, Alone name`.
macro_rules! tests {
    ($($kind:ident $name:ident),* $(,)?) => {
        pub const TESTS: &[$crate::support::Test] = &[$(
            $crate::support::Test {
                name: concat!(module_path!(), "::", stringify!($name)),
                kind: $crate::support::Kind::$kind($name),
            }
        ),*];
    };
}
pub(crate) use tests;

/// The run's temp directory, `$TMPDIR/wcgid-it-PID`, removed on drop.
pub struct TempRoot(PathBuf);

impl TempRoot {
    pub fn create() -> TempRoot {
        let path = std::env::temp_dir().join(format!("wcgid-it-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempRoot(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Child processes still running, so a watchdog can kill them all.
static CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

pub fn track(pid: i32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

pub fn untrack(pid: i32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).retain(|&p| p != pid);
}

/// SIGKILLs `pid` and its own children (nginx workers).
pub fn kill_tree(pid: i32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let children = children_of(pid);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    for child in children {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
}

/// The pids whose parent is `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
                let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
                after.split_whitespace().nth(1).and_then(|pp| pp.parse::<i32>().ok()) == Some(pid)
            })
        })
        .collect()
}

/// Kills every tracked child, removes `root` and exits 1 if the run is still
/// going after `limit`: a hung test must not hang CI or leave processes.
pub fn start_watchdog(root: &Path, limit: Duration) {
    let root = root.to_owned();
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!("integration tests still running after {limit:?}: killing the servers and giving up");
            for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                kill_tree(*pid);
            }
            let _ = std::fs::remove_dir_all(&root);
            std::process::exit(1);
        })
        .expect("spawn the watchdog");
}

/// Polls `ready` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `len` bytes from a xorshift generator: every byte value, NUL included.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// The body of `/cases?body=N`: byte `i` is `i % 251`.
pub fn cases_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The directory of the example guests.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The module of example `name` (`hello-c` lives at `hello-c/hello.wasm`).
pub fn example_module(name: &str) -> PathBuf {
    match name {
        "hello-c" => examples().join("hello-c/hello.wasm"),
        "upload-c" => examples().join("upload-c/upload.wasm"),
        "dict-cold" => examples().join("dict/dict-cold.wasm"),
        "qjs-cold" => examples().join("qjs/qjs-cold.wasm"),
        _ => examples().join(name).join(format!("{name}.wasm")),
    }
}

/// Lines of `text` that start with `prefix`.
/// Where `scripts/fetch-interpreters` put the WASI interpreters for the
/// tests: `$WCGID_INTERPRETERS`, else `~/.cache/wcgid/interpreters`.
pub fn interpreters() -> Result<PathBuf, String> {
    let dir = std::env::var_os("WCGID_INTERPRETERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/wcgid/interpreters")
        });
    for file in ["perl.wasm", "python.wasm"] {
        if !dir.join(file).is_file() {
            return Err(format!(
                "{} is missing: run scripts/fetch-interpreters {} (scripts/test does)",
                dir.join(file).display(),
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// A cache directory kept between test runs, for modules that take long to
/// snapshot and compile (the interpreters): `~/.cache/wcgid/test-<name>`.
pub fn shared_cache_dir(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(format!(".cache/wcgid/test-{name}"));
    std::fs::create_dir_all(&dir).expect("create the shared cache directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("make the cache private");
    dir
}

/// A directory for the test whose directory is `dir` that keeps its path
/// from one run to the next, empty: a site whose interpreters' snapshots
/// hold its path (they are made again for another path) goes there, so that
/// the next run finds them in the shared cache. Under the temporary
/// directory, which Apache's children (www-data) can search.
pub fn stable_dir(dir: &Path) -> PathBuf {
    let stable = std::env::temp_dir()
        .join("wcgid-test-sites")
        .join(dir.file_name().expect("a test's directory"));
    if stable.exists() {
        std::fs::remove_dir_all(&stable).expect("empty the stable directory");
    }
    std::fs::create_dir_all(&stable).expect("create the stable directory");
    stable
}

pub fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}
