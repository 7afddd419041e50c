# shellcheck shell=bash
# Shared setup for the scripts in this directory: sourced, not run.
#
# Everything here is idempotent, so each script can call what it needs and
# a fresh Debian machine gets set up by whichever script runs first.

set -euo pipefail

export WCGID_ROOT
WCGID_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# One warm target dir for every script, CI and the developer: a cold build of
# wasmer takes minutes.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/wcgid/target}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_packages PKG...: apt-get install the Debian packages that are missing.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
        { "${sudo[@]}" apt-get update -q >/dev/null &&
          "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } ||
        die "could not install ${missing[*]}"
}

# ensure_guest_toolchain: what examples/build needs (Rust's wasm32-wasip1 target,
# clang with wasi-libc).
ensure_guest_toolchain() {
    ensure_packages clang lld wasi-libc libclang-rt-dev-wasm32
    rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || {
        log "adding Rust target wasm32-wasip1"
        rustup target add wasm32-wasip1 >/dev/null
    }
}

# nginx_bin: Debian's nginx, started by hand with our own config.
nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

# ensure_interpreters: the directory of the WASI interpreters that run the
# legacy cgi-bin scripts (WCGID_INTERPRETERS, default
# ~/.cache/wcgid/interpreters, where the integration tests look too), after
# scripts/fetch-interpreters installed what is missing there.
ensure_interpreters() {
    local dir=${WCGID_INTERPRETERS:-$HOME/.cache/wcgid/interpreters}
    "$WCGID_ROOT/scripts/fetch-interpreters" "$dir" >&2
    echo "$dir"
}

# private_cache NAME: ~/.cache/wcgid/NAME, made if missing, mode 0700 as
# wcgid wants its server.cache_dir: where the interpreters' snapshots and
# compiled code stay from one run to the next (a minute to make).
private_cache() {
    local dir=$HOME/.cache/wcgid/$1
    { mkdir -p "$dir" && chmod 700 "$dir"; } || die "cannot make $dir"
    echo "$dir"
}
