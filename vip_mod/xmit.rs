// SPDX-License-Identifier: GPL-2.0

//! Transmit: a packet routed to a vip device goes, inside IPv4, to the physical address
//! its destination VIP maps to.

use crate::{
    device::NetDevice,
    rcu,
    skb::{SkBuff, IPV4_HEADER_LEN},
    stats::Counter,
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
/// returned. Only a packet handed to the output path counts as sent to its peer.
fn try_xmit(mut skb: SkBuff, dev: &NetDevice) -> Result<(), Counter> {
    let net = dev.net();
    if !skb.is_ipv4() || !skb.may_pull(IPV4_HEADER_LEN) {
        return Err(Counter::TxMalformed);
    }
    // Never plaintext that ESP policy required: dropped, counted (TCP retransmits).
    if skb.xfrm_pending() {
        return Err(Counter::TxXfrmPending);
    }
    let inner = skb.ipv4_header();
    let guard = rcu::Guard::new();
    let Some(mapping) = net.vip().table.lookup(&guard, inner.destination) else {
        crate::events::no_mapping(net, inner.destination);
        return Err(Counter::TxNoMapping);
    };
    if mapping.is_invalid() {
        return Err(Counter::TxInvalid);
    }
    // Route on the DSCP only, as the kernel's tunnels do: ECN bits are not a route key.
    let peer = crate::roam::current_peer(&mapping);
    let route = Route::output(net, peer, inner.tos & DSCP_MASK, skb.hash())
        .map_err(|_| Counter::TxNoRoute)?;
    if route.goes_through(dev) {
        return Err(Counter::TxLoop);
    }
    let mtu = route.mtu().saturating_sub(IPV4_HEADER_LEN);
    if !tunnel::check_mtu(&skb, mtu, inner.dont_fragment()) {
        return Err(Counter::TxTooBig);
    }
    let len = skb.len();
    route
        .send(skb, dev, inner.ttl, inner.tos, inner.dont_fragment())
        .map_err(|_| Counter::TxError)?;
    mapping.count_tx(len);
    Ok(())
}
