// SPDX-License-Identifier: GPL-2.0

//! VIP: a virtual IP layer for transparent host mobility.
//!
//! Applications address peers by virtual IPs (class-E tokens that stand for a peer's DNS
//! name); this module carries those packets inside IPv4 to the peer's current physical
//! address. Userspace (`vipd`, `vipctl`) drives it over the `vip` generic netlink family.
//!
//! Layout: wrappers that hold the `unsafe` (`bindings`, generated; `genetlink`; `rcu`;
//! `netns`, per-namespace state; `table`, the mapping table; `device`, the `vip` link
//! type; `skb` and `tunnel`, packets and routes; `sock`, TCP sockets; `neigh`, neighbour entries; `work`, work items)
//! and logic on top (`netlink`, the family's commands; `xmit` and `receive`, the data
//! path; `roam`, mappings that follow authenticated packets; `events`; `kick`, TCP
//! recovery after a peer moves; `stats`; `addr`; `time`).

use kernel::{c_str, prelude::*};

// The crate root is not a `mod.rs`, so its submodules need their paths spelled out.
#[path = "vip_mod/addr.rs"]
mod addr;
#[path = "vip_mod/bindings.rs"]
mod bindings;
#[path = "vip_mod/device.rs"]
mod device;
#[path = "vip_mod/events.rs"]
mod events;
#[path = "vip_mod/genetlink.rs"]
mod genetlink;
#[path = "vip_mod/kick.rs"]
mod kick;
#[path = "vip_mod/neigh.rs"]
mod neigh;
#[path = "vip_mod/netlink.rs"]
mod netlink;
#[path = "vip_mod/netns.rs"]
mod netns;
#[path = "vip_mod/ratelimit.rs"]
mod ratelimit;
#[path = "vip_mod/rcu.rs"]
mod rcu;
#[path = "vip_mod/receive.rs"]
mod receive;
#[path = "vip_mod/roam.rs"]
mod roam;
#[path = "vip_mod/skb.rs"]
mod skb;
#[path = "vip_mod/sock.rs"]
mod sock;
#[path = "vip_mod/stats.rs"]
mod stats;
#[path = "vip_mod/table.rs"]
mod table;
#[path = "vip_mod/time.rs"]
mod time;
#[path = "vip_mod/tunnel.rs"]
mod tunnel;
#[path = "vip_mod/work.rs"]
mod work;
#[path = "vip_mod/xmit.rs"]
mod xmit;

/// The module version reported over netlink; the userland workspace carries the same.
pub(crate) const VERSION: &CStr = c_str!("0.1.0");

module! {
    type: VipModule,
    name: "vip",
    author: "VIP developers",
    description: "Virtual IP layer for transparent host mobility",
    license: "GPL",
    // Loaded on demand by `ip link add ... type vip` and by the family's first user.
    alias: ["rtnl-link-vip", "net-pf-16-proto-16-family-vip"],
}

/// Everything the module registers. Fields drop in declaration order, the reverse of
/// `init`: userspace loses the family first, then every vip device goes, then XFRM's
/// callbacks (which use the namespaces' tables), then every namespace's hook and table
/// (unregister, grace period, free), and the mapping cache last, once deferred frees have
/// run.
struct VipModule {
    _family: genetlink::Registration,
    _link: device::LinkRegistration,
    _esp: roam::Registration,
    _pernet: netns::Registration,
    _cache: table::CacheRegistration,
}

impl kernel::Module for VipModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let cache = table::CacheRegistration::new()?;
        let pernet = netns::Registration::new()?;
        let esp = roam::Registration::new()?;
        let link = device::LinkRegistration::new()?;
        let family = netlink::register(module)?;
        pr_info!("version {} loaded\n", VERSION);
        Ok(VipModule {
            _family: family,
            _link: link,
            _esp: esp,
            _pernet: pernet,
            _cache: cache,
        })
    }
}
