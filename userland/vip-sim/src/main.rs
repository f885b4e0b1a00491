//! `vip-sim`: one process that impersonates many VIP hosts toward a real `vipd`, so that a
//! benchmark can give one daemon hundreds of partners without running hundreds of daemons.
//!
//! Host `i` (1 ..= `--count`) is named `p<i>.<zone>`, has its own X25519 identity (fresh at
//! every start) and its own IPv4 address (`--first-addr` + i - 1, which must already be
//! configured on a local interface), and answers on its own UDP socket bound to that
//! address and the VIP port. It plays the *responder* of the negotiation protocol
//! (`docs/protocol.md`, "Negotiation rules") and answers invalidation hints with acks, with
//! the same wire format and cryptography as `vipd` (the `vip-proto` crate):
//!
//! * a Request naming the host as responder gets a Reply with a MAC under the pairwise key,
//!   `ACCEPT` set and both proposed VIPs echoed, so the requester installs the mapping; the
//!   requester's key is pinned (in memory) on first contact;
//! * a sealed Hint from a partner is opened with the pairwise receive key, checked against
//!   a replay window and the partner's VIP, and answered with a sealed Ack (`seq`,
//!   `your_addr` = the hint's source address) under the send key, with a per-host counter
//!   starting at [`initial_counter`].
//!
//! **This is a load generator, not a daemon.** Unlike `vipd` it does not check the
//! requester's address against DNS, accepts whatever VIP the requester proposes for itself
//! (no collision check), installs no kernel mapping, keeps nothing on disk and does not
//! re-point anything when a partner moves. `--print-zone` prints the DNS records (address
//! and magic record, proposed VIP `--first-vip` + i - 1) the benchmark puts in its zone.
//!
//! Nothing is printed per packet: one line when all sockets are bound, counters at exit
//! (SIGTERM or SIGINT).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::{
    cell::Cell,
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    rc::Rc,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};
use tokio::{
    net::UdpSocket,
    signal::unix::{SignalKind, signal},
};
use vip_proto::{
    crypto::{Identity, PairKeys, derive_pair_keys},
    replay::{ReplayWindow, initial_counter},
    wire::{
        self, Control, ControlKind, Decoded, Fqdn, Negotiation, NegotiationKind, NegotiationPacket,
        SealedControl, seal,
    },
};

/// The magic-name prefix of paper section 3.1 (`docs/protocol.md`, "Advertising").
const MAGIC_PREFIX: &str = "vip105067072021-";

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Impersonates many VIP hosts (negotiation responder, hint acks)"
)]
struct Args {
    /// How many hosts to impersonate.
    #[arg(short = 'n', long, default_value_t = 500)]
    count: u32,
    /// Address of host p1; host i has this plus i - 1.
    #[arg(long, default_value = "10.200.0.1")]
    first_addr: Ipv4Addr,
    /// DNS zone the hosts' names are in.
    #[arg(long, default_value = "vip.test")]
    zone: String,
    /// UDP port of the VIP daemons.
    #[arg(long, default_value_t = 4877)]
    port: u16,
    /// VIP that host p1 proposes for itself in DNS (`--print-zone`); host i has this plus i - 1.
    #[arg(long, default_value = "250.0.0.1")]
    first_vip: Ipv4Addr,
    /// Print the zone-file lines (relative to the zone) and exit.
    #[arg(long)]
    print_zone: bool,
}

/// Counters over all hosts, printed at exit.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    replies: AtomicU64,
    mappings: AtomicU64,
    hints: AtomicU64,
    acks: AtomicU64,
    dropped: AtomicU64,
    /// When the first hint arrived and the last ack was sent (all hosts together).
    first_hint: Cell<Option<Instant>>,
    last_ack: Cell<Option<Instant>>,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one impersonated host knows about a partner that negotiated with it.
struct Partner {
    key: [u8; 32],
    keys: PairKeys,
    /// The partner's VIP as this host calls it (the requester VIP it accepted).
    vip: Ipv4Addr,
    replay: ReplayWindow,
}

/// One impersonated host.
struct Host {
    fqdn: Fqdn,
    index: u32,
    identity: Identity,
    socket: UdpSocket,
    partners: HashMap<Fqdn, Partner>,
    /// Counter (nonce) for sealed messages, from `initial_counter()`, never reused.
    counter: u64,
    /// The last reply sent, to answer a retransmitted request identically.
    last_reply: Option<(Fqdn, u64, u8, Vec<u8>)>,
}

fn nth_addr(first: Ipv4Addr, i: u32) -> Result<Ipv4Addr> {
    u32::from(first)
        .checked_add(i - 1)
        .map(Ipv4Addr::from)
        .with_context(|| format!("{first} + {} overflows", i - 1))
}

fn host_name(i: u32, zone: &str) -> Result<Fqdn> {
    Fqdn::new(&format!("p{i}.{zone}")).with_context(|| format!("p{i}.{zone} is not a valid name"))
}

impl Host {
    async fn run(mut self, stats: Rc<Stats>) {
        let mut buf = vec![0u8; wire::MAX_MESSAGE + 1];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(_) => continue,
            };
            let SocketAddr::V4(from) = from else {
                continue;
            };
            let answer = match buf.get(..n).map(wire::decode) {
                Some(Ok(Decoded::Negotiation(p))) if p.msg.kind == NegotiationKind::Request => {
                    Stats::bump(&stats.requests);
                    self.respond(p, &stats)
                }
                Some(Ok(Decoded::Control(c))) if c.kind == ControlKind::Hint => {
                    Stats::bump(&stats.hints);
                    if stats.first_hint.get().is_none() {
                        stats.first_hint.set(Some(Instant::now()));
                    }
                    self.ack(c, from, &stats)
                }
                _ => None,
            };
            match answer {
                Some(bytes) => {
                    // A lost answer is retransmitted by the requester like a lost datagram.
                    let _ = self.socket.send_to(&bytes, SocketAddr::V4(from)).await;
                }
                None => Stats::bump(&stats.dropped),
            }
        }
    }

    /// The responder of a negotiation, minus the DNS check: accept and echo.
    fn respond(&mut self, packet: NegotiationPacket, stats: &Stats) -> Option<Vec<u8>> {
        let req = &packet.msg;
        if req.responder_fqdn != self.fqdn || req.terminates() {
            return None;
        }
        if let Some((peer, session, round, bytes)) = &self.last_reply
            && *peer == req.requester_fqdn
            && *session == req.session
            && *round == req.round
        {
            return Some(bytes.clone());
        }
        // Trust on first use, as vipd: a pinned key must not change.
        if let Some(p) = self.partners.get(&req.requester_fqdn)
            && p.key != req.sender_key
        {
            return None;
        }
        let keys = derive_pair_keys(
            &self.identity,
            &self.fqdn,
            &req.sender_key,
            &req.requester_fqdn,
        )
        .ok()?;
        if packet.has_mac() && packet.verify(&keys.mac).is_err() {
            return None;
        }
        // Keep the requester's proposal for us if it accepted it; otherwise propose another
        // (251.x.y.round: outside the first-vip block the zone advertises).
        let responder_vip = if req.accept {
            req.responder_vip
        } else {
            let [_, _, x, y] = self.index.to_be_bytes();
            Ipv4Addr::new(251, x, y, req.round)
        };
        let reply = Negotiation {
            kind: NegotiationKind::Reply,
            session: req.session,
            round: req.round,
            accept: true,
            requester_fqdn: req.requester_fqdn.clone(),
            responder_fqdn: self.fqdn.clone(),
            requester_vip: req.requester_vip,
            responder_vip,
            sender_key: self.identity.public_key(),
        };
        let bytes = reply.encode(Some(&keys.mac));
        if req.accept {
            // Agreed: the requester installs the same pair on receiving this reply.
            let replay = self
                .partners
                .remove(&req.requester_fqdn)
                .map(|p| p.replay)
                .unwrap_or_default();
            self.partners.insert(
                req.requester_fqdn.clone(),
                Partner {
                    key: req.sender_key,
                    keys,
                    vip: req.requester_vip,
                    replay,
                },
            );
            Stats::bump(&stats.mappings);
        }
        self.last_reply = Some((
            req.requester_fqdn.clone(),
            req.session,
            req.round,
            bytes.clone(),
        ));
        Stats::bump(&stats.replies);
        Some(bytes)
    }

    /// A hint from a partner: authenticate, check freshness and VIP, seal an ack.
    fn ack(&mut self, sealed: SealedControl, from: SocketAddrV4, stats: &Stats) -> Option<Vec<u8>> {
        let partner = self.partners.get_mut(&sealed.sender)?;
        if !partner.replay.check(sealed.counter) {
            return None;
        }
        let Ok(Control::Hint { vip, seq, .. }) = sealed.open(&partner.keys.recv) else {
            return None;
        };
        // Only an authentic message moves the window.
        if !partner.replay.check_and_update(sealed.counter) || vip != partner.vip {
            return None;
        }
        let ack = Control::Ack {
            seq,
            your_addr: *from.ip(),
        };
        let bytes = seal(&ack, &self.fqdn, self.counter, &partner.keys.send);
        self.counter += 1;
        Stats::bump(&stats.acks);
        stats.last_ack.set(Some(Instant::now()));
        Some(bytes)
    }
}

fn print_zone(args: &Args) -> Result<()> {
    for i in 1..=args.count {
        let name = host_name(i, &args.zone)?;
        let label = name
            .as_str()
            .split('.')
            .next()
            .context("a name has a first label")?;
        println!("{label} IN A {}", nth_addr(args.first_addr, i)?);
        println!(
            "{MAGIC_PREFIX}{label} IN A {}",
            nth_addr(args.first_vip, i)?
        );
    }
    Ok(())
}

async fn serve(args: Args) -> Result<()> {
    let stats = Rc::new(Stats::default());
    let mut hosts = Vec::new();
    for i in 1..=args.count {
        let addr = nth_addr(args.first_addr, i)?;
        let socket = UdpSocket::bind(SocketAddrV4::new(addr, args.port))
            .await
            .with_context(|| format!("cannot bind {addr}:{}", args.port))?;
        hosts.push(Host {
            fqdn: host_name(i, &args.zone)?,
            index: i,
            identity: Identity::generate().context("no randomness for a key")?,
            socket,
            partners: HashMap::new(),
            counter: initial_counter(),
            last_reply: None,
        });
    }
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let local = tokio::task::LocalSet::new();
    for host in hosts {
        local.spawn_local(host.run(stats.clone()));
    }
    println!(
        "vip-sim ready: {} hosts, {}..{} port {}",
        args.count,
        args.first_addr,
        nth_addr(args.first_addr, args.count)?,
        args.port
    );
    local
        .run_until(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
        .await;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let span = match (stats.first_hint.get(), stats.last_ack.get()) {
        (Some(first), Some(last)) => format!("{:.1}", (last - first).as_secs_f64() * 1e3),
        _ => "-".into(),
    };
    println!(
        "vip-sim: requests={} replies={} mappings={} hints={} acks={} dropped={} \
         first_hint_to_last_ack_ms={span}",
        get(&stats.requests),
        get(&stats.replies),
        get(&stats.mappings),
        get(&stats.hints),
        get(&stats.acks),
        get(&stats.dropped),
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.print_zone {
        return print_zone(&args);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("tokio runtime")?
        .block_on(serve(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One impersonated host on loopback: a full negotiation, then a hint and its ack.
    #[tokio::test]
    async fn negotiates_and_acks() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sim_addr = socket.local_addr().unwrap();
        let sim_name = Fqdn::new("p1.vip.test").unwrap();
        let host = Host {
            fqdn: sim_name.clone(),
            index: 1,
            identity: Identity::generate().unwrap(),
            socket,
            partners: HashMap::new(),
            counter: initial_counter(),
            last_reply: None,
        };
        let me = Identity::generate().unwrap();
        let my_name = Fqdn::new("a.vip.test").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stats = Rc::new(Stats::default());
        let local = tokio::task::LocalSet::new();
        local.spawn_local(host.run(stats.clone()));
        local
            .run_until(async {
                let (my_vip, its_vip) = (Ipv4Addr::new(240, 0, 0, 9), Ipv4Addr::new(250, 0, 0, 1));
                let request = Negotiation {
                    kind: NegotiationKind::Request,
                    session: 7,
                    round: 1,
                    accept: true,
                    requester_fqdn: my_name.clone(),
                    responder_fqdn: sim_name.clone(),
                    requester_vip: my_vip,
                    responder_vip: its_vip,
                    sender_key: me.public_key(),
                };
                client
                    .send_to(&request.encode(None), sim_addr)
                    .await
                    .unwrap();
                let mut buf = [0u8; 2048];
                let (n, _) = client.recv_from(&mut buf).await.unwrap();
                let Ok(Decoded::Negotiation(reply)) = wire::decode(&buf[..n]) else {
                    panic!("not a negotiation message")
                };
                let keys =
                    derive_pair_keys(&me, &my_name, &reply.msg.sender_key, &sim_name).unwrap();
                reply.verify(&keys.mac).unwrap();
                let r = &reply.msg;
                assert_eq!(r.kind, NegotiationKind::Reply);
                assert!(r.accept);
                assert_eq!((r.session, r.round), (7, 1));
                assert_eq!((r.requester_vip, r.responder_vip), (my_vip, its_vip));

                let hint = Control::Hint {
                    vip: my_vip,
                    new_addr: Ipv4Addr::new(198, 51, 100, 10),
                    seq: 42,
                };
                client
                    .send_to(&seal(&hint, &my_name, 1000, &keys.send), sim_addr)
                    .await
                    .unwrap();
                let (n, _) = client.recv_from(&mut buf).await.unwrap();
                let Ok(Decoded::Control(ack)) = wire::decode(&buf[..n]) else {
                    panic!("not a control message")
                };
                assert_eq!(ack.sender, sim_name);
                assert_eq!(
                    ack.open(&keys.recv).unwrap(),
                    Control::Ack {
                        seq: 42,
                        your_addr: Ipv4Addr::LOCALHOST
                    }
                );
                // A replayed hint gets no second ack.
                client
                    .send_to(&seal(&hint, &my_name, 1000, &keys.send), sim_addr)
                    .await
                    .unwrap();
                let again = tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    client.recv_from(&mut buf),
                )
                .await;
                assert!(again.is_err());
            })
            .await;
        assert_eq!(stats.acks.load(Ordering::Relaxed), 1);
        assert_eq!(stats.mappings.load(Ordering::Relaxed), 1);
    }
}
