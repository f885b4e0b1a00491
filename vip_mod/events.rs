// SPDX-License-Identifier: GPL-2.0

//! Events for the daemon, multicast from the data path: a packet to a VIP without
//! mapping, from a VIP without mapping, from a mapped VIP at another address.

use crate::{addr::Ipv4Addr, bindings, genetlink, netns::Net, stats::Counter};
use kernel::prelude::*;

fn send(net: &Net, cmd: u32, build: impl FnOnce(&mut genetlink::Writer<'_>) -> Result) {
    if !genetlink::has_listeners(net) {
        return;
    }
    let vip = net.vip();
    if !vip.event_allowed() || genetlink::multicast(net, cmd, build).is_err() {
        vip.stats.count(Counter::EventsDropped);
    }
}

/// A packet was sent to `vip`, which has no mapping.
pub(crate) fn no_mapping(net: &Net, vip: Ipv4Addr) {
    send(net, bindings::VIP_CMD_EVENT_NO_MAPPING, |msg| {
        msg.put_be32(bindings::VIP_A_PEER_VIP, vip.to_raw())
    });
}

/// A packet came from `peer`, which has no mapping, to `local`, from `seen`.
pub(crate) fn unknown(net: &Net, peer: Ipv4Addr, local: Ipv4Addr, seen: Ipv4Addr) {
    send(net, bindings::VIP_CMD_EVENT_UNKNOWN, |msg| {
        msg.put_be32(bindings::VIP_A_PEER_VIP, peer.to_raw())?;
        msg.put_be32(bindings::VIP_A_LOCAL_VIP, local.to_raw())?;
        msg.put_be32(bindings::VIP_A_SEEN_IP4, seen.to_raw())
    });
}

/// A packet from `peer`, mapped to `mapped`, came from `seen`.
pub(crate) fn moved(net: &Net, peer: Ipv4Addr, mapped: Ipv4Addr, seen: Ipv4Addr) {
    send(net, bindings::VIP_CMD_EVENT_MOVED, |msg| {
        msg.put_be32(bindings::VIP_A_PEER_VIP, peer.to_raw())?;
        msg.put_be32(bindings::VIP_A_PEER_IP4, mapped.to_raw())?;
        msg.put_be32(bindings::VIP_A_SEEN_IP4, seen.to_raw())
    });
}
