//! The engine on a simulated network: hosts with fake kernels, a fake DNS server, a clock
//! that only moves when told, and an attacker who can drop, copy, replay and forge.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::esp::{Aead, EspSa};
use crate::identity::Identity;
use crate::wire::{InitiationPayload, MessageType};

const PORT: u16 = 4877;

fn fqdn(s: &str) -> Fqdn {
    Fqdn::new(s).unwrap()
}

fn config(me: &str, home_vip: Ipv4Addr) -> Config {
    Config {
        port: PORT,
        retransmit: Duration::from_millis(300),
        max_partners: 1000,
        max_pending: 64,
        ..Config::new(fqdn(me), home_vip)
    }
}

/// What `host` keeps about the partner `name`.
fn partner_of(net: &Net, host: usize, name: &str) -> Option<Partner> {
    net.hosts[host].engine.partners().get(&fqdn(name)).cloned()
}

/// A mapping in a fake kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    addr: Ipv4Addr,
    local_vip: Ipv4Addr,
    invalid: bool,
    last_rx: Option<Instant>,
    last_tx: Option<Instant>,
}

/// An SA in a fake kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeSa {
    peer_vip: Ipv4Addr,
    sa: EspSa,
}

struct Host {
    name: Fqdn,
    addr: Ipv4Addr,
    engine: Engine,
    kernel: BTreeMap<Ipv4Addr, Mapping>,
    /// Inbound SAs, oldest first (the daemon keeps the newest few of each pair).
    esp_in: Vec<FakeSa>,
    /// The outbound SA each peer VIP's packets use.
    esp_out: BTreeMap<Ipv4Addr, EspSa>,
    kicks: Vec<Ipv4Addr>,
    answers: HashMap<Id, LookupAnswer>,
    saved: Option<String>,
    pins: HashMap<Fqdn, [u8; 32]>,
    key: [u8; 32],
    secret: [u8; 32],
    home_vip: Ipv4Addr,
    counter_next: u64,
    /// When set, kernel changes wait here (a slow kernel worker) until released.
    held_kernel: Option<Vec<Output>>,
    /// When set, datagrams leave from this address rather than `addr`: an old address
    /// that lingers on its link, which the kernel picks toward a partner on that link.
    lingering: Option<Ipv4Addr>,
}

/// A datagram on the wire.
#[derive(Clone, Debug)]
struct Datagram {
    from: SocketAddrV4,
    to: SocketAddrV4,
    bytes: Vec<u8>,
}

struct Net {
    now: Instant,
    hosts: Vec<Host>,
    /// A records, magic records, key records, PTR records.
    a: HashMap<Fqdn, Ipv4Addr>,
    magic: HashMap<Fqdn, Ipv4Addr>,
    keys: HashMap<Fqdn, [u8; 32]>,
    /// How DNSSEC judges a name's key record (`Unvalidated` when not listed).
    key_proofs: HashMap<Fqdn, KeyProof>,
    /// The engines are told key records may be vouched by DNSSEC.
    dnssec: bool,
    dns_down: bool,
    /// Everything sent, for replays and inspection.
    wire: Vec<Datagram>,
    /// Drops datagrams it returns false for.
    filter: Box<dyn FnMut(&Datagram) -> bool>,
    queries: usize,
}

impl Net {
    fn new() -> Self {
        Self {
            now: Instant::now(),
            hosts: Vec::new(),
            a: HashMap::new(),
            magic: HashMap::new(),
            keys: HashMap::new(),
            key_proofs: HashMap::new(),
            dnssec: false,
            dns_down: false,
            wire: Vec::new(),
            filter: Box::new(|_| true),
            queries: 0,
        }
    }

    /// A VIP host: key, A, magic and key records published.
    fn host(&mut self, name: &str, addr: [u8; 4], secret: u8, home: [u8; 4]) -> usize {
        let identity = Identity::from_secret_bytes([secret; 32]);
        let key = identity.public_key();
        let name = fqdn(name);
        let addr = Ipv4Addr::from(addr);
        let home_vip = Ipv4Addr::from(home);
        self.a.insert(name.clone(), addr);
        self.magic.insert(name.clone(), home_vip);
        self.keys.insert(name.clone(), key);
        let engine = Engine::new(
            Config {
                dnssec_zones: if self.dnssec {
                    vec![fqdn("vip.test")]
                } else {
                    Vec::new()
                },
                ..config(name.as_str(), home_vip)
            },
            identity,
            Partners::new(home_vip),
            HashMap::new(),
            1,
            addr,
        );
        self.hosts.push(Host {
            name,
            addr,
            engine,
            kernel: BTreeMap::new(),
            esp_in: Vec::new(),
            esp_out: BTreeMap::new(),
            kicks: Vec::new(),
            answers: HashMap::new(),
            saved: None,
            pins: HashMap::new(),
            key,
            secret: [secret; 32],
            home_vip,
            counter_next: 1 + COUNTER_BLOCK,
            held_kernel: None,
            lingering: None,
        });
        self.hosts.len() - 1
    }

    /// Restarts host `i`'s daemon: sessions gone; partners and pins as saved (or lost
    /// with `lose_state`, which also empties its kernel table, as a reboot does).
    fn restart(&mut self, i: usize, lose_state: bool) {
        let h = &mut self.hosts[i];
        let mut partners = match (&h.saved, lose_state) {
            (Some(json), false) => serde_json::from_str(json).unwrap(),
            _ => Partners::new(h.home_vip),
        };
        if lose_state {
            h.kernel.clear();
            h.esp_in.clear();
            h.esp_out.clear();
            h.pins.clear();
            h.saved = None;
        }
        partners.reindex();
        let counter = h.counter_next;
        h.counter_next += COUNTER_BLOCK;
        h.engine = Engine::new(
            Config {
                dnssec_zones: if self.dnssec {
                    vec![fqdn("vip.test")]
                } else {
                    Vec::new()
                },
                ..config(h.name.as_str(), h.home_vip)
            },
            Identity::from_secret_bytes(h.secret),
            partners,
            h.pins.clone(),
            counter,
            h.addr,
        );
    }

    /// Host `i` is reinstalled with the identity of `secret`, which its zone publishes:
    /// its state and kernel gone. Its new public key.
    fn reinstall(&mut self, i: usize, secret: u8) -> [u8; 32] {
        let key = Identity::from_secret_bytes([secret; 32]).public_key();
        self.keys.insert(self.hosts[i].name.clone(), key);
        self.hosts[i].secret = [secret; 32];
        self.hosts[i].key = key;
        self.restart(i, true);
        key
    }

    /// Host `i` reboots: partners, sessions and kernel gone, its pinned keys kept.
    fn reboot_keeping_pins(&mut self, i: usize) {
        let pins = self.hosts[i].pins.clone();
        self.restart(i, true);
        self.hosts[i].pins = pins;
        self.restart(i, false);
    }

    fn by_addr(&self, addr: Ipv4Addr) -> Option<usize> {
        self.hosts.iter().position(|h| h.addr == addr)
    }

    fn answer_query(&mut self, query: &Query) -> DnsAnswer {
        self.queries += 1;
        if self.dns_down {
            return DnsAnswer::Failed;
        }
        match query {
            Query::Address(n) => self
                .a
                .get(n)
                .map_or(DnsAnswer::NoRecord, |a| DnsAnswer::Addresses(vec![*a])),
            Query::Magic(n) => {
                let base = fqdn(n.as_str().trim_start_matches(crate::fqdn::MAGIC_PREFIX));
                self.magic
                    .get(&base)
                    .map_or(DnsAnswer::NoRecord, |a| DnsAnswer::Addresses(vec![*a]))
            }
            Query::Key(n) => self
                .keys
                .get(n)
                .map_or(DnsAnswer::NoRecord, |k| DnsAnswer::Keys {
                    keys: vec![*k],
                    proof: self
                        .key_proofs
                        .get(n)
                        .copied()
                        .unwrap_or(KeyProof::Unvalidated),
                }),
            Query::Reverse(_) => DnsAnswer::NoRecord,
        }
    }

    /// Delivers everything until nothing moves (without advancing time).
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.hosts.len() {
                while let Some(output) = self.hosts[i].engine.poll_output() {
                    moved = true;
                    self.output(i, output);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the simulation does not settle");
    }

    fn output(&mut self, i: usize, output: Output) {
        let now = self.now;
        if let (Output::Kernel { .. }, Some(held)) = (&output, &mut self.hosts[i].held_kernel) {
            held.push(output);
            return;
        }
        match output {
            Output::Send { to, bytes } => {
                let source = self.hosts[i].lingering.unwrap_or(self.hosts[i].addr);
                let d = Datagram {
                    from: SocketAddrV4::new(source, PORT),
                    to,
                    bytes,
                };
                self.wire.push(d.clone());
                if (self.filter)(&d) {
                    self.deliver(&d);
                }
            }
            Output::Query { id, query } => {
                let answer = self.answer_query(&query);
                self.hosts[i].engine.dns_answer(now, id, answer);
            }
            Output::Answer { id, answer } => {
                self.hosts[i].answers.insert(id, answer);
            }
            Output::Kernel { id, op } => {
                let h = &mut self.hosts[i];
                let esp = match &op {
                    KernelOp::Install { peer_vip, esp, .. }
                    | KernelOp::Repoint { peer_vip, esp, .. } => {
                        esp.clone().map(|e| (*peer_vip, e.inbound, e.outbound))
                    }
                    KernelOp::EspOut { peer_vip, sa, .. } => {
                        h.esp_out.insert(*peer_vip, sa.clone());
                        None
                    }
                    _ => None,
                };
                if let Some((peer_vip, inbound, outbound)) = esp {
                    // The kernel refuses a second SA with an SPI (`EEXIST`).
                    if h.esp_in.iter().any(|f| f.sa.spi == inbound.spi) {
                        h.engine.kernel_done(now, id, Err("SPI taken".into()));
                        return;
                    }
                    h.esp_in.push(FakeSa {
                        peer_vip,
                        sa: inbound,
                    });
                    if let Some(sa) = outbound {
                        h.esp_out.insert(peer_vip, sa);
                    }
                }
                match op {
                    KernelOp::EspOut { .. } => {}
                    KernelOp::Install {
                        peer_vip,
                        local_vip,
                        addr,
                        ..
                    } => {
                        h.kernel.insert(
                            peer_vip,
                            Mapping {
                                addr,
                                local_vip,
                                invalid: false,
                                last_rx: None,
                                last_tx: Some(now),
                            },
                        );
                    }
                    KernelOp::Repoint {
                        peer_vip,
                        local_vip,
                        addr,
                        kick,
                        ..
                    } => {
                        let m = h.kernel.entry(peer_vip).or_insert(Mapping {
                            addr,
                            local_vip,
                            invalid: false,
                            last_rx: None,
                            last_tx: None,
                        });
                        m.addr = addr;
                        if kick {
                            h.kicks.push(peer_vip);
                        }
                    }
                    KernelOp::Invalidate { peer_vip, .. } => {
                        if let Some(m) = h.kernel.get_mut(&peer_vip) {
                            m.invalid = true;
                        }
                    }
                    KernelOp::Remove { peer_vip, .. } => {
                        h.kernel.remove(&peer_vip);
                        h.esp_in.retain(|f| f.peer_vip != peer_vip);
                        h.esp_out.remove(&peer_vip);
                    }
                    KernelOp::Dump => {
                        let mappings = h
                            .kernel
                            .iter()
                            .map(|(vip, m)| KernelMapping {
                                peer_vip: *vip,
                                peer_ip4: m.addr,
                                local_vip: Some(m.local_vip),
                                invalid: m.invalid,
                                last_rx: m.last_rx.map(|t| now.duration_since(t)),
                                last_tx: m.last_tx.map(|t| now.duration_since(t)),
                            })
                            .collect();
                        h.engine.kernel_dump(now, id, mappings);
                        return;
                    }
                }
                h.engine.kernel_done(now, id, Ok(()));
            }
            Output::Update { id, address } => {
                let ok = !self.dns_down;
                if ok {
                    let name = self.hosts[i].name.clone();
                    self.a.insert(name, address);
                }
                self.hosts[i].engine.update_done(now, id, ok);
            }
            Output::Save(json) => self.hosts[i].saved = Some(json),
            Output::Pin { fqdn, key } => {
                assert!(
                    !self.hosts[i].pins.contains_key(&fqdn),
                    "Pin replaces no pin"
                );
                self.hosts[i].pins.insert(fqdn, key);
            }
            Output::Repin { fqdn, key } => {
                assert!(
                    self.hosts[i].pins.contains_key(&fqdn),
                    "Repin replaces a pin"
                );
                self.hosts[i].pins.insert(fqdn, key);
            }
            Output::Unpin { fqdn } => {
                self.hosts[i].pins.remove(&fqdn);
            }
        }
    }

    fn deliver(&mut self, d: &Datagram) {
        if let Some(j) = self.by_addr(*d.to.ip()) {
            let now = self.now;
            self.hosts[j].engine.handle_datagram(now, d.from, &d.bytes);
        }
    }

    /// Delivers a datagram as if from `from` (spoofing, replays).
    fn inject(&mut self, from: SocketAddrV4, to: SocketAddrV4, bytes: Vec<u8>) {
        let d = Datagram { from, to, bytes };
        self.deliver(&d);
        self.settle();
    }

    /// Lets `total` time pass, ticking each engine when it asks.
    fn run_for(&mut self, total: Duration) {
        let end = self.now + total;
        self.settle();
        loop {
            let next = self
                .hosts
                .iter()
                .filter_map(|h| h.engine.poll_timeout())
                .min()
                .unwrap_or(end)
                .max(self.now);
            if next > end {
                self.now = end;
                break;
            }
            self.now = next.max(self.now + Duration::from_micros(1));
            let now = self.now;
            for h in &mut self.hosts {
                if h.engine.poll_timeout().is_some_and(|t| t <= now) {
                    h.engine.tick(now);
                }
            }
            self.settle();
        }
        let now = self.now;
        for h in &mut self.hosts {
            h.engine.tick(now);
        }
        self.settle();
    }

    fn lookup(&mut self, i: usize, name: &str) -> Id {
        let id =
            1000 + self.hosts[i].answers.len() as u64 + self.hosts[i].kicks.len() as u64 * 7919;
        let now = self.now;
        self.hosts[i].engine.lookup(now, id, fqdn(name));
        self.settle();
        id
    }

    fn answer(&self, i: usize, id: Id) -> Option<LookupAnswer> {
        self.hosts[i].answers.get(&id).copied()
    }

    /// Puts into host `i`'s kernel a mapping marked invalid (as a renegotiation, or an
    /// earlier run, leaves one) that last carried a packet at `last`; gives its VIP.
    fn invalid_mapping(&mut self, i: usize, last: Option<Instant>) -> Ipv4Addr {
        let vip: Ipv4Addr = [240, 0, 0, 77].into();
        let local_vip = self.hosts[i].home_vip;
        self.hosts[i].kernel.insert(
            vip,
            Mapping {
                addr: [198, 51, 100, 77].into(),
                local_vip,
                invalid: true,
                last_rx: last,
                last_tx: last,
            },
        );
        vip
    }

    /// Traffic between two hosts' kernels, as far as activity counters go.
    fn traffic(&mut self, i: usize, j: usize) {
        let now = self.now;
        let vj = self.hosts[i]
            .engine
            .partners()
            .get(&self.hosts[j].name)
            .map(|p| p.peer_vip);
        let vi = self.hosts[j]
            .engine
            .partners()
            .get(&self.hosts[i].name)
            .map(|p| p.peer_vip);
        if let Some(m) = vj.and_then(|v| self.hosts[i].kernel.get_mut(&v)) {
            m.last_tx = Some(now);
            m.last_rx = Some(now);
        }
        if let Some(m) = vi.and_then(|v| self.hosts[j].kernel.get_mut(&v)) {
            m.last_tx = Some(now);
            m.last_rx = Some(now);
        }
    }

    /// Host `i` moves to `addr`.
    fn move_host(&mut self, i: usize, addr: [u8; 4]) {
        let addr = Ipv4Addr::from(addr);
        self.hosts[i].addr = addr;
        let now = self.now;
        self.hosts[i].engine.address_changed(now, addr);
        self.settle();
    }
}

/// Both hosts hold the same pair, pointing at each other's current addresses.
fn paired(net: &Net, i: usize, j: usize) -> bool {
    let (a, b) = (&net.hosts[i], &net.hosts[j]);
    let (Some(pa), Some(pb)) = (
        a.engine.partners().get(&b.name),
        b.engine.partners().get(&a.name),
    ) else {
        return false;
    };
    pa.peer_vip == pb.local_vip
        && pa.local_vip == pb.peer_vip
        && pa.addr == b.addr
        && pb.addr == a.addr
        && a.kernel
            .get(&pa.peer_vip)
            .is_some_and(|m| m.addr == b.addr && !m.invalid)
        && b.kernel
            .get(&pb.peer_vip)
            .is_some_and(|m| m.addr == a.addr && !m.invalid)
        && (!esp_required(net, i) || esp_carries(net, i, j) && esp_carries(net, j, i))
}

fn esp_required(net: &Net, i: usize) -> bool {
    net.hosts[i].engine.cfg.esp == EspMode::Required
}

/// `i`'s outbound SA toward `j` is one of `j`'s inbound SAs for that pair, with the same key
/// and algorithm: `i`'s packets reach `j`.
fn esp_carries(net: &Net, i: usize, j: usize) -> bool {
    let (a, b) = (&net.hosts[i], &net.hosts[j]);
    let Some(pa) = a.engine.partners().get(&b.name) else {
        return false;
    };
    let Some(out) = a.esp_out.get(&pa.peer_vip) else {
        return false;
    };
    b.esp_in
        .iter()
        .any(|f| f.peer_vip == pa.local_vip && f.sa == *out)
}

/// An initiation to B (`b_key`) under `secret`, claiming `requester`, with `counter` and
/// sender `index`, proposing fixed VIPs: what a flood or a retransmission sends.
fn b_initiation(
    secret: &[u8; 32],
    b_key: &[u8; 32],
    requester: &str,
    counter: u64,
    index: u32,
) -> Vec<u8> {
    let payload = InitiationPayload {
        counter,
        requester: fqdn(requester),
        responder: fqdn("b.vip.test"),
        round: 1,
        accept: true,
        esp: crate::wire::EspOffer {
            esp: true,
            aes_hardware: false,
        },
        requester_vip: [240, 9, 9, 9].into(),
        responder_vip: [240, 0, 0, 2].into(),
    };
    crate::handshake::initiate(secret, b_key, index, &payload, None)
        .unwrap()
        .1
}

fn two() -> (Net, usize, usize) {
    let mut net = Net::new();
    let a = net.host("a.vip.test", [192, 0, 2, 10], 1, [240, 0, 0, 1]);
    let b = net.host("b.vip.test", [198, 51, 100, 20], 2, [240, 0, 0, 2]);
    (net, a, b)
}

/// `two()`, paired by A's lookup of B, with packets both ways (active partners).
fn two_in_use() -> (Net, usize, usize) {
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    net.traffic(a, b);
    (net, a, b)
}

fn kinds(net: &Net, from: Ipv4Addr) -> Vec<u8> {
    net.wire
        .iter()
        .filter(|d| *d.from.ip() == from)
        .map(|d| d.bytes[3])
        .collect()
}

#[test]
fn first_contact_costs_one_round_trip_and_pairs_both() {
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    // Everything is instantaneous here: the answer came after the response (one round
    // trip), before the confirmation's acknowledgement.
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Vip([240, 0, 0, 2].into()))
    );
    assert!(paired(&net, a, b));
    // Keys pinned on both sides, as published.
    assert_eq!(
        net.hosts[a].pins.get(&fqdn("b.vip.test")),
        Some(&net.hosts[b].key)
    );
    assert_eq!(
        net.hosts[b].pins.get(&fqdn("a.vip.test")),
        Some(&net.hosts[a].key)
    );
    // Initiation, response, confirmation, acknowledgement.
    assert_eq!(
        kinds(&net, net.hosts[a].addr),
        vec![MessageType::Initiation as u8, MessageType::Transport as u8]
    );
    assert_eq!(
        kinds(&net, net.hosts[b].addr),
        vec![MessageType::Response as u8, MessageType::Transport as u8]
    );
    // The initiator kicked TCP once confirmed (a first SYN may have beaten the install).
    assert_eq!(net.hosts[a].kicks, vec![Ipv4Addr::from([240, 0, 0, 2])]);
    // A second lookup is answered from the table, with no traffic.
    let sent = net.wire.len();
    let id = net.lookup(a, "b.vip.test");
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Vip([240, 0, 0, 2].into()))
    );
    assert_eq!(net.wire.len(), sent);
}

#[test]
fn legacy_hosts_and_refusals() {
    let (mut net, a, _b) = two();
    net.a.insert(fqdn("c.vip.test"), [192, 0, 2, 30].into());
    let id = net.lookup(a, "c.vip.test");
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Upstream),
        "no magic record: legacy"
    );
    let id = net.lookup(a, "nowhere.vip.test");
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Upstream),
        "NXDOMAIN relayed"
    );
    let id = net.lookup(a, "a.vip.test");
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Upstream),
        "our own name"
    );
    // A pinned key that DNS now contradicts: refused.
    net.hosts[a].engine.pins.insert(fqdn("b.vip.test"), [9; 32]);
    let id = net.lookup(a, "b.vip.test");
    assert_eq!(net.answer(a, id), Some(LookupAnswer::Failed));
    net.dns_down = true;
    let id = net.lookup(a, "d.vip.test");
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Failed),
        "DNS down: SERVFAIL"
    );
}

#[test]
fn a_forged_first_message_leaves_no_state() {
    let (mut net, a, b) = two();
    // E knows B's public key (it is in DNS) and makes an initiation claiming to be A,
    // with its own key, from A's address.
    let e = Identity::from_secret_bytes([66; 32]);
    let forged = b_initiation(&e.secret_bytes(), &net.hosts[b].key, "a.vip.test", 99, 5);
    let a_addr = SocketAddrV4::new(net.hosts[a].addr, PORT);
    let b_addr = SocketAddrV4::new(net.hosts[b].addr, PORT);
    net.inject(a_addr, b_addr, forged);
    // B checked the key against DNS and refused: no partner, no pin, no kernel state.
    assert!(net.hosts[b].engine.partners().is_empty());
    assert!(net.hosts[b].pins.is_empty());
    assert!(net.hosts[b].kernel.is_empty());
    assert!(net.hosts[b].engine.pends.is_empty());
    // The real A then pairs normally.
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
}

#[test]
fn an_unconfirmed_handshake_installs_nothing_at_the_responder() {
    let (mut net, a, b) = two();
    // Responses never reach A (A is not at the address the initiations claim, say).
    let a_addr = net.hosts[a].addr;
    net.filter = Box::new(move |d| *d.to.ip() != a_addr);
    let id = net.lookup(a, "b.vip.test");
    // A gives up after about 7.5 s; B's answered entry for its last initiation waits for
    // a confirmation for CONFIRM_WINDOW and a little more.
    net.run_for(Duration::from_secs(8));
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Upstream),
        "the physical address, within a stub resolver's patience"
    );
    assert!(
        !net.hosts[b].engine.pends.is_empty(),
        "answered entries wait for the confirmation"
    );
    // The last initiation was answered at about 7 s; its entry waits the window and a
    // path's delay (5 s) more.
    net.run_for(super::CONFIRM_WINDOW + Duration::from_secs(6));
    assert!(
        net.hosts[b].engine.partners().is_empty(),
        "no confirmation, no pair"
    );
    assert!(net.hosts[b].kernel.is_empty());
    assert!(net.hosts[b].pins.is_empty());
    assert!(
        net.hosts[b].engine.pends.is_empty(),
        "pending entries expire"
    );
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Upstream),
        "the physical address, at last"
    );
}

#[test]
fn a_confirmation_that_passes_late_in_a_loss_burst_still_installs_the_pair() {
    let (mut net, a, b) = two();
    // A flooded responder's socket buffer overflows: A's first nine confirmations are
    // lost (once, six were all A sent), the tenth passes.
    let a_addr = net.hosts[a].addr;
    let confirms = Rc::new(Cell::new(0u32));
    let seen = confirms.clone();
    net.filter = Box::new(move |d| {
        if *d.from.ip() != a_addr || d.bytes[3] != MessageType::Transport as u8 {
            return true;
        }
        seen.set(seen.get() + 1);
        seen.get() > 9
    });
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(5));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(
        net.hosts[b].engine.partners().is_empty(),
        "nothing confirmed yet"
    );
    net.run_for(super::CONFIRM_WINDOW);
    assert!(paired(&net, a, b), "the tenth confirmation installs it");
    assert_eq!(
        confirms.get(),
        10,
        "and A stopped confirming once acknowledged"
    );
}

#[test]
fn a_lost_confirmation_is_retried_and_without_an_answer_the_pair_is_taken_back() {
    let (mut net, a, b) = two();
    // B's confirmation acknowledgements are lost twice, then pass.
    let b_addr = net.hosts[b].addr;
    let mut lost = 0;
    net.filter = Box::new(move |d| {
        if *d.from.ip() == b_addr && d.bytes[3] == MessageType::Transport as u8 && lost < 2 {
            lost += 1;
            return false;
        }
        true
    });
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(5));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));

    // Now C never acknowledges at all (it drops every confirmation): A takes the pair back.
    let c = net.host("c.vip.test", [203, 0, 113, 30], 3, [240, 0, 0, 3]);
    let c_addr = net.hosts[c].addr;
    let a_addr = net.hosts[a].addr;
    net.filter = Box::new(move |d| {
        !(*d.from.ip() == a_addr
            && *d.to.ip() == c_addr
            && d.bytes[3] == MessageType::Transport as u8)
    });
    let id = net.lookup(a, "c.vip.test");
    assert!(
        matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))),
        "answered after one round trip"
    );
    net.run_for(Duration::from_secs(60));
    assert!(
        net.hosts[a]
            .engine
            .partners()
            .get(&fqdn("c.vip.test"))
            .is_none(),
        "taken back"
    );
    assert!(
        !net.hosts[a]
            .kernel
            .contains_key(&Ipv4Addr::from([240, 0, 0, 3]))
    );
    assert!(
        net.hosts[c].engine.partners().is_empty(),
        "neither holds it"
    );
}

#[test]
fn replays_change_nothing_even_after_a_restart() {
    let (mut net, a, b) = two_in_use();
    net.move_host(a, [198, 51, 100, 10]);
    net.run_for(Duration::from_secs(3));
    assert!(paired(&net, a, b));
    let captured = net.wire.clone();
    let before_b = partner_of(&net, b, "a.vip.test");
    let before_a = partner_of(&net, a, "b.vip.test");
    // Everything replayed, from the original sources: nothing changes.
    for d in &captured {
        net.inject(d.from, d.to, d.bytes.clone());
    }
    net.run_for(Duration::from_secs(1));
    assert_eq!(partner_of(&net, b, "a.vip.test"), before_b);
    assert_eq!(partner_of(&net, a, "b.vip.test"), before_a);
    assert!(net.hosts[b].engine.pends.is_empty());
    // B restarts (state kept on disk), and the replays come again: still nothing.
    net.restart(b, false);
    for d in &captured {
        net.inject(d.from, d.to, d.bytes.clone());
    }
    net.run_for(Duration::from_secs(6));
    assert_eq!(partner_of(&net, b, "a.vip.test"), before_b);
    assert!(net.hosts[b].engine.pends.is_empty());
    assert!(paired(&net, a, b));
}

#[test]
fn a_hint_moves_the_mapping_to_its_source_not_to_what_it_claims() {
    let (mut net, a, b) = two_in_use();
    // A moves; its hint reaches B from the new address.
    net.move_host(a, [198, 51, 100, 10]);
    assert!(paired(&net, a, b), "B re-pointed at A's new address");
    assert!(
        net.hosts[b].kicks.contains(&Ipv4Addr::from([240, 0, 0, 1])),
        "and kicked TCP"
    );
    assert!(net.hosts[a].kicks.len() >= 2, "A kicked too once acked");
    // The DNS record followed.
    assert_eq!(
        net.a.get(&fqdn("a.vip.test")),
        Some(&Ipv4Addr::from([198, 51, 100, 10]))
    );
    // A hint sealed by A but claiming a third address, sent from A's address: B follows
    // the source, never the claim.
    let seq = 77;
    let third = Ipv4Addr::from([203, 0, 113, 99]);
    let index = net.hosts[a]
        .engine
        .links
        .get(&fqdn("b.vip.test"))
        .unwrap()
        .current
        .unwrap();
    let vip = net.hosts[a]
        .engine
        .partners()
        .get(&fqdn("b.vip.test"))
        .unwrap()
        .local_vip;
    let bytes = net.hosts[a]
        .engine
        .sessions
        .get_mut(&index)
        .unwrap()
        .session
        .seal(&Control::Hint {
            seq,
            vip,
            claimed: third,
        })
        .unwrap();
    let (from, to) = (
        SocketAddrV4::new(net.hosts[a].addr, PORT),
        SocketAddrV4::new(net.hosts[b].addr, PORT),
    );
    net.inject(from, to, bytes);
    let pb = net.hosts[b]
        .engine
        .partners()
        .get(&fqdn("a.vip.test"))
        .unwrap();
    assert_eq!(pb.addr, net.hosts[a].addr);
    assert_ne!(pb.addr, third);
}

/// A (on 192.0.2.0/24) and B (on 198.51.100.0/24) swap networks at the same moment.
fn move_both(net: &mut Net, a: usize, b: usize) {
    let (new_a, new_b) = ([198, 51, 100, 10].into(), [192, 0, 2, 20].into());
    net.hosts[a].addr = new_a;
    net.hosts[b].addr = new_b;
    let now = net.now;
    net.hosts[a].engine.address_changed(now, new_a);
    net.hosts[b].engine.address_changed(now, new_b);
}

#[test]
fn peers_are_listed_and_a_pin_can_be_dropped() {
    use crate::control::Trust;
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    let Some(LookupAnswer::Vip(vip_b)) = net.answer(a, id) else {
        panic!()
    };
    net.run_for(Duration::from_secs(2));
    let peers = net.hosts[a].engine.peers(net.now);
    let [peer] = peers.as_slice() else {
        panic!("{peers:?}")
    };
    assert_eq!(
        (peer.name.as_str(), peer.peer_vip, peer.address, peer.trust),
        ("b.vip.test", vip_b, net.hosts[b].addr, Trust::Pinned)
    );
    assert_eq!(peer.session_age_secs, Some(2));
    assert!(
        peer.key
            .contains(&crate::fqdn::key_record_text(&net.hosts[b].key))
    );
    assert!(net.hosts[a].pins.contains_key(&fqdn("b.vip.test")));
    let name = fqdn("b.vip.test");
    assert!(net.hosts[a].engine.unpin(&name));
    net.settle();
    assert!(
        !net.hosts[a].pins.contains_key(&name),
        "the known-peers file is told"
    );
    assert_eq!(net.hosts[a].engine.peers(net.now)[0].trust, Trust::New);
    assert!(!net.hosts[a].engine.unpin(&name), "nothing left to unpin");
}

/// B pairs with A, then is reinstalled (a new identity, published in DNS; its state
/// gone) and asks A again: A refuses the changed key. B's new identity.
fn reinstalled_and_refused(net: &mut Net, a: usize, b: usize) -> Identity {
    let id = net.lookup(b, "a.vip.test");
    assert!(matches!(net.answer(b, id), Some(LookupAnswer::Vip(_))));
    net.run_for(Duration::from_secs(2));
    let identity = Identity::from_secret_bytes([9; 32]);
    net.reinstall(b, 9);
    let id = net.lookup(b, "a.vip.test");
    net.run_for(Duration::from_secs(10));
    assert!(
        !matches!(net.answer(b, id), Some(LookupAnswer::Vip(_))),
        "A refuses the changed key"
    );
    assert!(net.hosts[a].pins.contains_key(&fqdn("b.vip.test")));
    identity
}

#[test]
fn a_reinstalled_host_is_taken_once_its_pin_is_edited_out_and_reloaded() {
    let (mut net, a, b) = two();
    let identity = reinstalled_and_refused(&mut net, a, b);
    // The administrator deletes B's line from A's known-peers file, adds another host's,
    // and reloads.
    let mut pins = net.hosts[a].pins.clone();
    pins.remove(&fqdn("b.vip.test"));
    pins.insert(fqdn("c.vip.test"), [7; 32]);
    net.hosts[a].pins = pins.clone();
    let counts = net.hosts[a].engine.set_pins(pins.clone());
    assert_eq!(
        counts,
        PinsReloaded {
            added: 1,
            removed: 1,
            changed: 0
        }
    );
    net.settle();
    assert_eq!(net.hosts[a].pins, pins, "nothing written back to the file");
    let id = net.lookup(b, "a.vip.test");
    net.run_for(Duration::from_secs(10));
    assert!(
        matches!(net.answer(b, id), Some(LookupAnswer::Vip(_))),
        "A takes the key DNS publishes"
    );
    assert_eq!(
        net.hosts[a].pins.get(&fqdn("b.vip.test")),
        Some(&identity.public_key())
    );
    // A changed key in the file is trusted as it is.
    pins = net.hosts[a].pins.clone();
    pins.insert(fqdn("b.vip.test"), [8; 32]);
    assert_eq!(net.hosts[a].engine.set_pins(pins).changed, 1);
}

/// `two()` with DNSSEC on both engines and every key record answered as `proof`.
fn two_signed(proof: KeyProof) -> (Net, usize, usize) {
    let mut net = Net::new();
    net.dnssec = true;
    let a = net.host("a.vip.test", [192, 0, 2, 10], 1, [240, 0, 0, 1]);
    let b = net.host("b.vip.test", [198, 51, 100, 20], 2, [240, 0, 0, 2]);
    for name in ["a.vip.test", "b.vip.test"] {
        net.key_proofs.insert(fqdn(name), proof);
    }
    (net, a, b)
}

/// `two_signed(Secure)`, paired by A's lookup of B.
fn signed_pair() -> (Net, usize, usize) {
    let (mut net, a, b) = two_signed(KeyProof::Secure);
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    (net, a, b)
}

#[test]
fn a_vouched_key_is_taken_on_first_contact_without_tofu() {
    use crate::control::Trust;
    let (mut net, a, b) = signed_pair();
    assert!(paired(&net, a, b));
    // Both sides validated: the initiator its lookup, the responder the initiator's key.
    assert_eq!(net.hosts[a].engine.peers(net.now)[0].trust, Trust::Dnssec);
    assert_eq!(net.hosts[b].engine.peers(net.now)[0].trust, Trust::Dnssec);
    for (i, j) in [(a, b), (b, a)] {
        assert_eq!(net.hosts[i].engine.stats().keys_vouched, 1);
        assert_eq!(
            net.hosts[i].pins.get(&net.hosts[j].name),
            Some(&net.hosts[j].key)
        );
    }
    // The verdict is kept across a restart (peers.json).
    net.run_for(Duration::from_secs(2));
    net.restart(b, false);
    assert!(
        net.hosts[b]
            .engine
            .partners()
            .get(&fqdn("a.vip.test"))
            .unwrap()
            .vouched
    );
    assert_eq!(net.hosts[b].engine.peers(net.now)[0].trust, Trust::Dnssec);
}

#[test]
fn a_bogus_key_record_is_refused_without_a_pin() {
    let (mut net, a, b) = two_signed(KeyProof::Bogus);
    // The initiator: SERVFAIL, and not a single packet toward the published address.
    let id = net.lookup(a, "b.vip.test");
    assert_eq!(net.answer(a, id), Some(LookupAnswer::Failed));
    assert!(net.wire.is_empty(), "{:?}", net.wire);
    assert_eq!(net.hosts[a].engine.stats().keys_bogus, 1);
    assert!(net.hosts[a].pins.is_empty());
    // The responder: an authentic initiation whose name's key record is bogus gets
    // nothing, no state and no pin.
    let init = b_initiation(&[1; 32], &net.hosts[b].key, "a.vip.test", 7, 3);
    let (from, to) = (
        SocketAddrV4::new(net.hosts[a].addr, PORT),
        SocketAddrV4::new(net.hosts[b].addr, PORT),
    );
    net.inject(from, to, init);
    assert!(!kinds(&net, net.hosts[b].addr).contains(&(MessageType::Response as u8)));
    assert_eq!(net.hosts[b].engine.stats().keys_bogus, 1);
    assert!(net.hosts[b].pins.is_empty());
    assert!(net.hosts[b].engine.partners().is_empty());
    assert!(net.hosts[b].engine.pends.is_empty());
}

#[test]
fn an_unvalidated_mismatch_is_still_refused() {
    for proof in [KeyProof::Unvalidated, KeyProof::Bogus] {
        let (mut net, a, b) = two_signed(proof);
        net.key_proofs.clear();
        reinstalled_and_refused(&mut net, a, b);
        // The new key, however DNS answers it short of validating, is refused.
        net.key_proofs.insert(fqdn("b.vip.test"), proof);
        let id = net.lookup(b, "a.vip.test");
        net.run_for(Duration::from_secs(10));
        assert!(
            !matches!(net.answer(b, id), Some(LookupAnswer::Vip(_))),
            "{proof:?}"
        );
        assert_ne!(
            net.hosts[a].pins.get(&fqdn("b.vip.test")),
            Some(&net.hosts[b].key)
        );
        assert_eq!(net.hosts[a].engine.stats().key_rotations, 0);
    }
}

#[test]
fn a_vouched_rotation_replaces_the_pin_at_the_responder() {
    use crate::control::Trust;
    let (mut net, a, b) = two_signed(KeyProof::Unvalidated);
    // B pairs as a TOFU peer, is reinstalled and refused while its zone is unsigned...
    let identity = reinstalled_and_refused(&mut net, a, b);
    // ...and once DNSSEC vouches for its new key, A takes it as a rotation.
    net.key_proofs.insert(fqdn("b.vip.test"), KeyProof::Secure);
    // Past the minute a refused (name, key) is remembered without asking DNS again.
    net.run_for(Duration::from_secs(61));
    let id = net.lookup(b, "a.vip.test");
    net.run_for(Duration::from_secs(10));
    assert!(matches!(net.answer(b, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
    assert_eq!(
        net.hosts[a].pins.get(&fqdn("b.vip.test")),
        Some(&identity.public_key())
    );
    assert_eq!(net.hosts[a].engine.stats().key_rotations, 1);
    let trust = |net: &Net| {
        net.hosts[a]
            .engine
            .peers(net.now)
            .into_iter()
            .find(|p| p.name.as_str() == "b.vip.test")
            .map(|p| p.trust)
    };
    assert_eq!(trust(&net), Some(Trust::Dnssec));
}

#[test]
fn a_vouched_rotation_replaces_the_pin_at_the_initiator() {
    let (mut net, a, b) = signed_pair();
    // B is reinstalled with a new key, which its signed zone publishes; A learns of it
    // when it looks B up again (here: A lost its pair, B's name asked anew).
    let identity = Identity::from_secret_bytes([9; 32]);
    net.reinstall(b, 9);
    let old = net.hosts[a].pins[&fqdn("b.vip.test")];
    net.reboot_keeping_pins(a);
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(5));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
    assert_ne!(old, identity.public_key());
    assert_eq!(
        net.hosts[a].pins.get(&fqdn("b.vip.test")),
        Some(&identity.public_key())
    );
    assert_eq!(net.hosts[a].engine.stats().key_rotations, 1);
}

#[test]
fn a_pin_still_pairs_when_the_key_record_does_not_validate() {
    let (mut net, a, b) = signed_pair();
    // Both lose the pair, then the resolver starts dropping signatures (or DNS is down
    // for keys): the pins carry the next first contact, and nothing is replaced.
    let key_b = net.hosts[b].key;
    net.reboot_keeping_pins(a);
    net.key_proofs.insert(fqdn("b.vip.test"), KeyProof::Bogus);
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(5));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert_eq!(net.hosts[a].pins[&fqdn("b.vip.test")], key_b);
    // Counted all the same: a resolver that drops signatures shows.
    assert_eq!(net.hosts[a].engine.stats().keys_bogus, 1);
    assert_eq!(net.hosts[a].engine.stats().key_rotations, 0);
}

#[test]
fn a_replayed_old_key_record_cannot_roll_a_rotation_back() {
    // A rotation at A as initiator (B reinstalled, its new key vouched for)...
    let (mut net, a, b) = signed_pair();
    let old = net.hosts[b].key;
    let new = net.reinstall(b, 9);
    net.reboot_keeping_pins(a);
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(5));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert_eq!(net.hosts[a].engine.stats().key_rotations, 1);
    net.run_for(Duration::from_secs(2));
    // ...then whoever holds B's old (perhaps stolen) key replays B's old signed record, and
    // comes back as B: A's state was lost, not its memory of the replaced key (peers.json).
    assert_eq!(net.reinstall(b, 2), old, "B's first key again");
    net.restart(a, false);
    net.hosts[a].engine.partners.remove(&fqdn("b.vip.test"));
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        net.answer(a, id),
        Some(LookupAnswer::Failed),
        "refused as initiator"
    );
    assert_eq!(net.hosts[a].pins[&fqdn("b.vip.test")], new);
    // As responder: B's old key initiating to A is refused too.
    let id = net.lookup(b, "a.vip.test");
    net.run_for(Duration::from_secs(5));
    assert!(
        !matches!(net.answer(b, id), Some(LookupAnswer::Vip(_))),
        "refused as responder"
    );
    assert_eq!(net.hosts[a].pins[&fqdn("b.vip.test")], new);
    assert_eq!(net.hosts[a].engine.stats().key_rotations, 0);
}

#[test]
fn a_rekey_after_an_unpin_asks_dns_for_the_key_instead_of_repinning_the_old_one() {
    let (mut net, a, b) = signed_pair();
    let old = net.hosts[b].key;
    // The administrator unpins B, whose key was stolen; B's zone now publishes a new key,
    // but the thief still answers with the old one at B's address.
    assert!(net.hosts[a].engine.unpin(&fqdn("b.vip.test")));
    let new = Identity::from_secret_bytes([9; 32]);
    net.keys.insert(fqdn("b.vip.test"), new.public_key());
    let queries = net.queries;
    // A's session ages out while in use: its rekey asks DNS for the key, and the old key,
    // which would still complete a handshake, is neither used nor pinned again.
    for _ in 0..15 {
        net.traffic(a, b);
        net.run_for(Duration::from_secs(10));
    }
    assert!(net.queries > queries, "the rekey asked DNS");
    assert_ne!(net.hosts[a].pins.get(&fqdn("b.vip.test")), Some(&old));
}

#[test]
fn forged_keys_for_a_pinned_name_neither_block_nor_evict_its_handshakes() {
    let (mut net, a, b) = signed_pair();
    net.run_for(Duration::from_secs(2));
    // An attacker claims A with keys of its own and the highest counter, ten times.
    let queries = net.queries;
    let (e_addr, b_addr) = (
        SocketAddrV4::new([203, 0, 113, 66].into(), PORT),
        SocketAddrV4::new(net.hosts[b].addr, PORT),
    );
    for i in 0..10u8 {
        let forged = b_initiation(
            &[100 + i; 32],
            &net.hosts[b].key,
            "a.vip.test",
            u64::MAX,
            40 + u32::from(i),
        );
        net.inject(e_addr, b_addr, forged);
    }
    assert_eq!(
        net.queries,
        queries + 1,
        "one rotation check for the name, not one per key"
    );
    // A, restarted without its partners, contacts B again: B answers it at once.
    net.reboot_keeping_pins(a);
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(2));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
    assert_eq!(net.hosts[b].pins[&fqdn("a.vip.test")], net.hosts[a].key);
    assert_eq!(net.hosts[b].engine.stats().key_rotations, 0);
}

#[test]
fn a_reload_changes_timers_and_limits_but_not_what_needs_a_restart() {
    let (mut net, a, _b) = two();
    let home_vip = net.hosts[a].home_vip;
    let mut new = config("z.vip.test", home_vip);
    new.lease = Duration::from_secs(99);
    new.gc = Gc::Lease(Duration::from_secs(77));
    new.max_partners = 5;
    new.port = PORT + 1;
    new.esp = EspMode::Off;
    let need_restart = net.hosts[a].engine.reconfigure(new);
    assert_eq!(need_restart, ["fqdn", "negotiation.port", "ipsec.mode"]);
    let cfg = &net.hosts[a].engine.cfg;
    assert_eq!(
        (cfg.lease, cfg.gc, cfg.max_partners),
        (
            Duration::from_secs(99),
            Gc::Lease(Duration::from_secs(77)),
            5
        )
    );
    assert_eq!(
        (cfg.me.as_str(), cfg.port, cfg.esp),
        ("a.vip.test", PORT, EspMode::Required)
    );
}

#[test]
fn a_reinstalled_host_is_refused_until_its_pin_is_dropped() {
    let (mut net, a, b) = two();
    let identity = reinstalled_and_refused(&mut net, a, b);
    assert!(net.hosts[a].engine.unpin(&fqdn("b.vip.test")));
    let id = net.lookup(b, "a.vip.test");
    net.run_for(Duration::from_secs(10));
    assert!(
        matches!(net.answer(b, id), Some(LookupAnswer::Vip(_))),
        "after the unpin A takes the key DNS publishes"
    );
    assert!(paired(&net, a, b));
    assert_eq!(
        net.hosts[a].pins.get(&fqdn("b.vip.test")),
        Some(&identity.public_key()),
        "and pins the new one"
    );
}

#[test]
fn two_sided_moves_meet_through_dns() {
    let (mut net, a, b) = two_in_use();
    // Both move at once: each one's hint goes to the other's old address.
    move_both(&mut net, a, b);
    net.run_for(Duration::from_secs(5));
    assert!(paired(&net, a, b));
    for h in [a, b] {
        assert!(
            net.hosts[h].engine.mobility.hints_unacked() == 0,
            "each side's hint was acked in the end"
        );
        assert!(net.hosts[h].engine.stats().acks_received >= 1);
    }
}

#[test]
fn two_sided_moves_meet_through_dns_that_learns_late() {
    let (mut net, a, b) = two_in_use();
    // Both move while DNS is unreachable: each one's hints go to the other's old address
    // and its first questions to DNS fail; DNS comes back 3 s later.
    net.dns_down = true;
    move_both(&mut net, a, b);
    net.run_for(Duration::from_secs(3));
    net.dns_down = false;
    net.run_for(Duration::from_secs(8));
    assert!(
        paired(&net, a, b),
        "the hints asked DNS again and found the partners' new addresses"
    );
}

#[test]
fn a_restarted_host_and_its_partner_both_move_and_meet_through_dns() {
    let (mut net, a, b) = two_in_use();
    net.run_for(Duration::from_secs(2));
    assert!(net.hosts[b].saved.is_some(), "B saved its partners");
    // B's daemon restarts (the pair survives, its sessions do not); then both move. A's
    // hint is in a session B no longer has; B's rekey goes to A's old address.
    net.restart(b, false);
    move_both(&mut net, a, b);
    net.run_for(Duration::from_secs(5));
    assert!(
        paired(&net, a, b),
        "B's rekey asked DNS where A went after its first tries went unanswered"
    );
}

#[test]
fn a_hint_follows_the_partner_to_the_address_its_authenticated_packets_come_from() {
    let (mut net, a, b) = two_in_use();
    // Both move, and A's daemon notices 700 ms late: meanwhile B's hints go to A's old
    // address and DNS still names it. Then A's hint, sent where DNS says B is now, is
    // the first sign of where A went.
    net.hosts[a].addr = [198, 51, 100, 10].into();
    net.hosts[b].addr = [192, 0, 2, 20].into();
    let now = net.now;
    net.hosts[b]
        .engine
        .address_changed(now, [192, 0, 2, 20].into());
    net.run_for(Duration::from_millis(700));
    net.hosts[a]
        .engine
        .address_changed(net.now, [198, 51, 100, 10].into());
    net.run_for(Duration::from_secs(3));
    assert!(paired(&net, a, b));
    assert_eq!(
        net.hosts[b].engine.stats().acks_received,
        1,
        "B's hint went to where A's hint came from, and was acked"
    );
    assert_eq!(net.hosts[b].engine.mobility.hints_unacked(), 0);
}

/// Both move make-before-break: A's new address is published, but its old one lingers on
/// the old link, where B's new address is, so A's ack to B's hint leaves from the old
/// address and B follows it there (the source of an authenticated packet). When the old
/// address goes, A hints its partners again from the address it has left, and B follows.
/// Without that, B kept sending to the vanished address for as long as only B sent (the
/// soak's 5-38 s stalls).
#[test]
fn a_move_hints_the_partners_active_at_the_last_table_read_without_waiting_for_a_new_one() {
    let (mut net, a, b) = two_in_use();
    // Housekeeping reads A's table, in which B is active.
    net.run_for(Duration::from_secs(11));
    net.traffic(a, b);
    // A's kernel is slow now: the move's read of its table does not come back.
    net.hosts[a].held_kernel = Some(Vec::new());
    let sent = net.hosts[a].engine.stats().hints_sent;
    net.move_host(a, [198, 51, 100, 10]);
    assert_eq!(net.hosts[a].engine.stats().hints_sent, sent + 1);
    assert_eq!(
        partner_of(&net, b, "a.vip.test").map(|p| p.addr),
        Some(Ipv4Addr::from([198, 51, 100, 10])),
        "B follows A's hint, sent before the read came back"
    );
    // The read comes back: it finds no partner that was not hinted already.
    for output in net.hosts[a].held_kernel.take().unwrap_or_default() {
        net.output(a, output);
    }
    net.settle();
    assert!(paired(&net, a, b));
    assert_eq!(net.hosts[a].engine.stats().hints_sent, sent + 1);
}

#[test]
fn partners_are_hinted_again_when_a_local_address_goes() {
    let (mut net, a, b) = two_in_use();
    let old_a = net.hosts[a].addr;
    let new_a = Ipv4Addr::from([203, 0, 113, 10]);
    net.move_host(a, new_a.octets());
    net.run_for(Duration::from_secs(3));
    assert!(paired(&net, a, b));
    net.hosts[a].lingering = Some(old_a);
    net.move_host(b, [192, 0, 2, 20]);
    net.run_for(Duration::from_secs(3));
    net.traffic(b, a);
    let b_maps_a = |net: &Net| {
        net.hosts[b]
            .engine
            .partners()
            .get(&net.hosts[a].name)
            .map(|p| p.addr)
    };
    assert_eq!(
        b_maps_a(&net),
        Some(old_a),
        "B followed A's ack to the lingering address"
    );
    // The old address goes; the address A is reached at stays the one it published.
    net.hosts[a].lingering = None;
    let now = net.now;
    net.hosts[a].engine.address_changed(now, new_a);
    net.hosts[a].engine.local_address_removed(now);
    net.run_for(Duration::from_secs(3));
    assert_eq!(b_maps_a(&net), Some(new_a), "B follows A's new hint");
    assert!(paired(&net, a, b));
    assert_eq!(net.hosts[a].engine.mobility.hints_unacked(), 0);
}

#[test]
fn dns_updates_are_retried_until_they_land() {
    let (mut net, a, _b) = two();
    net.dns_down = true;
    net.move_host(a, [198, 51, 100, 10]);
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        net.a.get(&fqdn("a.vip.test")),
        Some(&Ipv4Addr::from([192, 0, 2, 10]))
    );
    net.dns_down = false;
    net.run_for(Duration::from_secs(20));
    assert_eq!(
        net.a.get(&fqdn("a.vip.test")),
        Some(&Ipv4Addr::from([198, 51, 100, 10]))
    );
}

#[test]
fn a_host_that_lost_its_state_gets_the_pair_back() {
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    let Some(LookupAnswer::Vip(vip_b)) = net.answer(a, id) else {
        panic!()
    };
    let vip_a = net.hosts[a]
        .engine
        .partners()
        .get(&fqdn("b.vip.test"))
        .unwrap()
        .local_vip;
    // B reboots: daemon state and kernel table gone.
    net.restart(b, true);
    // A's next packet reaches B's kernel, which knows nothing of it.
    let now = net.now;
    let seen = net.hosts[a].addr;
    net.hosts[b].engine.kernel_event(
        now,
        KernelEvent::Unknown {
            peer_vip: vip_a,
            local_vip: vip_b,
            seen,
        },
    );
    net.run_for(Duration::from_secs(3));
    assert!(paired(&net, a, b), "the NAK cue made A negotiate again");
    let pa = net.hosts[a]
        .engine
        .partners()
        .get(&fqdn("b.vip.test"))
        .unwrap();
    assert_eq!(
        (pa.peer_vip, pa.local_vip),
        (vip_b, vip_a),
        "with the same VIPs"
    );
    // A forged cue for a pair A does not have changes nothing.
    let before = partner_of(&net, a, "b.vip.test");
    let cue = crate::wire::nak_cue([240, 7, 7, 7].into(), [240, 8, 8, 8].into());
    let (from, to) = (
        SocketAddrV4::new([203, 0, 113, 66].into(), PORT),
        SocketAddrV4::new(net.hosts[a].addr, PORT),
    );
    net.inject(from, to, cue);
    assert_eq!(partner_of(&net, a, "b.vip.test"), before);
}

#[test]
fn a_late_response_to_an_earlier_initiation_still_counts() {
    // B's responses are late (a queue at a busy responder): A has retransmitted by the
    // time the first arrives, and takes it all the same; B installs on its confirmation.
    let (mut net, a, b) = two();
    let b_addr = net.hosts[b].addr;
    net.filter = Box::new(move |d| *d.from.ip() != b_addr);
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_millis(500));
    let responses: Vec<Datagram> = net
        .wire
        .iter()
        .filter(|d| *d.from.ip() == b_addr && d.bytes[3] == MessageType::Response as u8)
        .cloned()
        .collect();
    assert!(
        responses.len() >= 2,
        "A retransmitted and B answered each ({})",
        responses.len()
    );
    assert_eq!(net.answer(a, id), None);
    net.filter = Box::new(|_| true);
    let first = responses[0].clone();
    net.inject(first.from, first.to, first.bytes);
    net.run_for(Duration::from_secs(2));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
    assert!(
        net.hosts[b].engine.pends.is_empty(),
        "B dropped the other pending handshakes"
    );
}

#[test]
fn a_flood_of_initiations_stays_bounded_and_a_real_one_gets_through() {
    let (mut net, a, b) = two();
    // E floods B with initiations (valid mac1: E knows B's key) for names whose keys DNS
    // does not publish, from many forged addresses.
    let e = Identity::from_secret_bytes([66; 32]);
    for i in 0..2000u32 {
        let bytes = b_initiation(
            &e.secret_bytes(),
            &net.hosts[b].key,
            &format!("e{}.vip.test", i % 500),
            u64::from(i),
            i,
        );
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), PORT);
        net.hosts[b].engine.handle_datagram(net.now, from, &bytes);
        assert!(net.hosts[b].engine.pends.len() <= 64);
        net.settle();
        if i % 100 == 0 {
            net.now += Duration::from_millis(10);
        }
    }
    let cookie_replies = net
        .wire
        .iter()
        .filter(|d| d.bytes[3] == MessageType::CookieReply as u8)
        .count();
    assert!(cookie_replies > 0, "under load, B asked for cookies");
    assert!(
        net.queries < 2000,
        "B did not ask DNS once per forged initiation ({})",
        net.queries
    );
    assert!(net.hosts[b].engine.partners().is_empty());
    // A real initiation, during the flood's aftermath, completes (through the cookie).
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(3));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
    assert!(net.hosts[a].engine.stats().cookies_received > 0);
    // The receive task's admission shares B's cookie secret: A's first initiation (no
    // cookie) goes to the unproven lane, its retry with the cookie to the proven one.
    let a_at = SocketAddrV4::new(net.hosts[a].addr, PORT);
    let mut admission = net.hosts[b].engine.admission();
    let lanes: Vec<Lane> = net
        .wire
        .iter()
        .filter(|d| d.from == a_at && d.bytes[3] == MessageType::Initiation as u8)
        .map(|d| admission.sort(&d.bytes, d.from, net.now))
        .collect();
    assert_eq!(lanes, [Lane::Unproven, Lane::Proven]);
}

/// Under a flood above the load rate, every uncookied initiation gets a cookie, even one
/// that arrives just after a pause long enough for the rate to let one through; a second
/// after the flood ends, initiations get the handshake again (WireGuard's
/// `last_under_load`). Without the linger, a real first contact during a flood reached the
/// Diffie-Hellman now and then, and an attacker's did too.
#[test]
fn load_lingers_a_second_after_the_rate_was_last_exceeded() {
    let (mut net, _a, b) = two();
    let e = Identity::from_secret_bytes([66; 32]);
    let mut index = 0u32;
    let mut initiate = |net: &mut Net, b: usize| {
        index += 1;
        let bytes = b_initiation(
            &e.secret_bytes(),
            &net.hosts[b].key,
            &format!("e{}.vip.test", index % 500),
            u64::from(index),
            index,
        );
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + index), PORT);
        let before = net.hosts[b].engine.stats().cookies_sent;
        net.hosts[b].engine.handle_datagram(net.now, from, &bytes);
        // DNS answers at once that no such name has a key: no handshake stays pending.
        net.settle();
        net.hosts[b].engine.stats().cookies_sent > before
    };
    // 300 a second for 2 s: three times the load rate.
    let mut cookied = 0;
    for _ in 0..600 {
        cookied += usize::from(initiate(&mut net, b));
        net.now += Duration::from_micros(3_333);
    }
    // The bucket (a second's worth) lasts half a second at that rate; then every one.
    assert!(
        cookied > 400,
        "the flood was asked for cookies ({cookied} of 600)"
    );
    // A gap that refills the rate's bucket by a few tokens: still under load.
    net.now += Duration::from_millis(50);
    assert!(
        initiate(&mut net, b),
        "an initiation 50 ms into a pause got a cookie"
    );
    net.now += Duration::from_millis(500);
    assert!(initiate(&mut net, b), "... and one 550 ms into it");
    // A second and more after the rate was last exceeded: no longer under load.
    net.now += Duration::from_millis(1_100);
    assert!(
        !initiate(&mut net, b),
        "an initiation after the load went got the handshake"
    );
}

/// A flood keeps B loaded (it asks every sender for a cookie) and holds every datagram to
/// B in a queue for 2.5 s, longer than A's retransmission timeout: the cookie reply to one
/// initiation and the retry it allows each wait their turn, and the first contact still
/// completes before A would give up.
#[test]
fn a_first_contact_outlasts_seconds_of_queueing_at_a_loaded_responder() {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    let (mut net, a, b) = two();
    let b_addr = net.hosts[b].addr;
    let held: Rc<RefCell<Vec<Datagram>>> = Rc::default();
    let to_queue = held.clone();
    net.filter = Box::new(move |d| {
        let for_b = *d.to.ip() == b_addr;
        if for_b {
            to_queue.borrow_mut().push(d.clone());
        }
        !for_b
    });
    let e = Identity::from_secret_bytes([66; 32]);
    let mut forged = 0u32;
    let mut queue: VecDeque<(Instant, Datagram)> = VecDeque::new();
    let id = net.lookup(a, "b.vip.test");
    for _ in 0..150 {
        net.run_for(Duration::from_millis(100));
        // 300 forged initiations a second reach B, just before A's (the head of its queue).
        for _ in 0..30 {
            forged += 1;
            let bytes = b_initiation(
                &e.secret_bytes(),
                &net.hosts[b].key,
                "e.vip.test",
                u64::from(forged),
                forged,
            );
            let from = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + forged), PORT);
            net.hosts[b].engine.handle_datagram(net.now, from, &bytes);
        }
        let now = net.now;
        queue.extend(held.borrow_mut().drain(..).map(|d| (now, d)));
        while let Some((_, d)) = queue
            .front()
            .filter(|(queued, _)| now.duration_since(*queued) >= Duration::from_millis(2500))
            .cloned()
        {
            queue.pop_front();
            net.inject(d.from, d.to, d.bytes);
        }
    }
    assert!(
        net.hosts[a].engine.stats().cookies_received > 0,
        "B was loaded"
    );
    assert!(
        matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))),
        "{:?}",
        net.answer(a, id)
    );
    assert!(paired(&net, a, b));
}

#[test]
fn active_sessions_are_renewed_and_counters_start_at_zero() {
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    let first = net.hosts[a]
        .engine
        .links
        .get(&fqdn("b.vip.test"))
        .unwrap()
        .current
        .unwrap();
    for _ in 0..15 {
        net.traffic(a, b);
        net.run_for(Duration::from_secs(10));
    }
    let now_index = net.hosts[a]
        .engine
        .links
        .get(&fqdn("b.vip.test"))
        .unwrap()
        .current
        .unwrap();
    assert_ne!(first, now_index, "a new session after REKEY_AFTER_TIME");
    assert!(paired(&net, a, b));
    // Every transport message A sent: (receiver index, counter) pairs never repeat, and
    // each session's counters start at zero.
    let mut seen = std::collections::HashSet::new();
    let mut starts = HashMap::new();
    for d in net
        .wire
        .iter()
        .filter(|d| *d.from.ip() == net.hosts[a].addr && d.bytes[3] == MessageType::Transport as u8)
    {
        let index = u32::from_be_bytes(d.bytes[4..8].try_into().unwrap());
        let counter = u64::from_be_bytes(d.bytes[8..16].try_into().unwrap());
        assert!(seen.insert((index, counter)), "nonce reused");
        starts.entry(index).or_insert(counter);
    }
    assert!(starts.values().all(|c| *c == 0));
}

/// Host `i` sends to `peer` through its kernel (the activity counters say so) and hears
/// nothing back, for `secs` seconds.
fn send_unanswered(net: &mut Net, i: usize, peer: &str, secs: u64) {
    let vip = partner_of(net, i, peer).unwrap().peer_vip;
    for _ in 0..secs {
        let now = net.now;
        net.hosts[i].kernel.get_mut(&vip).unwrap().last_tx = Some(now);
        net.run_for(Duration::from_secs(1));
    }
}

#[test]
fn a_partner_silent_for_a_lease_is_looked_up_again_and_followed() {
    let (mut net, a, b) = two();
    net.hosts[a].engine.cfg.lease = Duration::from_secs(6);
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    net.traffic(a, b);
    // B moves and its daemon tells nobody (as if its hints were lost): only DNS knows.
    let moved: Ipv4Addr = [192, 0, 2, 20].into();
    net.hosts[b].addr = moved;
    net.a.insert(fqdn("b.vip.test"), moved);
    // A keeps sending into the void: before a lease of silence, it still points at the
    // old address and has not asked DNS.
    let queries = net.queries;
    send_unanswered(&mut net, a, "b.vip.test", 4);
    assert_ne!(partner_of(&net, a, "b.vip.test").unwrap().addr, moved);
    assert_eq!(net.queries, queries, "no lookup before the lease ran out");
    // Past the lease: A looks B up, probes it there, and B's authenticated answer from
    // its new address re-points A.
    send_unanswered(&mut net, a, "b.vip.test", 6);
    assert!(net.queries > queries, "A asked DNS where B is");
    assert_eq!(partner_of(&net, a, "b.vip.test").unwrap().addr, moved);
    assert!(paired(&net, a, b));
    assert_eq!(net.hosts[a].engine.stats().roams, 1);
    assert_eq!(
        net.hosts[b].engine.stats().hints_sent,
        0,
        "the lease did it, not a hint"
    );
}

#[test]
fn a_partner_we_hear_from_is_not_looked_up_again() {
    let (mut net, a, b) = two();
    net.hosts[a].engine.cfg.lease = Duration::from_secs(4);
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    let queries = net.queries;
    for _ in 0..20 {
        net.traffic(a, b);
        net.run_for(Duration::from_secs(1));
    }
    assert_eq!(net.queries, queries);
    assert!(paired(&net, a, b));
}

#[test]
fn lease_gc_collects_idle_pairs_only_and_a_new_lookup_works_after() {
    let mut net = Net::new();
    let a = net.host("a.vip.test", [192, 0, 2, 10], 1, [240, 0, 0, 1]);
    let b = net.host("b.vip.test", [198, 51, 100, 20], 2, [240, 0, 0, 2]);
    let c = net.host("c.vip.test", [198, 51, 100, 30], 3, [240, 0, 0, 3]);
    let idle = Duration::from_secs(10);
    net.hosts[a].engine.cfg.gc = Gc::Lease(idle);
    for name in ["b.vip.test", "c.vip.test"] {
        let id = net.lookup(a, name);
        assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    }
    // As the real kernel does, a new mapping has no packet times yet.
    for m in net.hosts[a].kernel.values_mut() {
        m.last_tx = None;
    }
    let vip_b = partner_of(&net, a, "b.vip.test").unwrap().peer_vip;
    let vip_c = partner_of(&net, a, "c.vip.test").unwrap().peer_vip;
    // A talks to C all along; B stays idle. A fresh pair has not been idle for the GC's
    // time yet, even though it never carried a packet.
    for _ in 0..6 {
        net.traffic(a, c);
        net.run_for(Duration::from_secs(1));
    }
    assert!(partner_of(&net, a, "b.vip.test").is_some());
    assert!(net.hosts[a].kernel.contains_key(&vip_b));
    for _ in 0..20 {
        net.traffic(a, c);
        net.run_for(Duration::from_secs(1));
    }
    assert!(
        partner_of(&net, a, "b.vip.test").is_none(),
        "idle pair dropped"
    );
    assert!(!net.hosts[a].kernel.contains_key(&vip_b), "and its mapping");
    assert!(
        !net.hosts[a].engine.links.contains_key(&fqdn("b.vip.test")),
        "and its sessions"
    );
    assert!(
        partner_of(&net, a, "c.vip.test").is_some(),
        "busy pair kept"
    );
    assert!(net.hosts[a].kernel.contains_key(&vip_c));
    assert!(paired(&net, a, c));
    // B still holds the pair (its GC is the default); a new lookup pairs them again.
    let id = net.lookup(a, "b.vip.test");
    net.run_for(Duration::from_secs(2));
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
}

#[test]
fn invalid_vips_are_collected_when_idle_with_their_esp() {
    let (mut net, a, b) = two();
    let idle = Duration::from_secs(10);
    net.hosts[a].engine.cfg.gc = Gc::Lease(idle);
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    // A VIP marked invalid (by an earlier run, or by a renegotiation that could not keep
    // it), whose connections carried a packet a moment ago.
    let now = net.now;
    let stale = net.invalid_mapping(a, Some(now));
    let sa = net.hosts[a].esp_out.values().next().unwrap().clone();
    net.hosts[a].esp_out.insert(stale, sa);
    for _ in 0..5 {
        net.traffic(a, b);
        net.run_for(Duration::from_secs(1));
    }
    assert!(
        net.hosts[a].engine.partners().is_invalid(stale),
        "taken over as invalid: nobody is given it"
    );
    assert!(
        net.hosts[a].kernel.contains_key(&stale),
        "kept while recent"
    );
    for _ in 0..10 {
        net.traffic(a, b);
        net.run_for(Duration::from_secs(1));
    }
    assert!(
        !net.hosts[a].kernel.contains_key(&stale),
        "collected once idle for the lease GC's time"
    );
    assert!(!net.hosts[a].esp_out.contains_key(&stale), "with its ESP");
    let partners = net.hosts[a].engine.partners();
    assert!(!partners.is_invalid(stale), "no longer a partner's entry");
    assert!(
        partners.is_retired(stale),
        "retired: a connection may still use it"
    );
    assert_eq!(
        partners.claim(stale, &fqdn("c.vip.test"), "240.0.0.0/4".parse().unwrap()),
        Claim::Taken,
        "so nobody is given it"
    );
    assert!(paired(&net, a, b), "the busy pair is untouched");
}

#[test]
fn invalid_vips_stay_under_reclaim_on_reboot() {
    let (mut net, a, _b) = two();
    let stale = net.invalid_mapping(a, None);
    net.run_for(Duration::from_secs(60));
    assert!(net.hosts[a].kernel.contains_key(&stale));
    assert!(net.hosts[a].engine.partners().is_invalid(stale));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever arrives from anyone (the protocol's real messages mutated, replayed out of
    /// order, or noise) changes nothing about an established pair and creates nothing.
    #[test]
    fn mutated_and_random_datagrams_change_nothing(
        edits in proptest::collection::vec((0usize..64, 0usize..200, proptest::prelude::any::<u8>(), 0u8..4), 1..40)
    ) {
        let (mut net, a, b) = two();
        let id = net.lookup(a, "b.vip.test");
        proptest::prop_assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
        net.move_host(a, [192, 0, 2, 77]);
        net.run_for(Duration::from_secs(1));
        proptest::prop_assert!(paired(&net, a, b));
        let before_a = partner_of(&net, a, "b.vip.test");
        let before_b = partner_of(&net, b, "a.vip.test");
        let kernel_b = net.hosts[b].kernel.clone();
        let captured = net.wire.clone();
        for (pick, at, value, how) in edits {
            let d = &captured[pick % captured.len()];
            let mut bytes = d.bytes.clone();
            let len = bytes.len();
            match how {
                0 => {} // a verbatim replay
                1 => bytes[at % len] ^= value | 1,
                2 => bytes.truncate(at % len),
                _ => bytes = (0..at).map(|i| value.wrapping_mul(i as u8)).collect(),
            }
            // From an attacker's address, or spoofing the real sender's.
            let from = if value % 2 == 0 { d.from } else { SocketAddrV4::new([203, 0, 113, 66].into(), PORT) };
            net.inject(from, d.to, bytes);
        }
        net.run_for(Duration::from_secs(1));
        proptest::prop_assert_eq!(partner_of(&net, a, "b.vip.test"), before_a);
        proptest::prop_assert_eq!(partner_of(&net, b, "a.vip.test"), before_b);
        proptest::prop_assert_eq!(&net.hosts[b].kernel.iter().map(|(v, m)| (*v, m.addr)).collect::<Vec<_>>(),
            &kernel_b.iter().map(|(v, m)| (*v, m.addr)).collect::<Vec<_>>());
        proptest::prop_assert_eq!(net.hosts[b].engine.partners().len(), 1);
        proptest::prop_assert!(net.hosts[b].engine.pends.is_empty());
    }
}

/// Host `i`'s engine with ESP in `mode` (a restart with that configuration).
fn set_esp(net: &mut Net, i: usize, mode: EspMode) {
    net.hosts[i].engine.cfg.esp = mode;
}

#[test]
fn a_host_that_requires_esp_pairs_only_with_a_host_that_offers_it() {
    // The responder requires ESP, the initiator has it off: the responder ends the
    // negotiation, and the name resolves to its address.
    let (mut net, a, b) = two();
    set_esp(&mut net, a, EspMode::Off);
    let id = net.lookup(a, "b.vip.test");
    assert_eq!(net.answer(a, id), Some(LookupAnswer::Upstream));
    assert!(net.hosts[a].kernel.is_empty() && net.hosts[b].kernel.is_empty());
    assert!(net.hosts[b].engine.partners().is_empty());
    // The initiator requires it, the responder has it off: the initiator gives up.
    let (mut net, a, b) = two();
    set_esp(&mut net, b, EspMode::Off);
    let id = net.lookup(a, "b.vip.test");
    assert_eq!(net.answer(a, id), Some(LookupAnswer::Upstream));
    assert!(net.hosts[a].kernel.is_empty() && net.hosts[b].kernel.is_empty());
    // Both off: a pair in plain IPIP, and no SA anywhere.
    let (mut net, a, b) = two();
    set_esp(&mut net, a, EspMode::Off);
    set_esp(&mut net, b, EspMode::Off);
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
    for h in [a, b] {
        assert!(net.hosts[h].esp_in.is_empty() && net.hosts[h].esp_out.is_empty());
    }
}

#[test]
fn first_contact_keys_both_ways_and_the_algorithm_follows_both_ends_hardware() {
    let (mut net, a, b) = two();
    net.hosts[a].engine.cfg.aes_hardware = true;
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(
        paired(&net, a, b),
        "each end's outbound SA is the other's inbound SA"
    );
    let out_a = net.hosts[a].esp_out.values().next().unwrap().clone();
    let out_b = net.hosts[b].esp_out.values().next().unwrap().clone();
    assert_ne!(out_a.spi, out_b.spi);
    assert_ne!(out_a.key, out_b.key);
    assert_eq!(out_a.aead, Aead::ChaCha20Poly1305, "only one end has AES");
    // Both with AES hardware: AES-GCM.
    let (mut net, a, b) = two();
    net.hosts[a].engine.cfg.aes_hardware = true;
    net.hosts[b].engine.cfg.aes_hardware = true;
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    assert!(paired(&net, a, b));
    assert!(
        net.hosts[b]
            .esp_out
            .values()
            .all(|sa| sa.aead == Aead::AesGcm)
    );
}

#[test]
fn a_rekey_moves_outbound_traffic_only_onto_an_sa_the_peer_already_receives_on() {
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    let first = net.hosts[a].esp_out.values().next().unwrap().clone();
    // B's acknowledgements of A's confirmations are lost: A's rekey gets as far as its
    // confirmation, B installs the new session's SAs, A never hears back.
    let (addr_a, addr_b) = (net.hosts[a].addr, net.hosts[b].addr);
    net.filter = Box::new(move |d| {
        !(*d.from.ip() == addr_b
            && *d.to.ip() == addr_a
            && d.bytes[3] == MessageType::Transport as u8)
    });
    let fqdn_b = fqdn("b.vip.test");
    net.hosts[a].engine.rekey(net.now, &fqdn_b, None, false);
    net.settle();
    assert_eq!(
        net.hosts[a].esp_out.values().next(),
        Some(&first),
        "A still sends with the old SA"
    );
    assert!(esp_carries(&net, a, b), "which B still receives on");
    assert!(
        esp_carries(&net, b, a),
        "B sends with the new one, which A keyed first"
    );
    assert!(net.hosts[b].esp_out.values().all(|sa| sa.spi != first.spi));
    // The acknowledgement gets through on a retry: A moves to the new SA.
    net.filter = Box::new(|_| true);
    net.run_for(Duration::from_secs(3));
    let now_out = net.hosts[a].esp_out.values().next().unwrap().clone();
    assert_ne!(now_out.spi, first.spi);
    assert!(paired(&net, a, b));
}

#[test]
fn a_restarted_daemon_rekeys_its_adopted_pairs_once_they_carry_packets() {
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    let first = net.hosts[a].esp_out.values().next().unwrap().clone();
    net.run_for(Duration::from_secs(2));
    net.restart(a, false);
    // Before any input: the daemon's loop only ticks when the engine names a time.
    assert!(
        net.hosts[a].engine.poll_timeout().is_some(),
        "housekeeping is due at once"
    );
    for _ in 0..3 {
        net.traffic(a, b);
        net.run_for(Duration::from_secs(10));
    }
    let now_out = net.hosts[a].esp_out.values().next().unwrap().clone();
    assert_ne!(
        now_out.spi, first.spi,
        "the adopted pair has a new session's SAs"
    );
    assert!(paired(&net, a, b));
}

#[test]
fn esp_keys_that_age_out_are_renewed_by_a_new_session() {
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    let Some(LookupAnswer::Vip(vip_b)) = net.answer(a, id) else {
        panic!("a pair")
    };
    let first = net.hosts[a].esp_out[&vip_b].clone();
    net.run_for(Duration::from_secs(2));
    // What vipd hands A's engine on the kernel's word, then two seconds.
    let renew = |net: &mut Net, peer_vip: Ipv4Addr, missing: bool| {
        let event = KernelEvent::EspRenew { peer_vip, missing };
        net.hosts[a].engine.kernel_event(net.now, event);
        net.run_for(Duration::from_secs(2));
    };

    // Soft expiry of A's outbound SA after use: make before break, no TCP kick.
    let kicks = net.hosts[a].kicks.len();
    let sent = net.wire.len();
    renew(&mut net, vip_b, false);
    assert!(net.wire.len() > sent, "A negotiated");
    assert_ne!(net.hosts[a].esp_out[&vip_b].spi, first.spi, "new SAs");
    assert!(paired(&net, a, b));
    assert_eq!(net.hosts[a].kicks.len(), kicks);

    // While idle, both ends' SAs reach their hard lifetime and the kernel deletes them;
    // A's next packet finds none and the kernel asks.
    for h in [a, b] {
        net.hosts[h].esp_in.clear();
        net.hosts[h].esp_out.clear();
    }
    renew(&mut net, vip_b, true);
    assert!(paired(&net, a, b), "keyed again both ways");
    assert!(
        net.hosts[a].kicks[kicks..].contains(&vip_b),
        "TCP retransmits its dropped packet"
    );

    // Not a partner's VIP: nothing.
    let sent = net.wire.len();
    renew(&mut net, [240, 7, 7, 7].into(), true);
    assert_eq!(net.wire.len(), sent);
}

/// B's kernel is slow to install a confirmed pair; meanwhile A's retransmitted initiations,
/// queued at B, arrive and each make a pending handshake. The one being installed must
/// stay, and must not expire, or B's kernel would hold a pair with no partner, no pinned
/// key and no acknowledgement.
#[test]
fn a_confirmed_handshake_survives_retransmissions_and_a_slow_kernel() {
    let (mut net, a, b) = two();
    let b_addr = net.hosts[b].addr;
    // Every initiation A sends is kept for a later, late delivery.
    let initiations = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = initiations.clone();
    net.filter = Box::new(move |d| {
        if *d.to.ip() == b_addr && d.bytes[3] == MessageType::Initiation as u8 {
            seen.borrow_mut().push(d.clone());
        }
        true
    });
    net.hosts[b].held_kernel = Some(Vec::new());
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    // A retransmits while B's install hangs (its ConfirmAck cannot come yet).
    net.run_for(Duration::from_secs(1));
    let late: Vec<Datagram> = initiations.borrow().clone();
    assert!(!late.is_empty());
    for _ in 0..3 {
        for d in &late {
            net.inject(d.from, d.to, d.bytes.clone());
        }
    }
    for i in 0..20u32 {
        // Twenty more initiations from A's address, each with a higher counter: A's daemon
        // restarted its negotiation many times over.
        let bytes = b_initiation(
            &net.hosts[a].secret,
            &net.hosts[b].key,
            "a.vip.test",
            1_000 + u64::from(i),
            9_000 + i,
        );
        let from = SocketAddrV4::new(net.hosts[a].addr, PORT);
        net.inject(from, SocketAddrV4::new(b_addr, PORT), bytes);
    }
    // The kernel takes 10 s, longer than a pending handshake lives.
    net.run_for(Duration::from_secs(10));
    let held = net.hosts[b].held_kernel.take().unwrap_or_default();
    for output in held {
        net.output(b, output);
    }
    net.settle();
    net.run_for(Duration::from_secs(5));
    let name_a = fqdn("a.vip.test");
    let partner = net.hosts[b].engine.partners().get(&name_a);
    assert!(
        partner.is_some(),
        "B made A a partner when its kernel was done"
    );
    assert!(
        net.hosts[b].pins.contains_key(&name_a),
        "and pinned A's key"
    );
    assert!(paired(&net, a, b));
}

/// The kernel moved B's mapping of A to the source of an ESP packet it authenticated: B's
/// record follows, counted as a roam, and B tells its kernel the same address again
/// without a kick (the kernel kicked TCP already; the change is what `vipctl watch` shows);
/// nothing for an unknown VIP or the address it has.
#[test]
fn a_roam_the_kernel_made_moves_the_partner_record_and_is_told_again_without_a_kick() {
    let (mut net, a, b) = two();
    let id = net.lookup(a, "b.vip.test");
    assert!(matches!(net.answer(a, id), Some(LookupAnswer::Vip(_))));
    net.run_for(Duration::from_secs(2));
    let name = fqdn("a.vip.test");
    let partner = net.hosts[b].engine.partners().get(&name).unwrap().clone();
    let moved_to = Ipv4Addr::new(198, 51, 100, 77);
    let (roams, kicks) = (net.hosts[b].engine.stats().roams, net.hosts[b].kicks.len());
    let roamed = |net: &mut Net, peer_vip: Ipv4Addr, addr: Ipv4Addr| {
        let event = KernelEvent::Roamed { peer_vip, addr };
        net.hosts[b].engine.kernel_event(net.now, event);
        net.run_for(Duration::from_millis(100));
    };

    roamed(&mut net, partner.peer_vip, moved_to);
    let now = net.hosts[b].engine.partners().get(&name).unwrap().addr;
    assert_eq!(now, moved_to, "the record follows the kernel");
    assert_eq!(net.hosts[b].engine.stats().roams, roams + 1);
    assert_eq!(net.hosts[b].kicks.len(), kicks, "the kernel kicked already");
    assert_eq!(
        net.hosts[b].kernel[&partner.peer_vip].addr, moved_to,
        "the same address, told again"
    );
    let kernel = net.hosts[b].kernel.clone();

    // The address it has already, or a VIP it does not know: nothing.
    roamed(&mut net, partner.peer_vip, moved_to);
    roamed(&mut net, [240, 7, 7, 7].into(), moved_to);
    assert_eq!(net.hosts[b].engine.stats().roams, roams + 1);
    assert_eq!(net.hosts[b].kernel, kernel);
}
