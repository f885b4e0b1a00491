// SPDX-License-Identifier: GPL-2.0

//! Routing the outer packet and sending it: a thin layer over the kernel's IPv4 routing
//! and `iptunnel_xmit`, as the kernel's own tunnels use them.

use crate::{addr::Ipv4Addr, bindings, device::NetDevice, netns::Net, skb::SkBuff};
use core::ptr::NonNull;
use kernel::prelude::*;

/// A route to a peer's physical address, with the flow it was looked up for.
///
/// # Invariants
///
/// `rt` holds a reference on a valid route, released on drop unless consumed.
pub(crate) struct Route {
    rt: NonNull<bindings::rtable>,
    flow: bindings::flowi4,
}

impl Route {
    /// Looks up the route for IPIP packets to `destination` with type of service `tos`;
    /// `inner_hash`, the inner packet's flow hash, picks among equal-cost paths (ECMP).
    pub(crate) fn output(
        net: &Net,
        destination: Ipv4Addr,
        tos: u8,
        inner_hash: u32,
    ) -> Result<Self> {
        let mut flow = bindings::flowi4::default();
        // SAFETY: `net` is live; `flow` is ours to fill in.
        let rt = unsafe {
            bindings::vip_route_output(
                net.as_ptr(),
                &mut flow,
                destination.to_raw(),
                tos,
                0,
                inner_hash,
            )
        };
        let rt = kernel::error::from_err_ptr(rt)?;
        // INVARIANT: a successful lookup returns a referenced route.
        Ok(Self {
            rt: NonNull::new(rt).ok_or(EINVAL)?,
            flow,
        })
    }

    /// Whether the route goes out through `dev` (a loop: the peer's address routes back
    /// into the tunnel).
    pub(crate) fn goes_through(&self, dev: &NetDevice) -> bool {
        // SAFETY: valid (type invariant).
        unsafe { bindings::vip_rt_dev(self.rt.as_ptr()) == dev.as_ptr() }
    }

    /// The path MTU toward the peer.
    pub(crate) fn mtu(&self) -> u32 {
        // SAFETY: valid (type invariant).
        unsafe { bindings::vip_rt_mtu(self.rt.as_ptr()) }
    }

    /// Headroom the outer headers need on this route: the output device's link layer, the
    /// outer IPv4 header, and what transforms on the route add (IPsec's `header_len`).
    fn headroom(&self) -> u32 {
        // SAFETY: valid (type invariant), and so is the route's device.
        unsafe {
            bindings::vip_ll_reserved_space(bindings::vip_rt_dev(self.rt.as_ptr()))
                + crate::skb::IPV4_HEADER_LEN
                + bindings::vip_rt_header_len(self.rt.as_ptr())
        }
    }

    /// Encapsulates `skb` (an IPv4 packet routed to `dev`) in an IPIP header and sends it on
    /// this route. `ttl` and the DF bit are the inner packet's, the outer TOS its
    /// ECN-adjusted TOS.
    pub(crate) fn send(
        self,
        skb: SkBuff,
        dev: &NetDevice,
        ttl: u8,
        tos: u8,
        dont_fragment: bool,
    ) -> Result {
        // As ip_tunnel_xmit: the device learns the headroom its routes need, so the stack
        // builds the next packets with room for it and this rarely reallocates.
        dev.raise_needed_headroom(self.headroom());
        // SAFETY: `skb` is valid and ours.
        if unsafe { bindings::vip_skb_cow_head(skb.as_ptr(), dev.needed_headroom()) } != 0 {
            return Err(ENOMEM);
        }
        // SAFETY: as above; on failure the buffer stays ours (and is freed by `skb`'s drop).
        kernel::error::to_result(unsafe {
            bindings::iptunnel_handle_offloads(skb.as_ptr(), bindings::VIP_SKB_GSO_IPXIP4)
        })?;
        // SAFETY: the network header is the inner IPv4 header, which the caller pulled.
        let tos = unsafe {
            bindings::vip_ecn_encap(tos, bindings::vip_ip_hdr(skb.as_ptr()), skb.as_ptr())
        };
        let df = if dont_fragment {
            (bindings::IP_DF as u16).to_be()
        } else {
            0
        };
        let rt = core::mem::ManuallyDrop::new(self);
        // SAFETY: iptunnel_xmit consumes the route reference and the buffer whatever
        // happens; the flow's addresses are those the route was looked up for.
        unsafe {
            bindings::iptunnel_xmit(
                core::ptr::null_mut(),
                rt.rt.as_ptr(),
                skb.into_raw(),
                rt.flow.saddr,
                rt.flow.daddr,
                bindings::IPPROTO_IPIP as u8,
                tos,
                ttl,
                df,
                false,
            )
        };
        Ok(())
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        // SAFETY: we hold a reference (type invariant).
        unsafe { bindings::vip_ip_rt_put(self.rt.as_ptr()) };
    }
}

/// Lowers the inner packet's path MTU to `mtu` if that is less than its route has now and,
/// if the packet forbids fragmentation and does not fit, answers with ICMP "fragmentation
/// needed". Returns false when the packet must be dropped. Only a real decrease touches the
/// route: each update makes a route exception for the destination, under a global lock.
pub(crate) fn check_mtu(skb: &SkBuff, mtu: u32, dont_fragment: bool) -> bool {
    if mtu < skb.dst_mtu() {
        // SAFETY: valid buffer with a valid route (it has an MTU).
        unsafe { bindings::vip_skb_dst_update_pmtu(skb.as_ptr(), mtu) };
    }
    let fits = if skb.is_gso() {
        skb.gso_fits(mtu)
    } else {
        skb.len() <= mtu
    };
    if !fits && dont_fragment {
        // SAFETY: valid buffer with its IPv4 header in place; the ICMP goes to its source.
        unsafe { bindings::vip_icmp_frag_needed(skb.as_ptr(), mtu) };
        return false;
    }
    true
}
