//! Datagrams for fuzzing a daemon's control port on the wire (`vip-attack fuzz`): pure
//! random bytes, each message type's framing around random bodies, real messages mutated
//! (bit flips, truncation, extension, swapped fields, a changed type), mutated initiations
//! whose `mac1` is made valid again (so that they reach the Noise decryption), and
//! captured datagrams replayed verbatim.
//!
//! The choices are drawn from a seeded generator, so a run can be repeated; the valid
//! messages it starts from are the caller's (Noise's ephemeral keys are not seeded).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use blake2::digest::{FixedOutput, KeyInit, Update, consts::U16};
use blake2::{Blake2s256, Blake2sMac, Digest};
use rand::{Rng, RngExt, SeedableRng, rngs::SmallRng};
use vip_proto::wire::{
    self, COOKIE_NONCE_LEN, Control, HEADER_LEN, INITIATION_NOISE_OVERHEAD, InitiationPayload,
    KEY_LEN, MAC_LEN, MAGIC, MAX_MESSAGE, MessageType, RESPONSE_NOISE_OVERHEAD, ResponsePayload,
    SEALED_COOKIE_LEN, TAG_LEN, TRANSPORT_HEAD_LEN, VERSION,
};

/// The longest datagram sent: what fits a 1500-byte MTU in one IPv4 packet (the spoofer
/// sets DF), well past [`MAX_MESSAGE`].
pub const MAX_DATAGRAM: usize = 1500 - 20 - 8;

/// What a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Random bytes of a random length.
    Random,
    /// A header (mostly of a real type, at that type's sizes) and a random body.
    Framed,
    /// A real message (a valid initiation, or a captured datagram) mutated.
    Mutated,
    /// A valid initiation mutated before its `mac1`, then given a valid `mac1` again.
    Remaced,
    /// A captured datagram, unchanged.
    Replayed,
}

impl Kind {
    /// Every kind, in the order of the summary.
    pub const ALL: [Kind; 5] = [
        Kind::Random,
        Kind::Framed,
        Kind::Mutated,
        Kind::Remaced,
        Kind::Replayed,
    ];

    /// The kind's name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Random => "random",
            Kind::Framed => "framed",
            Kind::Mutated => "mutated",
            Kind::Remaced => "remaced",
            Kind::Replayed => "replayed",
        }
    }
}

/// The key `mac1` of messages to the owner of `public` is made with (WireGuard's
/// `HASH("mac1----" || public)`, as `vip_proto::handshake` makes it).
pub fn mac1_key(public: &[u8; KEY_LEN]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    Digest::update(&mut h, b"mac1----");
    Digest::update(&mut h, public);
    h.finalize().into()
}

/// `mac1` over `head` (every byte before it), keyed with [`mac1_key`].
pub fn mac1(key: &[u8; 32], head: &[u8]) -> [u8; MAC_LEN] {
    let Ok(mut m) = <Blake2sMac<U16> as KeyInit>::new_from_slice(key) else {
        return [0; MAC_LEN];
    };
    Update::update(&mut m, head);
    m.finalize_fixed().into()
}

/// A UDP datagram read from a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Where it came from.
    pub from: SocketAddrV4,
    /// Where it went.
    pub to: SocketAddrV4,
    /// Its payload.
    pub payload: Vec<u8>,
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// The IPv4 UDP datagrams of a tcpdump capture (pcap; Ethernet or Linux cooked v1/v2),
/// as `tests/lib/pcap.py` reads them. Frames of other kinds are skipped.
pub fn pcap_udp(data: &[u8]) -> io::Result<Vec<Captured>> {
    let magic = data
        .get(..4)
        .ok_or_else(|| invalid("not a pcap file: too short".into()))?;
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(invalid("not a pcap file: bad magic".into())),
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let linktype = u32_at(20).ok_or_else(|| invalid("not a pcap file: no header".into()))?;
    // (Length of the link header, where its ethertype is.)
    let (link_len, ethertype_at) = match linktype {
        1 => (14, 12),
        113 => (16, 14),
        276 => (20, 0),
        other => return Err(invalid(format!("link type {other} not handled"))),
    };
    let mut out = Vec::new();
    let mut pos = 24usize;
    while let Some(incl) = u32_at(pos + 8) {
        let start = pos + 16;
        let end = start.saturating_add(incl as usize).min(data.len());
        let frame = data.get(start..end).unwrap_or_default();
        pos = start.saturating_add(incl as usize);
        if frame.get(ethertype_at..ethertype_at + 2) != Some(&[0x08, 0x00][..]) {
            continue;
        }
        if let Some(datagram) = frame.get(link_len..).and_then(ipv4_udp) {
            out.push(datagram);
        }
    }
    Ok(out)
}

fn ipv4_udp(ip: &[u8]) -> Option<Captured> {
    let first = *ip.first()?;
    if first >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    let udp = ip.get(usize::from(first & 15) * 4..)?;
    let port =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?])) };
    let length = usize::from(port(4)?);
    Some(Captured {
        from: SocketAddrV4::new(addr(12)?, port(0)?),
        to: SocketAddrV4::new(addr(16)?, port(2)?),
        payload: udp.get(8..length.max(8))?.to_vec(),
    })
}

/// The generator of fuzz datagrams.
pub struct WireFuzzer {
    rng: SmallRng,
    mac1_key: [u8; 32],
    valid: Vec<Vec<u8>>,
    captured: Vec<Captured>,
}

/// What [`WireFuzzer::next_datagram`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// What it is.
    pub kind: Kind,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// For a replay of a datagram captured on its way to the target: where it came from
    /// (the replay keeps its source, as an on-path attacker's would).
    pub from: Option<SocketAddrV4>,
}

impl WireFuzzer {
    /// A generator for the owner of `target_key`, drawing from `seed`; `valid` are real
    /// initiations to it (to mutate), `captured` datagrams to replay and mutate.
    pub fn new(
        seed: u64,
        target_key: &[u8; KEY_LEN],
        valid: Vec<Vec<u8>>,
        captured: Vec<Captured>,
    ) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            mac1_key: mac1_key(target_key),
            valid,
            captured,
        }
    }

    /// The next datagram; `target` is where it goes (a replay keeps its captured source
    /// only if it was captured on its way there).
    pub fn next_datagram(&mut self, target: SocketAddrV4) -> Datagram {
        let have_valid = !self.valid.is_empty();
        let have_captured = !self.captured.is_empty();
        let mut from = None;
        let (kind, bytes) = match self.rng.random_range(0..100u32) {
            0..20 => (Kind::Random, self.random()),
            20..45 => (Kind::Framed, self.framed()),
            45..70 if have_valid || have_captured => (Kind::Mutated, self.mutated()),
            70..90 if have_valid => (Kind::Remaced, self.remaced()),
            90.. if have_captured => {
                let i = self.rng.random_range(0..self.captured.len());
                let c = self.captured.get(i).cloned().unwrap_or_else(|| Captured {
                    from: target,
                    to: target,
                    payload: Vec::new(),
                });
                if c.to == target {
                    from = Some(c.from);
                }
                (Kind::Replayed, c.payload)
            }
            _ => (Kind::Framed, self.framed()),
        };
        Datagram { kind, bytes, from }
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        self.rng.fill_bytes(&mut out);
        out
    }

    fn random(&mut self) -> Vec<u8> {
        let len = match self.rng.random_range(0..10u32) {
            0..5 => self.rng.random_range(0..=64),
            5..8 => self.rng.random_range(0..=MAX_MESSAGE),
            _ => self.rng.random_range(MAX_MESSAGE..=MAX_DATAGRAM),
        };
        self.random_bytes(len)
    }

    /// A header and a random body of about the size its type has.
    fn framed(&mut self) -> Vec<u8> {
        let kind = if self.rng.random_bool(0.9) {
            self.rng.random_range(1..=5u8)
        } else {
            self.rng.random()
        };
        let exact = match MessageType::try_from(kind) {
            Ok(MessageType::Initiation) => {
                4 + INITIATION_NOISE_OVERHEAD
                    + self.rng.random_range(0..=InitiationPayload::MAX_LEN)
                    + 2 * MAC_LEN
            }
            Ok(MessageType::Response) => {
                8 + RESPONSE_NOISE_OVERHEAD + ResponsePayload::LEN + 2 * MAC_LEN
            }
            Ok(MessageType::CookieReply) => 4 + COOKIE_NONCE_LEN + SEALED_COOKIE_LEN,
            Ok(MessageType::Transport) => {
                TRANSPORT_HEAD_LEN - HEADER_LEN
                    + TAG_LEN
                    + self.rng.random_range(1..=Control::MAX_LEN)
            }
            Ok(MessageType::NakCue) => 8,
            Err(_) => self.rng.random_range(0..64),
        };
        let len = match self.rng.random_range(0..10u32) {
            0..7 => exact,
            7..9 => (exact + 8).saturating_sub(self.rng.random_range(0..=16)),
            _ => self.rng.random_range(0..=MAX_DATAGRAM - HEADER_LEN),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + len);
        out.extend_from_slice(&MAGIC);
        // Mostly our version: others stop at the first checks.
        out.push(if self.rng.random_bool(0.95) {
            VERSION
        } else {
            self.rng.random()
        });
        out.push(kind);
        out.extend(self.random_bytes(len));
        if kind == MessageType::NakCue as u8 && self.rng.random_bool(0.5) {
            // VIPs of the usual range, in case one is ours.
            let vips = [
                240,
                self.rng.random_range(0..16),
                0,
                self.rng.random(),
                240,
                0,
                0,
                1,
            ];
            if let Some(body) = out.get_mut(HEADER_LEN..HEADER_LEN + 8) {
                body.copy_from_slice(&vips);
            }
        }
        out
    }

    fn pick_real(&mut self) -> Vec<u8> {
        let from_capture =
            self.valid.is_empty() || (!self.captured.is_empty() && self.rng.random_bool(0.5));
        if from_capture {
            let i = self.rng.random_range(0..self.captured.len().max(1));
            self.captured
                .get(i)
                .map(|c| c.payload.clone())
                .unwrap_or_default()
        } else {
            let i = self.rng.random_range(0..self.valid.len().max(1));
            self.valid.get(i).cloned().unwrap_or_default()
        }
    }

    /// A real message with one to three mutations.
    fn mutated(&mut self) -> Vec<u8> {
        let original = self.pick_real();
        let mut message = original.clone();
        for _ in 0..self.rng.random_range(1..=3) {
            self.mutate(&mut message, 0);
        }
        if message == original {
            // Always different: a bit flips at the least.
            self.flip_bits(&mut message, 0);
        }
        message
    }

    /// Mutates `message` from `keep` on (the bytes before `keep` stay as they are).
    fn mutate(&mut self, message: &mut Vec<u8>, keep: usize) {
        let len = message.len();
        match self.rng.random_range(0..7u32) {
            0 | 1 => self.flip_bits(message, keep),
            2 if len > keep => {
                let to = self.rng.random_range(keep..len);
                message.truncate(to);
            }
            3 => {
                let room = MAX_DATAGRAM.saturating_sub(len);
                let more = self.rng.random_range(0..=room.min(64));
                message.extend(self.random_bytes(more));
            }
            4 if len >= keep + 2 => {
                // Swap two fields: two chunks of the same length at random places.
                let size = self.rng.random_range(1..=((len - keep) / 2).min(32));
                let a = self.rng.random_range(keep..=len - 2 * size);
                let b = self.rng.random_range(a + size..=len - size);
                let chunk: Vec<u8> = message.get(a..a + size).unwrap_or_default().to_vec();
                message.copy_within(b..b + size, a);
                if let Some(at) = message.get_mut(b..b + size) {
                    at.copy_from_slice(&chunk);
                }
            }
            5 if len >= keep + 4 => {
                // An integer field at an edge value (indices, counters).
                let at = self.rng.random_range(keep..=len - 4);
                let value: u32 = match self.rng.random_range(0..4u32) {
                    0 => 0,
                    1 => 1,
                    2 => u32::MAX,
                    _ => 0x8000_0000,
                };
                if let Some(field) = message.get_mut(at..at + 4) {
                    field.copy_from_slice(&value.to_be_bytes());
                }
            }
            6 if keep < HEADER_LEN && len >= HEADER_LEN => {
                // Another type's header over this body.
                if let Some(kind) = message.get_mut(HEADER_LEN - 1) {
                    *kind = self.rng.random_range(0..=6);
                }
            }
            _ => self.flip_bits(message, keep),
        }
    }

    fn flip_bits(&mut self, message: &mut [u8], keep: usize) {
        if message.len() <= keep {
            return;
        }
        for _ in 0..self.rng.random_range(1..=8) {
            let at = self.rng.random_range(keep..message.len());
            if let Some(byte) = message.get_mut(at) {
                *byte ^= 1 << self.rng.random_range(0..8);
            }
        }
    }

    /// A valid initiation mutated after its header and before its MACs, with a valid
    /// `mac1` again (and `mac2` zero, as without a cookie, or random): past the cheap
    /// check, into the Diffie-Hellman and the decryption. One in ten keeps the Noise
    /// message whole and only gets a random `mac2`.
    fn remaced(&mut self) -> Vec<u8> {
        let i = self.rng.random_range(0..self.valid.len().max(1));
        let Some(valid) = self.valid.get(i) else {
            return Vec::new();
        };
        let mut head = valid
            .get(..valid.len().saturating_sub(2 * MAC_LEN))
            .unwrap_or_default()
            .to_vec();
        if self.rng.random_bool(0.9) {
            let original = head.clone();
            for _ in 0..self.rng.random_range(1..=2) {
                self.mutate(&mut head, HEADER_LEN);
            }
            if head == original {
                self.flip_bits(&mut head, HEADER_LEN);
            }
            head.truncate(MAX_DATAGRAM - 2 * MAC_LEN);
        }
        let mac = mac1(&self.mac1_key, &head);
        head.extend_from_slice(&mac);
        let mac2: [u8; MAC_LEN] = if self.rng.random_bool(0.5) {
            [0; MAC_LEN]
        } else {
            self.rng.random()
        };
        head.extend_from_slice(&mac2);
        head
    }
}

/// Whether the daemon's parser takes `bytes` for one well-formed message (what it reads
/// of a datagram: at most [`MAX_MESSAGE`] + 1 bytes, the rest cut off by the socket).
pub fn parses(bytes: &[u8]) -> bool {
    wire::parse(bytes.get(..MAX_MESSAGE + 1).unwrap_or(bytes)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vip_proto::handshake::{self, MacKeys};
    use vip_proto::wire::Packet;
    use vip_proto::{Fqdn, Identity};

    const TARGET: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 4877);

    fn valid(target: &Identity, n: u32) -> Vec<Vec<u8>> {
        valid_for(&target.public_key(), n)
    }

    /// Real initiations to the owner of `target` from a new key, claiming A's name.
    fn valid_for(target: &[u8; KEY_LEN], n: u32) -> Vec<Vec<u8>> {
        let me = Identity::generate().unwrap();
        (0..n)
            .map(|i| {
                let payload = InitiationPayload {
                    counter: 1000 + u64::from(i),
                    requester: Fqdn::new("a.vip.test").unwrap(),
                    responder: Fqdn::new("b.vip.test").unwrap(),
                    round: 1,
                    accept: true,
                    esp: vip_proto::wire::EspOffer {
                        esp: true,
                        aes_hardware: false,
                    },
                    requester_vip: Ipv4Addr::new(240, 66, 0, 1),
                    responder_vip: Ipv4Addr::new(240, 66, 0, 2),
                };
                handshake::initiate(&me.secret_bytes(), target, i + 1, &payload, None)
                    .unwrap()
                    .1
            })
            .collect()
    }

    fn captured() -> Vec<Captured> {
        vec![
            Captured {
                from: SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 4877),
                to: TARGET,
                payload: wire::nak_cue(Ipv4Addr::new(240, 0, 0, 1), Ipv4Addr::new(240, 0, 0, 2)),
            },
            Captured {
                from: TARGET,
                to: SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 4877),
                payload: wire::transport_head(7, 3)
                    .into_iter()
                    .chain([0; 20])
                    .collect(),
            },
        ]
    }

    #[test]
    fn the_same_seed_gives_the_same_datagrams() {
        let target = Identity::generate().unwrap();
        let pool = valid(&target, 4);
        let run = |seed| {
            let mut f = WireFuzzer::new(seed, &target.public_key(), pool.clone(), captured());
            (0..2000)
                .map(|_| f.next_datagram(TARGET))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn every_kind_comes_within_bounds() {
        let target = Identity::generate().unwrap();
        let mut f = WireFuzzer::new(1, &target.public_key(), valid(&target, 4), captured());
        let mut seen = std::collections::BTreeMap::new();
        let mut parsed = 0;
        for _ in 0..20_000 {
            let d = f.next_datagram(TARGET);
            assert!(d.bytes.len() <= MAX_DATAGRAM, "{} bytes", d.bytes.len());
            *seen.entry(d.kind).or_insert(0) += 1;
            parsed += usize::from(parses(&d.bytes));
        }
        for kind in Kind::ALL {
            assert!(
                seen.get(&kind).copied().unwrap_or(0) > 500,
                "{kind:?}: {seen:?}"
            );
        }
        // Some get past the parser, most do not.
        assert!(parsed > 1000 && parsed < 15_000, "{parsed} parsed");
    }

    #[test]
    fn without_captures_nothing_is_replayed_and_without_keys_nothing_remaced() {
        let target = Identity::generate().unwrap();
        let mut f = WireFuzzer::new(2, &target.public_key(), Vec::new(), Vec::new());
        for _ in 0..5000 {
            let d = f.next_datagram(TARGET);
            assert!(
                matches!(d.kind, Kind::Random | Kind::Framed),
                "{:?}",
                d.kind
            );
        }
    }

    #[test]
    fn framing_gets_past_the_first_checks() {
        let target = Identity::generate().unwrap();
        let mut f = WireFuzzer::new(3, &target.public_key(), Vec::new(), Vec::new());
        let (mut framed, mut typed) = (0, 0);
        for _ in 0..5000 {
            let bytes = f.framed();
            framed += 1;
            // Past magic and version, at a known type: the parser got to the body.
            match wire::parse(&bytes) {
                Err(wire::WireError::BadMagic | wire::WireError::Version(_)) => {}
                Err(wire::WireError::UnknownType(_)) => {}
                _ => typed += 1,
            }
        }
        assert!(typed * 10 > framed * 8, "{typed} of {framed}");
    }

    #[test]
    fn mutations_differ_and_remaced_initiations_pass_mac1() {
        let target = Identity::generate().unwrap();
        let pool = valid(&target, 4);
        let keys = MacKeys::of(&target.public_key());
        let mut f = WireFuzzer::new(4, &target.public_key(), pool.clone(), Vec::new());
        for _ in 0..2000 {
            let m = f.mutated();
            assert!(!pool.contains(&m));
        }
        let (mut initiations, mut mutated) = (0, 0);
        for _ in 0..2000 {
            let m = f.remaced();
            if let Ok(Packet::Initiation(hs)) = wire::parse(&m) {
                assert!(keys.check_mac1(&hs), "a remaced initiation fails mac1");
                initiations += 1;
                let body = m.get(..m.len() - 2 * MAC_LEN).unwrap();
                mutated += usize::from(!pool.iter().any(|v| v.starts_with(body)));
            }
        }
        // Most still parse as initiations (lengths change sometimes); most are mutated.
        assert!(initiations > 1000, "{initiations}");
        assert!(mutated * 10 > initiations * 8, "{mutated} of {initiations}");
        // And our mac1 is vip-proto's: an untouched initiation's mac1 is reproduced.
        let v = pool.first().unwrap();
        let head = v.get(..v.len() - 2 * MAC_LEN).unwrap();
        assert_eq!(
            &mac1(&mac1_key(&target.public_key()), head)[..],
            v.get(head.len()..head.len() + MAC_LEN).unwrap()
        );
    }

    #[test]
    fn replays_keep_the_source_of_what_went_to_the_target() {
        let target = Identity::generate().unwrap();
        let caps = captured();
        let mut f = WireFuzzer::new(5, &target.public_key(), Vec::new(), caps.clone());
        let (mut kept, mut other) = (0, 0);
        for _ in 0..5000 {
            let d = f.next_datagram(TARGET);
            if d.kind != Kind::Replayed {
                continue;
            }
            let c = caps.iter().find(|c| c.payload == d.bytes).unwrap();
            if c.to == TARGET {
                assert_eq!(d.from, Some(c.from));
                kept += 1;
            } else {
                assert_eq!(d.from, None);
                other += 1;
            }
        }
        assert!(kept > 50 && other > 50, "{kept} {other}");
    }

    /// A real responder engine (B, with A pinned) under the fuzz: it never installs,
    /// repoints or pins anything, and it counts every datagram that does not parse as
    /// garbage (what `tests/63-fuzz-wire.sh` checks of vipd, with the kernel's drops).
    #[test]
    fn a_real_engine_counts_every_malformed_datagram_and_changes_nothing() {
        use std::collections::HashMap;
        use std::time::{Duration, Instant};
        use vip_proto::engine::{Config, Engine, KernelOp, Output, Partners};

        let b = Identity::generate().unwrap();
        let b_key = b.public_key();
        let a_name = Fqdn::new("a.vip.test").unwrap();
        let pins = HashMap::from([(a_name, [7u8; 32])]);
        let home = Ipv4Addr::new(240, 0, 0, 2);
        let cfg = Config::new(Fqdn::new("b.vip.test").unwrap(), home);
        let mut engine = Engine::new(cfg, b, Partners::new(home), pins, 1, *TARGET.ip());
        let mut f = WireFuzzer::new(9, &b_key, valid_for(&b_key, 8), captured());
        let (mut now, mut unparseable) = (Instant::now(), 0u64);
        for n in 0..20_000u32 {
            let d = f.next_datagram(TARGET);
            let from = d.from.unwrap_or(SocketAddrV4::new(
                Ipv4Addr::new(10, 99, (n >> 8) as u8, n as u8),
                4877,
            ));
            unparseable += u64::from(!parses(&d.bytes));
            let read = d.bytes.get(..MAX_MESSAGE + 1).unwrap_or(&d.bytes);
            engine.handle_datagram(now, from, read);
            now += Duration::from_micros(300);
            while let Some(out) = engine.poll_output() {
                match out {
                    Output::Pin { .. } | Output::Repin { .. } | Output::Unpin { .. } => {
                        panic!("changed a pin from the fuzz")
                    }
                    Output::Kernel {
                        op:
                            KernelOp::Install { .. }
                            | KernelOp::Repoint { .. }
                            | KernelOp::EspOut { .. },
                        ..
                    } => panic!("changed the kernel's table from the fuzz"),
                    _ => {}
                }
            }
        }
        let stats = engine.stats();
        assert!(
            stats.garbage >= unparseable,
            "{stats:?}, {unparseable} unparseable"
        );
        assert!(
            stats.initiations_dropped + stats.cookies_sent > 0,
            "{stats:?}"
        );
        assert_eq!(stats.partners, 0);
    }

    fn pcap(linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]);
        out.extend_from_slice(&linktype.to_le_bytes());
        for f in frames {
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn pcap_datagrams_are_read_back() {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 4877);
        let ip = crate::spoof::udp_packet(from, TARGET, b"VP\x02\x05abcdefgh");
        let mut ether = vec![0u8; 12];
        ether.extend_from_slice(&[0x08, 0x00]);
        ether.extend_from_slice(&ip);
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 1, 2, 3]);
        let mut cooked = vec![0u8; 14];
        cooked.extend_from_slice(&[0x08, 0x00]);
        cooked.extend_from_slice(&ip);
        let want = Captured {
            from,
            to: TARGET,
            payload: b"VP\x02\x05abcdefgh".to_vec(),
        };
        assert_eq!(
            pcap_udp(&pcap(1, &[ether, arp])).unwrap(),
            vec![want.clone()]
        );
        assert_eq!(pcap_udp(&pcap(113, &[cooked])).unwrap(), vec![want]);
        assert!(pcap_udp(b"not a capture").is_err());
        assert!(pcap_udp(&pcap(105, &[])).is_err());
        // A capture cut short ends the list, no more.
        let mut cut = pcap(1, &[vec![0u8; 40]]);
        cut.truncate(cut.len() - 10);
        assert_eq!(pcap_udp(&cut).unwrap(), vec![]);
    }
}
