//! Records the exact wasmer version from Cargo.lock: the AOT cache keys its
//! entries by it (a compiled artifact only fits the wasmer that made it).

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let version = lock
        .split("[[package]]")
        .find(|package| package.contains("\nname = \"wasmer\"\n"))
        .and_then(|package| package.lines().find_map(|line| line.strip_prefix("version = \"")))
        .map_or("unknown", |v| v.trim_end_matches('"'));
    println!("cargo:rustc-env=WCGID_WASMER_VERSION={version}");
}
