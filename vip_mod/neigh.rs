// SPDX-License-Identifier: GPL-2.0

//! Neighbour entries of the outer network (the entry itself is reached through static
//! inlines, in `glue.c`).

use crate::{addr::Ipv4Addr, bindings, netns::Net};

/// Fails the neighbour entry of `addr` if `addr` is on one of `net`'s links and the entry
/// is still unresolved, freeing the packets it holds, as ARP's own timeout would. Returns
/// whether it did. Process context.
pub(crate) fn release_unresolved(net: &Net, addr: Ipv4Addr) -> bool {
    // SAFETY: the namespace is live (a `&Net`); the helper takes and drops its own
    // references on the route and the entry, and we are in process context.
    unsafe { bindings::vip_neigh_release(net.as_ptr(), addr.to_raw()) }
}
