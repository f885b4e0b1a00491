//! The VIP wire format.
//!
//! All integers are big-endian. Every datagram starts with an 8-byte
//! header:
//!
//! | offset | size | field                                        |
//! |--------|------|----------------------------------------------|
//! | 0      | 2    | magic `0x56 0x50` (`"VP"`)                   |
//! | 2      | 1    | version, [`VERSION`]                         |
//! | 3      | 1    | message type ([`MessageType`])               |
//! | 4      | 4    | reserved: zero on send, ignored on receive   |
//!
//! Negotiation messages ([`Negotiation`]) travel in the clear, optionally
//! with an HMAC-SHA256 tag; control messages ([`Control`]) are sealed with
//! ChaCha20-Poly1305. See `docs/protocol.md` for the complete layouts.
//!
//! [`decode`] never panics, never allocates more than the datagram's size
//! and rejects anything that is not exactly one well-formed message.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::crypto::{MacKey, RecvKey, SendKey};

/// The two magic bytes opening every message (`"VP"`).
pub const MAGIC: [u8; 2] = [0x56, 0x50];
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the common header.
pub const HEADER_LEN: usize = 8;
/// Longest datagram accepted by [`decode`].
pub const MAX_MESSAGE: usize = 1024;
/// Length of the HMAC-SHA256 tag on negotiation messages.
pub const MAC_LEN: usize = 32;
/// Length of the Poly1305 tag on control messages.
pub const AEAD_TAG_LEN: usize = 16;
/// Longest DNS name, in bytes (without the trailing dot).
pub const MAX_FQDN_LEN: usize = 253;
/// Longest DNS label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// Negotiation flag: the sender accepts the other side's proposed VIP.
pub const FLAG_ACCEPT: u8 = 0x01;
/// Negotiation flag: a 32-byte HMAC-SHA256 tag ends the message.
pub const FLAG_HAS_MAC: u8 = 0x02;
const KNOWN_FLAGS: u8 = FLAG_ACCEPT | FLAG_HAS_MAC;

/// Length of a Hint plaintext.
pub const HINT_LEN: usize = 12;
/// Length of an Ack plaintext.
pub const ACK_LEN: usize = 8;
/// Length of a Nak plaintext.
pub const NAK_LEN: usize = 8;

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message ends before a field it must contain.
    #[error("message truncated")]
    Truncated,
    /// The datagram is longer than [`MAX_MESSAGE`].
    #[error("message of {0} bytes exceeds the maximum of {MAX_MESSAGE}")]
    Oversized(usize),
    /// The first two bytes are not [`MAGIC`].
    #[error("bad magic")]
    BadMagic,
    /// The version byte is not [`VERSION`].
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The message type byte is not a known [`MessageType`].
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// Undefined flag bits are set.
    #[error("undefined flag bits set: {0:#04x}")]
    BadFlags(u8),
    /// A length field or a plaintext has the wrong size.
    #[error("bad length")]
    BadLength,
    /// A DNS name is invalid or not in canonical (lowercase, no trailing
    /// dot) form.
    #[error("invalid DNS name")]
    BadName,
    /// Bytes follow the end of the message.
    #[error("trailing bytes after message")]
    TrailingBytes,
    /// Authentication (HMAC or AEAD tag) failed.
    #[error("authentication failed")]
    BadMac,
    /// [`NegotiationPacket::verify`] was called on a message without a MAC.
    #[error("message carries no MAC")]
    MissingMac,
}

/// The message type byte (header offset 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// VIP negotiation request.
    Request = 1,
    /// VIP negotiation reply.
    Reply = 2,
    /// Sealed invalidation hint.
    Hint = 3,
    /// Sealed acknowledgement of a hint.
    Ack = 4,
    /// Sealed negative acknowledgement (packet dropped).
    Nak = 5,
}

impl TryFrom<u8> for MessageType {
    type Error = WireError;

    fn try_from(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            1 => MessageType::Request,
            2 => MessageType::Reply,
            3 => MessageType::Hint,
            4 => MessageType::Ack,
            5 => MessageType::Nak,
            other => return Err(WireError::UnknownType(other)),
        })
    }
}

fn header(t: MessageType) -> [u8; HEADER_LEN] {
    [MAGIC[0], MAGIC[1], VERSION, t as u8, 0, 0, 0, 0]
}

// ---------------------------------------------------------------------------
// Fqdn

/// A validated, canonical DNS name: lowercase ASCII, no trailing dot,
/// 1..=253 bytes, labels of 1..=63 `[a-z0-9-]` not starting or ending with
/// `-`. A single label is allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fqdn(String);

impl Fqdn {
    /// Validates `name`, lowercasing it and stripping one trailing dot.
    pub fn new(name: &str) -> Result<Fqdn, WireError> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > MAX_FQDN_LEN {
            return Err(WireError::BadName);
        }
        let lower = name.to_ascii_lowercase();
        for label in lower.split('.') {
            let ok = !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(WireError::BadName);
            }
        }
        Ok(Fqdn(lower))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a name from the wire, which must already be canonical.
    fn from_wire(bytes: &[u8]) -> Result<Fqdn, WireError> {
        let s = std::str::from_utf8(bytes).map_err(|_| WireError::BadName)?;
        let name = Fqdn::new(s)?;
        if name.0 != s {
            return Err(WireError::BadName);
        }
        Ok(name)
    }

    /// Appends the length-prefixed name.
    fn put(&self, out: &mut Vec<u8>) {
        // Fqdn::new guarantees 1..=253 bytes.
        out.push(u8::try_from(self.0.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.0.as_bytes());
    }
}

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fqdn {
    type Err = WireError;

    fn from_str(s: &str) -> Result<Fqdn, WireError> {
        Fqdn::new(s)
    }
}

impl TryFrom<String> for Fqdn {
    type Error = WireError;

    fn try_from(s: String) -> Result<Fqdn, WireError> {
        Fqdn::new(&s)
    }
}

impl From<Fqdn> for String {
    fn from(f: Fqdn) -> String {
        f.0
    }
}

impl AsRef<str> for Fqdn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------------------
// Reader

/// Bounds-checked cursor over a received datagram.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.take(N)?.try_into().map_err(|_| WireError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn ipv4(&mut self) -> Result<Ipv4Addr, WireError> {
        Ok(Ipv4Addr::from(self.array::<4>()?))
    }

    fn fqdn(&mut self) -> Result<Fqdn, WireError> {
        let len = usize::from(self.u8()?);
        if len == 0 || len > MAX_FQDN_LEN {
            return Err(WireError::BadName);
        }
        Fqdn::from_wire(self.take(len)?)
    }

    /// Everything read so far.
    fn consumed(&self) -> &'a [u8] {
        self.buf.get(..self.pos).unwrap_or_default()
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn finish(&self) -> Result<(), WireError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

// ---------------------------------------------------------------------------
// Negotiation

/// Whether a negotiation message is a request or a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiationKind {
    /// Sent by the host that starts (or continues) a negotiation.
    Request,
    /// Sent in answer to a request.
    Reply,
}

impl NegotiationKind {
    fn message_type(self) -> MessageType {
        match self {
            NegotiationKind::Request => MessageType::Request,
            NegotiationKind::Reply => MessageType::Reply,
        }
    }
}

/// A VIP negotiation request or reply (message types 1 and 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    /// Request or reply.
    pub kind: NegotiationKind,
    /// Negotiation session identifier, chosen by the requester.
    pub session: u64,
    /// Round number within the session.
    pub round: u8,
    /// The sender accepts the VIP the other side proposed.
    pub accept: bool,
    /// Name of the host that initiated the negotiation.
    pub requester_fqdn: Fqdn,
    /// Name of the host being asked.
    pub responder_fqdn: Fqdn,
    /// VIP proposed for the requester.
    pub requester_vip: Ipv4Addr,
    /// VIP proposed for the responder.
    pub responder_vip: Ipv4Addr,
    /// The sender's long-term X25519 public key.
    pub sender_key: [u8; 32],
}

impl Negotiation {
    /// Whether this message terminates the negotiation (either VIP is
    /// `0.0.0.0`).
    pub fn terminates(&self) -> bool {
        self.requester_vip.is_unspecified() || self.responder_vip.is_unspecified()
    }

    /// Serialises the message, appending an HMAC-SHA256 tag over all
    /// preceding bytes when `mac_key` is given.
    pub fn encode(&self, mac_key: Option<&MacKey>) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_LEN + 50 + 2 + self.requester_fqdn.0.len() + self.responder_fqdn.0.len() + 32,
        );
        out.extend_from_slice(&header(self.kind.message_type()));
        out.extend_from_slice(&self.session.to_be_bytes());
        out.push(self.round);
        let mut flags = 0;
        if self.accept {
            flags |= FLAG_ACCEPT;
        }
        if mac_key.is_some() {
            flags |= FLAG_HAS_MAC;
        }
        out.push(flags);
        out.extend_from_slice(&self.requester_vip.octets());
        out.extend_from_slice(&self.responder_vip.octets());
        out.extend_from_slice(&self.sender_key);
        self.requester_fqdn.put(&mut out);
        self.responder_fqdn.put(&mut out);
        if let Some(key) = mac_key {
            let tag = hmac(key, &out).finalize().into_bytes();
            out.extend_from_slice(&tag);
        }
        out
    }

    fn decode(kind: NegotiationKind, r: &mut Reader<'_>) -> Result<NegotiationPacket, WireError> {
        let session = r.u64()?;
        let round = r.u8()?;
        let flags = r.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::BadFlags(flags & !KNOWN_FLAGS));
        }
        let requester_vip = r.ipv4()?;
        let responder_vip = r.ipv4()?;
        let sender_key = r.array()?;
        let requester_fqdn = r.fqdn()?;
        let responder_fqdn = r.fqdn()?;
        let signed = r.consumed().to_vec();
        let tag = if flags & FLAG_HAS_MAC != 0 {
            Some(r.array()?)
        } else {
            None
        };
        r.finish()?;
        Ok(NegotiationPacket {
            msg: Negotiation {
                kind,
                session,
                round,
                accept: flags & FLAG_ACCEPT != 0,
                requester_fqdn,
                responder_fqdn,
                requester_vip,
                responder_vip,
                sender_key,
            },
            signed,
            tag,
        })
    }
}

/// HMAC-SHA256 keyed with a 32-byte key.
///
/// HMAC pads keys shorter than the 64-byte block with zeros (RFC 2104), so
/// keying with the zero-padded block is the same function and infallible.
fn hmac(key: &MacKey, data: &[u8]) -> Hmac<Sha256> {
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    for (dst, src) in block.iter_mut().zip(key.as_bytes()) {
        *dst = *src;
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
    mac.update(data);
    mac
}

/// A received negotiation message together with what is needed to check its
/// MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationPacket {
    /// The decoded message.
    pub msg: Negotiation,
    /// The bytes covered by the MAC (everything before the tag).
    signed: Vec<u8>,
    tag: Option<[u8; MAC_LEN]>,
}

impl NegotiationPacket {
    /// Whether the message carried a MAC.
    pub fn has_mac(&self) -> bool {
        self.tag.is_some()
    }

    /// Checks the MAC in constant time. Fails with [`WireError::MissingMac`]
    /// if there is none and [`WireError::BadMac`] if it does not match.
    pub fn verify(&self, key: &MacKey) -> Result<(), WireError> {
        let tag = self.tag.as_ref().ok_or(WireError::MissingMac)?;
        hmac(key, &self.signed)
            .verify_slice(tag)
            .map_err(|_| WireError::BadMac)
    }
}

// ---------------------------------------------------------------------------
// Control messages

/// Which control message a sealed datagram holds (visible before opening).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// Invalidation hint.
    Hint,
    /// Acknowledgement.
    Ack,
    /// Negative acknowledgement.
    Nak,
}

impl ControlKind {
    fn message_type(self) -> MessageType {
        match self {
            ControlKind::Hint => MessageType::Hint,
            ControlKind::Ack => MessageType::Ack,
            ControlKind::Nak => MessageType::Nak,
        }
    }

    /// Size of this kind's plaintext body.
    pub fn plaintext_len(self) -> usize {
        match self {
            ControlKind::Hint => HINT_LEN,
            ControlKind::Ack => ACK_LEN,
            ControlKind::Nak => NAK_LEN,
        }
    }
}

/// An authenticated control message (the plaintext of message types 3-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// The sender's physical address changed.
    Hint {
        /// The sender's VIP as the receiver knows it.
        vip: Ipv4Addr,
        /// The sender's new physical address.
        new_addr: Ipv4Addr,
        /// Hint sequence number, echoed in the [`Control::Ack`].
        seq: u32,
    },
    /// Acknowledges a hint.
    Ack {
        /// The acknowledged hint's `seq`.
        seq: u32,
        /// The source address the acknowledged hint came from (for NAT
        /// detection and debugging).
        your_addr: Ipv4Addr,
    },
    /// A packet between two VIPs was dropped because the mapping is stale.
    Nak {
        /// Source VIP of the dropped packet.
        dropped_src_vip: Ipv4Addr,
        /// Destination VIP of the dropped packet.
        dropped_dst_vip: Ipv4Addr,
    },
}

impl Control {
    /// This message's kind.
    pub fn kind(&self) -> ControlKind {
        match self {
            Control::Hint { .. } => ControlKind::Hint,
            Control::Ack { .. } => ControlKind::Ack,
            Control::Nak { .. } => ControlKind::Nak,
        }
    }

    fn plaintext(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HINT_LEN);
        match *self {
            Control::Hint { vip, new_addr, seq } => {
                out.extend_from_slice(&vip.octets());
                out.extend_from_slice(&new_addr.octets());
                out.extend_from_slice(&seq.to_be_bytes());
            }
            Control::Ack { seq, your_addr } => {
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&your_addr.octets());
            }
            Control::Nak {
                dropped_src_vip,
                dropped_dst_vip,
            } => {
                out.extend_from_slice(&dropped_src_vip.octets());
                out.extend_from_slice(&dropped_dst_vip.octets());
            }
        }
        out
    }

    fn parse(kind: ControlKind, plain: &[u8]) -> Result<Control, WireError> {
        if plain.len() != kind.plaintext_len() {
            return Err(WireError::BadLength);
        }
        let mut r = Reader::new(plain);
        let c = match kind {
            ControlKind::Hint => Control::Hint {
                vip: r.ipv4()?,
                new_addr: r.ipv4()?,
                seq: r.u32()?,
            },
            ControlKind::Ack => Control::Ack {
                seq: r.u32()?,
                your_addr: r.ipv4()?,
            },
            ControlKind::Nak => Control::Nak {
                dropped_src_vip: r.ipv4()?,
                dropped_dst_vip: r.ipv4()?,
            },
        };
        r.finish()?;
        Ok(c)
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    for (dst, src) in n.iter_mut().skip(4).zip(counter.to_be_bytes()) {
        *dst = src;
    }
    Nonce::from(n)
}

fn cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&Key::from(*key))
}

/// Seals `control` from `sender` under `key` with nonce `counter`.
///
/// The caller must never reuse a counter with the same key; see
/// [`crate::replay`] for the counter scheme.
pub fn seal(control: &Control, sender: &Fqdn, counter: u64, key: &SendKey) -> Vec<u8> {
    let kind = control.kind();
    let mut out = Vec::with_capacity(
        HEADER_LEN + 1 + sender.0.len() + 8 + kind.plaintext_len() + AEAD_TAG_LEN,
    );
    out.extend_from_slice(&header(kind.message_type()));
    sender.put(&mut out);
    out.extend_from_slice(&counter.to_be_bytes());
    let mut body = control.plaintext();
    match cipher(key.as_bytes()).encrypt_inout_detached(
        &nonce(counter),
        &out,
        body.as_mut_slice().into(),
    ) {
        Ok(tag) => {
            out.extend_from_slice(&body);
            out.extend_from_slice(&tag);
        }
        // ChaCha20-Poly1305 only fails for plaintexts beyond 256 GiB; ours
        // are at most 12 bytes.
        Err(_) => unreachable!("ChaCha20-Poly1305 rejected a 12-byte plaintext"),
    }
    out
}

/// A received control message, authenticated only once [`open`](Self::open)ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedControl {
    /// The kind announced in the header.
    pub kind: ControlKind,
    /// The sender's name, used to look up the key (not yet authenticated).
    pub sender: Fqdn,
    /// The message counter / nonce (not yet authenticated).
    pub counter: u64,
    /// Header, sender name and counter: the AEAD associated data.
    aad: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: [u8; AEAD_TAG_LEN],
}

impl SealedControl {
    fn decode(kind: ControlKind, r: &mut Reader<'_>) -> Result<SealedControl, WireError> {
        let sender = r.fqdn()?;
        let counter = r.u64()?;
        let aad = r.consumed().to_vec();
        let ciphertext = r.take(kind.plaintext_len())?.to_vec();
        let tag = r.array()?;
        r.finish()?;
        Ok(SealedControl {
            kind,
            sender,
            counter,
            aad,
            ciphertext,
            tag,
        })
    }

    /// Authenticates and decrypts the message with the key for messages
    /// from [`sender`](Self::sender). Fails with [`WireError::BadMac`].
    ///
    /// Check [`counter`](Self::counter) against the sender's
    /// [`ReplayWindow`](crate::replay::ReplayWindow) after this succeeds.
    pub fn open(&self, key: &RecvKey) -> Result<Control, WireError> {
        let mut plain = self.ciphertext.clone();
        cipher(key.as_bytes())
            .decrypt_inout_detached(
                &nonce(self.counter),
                &self.aad,
                plain.as_mut_slice().into(),
                &Tag::from(self.tag),
            )
            .map_err(|_| WireError::BadMac)?;
        Control::parse(self.kind, &plain)
    }
}

// ---------------------------------------------------------------------------
// Decoding

/// A successfully parsed datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A request or reply; check [`NegotiationPacket::verify`] if keys exist.
    Negotiation(NegotiationPacket),
    /// A hint, ack or NAK still to be [`open`](SealedControl::open)ed.
    Control(SealedControl),
}

/// Parses one datagram.
pub fn decode(buf: &[u8]) -> Result<Decoded, WireError> {
    if buf.len() > MAX_MESSAGE {
        return Err(WireError::Oversized(buf.len()));
    }
    let mut r = Reader::new(buf);
    let magic: [u8; 2] = r.array()?;
    if magic != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let ty = MessageType::try_from(r.u8()?)?;
    let _reserved: [u8; 4] = r.array()?;
    Ok(match ty {
        MessageType::Request => {
            Decoded::Negotiation(Negotiation::decode(NegotiationKind::Request, &mut r)?)
        }
        MessageType::Reply => {
            Decoded::Negotiation(Negotiation::decode(NegotiationKind::Reply, &mut r)?)
        }
        MessageType::Hint => Decoded::Control(SealedControl::decode(ControlKind::Hint, &mut r)?),
        MessageType::Ack => Decoded::Control(SealedControl::decode(ControlKind::Ack, &mut r)?),
        MessageType::Nak => Decoded::Control(SealedControl::decode(ControlKind::Nak, &mut r)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fqdn(s: &str) -> Fqdn {
        Fqdn::new(s).unwrap()
    }

    fn sample() -> Negotiation {
        Negotiation {
            kind: NegotiationKind::Request,
            session: 0x0102_0304_0506_0708,
            round: 3,
            accept: true,
            requester_fqdn: fqdn("a.example.org"),
            responder_fqdn: fqdn("b.example.org"),
            requester_vip: Ipv4Addr::new(240, 0, 0, 1),
            responder_vip: Ipv4Addr::new(240, 0, 0, 2),
            sender_key: [7; 32],
        }
    }

    fn mac_key() -> MacKey {
        MacKey::from_bytes([0x11; 32])
    }

    fn sealed_sample() -> Vec<u8> {
        let hint = Control::Hint {
            vip: Ipv4Addr::new(240, 1, 2, 3),
            new_addr: Ipv4Addr::new(192, 0, 2, 1),
            seq: 42,
        };
        seal(
            &hint,
            &fqdn("a.example.org"),
            99,
            &SendKey::from_bytes([5; 32]),
        )
    }

    fn unwrap_neg(d: Decoded) -> NegotiationPacket {
        match d {
            Decoded::Negotiation(p) => p,
            other => panic!("expected negotiation, got {other:?}"),
        }
    }

    fn unwrap_ctl(d: Decoded) -> SealedControl {
        match d {
            Decoded::Control(c) => c,
            other => panic!("expected control, got {other:?}"),
        }
    }

    #[test]
    fn negotiation_layout() {
        let n = sample();
        let buf = n.encode(None);
        assert_eq!(&buf[..8], &[0x56, 0x50, 1, 1, 0, 0, 0, 0]);
        assert_eq!(&buf[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(buf[16], 3);
        assert_eq!(buf[17], FLAG_ACCEPT);
        assert_eq!(&buf[18..22], &[240, 0, 0, 1]);
        assert_eq!(&buf[22..26], &[240, 0, 0, 2]);
        assert_eq!(&buf[26..58], &[7; 32]);
        assert_eq!(buf[58], 13);
        assert_eq!(&buf[59..72], b"a.example.org");
        assert_eq!(buf[72], 13);
        assert_eq!(&buf[73..86], b"b.example.org");
        assert_eq!(buf.len(), 86);

        let signed = n.encode(Some(&mac_key()));
        assert_eq!(signed.len(), 86 + MAC_LEN);
        assert_eq!(signed[17], FLAG_ACCEPT | FLAG_HAS_MAC);
        // The tag is HMAC-SHA256 with the 32-byte key, as any implementation
        // would compute it.
        let mut reference = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x11; 32]).unwrap();
        reference.update(&signed[..86]);
        assert_eq!(&signed[86..], reference.finalize().into_bytes().as_slice());
    }

    #[test]
    fn negotiation_roundtrip_and_verify() {
        let n = sample();
        let p = unwrap_neg(decode(&n.encode(None)).unwrap());
        assert_eq!(p.msg, n);
        assert!(!p.has_mac());
        assert_eq!(p.verify(&mac_key()), Err(WireError::MissingMac));

        let p = unwrap_neg(decode(&n.encode(Some(&mac_key()))).unwrap());
        assert_eq!(p.msg, n);
        assert!(p.has_mac());
        assert_eq!(p.verify(&mac_key()), Ok(()));
        assert_eq!(
            p.verify(&MacKey::from_bytes([0x12; 32])),
            Err(WireError::BadMac)
        );
    }

    #[test]
    fn terminates() {
        let mut n = sample();
        assert!(!n.terminates());
        n.responder_vip = Ipv4Addr::UNSPECIFIED;
        assert!(n.terminates());
        n = sample();
        n.requester_vip = Ipv4Addr::UNSPECIFIED;
        assert!(n.terminates());
    }

    #[test]
    fn reserved_bytes_ignored() {
        let mut buf = sample().encode(None);
        buf[4..8].copy_from_slice(&[0xff; 4]);
        assert_eq!(unwrap_neg(decode(&buf).unwrap()).msg, sample());
    }

    #[test]
    fn control_layout_and_open() {
        let buf = sealed_sample();
        assert_eq!(&buf[..8], &[0x56, 0x50, 1, 3, 0, 0, 0, 0]);
        assert_eq!(buf[8], 13);
        assert_eq!(&buf[9..22], b"a.example.org");
        assert_eq!(&buf[22..30], &99u64.to_be_bytes());
        assert_eq!(buf.len(), 30 + HINT_LEN + AEAD_TAG_LEN);
        let c = unwrap_ctl(decode(&buf).unwrap());
        assert_eq!(c.kind, ControlKind::Hint);
        assert_eq!(c.sender, fqdn("a.example.org"));
        assert_eq!(c.counter, 99);
        assert_eq!(
            c.open(&RecvKey::from_bytes([5; 32])),
            Ok(Control::Hint {
                vip: Ipv4Addr::new(240, 1, 2, 3),
                new_addr: Ipv4Addr::new(192, 0, 2, 1),
                seq: 42,
            })
        );
        assert_eq!(
            c.open(&RecvKey::from_bytes([6; 32])),
            Err(WireError::BadMac)
        );
    }

    #[test]
    fn control_nonce_is_counter() {
        // Independent check of the nonce/AAD construction.
        let buf = sealed_sample();
        let nonce: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 99];
        let mut body = buf[30..].to_vec();
        let tag = body.split_off(HINT_LEN);
        ChaCha20Poly1305::new(&Key::from([5; 32]))
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &buf[..30],
                body.as_mut_slice().into(),
                &Tag::try_from(tag.as_slice()).unwrap(),
            )
            .unwrap();
        assert_eq!(body, [240, 1, 2, 3, 192, 0, 2, 1, 0, 0, 0, 42]);
    }

    #[test]
    fn truncated_at_every_length() {
        let msgs = [
            sample().encode(None),
            sample().encode(Some(&mac_key())),
            sealed_sample(),
            seal(
                &Control::Nak {
                    dropped_src_vip: Ipv4Addr::new(240, 0, 0, 1),
                    dropped_dst_vip: Ipv4Addr::new(240, 0, 0, 2),
                },
                &fqdn("x"),
                1,
                &SendKey::from_bytes([1; 32]),
            ),
        ];
        for msg in msgs {
            assert!(decode(&msg).is_ok());
            for len in 0..msg.len() {
                assert_eq!(decode(&msg[..len]), Err(WireError::Truncated), "len {len}");
            }
        }
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            decode(&[0u8; MAX_MESSAGE + 1]),
            Err(WireError::Oversized(MAX_MESSAGE + 1))
        );
        let good = sample().encode(None);
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(decode(&b), Err(WireError::BadMagic));
        let mut b = good.clone();
        b[1] = 0x51;
        assert_eq!(decode(&b), Err(WireError::BadMagic));
        let mut b = good.clone();
        b[2] = 2;
        assert_eq!(decode(&b), Err(WireError::UnsupportedVersion(2)));
        for t in [0u8, 6, 0xff] {
            let mut b = good.clone();
            b[3] = t;
            assert_eq!(decode(&b), Err(WireError::UnknownType(t)));
        }
        // A reply decodes as a reply.
        let mut b = good.clone();
        b[3] = 2;
        assert_eq!(
            unwrap_neg(decode(&b).unwrap()).msg.kind,
            NegotiationKind::Reply
        );
    }

    #[test]
    fn bad_flags() {
        for bit in 2..8 {
            let mut b = sample().encode(None);
            b[17] |= 1 << bit;
            assert_eq!(decode(&b), Err(WireError::BadFlags(1 << bit)));
        }
    }

    #[test]
    fn trailing_bytes() {
        for mut b in [
            sample().encode(None),
            sample().encode(Some(&mac_key())),
            sealed_sample(),
        ] {
            b.push(0);
            assert_eq!(decode(&b), Err(WireError::TrailingBytes));
        }
        // Dropping the HAS_MAC flag turns the tag into trailing bytes.
        let mut b = sample().encode(Some(&mac_key()));
        b[17] &= !FLAG_HAS_MAC;
        assert_eq!(decode(&b), Err(WireError::TrailingBytes));
    }

    #[test]
    fn bad_names_on_wire() {
        let good = sample().encode(None);
        // requester_fqdn occupies 58..72.
        let cases: [(&[u8], &str); 6] = [
            (b"A.example.org", "uppercase"),
            (b"a.example.or-", "trailing hyphen"),
            (b"a..xample.org", "empty label"),
            (b"a.example.or.", "trailing dot"),
            (b"a_example.org", "underscore"),
            (b"a.ex\xffmple.org", "non-ascii"),
        ];
        for (name, what) in cases {
            let mut b = good.clone();
            b[59..72].copy_from_slice(name);
            assert_eq!(decode(&b), Err(WireError::BadName), "{what}");
        }
        let mut b = good.clone();
        b[58] = 0;
        assert_eq!(decode(&b), Err(WireError::BadName));
        let mut b = good.clone();
        b[58] = 254;
        b.resize(600, b'a');
        assert_eq!(decode(&b), Err(WireError::BadName));
    }

    #[test]
    fn bad_control_lengths() {
        // A hint body relabelled as an ack is too long for an ack.
        let mut b = sealed_sample();
        b[3] = MessageType::Ack as u8;
        assert_eq!(decode(&b), Err(WireError::TrailingBytes));
        let mut b = sealed_sample();
        b.truncate(b.len() - 1);
        assert_eq!(decode(&b), Err(WireError::Truncated));
        // Relabelled messages never authenticate (the header is AAD).
        let ack = seal(
            &Control::Ack {
                seq: 1,
                your_addr: Ipv4Addr::new(192, 0, 2, 9),
            },
            &fqdn("a"),
            5,
            &SendKey::from_bytes([5; 32]),
        );
        let mut b = ack.clone();
        b[3] = MessageType::Nak as u8;
        let c = unwrap_ctl(decode(&b).unwrap());
        assert_eq!(
            c.open(&RecvKey::from_bytes([5; 32])),
            Err(WireError::BadMac)
        );
        assert!(Control::parse(ControlKind::Hint, &[0; 8]).is_err());
        assert_eq!(
            Control::parse(ControlKind::Nak, &[0; 9]),
            Err(WireError::BadLength)
        );
    }

    #[test]
    fn fqdn_rules() {
        assert_eq!(
            Fqdn::new("Host.Example.ORG.").unwrap().as_str(),
            "host.example.org"
        );
        assert_eq!(Fqdn::new("localhost").unwrap().to_string(), "localhost");
        assert_eq!("a-b.c1".parse::<Fqdn>().unwrap().as_str(), "a-b.c1");
        let label63 = "a".repeat(63);
        assert!(Fqdn::new(&label63).is_ok());
        assert!(Fqdn::new(&"a".repeat(64)).is_err());
        let long = [label63.as_str(); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(Fqdn::new(&long[..253]).is_ok());
        assert!(Fqdn::new(&format!("{}.", &long[..253])).is_ok());
        assert!(Fqdn::new(&long[..254]).is_err());
        for bad in [
            "", ".", "..", "a..b", ".a", "a.b..", "-a", "a-", "a.-b", "a b", "ä", "a_b", "a/b",
        ] {
            assert_eq!(Fqdn::new(bad), Err(WireError::BadName), "{bad:?}");
        }
        let f = fqdn("x.y");
        assert_eq!(serde_json_like(&f), "x.y");
    }

    /// Serde round trip through a string without pulling in serde_json.
    fn serde_json_like(f: &Fqdn) -> String {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StringDeserializer};
        let s: String = f.clone().into();
        let de: StringDeserializer<Error> = s.clone().into_deserializer();
        assert_eq!(Fqdn::deserialize(de).unwrap(), *f);
        let bad: StringDeserializer<Error> = "no_underscores".to_string().into_deserializer();
        assert!(Fqdn::deserialize(bad).is_err());
        s
    }

    #[test]
    fn hmac_padding_matches_reference() {
        let key = MacKey::from_bytes([0x42; 32]);
        let mut reference = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x42; 32]).unwrap();
        reference.update(b"data");
        assert_eq!(
            hmac(&key, b"data").finalize().into_bytes(),
            reference.finalize().into_bytes()
        );
    }

    // -- property tests ---------------------------------------------------

    fn arb_fqdn() -> impl Strategy<Value = Fqdn> {
        prop::collection::vec("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", 1..5)
            .prop_map(|labels| Fqdn::new(&labels.join(".")).unwrap())
    }

    fn arb_ipv4() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    fn arb_negotiation() -> impl Strategy<Value = Negotiation> {
        (
            any::<bool>(),
            any::<u64>(),
            any::<u8>(),
            any::<bool>(),
            arb_fqdn(),
            arb_fqdn(),
            arb_ipv4(),
            arb_ipv4(),
            any::<[u8; 32]>(),
        )
            .prop_map(
                |(req, session, round, accept, rf, pf, rv, pv, key)| Negotiation {
                    kind: if req {
                        NegotiationKind::Request
                    } else {
                        NegotiationKind::Reply
                    },
                    session,
                    round,
                    accept,
                    requester_fqdn: rf,
                    responder_fqdn: pf,
                    requester_vip: rv,
                    responder_vip: pv,
                    sender_key: key,
                },
            )
    }

    fn arb_control() -> impl Strategy<Value = Control> {
        prop_oneof![
            (arb_ipv4(), arb_ipv4(), any::<u32>()).prop_map(|(vip, new_addr, seq)| Control::Hint {
                vip,
                new_addr,
                seq
            }),
            (any::<u32>(), arb_ipv4()).prop_map(|(seq, your_addr)| Control::Ack { seq, your_addr }),
            (arb_ipv4(), arb_ipv4()).prop_map(|(s, d)| Control::Nak {
                dropped_src_vip: s,
                dropped_dst_vip: d
            }),
        ]
    }

    /// A valid message with some bytes replaced, to reach deeper code than
    /// purely random input does.
    fn arb_mutated() -> impl Strategy<Value = Vec<u8>> {
        (
            arb_negotiation(),
            any::<bool>(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        )
            .prop_map(|(n, mac, edits)| {
                let mut b = n.encode(mac.then(|| MacKey::from_bytes([1; 32])).as_ref());
                for (i, v) in edits {
                    let i = i.index(b.len());
                    b[i] = v;
                }
                b
            })
    }

    proptest! {
        #[test]
        fn decode_never_panics(buf in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&buf);
        }

        #[test]
        fn decode_never_panics_with_valid_header(
            t in 0u8..8,
            rest in prop::collection::vec(any::<u8>(), 0..700),
        ) {
            let mut buf = vec![0x56, 0x50, 1, t, 0, 0, 0, 0];
            buf.extend(rest);
            let _ = decode(&buf);
        }

        #[test]
        fn decode_never_panics_on_mutations(buf in arb_mutated()) {
            if let Ok(Decoded::Negotiation(p)) = decode(&buf) {
                // Re-encoding what was accepted must decode to the same.
                let again = unwrap_neg(decode(&p.msg.encode(None)).unwrap());
                prop_assert_eq!(again.msg, p.msg);
            }
        }

        #[test]
        fn negotiation_roundtrip(n in arb_negotiation(), key in any::<[u8; 32]>()) {
            let plain = n.encode(None);
            prop_assert!(plain.len() <= MAX_MESSAGE);
            let p = unwrap_neg(decode(&plain).unwrap());
            prop_assert_eq!(&p.msg, &n);
            prop_assert!(!p.has_mac());

            let key = MacKey::from_bytes(key);
            let p = unwrap_neg(decode(&n.encode(Some(&key))).unwrap());
            prop_assert_eq!(&p.msg, &n);
            prop_assert!(p.verify(&key).is_ok());
        }

        #[test]
        fn control_roundtrip(
            c in arb_control(),
            sender in arb_fqdn(),
            counter in any::<u64>(),
            key in any::<[u8; 32]>(),
        ) {
            let buf = seal(&c, &sender, counter, &SendKey::from_bytes(key));
            let s = unwrap_ctl(decode(&buf).unwrap());
            prop_assert_eq!(s.kind, c.kind());
            prop_assert_eq!(&s.sender, &sender);
            prop_assert_eq!(s.counter, counter);
            prop_assert_eq!(s.open(&RecvKey::from_bytes(key)), Ok(c));
        }

        #[test]
        fn bit_flip_breaks_negotiation_mac(
            n in arb_negotiation(),
            key in any::<[u8; 32]>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let key = MacKey::from_bytes(key);
            let mut buf = n.encode(Some(&key));
            let bit = bit.index(buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            match decode(&buf) {
                Err(_) => {}
                Ok(Decoded::Negotiation(p)) => prop_assert!(p.verify(&key).is_err()),
                Ok(Decoded::Control(s)) => {
                    prop_assert!(s.open(&RecvKey::from_bytes(*key.as_bytes())).is_err())
                }
            }
        }

        #[test]
        fn bit_flip_breaks_sealed_control(
            c in arb_control(),
            sender in arb_fqdn(),
            counter in any::<u64>(),
            key in any::<[u8; 32]>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let mut buf = seal(&c, &sender, counter, &SendKey::from_bytes(key));
            let bit = bit.index(buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            match decode(&buf) {
                Err(_) => {}
                Ok(Decoded::Control(s)) => prop_assert!(s.open(&RecvKey::from_bytes(key)).is_err()),
                Ok(Decoded::Negotiation(p)) => {
                    prop_assert!(p.verify(&MacKey::from_bytes(key)).is_err())
                }
            }
        }
    }
}
