//! What the protocol costs in CPU, on the host (not under TCG): two engines wired to each
//! other in memory, with DNS and the kernel answered at once, so that only the engines'
//! own work (parsing, Noise, sessions, tables, rate limits) is timed.
//!
//!     cargo run --release -p vip-proto --example cost [ROUNDS]
//!
//! Reported per operation, as medians over ROUNDS batches, beside one X25519 scalar
//! multiplication (the unit a handshake cannot go below: Noise IK does four on each side
//! plus a key generation each):
//! * a first contact: lookup, DNS answers, initiation, response, install, confirmation,
//!   acknowledgement (both engines' work);
//! * a hint: our move, the hint, the partner re-pointing and acking, the ack;
//! * a forged initiation at a responder under load (mac1, rate limit, cookie reply) and one
//!   with a bad mac1: what a flood costs per datagram.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use vip_proto::engine::{
    Config, DnsAnswer, Engine, KernelMapping, KernelOp, KeyProof, Output, Partners, Query,
};
use vip_proto::wire::InitiationPayload;
use vip_proto::{Fqdn, Identity, handshake};

const PORT: u16 = 4877;

fn config(name: &str, home: Ipv4Addr) -> Config {
    Config {
        port: PORT,
        retransmit: Duration::from_millis(300),
        lease: Duration::from_secs(3600),
        max_partners: 1 << 20,
        ..Config::new(Fqdn::new(name).expect("name"), home)
    }
}

struct Host {
    engine: Engine,
    addr: Ipv4Addr,
    kernel: HashMap<Ipv4Addr, KernelMapping>,
}

/// Two hosts and the DNS they share.
struct Pair {
    hosts: [Host; 2],
    dns: HashMap<Query, DnsAnswer>,
}

impl Pair {
    fn new(seed: u8) -> Self {
        let names = ["a.bench.test", "b.bench.test"];
        let addrs = [
            Ipv4Addr::new(192, 0, 2, 10),
            Ipv4Addr::new(198, 51, 100, 20),
        ];
        let homes = [Ipv4Addr::new(240, 0, 0, 1), Ipv4Addr::new(240, 0, 0, 2)];
        let mut dns = HashMap::new();
        let hosts = [0usize, 1].map(|i| {
            let mut secret = [0x55u8; 32];
            secret[0] = seed;
            secret[1] = i as u8;
            let identity = Identity::from_secret_bytes(secret);
            let fqdn = Fqdn::new(names[i]).expect("name");
            dns.insert(
                Query::Address(fqdn.clone()),
                DnsAnswer::Addresses(vec![addrs[i]]),
            );
            dns.insert(
                Query::Magic(fqdn.magic().expect("magic")),
                DnsAnswer::Addresses(vec![homes[i]]),
            );
            dns.insert(
                Query::Key(fqdn),
                DnsAnswer::Keys {
                    keys: vec![identity.public_key()],
                    proof: KeyProof::Unvalidated,
                },
            );
            Host {
                engine: Engine::new(
                    config(names[i], homes[i]),
                    identity,
                    Partners::new(homes[i]),
                    HashMap::new(),
                    1,
                    addrs[i],
                ),
                addr: addrs[i],
                kernel: HashMap::new(),
            }
        });
        Self { hosts, dns }
    }

    /// Delivers everything until both engines are quiet.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..2 {
                while let Some(out) = self.hosts[i].engine.poll_output() {
                    moved = true;
                    let now = Instant::now();
                    match out {
                        Output::Send { to, bytes } => {
                            let from = SocketAddrV4::new(self.hosts[i].addr, PORT);
                            if let Some(j) = (0..2).find(|&j| self.hosts[j].addr == *to.ip()) {
                                self.hosts[j].engine.handle_datagram(now, from, &bytes);
                            }
                        }
                        Output::Query { id, query } => {
                            let answer =
                                self.dns.get(&query).cloned().unwrap_or(DnsAnswer::NoRecord);
                            self.hosts[i].engine.dns_answer(now, id, answer);
                        }
                        Output::Kernel {
                            id,
                            op: KernelOp::Dump,
                        } => {
                            let table = self.hosts[i].kernel.values().cloned().collect();
                            self.hosts[i].engine.kernel_dump(now, id, table);
                        }
                        Output::Kernel { id, op } => {
                            if let KernelOp::Install {
                                peer_vip,
                                local_vip,
                                addr,
                                ..
                            }
                            | KernelOp::Repoint {
                                peer_vip,
                                local_vip,
                                addr,
                                ..
                            } = op
                            {
                                self.hosts[i].kernel.insert(
                                    peer_vip,
                                    KernelMapping {
                                        peer_vip,
                                        peer_ip4: addr,
                                        local_vip: Some(local_vip),
                                        invalid: false,
                                        last_rx: Some(Duration::ZERO),
                                        last_tx: Some(Duration::ZERO),
                                    },
                                );
                            }
                            self.hosts[i].engine.kernel_done(now, id, Ok(()));
                        }
                        Output::Update { id, .. } => {
                            self.hosts[i].engine.update_done(now, id, true)
                        }
                        Output::Answer { .. }
                        | Output::Save(_)
                        | Output::Pin { .. }
                        | Output::Repin { .. }
                        | Output::Unpin { .. } => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median over `rounds` batches of `per` operations, in microseconds per operation.
fn measure(rounds: usize, per: usize, mut setup_and_run: impl FnMut(usize) -> Duration) -> f64 {
    median(
        (0..rounds)
            .map(|_| setup_and_run(per).as_secs_f64() * 1e6 / per as f64)
            .collect(),
    )
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);

    let x25519 = measure(rounds, 2000, |per| {
        let secret = x25519_dalek::StaticSecret::from([7u8; 32]);
        let public = x25519_dalek::PublicKey::from([9u8; 32]);
        let t = Instant::now();
        for _ in 0..per {
            black_box(secret.diffie_hellman(black_box(&public)));
        }
        t.elapsed()
    });

    let mut seed = 0u8;
    let first_contact = measure(rounds, 50, |per| {
        let mut pairs: Vec<Pair> = (0..per)
            .map(|_| {
                seed = seed.wrapping_add(1);
                Pair::new(seed)
            })
            .collect();
        let b = Fqdn::new("b.bench.test").expect("name");
        let t = Instant::now();
        for pair in &mut pairs {
            pair.hosts[0].engine.lookup(Instant::now(), 1, b.clone());
            pair.settle();
        }
        let elapsed = t.elapsed();
        for pair in &pairs {
            assert_eq!(
                pair.hosts[1].engine.stats().pairs_confirmed,
                1,
                "the pair was confirmed: {:?} {:?}",
                pair.hosts[0].engine.stats(),
                pair.hosts[1].engine.stats()
            );
        }
        elapsed
    });

    let mut pair = Pair::new(1);
    pair.hosts[0]
        .engine
        .lookup(Instant::now(), 1, Fqdn::new("b.bench.test").expect("name"));
    pair.settle();
    let mut flip = false;
    let hint = measure(rounds, 200, |per| {
        let t = Instant::now();
        for _ in 0..per {
            flip = !flip;
            let addr = if flip {
                Ipv4Addr::new(192, 0, 2, 11)
            } else {
                Ipv4Addr::new(192, 0, 2, 10)
            };
            pair.hosts[0].addr = addr;
            pair.hosts[0].engine.address_changed(Instant::now(), addr);
            pair.settle();
        }
        t.elapsed()
    });
    let s = pair.hosts[0].engine.stats();
    assert_eq!(s.hints_sent, s.acks_received, "every hint was acked");

    // A responder under load: its global budget is spent first.
    let victim = Identity::from_secret_bytes([3; 32]);
    let victim_key = victim.public_key();
    let attacker = Identity::from_secret_bytes([5; 32]);
    let payload = InitiationPayload {
        counter: 1,
        requester: Fqdn::new("e.bench.test").expect("name"),
        responder: Fqdn::new("b.bench.test").expect("name"),
        round: 1,
        accept: true,
        esp: vip_proto::wire::EspOffer {
            esp: true,
            aes_hardware: false,
        },
        requester_vip: Ipv4Addr::new(240, 6, 6, 6),
        responder_vip: Ipv4Addr::new(240, 0, 0, 2),
    };
    let (_, forged) = handshake::initiate(&attacker.secret_bytes(), &victim_key, 1, &payload, None)
        .expect("initiation");
    let mut bad_mac = forged.clone();
    let last = bad_mac.len() - 20;
    bad_mac[last] ^= 1;
    let mut b = Engine::new(
        config("b.bench.test", Ipv4Addr::new(240, 0, 0, 2)),
        victim,
        Partners::new(Ipv4Addr::new(240, 0, 0, 2)),
        HashMap::new(),
        1,
        Ipv4Addr::new(198, 51, 100, 20),
    );
    let now = Instant::now();
    let mut source = 0u32;
    let mut flood = |bytes: &[u8], per: usize| {
        let t = Instant::now();
        for _ in 0..per {
            source = source.wrapping_add(1);
            let from = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | (source & 0xffff)), PORT);
            b.handle_datagram(now, from, bytes);
            while b.poll_output().is_some() {}
        }
        t.elapsed()
    };
    flood(&forged, 1000); // spends the budget: from here on, cookies
    let cookie = measure(rounds, 5000, |per| flood(&forged, per));
    let junk = measure(rounds, 5000, |per| flood(&bad_mac, per));
    assert!(b.stats().cookies_sent > 0, "the responder was under load");

    println!("VIP control protocol, CPU per operation on this host (median of {rounds} batches):");
    println!("  one X25519 scalar multiplication     {x25519:8.1} us  (1.0x: the unit)");
    println!(
        "  first contact, both ends             {first_contact:8.1} us  ({:.1}x; Noise IK needs 10 on the two sides)",
        first_contact / x25519
    );
    println!(
        "  a hint, re-point and ack, both ends  {hint:8.1} us  ({:.2}x)",
        hint / x25519
    );
    println!(
        "  a forged initiation under load       {cookie:8.1} us  ({:.2}x: mac1, rate limit, cookie reply; {:.0} a second per core)",
        cookie / x25519,
        1e6 / cookie
    );
    println!(
        "  a datagram with a bad mac1           {junk:8.1} us  ({:.2}x; {:.0} a second per core)",
        junk / x25519,
        1e6 / junk
    );
}
