// SPDX-License-Identifier: GPL-2.0

//! Transmit: a packet routed to a vip device goes, inside IPv4, to the physical address
//! its destination VIP maps to.

use crate::{
    device::NetDevice,
    skb::{SkBuff, IPV4_HEADER_LEN},
    stats::Counter,
    table::TxLookup,
    tunnel::{self, Route},
};

/// The DSCP bits of the TOS byte (`INET_DSCP_MASK`).
const DSCP_MASK: u8 = 0xfc;

/// Sends `skb`, or drops it and counts why.
pub(crate) fn xmit(skb: SkBuff, dev: &NetDevice) {
    if let Err(reason) = try_xmit(skb, dev) {
        dev.net().vip().stats.count(reason);
        dev.tx_dropped();
    }
}

/// Sends `skb`; on error the packet has been dropped (the buffer freed) for the reason
/// returned.
fn try_xmit(mut skb: SkBuff, dev: &NetDevice) -> Result<(), Counter> {
    let net = dev.net();
    if !skb.is_ipv4() || !skb.may_pull(IPV4_HEADER_LEN) {
        return Err(Counter::TxMalformed);
    }
    let inner = skb.ipv4_header();
    let peer = match net.vip().table.lookup_tx(inner.destination, skb.len()) {
        TxLookup::Peer(peer) => peer,
        TxLookup::Invalid => return Err(Counter::TxInvalid),
        TxLookup::Missing => {
            crate::events::no_mapping(net, inner.destination);
            return Err(Counter::TxNoMapping);
        }
    };
    // Route on the DSCP only, as the kernel's tunnels do: ECN bits are not a route key.
    let route = Route::output(net, peer, inner.tos & DSCP_MASK).map_err(|_| Counter::TxNoRoute)?;
    if route.goes_through(dev) {
        return Err(Counter::TxLoop);
    }
    let mtu = route.mtu().saturating_sub(IPV4_HEADER_LEN);
    if !tunnel::check_mtu(&skb, mtu, inner.dont_fragment()) {
        return Err(Counter::TxTooBig);
    }
    route
        .send(skb, inner.ttl, inner.tos, inner.dont_fragment())
        .map_err(|_| Counter::TxError)
}
