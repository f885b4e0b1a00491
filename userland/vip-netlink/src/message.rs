//! Messages of the `vip` family, as `include/uapi/linux/vip.h` defines them.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized, emit_u32, parse_string, parse_u32,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// `enum vip_cmd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum VipCmd {
    GetVersion = 1,
}

impl TryFrom<u8> for VipCmd {
    type Error = DecodeError;

    fn try_from(value: u8) -> Result<Self, DecodeError> {
        match value {
            1 => Ok(Self::GetVersion),
            other => Err(format!("unknown vip command {other}").into()),
        }
    }
}

const VIP_A_VERSION: u16 = 1;
const VIP_A_GENL_VERSION: u16 = 2;

/// `enum vip_attr`. Attributes this crate does not know are kept raw, so that a newer
/// module does not break an older client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VipAttr {
    Version(String),
    GenlVersion(u32),
    Other(DefaultNla),
}

impl Nla for VipAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Version(s) => s.len() + 1,
            Self::GenlVersion(_) => 4,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Version(_) => VIP_A_VERSION,
            Self::GenlVersion(_) => VIP_A_GENL_VERSION,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Version(s) => {
                buffer[..s.len()].copy_from_slice(s.as_bytes());
                buffer[s.len()] = 0;
            }
            Self::GenlVersion(v) => emit_u32(buffer, *v).expect("buffer sized by value_len"),
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
        assert_eq!(value_of("VIP_A_VERSION"), u32::from(VIP_A_VERSION));
        assert_eq!(
            value_of("VIP_A_GENL_VERSION"),
            u32::from(VIP_A_GENL_VERSION)
        );
        assert!(header.contains(&format!("#define VIP_GENL_NAME \"{}\"", crate::FAMILY_NAME)));
        assert!(header.contains(&format!("#define VIP_GENL_VERSION {}", crate::GENL_VERSION)));
    }
}
