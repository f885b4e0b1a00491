// SPDX-License-Identifier: GPL-2.0

//! TCP sockets of a namespace, found by walking its established hash (the walk itself is
//! in `glue.c`: its lists are macros).

use crate::{addr::Ipv4Addr, bindings, netns::Net};
use core::ptr::NonNull;
use kernel::ffi;

/// Sockets collected per call, with the hash bucket's lock held (as `inet_diag` does).
const BATCH: usize = 16;

/// A full TCP socket we hold a reference on.
///
/// # Invariants
///
/// `sk` is a full (not time-wait or request) TCP socket, and we own one reference on it.
pub(crate) struct TcpSocket {
    sk: NonNull<bindings::sock>,
}

/// What a kick did to a socket (`vip_tcp_kick` in `glue.c`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kick {
    /// Left alone: nothing in flight, a timeout already due, ACKs still arriving, or a
    /// state where TCP sends no loss probe.
    None,
    /// A timeout that had fired already: its backoff undone, it retransmits now.
    Retransmit,
    /// Segments in flight, no timeout fired, no ACK for two RTTs: a loss probe goes now.
    Probe,
}

impl TcpSocket {
    /// Has the socket send now what its retransmission or loss-probe timer would send later
    /// (its peer was just re-pointed). Sleeps for the socket lock.
    pub(crate) fn kick(&self) -> Kick {
        // SAFETY: a referenced full TCP socket (type invariant); we are in process context,
        // and `vip_tcp_kick` runs under the lock it needs.
        let done = unsafe {
            bindings::vip_lock_sock(self.sk.as_ptr());
            let done = bindings::vip_tcp_kick(self.sk.as_ptr());
            bindings::release_sock(self.sk.as_ptr());
            done
        };
        match u32::try_from(done) {
            Ok(bindings::VIP_KICK_RETRANSMIT) => Kick::Retransmit,
            Ok(bindings::VIP_KICK_PROBE) => Kick::Probe,
            _ => Kick::None,
        }
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        // SAFETY: we own a reference (type invariant).
        unsafe { bindings::sock_gen_put(self.sk.as_ptr()) };
    }
}

/// A walk over a namespace's TCP sockets, in batches.
pub(crate) struct TcpWalk<'a> {
    net: &'a Net,
    bucket: u32,
    skip: u32,
}

/// Calls the `&dyn Fn` that `ctx` points to; the C walk's filter.
///
/// # Safety
///
/// `ctx` must point to a `&dyn Fn(Ipv4Addr) -> bool` valid during the call.
unsafe extern "C" fn call_filter(ctx: *const ffi::c_void, daddr: u32) -> bool {
    // SAFETY: guaranteed by the caller (`next_batch` passes such a pointer).
    let filter = unsafe { &*ctx.cast::<&dyn Fn(Ipv4Addr) -> bool>() };
    filter(Ipv4Addr::from_raw(daddr))
}

impl<'a> TcpWalk<'a> {
    pub(crate) fn new(net: &'a Net) -> Self {
        Self {
            net,
            bucket: 0,
            skip: 0,
        }
    }

    /// Whether the walk has been through every bucket.
    pub(crate) fn done(&self) -> bool {
        // SAFETY: the namespace is live.
        unsafe { bindings::vip_tcp_walk_done(self.net.as_ptr(), self.bucket) }
    }

    /// Calls `each` on the next few sockets whose peer address `wanted` accepts. `wanted`
    /// runs under a hash bucket's spinlock: it must not sleep. `each` may.
    pub(crate) fn next_batch(
        &mut self,
        wanted: &dyn Fn(Ipv4Addr) -> bool,
        mut each: impl FnMut(TcpSocket),
    ) {
        let mut socks = [core::ptr::null_mut::<bindings::sock>(); BATCH];
        let ctx: *const &dyn Fn(Ipv4Addr) -> bool = &wanted;
        // SAFETY: the namespace is live; `ctx` points to `wanted`, which outlives the call;
        // `socks` has room for `BATCH` pointers.
        let n = unsafe {
            bindings::vip_tcp_collect(
                self.net.as_ptr(),
                &mut self.bucket,
                &mut self.skip,
                Some(call_filter),
                ctx.cast(),
                socks.as_mut_ptr(),
                BATCH as u32,
            )
        };
        for &sk in socks.iter().take(n as usize) {
            if let Some(sk) = NonNull::new(sk) {
                // INVARIANT: the walk hands back full TCP sockets with a reference each.
                each(TcpSocket { sk });
            }
        }
    }
}
