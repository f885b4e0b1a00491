//! Client for the `vip` kernel module's generic netlink family.
//!
//! The message types mirror `include/uapi/linux/vip.h`; [`Client`] speaks them over a
//! netlink socket. Both `vipctl` and `vipd` use this crate.

mod client;
mod message;

pub use client::{
    Change, Client, Error, Event, EventListener, Mapping, MappingSpec, ModuleVersion, SetMode,
    TableInfo,
};
pub use message::{VIP_MAP_F_INVALID, VIP_MAP_F_TEMPORARY, VipAttr, VipCmd, VipMessage};

/// The generic netlink family name (`VIP_GENL_NAME`).
pub const FAMILY_NAME: &str = "vip";
/// The multicast group of events (`VIP_GENL_MCGRP_EVENTS`).
pub const EVENTS_GROUP: &str = "events";
/// The protocol version this crate speaks (`VIP_GENL_VERSION`).
pub const GENL_VERSION: u8 = 1;
