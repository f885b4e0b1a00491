//! `vip-attack`: the attacker of the VM's attack scenarios (`tests/62-attacks.sh`).
//!
//! * `key`: makes (or reads) the attacker's key pair and prints its key record.
//! * `initiations`: forged first messages, well-formed (a valid `mac1` for the victim's
//!   published key, a real Noise message with the attacker's own key) but claiming a name
//!   whose key the attacker does not hold, from spoofed source addresses, once or as a
//!   flood at a given rate. Noise messages are expensive to make, so a flood cycles through
//!   a pool of them, each from ever new source addresses.
//! * `partner`: a malicious partner that pairs with a victim for real (it holds the key
//!   its name publishes), then sends authenticated hints claiming another host's address.
//! * `fuzz`: random, framed, mutated and replayed datagrams at a daemon's port, bounded in
//!   count, rate and time, from our own address or spoofed ones (`vip_sim::wirefuzz`).
//!
//! Raw sockets (spoofing) need `CAP_NET_RAW`; the scenarios run it as root in a namespace.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use rand::{RngExt, SeedableRng, rngs::SmallRng};
use tokio::net::UdpSocket;
use vip_proto::engine::{Config, DnsAnswer, Engine, KeyProof, LookupAnswer, Partners, Query};
use vip_proto::fqdn::{key_record_text, parse_key_record};
use vip_proto::handshake;
use vip_proto::wire::InitiationPayload;
use vip_proto::{Fqdn, Identity};
use vip_sim::peer::Peer;
use vip_sim::spoof::{Spoofer, nth_in};
use vip_sim::wirefuzz::{self, Kind, WireFuzzer};

#[derive(Parser)]
#[command(
    name = "vip-attack",
    about = "The attacker of the VIP attack scenarios"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the key pair in KEYS if there is none; print its key record's text.
    Key {
        #[arg(long)]
        keys: PathBuf,
    },
    /// Forged initiations from spoofed sources.
    Initiations(Initiations),
    /// Pair with a victim as a real partner, then hint with a lying claimed address.
    Partner(Partner),
    /// Fuzz a daemon's control port: random, framed, mutated and replayed datagrams.
    Fuzz(Fuzz),
}

#[derive(clap::Args)]
struct Initiations {
    /// The victim's address.
    #[arg(long)]
    to: Ipv4Addr,
    /// The victim's name (the responder named in the payload).
    #[arg(long)]
    responder: String,
    /// The victim's key (base64 or its key record's text).
    #[arg(long)]
    responder_key: String,
    /// The name the initiations claim to come from; with --names N, N names
    /// `<i>-<claim>` are used in turn.
    #[arg(long)]
    claim: String,
    #[arg(long, default_value_t = 1)]
    names: u32,
    /// The source address to spoof ...
    #[arg(long, conflicts_with = "spoof_net")]
    spoof: Option<Ipv4Addr>,
    /// ... or a network to draw a new source from for every datagram (NET/PREFIX).
    #[arg(long)]
    spoof_net: Option<String>,
    /// Datagrams to send.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Datagrams a second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Distinct Noise messages to cycle through.
    #[arg(long, default_value_t = 64)]
    pool: u32,
    /// The port of the daemons.
    #[arg(long, default_value_t = 4877)]
    port: u16,
}

#[derive(clap::Args)]
struct Partner {
    /// Our key pair (made by `key`, published in DNS by the scenario).
    #[arg(long)]
    keys: PathBuf,
    /// Our name.
    #[arg(long)]
    name: String,
    /// Our address (bound; where the victim's packets come to).
    #[arg(long)]
    addr: Ipv4Addr,
    /// The VIP we propose for ourselves.
    #[arg(long)]
    home_vip: Ipv4Addr,
    /// The victim: its name, address, key and proposed VIP (its magic record).
    #[arg(long)]
    peer: String,
    #[arg(long)]
    peer_addr: Ipv4Addr,
    #[arg(long)]
    peer_key: String,
    #[arg(long)]
    peer_vip: Ipv4Addr,
    /// Once paired, hint claiming this address (ours stays where it is).
    #[arg(long)]
    claim: Ipv4Addr,
    /// Keep answering for this long after the hint was acked.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    #[arg(long, default_value_t = 4877)]
    port: u16,
}

#[derive(clap::Args)]
struct Fuzz {
    /// The victim's address.
    #[arg(long)]
    to: Ipv4Addr,
    /// The victim's name (the responder named in the valid initiations mutated).
    #[arg(long)]
    responder: String,
    /// The victim's key (base64 or its key record's text).
    #[arg(long)]
    responder_key: String,
    /// The name the valid initiations claim (a partner's name: refused for its key).
    #[arg(long)]
    claim: String,
    /// A capture (pcap) whose UDP datagrams are replayed and mutated.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Half of the datagrams come from a new address of this network (NET/PREFIX) each;
    /// the others, and all without it, from our own address.
    #[arg(long)]
    spoof_net: Option<String>,
    /// Datagrams to send at most ...
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// ... for this long at most (seconds) ...
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// ... this many a second (0: as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// The generator's seed (the same seed repeats a run's choices).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Valid initiations to mutate.
    #[arg(long, default_value_t = 32)]
    pool: u32,
    /// The port of the daemons.
    #[arg(long, default_value_t = 4877)]
    port: u16,
}

fn parse_key(text: &str) -> Result<[u8; 32]> {
    use base64::Engine as _;
    let text = text.trim().trim_matches('"');
    parse_key_record(text)
        .or_else(|| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .and_then(|b| b.try_into().ok())
        })
        .with_context(|| format!("not a key: {text}"))
}

fn parse_net(text: &str) -> Result<(Ipv4Addr, u8)> {
    let (net, prefix) = text.split_once('/').context("expected NET/PREFIX")?;
    let prefix: u8 = prefix.parse().context("bad prefix")?;
    if prefix > 30 {
        bail!("a /{prefix} is too small to draw sources from");
    }
    Ok((net.parse().context("bad network")?, prefix))
}

fn initiations(args: &Initiations) -> Result<()> {
    let responder = Fqdn::new(&args.responder).context("--responder")?;
    let responder_key = parse_key(&args.responder_key)?;
    let attacker = Identity::generate().context("no randomness")?;
    let secret = attacker.secret_bytes();
    let pool: Vec<Vec<u8>> = (0..args.pool.max(1))
        .map(|i| {
            let claim = if args.names > 1 {
                format!("{}-{}", i % args.names, args.claim)
            } else {
                args.claim.clone()
            };
            let payload = InitiationPayload {
                // High counters: the claim must not lose to a replay check, only to the key.
                counter: u64::MAX / 2 + u64::from(i),
                requester: Fqdn::new(&claim).with_context(|| format!("{claim}: not a name"))?,
                responder: responder.clone(),
                round: 1,
                accept: true,
                esp: vip_proto::wire::EspOffer {
                    esp: true,
                    aes_hardware: false,
                },
                requester_vip: Ipv4Addr::new(240, 66, 0, 1),
                responder_vip: Ipv4Addr::new(240, 66, 0, 2),
            };
            let (_, bytes) = handshake::initiate(&secret, &responder_key, i + 1, &payload, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(bytes)
        })
        .collect::<Result<_>>()?;
    let net = args.spoof_net.as_deref().map(parse_net).transpose()?;
    let spoofer = Spoofer::new().context("raw socket (CAP_NET_RAW needed)")?;
    let to = SocketAddrV4::new(args.to, args.port);
    let start = Instant::now();
    let (mut sent, mut failed) = (0u64, 0u64);
    for n in 0..args.count {
        if args.rate > 0 {
            // Paced against the start, so that slow sends catch up rather than drift.
            let due = start + Duration::from_secs_f64(n as f64 / args.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let source = match (args.spoof, net) {
            (Some(a), _) => a,
            (None, Some((net, prefix))) => nth_in(net, prefix, n as u32),
            (None, None) => bail!("--spoof or --spoof-net is needed"),
        };
        let bytes = pool
            .get((n % pool.len() as u64) as usize)
            .context("empty pool")?;
        match spoofer.send(SocketAddrV4::new(source, args.port), to, bytes) {
            Ok(()) => sent += 1,
            Err(_) => failed += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent={sent} failed={failed} seconds={secs:.2} rate={:.0}",
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Our address toward `to` (what the kernel would send from), without sending anything.
fn own_address(to: SocketAddrV4) -> Result<Ipv4Addr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").context("udp socket")?;
    socket
        .connect(to)
        .with_context(|| format!("no route to {to}"))?;
    match socket.local_addr()? {
        std::net::SocketAddr::V4(a) => Ok(*a.ip()),
        other => bail!("not an IPv4 source: {other}"),
    }
}

fn fuzz(args: &Fuzz) -> Result<()> {
    let responder = Fqdn::new(&args.responder).context("--responder")?;
    let claim = Fqdn::new(&args.claim).context("--claim")?;
    let responder_key = parse_key(&args.responder_key)?;
    let attacker = Identity::generate().context("no randomness")?;
    let secret = attacker.secret_bytes();
    let valid: Vec<Vec<u8>> = (0..args.pool)
        .map(|i| {
            let payload = InitiationPayload {
                // High counters: refused for the key, not as replays.
                counter: u64::MAX / 2 + u64::from(i),
                requester: claim.clone(),
                responder: responder.clone(),
                round: 1,
                accept: true,
                esp: vip_proto::wire::EspOffer {
                    esp: true,
                    aes_hardware: false,
                },
                requester_vip: Ipv4Addr::new(240, 66, 0, 1),
                responder_vip: Ipv4Addr::new(240, 66, 0, 2),
            };
            handshake::initiate(&secret, &responder_key, i + 1, &payload, None)
                .map(|(_, bytes)| bytes)
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<Result<_>>()?;
    let captured = match &args.replay {
        Some(path) => {
            let data = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            wirefuzz::pcap_udp(&data).with_context(|| format!("{}", path.display()))?
        }
        None => Vec::new(),
    };
    let captured_count = captured.len();
    let net = args.spoof_net.as_deref().map(parse_net).transpose()?;
    let to = SocketAddrV4::new(args.to, args.port);
    let own = own_address(to)?;
    let spoofer = Spoofer::new().context("raw socket (CAP_NET_RAW needed)")?;
    let mut fuzzer = WireFuzzer::new(args.seed, &responder_key, valid, captured);
    // Sources and ports are drawn apart from the datagrams, so that they do not shift
    // the datagrams' sequence.
    let mut sources = SmallRng::seed_from_u64(args.seed ^ 0x5eed_5eed);
    let mut by_kind: BTreeMap<Kind, u64> = BTreeMap::new();
    let (mut sent, mut failed, mut spoofed, mut unparseable) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    for n in 0..args.count {
        if args.rate > 0 {
            // Paced against the start, so that slow sends catch up rather than drift.
            let due = start + Duration::from_secs_f64(n as f64 / args.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        let datagram = fuzzer.next_datagram(to);
        let port = if sources.random_bool(0.9) {
            args.port
        } else {
            sources.random_range(1..=u16::MAX)
        };
        let from = match (datagram.from, net) {
            (Some(from), _) => from,
            (None, Some((net, prefix))) if sources.random_bool(0.5) => {
                spoofed += 1;
                SocketAddrV4::new(nth_in(net, prefix, sources.random()), port)
            }
            (None, _) => SocketAddrV4::new(own, port),
        };
        match spoofer.send(from, to, &datagram.bytes) {
            Ok(()) => {
                sent += 1;
                *by_kind.entry(datagram.kind).or_default() += 1;
                unparseable += u64::from(!wirefuzz::parses(&datagram.bytes));
            }
            Err(_) => failed += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let kinds: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{}={}", k.name(), by_kind.get(k).copied().unwrap_or(0)))
        .collect();
    println!(
        "sent={sent} failed={failed} {} unparseable={unparseable} spoofed={spoofed} \
         captured={captured_count} seed={} seconds={secs:.2} rate={:.0}",
        kinds.join(" "),
        args.seed,
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}

async fn partner(args: &Partner) -> Result<()> {
    let identity = Identity::load_or_generate(&args.keys).map_err(|e| anyhow::anyhow!("{e}"))?;
    let me = Fqdn::new(&args.name).context("--name")?;
    let peer = Fqdn::new(&args.peer).context("--peer")?;
    let cfg = Config {
        port: args.port,
        retransmit: Duration::from_millis(300),
        lease: Duration::from_secs(3600),
        max_partners: 16,
        max_pending: 16,
        ..Config::new(me, args.home_vip)
    };
    let engine = Engine::new(
        cfg,
        identity,
        Partners::new(args.home_vip),
        HashMap::new(),
        // Far above anything a real host of this name would have used.
        1 << 62,
        args.addr,
    );
    let socket = UdpSocket::bind(SocketAddrV4::new(args.addr, args.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", args.addr, args.port))?;
    let mut m = Peer::new(engine, socket);
    let magic = peer.magic().context("no magic name")?;
    m.dns.insert(
        Query::Address(peer.clone()),
        DnsAnswer::Addresses(vec![args.peer_addr]),
    );
    m.dns.insert(
        Query::Magic(magic),
        DnsAnswer::Addresses(vec![args.peer_vip]),
    );
    m.dns.insert(
        Query::Key(peer.clone()),
        DnsAnswer::Keys {
            keys: vec![parse_key(&args.peer_key)?],
            proof: KeyProof::Unvalidated,
        },
    );
    m.dns
        .insert(Query::Reverse(args.peer_vip), DnsAnswer::NoRecord);
    m.engine.lookup(Instant::now(), 1, peer.clone());
    let paired = m
        .run_until(Duration::from_secs(20), |m| {
            m.engine.partners().get(&peer).is_some() && m.engine.stats().negotiations == 0
        })
        .await;
    let Some(p) = m.engine.partners().get(&peer).cloned().filter(|_| paired) else {
        bail!(
            "no pair with {peer} (lookup: {:?}, {:?})",
            m.answers.get(&1),
            m.engine.stats()
        );
    };
    if m.answers.get(&1) != Some(&LookupAnswer::Vip(p.peer_vip)) {
        bail!(
            "paired, but the lookup was answered {:?}",
            m.answers.get(&1)
        );
    }
    println!(
        "paired with {peer}: it calls us {} and we call it {}",
        p.local_vip, p.peer_vip
    );
    // The lie: "I moved to <claim>", sent from where we are.
    m.engine.address_changed(Instant::now(), args.claim);
    let acked = m
        .run_until(Duration::from_secs(20), |m| {
            m.engine.stats().acks_received >= 1
        })
        .await;
    if !acked {
        bail!("the hint claiming {} was never acked", args.claim);
    }
    println!("hint claiming {} acked", args.claim);
    m.run_until(Duration::from_secs(args.hold), |_| false).await;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Key { keys } => {
            let identity = Identity::load_or_generate(&keys).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", key_record_text(&identity.public_key()));
            Ok(())
        }
        Command::Initiations(args) => initiations(&args),
        Command::Fuzz(args) => fuzz(&args),
        Command::Partner(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("runtime")?
            .block_on(partner(&args)),
    }
}
