//! The packet fuzzer: Ethernet frames carrying odd IPv4 and IPIP packets, sent raw (so that
//! outer headers can be wrong too) at a VIP host on the same LAN.
//!
//! Every frame belongs to a class. For the classes whose fate the module decides and
//! counts (a broken inner header, an unknown sender, a known sender at the wrong address,
//! the wrong local VIP), the summary says how many went, so the test can check the host's
//! drop counters against them. The other classes are noise the host's IP layer or the
//! module must survive: broken outer headers, fragments, options, nested tunnels, non-VIP
//! addresses, and packets forged with the peer's real address (which only ESP can refuse).

use anyhow::{Context, Result, bail};
use rand::{RngExt, SeedableRng, rngs::SmallRng};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    ffi::CString,
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

#[derive(clap::Args)]
pub struct Args {
    /// The interface to send on (on the target's LAN).
    #[arg(long)]
    ifname: String,
    /// The target's MAC address on that LAN.
    #[arg(long)]
    target_mac: String,
    /// The target's physical address.
    #[arg(long)]
    target: Ipv4Addr,
    /// The target's VIP toward the mapped peer (the mapping's local VIP).
    #[arg(long)]
    target_vip: Ipv4Addr,
    /// A peer the target has a mapping for: its VIP ...
    #[arg(long)]
    peer_vip: Ipv4Addr,
    /// ... and the physical address it maps to.
    #[arg(long)]
    peer: Ipv4Addr,
    /// Frames to send.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Stop after this many seconds even if fewer were sent.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The classes of frames; the first four are counted by the module.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Class {
    /// A VIP packet whose inner header is broken: `rx_malformed`.
    Malformed,
    /// From a VIP nobody mapped: `rx_unknown`.
    Unknown,
    /// From the mapped peer's VIP, not from its address: `rx_moved`.
    Moved,
    /// From the mapped peer, at its address, to a VIP other than the agreed one:
    /// `rx_wrong_local`.
    WrongLocal,
    /// As `Moved`, but the outer packet in two fragments: counted once reassembled, which
    /// the host may refuse under load.
    MovedFragmented,
    /// Forged with the peer's real address: delivered, as any packet from the peer is until
    /// ESP protects the pair (to ports nothing listens on, or into TCP out of window).
    Forged,
    /// Not the module's business: broken outer headers, non-IPIP, non-VIP inner
    /// destinations, inner packets too short to show one. The IP layer drops or handles
    /// them.
    Noise,
}

#[derive(Serialize)]
struct Summary {
    sent: u64,
    send_errors: u64,
    by_class: BTreeMap<Class, u64>,
    seconds: f64,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header and payload. `options` makes the header longer; the fields left to
/// `fix` are filled correctly unless it says otherwise.
struct Ipv4 {
    tos: u8,
    /// The identification; fragments of one packet share it, unrelated packets must not
    /// (or the host would reassemble strangers).
    id: u16,
    frag: u16,
    ttl: u8,
    protocol: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    options: Vec<u8>,
    payload: Vec<u8>,
}

impl Ipv4 {
    fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: Vec<u8>) -> Self {
        Self {
            tos: 0,
            id: 0,
            frag: 0,
            ttl: 64,
            protocol,
            src,
            dst,
            options: Vec::new(),
            payload,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let header_len = 20 + self.options.len();
        let mut h = Vec::with_capacity(header_len + self.payload.len());
        h.push(0x40 | (header_len / 4) as u8);
        h.push(self.tos);
        h.extend_from_slice(&((header_len + self.payload.len()) as u16).to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&self.frag.to_be_bytes());
        h.push(self.ttl);
        h.push(self.protocol);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&self.options);
        let sum = checksum(&h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h.extend_from_slice(&self.payload);
        h
    }
}

const IPIP: u8 = 4;
const DF: u16 = 0x4000;
const MF: u16 = 0x2000;

struct Fuzzer {
    rng: SmallRng,
    target: Ipv4Addr,
    target_vip: Ipv4Addr,
    peer_vip: Ipv4Addr,
    peer: Ipv4Addr,
    /// Our own address on the LAN, as a plausible forged source.
    own: Ipv4Addr,
}

impl Fuzzer {
    /// Random payload for an inner packet: a protocol and bytes. With `tunnel`, sometimes
    /// IPIP, and then often a real packet inside.
    fn inner_payload(&mut self, tunnel: bool) -> (u8, Vec<u8>) {
        let len = match self.rng.random_range(0..10) {
            0 => 0,
            1..4 => self.rng.random_range(0..16),
            _ => self.rng.random_range(8..1300),
        };
        let mut data: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
        let mut protocol =
            [1u8, 6, 17, 17, IPIP, 47, 50, self.rng.random()][self.rng.random_range(0..8)];
        if protocol == IPIP {
            if !tunnel {
                protocol = 17;
            } else if self.rng.random_bool(0.5) {
                // A real tunnel inside the tunnel.
                let nested = Ipv4::new(self.vip(), self.target_vip, 1, data);
                data = nested.bytes();
            }
        }
        (protocol, data)
    }

    fn vip(&mut self) -> Ipv4Addr {
        Ipv4Addr::new(240, 100, self.rng.random(), self.rng.random_range(1..255))
    }

    /// ECN and DSCP bits, every combination in time.
    fn tos(&mut self) -> u8 {
        self.rng.random()
    }

    /// An inner packet from `src` to `dst`, valid, with odd but legal fields. Only
    /// packets the host drops may carry a tunnel inside: one it delivers would be
    /// decapsulated again, and counted again.
    fn inner(&mut self, src: Ipv4Addr, dst: Ipv4Addr, tunnel: bool) -> Vec<u8> {
        let (protocol, payload) = self.inner_payload(tunnel);
        let mut inner = Ipv4::new(src, dst, protocol, payload);
        inner.id = self.rng.random();
        inner.tos = self.tos();
        inner.ttl = [0, 1, 64, 255][self.rng.random_range(0..4)];
        inner.frag = match self.rng.random_range(0..6) {
            0 => MF,
            1 => self.rng.random_range(1..0x1fff),
            2 => DF,
            _ => 0,
        };
        if self.rng.random_bool(0.1) {
            inner.options = vec![1; 4 * self.rng.random_range(1..11)];
        }
        inner.bytes()
    }

    /// An inner header that the module must refuse as broken: 20 bytes or more, so that
    /// it is recognisably a VIP packet.
    fn broken_inner(&mut self, dst: Ipv4Addr) -> Vec<u8> {
        let src = self.vip();
        let mut bytes = self.inner(src, dst, true);
        match self.rng.random_range(0..4) {
            // Not version 4.
            0 => {
                let version = [0u8, 1, 2, 3, 5, 6, 7, 15][self.rng.random_range(0..8)];
                bytes[0] = version << 4 | (bytes[0] & 0x0f);
            }
            // A header shorter than 20 bytes.
            1 => bytes[0] = 0x40 | self.rng.random_range(0..5),
            // A total length shorter than the header.
            2 => {
                let len = self.rng.random_range(0..u16::from(bytes[0] & 0x0f) * 4);
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
            }
            // A total length beyond the packet.
            _ => {
                let len = bytes.len() as u16 + self.rng.random_range(1..200);
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
            }
        }
        if bytes[0] >> 4 == 4 && self.rng.random_bool(0.5) {
            // The same, and a checksum to match: the module does not read the checksum.
            bytes[10..12].copy_from_slice(&[0, 0]);
        }
        bytes
    }

    fn outer(&mut self, src: Ipv4Addr, inner: Vec<u8>) -> Ipv4 {
        let mut outer = Ipv4::new(src, self.target, IPIP, inner);
        outer.id = self.rng.random();
        outer.tos = self.tos();
        outer.ttl = [1, 2, 64, 255][self.rng.random_range(0..4)];
        if self.rng.random_bool(0.3) {
            outer.frag = DF;
        }
        if self.rng.random_bool(0.1) {
            // Options: NOPs, and now and then a record-route the host may refuse.
            outer.options = vec![1; 4 * self.rng.random_range(1..11)];
        }
        outer
    }

    /// A forged outer source that is not the mapped peer's address: ours, or any unicast
    /// address the host's routing accepts as a source (not a martian: loopback, zero,
    /// multicast, class E, or one of the host's own), so that the packet reaches the module.
    fn forged_source(&mut self) -> Ipv4Addr {
        if self.rng.random_bool(0.5) {
            return self.own;
        }
        loop {
            let a = Ipv4Addr::from(self.rng.random::<u32>());
            let first = a.octets()[0];
            if (1..224).contains(&first) && first != 127 && a != self.peer && a != self.target {
                return a;
            }
        }
    }

    /// One or more IP packets of one class.
    fn packets(&mut self) -> (Class, Vec<Vec<u8>>) {
        let (target_vip, peer_vip, peer) = (self.target_vip, self.peer_vip, self.peer);
        match self.rng.random_range(0..100) {
            0..20 => {
                let inner = self.broken_inner(target_vip);
                let src = self.forged_source();
                (Class::Malformed, vec![self.outer(src, inner).bytes()])
            }
            20..40 => {
                let src_vip = self.vip();
                let inner = self.inner(src_vip, target_vip, true);
                let src = self.forged_source();
                (Class::Unknown, vec![self.outer(src, inner).bytes()])
            }
            40..60 => {
                let inner = self.inner(peer_vip, target_vip, true);
                let src = self.forged_source();
                (Class::Moved, vec![self.outer(src, inner).bytes()])
            }
            60..65 => {
                let other = Ipv4Addr::new(240, 0, 0, self.rng.random_range(100..200));
                let inner = self.inner(peer_vip, other, true);
                (Class::WrongLocal, vec![self.outer(peer, inner).bytes()])
            }
            65..70 => {
                // The outer packet in two fragments, the split on an 8-byte boundary.
                let inner = self.inner(peer_vip, target_vip, true);
                if inner.len() < 24 {
                    let src = self.forged_source();
                    return (Class::Moved, vec![self.outer(src, inner).bytes()]);
                }
                let split = (self.rng.random_range(8..inner.len()) / 8) * 8;
                let src = self.forged_source();
                // Consistent fragments (the host refuses to mix ECN codepoints, say).
                let mut first = self.outer(src, inner[..split].to_vec());
                first.frag = MF;
                first.options.clear();
                let mut second = Ipv4::new(src, first.dst, IPIP, inner[split..].to_vec());
                second.id = first.id;
                second.tos = first.tos;
                second.ttl = first.ttl;
                second.frag = (split / 8) as u16;
                (Class::MovedFragmented, vec![first.bytes(), second.bytes()])
            }
            70..75 => {
                let inner = self.inner(peer_vip, target_vip, false);
                (Class::Forged, vec![self.outer(peer, inner).bytes()])
            }
            _ => (Class::Noise, vec![self.noise()]),
        }
    }

    fn noise(&mut self) -> Vec<u8> {
        let target_vip = self.target_vip;
        match self.rng.random_range(0..7) {
            // An inner packet too short to show a destination.
            0 => {
                let short: Vec<u8> = (0..self.rng.random_range(0..20))
                    .map(|_| self.rng.random())
                    .collect();
                let src = self.forged_source();
                self.outer(src, short).bytes()
            }
            // A non-VIP inner destination (the kernel's own IPIP handling, if any).
            1 => {
                let dst = Ipv4Addr::from(self.rng.random::<u32>() & 0xdfff_ffff);
                let src = self.vip();
                let inner = self.inner(src, dst, true);
                let src = self.forged_source();
                self.outer(src, inner).bytes()
            }
            // A broken outer header: version, header length, checksum, a total length beyond
            // the packet. (One shorter than the packet would only trim it, into a packet the
            // module would count.)
            2 => {
                let src = self.vip();
                let inner = self.inner(src, target_vip, true);
                let src = self.forged_source();
                let mut bytes = self.outer(src, inner).bytes();
                match self.rng.random_range(0..4) {
                    0 => bytes[0] = 0x60 | (bytes[0] & 0x0f),
                    1 => bytes[0] = 0x40 | self.rng.random_range(0..5),
                    2 => bytes[10] ^= 0x5a,
                    _ => {
                        let len =
                            (bytes.len() as u16).saturating_add(self.rng.random_range(1..1000));
                        bytes[2..4].copy_from_slice(&len.to_be_bytes());
                    }
                }
                bytes
            }
            // Truncated at any length.
            3 => {
                let src = self.vip();
                let inner = self.inner(src, target_vip, true);
                let src = self.forged_source();
                let mut bytes = self.outer(src, inner).bytes();
                bytes.truncate(self.rng.random_range(0..bytes.len()));
                bytes
            }
            // Not IPIP, but to the target (protocols the host may or may not speak).
            4 => {
                let (protocol, payload) = self.inner_payload(false);
                let src = self.forged_source();
                let mut p = Ipv4::new(src, self.target, protocol, payload);
                p.id = self.rng.random();
                p.tos = self.tos();
                p.bytes()
            }
            // A lone fragment that never completes.
            5 => {
                let src = self.vip();
                let inner = self.inner(src, target_vip, true);
                let src = self.forged_source();
                let mut outer = self.outer(src, inner);
                outer.frag = MF | self.rng.random_range(0..64);
                outer.bytes()
            }
            // Random bytes.
            _ => (0..self.rng.random_range(0..1400))
                .map(|_| self.rng.random())
                .collect(),
        }
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC address {text}"))?;
    parts
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC address {text}"))
}

/// A packet socket bound to one interface.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    mac: [u8; 6],
}

impl PacketSocket {
    fn open(ifname: &str) -> Result<Self> {
        let name = CString::new(ifname)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        if ifindex == 0 {
            bail!("no interface {ifname}");
        }
        // SAFETY: plain socket(2); checked below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("packet socket (needs CAP_NET_RAW)");
        }
        // SAFETY: a descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mac_text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))?;
        Ok(Self {
            fd,
            ifindex,
            mac: parse_mac(mac_text.trim())?,
        })
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        // SAFETY: valid buffer and address for the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// This host's IPv4 address on `ifname`, from `ip`'s JSON (no hand-rolled netlink here).
fn own_address(ifname: &str) -> Result<Ipv4Addr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-j", "addr", "show", "dev", ifname])
        .output()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    json.pointer("/0/addr_info/0/local")
        .and_then(|v| v.as_str())
        .context("the interface has no IPv4 address")?
        .parse()
        .context("bad address")
}

pub fn run(args: &Args) -> Result<()> {
    let socket = PacketSocket::open(&args.ifname)?;
    let target_mac = parse_mac(&args.target_mac)?;
    let own = own_address(&args.ifname)?;
    let count = args.count;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut fuzzer = Fuzzer {
        rng: SmallRng::seed_from_u64(args.seed),
        target: args.target,
        target_vip: args.target_vip,
        peer_vip: args.peer_vip,
        peer: args.peer,
        own,
    };
    let mut summary = Summary {
        sent: 0,
        send_errors: 0,
        by_class: BTreeMap::new(),
        seconds: 0.0,
    };
    let start = Instant::now();
    let mut frame = Vec::with_capacity(1600);
    while summary.sent < count && Instant::now() < deadline {
        let (class, packets) = fuzzer.packets();
        let mut all_sent = true;
        for packet in packets {
            frame.clear();
            frame.extend_from_slice(&target_mac);
            frame.extend_from_slice(&socket.mac);
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            // The link's MTU bounds what can go.
            frame.extend_from_slice(&packet[..packet.len().min(1500)]);
            summary.sent += 1;
            if socket.send(&frame).is_err() {
                summary.send_errors += 1;
                all_sent = false;
            }
        }
        // A class counts only when all of its frames went.
        if all_sent {
            *summary.by_class.entry(class).or_default() += 1;
        }
    }
    summary.seconds = start.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
