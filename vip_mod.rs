// SPDX-License-Identifier: GPL-2.0

//! VIP: a virtual IP layer for transparent host mobility.
//!
//! Applications address peers by virtual IPs (class-E tokens that stand for a peer's DNS
//! name); this module carries those packets inside IPv4 to the peer's current physical
//! address. Userspace (`vipd`, `vipctl`) drives it over the `vip` generic netlink family.
//!
//! Layout: wrappers that hold the `unsafe` (`bindings`, generated; `genetlink`; `rcu`;
//! `netns`, per-namespace state; `table`, the mapping table) and safe logic on top
//! (`netlink`, the family's commands; `addr`; `time`).

use kernel::{c_str, prelude::*};

// The crate root is not a `mod.rs`, so its submodules need their paths spelled out.
#[path = "vip_mod/addr.rs"]
mod addr;
#[path = "vip_mod/bindings.rs"]
mod bindings;
#[path = "vip_mod/genetlink.rs"]
mod genetlink;
#[path = "vip_mod/netlink.rs"]
mod netlink;
#[path = "vip_mod/netns.rs"]
mod netns;
#[path = "vip_mod/rcu.rs"]
mod rcu;
#[path = "vip_mod/table.rs"]
mod table;
#[path = "vip_mod/time.rs"]
mod time;

/// The module version reported over netlink; the userland workspace carries the same.
pub(crate) const VERSION: &CStr = c_str!("0.1.0");

module! {
    type: VipModule,
    name: "vip",
    author: "VIP developers",
    description: "Virtual IP layer for transparent host mobility",
    license: "GPL",
}

/// Everything the module registers. Fields drop in declaration order, the reverse of
/// `init`: userspace loses the family first, then every namespace's table goes (after a
/// grace period), and the mapping cache last, once deferred frees have run.
struct VipModule {
    _family: genetlink::Registration,
    _pernet: netns::Registration,
    _cache: table::CacheRegistration,
}

impl kernel::Module for VipModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let cache = table::CacheRegistration::new()?;
        let pernet = netns::Registration::new()?;
        let family = netlink::register(module)?;
        pr_info!("version {} loaded\n", VERSION);
        Ok(VipModule {
            _family: family,
            _pernet: pernet,
            _cache: cache,
        })
    }
}
