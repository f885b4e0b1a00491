//! `vip-sim`: one process that impersonates many VIP hosts toward a real `vipd`, so that a
//! benchmark can give one daemon hundreds of partners without running hundreds of daemons.
//!
//! Host `i` (1 ..= `--count`) is named `p<i>.<zone>`, has its own X25519 identity and its
//! own IPv4 address (`--first-addr` + i - 1, which must already be configured on a local
//! interface), and answers on its own UDP socket bound to that address and the VIP port.
//! Each host runs the real protocol engine (`vip_proto::engine`, the one `vipd` drives):
//! Noise handshakes, confirmations, sessions, hints and acks are exactly `vipd`'s.
//!
//! What differs from `vipd`, because this is a load generator and not a daemon:
//! * the kernel is a table in memory (every mapping counts as just used, so every partner
//!   is active);
//! * DNS is not asked: the initiators' keys are given with `--pin`, and any other
//!   question is answered "failed" (so the hosts only respond, they never look up);
//! * nothing is saved and nothing is published; the hosts never move.
//!
//! `vip-sim zone` generates the identities into a key file and prints the zone-file lines
//! (address, magic record with the proposed VIP `--first-vip` + i - 1, key record) that
//! the benchmark appends to its zone; `vip-sim serve` loads the same key file.
//!
//! The hosts are dealt over `--threads` threads (one per CPU by default), each with its
//! own single-threaded runtime, so that answering a burst of hints is not one core's work:
//! the figure a benchmark reads should be the daemon's, not the simulator's.
//!
//! Nothing is printed per packet: one line when all sockets are bound, counters summed
//! over the hosts at exit (SIGTERM or SIGINT).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use anyhow::{Context, Result, bail};
use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use clap::{Args, Parser, Subcommand};
use std::{
    cell::RefCell,
    collections::HashMap,
    fs,
    io::Write,
    net::{Ipv4Addr, SocketAddrV4},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    rc::Rc,
    time::Duration,
};
use tokio::{
    net::UdpSocket,
    signal::unix::{SignalKind, signal},
    sync::watch,
};
use vip_proto::{
    Fqdn, Identity,
    engine::{Config, Engine, Partners, Stats},
    fqdn::{key_record_text, parse_key_record},
    wire,
};
use vip_sim::peer::Peer;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Impersonates many VIP hosts (the responder's side of the real protocol)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate the hosts' keys into KEYS and print their zone-file lines.
    Zone(Common),
    /// Run the hosts.
    Serve {
        #[command(flatten)]
        common: Common,
        /// A partner's key, trusted as pinned: NAME=KEY, KEY in base64 or as its key
        /// record's text ("v=vip2 k=x25519 p=..."). Repeatable.
        #[arg(long = "pin", value_name = "NAME=KEY")]
        pins: Vec<String>,
        /// Threads to deal the hosts over (0: one per CPU).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// How many hosts to impersonate.
    #[arg(short = 'n', long, default_value_t = 500)]
    count: u32,
    /// The key file (one secret key per host, base64, a line each; mode 0600).
    #[arg(long)]
    keys: PathBuf,
    /// Address of host p1; host i has this plus i - 1.
    #[arg(long, default_value = "10.200.0.1")]
    first_addr: Ipv4Addr,
    /// DNS zone the hosts' names are in.
    #[arg(long, default_value = "vip.test")]
    zone: String,
    /// UDP port of the VIP daemons.
    #[arg(long, default_value_t = 4877)]
    port: u16,
    /// VIP that host p1 proposes for itself (its magic record); host i has this plus i - 1.
    #[arg(long, default_value = "250.0.0.1")]
    first_vip: Ipv4Addr,
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

/// One impersonated host.
struct Host {
    peer: Peer,
}

impl Host {
    async fn run(mut self, stats: Rc<RefCell<Vec<Stats>>>, slot: usize) {
        let mut buf = vec![0u8; wire::MAX_MESSAGE + 1];
        loop {
            self.peer.step(&mut buf, None).await;
            if let Some(s) = stats.borrow_mut().get_mut(slot) {
                *s = self.peer.engine.stats();
            }
        }
    }
}

/// Reads the key file: `count` secret keys.
fn load_keys(path: &Path, count: u32) -> Result<Vec<Identity>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let keys: Vec<Identity> = text
        .lines()
        .enumerate()
        .map(|(n, line)| {
            let bytes: [u8; 32] = B64
                .decode(line.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("{}:{}: not a base64 key", path.display(), n + 1))?;
            Ok(Identity::from_secret_bytes(bytes))
        })
        .collect::<Result<_>>()?;
    if keys.len() < count as usize {
        bail!(
            "{} holds {} keys, fewer than the {count} hosts",
            path.display(),
            keys.len()
        );
    }
    Ok(keys)
}

fn zone(args: &Common) -> Result<()> {
    let mut secrets = String::new();
    let mut out = std::io::stdout().lock();
    for i in 1..=args.count {
        let identity = Identity::generate().context("no randomness for a key")?;
        secrets.push_str(&B64.encode(*identity.secret_bytes()));
        secrets.push('\n');
        let name = host_name(i, &args.zone)?;
        let label = format!("p{i}");
        let magic = name.magic().context("the magic name is too long")?;
        let magic_label = magic
            .as_str()
            .split('.')
            .next()
            .context("a name has a first label")?
            .to_owned();
        writeln!(out, "{label} IN A {}", nth_addr(args.first_addr, i)?)?;
        writeln!(out, "{magic_label} IN A {}", nth_addr(args.first_vip, i)?)?;
        writeln!(
            out,
            "_vipkey.{label} IN TXT \"{}\"",
            key_record_text(&identity.public_key())
        )?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&args.keys)
        .with_context(|| format!("cannot write {}", args.keys.display()))?;
    file.write_all(secrets.as_bytes())?;
    Ok(())
}

fn parse_pin(spec: &str) -> Result<(Fqdn, [u8; 32])> {
    let (name, key) = spec
        .split_once('=')
        .with_context(|| format!("--pin {spec}: expected NAME=KEY"))?;
    let fqdn = Fqdn::new(name).with_context(|| format!("--pin: {name} is not a host name"))?;
    let key = key.trim().trim_matches('"');
    let parsed = parse_key_record(key).or_else(|| {
        B64.decode(key)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
    });
    let key = parsed.with_context(|| format!("--pin {name}: not a key: {key}"))?;
    Ok((fqdn, key))
}

fn config(args: &Common, i: u32) -> Result<Config> {
    Ok(Config {
        port: args.port,
        retransmit: Duration::from_millis(300),
        lease: Duration::from_secs(3600),
        max_partners: 1024,
        max_pending: 64,
        ..Config::new(host_name(i, &args.zone)?, nth_addr(args.first_vip, i)?)
    })
}

/// Binds the sockets of `shard` (host numbers with their keys) and builds their engines.
async fn bind_hosts(
    args: &Common,
    pins: &HashMap<Fqdn, [u8; 32]>,
    shard: Vec<(u32, Identity)>,
) -> Result<Vec<Host>> {
    let mut hosts = Vec::with_capacity(shard.len());
    for (i, identity) in shard {
        let addr = nth_addr(args.first_addr, i)?;
        let socket = UdpSocket::bind(SocketAddrV4::new(addr, args.port))
            .await
            .with_context(|| format!("cannot bind {addr}:{}", args.port))?;
        let cfg = config(args, i)?;
        let home = cfg.home_vip;
        let engine = Engine::new(cfg, identity, Partners::new(home), pins.clone(), 0, addr);
        hosts.push(Host {
            peer: Peer::new(engine, socket),
        });
    }
    Ok(hosts)
}

/// One thread's share of the hosts: binds them, reports on `ready`, runs them until `stop`
/// turns true, and returns their counters.
fn run_shard(
    args: Common,
    pins: HashMap<Fqdn, [u8; 32]>,
    shard: Vec<(u32, Identity)>,
    ready: std::sync::mpsc::Sender<Result<()>>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<Stats>> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(anyhow::Error::new(e).context("tokio runtime")));
            return Ok(Vec::new());
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let hosts = match bind_hosts(&args, &pins, shard).await {
            Ok(hosts) => hosts,
            Err(e) => {
                let _ = ready.send(Err(e));
                return Ok(Vec::new());
            }
        };
        let stats = Rc::new(RefCell::new(vec![Stats::default(); hosts.len()]));
        for (slot, host) in hosts.into_iter().enumerate() {
            tokio::task::spawn_local(host.run(stats.clone(), slot));
        }
        let _ = ready.send(Ok(()));
        // The main thread counts the shards that reported; a sender kept would hide one
        // that ended without reporting.
        drop(ready);
        // A dropped sender is a stop too.
        let _ = stop.wait_for(|stopped| *stopped).await;
        Ok(stats.take())
    })
}

fn serve(args: Common, pins: Vec<String>, threads: usize) -> Result<()> {
    let pins: HashMap<Fqdn, [u8; 32]> = pins.iter().map(|p| parse_pin(p)).collect::<Result<_>>()?;
    let keys = load_keys(&args.keys, args.count)?;
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(args.count as usize);
    // Host i goes to thread (i - 1) % threads.
    let mut shards: Vec<Vec<(u32, Identity)>> = (0..threads).map(|_| Vec::new()).collect();
    for ((i, identity), shard) in (1..=args.count).zip(keys).zip((0..threads).cycle()) {
        if let Some(hosts) = shards.get_mut(shard) {
            hosts.push((i, identity));
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let workers: Vec<_> = shards
        .into_iter()
        .map(|shard| {
            let (args, pins, ready, stop) = (
                args.clone(),
                pins.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
            );
            std::thread::spawn(move || run_shard(args, pins, shard, ready, stop))
        })
        .collect();
    drop(ready_tx);
    let mut bound = Ok(());
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bound = Err(e),
            Err(_) => bound = Err(anyhow::anyhow!("a host thread ended before binding")),
        }
    }
    let waited = bound.and_then(|()| {
        println!(
            "vip-sim ready: {} hosts on {threads} threads, {}..{} port {}",
            args.count,
            args.first_addr,
            nth_addr(args.first_addr, args.count)?,
            args.port
        );
        wait_for_signal()
    });
    let _ = stop_tx.send(true);
    let mut all = Vec::new();
    for worker in workers {
        match worker.join() {
            Ok(stats) => all.extend(stats?),
            Err(_) => bail!("a host thread panicked"),
        }
    }
    waited?;
    let sum = |f: fn(&Stats) -> u64| all.iter().map(f).sum::<u64>();
    println!(
        "vip-sim: responses={} pairs={} hints={} acks={} cookies={} dropped={} garbage={}",
        sum(|s| s.responses_sent),
        sum(|s| s.pairs_confirmed),
        sum(|s| s.hints_received),
        sum(|s| s.acks_sent),
        sum(|s| s.cookies_sent),
        sum(|s| s.initiations_dropped),
        sum(|s| s.garbage),
    );
    Ok(())
}

/// Blocks until SIGTERM or SIGINT.
fn wait_for_signal() -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("tokio runtime")?
        .block_on(async {
            let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
            let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            Ok(())
        })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (args, serving) = match cli.command {
        Command::Zone(args) => (args, None),
        Command::Serve {
            common,
            pins,
            threads,
        } => (common, Some((pins, threads))),
    };
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    match serving {
        None => zone(&args),
        Some((pins, threads)) => serve(args, pins, threads),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use vip_proto::engine::{DnsAnswer, KeyProof, LookupAnswer, Query};

    /// A real engine ("a", the initiator) against one simulated host on loopback: a
    /// negotiation through to the confirmation, then a move, a hint and its ack.
    #[tokio::test(flavor = "current_thread")]
    async fn a_real_engine_pairs_with_a_simulated_host_and_gets_its_hint_acked() {
        let args = Common {
            count: 1,
            keys: PathBuf::new(),
            first_addr: Ipv4Addr::LOCALHOST,
            zone: "vip.test".into(),
            port: 0,
            first_vip: Ipv4Addr::new(250, 0, 0, 1),
        };
        let sim_identity = Identity::generate().unwrap();
        let sim_key = sim_identity.public_key();
        let a_identity = Identity::generate().unwrap();
        let a_name = Fqdn::new("a.vip.test").unwrap();
        let pins = HashMap::from([(a_name.clone(), a_identity.public_key())]);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sim_port = socket.local_addr().unwrap().port();
        let mut cfg = config(&args, 1).unwrap();
        cfg.port = sim_port;
        let home = cfg.home_vip;
        let engine = Engine::new(
            cfg,
            sim_identity,
            Partners::new(home),
            pins,
            0,
            Ipv4Addr::LOCALHOST,
        );
        let host = Host {
            peer: Peer::new(engine, socket),
        };
        let stats = Rc::new(RefCell::new(vec![Stats::default()]));
        let local = tokio::task::LocalSet::new();
        local.spawn_local(host.run(stats.clone(), 0));

        let mut a_cfg = config(&args, 1).unwrap();
        a_cfg.me = a_name;
        a_cfg.home_vip = Ipv4Addr::new(240, 0, 0, 9);
        a_cfg.port = sim_port;
        let a_engine = Engine::new(
            a_cfg,
            a_identity,
            Partners::new(Ipv4Addr::new(240, 0, 0, 9)),
            HashMap::new(),
            1,
            Ipv4Addr::new(127, 0, 0, 2),
        );
        let mut a = Peer::new(a_engine, UdpSocket::bind("127.0.0.2:0").await.unwrap());
        let p1 = Fqdn::new("p1.vip.test").unwrap();
        a.dns.insert(
            Query::Address(p1.clone()),
            DnsAnswer::Addresses(vec![Ipv4Addr::LOCALHOST]),
        );
        a.dns.insert(
            Query::Magic(p1.magic().unwrap()),
            DnsAnswer::Addresses(vec![home]),
        );
        a.dns.insert(
            Query::Key(p1.clone()),
            DnsAnswer::Keys {
                keys: vec![sim_key],
                proof: KeyProof::Unvalidated,
            },
        );
        local
            .run_until(async {
                a.engine.lookup(Instant::now(), 1, p1);
                let paired = a
                    .run_until(Duration::from_secs(5), |_| {
                        stats.borrow()[0].pairs_confirmed == 1
                    })
                    .await;
                assert!(paired, "{:?}", stats.borrow()[0]);
                assert_eq!(a.answers.get(&1), Some(&LookupAnswer::Vip(home)));
                a.engine
                    .address_changed(Instant::now(), Ipv4Addr::new(127, 0, 0, 3));
                let acked = a
                    .run_until(Duration::from_secs(5), |a| {
                        a.engine.stats().acks_received == 1
                    })
                    .await;
                assert!(acked, "{:?}", a.engine.stats());
            })
            .await;
        let s = stats.borrow()[0];
        assert_eq!(
            (
                s.responses_sent,
                s.pairs_confirmed,
                s.hints_received,
                s.acks_sent
            ),
            (1, 1, 1, 1),
            "{s:?}"
        );
    }

    #[test]
    fn pins_take_base64_or_a_key_record() {
        let key = [7u8; 32];
        let (name, parsed) = parse_pin(&format!("a.vip.test={}", B64.encode(key))).unwrap();
        assert_eq!((name.as_str(), parsed), ("a.vip.test", key));
        let record = format!("a.vip.test=\"{}\"", key_record_text(&key));
        assert_eq!(parse_pin(&record).unwrap().1, key);
        assert!(parse_pin("a.vip.test").is_err());
        assert!(parse_pin("a.vip.test=short").is_err());
    }
}
