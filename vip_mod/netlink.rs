// SPDX-License-Identifier: GPL-2.0

//! The `vip` generic netlink family, as `include/uapi/linux/vip.h` documents it.

use crate::{
    addr::Ipv4Addr,
    bindings, events,
    genetlink::{
        self, AttrKind, Command, Dump, DumpWriter, Family, Ops, Permission, Policy, PolicyRef,
        Request, Writer,
    },
    netns::Net,
    table::{
        MappingInfo, MappingSpec, SetMode, SetOutcome, TableError, Walk, LIMIT_MAX, MAPPING_SIZE,
    },
};
use kernel::{c_str, prelude::*};

const ATTR_COUNT: usize = bindings::__VIP_A_MAX as usize;
const MAP_FLAGS_ALL: u32 = bindings::__VIP_MAP_F_ALL;

/// `VIP_CMD_MAP_SET` takes these; everything else (including the reply-only attributes)
/// is refused by strict validation, as it is for every command.
static MAP_SET_POLICY: Policy<ATTR_COUNT> = Policy::reject_all()
    .accept(bindings::VIP_A_PEER_VIP, AttrKind::Be32)
    .accept(bindings::VIP_A_PEER_IP4, AttrKind::Be32)
    .accept(bindings::VIP_A_LOCAL_VIP, AttrKind::Be32)
    .accept(bindings::VIP_A_FLAGS, AttrKind::U32Mask(MAP_FLAGS_ALL))
    .accept(
        bindings::VIP_A_SET_FLAGS,
        AttrKind::U32Mask(bindings::__VIP_SET_F_ALL),
    );

/// `VIP_CMD_MAP_DEL` and `VIP_CMD_MAP_GET` name one peer VIP.
static PEER_POLICY: Policy<ATTR_COUNT> =
    Policy::reject_all().accept(bindings::VIP_A_PEER_VIP, AttrKind::Be32);

static SET_CONFIG_POLICY: Policy<ATTR_COUNT> = Policy::reject_all()
    .accept(bindings::VIP_A_MAX_MAPPINGS, AttrKind::U32)
    .accept(bindings::VIP_A_ROAM_LIMIT, AttrKind::U32);

static OPS: Ops<7> = Ops([
    genetlink::doit_op::<GetVersion>(),
    genetlink::doit_op::<MapSet>(),
    genetlink::doit_op::<MapDel>(),
    genetlink::doit_dump_op::<MapGet, MapDump>(),
    genetlink::doit_op::<MapFlush>(),
    genetlink::doit_op::<GetInfo>(),
    genetlink::doit_op::<SetConfig>(),
]);

/// Registers the family; it stays registered until the returned value is dropped.
pub(crate) fn register(module: &'static ThisModule) -> Result<genetlink::Registration> {
    let family = Family {
        name: bindings::VIP_GENL_NAME,
        version: bindings::VIP_GENL_VERSION,
        ops: &OPS,
        events_group: bindings::VIP_GENL_MCGRP_EVENTS,
    };
    genetlink::Registration::new(&family, module)
}

/// `VIP_CMD_GET_VERSION`: the module version and the protocol version it speaks.
struct GetVersion;

impl Command for GetVersion {
    const CMD: u32 = bindings::VIP_CMD_GET_VERSION;
    const PERMISSION: Permission = Permission::Any;
    const POLICY: PolicyRef = PolicyRef::NONE;

    fn doit(request: &Request<'_>) -> Result {
        request.reply(Self::CMD, |msg| {
            msg.put_string(bindings::VIP_A_VERSION, crate::VERSION)?;
            msg.put_u32(bindings::VIP_A_GENL_VERSION, bindings::VIP_GENL_VERSION)
        })
    }
}

/// The peer VIP a request names; it must be a VIP.
fn peer_vip(request: &Request<'_>) -> Result<Ipv4Addr> {
    let attr = request.required(bindings::VIP_A_PEER_VIP)?;
    let vip = Ipv4Addr::from_raw(attr.be32());
    if !vip.is_vip() {
        request.error(Some(attr), c_str!("peer VIP must be in 240.0.0.0/4"));
        return Err(EINVAL);
    }
    Ok(vip)
}

/// Says why the table refused, in errno and extended ack.
fn table_error(request: &Request<'_>, err: TableError) -> Error {
    let (errno, msg) = match err {
        TableError::Exists => (EEXIST, c_str!("this VIP has a mapping already")),
        TableError::NotFound => (ENOENT, c_str!("this VIP has no mapping")),
        TableError::Full => (
            ENOSPC,
            c_str!("the namespace has as many mappings as its limit allows"),
        ),
        TableError::Kernel(e) => return e,
    };
    request.error(request.attr(bindings::VIP_A_PEER_VIP), msg);
    errno
}

/// `VIP_CMD_MAP_SET`: creates or changes a mapping.
struct MapSet;

impl Command for MapSet {
    const CMD: u32 = bindings::VIP_CMD_MAP_SET;
    const PERMISSION: Permission = Permission::NetAdmin;
    const POLICY: PolicyRef = MAP_SET_POLICY.as_ref();

    fn doit(request: &Request<'_>) -> Result {
        let peer_vip = peer_vip(request)?;
        let attr = request.required(bindings::VIP_A_PEER_IP4)?;
        let peer_ip4 = Ipv4Addr::from_raw(attr.be32());
        if !peer_ip4.is_physical_unicast() {
            request.error(
                Some(attr),
                c_str!("peer address must be a unicast IPv4 address, not loopback or class E"),
            );
            return Err(EINVAL);
        }
        let local_vip = match request.attr(bindings::VIP_A_LOCAL_VIP) {
            None => Ipv4Addr::UNSPECIFIED,
            Some(attr) => {
                let vip = Ipv4Addr::from_raw(attr.be32());
                if vip != Ipv4Addr::UNSPECIFIED && !vip.is_vip() {
                    request.error(Some(attr), c_str!("local VIP must be in 240.0.0.0/4"));
                    return Err(EINVAL);
                }
                vip
            }
        };
        let flags = request.attr(bindings::VIP_A_FLAGS).map_or(0, |a| a.u32());
        let set_flags = request
            .attr(bindings::VIP_A_SET_FLAGS)
            .map_or(bindings::VIP_SET_F_CREATE, |a| a.u32());
        let mode = SetMode {
            create: set_flags & bindings::VIP_SET_F_CREATE != 0,
            replace: set_flags & bindings::VIP_SET_F_REPLACE != 0,
        };
        let spec = MappingSpec {
            peer_vip,
            peer_ip4,
            local_vip,
            flags,
        };
        let net = request.net();
        let outcome = net
            .vip()
            .table
            .set(&spec, mode)
            .map_err(|e| table_error(request, e))?;
        let changed = matches!(outcome, SetOutcome::Replaced { old } if old != peer_ip4);
        if let SetOutcome::Replaced { old } = outcome {
            if changed {
                // The paper's callOnChange, for daemons and applications.
                events::mapping_changed(net, peer_vip, old, peer_ip4);
            }
        }
        // TCP's retransmissions went to the old address (or, says the daemon, to a peer
        // that could not take them yet).
        if changed || set_flags & bindings::VIP_SET_F_KICK != 0 {
            let left = match outcome {
                SetOutcome::Replaced { old } if changed => Some(old),
                _ => None,
            };
            net.vip().kicker.kick(peer_vip, left);
        }
        Ok(())
    }
}

/// `VIP_CMD_MAP_DEL`: deletes a mapping.
struct MapDel;

impl Command for MapDel {
    const CMD: u32 = bindings::VIP_CMD_MAP_DEL;
    const PERMISSION: Permission = Permission::NetAdmin;
    const POLICY: PolicyRef = PEER_POLICY.as_ref();

    fn doit(request: &Request<'_>) -> Result {
        let vip = peer_vip(request)?;
        request
            .net()
            .vip()
            .table
            .delete(vip)
            .map_err(|e| table_error(request, e))
    }
}

/// Puts a mapping's attributes into a reply or dump message.
fn put_mapping(msg: &mut Writer<'_>, info: &MappingInfo) -> Result {
    msg.put_be32(bindings::VIP_A_PEER_VIP, info.spec.peer_vip.to_raw())?;
    msg.put_be32(bindings::VIP_A_PEER_IP4, info.spec.peer_ip4.to_raw())?;
    if info.spec.local_vip != Ipv4Addr::UNSPECIFIED {
        msg.put_be32(bindings::VIP_A_LOCAL_VIP, info.spec.local_vip.to_raw())?;
    }
    msg.put_u32(bindings::VIP_A_FLAGS, info.spec.flags)?;
    msg.put_u64(bindings::VIP_A_RX_PACKETS, info.rx_packets)?;
    msg.put_u64(bindings::VIP_A_RX_BYTES, info.rx_bytes)?;
    msg.put_u64(bindings::VIP_A_TX_PACKETS, info.tx_packets)?;
    msg.put_u64(bindings::VIP_A_TX_BYTES, info.tx_bytes)?;
    let now = crate::time::jiffies();
    if info.last_rx != 0 {
        msg.put_u64(
            bindings::VIP_A_LAST_RX_MSECS,
            crate::time::msecs_since(now, info.last_rx),
        )?;
    }
    if info.last_tx != 0 {
        msg.put_u64(
            bindings::VIP_A_LAST_TX_MSECS,
            crate::time::msecs_since(now, info.last_tx),
        )?;
    }
    Ok(())
}

/// `VIP_CMD_MAP_GET` with a peer VIP: that one mapping. Where peers are is for
/// administrators only, as WireGuard's peers are.
struct MapGet;

impl Command for MapGet {
    const CMD: u32 = bindings::VIP_CMD_MAP_GET;
    const PERMISSION: Permission = Permission::NetAdmin;
    const POLICY: PolicyRef = PEER_POLICY.as_ref();

    fn doit(request: &Request<'_>) -> Result {
        let vip = peer_vip(request)?;
        let info = request
            .net()
            .vip()
            .table
            .get(vip)
            .ok_or_else(|| table_error(request, TableError::NotFound))?;
        request.reply(Self::CMD, |msg| put_mapping(msg, &info))
    }
}

/// `VIP_CMD_MAP_GET` as a dump: every mapping.
struct MapDump;

impl Dump for MapDump {
    type Cursor = Walk;

    fn start(net: &Net) -> Result<KBox<Walk>> {
        Walk::new(&net.vip().table)
    }

    fn dump(walk: &mut Walk, out: &mut DumpWriter<'_>) -> Result {
        // One read's buffer bounds the batch (and the RCU read section).
        walk.for_each_info(usize::MAX, |info| {
            out.message(MapGet::CMD, |msg| put_mapping(msg, info))
        })?;
        Ok(())
    }

    fn done(walk: KBox<Walk>) {
        drop(walk);
    }
}

/// `VIP_CMD_MAP_FLUSH`: deletes every mapping.
struct MapFlush;

impl Command for MapFlush {
    const CMD: u32 = bindings::VIP_CMD_MAP_FLUSH;
    const PERMISSION: Permission = Permission::NetAdmin;
    const POLICY: PolicyRef = PolicyRef::NONE;

    fn doit(request: &Request<'_>) -> Result {
        let deleted = request.net().vip().table.flush()?;
        request.reply(Self::CMD, |msg| msg.put_u32(bindings::VIP_A_COUNT, deleted))
    }
}

/// `VIP_CMD_GET_INFO`: the table's size and limit, and the counters.
struct GetInfo;

impl Command for GetInfo {
    const CMD: u32 = bindings::VIP_CMD_GET_INFO;
    const PERMISSION: Permission = Permission::NetAdmin;
    const POLICY: PolicyRef = PolicyRef::NONE;

    fn doit(request: &Request<'_>) -> Result {
        let vip = request.net().vip();
        request.reply(Self::CMD, |msg| {
            msg.put_u32(bindings::VIP_A_COUNT, vip.table.count())?;
            msg.put_u32(bindings::VIP_A_MAX_MAPPINGS, vip.table.limit())?;
            msg.put_u32(bindings::VIP_A_ROAM_LIMIT, vip.roamer.limit())?;
            msg.put_u32(bindings::VIP_A_MAPPING_SIZE, MAPPING_SIZE as u32)?;
            msg.put_nested(bindings::VIP_A_STATS, |stats| {
                vip.stats.snapshot().try_for_each(|(stat, value)| {
                    stats.put_u64_pad(stat, value, bindings::VIP_STAT_PAD)
                })
            })
        })
    }
}

/// `VIP_CMD_SET_CONFIG`: the namespace's settings.
struct SetConfig;

impl Command for SetConfig {
    const CMD: u32 = bindings::VIP_CMD_SET_CONFIG;
    const PERMISSION: Permission = Permission::NetAdmin;
    const POLICY: PolicyRef = SET_CONFIG_POLICY.as_ref();

    fn doit(request: &Request<'_>) -> Result {
        // Every value is checked before any takes effect.
        let max_mappings = request.attr(bindings::VIP_A_MAX_MAPPINGS);
        if let Some(attr) = max_mappings {
            if !(1..=LIMIT_MAX).contains(&attr.u32()) {
                request.error(
                    Some(attr),
                    c_str!("the limit on mappings must be from 1 to VIP_MAX_MAPPINGS_LIMIT"),
                );
                return Err(EINVAL);
            }
        }
        let roam_limit = request.attr(bindings::VIP_A_ROAM_LIMIT);
        if let Some(attr) = roam_limit {
            if attr.u32() > bindings::VIP_ROAM_LIMIT_MAX {
                request.error(
                    Some(attr),
                    c_str!("the roam limit must be from 0 to VIP_ROAM_LIMIT_MAX"),
                );
                return Err(EINVAL);
            }
        }
        let vip = request.net().vip();
        if let Some(attr) = max_mappings {
            vip.table.set_limit(attr.u32())?;
        }
        if let Some(attr) = roam_limit {
            vip.roamer.set_limit(attr.u32());
        }
        Ok(())
    }
}
