//! Arguments, environment, clocks, randomness and the process: `args_*`,
//! `environ_*`, `clock_*`, `random_get`, `proc_*` and `sched_yield`
//! (typenames.witx: `clockid`, `timestamp`).

use std::time::Duration;

use nix::time::{ClockId, clock_getres, clock_gettime};
use wasmer::{FunctionEnvMut, MemoryView};

use super::COPY_CHUNK;
use crate::sandbox::wasi::{
    Errno, ExitCode, Host, Result, addr, in_memory, with_memory, write_bytes, write_u32, write_u64,
};
use crate::sandbox::{CStrings, Stdio};

fn sizes(mem: &MemoryView, strings: &CStrings, count_ptr: i32, size_ptr: i32) -> Result<()> {
    in_memory(mem, addr(size_ptr), 4)?;
    write_u32(mem, count_ptr, strings.count)?;
    write_u32(mem, size_ptr, strings.bytes.len() as u32)
}

/// Writes the strings at `buf` and a pointer to each at `ptrs`.
fn strings_to(mem: &MemoryView, strings: &CStrings, ptrs: i32, buf: i32) -> Result<()> {
    let mut table = Vec::with_capacity(4 * strings.count as usize);
    let mut offset = buf as u32;
    for s in strings.iter() {
        table.extend_from_slice(&offset.to_le_bytes());
        offset = offset.wrapping_add(s.len() as u32 + 1);
    }
    in_memory(mem, addr(buf), strings.bytes.len())?;
    write_bytes(mem, addr(ptrs), &table)?;
    write_bytes(mem, addr(buf), &strings.bytes)
}

pub(super) fn args_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, argv: i32, buf: i32) -> i32 {
    with_memory(env, |h, mem| strings_to(mem, &h.args, argv, buf))
}

pub(super) fn args_sizes_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, count: i32, size: i32) -> i32 {
    with_memory(env, |h, mem| sizes(mem, &h.args, count, size))
}

pub(super) fn environ_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, environ: i32, buf: i32) -> i32 {
    with_memory(env, |h, mem| {
        h.touched.environ = true;
        strings_to(mem, &h.env, environ, buf)
    })
}

pub(super) fn environ_sizes_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, count: i32, size: i32) -> i32 {
    with_memory(env, |h, mem| {
        h.touched.environ = true;
        sizes(mem, &h.env, count, size)
    })
}

// ---- clocks, randomness, process ------------------------------------------

pub(super) fn clock(id: i32) -> Result<ClockId> {
    Ok(match id {
        0 => ClockId::CLOCK_REALTIME,
        1 => ClockId::CLOCK_MONOTONIC,
        2 => ClockId::CLOCK_PROCESS_CPUTIME_ID,
        3 => ClockId::CLOCK_THREAD_CPUTIME_ID,
        _ => return Err(Errno::INVAL),
    })
}

pub(super) fn nanos(ts: nix::sys::time::TimeSpec) -> u64 {
    Duration::from(ts).as_nanos() as u64
}

pub(super) fn clock_res_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, id: i32, res: i32) -> i32 {
    with_memory(env, |_, mem| {
        let ts = clock_getres(clock(id)?).map_err(|_| Errno::INVAL)?;
        write_u64(mem, res, nanos(ts))
    })
}

pub(super) fn clock_time_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, id: i32, _precision: i64, time: i32) -> i32 {
    with_memory(env, |_, mem| {
        let ts = clock_gettime(clock(id)?).map_err(|_| Errno::INVAL)?;
        write_u64(mem, time, nanos(ts))
    })
}

pub(super) fn random_get<S: Stdio>(env: FunctionEnvMut<Host<S>>, buf: i32, len: i32) -> i32 {
    with_memory(env, |h, mem| {
        let (mut at, mut left) = (addr(buf), len as u32 as usize);
        in_memory(mem, at, left)?;
        while left > 0 {
            let n = left.min(COPY_CHUNK);
            h.buffer.resize(n, 0);
            getrandom::fill(&mut h.buffer).map_err(|_| Errno::IO)?;
            write_bytes(mem, at, &h.buffer)?;
            (at, left) = (at + n as u64, left - n);
        }
        Ok(())
    })
}

pub(super) fn proc_exit<S: Stdio>(_env: FunctionEnvMut<Host<S>>, code: i32) -> std::result::Result<(), ExitCode> {
    Err(ExitCode(code as u32))
}

/// zeroperl's bridge to functions its JavaScript host registers. wcgid
/// registers none, and a script cannot: this answers as zeroperl's own host
/// does for an unknown function, with a null value.
pub(super) fn call_host_function<S: Stdio>(_env: FunctionEnvMut<Host<S>>, _id: i32, _argc: i32, _argv: i32) -> i32 {
    0
}

pub(super) fn proc_raise<S: Stdio>(_env: FunctionEnvMut<Host<S>>, _sig: i32) -> i32 {
    i32::from(Errno::NOSYS.0)
}

pub(super) fn sched_yield<S: Stdio>(_env: FunctionEnvMut<Host<S>>) -> i32 {
    0
}
