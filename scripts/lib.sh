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

# usage: the help text of the script that is running: the comment at its top,
# from its second line to its `set -euo pipefail`.
usage() { sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[-1]}"; }

# on_exit FUNCTION: runs FUNCTION when the script exits, whatever ends it
# (its end, an error, Ctrl-C, SIGTERM, SIGHUP), with errors no longer fatal
# (whatever fails, the rest is cleaned up); the exit status stays the
# script's.
on_exit() {
    exit_function=$1
    trap run_exit_function EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# shellcheck disable=SC2317 # the EXIT trap
run_exit_function() {
    local status=$?
    trap - EXIT INT TERM HUP
    set +e
    "$exit_function"
    exit "$status"
}

# --- servers: each in a process group of its own, stopped in reverse ------

servers=()      # the pids of those start_server started, in order
server_names=() # and their names, for messages

# start_server NAME LOG CMD...: CMD in the background, its output to LOG, as
# the leader of a process group of its own, out of the terminal's: Ctrl-C
# reaches the script alone, which stops its servers in order, and `stop` gets
# all of the group. Its pid is the last of $servers.
start_server() {
    local name=$1 log=$2
    shift 2
    setsid "$@" </dev/null >"$log" 2>&1 &
    servers+=("$!")
    server_names+=("$name")
}

# alive PID: whether PID runs (a zombie waiting to be reaped does not).
alive() {
    local stat
    # (Not $(<file): under set -e, a missing file ends the whole script.)
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}

# stop PID SECONDS: SIGTERM to the process group PID leads, SIGKILL to what
# is left of it after SECONDS (fcgiwrap leaves its children behind), then
# reap it.
stop() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < $2 * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# stop_servers SECONDS: stops every server, the last started first (nginx,
# started after its backends, closes its kept connections to them, so that
# they stop at once), each given SECONDS.
stop_servers() {
    local i
    for ((i = ${#servers[@]} - 1; i >= 0; i--)); do
        stop "${servers[i]}" "$1"
    done
}

# died MESSAGE LOG...: dies with MESSAGE and the end of each LOG that is not
# empty.
died() {
    local f
    printf 'error: %s\n' "$1" >&2
    shift
    for f in "$@"; do
        [ -s "$f" ] || continue
        printf -- '--- the end of %s:\n' "${f##*/}" >&2
        tail -n 40 "$f" >&2
    done
    exit 1
}

# servers_alive WHAT LOG...: dies with the LOGs, saying which server exited
# before WHAT, unless every server still runs.
servers_alive() {
    local i
    for i in "${!servers[@]}"; do
        alive "${servers[i]}" || died "${server_names[i]} exited before $1" "${@:2}"
    done
}

# wait_socket PATH LOG...: waits until a server made the Unix socket PATH;
# dies with the LOGs if a server exits first, or after 60 s.
wait_socket() {
    local deadline=$((SECONDS + 60))
    until [ -S "$1" ]; do
        servers_alive "$1 appeared" "${@:2}"
        [ "$SECONDS" -lt "$deadline" ] || died "no socket $1 after 60 s" "${@:2}"
        sleep 0.05
    done
}

# wait_http URL LOG...: waits until URL answers with success; dies with the
# LOGs if a server exits first, or after 30 s.
wait_http() {
    local deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; do
        servers_alive "$1 answered" "${@:2}"
        [ "$SECONDS" -lt "$deadline" ] || died "no answer from $1 after 30 s" "${@:2}"
        sleep 0.1
    done
}
