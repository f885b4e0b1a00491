// SPDX-License-Identifier: GPL-2.0

//! The `vip` generic netlink family, as `include/uapi/linux/vip.h` documents it.

use crate::{
    bindings,
    genetlink::{self, Command, Family, Permission, Policy, Request},
};
use kernel::prelude::*;

const ATTR_COUNT: usize = bindings::__VIP_A_MAX as usize;

/// Every attribute so far is reply-only, so requests may carry none.
static POLICY: Policy<ATTR_COUNT> = Policy::reject_all();

static OPS: [bindings::genl_small_ops; 1] = [genetlink::small_op::<GetVersion>()];

/// `VIP_CMD_GET_VERSION`: the module version and the protocol version it speaks.
struct GetVersion;

impl Command for GetVersion {
    const CMD: u32 = bindings::VIP_CMD_GET_VERSION;
    const PERMISSION: Permission = Permission::Any;

    fn doit(request: &Request<'_>) -> Result {
        request.reply(Self::CMD, |msg| {
            msg.put_string(bindings::VIP_A_VERSION, crate::VERSION)?;
            msg.put_u32(bindings::VIP_A_GENL_VERSION, bindings::VIP_GENL_VERSION)
        })
    }
}

/// Registers the family; it stays registered until the returned value is dropped.
pub(crate) fn register(module: &'static ThisModule) -> Result<genetlink::Registration> {
    let family = Family {
        name: bindings::VIP_GENL_NAME,
        version: bindings::VIP_GENL_VERSION,
        policy: &POLICY,
        ops: &OPS,
    };
    genetlink::Registration::new(&family, module)
}
