// SPDX-License-Identifier: GPL-2.0

//! Prompt TCP recovery when a peer moves: the paper's `callOnChange` for TCP (section 4.3).
//!
//! When `VIP_CMD_MAP_SET` changes where a peer is, TCP sockets to that peer that wait out a
//! retransmission backoff sent their last tries to the old address; left alone they would
//! try again only when the (doubled) timeout expires, seconds later. A work item collects
//! the changed VIPs, walks the namespace's TCP hash once for all of them, and has those
//! sockets retransmit at once with the backoff undone, as RFC 6069 does when an ICMP error
//! shows that a path is back. Sockets whose timeout has not fired yet but whose segments
//! in flight were lost on the way (a window full of them stalls the sender until the
//! timeout) send a loss probe at once instead.

use crate::{
    addr::Ipv4Addr,
    bindings, neigh,
    netns::Net,
    sock::{Kick, TcpWalk},
    stats::Counter,
    work::Work,
};
use kernel::{new_spinlock, prelude::*, sync::SpinLock};

/// Changed VIPs remembered until the work runs; beyond that, every VIP peer is kicked.
const PENDING_MAX: usize = 64;

/// The peers to kick.
struct Pending {
    vips: [Ipv4Addr; PENDING_MAX],
    len: usize,
    /// Too many changed at once: kick every socket whose peer is a VIP.
    all: bool,
    /// Addresses the peers left, whose unresolved neighbour entries may hold packets.
    left: [Ipv4Addr; PENDING_MAX],
    left_len: usize,
}

/// Kicks the TCP sockets of one namespace.
#[pin_data]
pub(crate) struct Kicker {
    #[pin]
    pending: SpinLock<Pending>,
    #[pin]
    work: Work,
    /// The namespace, alive while this is (see `netns`).
    net: *mut bindings::net,
}

// SAFETY: `net` is only read, and the namespace outlives the kicker; the rest is
// synchronised (spinlock, workqueue).
unsafe impl Send for Kicker {}
// SAFETY: as above.
unsafe impl Sync for Kicker {}

impl Kicker {
    /// A kicker for `net`, whose state it lives in. The owner must call `cancel` before the
    /// kicker goes.
    pub(crate) fn new(net: *mut bindings::net) -> impl PinInit<Self> {
        pin_init!(Self {
            pending <- new_spinlock!(Pending {
                vips: [Ipv4Addr::UNSPECIFIED; PENDING_MAX],
                len: 0,
                all: false,
                left: [Ipv4Addr::UNSPECIFIED; PENDING_MAX],
                left_len: 0,
            }),
            work <- Work::new(run),
            net,
        })
    }

    /// Has the sockets to `vip` kicked soon, in process context; `left` is the address the
    /// peer moved away from, if it did.
    pub(crate) fn kick(&self, vip: Ipv4Addr, left: Option<Ipv4Addr>) {
        {
            let mut pending = self.pending.lock();
            // Beyond the array, ARP's own timeout frees what waits for the address.
            if let Some(left) = left {
                let n = pending.left_len;
                if n < PENDING_MAX && !pending.left[..n].contains(&left) {
                    pending.left[n] = left;
                    pending.left_len += 1;
                }
            }
            let len = pending.len;
            if !pending.vips[..len].contains(&vip) {
                if len < PENDING_MAX {
                    pending.vips[len] = vip;
                    pending.len += 1;
                } else {
                    pending.all = true;
                }
            }
        }
        self.work.queue();
    }

    /// Cancels a queued run and waits for a running one.
    pub(crate) fn cancel(&self) {
        self.work.cancel_sync();
    }

    fn run(&self) {
        let (vips, len, all, left, left_len) = {
            let mut pending = self.pending.lock();
            let taken = (
                pending.vips,
                pending.len,
                pending.all,
                pending.left,
                pending.left_len,
            );
            pending.len = 0;
            pending.all = false;
            pending.left_len = 0;
            taken
        };
        if len == 0 && !all {
            return;
        }
        // SAFETY: the namespace outlives the kicker, whose work is cancelled before it goes.
        let net = unsafe { Net::from_raw(self.net) };
        // First free what waits for the old addresses, or the retransmissions below would
        // be skipped as still queued.
        let released = left[..left_len]
            .iter()
            .filter(|&&addr| neigh::release_unresolved(net, addr))
            .count();
        net.vip().stats.add(Counter::NeighReleased, released as u64);
        let vips = &vips[..len];
        // At most `PENDING_MAX` to compare with, under a hash bucket's lock.
        let wanted = |peer: Ipv4Addr| {
            if all {
                peer.is_vip()
            } else {
                vips.contains(&peer)
            }
        };
        let mut walk = TcpWalk::new(net);
        let (mut kicked, mut probed) = (0, 0);
        while !walk.done() {
            walk.next_batch(&wanted, |socket| match socket.kick() {
                Kick::Retransmit => kicked += 1,
                Kick::Probe => probed += 1,
                Kick::None => {}
            });
            crate::rcu::cond_resched();
        }
        net.vip().stats.add(Counter::TcpKicks, kicked);
        net.vip().stats.add(Counter::TcpProbes, probed);
    }
}

/// # Safety
///
/// Only the workqueue calls this, with the work item of a live `Kicker`.
unsafe extern "C" fn run(work: *mut bindings::work_struct) {
    let offset = core::mem::offset_of!(Kicker, work);
    // SAFETY: `work` is the `work_struct` at the start of a `Kicker`'s `work` field, and the
    // kicker is alive: its owner cancels the work before freeing it.
    let kicker = unsafe { &*work.cast::<u8>().sub(offset).cast::<Kicker>() };
    kicker.run();
}
