//! Messages of the `vip` family, as `include/uapi/linux/vip.h` defines them.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized, emit_u32, emit_u64, parse_string, parse_u32, parse_u64,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};
use std::net::Ipv4Addr;

/// `enum vip_cmd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum VipCmd {
    GetVersion = 1,
    MapSet = 2,
    MapDel = 3,
    MapGet = 4,
    MapFlush = 5,
    GetInfo = 6,
    EventNoMapping = 7,
    EventUnknown = 8,
    EventMoved = 9,
    SetConfig = 10,
    EventMappingChanged = 11,
    EventRoamed = 12,
}

impl TryFrom<u8> for VipCmd {
    type Error = DecodeError;

    fn try_from(value: u8) -> Result<Self, DecodeError> {
        Ok(match value {
            1 => Self::GetVersion,
            2 => Self::MapSet,
            3 => Self::MapDel,
            4 => Self::MapGet,
            5 => Self::MapFlush,
            6 => Self::GetInfo,
            7 => Self::EventNoMapping,
            8 => Self::EventUnknown,
            9 => Self::EventMoved,
            10 => Self::SetConfig,
            11 => Self::EventMappingChanged,
            12 => Self::EventRoamed,
            other => return Err(format!("unknown vip command {other}").into()),
        })
    }
}

const VIP_A_VERSION: u16 = 1;
const VIP_A_GENL_VERSION: u16 = 2;
const VIP_A_PEER_VIP: u16 = 3;
const VIP_A_PEER_IP4: u16 = 4;
const VIP_A_LOCAL_VIP: u16 = 5;
const VIP_A_FLAGS: u16 = 6;
const VIP_A_RX_PACKETS: u16 = 7;
const VIP_A_RX_BYTES: u16 = 8;
const VIP_A_TX_PACKETS: u16 = 9;
const VIP_A_TX_BYTES: u16 = 10;
const VIP_A_LAST_RX_MSECS: u16 = 11;
const VIP_A_LAST_TX_MSECS: u16 = 12;
const VIP_A_COUNT: u16 = 13;
const VIP_A_MAPPING_SIZE: u16 = 14;
const VIP_A_SET_FLAGS: u16 = 16;
const VIP_A_SEEN_IP4: u16 = 17;
const VIP_A_STATS: u16 = 18;
const VIP_A_MAX_MAPPINGS: u16 = 19;
const VIP_A_OLD_IP4: u16 = 20;
const VIP_A_ROAM_LIMIT: u16 = 21;
const VIP_STAT_PAD: u16 = 15;

/// The names of `enum vip_stat` (lower case, without the prefix), by number.
pub const STAT_NAMES: [(u16, &str); 22] = [
    (1, "tx_malformed"),
    (2, "tx_no_mapping"),
    (3, "tx_invalid"),
    (4, "tx_no_route"),
    (5, "tx_loop"),
    (6, "tx_too_big"),
    (7, "tx_error"),
    (8, "rx_malformed"),
    (9, "rx_unknown"),
    (10, "rx_moved"),
    (11, "rx_invalid"),
    (12, "rx_wrong_local"),
    (13, "rx_no_device"),
    (14, "events_dropped"),
    (16, "rx_conntrack"),
    (17, "tcp_kicks"),
    (18, "neigh_released"),
    (19, "tx_xfrm_pending"),
    (20, "tcp_probes"),
    (21, "rx_roam_candidates"),
    (22, "roams"),
    (23, "roams_dropped"),
];

/// The name of counter `kind`, if this crate knows it.
pub fn stat_name(kind: u16) -> Option<&'static str> {
    STAT_NAMES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, name)| *name)
}

/// `enum vip_set_flags`.
pub const VIP_SET_F_CREATE: u32 = 1 << 0;
pub const VIP_SET_F_REPLACE: u32 = 1 << 1;
pub const VIP_SET_F_KICK: u32 = 1 << 2;

/// `enum vip_map_flags`.
pub const VIP_MAP_F_INVALID: u32 = 1 << 0;
pub const VIP_MAP_F_TEMPORARY: u32 = 1 << 1;

/// `enum vip_attr`. Attributes this crate does not know are kept raw, so that a newer
/// module does not break an older client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VipAttr {
    Version(String),
    GenlVersion(u32),
    PeerVip(Ipv4Addr),
    PeerIp4(Ipv4Addr),
    LocalVip(Ipv4Addr),
    Flags(u32),
    RxPackets(u64),
    RxBytes(u64),
    TxPackets(u64),
    TxBytes(u64),
    LastRxMsecs(u64),
    LastTxMsecs(u64),
    Count(u32),
    MappingSize(u32),
    SetFlags(u32),
    SeenIp4(Ipv4Addr),
    /// Counters by `enum vip_stat` number; read-only.
    Stats(Vec<(u16, u64)>),
    MaxMappings(u32),
    OldIp4(Ipv4Addr),
    /// The most mappings roams may move a second; 0: roaming off.
    RoamLimit(u32),
    Other(DefaultNla),
}

fn parse_in_addr(payload: &[u8]) -> Result<Ipv4Addr, DecodeError> {
    let octets: [u8; 4] = payload
        .try_into()
        .map_err(|_| DecodeError::from(format!("IPv4 address of {} bytes", payload.len())))?;
    Ok(Ipv4Addr::from(octets))
}

impl Nla for VipAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Version(s) => s.len() + 1,
            Self::GenlVersion(_)
            | Self::PeerVip(_)
            | Self::PeerIp4(_)
            | Self::LocalVip(_)
            | Self::Flags(_)
            | Self::Count(_)
            | Self::MappingSize(_)
            | Self::SetFlags(_)
            | Self::SeenIp4(_)
            | Self::MaxMappings(_)
            | Self::RoamLimit(_)
            | Self::OldIp4(_) => 4,
            Self::Stats(stats) => stats.len() * 12,
            Self::RxPackets(_)
            | Self::RxBytes(_)
            | Self::TxPackets(_)
            | Self::TxBytes(_)
            | Self::LastRxMsecs(_)
            | Self::LastTxMsecs(_) => 8,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Version(_) => VIP_A_VERSION,
            Self::GenlVersion(_) => VIP_A_GENL_VERSION,
            Self::PeerVip(_) => VIP_A_PEER_VIP,
            Self::PeerIp4(_) => VIP_A_PEER_IP4,
            Self::LocalVip(_) => VIP_A_LOCAL_VIP,
            Self::Flags(_) => VIP_A_FLAGS,
            Self::RxPackets(_) => VIP_A_RX_PACKETS,
            Self::RxBytes(_) => VIP_A_RX_BYTES,
            Self::TxPackets(_) => VIP_A_TX_PACKETS,
            Self::TxBytes(_) => VIP_A_TX_BYTES,
            Self::LastRxMsecs(_) => VIP_A_LAST_RX_MSECS,
            Self::LastTxMsecs(_) => VIP_A_LAST_TX_MSECS,
            Self::Count(_) => VIP_A_COUNT,
            Self::MappingSize(_) => VIP_A_MAPPING_SIZE,
            Self::SetFlags(_) => VIP_A_SET_FLAGS,
            Self::SeenIp4(_) => VIP_A_SEEN_IP4,
            Self::Stats(_) => VIP_A_STATS | netlink_packet_core::NLA_F_NESTED,
            Self::MaxMappings(_) => VIP_A_MAX_MAPPINGS,
            Self::OldIp4(_) => VIP_A_OLD_IP4,
            Self::RoamLimit(_) => VIP_A_ROAM_LIMIT,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Version(s) => {
                buffer[..s.len()].copy_from_slice(s.as_bytes());
                buffer[s.len()] = 0;
            }
            Self::Stats(stats) => {
                for (i, (kind, value)) in stats.iter().enumerate() {
                    let at = &mut buffer[i * 12..];
                    at[..2].copy_from_slice(&12u16.to_ne_bytes());
                    at[2..4].copy_from_slice(&kind.to_ne_bytes());
                    emit_u64(&mut at[4..12], *value).expect("buffer sized by value_len");
                }
            }
            Self::PeerVip(a)
            | Self::PeerIp4(a)
            | Self::LocalVip(a)
            | Self::SeenIp4(a)
            | Self::OldIp4(a) => buffer[..4].copy_from_slice(&a.octets()),
            Self::GenlVersion(v)
            | Self::Flags(v)
            | Self::Count(v)
            | Self::MappingSize(v)
            | Self::SetFlags(v)
            | Self::MaxMappings(v)
            | Self::RoamLimit(v) => emit_u32(buffer, *v).expect("buffer sized by value_len"),
            Self::RxPackets(v)
            | Self::RxBytes(v)
            | Self::TxPackets(v)
            | Self::TxBytes(v)
            | Self::LastRxMsecs(v)
            | Self::LastTxMsecs(v) => emit_u64(buffer, *v).expect("buffer sized by value_len"),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for VipAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() {
            VIP_A_VERSION => Self::Version(parse_string(payload)?),
            VIP_A_GENL_VERSION => Self::GenlVersion(parse_u32(payload)?),
            VIP_A_PEER_VIP => Self::PeerVip(parse_in_addr(payload)?),
            VIP_A_PEER_IP4 => Self::PeerIp4(parse_in_addr(payload)?),
            VIP_A_LOCAL_VIP => Self::LocalVip(parse_in_addr(payload)?),
            VIP_A_FLAGS => Self::Flags(parse_u32(payload)?),
            VIP_A_RX_PACKETS => Self::RxPackets(parse_u64(payload)?),
            VIP_A_RX_BYTES => Self::RxBytes(parse_u64(payload)?),
            VIP_A_TX_PACKETS => Self::TxPackets(parse_u64(payload)?),
            VIP_A_TX_BYTES => Self::TxBytes(parse_u64(payload)?),
            VIP_A_LAST_RX_MSECS => Self::LastRxMsecs(parse_u64(payload)?),
            VIP_A_LAST_TX_MSECS => Self::LastTxMsecs(parse_u64(payload)?),
            VIP_A_COUNT => Self::Count(parse_u32(payload)?),
            VIP_A_MAPPING_SIZE => Self::MappingSize(parse_u32(payload)?),
            VIP_A_SET_FLAGS => Self::SetFlags(parse_u32(payload)?),
            VIP_A_SEEN_IP4 => Self::SeenIp4(parse_in_addr(payload)?),
            VIP_A_MAX_MAPPINGS => Self::MaxMappings(parse_u32(payload)?),
            VIP_A_OLD_IP4 => Self::OldIp4(parse_in_addr(payload)?),
            VIP_A_ROAM_LIMIT => Self::RoamLimit(parse_u32(payload)?),
            VIP_A_STATS => Self::Stats(
                NlasIterator::new(payload)
                    .filter(|nla| !matches!(nla, Ok(nla) if nla.kind() == VIP_STAT_PAD))
                    .map(|nla| {
                        let nla = nla?;
                        Ok((nla.kind(), parse_u64(nla.value())?))
                    })
                    .collect::<Result<_, DecodeError>>()?,
            ),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// One message of the `vip` family: a command and its attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipMessage {
    pub cmd: VipCmd,
    pub attrs: Vec<VipAttr>,
}

impl GenlFamily for VipMessage {
    fn family_name() -> &'static str {
        crate::FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd as u8
    }

    fn version(&self) -> u8 {
        crate::GENL_VERSION
    }
}

impl Emitable for VipMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for VipMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| VipAttr::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            cmd: VipCmd::try_from(header.cmd)?,
            attrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(msg: &VipMessage) -> VipMessage {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        let header = GenlHeader {
            cmd: msg.cmd as u8,
            version: crate::GENL_VERSION,
        };
        VipMessage::parse_with_param(&buf, header).unwrap()
    }

    #[test]
    fn version_reply_roundtrips() {
        let msg = VipMessage {
            cmd: VipCmd::GetVersion,
            attrs: vec![VipAttr::Version("0.1.0".into()), VipAttr::GenlVersion(1)],
        };
        assert_eq!(roundtrip(&msg), msg);
    }

    #[test]
    fn mapping_roundtrips() {
        let msg = VipMessage {
            cmd: VipCmd::MapGet,
            attrs: vec![
                VipAttr::PeerVip(Ipv4Addr::new(240, 0, 0, 2)),
                VipAttr::PeerIp4(Ipv4Addr::new(192, 0, 2, 20)),
                VipAttr::LocalVip(Ipv4Addr::new(240, 0, 0, 1)),
                VipAttr::Flags(VIP_MAP_F_TEMPORARY),
                VipAttr::RxPackets(u64::MAX),
                VipAttr::LastTxMsecs(1234),
                VipAttr::Count(7),
            ],
        };
        assert_eq!(roundtrip(&msg), msg);
        // Addresses travel in network byte order.
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        assert_eq!(&buf[4..8], &[240, 0, 0, 2]);
    }

    #[test]
    fn stats_roundtrip() {
        let msg = VipMessage {
            cmd: VipCmd::GetInfo,
            attrs: vec![
                VipAttr::Count(3),
                VipAttr::Stats(vec![(1, 5), (11, u64::MAX)]),
            ],
        };
        assert_eq!(roundtrip(&msg), msg);
    }

    #[test]
    fn address_of_wrong_length_is_an_error() {
        let buf = [6, 0, VIP_A_PEER_VIP as u8, 0, 240, 0, 0, 0];
        let header = GenlHeader { cmd: 4, version: 1 };
        assert!(VipMessage::parse_with_param(&buf, header).is_err());
    }

    #[test]
    fn unknown_attribute_is_kept_raw() {
        // type 99, length 8, a u32 payload
        let buf = [8, 0, 99, 0, 1, 2, 3, 4];
        let header = GenlHeader { cmd: 1, version: 1 };
        let msg = VipMessage::parse_with_param(&buf, header).unwrap();
        assert!(matches!(&msg.attrs[..], [VipAttr::Other(nla)] if nla.kind() == 99));
    }

    #[test]
    fn truncated_attribute_is_an_error() {
        let buf = [8, 0, VIP_A_GENL_VERSION as u8, 0, 1, 2];
        let header = GenlHeader { cmd: 1, version: 1 };
        assert!(VipMessage::parse_with_param(&buf, header).is_err());
    }

    #[test]
    fn unknown_command_is_an_error() {
        let header = GenlHeader {
            cmd: 200,
            version: 1,
        };
        assert!(VipMessage::parse_with_param(&[], header).is_err());
    }

    /// The constants above must match the UAPI header the module is built from.
    #[test]
    fn constants_match_uapi_header() {
        let raw = include_str!("../../../include/uapi/linux/vip.h");
        // Drop /* comments */ so that they cannot hide or fake a member.
        let mut header = String::new();
        let mut rest = raw;
        while let Some(start) = rest.find("/*") {
            header.push_str(&rest[..start]);
            rest = &rest[start + rest[start..].find("*/").unwrap() + 2..];
        }
        header.push_str(rest);
        let value_of = |name: &str| -> u32 {
            // enum members are implicitly numbered from 0: find the position in the enum
            for block in header.split("enum ").skip(1) {
                let body = &block[block.find('{').unwrap() + 1..block.find('}').unwrap()];
                let members: Vec<&str> = body
                    .split(',')
                    .map(|m| m.trim())
                    .filter(|m| !m.is_empty())
                    .collect();
                if let Some(pos) = members.iter().position(|m| *m == name) {
                    assert!(members.iter().all(|m| !m.contains('=')), "explicit values");
                    return pos as u32;
                }
            }
            panic!("{name} not in vip.h");
        };
        assert_eq!(value_of("VIP_CMD_GET_VERSION"), VipCmd::GetVersion as u32);
        assert_eq!(value_of("VIP_CMD_SET_CONFIG"), VipCmd::SetConfig as u32);
        assert_eq!(
            value_of("VIP_CMD_EVENT_MAPPING_CHANGED"),
            VipCmd::EventMappingChanged as u32
        );
        assert_eq!(value_of("VIP_CMD_EVENT_ROAMED"), VipCmd::EventRoamed as u32);
        assert_eq!(value_of("VIP_A_STATS"), u32::from(VIP_A_STATS));
        assert_eq!(
            value_of("VIP_A_MAX_MAPPINGS"),
            u32::from(VIP_A_MAX_MAPPINGS)
        );
        assert_eq!(value_of("VIP_A_OLD_IP4"), u32::from(VIP_A_OLD_IP4));
        assert_eq!(value_of("VIP_A_ROAM_LIMIT"), u32::from(VIP_A_ROAM_LIMIT));
        assert_eq!(value_of("VIP_STAT_PAD"), u32::from(VIP_STAT_PAD));
        for (kind, name) in STAT_NAMES {
            let uapi = format!("VIP_STAT_{}", name.to_uppercase());
            assert_eq!(value_of(&uapi), u32::from(kind), "{uapi}");
        }
        assert_eq!(value_of("VIP_A_VERSION"), u32::from(VIP_A_VERSION));
        assert_eq!(
            value_of("VIP_A_GENL_VERSION"),
            u32::from(VIP_A_GENL_VERSION)
        );
        assert!(header.contains(&format!("#define VIP_GENL_NAME \"{}\"", crate::FAMILY_NAME)));
        assert!(header.contains(&format!("#define VIP_GENL_VERSION {}", crate::GENL_VERSION)));
        assert!(header.contains(&format!(
            "#define VIP_GENL_MCGRP_EVENTS \"{}\"",
            crate::EVENTS_GROUP
        )));
    }
}
