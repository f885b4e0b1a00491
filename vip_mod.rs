// SPDX-License-Identifier: GPL-2.0

//! VIP: a virtual IP layer for transparent host mobility.
//!
//! Applications address peers by virtual IPs (class-E tokens that stand for a peer's DNS
//! name); this module carries those packets inside IPv4 to the peer's current physical
//! address. Userspace (`vipd`, `vipctl`) drives it over the `vip` generic netlink family.
//!
//! Layout: `bindings` (generated), `genetlink` (the safe wrapper that holds the `unsafe`),
//! `netlink` (the family's commands).

use kernel::{c_str, prelude::*};

// The crate root is not a `mod.rs`, so its submodules need their paths spelled out.
#[path = "vip_mod/bindings.rs"]
mod bindings;
#[path = "vip_mod/genetlink.rs"]
mod genetlink;
#[path = "vip_mod/netlink.rs"]
mod netlink;

/// The module version reported over netlink; the userland workspace carries the same.
pub(crate) const VERSION: &CStr = c_str!("0.1.0");

module! {
    type: VipModule,
    name: "vip",
    author: "VIP developers",
    description: "Virtual IP layer for transparent host mobility",
    license: "GPL",
}

struct VipModule {
    _family: genetlink::Registration,
}

impl kernel::Module for VipModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let family = netlink::register(module)?;
        pr_info!("version {} loaded\n", VERSION);
        Ok(VipModule { _family: family })
    }
}
