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

/// Makes the one table of host functions: [`NAMES`] and [`host_function`].
macro_rules! table {
    ($($name:expr => $module:ident::$func:ident,)*) => {
        /// Every name `host_function` answers to.
        pub const NAMES: &[&str] = &[$($name),*];

        /// The function WASI defines under `name`, bound to `env`, or `None`.
        pub fn host_function<S: Stdio>(name: &str, store: &mut Store, env: &FunctionEnv<Host<S>>) -> Option<Function> {
            $(if name == $name {
                return Some(Function::new_typed_with_env(store, env, $module::$func::<S>));
            })*
            None
        }
    };
}

table! {
    "args_get" => process::args_get,
    "args_sizes_get" => process::args_sizes_get,
    "environ_get" => process::environ_get,
    "environ_sizes_get" => process::environ_sizes_get,
    "clock_res_get" => process::clock_res_get,
    "clock_time_get" => process::clock_time_get,
    "fd_advise" => fd::fd_advise,
    "fd_allocate" => fd::fd_allocate,
    "fd_close" => fd::fd_close,
    "fd_datasync" => fd::fd_sync,
    "fd_fdstat_get" => fd::fd_fdstat_get,
    "fd_fdstat_set_flags" => fd::fd_fdstat_set_flags,
    "fd_fdstat_set_rights" => fd::fd_fdstat_set_rights,
    "fd_filestat_get" => fd::fd_filestat_get,
    "fd_filestat_set_size" => fd::fd_filestat_set_size,
    "fd_filestat_set_times" => fd::fd_filestat_set_times,
    "fd_pread" => io::fd_pread,
    "fd_prestat_get" => fd::fd_prestat_get,
    "fd_prestat_dir_name" => fd::fd_prestat_dir_name,
    "fd_pwrite" => io::fd_pwrite,
    "fd_read" => io::fd_read,
    "fd_readdir" => fd::fd_readdir,
    "fd_renumber" => fd::fd_renumber,
    "fd_seek" => fd::fd_seek,
    "fd_sync" => fd::fd_sync,
    "fd_tell" => fd::fd_tell,
    "fd_write" => io::fd_write,
    "path_create_directory" => path::path_create_directory,
    "path_filestat_get" => path::path_filestat_get,
    "path_filestat_set_times" => path::path_filestat_set_times,
    "path_link" => path::path_link,
    "path_open" => path::path_open,
    "path_readlink" => path::path_readlink,
    "path_remove_directory" => path::path_remove_directory,
    "path_rename" => path::path_rename,
    "path_symlink" => path::path_symlink,
    "path_unlink_file" => path::path_unlink_file,
    "poll_oneoff" => poll::poll_oneoff,
    "proc_exit" => process::proc_exit,
    "proc_raise" => process::proc_raise,
    "random_get" => process::random_get,
    "sched_yield" => process::sched_yield,
    "sock_accept" => fd::sock_accept,
    "sock_recv" => fd::sock_recv,
    "sock_send" => fd::sock_send,
    "sock_shutdown" => fd::sock_shutdown,
    super::ZEROPERL_HOST_CALL => process::call_host_function,
}
