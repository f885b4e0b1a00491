//! The generic netlink fuzzer. Messages are built by hand on purpose: most are wrong.

use anyhow::{Context, Result, bail};
use rand::{RngExt, SeedableRng, rngs::SmallRng};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

#[derive(clap::Args)]
pub struct Args {
    /// Messages to send.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Stop after this many seconds even if fewer were sent.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Seed of the generator (the same seed sends the same messages).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const NETLINK_GENERIC: i32 = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_ECHO: u16 = 0x8;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const SOL_NETLINK: i32 = 270;
const NETLINK_EXT_ACK: i32 = 11;

/// Commands of the family (include/uapi/linux/vip.h).
const CMD_MAP_SET: u8 = 2;
const CMD_MAP_DEL: u8 = 3;
const CMD_MAP_GET: u8 = 4;
const CMD_MAP_FLUSH: u8 = 5;
const CMD_SET_CONFIG: u8 = 10;
const CMD_MAX: u8 = 11;
/// Attributes.
const A_PEER_VIP: u16 = 3;
const A_PEER_IP4: u16 = 4;
const A_LOCAL_VIP: u16 = 5;
const A_FLAGS: u16 = 6;
const A_SET_FLAGS: u16 = 16;
const A_STATS: u16 = 18;
const A_MAX_MAPPINGS: u16 = 19;
const A_ROAM_LIMIT: u16 = 21;
const A_MAX: u16 = 21;

/// What the run did, printed as JSON.
#[derive(Default, Serialize)]
struct Summary {
    sent: u64,
    answers: u64,
    acks: u64,
    /// Errors by errno number.
    errors: BTreeMap<i32, u64>,
    dumps_started: u64,
    dumps_abandoned: u64,
    reconnects: u64,
    seconds: f64,
}

/// A generic netlink socket, non-blocking.
struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    fn open() -> Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("netlink socket");
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int; a failure only loses extended acks.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_EXT_ACK,
                (&raw const one).cast(),
                4,
            )
        };
        Ok(Self { fd, seq: 0 })
    }

    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address for the call's duration.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads what is waiting, at most `max_reads` datagrams; checks that each answer is
    /// well formed and counts it.
    fn drain(&mut self, max_reads: usize, summary: &mut Summary) -> Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        for _ in 0..max_reads {
            // SAFETY: a valid buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(()),
                    // The socket's buffer overflowed: answers were lost, not a bug.
                    Some(libc::ENOBUFS) => continue,
                    _ => return Err(e).context("netlink recv"),
                }
            }
            let mut rest = &buf[..n as usize];
            while !rest.is_empty() {
                if rest.len() < 16 {
                    bail!(
                        "a netlink answer of {} bytes, shorter than its header",
                        rest.len()
                    );
                }
                let len = u32::from_ne_bytes(rest[0..4].try_into()?) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into()?);
                if len < 16 || len > rest.len() {
                    bail!("a netlink answer claims {len} bytes of {}", rest.len());
                }
                summary.answers += 1;
                if kind == NLMSG_ERROR {
                    if len < 20 {
                        bail!("an error answer of {len} bytes");
                    }
                    let code = i32::from_ne_bytes(rest[16..20].try_into()?);
                    if code == 0 {
                        summary.acks += 1;
                    } else {
                        *summary.errors.entry(-code).or_default() += 1;
                    }
                } else if kind == NLMSG_DONE {
                    summary.acks += 1;
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }
}

/// A netlink message: header, generic netlink header, then `payload` (attributes).
fn message(family: u16, flags: u16, seq: u32, cmd: u8, version: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + payload.len());
    m.extend_from_slice(&((20 + payload.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[cmd, version, 0, 0]);
    m.extend_from_slice(payload);
    m
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The family's id, from the controller.
fn family_id(socket: &mut Socket) -> Result<u16> {
    let mut payload = Vec::new();
    attr(&mut payload, CTRL_ATTR_FAMILY_NAME, b"vip\0");
    let seq = socket.next_seq();
    socket.send(&message(
        GENL_ID_CTRL,
        NLM_F_REQUEST,
        seq,
        CTRL_CMD_GETFAMILY,
        1,
        &payload,
    ))?;
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // SAFETY: a valid buffer of the given length.
        let n = unsafe { libc::recv(socket.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let data = &buf[..n as usize];
        if data.len() < 20 || u16::from_ne_bytes([data[4], data[5]]) != GENL_ID_CTRL {
            bail!("no generic netlink family \"vip\": is the module loaded?");
        }
        let mut rest = &data[20..];
        while rest.len() >= 4 {
            let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
            let kind = u16::from_ne_bytes([rest[2], rest[3]]);
            if len < 4 || len > rest.len() {
                break;
            }
            if kind == CTRL_ATTR_FAMILY_ID && len >= 6 {
                return Ok(u16::from_ne_bytes([rest[4], rest[5]]));
            }
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        }
        bail!("the controller's answer has no family id");
    }
    bail!("the controller did not answer")
}

/// A VIP from a small set, so that deletes and gets often find what sets made.
fn vip(rng: &mut SmallRng) -> [u8; 4] {
    [240, 200, rng.random_range(0..2), rng.random_range(1..64)]
}

/// Attributes of the right type and size, for a valid-looking request.
fn good_attrs(rng: &mut SmallRng, cmd: u8) -> Vec<u8> {
    let mut p = Vec::new();
    match cmd {
        CMD_MAP_SET => {
            attr(&mut p, A_PEER_VIP, &vip(rng));
            attr(&mut p, A_PEER_IP4, &[192, 0, 2, rng.random_range(1..250)]);
            if rng.random_bool(0.5) {
                attr(&mut p, A_LOCAL_VIP, &[240, 0, 0, 1]);
            }
            if rng.random_bool(0.3) {
                attr(&mut p, A_FLAGS, &rng.random_range(0u32..4).to_ne_bytes());
            }
            attr(
                &mut p,
                A_SET_FLAGS,
                &rng.random_range(0u32..8).to_ne_bytes(),
            );
        }
        CMD_MAP_DEL | CMD_MAP_GET => attr(&mut p, A_PEER_VIP, &vip(rng)),
        CMD_SET_CONFIG => {
            let limit: u32 = match rng.random_range(0..4) {
                0 => 0,
                1 => rng.random(),
                _ => rng.random_range(1..200),
            };
            if rng.random_bool(0.7) {
                attr(&mut p, A_MAX_MAPPINGS, &limit.to_ne_bytes());
            }
            if rng.random_bool(0.5) {
                let roams: u32 = match rng.random_range(0..3) {
                    0 => 0,
                    1 => rng.random(),
                    _ => rng.random_range(1..200_000),
                };
                attr(&mut p, A_ROAM_LIMIT, &roams.to_ne_bytes());
            }
        }
        _ => {}
    }
    p
}

/// Attributes of random types, lengths and contents, some nested, some lying about their
/// length.
fn garbage_attrs(rng: &mut SmallRng) -> Vec<u8> {
    let mut p = Vec::new();
    for _ in 0..rng.random_range(0..6) {
        let mut kind = rng.random_range(0..A_MAX + 8);
        if rng.random_bool(0.1) {
            kind |= NLA_F_NESTED;
        }
        let len = match rng.random_range(0..10) {
            0 => 0,
            1 => rng.random_range(0..64),
            _ => [1, 2, 3, 4, 5, 8, 16][rng.random_range(0..7)],
        };
        let mut value: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if kind & !NLA_F_NESTED == A_STATS || kind & NLA_F_NESTED != 0 {
            // Nested garbage: attributes inside an attribute.
            value = garbage_nested(rng);
        }
        attr(&mut p, kind, &value);
    }
    if rng.random_bool(0.1) && p.len() >= 4 {
        // An attribute header that lies: too long for the message, or shorter than itself.
        let lie: u16 = if rng.random_bool(0.5) {
            0xfff0
        } else {
            rng.random_range(0..4)
        };
        p[0..2].copy_from_slice(&lie.to_ne_bytes());
    }
    if rng.random_bool(0.05) {
        // Trailing bytes that are not an attribute.
        p.extend((0..rng.random_range(1..4)).map(|_| rng.random::<u8>()));
    }
    p
}

fn garbage_nested(rng: &mut SmallRng) -> Vec<u8> {
    let mut p = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let len = rng.random_range(0..12);
        let value: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        attr(&mut p, rng.random(), &value);
    }
    p
}

/// Flips a few bits of a message after its netlink header (which decides where it goes).
fn mutate(rng: &mut SmallRng, message: &mut [u8]) {
    for _ in 0..rng.random_range(1..4) {
        if message.len() > 16 {
            let at = rng.random_range(16..message.len());
            message[at] ^= 1 << rng.random_range(0..8);
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let mut socket = Socket::open()?;
    let family = family_id(&mut socket)?;
    let mut summary = Summary::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    // Sockets with a dump in progress, abandoned at random.
    let mut dumping: Vec<Socket> = Vec::new();
    while summary.sent < args.count && Instant::now() < deadline {
        let flags_base = NLM_F_REQUEST | if rng.random_bool(0.8) { NLM_F_ACK } else { 0 };
        let seq = socket.next_seq();
        let mut msg = match rng.random_range(0..100) {
            // Valid-looking requests that change the table, now and then a flush.
            0..30 => {
                let cmd = [
                    CMD_MAP_SET,
                    CMD_MAP_SET,
                    CMD_MAP_DEL,
                    CMD_MAP_GET,
                    CMD_SET_CONFIG,
                ][rng.random_range(0..5)];
                let cmd = if rng.random_bool(0.01) {
                    CMD_MAP_FLUSH
                } else {
                    cmd
                };
                message(family, flags_base, seq, cmd, 1, &good_attrs(&mut rng, cmd))
            }
            // The same, mutated.
            30..50 => {
                let cmd = rng.random_range(1..CMD_MAX);
                let mut m = message(family, flags_base, seq, cmd, 1, &good_attrs(&mut rng, cmd));
                mutate(&mut rng, &mut m);
                m
            }
            // Any command number, any version, garbage attributes, odd flags.
            50..80 => {
                let flags = flags_base
                    | [0, NLM_F_ECHO, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_DUMP]
                        [rng.random_range(0..5)];
                message(
                    family,
                    flags,
                    seq,
                    rng.random_range(0..CMD_MAX + 4),
                    rng.random_range(0..3),
                    &garbage_attrs(&mut rng),
                )
            }
            // A generic netlink header cut short.
            80..83 => {
                let mut m = message(
                    family,
                    flags_base,
                    seq,
                    rng.random_range(0..CMD_MAX),
                    1,
                    &[],
                );
                let len = rng.random_range(16..20);
                m.truncate(len);
                m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
                m
            }
            // A dump of every mapping, on a socket of its own, read a little or not at all.
            _ => {
                let mut d = Socket::open()?;
                let seq = d.next_seq();
                let payload = if rng.random_bool(0.2) {
                    garbage_attrs(&mut rng)
                } else {
                    Vec::new()
                };
                if d.send(&message(
                    family,
                    NLM_F_REQUEST | NLM_F_DUMP,
                    seq,
                    CMD_MAP_GET,
                    1,
                    &payload,
                ))
                .is_ok()
                {
                    summary.dumps_started += 1;
                    d.drain(rng.random_range(0..3), &mut summary)?;
                    dumping.push(d);
                }
                summary.sent += 1;
                if dumping.len() > 8 || rng.random_bool(0.3) {
                    let i = rng.random_range(0..dumping.len());
                    drop(dumping.swap_remove(i));
                    summary.dumps_abandoned += 1;
                }
                continue;
            }
        };
        // Sometimes a few messages in one datagram.
        if rng.random_bool(0.05) {
            let seq = socket.next_seq();
            let cmd = rng.random_range(0..CMD_MAX);
            msg.extend(message(
                family,
                flags_base,
                seq,
                cmd,
                1,
                &garbage_attrs(&mut rng),
            ));
        }
        match socket.send(&msg) {
            Ok(()) => {}
            // The receive queue of answers is full: read them, then go on.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {}
            Err(e) => {
                // A socket the kernel gave up on (it may close one whose answers overflow):
                // a new one, counted.
                summary.reconnects += 1;
                socket = Socket::open().with_context(|| format!("after {e}"))?;
            }
        }
        summary.sent += 1;
        socket.drain(64, &mut summary)?;
        for d in &mut dumping {
            if rng.random_bool(0.1) {
                d.drain(1, &mut summary)?;
            }
        }
    }
    drop(dumping);
    std::thread::sleep(Duration::from_millis(100));
    socket.drain(1 << 20, &mut summary)?;
    summary.seconds = start.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
