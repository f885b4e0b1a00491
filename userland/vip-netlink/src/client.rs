//! A netlink connection to the `vip` module.

use crate::message::{VipAttr, VipCmd, VipMessage};
use futures::StreamExt;
use genetlink::{GenetlinkError, GenetlinkHandle};
use netlink_packet_core::{ErrorMessage, NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_generic::GenlMessage;
use netlink_sys::AsyncSocket;

/// Why a request to the module failed, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the vip kernel module is not loaded (no generic netlink family \"vip\"); try `modprobe vip`"
    )]
    ModuleNotLoaded,
    #[error("permission denied: changing VIP state needs CAP_NET_ADMIN")]
    PermissionDenied,
    #[error("the module refused the request: {message} ({source})")]
    Refused {
        message: String,
        source: std::io::Error,
    },
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("unexpected reply from the module: {0}")]
    BadReply(String),
}

impl From<GenetlinkError> for Error {
    fn from(err: GenetlinkError) -> Self {
        match err {
            // The controller answers ENOENT when no family has the name.
            GenetlinkError::NetlinkError(io) if io.raw_os_error() == Some(libc::ENOENT) => {
                Self::ModuleNotLoaded
            }
            GenetlinkError::NetlinkError(io) => Self::Socket(io),
            other => Self::Netlink(other.to_string()),
        }
    }
}

/// What `VIP_CMD_GET_VERSION` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleVersion {
    pub version: String,
    pub genl_version: u32,
}

/// A connection to the module in the caller's network namespace.
pub struct Client {
    handle: GenetlinkHandle,
}

impl Client {
    /// Opens a generic netlink socket; its I/O runs as a task on the current tokio runtime.
    pub fn connect() -> Result<Self, Error> {
        let (mut connection, handle, _) = genetlink::new_connection()?;
        // Extended acks carry the module's explanation of a refusal.
        connection.socket_mut().socket_mut().set_ext_ack(true)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Asks the module for its version.
    pub async fn version(&mut self) -> Result<ModuleVersion, Error> {
        let reply = self.request_one(VipCmd::GetVersion, vec![]).await?;
        let mut version = None;
        let mut genl_version = None;
        for attr in reply.attrs {
            match attr {
                VipAttr::Version(v) => version = Some(v),
                VipAttr::GenlVersion(v) => genl_version = Some(v),
                VipAttr::Other(_) => {}
            }
        }
        match (version, genl_version) {
            (Some(version), Some(genl_version)) => Ok(ModuleVersion {
                version,
                genl_version,
            }),
            _ => Err(Error::BadReply(
                "version reply lacks VIP_A_VERSION or VIP_A_GENL_VERSION".into(),
            )),
        }
    }

    /// Sends a request that is answered by exactly one message.
    async fn request_one(&mut self, cmd: VipCmd, attrs: Vec<VipAttr>) -> Result<VipMessage, Error> {
        let mut msg = NetlinkMessage::from(GenlMessage::from_payload(VipMessage { cmd, attrs }));
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        msg.finalize();
        let mut replies = self.handle.request(msg).await?;
        let mut answer = None;
        while let Some(reply) = replies.next().await {
            let reply = reply.map_err(|e| Error::BadReply(e.to_string()))?;
            match reply.payload {
                NetlinkPayload::InnerMessage(genl) => answer = Some(genl.payload),
                NetlinkPayload::Error(err) if err.code.is_some() => {
                    return Err(refusal(&err, reply.header.flags));
                }
                _ => {}
            }
        }
        answer.ok_or_else(|| Error::BadReply(format!("no answer to {cmd:?}")))
    }
}

/// Turns an error acknowledgement into an [`Error`], with the extended-ack text if any.
fn refusal(err: &ErrorMessage, flags: u16) -> Error {
    let io = err.to_io();
    if io.raw_os_error() == Some(libc::EPERM) {
        return Error::PermissionDenied;
    }
    let message = extack_message(&err.header, flags).unwrap_or_else(|| io.to_string());
    Error::Refused {
        message,
        source: io,
    }
}

const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSG_HDRLEN: usize = 16;

/// Finds `NLMSGERR_ATTR_MSG` in the part of an error message that follows the error code:
/// the echoed request (only its header when capped), then the extended-ack attributes.
fn extack_message(rest: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize
    };
    let tlvs = rest.get(echoed.next_multiple_of(4)..)?;
    netlink_packet_core::NlasIterator::new(tlvs)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .and_then(|nla| netlink_packet_core::parse_string(nla.value()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extack_message_after_capped_header() {
        let mut rest = vec![0u8; NLMSG_HDRLEN];
        rest[..4].copy_from_slice(&40u32.to_ne_bytes());
        // NLMSGERR_ATTR_MSG "bad VIP\0": length 4 + 8, padded to 12
        rest.extend_from_slice(&12u16.to_ne_bytes());
        rest.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        rest.extend_from_slice(b"bad VIP\0");
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(extack_message(&rest, flags).as_deref(), Some("bad VIP"));
        assert_eq!(extack_message(&rest, NLM_F_CAPPED), None);
    }

    #[test]
    fn extack_message_survives_garbage() {
        for len in 0..40 {
            let rest: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = extack_message(&rest, NLM_F_ACK_TLVS);
            let _ = extack_message(&rest, NLM_F_ACK_TLVS | NLM_F_CAPPED);
        }
    }
}
