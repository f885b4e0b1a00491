//! The VIP wire format, version 2 (`docs/protocol.md` has the tables).
//!
//! Every datagram starts with a 4-byte header: the magic `"VP"`, the version
//! ([`VERSION`]) and the message type. Integers are big-endian, IPv4 addresses
//! four bytes in network order.
//!
//! * [`MessageType::Initiation`] and [`MessageType::Response`] carry the two
//!   messages of a Noise IK handshake, whose encrypted payloads
//!   ([`InitiationPayload`], [`ResponsePayload`]) are one round of the VIP
//!   negotiation, and end with WireGuard's `mac1` and `mac2`.
//! * [`MessageType::CookieReply`] carries a cookie to a busy responder's
//!   initiator (WireGuard's cookie reply).
//! * [`MessageType::Transport`] carries one [`Control`] message sealed in a
//!   session.
//! * [`MessageType::NakCue`] is the one unauthenticated message: "I dropped a
//!   packet between these VIPs and know nothing about them" — a cue to
//!   handshake again, never more.
//!
//! [`parse`] never panics, never allocates, and rejects anything that is not
//! exactly one well-formed message.

use std::net::Ipv4Addr;

use crate::fqdn::{Fqdn, MAX_FQDN_LEN};

/// The two magic bytes opening every message (`"VP"`).
pub const MAGIC: [u8; 2] = *b"VP";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 2;
/// Length of the common header.
pub const HEADER_LEN: usize = 4;
/// Longest datagram accepted by [`parse`].
pub const MAX_MESSAGE: usize = 1024;
/// Length of `mac1` and `mac2`.
pub const MAC_LEN: usize = 16;
/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;
/// Length of an X25519 public key.
pub const KEY_LEN: usize = 32;
/// The Noise part of an initiation without its payload: an ephemeral key, and the
/// initiator's static key with its tag; then the payload and its tag.
pub const INITIATION_NOISE_OVERHEAD: usize = KEY_LEN + KEY_LEN + TAG_LEN + TAG_LEN;
/// The Noise part of a response without its payload: an ephemeral key, then the payload
/// and its tag.
pub const RESPONSE_NOISE_OVERHEAD: usize = KEY_LEN + TAG_LEN;
/// The nonce of a cookie reply (XChaCha20-Poly1305).
pub const COOKIE_NONCE_LEN: usize = 24;
/// A sealed cookie: a 16-byte cookie and its tag.
pub const SEALED_COOKIE_LEN: usize = MAC_LEN + TAG_LEN;

/// Why a datagram or payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its fields say.
    #[error("truncated")]
    Truncated,
    /// Longer than [`MAX_MESSAGE`].
    #[error("too long")]
    TooLong,
    /// Bytes after the message.
    #[error("trailing bytes")]
    TrailingBytes,
    /// Not `"VP"`.
    #[error("bad magic")]
    BadMagic,
    /// Another version (version 1 is no longer spoken).
    #[error("unsupported version {0}")]
    Version(u8),
    /// An unknown message or control type.
    #[error("unknown type {0}")]
    UnknownType(u8),
    /// A name that is not canonical.
    #[error("bad name")]
    BadName,
    /// Flag bits that must be zero are set.
    #[error("unknown flags")]
    BadFlags,
}

/// The message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// The first handshake message.
    Initiation = 1,
    /// The second handshake message.
    Response = 2,
    /// A cookie for an initiator whose responder is under load.
    CookieReply = 3,
    /// A control message in a session.
    Transport = 4,
    /// An unauthenticated "I know nothing about these VIPs".
    NakCue = 5,
}

impl TryFrom<u8> for MessageType {
    type Error = WireError;

    fn try_from(value: u8) -> Result<Self, WireError> {
        Ok(match value {
            1 => Self::Initiation,
            2 => Self::Response,
            3 => Self::CookieReply,
            4 => Self::Transport,
            5 => Self::NakCue,
            other => return Err(WireError::UnknownType(other)),
        })
    }
}

// ---------------------------------------------------------------------------
// Reading and writing

/// Bounds-checked cursor over received bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.take(N)?.try_into().map_err(|_| WireError::Truncated)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn ipv4(&mut self) -> Result<Ipv4Addr, WireError> {
        Ok(Ipv4Addr::from(self.array::<4>()?))
    }

    pub(crate) fn fqdn(&mut self) -> Result<Fqdn, WireError> {
        let len = usize::from(self.u8()?);
        if len == 0 || len > MAX_FQDN_LEN {
            return Err(WireError::BadName);
        }
        Fqdn::from_wire(self.take(len)?).map_err(|_| WireError::BadName)
    }

    /// Everything from the current position to `end_back` bytes before the end.
    pub(crate) fn until_last(&mut self, end_back: usize) -> Result<&'a [u8], WireError> {
        let n = self
            .remaining()
            .checked_sub(end_back)
            .ok_or(WireError::Truncated)?;
        self.take(n)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    pub(crate) fn consumed(&self) -> &'a [u8] {
        self.buf.get(..self.pos).unwrap_or_default()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn finish(&self) -> Result<(), WireError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

fn header(kind: MessageType) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out
}

// ---------------------------------------------------------------------------
// Datagrams

/// A received handshake message (initiation or response) with its MACs and the
/// bytes they cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// The sender's session index.
    pub sender_index: u32,
    /// Ours, as the sender knows it (responses only; 0 in initiations).
    pub receiver_index: u32,
    /// The Noise message.
    pub noise: &'a [u8],
    /// Every byte before `mac1`, which `mac1` covers.
    pub before_mac1: &'a [u8],
    /// `mac1`.
    pub mac1: [u8; MAC_LEN],
    /// Every byte before `mac2`, which `mac2` covers.
    pub before_mac2: &'a [u8],
    /// `mac2` (zero when the sender has no cookie).
    pub mac2: [u8; MAC_LEN],
}

/// A received cookie reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReply<'a> {
    /// The initiator's index from the initiation it answers.
    pub receiver_index: u32,
    /// The XChaCha20-Poly1305 nonce.
    pub nonce: &'a [u8; COOKIE_NONCE_LEN],
    /// The sealed cookie.
    pub sealed_cookie: &'a [u8; SEALED_COOKIE_LEN],
}

/// A received transport message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport<'a> {
    /// Our session index.
    pub receiver_index: u32,
    /// The sender's message counter: the AEAD nonce.
    pub counter: u64,
    /// The sealed [`Control`] message.
    pub sealed: &'a [u8],
}

/// A received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// The first handshake message.
    Initiation(Handshake<'a>),
    /// The second handshake message.
    Response(Handshake<'a>),
    /// A cookie for us.
    CookieReply(CookieReply<'a>),
    /// A control message in a session.
    Transport(Transport<'a>),
    /// "I dropped a packet from `dropped_src_vip` to `dropped_dst_vip` and know
    /// nothing of them": unauthenticated.
    NakCue {
        /// The dropped packet's inner source.
        dropped_src_vip: Ipv4Addr,
        /// The dropped packet's inner destination.
        dropped_dst_vip: Ipv4Addr,
    },
}

/// Parses one datagram. Checks lengths and framing only: cryptography is for the
/// handshake and session code.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, WireError> {
    if buf.len() > MAX_MESSAGE {
        return Err(WireError::TooLong);
    }
    let mut r = Reader::new(buf);
    if r.array::<2>()? != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let kind = MessageType::try_from(r.u8()?)?;
    let packet = match kind {
        MessageType::Initiation | MessageType::Response => {
            let sender_index = r.u32()?;
            let receiver_index = if kind == MessageType::Response {
                r.u32()?
            } else {
                0
            };
            let noise = r.until_last(2 * MAC_LEN)?;
            let overhead = if kind == MessageType::Initiation {
                INITIATION_NOISE_OVERHEAD
            } else {
                RESPONSE_NOISE_OVERHEAD
            };
            if noise.len() < overhead {
                return Err(WireError::Truncated);
            }
            let before_mac1 = r.consumed();
            let mac1 = r.array()?;
            let before_mac2 = r.consumed();
            let mac2 = r.array()?;
            let hs = Handshake {
                sender_index,
                receiver_index,
                noise,
                before_mac1,
                mac1,
                before_mac2,
                mac2,
            };
            if kind == MessageType::Initiation {
                Packet::Initiation(hs)
            } else {
                Packet::Response(hs)
            }
        }
        MessageType::CookieReply => {
            let receiver_index = r.u32()?;
            let nonce = r
                .take(COOKIE_NONCE_LEN)?
                .try_into()
                .map_err(|_| WireError::Truncated)?;
            let sealed_cookie = r
                .take(SEALED_COOKIE_LEN)?
                .try_into()
                .map_err(|_| WireError::Truncated)?;
            Packet::CookieReply(CookieReply {
                receiver_index,
                nonce,
                sealed_cookie,
            })
        }
        MessageType::Transport => {
            let receiver_index = r.u32()?;
            let counter = r.u64()?;
            let sealed = r.rest();
            if sealed.len() < TAG_LEN + 1 {
                return Err(WireError::Truncated);
            }
            Packet::Transport(Transport {
                receiver_index,
                counter,
                sealed,
            })
        }
        MessageType::NakCue => Packet::NakCue {
            dropped_src_vip: r.ipv4()?,
            dropped_dst_vip: r.ipv4()?,
        },
    };
    r.finish()?;
    Ok(packet)
}

/// Whether a datagram claims to be an initiation (its header says so; nothing is
/// checked): for a receive path that queues them apart.
pub fn is_initiation(buf: &[u8]) -> bool {
    buf.get(..HEADER_LEN) == Some(&[MAGIC[0], MAGIC[1], VERSION, MessageType::Initiation as u8][..])
}

/// The bytes of a handshake message up to (not including) `mac1`: header, indices, Noise
/// message. The caller appends `mac1` and `mac2`.
pub fn handshake_head(
    kind: MessageType,
    sender_index: u32,
    receiver_index: u32,
    noise: &[u8],
) -> Vec<u8> {
    let mut out = header(kind);
    out.extend_from_slice(&sender_index.to_be_bytes());
    if kind == MessageType::Response {
        out.extend_from_slice(&receiver_index.to_be_bytes());
    }
    out.extend_from_slice(noise);
    out
}

/// A cookie reply.
pub fn cookie_reply(
    receiver_index: u32,
    nonce: &[u8; COOKIE_NONCE_LEN],
    sealed_cookie: &[u8; SEALED_COOKIE_LEN],
) -> Vec<u8> {
    let mut out = header(MessageType::CookieReply);
    out.extend_from_slice(&receiver_index.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(sealed_cookie);
    out
}

/// The head of a transport message; the caller appends the sealed control message.
pub fn transport_head(receiver_index: u32, counter: u64) -> Vec<u8> {
    let mut out = header(MessageType::Transport);
    out.extend_from_slice(&receiver_index.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out
}

/// Where a transport message's sealed part starts.
pub const TRANSPORT_HEAD_LEN: usize = HEADER_LEN + 4 + 8;

/// A NAK cue.
pub fn nak_cue(dropped_src_vip: Ipv4Addr, dropped_dst_vip: Ipv4Addr) -> Vec<u8> {
    let mut out = header(MessageType::NakCue);
    out.extend_from_slice(&dropped_src_vip.octets());
    out.extend_from_slice(&dropped_dst_vip.octets());
    out
}

// ---------------------------------------------------------------------------
// Handshake payloads: one round of the negotiation of paper section 3.1

/// Payload flag: the sender accepts the VIP the other side proposed for itself.
pub const FLAG_ACCEPT: u8 = 0x01;
/// Payload flag: the sender carries the pair's packets in ESP (issue 11).
pub const FLAG_ESP: u8 = 0x02;
/// Payload flag: the sender has AES hardware (AES-GCM is then chosen if both have it).
pub const FLAG_AES: u8 = 0x04;
const KNOWN_FLAGS: u8 = FLAG_ACCEPT | FLAG_ESP | FLAG_AES;

/// What a side of a handshake says about ESP for the pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EspOffer {
    /// It will carry the pair's packets in ESP (and only then).
    pub esp: bool,
    /// It has AES hardware.
    pub aes_hardware: bool,
}

impl EspOffer {
    fn flags(self) -> u8 {
        (if self.esp { FLAG_ESP } else { 0 }) | (if self.aes_hardware { FLAG_AES } else { 0 })
    }

    fn from_flags(flags: u8) -> Self {
        Self {
            esp: flags & FLAG_ESP != 0,
            aes_hardware: flags & FLAG_AES != 0,
        }
    }
}

/// What the initiator says in the first message: who it is, whom it wants, and one round
/// of the negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiationPayload {
    /// Grows with every initiation this initiator makes (it never repeats, even across
    /// restarts): a replayed initiation is refused.
    pub counter: u64,
    /// The initiator's name.
    pub requester: Fqdn,
    /// The name it wants to talk to.
    pub responder: Fqdn,
    /// The negotiation round, from 1.
    pub round: u8,
    /// The initiator accepts `responder_vip` for the responder.
    pub accept: bool,
    /// What the initiator says about ESP.
    pub esp: EspOffer,
    /// The VIP the initiator proposes for itself.
    pub requester_vip: Ipv4Addr,
    /// The VIP it proposes (or accepts) for the responder.
    pub responder_vip: Ipv4Addr,
}

impl InitiationPayload {
    /// Longest encoding.
    pub const MAX_LEN: usize = 8 + 2 * (1 + MAX_FQDN_LEN) + 1 + 1 + 4 + 4;

    /// The bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::MAX_LEN);
        out.extend_from_slice(&self.counter.to_be_bytes());
        self.requester.put(&mut out);
        self.responder.put(&mut out);
        out.push(self.round);
        out.push(if self.accept { FLAG_ACCEPT } else { 0 } | self.esp.flags());
        out.extend_from_slice(&self.requester_vip.octets());
        out.extend_from_slice(&self.responder_vip.octets());
        out
    }

    /// Parses the bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let counter = r.u64()?;
        let requester = r.fqdn()?;
        let responder = r.fqdn()?;
        let round = r.u8()?;
        let flags = r.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::BadFlags);
        }
        let payload = Self {
            counter,
            requester,
            responder,
            round,
            accept: flags & FLAG_ACCEPT != 0,
            esp: EspOffer::from_flags(flags),
            requester_vip: r.ipv4()?,
            responder_vip: r.ipv4()?,
        };
        r.finish()?;
        Ok(payload)
    }
}

/// What the responder answers: the same round, its verdict on the initiator's VIP, and
/// its own VIP (the initiator's proposal, or a new one). A VIP of 0.0.0.0 ends the
/// negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePayload {
    /// The round answered.
    pub round: u8,
    /// The responder accepts `requester_vip`.
    pub accept: bool,
    /// What the responder says about ESP.
    pub esp: EspOffer,
    /// The initiator's VIP, as the initiation proposed it.
    pub requester_vip: Ipv4Addr,
    /// The responder's VIP: the initiation's proposal if it keeps it, or its own.
    pub responder_vip: Ipv4Addr,
}

impl ResponsePayload {
    /// Length of the encoding.
    pub const LEN: usize = 1 + 1 + 4 + 4;

    /// Whether the responder ended the negotiation.
    pub fn terminates(&self) -> bool {
        self.requester_vip.is_unspecified() || self.responder_vip.is_unspecified()
    }

    /// The bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(self.round);
        out.push(if self.accept { FLAG_ACCEPT } else { 0 } | self.esp.flags());
        out.extend_from_slice(&self.requester_vip.octets());
        out.extend_from_slice(&self.responder_vip.octets());
        out
    }

    /// Parses the bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let round = r.u8()?;
        let flags = r.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::BadFlags);
        }
        let payload = Self {
            round,
            accept: flags & FLAG_ACCEPT != 0,
            esp: EspOffer::from_flags(flags),
            requester_vip: r.ipv4()?,
            responder_vip: r.ipv4()?,
        };
        r.finish()?;
        Ok(payload)
    }
}

// ---------------------------------------------------------------------------
// Control messages, inside a session

/// A control message between two daemons that share a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Initiator to responder: "I got your response at my address; install the pair."
    /// The return-routability proof the responder waits for before keeping any state.
    Confirm {
        /// The handshake round confirmed.
        round: u8,
    },
    /// Responder to initiator: "installed."
    ConfirmAck {
        /// The round confirmed.
        round: u8,
    },
    /// "My physical address changed": the receiver re-points its mapping of `vip` to the
    /// source address of this (authenticated) packet. `claimed` is only a cross-check.
    Hint {
        /// Echoed by the [`Control::Ack`].
        seq: u32,
        /// The sender's VIP, as the receiver calls it.
        vip: Ipv4Addr,
        /// The address the sender believes it sends from.
        claimed: Ipv4Addr,
    },
    /// Acknowledges a hint.
    Ack {
        /// The hint's `seq`.
        seq: u32,
        /// The source address the hint arrived from (NAT detection, debugging).
        seen: Ipv4Addr,
    },
    /// "My kernel dropped a packet between these VIPs: I lost our pair; negotiate again."
    Nak {
        /// The dropped packet's inner source.
        dropped_src_vip: Ipv4Addr,
        /// The dropped packet's inner destination.
        dropped_dst_vip: Ipv4Addr,
    },
    /// "Are you at this address?" Answered with a [`Control::Pong`] from it.
    Probe {
        /// Echoed.
        nonce: u64,
    },
    /// Answers a probe.
    Pong {
        /// The probe's nonce.
        nonce: u64,
    },
}

impl Control {
    /// Longest encoding.
    pub const MAX_LEN: usize = 1 + 4 + 4 + 4;

    fn kind(&self) -> u8 {
        match self {
            Control::Confirm { .. } => 1,
            Control::ConfirmAck { .. } => 2,
            Control::Hint { .. } => 3,
            Control::Ack { .. } => 4,
            Control::Nak { .. } => 5,
            Control::Probe { .. } => 6,
            Control::Pong { .. } => 7,
        }
    }

    /// The bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::MAX_LEN);
        out.push(self.kind());
        match *self {
            Control::Confirm { round } | Control::ConfirmAck { round } => out.push(round),
            Control::Hint { seq, vip, claimed } => {
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&vip.octets());
                out.extend_from_slice(&claimed.octets());
            }
            Control::Ack { seq, seen } => {
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&seen.octets());
            }
            Control::Nak {
                dropped_src_vip,
                dropped_dst_vip,
            } => {
                out.extend_from_slice(&dropped_src_vip.octets());
                out.extend_from_slice(&dropped_dst_vip.octets());
            }
            Control::Probe { nonce } | Control::Pong { nonce } => {
                out.extend_from_slice(&nonce.to_be_bytes())
            }
        }
        out
    }

    /// Parses the bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let control = match r.u8()? {
            1 => Control::Confirm { round: r.u8()? },
            2 => Control::ConfirmAck { round: r.u8()? },
            3 => Control::Hint {
                seq: r.u32()?,
                vip: r.ipv4()?,
                claimed: r.ipv4()?,
            },
            4 => Control::Ack {
                seq: r.u32()?,
                seen: r.ipv4()?,
            },
            5 => Control::Nak {
                dropped_src_vip: r.ipv4()?,
                dropped_dst_vip: r.ipv4()?,
            },
            6 => Control::Probe { nonce: r.u64()? },
            7 => Control::Pong { nonce: r.u64()? },
            other => return Err(WireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fqdn(s: &str) -> Fqdn {
        Fqdn::new(s).unwrap()
    }

    #[test]
    fn initiation_payload_roundtrips() {
        let p = InitiationPayload {
            counter: u64::MAX - 1,
            requester: fqdn("a.example.org"),
            responder: fqdn("b.example.org"),
            round: 3,
            accept: true,
            esp: EspOffer {
                esp: true,
                aes_hardware: false,
            },
            requester_vip: Ipv4Addr::new(240, 0, 0, 1),
            responder_vip: Ipv4Addr::new(240, 0, 0, 2),
        };
        assert_eq!(InitiationPayload::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn payloads_refuse_unknown_flags_and_trailing_bytes() {
        let r = ResponsePayload {
            round: 1,
            accept: false,
            esp: EspOffer {
                esp: true,
                aes_hardware: true,
            },
            requester_vip: Ipv4Addr::new(240, 0, 0, 1),
            responder_vip: Ipv4Addr::UNSPECIFIED,
        };
        let mut bytes = r.encode();
        assert_eq!(ResponsePayload::decode(&bytes), Ok(r));
        assert!(r.terminates());
        bytes[1] = 0x80;
        assert_eq!(ResponsePayload::decode(&bytes), Err(WireError::BadFlags));
        let mut bytes = r.encode();
        bytes.push(0);
        assert_eq!(
            ResponsePayload::decode(&bytes),
            Err(WireError::TrailingBytes)
        );
    }

    #[test]
    fn controls_roundtrip() {
        let a = Ipv4Addr::new(192, 0, 2, 1);
        for c in [
            Control::Confirm { round: 1 },
            Control::ConfirmAck { round: 9 },
            Control::Hint {
                seq: 7,
                vip: Ipv4Addr::new(240, 1, 2, 3),
                claimed: a,
            },
            Control::Ack { seq: 7, seen: a },
            Control::Nak {
                dropped_src_vip: a,
                dropped_dst_vip: a,
            },
            Control::Probe { nonce: 42 },
            Control::Pong { nonce: u64::MAX },
        ] {
            assert_eq!(Control::decode(&c.encode()), Ok(c));
        }
        assert_eq!(Control::decode(&[99]), Err(WireError::UnknownType(99)));
        assert_eq!(Control::decode(&[3, 0]), Err(WireError::Truncated));
    }

    #[test]
    fn datagrams_frame_and_refuse() {
        let head = handshake_head(
            MessageType::Initiation,
            7,
            0,
            &[0u8; INITIATION_NOISE_OVERHEAD],
        );
        let mut msg = head.clone();
        msg.extend_from_slice(&[1u8; MAC_LEN]);
        msg.extend_from_slice(&[2u8; MAC_LEN]);
        match parse(&msg) {
            Ok(Packet::Initiation(hs)) => {
                assert_eq!(hs.sender_index, 7);
                assert_eq!(hs.before_mac1, &head[..]);
                assert_eq!(hs.mac1, [1u8; MAC_LEN]);
                assert_eq!(hs.before_mac2.len(), head.len() + MAC_LEN);
            }
            other => panic!("{other:?}"),
        }
        // A Noise part shorter than the pattern's fixed part.
        let short = handshake_head(MessageType::Initiation, 7, 0, &[0u8; 10]);
        let mut short = short;
        short.extend_from_slice(&[0u8; 2 * MAC_LEN]);
        assert_eq!(parse(&short), Err(WireError::Truncated));
        let mut v1 = msg.clone();
        v1[2] = 1;
        assert_eq!(parse(&v1), Err(WireError::Version(1)));
        assert_eq!(
            parse(&nak_cue(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST)).map(|_| ()),
            Ok(())
        );
        let mut long = nak_cue(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
        long.push(0);
        assert_eq!(parse(&long), Err(WireError::TrailingBytes));
        assert_eq!(parse(&vec![0u8; MAX_MESSAGE + 1]), Err(WireError::TooLong));
        let mut t = transport_head(5, 9);
        t.extend_from_slice(&[0u8; TAG_LEN]);
        assert_eq!(parse(&t), Err(WireError::Truncated));
        t.push(0);
        assert!(matches!(
            parse(&t),
            Ok(Packet::Transport(Transport {
                receiver_index: 5,
                counter: 9,
                ..
            }))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = parse(&bytes);
            let _ = InitiationPayload::decode(&bytes);
            let _ = ResponsePayload::decode(&bytes);
            let _ = Control::decode(&bytes);
        }

        #[test]
        fn decoders_accept_only_canonical_encodings(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Whatever a decoder accepts encodes back to the very same bytes.
            if let Ok(p) = InitiationPayload::decode(&bytes) {
                prop_assert_eq!(p.encode(), bytes.clone());
            }
            if let Ok(p) = ResponsePayload::decode(&bytes) {
                prop_assert_eq!(p.encode(), bytes.clone());
            }
            if let Ok(c) = Control::decode(&bytes) {
                prop_assert_eq!(c.encode(), bytes.clone());
            }
        }

        #[test]
        fn every_control_roundtrips(kind in 1u8..=7, a in any::<u32>(), b in any::<u32>(), c in any::<u32>(), n in any::<u64>(), r in any::<u8>()) {
            let control = match kind {
                1 => Control::Confirm { round: r },
                2 => Control::ConfirmAck { round: r },
                3 => Control::Hint { seq: a, vip: b.into(), claimed: c.into() },
                4 => Control::Ack { seq: a, seen: b.into() },
                5 => Control::Nak { dropped_src_vip: a.into(), dropped_dst_vip: b.into() },
                6 => Control::Probe { nonce: n },
                _ => Control::Pong { nonce: n },
            };
            prop_assert_eq!(Control::decode(&control.encode()), Ok(control));
        }

        #[test]
        fn payloads_roundtrip(counter in any::<u64>(), round in any::<u8>(), accept in any::<bool>(), v1 in any::<u32>(), v2 in any::<u32>(), n1 in "[a-z]{1,20}", n2 in "[a-z0-9]{1,10}\\.[a-z]{2,5}") {
            let p = InitiationPayload {
                counter,
                requester: Fqdn::new(&n1).unwrap(),
                responder: Fqdn::new(&n2).unwrap(),
                round,
                accept,
                esp: EspOffer { esp: accept, aes_hardware: round % 2 == 0 },
                requester_vip: v1.into(),
                responder_vip: v2.into(),
            };
            prop_assert_eq!(InitiationPayload::decode(&p.encode()), Ok(p));
            let r = ResponsePayload { round, accept, esp: EspOffer { esp: round % 3 == 0, aes_hardware: accept }, requester_vip: v1.into(), responder_vip: v2.into() };
            prop_assert_eq!(ResponsePayload::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn parse_never_panics_on_valid_headers(kind in 1u8..=5, tail in proptest::collection::vec(any::<u8>(), 0..700)) {
            let mut bytes = vec![b'V', b'P', VERSION, kind];
            bytes.extend(tail);
            let _ = parse(&bytes);
        }
    }
}
