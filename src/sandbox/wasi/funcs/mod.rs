//! The host functions of `wasi_snapshot_preview1`, one per import name, with
//! the core-Wasm signatures of the WASI snapshot (pointers and sizes as i32,
//! 64-bit values as i64, an errno as the i32 result), as typenames.witx and
//! wasi-libc's `wasi/api.h` declare them. By topic:
//!
//! - `process`: arguments, environment, clocks, randomness, the process;
//! - `io`: reads and writes through iovecs;
//! - `fd`: the other calls on a descriptor, and sockets (none);
//! - `path`: the `path_*` calls;
//! - `poll`: `poll_oneoff`.

mod fd;
mod io;
mod path;
mod poll;
mod process;

use wasmer::{Function, FunctionEnv, Store};

use super::Host;
use crate::sandbox::Stdio;

/// Host memory copied per step between guest memory and a stream, so that a
/// guest cannot make the host allocate its whole memory at once.
const COPY_CHUNK: usize = 64 * 1024;

/// The function WASI defines under `name`, bound to `env`, or `None`.
pub fn host_function<S: Stdio>(name: &str, store: &mut Store, env: &FunctionEnv<Host<S>>) -> Option<Function> {
    macro_rules! f {
        ($func:expr) => {
            Function::new_typed_with_env(store, env, $func)
        };
    }
    Some(match name {
        "args_get" => f!(process::args_get::<S>),
        "args_sizes_get" => f!(process::args_sizes_get::<S>),
        "environ_get" => f!(process::environ_get::<S>),
        "environ_sizes_get" => f!(process::environ_sizes_get::<S>),
        "clock_res_get" => f!(process::clock_res_get::<S>),
        "clock_time_get" => f!(process::clock_time_get::<S>),
        "fd_advise" => f!(fd::fd_advise::<S>),
        "fd_allocate" => f!(fd::fd_allocate::<S>),
        "fd_close" => f!(fd::fd_close::<S>),
        "fd_datasync" => f!(fd::fd_sync::<S>),
        "fd_fdstat_get" => f!(fd::fd_fdstat_get::<S>),
        "fd_fdstat_set_flags" => f!(fd::fd_fdstat_set_flags::<S>),
        "fd_fdstat_set_rights" => f!(fd::fd_fdstat_set_rights::<S>),
        "fd_filestat_get" => f!(fd::fd_filestat_get::<S>),
        "fd_filestat_set_size" => f!(fd::fd_filestat_set_size::<S>),
        "fd_filestat_set_times" => f!(fd::fd_filestat_set_times::<S>),
        "fd_pread" => f!(io::fd_pread::<S>),
        "fd_prestat_get" => f!(fd::fd_prestat_get::<S>),
        "fd_prestat_dir_name" => f!(fd::fd_prestat_dir_name::<S>),
        "fd_pwrite" => f!(io::fd_pwrite::<S>),
        "fd_read" => f!(io::fd_read::<S>),
        "fd_readdir" => f!(fd::fd_readdir::<S>),
        "fd_renumber" => f!(fd::fd_renumber::<S>),
        "fd_seek" => f!(fd::fd_seek::<S>),
        "fd_sync" => f!(fd::fd_sync::<S>),
        "fd_tell" => f!(fd::fd_tell::<S>),
        "fd_write" => f!(io::fd_write::<S>),
        "path_create_directory" => f!(path::path_create_directory::<S>),
        "path_filestat_get" => f!(path::path_filestat_get::<S>),
        "path_filestat_set_times" => f!(path::path_filestat_set_times::<S>),
        "path_link" => f!(path::path_link::<S>),
        "path_open" => f!(path::path_open::<S>),
        "path_readlink" => f!(path::path_readlink::<S>),
        "path_remove_directory" => f!(path::path_remove_directory::<S>),
        "path_rename" => f!(path::path_rename::<S>),
        "path_symlink" => f!(path::path_symlink::<S>),
        "path_unlink_file" => f!(path::path_unlink_file::<S>),
        "poll_oneoff" => f!(poll::poll_oneoff::<S>),
        "proc_exit" => f!(process::proc_exit::<S>),
        "proc_raise" => f!(process::proc_raise::<S>),
        "random_get" => f!(process::random_get::<S>),
        "sched_yield" => f!(process::sched_yield::<S>),
        "sock_accept" => f!(fd::sock_accept::<S>),
        "sock_recv" => f!(fd::sock_recv::<S>),
        "sock_send" => f!(fd::sock_send::<S>),
        "sock_shutdown" => f!(fd::sock_shutdown::<S>),
        super::ZEROPERL_HOST_CALL => f!(process::call_host_function::<S>),
        _ => return None,
    })
}
