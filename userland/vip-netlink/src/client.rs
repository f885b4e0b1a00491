//! A netlink connection to the `vip` module.

use crate::message::{
    VIP_SET_F_CREATE, VIP_SET_F_KICK, VIP_SET_F_REPLACE, VipAttr, VipCmd, VipMessage,
};
use futures::StreamExt;
use genetlink::{GenetlinkError, GenetlinkHandle};
use netlink_packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_generic::GenlMessage;
use netlink_sys::AsyncSocket;
use serde::Serialize;
use std::{net::Ipv4Addr, time::Duration};

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

/// A mapping as userspace sets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MappingSpec {
    pub peer_vip: Ipv4Addr,
    pub peer_ip4: Ipv4Addr,
    pub local_vip: Option<Ipv4Addr>,
    /// A mask of `VIP_MAP_F_*`.
    pub flags: u32,
}

/// A mapping as the module reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mapping {
    #[serde(flatten)]
    pub spec: MappingSpec,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Time since the last packet from the peer; `None` if none yet.
    #[serde(serialize_with = "serialize_msecs")]
    pub last_rx: Option<Duration>,
    #[serde(serialize_with = "serialize_msecs")]
    pub last_tx: Option<Duration>,
}

fn serialize_msecs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

impl TryFrom<VipMessage> for Mapping {
    type Error = Error;

    fn try_from(msg: VipMessage) -> Result<Self, Error> {
        let (mut vip, mut ip4, mut local, mut flags) = (None, None, None, 0);
        let mut m = Mapping {
            spec: MappingSpec {
                peer_vip: Ipv4Addr::UNSPECIFIED,
                peer_ip4: Ipv4Addr::UNSPECIFIED,
                local_vip: None,
                flags: 0,
            },
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            last_rx: None,
            last_tx: None,
        };
        for attr in msg.attrs {
            match attr {
                VipAttr::PeerVip(a) => vip = Some(a),
                VipAttr::PeerIp4(a) => ip4 = Some(a),
                VipAttr::LocalVip(a) => local = Some(a),
                VipAttr::Flags(f) => flags = f,
                VipAttr::RxPackets(v) => m.rx_packets = v,
                VipAttr::RxBytes(v) => m.rx_bytes = v,
                VipAttr::TxPackets(v) => m.tx_packets = v,
                VipAttr::TxBytes(v) => m.tx_bytes = v,
                VipAttr::LastRxMsecs(v) => m.last_rx = Some(Duration::from_millis(v)),
                VipAttr::LastTxMsecs(v) => m.last_tx = Some(Duration::from_millis(v)),
                _ => {}
            }
        }
        let (Some(peer_vip), Some(peer_ip4)) = (vip, ip4) else {
            return Err(Error::BadReply(
                "mapping without VIP_A_PEER_VIP or VIP_A_PEER_IP4".into(),
            ));
        };
        m.spec = MappingSpec {
            peer_vip,
            peer_ip4,
            local_vip: local,
            flags,
        };
        Ok(m)
    }
}

/// What a set may do to an existing or missing mapping (the `ip route` verbs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetMode {
    /// Create; refuse if the VIP has a mapping.
    Add,
    /// Create, or change an existing mapping.
    Replace,
    /// Change an existing mapping; refuse if there is none.
    Change,
}

/// The namespace's state, as `VIP_CMD_GET_INFO` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    pub mappings: u32,
    /// The most mappings the namespace may hold.
    pub max_mappings: u32,
    /// The most mappings roams on authenticated ESP may move a second; 0: roaming off.
    /// `None` from a module older than the roam limit.
    pub roam_limit: Option<u32>,
    pub mapping_size: u32,
    /// Counters (`enum vip_stat`, lower case without the prefix): drops by reason, events
    /// not sent, TCP sockets kicked.
    pub stats: std::collections::BTreeMap<&'static str, u64>,
}

/// Something the data path reports (see `include/uapi/linux/vip.h`, "Events").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A packet was sent to `peer_vip`, which has no mapping.
    NoMapping { peer_vip: Ipv4Addr },
    /// A packet came from `peer_vip`, which has no mapping, to `local_vip`, from `seen`.
    Unknown {
        peer_vip: Ipv4Addr,
        local_vip: Ipv4Addr,
        seen: Ipv4Addr,
    },
    /// A packet from `peer_vip`, mapped to `mapped`, came from `seen`.
    Moved {
        peer_vip: Ipv4Addr,
        mapped: Ipv4Addr,
        seen: Ipv4Addr,
    },
    /// The mapping of `peer_vip` was changed from `old` to `new` (the paper's callOnChange).
    MappingChanged {
        peer_vip: Ipv4Addr,
        old: Ipv4Addr,
        new: Ipv4Addr,
    },
    /// The module moved the mapping of `peer_vip` from `old` to `new`, the source of a
    /// packet IPsec authenticated (followed by `MappingChanged`).
    Roamed {
        peer_vip: Ipv4Addr,
        old: Ipv4Addr,
        new: Ipv4Addr,
    },
}

impl TryFrom<VipMessage> for Event {
    type Error = Error;

    fn try_from(msg: VipMessage) -> Result<Self, Error> {
        let (mut vip, mut local, mut mapped, mut seen, mut old) = (None, None, None, None, None);
        for attr in &msg.attrs {
            match *attr {
                VipAttr::PeerVip(a) => vip = Some(a),
                VipAttr::LocalVip(a) => local = Some(a),
                VipAttr::PeerIp4(a) => mapped = Some(a),
                VipAttr::SeenIp4(a) => seen = Some(a),
                VipAttr::OldIp4(a) => old = Some(a),
                _ => {}
            }
        }
        let missing = || Error::BadReply(format!("{:?} event lacks an attribute", msg.cmd));
        let peer_vip = vip.ok_or_else(missing)?;
        Ok(match msg.cmd {
            VipCmd::EventNoMapping => Event::NoMapping { peer_vip },
            VipCmd::EventUnknown => Event::Unknown {
                peer_vip,
                local_vip: local.ok_or_else(missing)?,
                seen: seen.ok_or_else(missing)?,
            },
            VipCmd::EventMoved => Event::Moved {
                peer_vip,
                mapped: mapped.ok_or_else(missing)?,
                seen: seen.ok_or_else(missing)?,
            },
            VipCmd::EventMappingChanged => Event::MappingChanged {
                peer_vip,
                old: old.ok_or_else(missing)?,
                new: mapped.ok_or_else(missing)?,
            },
            VipCmd::EventRoamed => Event::Roamed {
                peer_vip,
                old: old.ok_or_else(missing)?,
                new: mapped.ok_or_else(missing)?,
            },
            other => return Err(Error::BadReply(format!("{other:?} is not an event"))),
        })
    }
}

/// What `VIP_CMD_GET_VERSION` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleVersion {
    pub version: String,
    pub genl_version: u32,
}

/// A change to the table, for [`Client::pipeline`].
#[derive(Clone, Debug)]
pub enum Change {
    Set(MappingSpec, SetMode),
    Del(Ipv4Addr),
}

impl Change {
    fn request(&self) -> (VipCmd, Vec<VipAttr>) {
        match self {
            Change::Set(spec, mode) => {
                let mut attrs = vec![
                    VipAttr::PeerVip(spec.peer_vip),
                    VipAttr::PeerIp4(spec.peer_ip4),
                ];
                if let Some(local) = spec.local_vip {
                    attrs.push(VipAttr::LocalVip(local));
                }
                attrs.push(VipAttr::Flags(spec.flags));
                attrs.push(VipAttr::SetFlags(match mode {
                    SetMode::Add => VIP_SET_F_CREATE,
                    SetMode::Replace => VIP_SET_F_CREATE | VIP_SET_F_REPLACE,
                    SetMode::Change => VIP_SET_F_REPLACE,
                }));
                (VipCmd::MapSet, attrs)
            }
            Change::Del(vip) => (VipCmd::MapDel, vec![VipAttr::PeerVip(*vip)]),
        }
    }
}

/// A connection to the module in the caller's network namespace.
#[derive(Clone)]
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
                _ => {}
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

    /// Creates or changes the mapping of `spec.peer_vip`.
    pub async fn map_set(&mut self, spec: &MappingSpec, mode: SetMode) -> Result<(), Error> {
        self.change(&Change::Set(spec.clone(), mode)).await
    }

    /// Changes an existing mapping to `spec` (usually what it already says) and has the
    /// namespace's TCP sockets to the peer that wait out a retransmission backoff retransmit
    /// now: for when the daemon learns that the path just came back.
    pub async fn map_set_and_kick(&mut self, spec: &MappingSpec) -> Result<(), Error> {
        let (cmd, mut attrs) = Change::Set(spec.clone(), SetMode::Change).request();
        for attr in &mut attrs {
            if let VipAttr::SetFlags(flags) = attr {
                *flags |= VIP_SET_F_KICK;
            }
        }
        self.request(cmd, attrs, 0).await.map(drop)
    }

    /// Deletes the mapping of `vip`.
    pub async fn map_del(&mut self, vip: Ipv4Addr) -> Result<(), Error> {
        self.change(&Change::Del(vip)).await
    }

    async fn change(&mut self, change: &Change) -> Result<(), Error> {
        let (cmd, attrs) = change.request();
        self.request(cmd, attrs, 0).await.map(drop)
    }

    /// Applies `changes` in order and reports each failure, with the change's index, to
    /// `on_error`. For loading large tables: the changes go out many to a system call on a
    /// socket of their own, only failures are answered, and a `GET_INFO` request closing each
    /// batch tells when the kernel has handled all of it (it handles one socket's messages
    /// in the order sent).
    pub async fn pipeline(
        &mut self,
        changes: Vec<Change>,
        on_error: impl FnMut(usize, Error) + Send + 'static,
    ) -> Result<(), Error> {
        let family = self.handle.resolve_family::<VipMessage>().await?.id;
        tokio::task::spawn_blocking(move || pipeline_blocking(family, &changes, on_error))
            .await
            .map_err(|e| Error::Netlink(e.to_string()))?
    }

    /// The mapping of `vip`.
    pub async fn map_get(&mut self, vip: Ipv4Addr) -> Result<Mapping, Error> {
        let reply = self
            .request(VipCmd::MapGet, vec![VipAttr::PeerVip(vip)], 0)
            .await?;
        reply
            .into_iter()
            .next()
            .ok_or_else(|| Error::BadReply("empty answer".into()))?
            .try_into()
    }

    /// Every mapping.
    pub async fn map_dump(&mut self) -> Result<Vec<Mapping>, Error> {
        let replies = self.request(VipCmd::MapGet, vec![], NLM_F_DUMP).await?;
        replies.into_iter().map(Mapping::try_from).collect()
    }

    /// Deletes every mapping; returns how many there were.
    pub async fn map_flush(&mut self) -> Result<u32, Error> {
        let reply = self.request(VipCmd::MapFlush, vec![], 0).await?;
        reply
            .iter()
            .flat_map(|m| &m.attrs)
            .find_map(|a| {
                if let VipAttr::Count(n) = a {
                    Some(*n)
                } else {
                    None
                }
            })
            .ok_or_else(|| Error::BadReply("flush answer lacks VIP_A_COUNT".into()))
    }

    /// The table's size.
    pub async fn info(&mut self) -> Result<TableInfo, Error> {
        let reply = self.request(VipCmd::GetInfo, vec![], 0).await?;
        let (mut mappings, mut max_mappings, mut mapping_size, mut roam_limit) =
            (None, None, None, None);
        let mut stats = std::collections::BTreeMap::new();
        for attr in reply.iter().flat_map(|m| &m.attrs) {
            match attr {
                VipAttr::Count(n) => mappings = Some(*n),
                VipAttr::MaxMappings(n) => max_mappings = Some(*n),
                VipAttr::MappingSize(n) => mapping_size = Some(*n),
                VipAttr::RoamLimit(n) => roam_limit = Some(*n),
                VipAttr::Stats(values) => {
                    for &(kind, value) in values {
                        // Counters a newer module added are left out.
                        if let Some(name) = crate::message::stat_name(kind) {
                            stats.insert(name, value);
                        }
                    }
                }
                _ => {}
            }
        }
        match (mappings, max_mappings, mapping_size) {
            (Some(mappings), Some(max_mappings), Some(mapping_size)) => Ok(TableInfo {
                mappings,
                max_mappings,
                roam_limit,
                mapping_size,
                stats,
            }),
            _ => Err(Error::BadReply(
                "info answer lacks VIP_A_COUNT, VIP_A_MAX_MAPPINGS or VIP_A_MAPPING_SIZE".into(),
            )),
        }
    }

    /// Sets the most mappings the namespace may hold.
    pub async fn set_max_mappings(&mut self, max: u32) -> Result<(), Error> {
        self.request(VipCmd::SetConfig, vec![VipAttr::MaxMappings(max)], 0)
            .await
            .map(drop)
    }

    /// Sets the most mappings roams may move a second (0 turns roaming off).
    pub async fn set_roam_limit(&mut self, limit: u32) -> Result<(), Error> {
        self.request(VipCmd::SetConfig, vec![VipAttr::RoamLimit(limit)], 0)
            .await
            .map(drop)
    }

    async fn request_one(&mut self, cmd: VipCmd, attrs: Vec<VipAttr>) -> Result<VipMessage, Error> {
        let replies = self.request(cmd, attrs, 0).await?;
        replies
            .into_iter()
            .next()
            .ok_or_else(|| Error::BadReply(format!("no answer to {cmd:?}")))
    }

    /// Sends a request (with `NLM_F_REQUEST | NLM_F_ACK` and `flags`) and collects the
    /// answers: none for a plain ack, one for a reply, many for a dump.
    async fn request(
        &mut self,
        cmd: VipCmd,
        attrs: Vec<VipAttr>,
        flags: u16,
    ) -> Result<Vec<VipMessage>, Error> {
        let mut msg = NetlinkMessage::from(GenlMessage::from_payload(VipMessage { cmd, attrs }));
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        msg.finalize();
        collect(self.handle.request(msg).await?).await
    }
}

/// A subscription to the module's events in the caller's namespace. Blocking: run it on a
/// thread of its own (or `spawn_blocking`).
pub struct EventListener {
    socket: netlink_sys::Socket,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<Event>,
}

impl EventListener {
    /// Joins the family's `events` group.
    pub async fn subscribe(client: &Client) -> Result<Self, Error> {
        use netlink_sys::{Socket, protocols::NETLINK_GENERIC};
        let family = client.handle.resolve_family::<VipMessage>().await?;
        let group = *family
            .multicast_groups
            .get(crate::EVENTS_GROUP)
            .ok_or_else(|| Error::BadReply("the family has no events group".into()))?;
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.add_membership(group)?;
        Ok(Self {
            socket,
            buf: vec![0; 1 << 16],
            pending: Default::default(),
        })
    }

    /// Waits for the next event. Messages that are not events are skipped.
    pub fn wait(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut rest = &self.buf[..n];
            while rest.len() >= 16 {
                let msg = NetlinkMessage::<GenlMessage<VipMessage>>::deserialize(rest)
                    .map_err(|e| Error::BadReply(e.to_string()))?;
                let len = (msg.header.length as usize).next_multiple_of(4).max(16);
                rest = rest.get(len..).unwrap_or_default();
                if let NetlinkPayload::InnerMessage(genl) = msg.payload
                    && let Ok(event) = Event::try_from(genl.payload)
                {
                    self.pending.push_back(event);
                }
            }
        }
    }
}

/// Requests per system call in [`Client::pipeline`]: their failures must fit in the socket's
/// receive buffer.
const PIPELINE_BATCH: usize = 512;

fn pipeline_blocking(
    family: u16,
    changes: &[Change],
    mut on_error: impl FnMut(usize, Error),
) -> Result<(), Error> {
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.set_ext_ack(true)?;
    socket.set_cap_ack(true)?;
    let message = |cmd, attrs, seq: u32| {
        let mut genl = GenlMessage::from_payload(VipMessage { cmd, attrs });
        genl.set_resolved_family_id(family);
        let mut msg = NetlinkMessage::from(genl);
        msg.header.flags = NLM_F_REQUEST;
        msg.header.sequence_number = seq;
        msg.finalize();
        msg
    };
    let mut out = Vec::new();
    let mut inbuf = vec![0u8; 1 << 16];
    for (batch_no, batch) in changes.chunks(PIPELINE_BATCH).enumerate() {
        let first = batch_no * PIPELINE_BATCH;
        out.clear();
        // Sequence numbers are the changes' indexes, plus one; the barrier's is 0.
        for (i, change) in batch.iter().enumerate() {
            let (cmd, attrs) = change.request();
            append(&mut out, &message(cmd, attrs, (first + i + 1) as u32));
        }
        append(&mut out, &message(VipCmd::GetInfo, vec![], 0));
        socket.send(&out, 0)?;
        'batch: loop {
            let n = socket.recv(&mut &mut inbuf[..], 0)?;
            let mut rest = &inbuf[..n];
            while !rest.is_empty() {
                let msg = NetlinkMessage::<GenlMessage<VipMessage>>::deserialize(rest)
                    .map_err(|e| Error::BadReply(e.to_string()))?;
                let len = (msg.header.length as usize).next_multiple_of(4).max(16);
                rest = rest.get(len..).unwrap_or_default();
                let seq = msg.header.sequence_number as usize;
                match msg.payload {
                    NetlinkPayload::Error(err) if err.code.is_some() => {
                        if seq == 0 {
                            return Err(refusal(&err, msg.header.flags));
                        }
                        on_error(seq - 1, refusal(&err, msg.header.flags));
                    }
                    NetlinkPayload::InnerMessage(_) if seq == 0 => break 'batch,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn append(out: &mut Vec<u8>, msg: &NetlinkMessage<GenlMessage<VipMessage>>) {
    let start = out.len();
    out.resize(start + msg.buffer_len(), 0);
    msg.serialize(&mut out[start..]);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Reads a request's answers up to its end: none for a plain ack, one for a reply, many for
/// a dump; an error acknowledgement becomes an [`Error`].
async fn collect(
    replies: impl futures::Stream<
        Item = Result<NetlinkMessage<GenlMessage<VipMessage>>, netlink_packet_core::DecodeError>,
    >,
) -> Result<Vec<VipMessage>, Error> {
    let mut replies = std::pin::pin!(replies);
    let mut answers = Vec::new();
    while let Some(reply) = replies.next().await {
        let reply = reply.map_err(|e| Error::BadReply(e.to_string()))?;
        match reply.payload {
            NetlinkPayload::InnerMessage(genl) => answers.push(genl.payload),
            NetlinkPayload::Error(err) if err.code.is_some() => {
                return Err(refusal(&err, reply.header.flags));
            }
            _ => {}
        }
    }
    Ok(answers)
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
