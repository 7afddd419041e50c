//! `poll_oneoff` (typenames.witx: `subscription`, `event`): a 48-byte
//! subscription in, a 32-byte event out per one that is ready.

use std::time::{Duration, Instant};

use nix::time::clock_gettime;
use wasmer::FunctionEnvMut;

use super::process::{clock, nanos};
use crate::sandbox::Stdio;
use crate::sandbox::wasi::{Errno, Host, Stopped, addr, in_memory, read_bytes, with_memory, write_bytes, write_u32};

const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const SUBCLOCK_ABSTIME: u16 = 1;
/// Subscriptions one `poll_oneoff` may carry.
const MAX_SUBSCRIPTIONS: u32 = 256;

/// Clock subscriptions sleep (stdout flushed first) unless the guest's
/// [`Stdio`] stops it meanwhile; fd subscriptions are reported ready at once:
/// stdin and files never block for long here. An unknown subscription tag
/// or clock makes the call invalid; a bad descriptor is reported in its
/// event (BADF), which wasi-libc's `poll` turns into `POLLNVAL`.
pub(super) fn poll_oneoff<S: Stdio>(
    env: FunctionEnvMut<Host<S>>,
    subs: i32,
    events: i32,
    nsubs: i32,
    nevents: i32,
) -> std::result::Result<i32, Stopped> {
    let mut stopped = false;
    let errno = with_memory(env, |h, mem| {
        let n = nsubs as u32;
        if n == 0 || n > MAX_SUBSCRIPTIONS {
            return Err(Errno::INVAL);
        }
        // Checked before any sleep: a call that faults has not waited.
        in_memory(mem, addr(events), 32 * n as usize)?;
        in_memory(mem, addr(nevents), 4)?;
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut earliest: Option<(Instant, Vec<u64>)> = None;
        for i in 0..u64::from(n) {
            let sub: [u8; 48] = read_bytes(mem, addr(subs) + 48 * i)?;
            let userdata = u64::from_le_bytes(sub[0..8].try_into().expect("8 bytes"));
            // The clock's id, or the descriptor.
            let id = u32::from_le_bytes(sub[16..20].try_into().expect("4 bytes"));
            match sub[8] {
                EVENTTYPE_CLOCK => {
                    let clock = clock(id as i32)?;
                    let timeout = u64::from_le_bytes(sub[24..32].try_into().expect("8 bytes"));
                    let flags = u16::from_le_bytes(sub[40..42].try_into().expect("2 bytes"));
                    let wait = if flags & SUBCLOCK_ABSTIME != 0 {
                        let now_ns = nanos(clock_gettime(clock).map_err(|_| Errno::INVAL)?);
                        Duration::from_nanos(timeout.saturating_sub(now_ns))
                    } else {
                        Duration::from_nanos(timeout)
                    };
                    let due = now + wait;
                    match &mut earliest {
                        Some((at, ids)) if *at == due => ids.push(userdata),
                        Some((at, _)) if *at < due => {}
                        _ => earliest = Some((due, vec![userdata])),
                    }
                }
                tag @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => {
                    let errno = h.fds.get(id as i32).map_or(Errno::BADF, |_| Errno::SUCCESS);
                    ready.push((userdata, tag, errno));
                }
                _ => return Err(Errno::INVAL),
            }
        }
        if ready.is_empty() {
            let (due, ids) = earliest.expect("n > 0 and no fd subscriptions");
            h.io().flush().map_err(|_| Errno::PIPE)?;
            if !h.io().sleep(due.saturating_duration_since(Instant::now())) {
                stopped = true;
                return Ok(());
            }
            ready.extend(ids.into_iter().map(|u| (u, EVENTTYPE_CLOCK, Errno::SUCCESS)));
        }
        for (i, (userdata, tag, errno)) in ready.iter().enumerate() {
            let mut event = [0u8; 32];
            event[0..8].copy_from_slice(&userdata.to_le_bytes());
            event[8..10].copy_from_slice(&errno.0.to_le_bytes());
            event[10] = *tag;
            write_bytes(mem, addr(events) + 32 * i as u64, &event)?;
        }
        write_u32(mem, nevents, ready.len() as u32)
    });
    if stopped { Err(Stopped) } else { Ok(errno) }
}
