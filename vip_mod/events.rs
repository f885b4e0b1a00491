// SPDX-License-Identifier: GPL-2.0

//! Events for the daemon. From the data path: a packet to a VIP without mapping, from a VIP
//! without mapping, from a mapped VIP at another address; anyone who can send packets can
//! cause those, so each kind has its own budget, the same event is sent at most once a
//! second, and only VIPs cause any. From `VIP_CMD_MAP_SET` and roams: a peer's address
//! changed.

use crate::{
    addr::Ipv4Addr, bindings, genetlink, netns::Net, ratelimit::RateLimit, stats::Counter,
};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// Recently sent events of one kind, by key; a collision just forgets the older one.
const RECENT_SLOTS: usize = 64;

/// The data path's event kinds, each with its own budget.
#[derive(Clone, Copy)]
enum Kind {
    NoMapping,
    Unknown,
    Moved,
}

/// The limits on one kind of event in one namespace.
#[pin_data]
struct Limit {
    /// `VIP_EVENT_BURST` a second.
    #[pin]
    budget: RateLimit,
    /// The key of an event sent in the last second, and when (jiffies, low 32 bits): the
    /// key in the high half, the time in the low half.
    recent: [AtomicU64; RECENT_SLOTS],
}

impl Limit {
    fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            budget <- RateLimit::per_second(bindings::VIP_EVENT_BURST),
            recent: [const { AtomicU64::new(0) }; RECENT_SLOTS],
        })
    }

    /// Whether an event with `key` may be sent now: not sent in the last second, and within
    /// the budget. Only the data path's VIPs are keys, so the zeroed slots match nothing.
    fn allow(&self, key: u32) -> bool {
        let now = crate::time::jiffies() as u32;
        let slot = &self.recent[(key.wrapping_mul(0x9e37_79b1) >> 26) as usize];
        let last = slot.load(Ordering::Relaxed);
        if (last >> 32) as u32 == key && now.wrapping_sub(last as u32) < bindings::VIP_HZ {
            return false;
        }
        if !self.budget.allow() {
            return false;
        }
        slot.store(u64::from(key) << 32 | u64::from(now), Ordering::Relaxed);
        true
    }
}

/// The event limits of one namespace.
#[pin_data]
pub(crate) struct Limits {
    #[pin]
    no_mapping: Limit,
    #[pin]
    unknown: Limit,
    #[pin]
    moved: Limit,
}

impl Limits {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            no_mapping <- Limit::new(),
            unknown <- Limit::new(),
            moved <- Limit::new(),
        })
    }

    fn allow(&self, kind: Kind, key: u32) -> bool {
        match kind {
            Kind::NoMapping => self.no_mapping.allow(key),
            Kind::Unknown => self.unknown.allow(key),
            Kind::Moved => self.moved.allow(key),
        }
    }
}

/// A key for an event about `peer` seen from `seen`: one per pair.
fn pair_key(peer: Ipv4Addr, seen: Ipv4Addr) -> u32 {
    peer.to_raw() ^ seen.to_raw().rotate_left(16)
}

fn send(
    net: &Net,
    kind: Kind,
    key: u32,
    cmd: u32,
    build: impl FnOnce(&mut genetlink::Writer<'_>) -> Result,
) {
    if !genetlink::has_listeners(net) {
        return;
    }
    let vip = net.vip();
    if !vip.events.allow(kind, key) || genetlink::multicast(net, cmd, build).is_err() {
        vip.stats.count(Counter::EventsDropped);
    }
}

/// A packet was sent to `vip`, which has no mapping.
pub(crate) fn no_mapping(net: &Net, vip: Ipv4Addr) {
    if !vip.is_vip() {
        return;
    }
    send(
        net,
        Kind::NoMapping,
        vip.to_raw(),
        bindings::VIP_CMD_EVENT_NO_MAPPING,
        |msg| msg.put_be32(bindings::VIP_A_PEER_VIP, vip.to_raw()),
    );
}

/// A packet came from `peer`, which has no mapping, to `local`, from `seen`.
pub(crate) fn unknown(net: &Net, peer: Ipv4Addr, local: Ipv4Addr, seen: Ipv4Addr) {
    if !peer.is_vip() || !local.is_vip() {
        return;
    }
    send(
        net,
        Kind::Unknown,
        pair_key(peer, seen),
        bindings::VIP_CMD_EVENT_UNKNOWN,
        |msg| {
            msg.put_be32(bindings::VIP_A_PEER_VIP, peer.to_raw())?;
            msg.put_be32(bindings::VIP_A_LOCAL_VIP, local.to_raw())?;
            msg.put_be32(bindings::VIP_A_SEEN_IP4, seen.to_raw())
        },
    );
}

/// A packet from `peer`, mapped to `mapped`, came from `seen`.
pub(crate) fn moved(net: &Net, peer: Ipv4Addr, mapped: Ipv4Addr, seen: Ipv4Addr) {
    send(
        net,
        Kind::Moved,
        pair_key(peer, seen),
        bindings::VIP_CMD_EVENT_MOVED,
        |msg| {
            msg.put_be32(bindings::VIP_A_PEER_VIP, peer.to_raw())?;
            msg.put_be32(bindings::VIP_A_PEER_IP4, mapped.to_raw())?;
            msg.put_be32(bindings::VIP_A_SEEN_IP4, seen.to_raw())
        },
    );
}

/// The module moved `peer` from `old` to `new`, the source of an authenticated packet
/// (`roam`). In process context; only authenticated packets cause these, so they are not
/// limited.
pub(crate) fn roamed(net: &Net, peer: Ipv4Addr, old: Ipv4Addr, new: Ipv4Addr) {
    address_event(net, bindings::VIP_CMD_EVENT_ROAMED, peer, old, new);
}

/// `VIP_CMD_MAP_SET` (or a roam) moved `peer` from `old` to `new`. In process context;
/// administrators (or authenticated packets) cause these, so they are not limited.
pub(crate) fn mapping_changed(net: &Net, peer: Ipv4Addr, old: Ipv4Addr, new: Ipv4Addr) {
    address_event(net, bindings::VIP_CMD_EVENT_MAPPING_CHANGED, peer, old, new);
}

fn address_event(net: &Net, cmd: u32, peer: Ipv4Addr, old: Ipv4Addr, new: Ipv4Addr) {
    if !genetlink::has_listeners(net) {
        return;
    }
    let sent = genetlink::multicast(net, cmd, |msg| {
        msg.put_be32(bindings::VIP_A_PEER_VIP, peer.to_raw())?;
        msg.put_be32(bindings::VIP_A_OLD_IP4, old.to_raw())?;
        msg.put_be32(bindings::VIP_A_PEER_IP4, new.to_raw())
    });
    if sent.is_err() {
        net.vip().stats.count(Counter::EventsDropped);
    }
}
