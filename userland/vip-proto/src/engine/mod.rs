//! The protocol's state machine, without I/O, in the spirit of `quinn-proto`.
//!
//! An [`Engine`] is fed what happens, each call with the current time:
//! datagrams ([`Engine::handle_datagram`]), lookups by local applications
//! ([`Engine::lookup`]), DNS answers ([`Engine::dns_answer`]), kernel events and the
//! results of kernel changes ([`Engine::kernel_event`], [`Engine::kernel_done`],
//! [`Engine::kernel_dump`]), our own address changing ([`Engine::address_changed`]),
//! the result of DNS updates ([`Engine::update_done`]) and the passing of time
//! ([`Engine::tick`]). It answers with [`Output`]s, taken with [`Engine::poll_output`]:
//! datagrams to send, DNS queries, answers to lookups, kernel changes, DNS updates, and
//! state to save; [`Engine::poll_timeout`] says when it next wants a tick.
//!
//! What it does is paper section 3.1 and 3.2 carried by Noise handshakes and sessions
//! (`docs/protocol.md`, "Protocol rules"): a negotiation round rides in every handshake,
//! a responder keeps nothing but a bounded pending entry until the initiator confirms
//! from its address, mappings move only to the source address of an authenticated
//! packet, hints and acks travel inside sessions, and every table is bounded.

mod admission;
mod initiator;
mod limits;
mod mobility;
pub mod partners;
mod responder;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde::Serialize;
use tracing::debug;

use crate::esp::{Aead, EspSa};
use crate::fqdn::Fqdn;
use crate::handshake::{CookieChecker, MacKeys};
use crate::identity::Identity;
use crate::session::Session;
use crate::wire::{self, Control, EspOffer, Packet};
pub use admission::{Admission, Lane};
use limits::{Limits, LogKind};
pub use partners::{Claim, Partner, Partners};

/// Identifies a lookup, a DNS query, a kernel change or a DNS update across the
/// engine's outputs and the answers fed back.
pub type Id = u64;

/// Garbage collection of mappings (paper section 4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gc {
    /// Mappings stay until the host reboots.
    ReclaimOnReboot,
    /// Mappings with no packet either way for this long are dropped.
    Lease(Duration),
}

/// Whether pairs carry their packets in ESP (issue 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspMode {
    /// Every pair is ESP between the two VIPs; a peer that does not offer it is refused
    /// (its negotiation ends, and its name resolves to its physical address).
    Required,
    /// No ESP: pairs carry plain IPIP (a peer that requires ESP refuses us).
    Off,
}

/// What the engine needs to know about its host and its policies.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our name.
    pub me: Fqdn,
    /// The range VIPs are drawn from and accepted in.
    pub vip_range: Ipv4Net,
    /// The VIP we propose for ourselves (our magic record's).
    pub home_vip: Ipv4Addr,
    /// The UDP port of the protocol.
    pub port: u16,
    /// How long to wait for a handshake response before sending a new initiation.
    pub retransmit: Duration,
    /// Restarts from the DNS queries after two unanswered initiations.
    pub restarts: u32,
    /// Negotiation rounds before giving up.
    pub max_rounds: u8,
    /// Partners that exchanged packets with us this recently get hints when we move (the
    /// Active Partner List's T).
    pub active: Duration,
    /// A partner we send to but have not heard from for this long is looked up again.
    pub lease: Duration,
    /// Garbage collection.
    pub gc: Gc,
    /// The most partners (invalid VIPs included) we keep; new ones are refused beyond it.
    pub max_partners: usize,
    /// The most handshakes we answer and wait on confirmation for at once.
    pub max_pending: usize,
    /// ESP for pairs.
    pub esp: EspMode,
    /// This host has AES hardware (the pair's AEAD is AES-GCM where both ends do).
    pub aes_hardware: bool,
    /// The zones whose key records must validate (DNSSEC, the daemon's trust anchors): in
    /// them a handshake whose key differs from the one pinned is checked in DNS (a
    /// validated rotation) instead of refused at once.
    pub dnssec_zones: Vec<Fqdn>,
}

impl Config {
    /// The defaults `vipd` documents (`dist/vipd.toml`), for `me` proposing `home_vip`.
    pub fn new(me: Fqdn, home_vip: Ipv4Addr) -> Self {
        Self {
            me,
            vip_range: Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4),
            home_vip,
            port: 4877,
            retransmit: Duration::from_millis(500),
            restarts: 3,
            max_rounds: 8,
            active: Duration::from_secs(60),
            lease: Duration::from_secs(30),
            gc: Gc::ReclaimOnReboot,
            max_partners: 65536,
            max_pending: 1024,
            esp: EspMode::Required,
            aes_hardware: false,
            dnssec_zones: Vec::new(),
        }
    }
}

/// A DNS question the engine needs answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// The A records of a name.
    Address(Fqdn),
    /// The A record of a name's magic name: the VIP it proposes.
    Magic(Fqdn),
    /// The key record (TXT at `_vipkey.<name>`): its public keys.
    Key(Fqdn),
    /// The PTR records of an address.
    Reverse(Ipv4Addr),
}

/// An answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    /// A records.
    Addresses(Vec<Ipv4Addr>),
    /// Public keys from key records.
    Keys {
        /// The keys.
        keys: Vec<[u8; 32]>,
        /// How far DNSSEC vouches for them.
        proof: KeyProof,
    },
    /// Names from PTR records.
    Names(Vec<Fqdn>),
    /// The name has no such record (NXDOMAIN or no data).
    NoRecord,
    /// No answer could be had (timeout, SERVFAIL).
    Failed,
}

/// How far DNSSEC vouches for a key record (paper section 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProof {
    /// Validated up to a configured trust anchor: the zone's owner published this key.
    Secure,
    /// No trust anchor covers the name: trust on first use, as without DNSSEC.
    Unvalidated,
    /// A trust anchor covers the name and the answer did not validate (unsigned, stripped,
    /// forged or expired signatures): worth nothing, and a sign of an attack or a
    /// misconfigured resolver.
    Bogus,
}

/// The least time between two rotation checks in DNS for one pinned name.
const ROTATION_CHECK_SPACING: Duration = Duration::from_secs(1);

/// What [`Engine::judge_key`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyVerdict {
    /// Authenticate the peer with this key. `vouched`: DNSSEC vouches for it, now or when
    /// it was pinned; `validated`: this very answer did, which alone may replace a pin.
    Use {
        key: [u8; 32],
        vouched: bool,
        validated: bool,
    },
    /// DNSSEC vouches only for keys this name replaced before: a replayed old record
    /// (its signatures still in date), perhaps with a stolen old key.
    RolledBack,
    /// DNS publishes no usable key (the responder: not the initiator's).
    NotPublished,
    /// DNS publishes, without DNSSEC, another key than the one pinned.
    PinMismatch,
    /// A trust anchor covers the key record and its answer did not validate; nothing is pinned.
    Bogus,
}

/// How to answer a local application's A query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupAnswer {
    /// With the partner's VIP.
    Vip(Ipv4Addr),
    /// With what upstream DNS says (a legacy host, our own name, no VIP to be had).
    Upstream,
    /// With SERVFAIL.
    Failed,
}

/// One mapping of the kernel's table, as a dump gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelMapping {
    /// The peer's VIP.
    pub peer_vip: Ipv4Addr,
    /// Where the kernel sends its packets.
    pub peer_ip4: Ipv4Addr,
    /// Our VIP toward it.
    pub local_vip: Option<Ipv4Addr>,
    /// Marked invalid.
    pub invalid: bool,
    /// Time since the last packet from it.
    pub last_rx: Option<Duration>,
    /// Time since the last packet to it.
    pub last_tx: Option<Duration>,
}

/// What the kernel module reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelEvent {
    /// A packet was sent to a VIP without mapping.
    NoMapping {
        /// Its destination.
        peer_vip: Ipv4Addr,
    },
    /// A packet came from a VIP without mapping.
    Unknown {
        /// Its inner source.
        peer_vip: Ipv4Addr,
        /// Its inner destination.
        local_vip: Ipv4Addr,
        /// Its outer source.
        seen: Ipv4Addr,
    },
    /// A packet from a mapped VIP came from another address.
    Moved {
        /// Its inner source.
        peer_vip: Ipv4Addr,
        /// Where the mapping points.
        mapped: Ipv4Addr,
        /// Where it came from.
        seen: Ipv4Addr,
    },
    /// The kernel moved a mapping to the source of a packet IPsec authenticated (the
    /// partner's own keys vouch for it, as for a control message from there).
    Roamed {
        /// The partner's VIP.
        peer_vip: Ipv4Addr,
        /// Where it is now.
        addr: Ipv4Addr,
    },
    /// Events were lost (the socket overflowed): the table must be checked.
    Lost,
    /// The pair toward `peer_vip` needs new ESP keys: its outbound SA reached its soft
    /// lifetime after carrying packets, or (`missing`) a packet met its policy and found
    /// no SA (they reached their hard lifetime while the pair was idle, and the packet was
    /// dropped).
    EspRenew {
        /// The peer's VIP (the SA's or the packet's destination).
        peer_vip: Ipv4Addr,
        /// No SA at all: TCP is told to retransmit once the new one is in place.
        missing: bool,
    },
}

/// A session's SAs for a pair, keyed before the mapping changes: the inbound one always
/// (it must exist before the peer may send with it), the outbound one where nothing sends
/// with an older SA (see [`KernelOp::EspOut`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSas {
    /// Carries the peer's packets to us.
    pub inbound: EspSa,
    /// Carries ours to the peer.
    pub outbound: Option<EspSa>,
}

/// A change to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelOp {
    /// Our VIP on the vip device, a route to the peer's VIP through it with that source,
    /// and the mapping (created or replaced). With ESP on, the pair's policies are made
    /// first (so that nothing crosses in clear), then `esp`'s SAs, then the mapping; if
    /// any step fails, the change fails.
    Install {
        /// The peer's VIP.
        peer_vip: Ipv4Addr,
        /// Ours toward it.
        local_vip: Ipv4Addr,
        /// Its address.
        addr: Ipv4Addr,
        /// A new session's SAs.
        esp: Option<PairSas>,
    },
    /// The outbound SA of a rekeyed pair, once the peer has its inbound twin (it
    /// acknowledged our confirmation): our packets move onto it, and older outbound SAs
    /// of the pair go.
    EspOut {
        /// The peer's VIP.
        peer_vip: Ipv4Addr,
        /// Ours toward it.
        local_vip: Ipv4Addr,
        /// The SA.
        sa: EspSa,
    },
    /// The mapping points at `addr` now; with `kick`, TCP sockets to the peer that wait
    /// out a backoff retransmit at once (the path just came back).
    Repoint {
        /// The peer's VIP.
        peer_vip: Ipv4Addr,
        /// Ours toward it.
        local_vip: Ipv4Addr,
        /// Its address.
        addr: Ipv4Addr,
        /// Kick TCP.
        kick: bool,
        /// A new session's SAs (a rekey of the same pair).
        esp: Option<PairSas>,
    },
    /// The mapping is kept but marked invalid (section 3.1): its packets are dropped.
    Invalidate {
        /// The VIP.
        peer_vip: Ipv4Addr,
        /// Ours toward it.
        local_vip: Ipv4Addr,
        /// Where it pointed.
        addr: Ipv4Addr,
        /// The partner it was (for those told of changes: the engine has moved on).
        fqdn: Fqdn,
    },
    /// The mapping and its route go.
    Remove {
        /// The VIP.
        peer_vip: Ipv4Addr,
        /// Ours toward it.
        local_vip: Ipv4Addr,
        /// The partner it was, if known (an invalid VIP's is not).
        fqdn: Option<Fqdn>,
    },
    /// Every mapping, with its activity: answered by [`Engine::kernel_dump`].
    Dump,
}

/// What the engine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A datagram to send from the protocol's port.
    Send {
        /// The destination.
        to: SocketAddrV4,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// A DNS question: answer with [`Engine::dns_answer`].
    Query {
        /// Its id.
        id: Id,
        /// The question.
        query: Query,
    },
    /// The answer to a lookup.
    Answer {
        /// The lookup's id.
        id: Id,
        /// The answer.
        answer: LookupAnswer,
    },
    /// A kernel change: report with [`Engine::kernel_done`] (or
    /// [`Engine::kernel_dump`] for a dump).
    Kernel {
        /// Its id.
        id: Id,
        /// The change.
        op: KernelOp,
    },
    /// Publish our address in DNS: report with [`Engine::update_done`].
    Update {
        /// Its id.
        id: Id,
        /// Our address.
        address: Ipv4Addr,
    },
    /// The partner table changed: save it (JSON), for a restart to find.
    Save(String),
    /// Forget the key pinned for a name (remove its line from the known-peers file).
    Unpin {
        /// The name.
        fqdn: Fqdn,
    },
    /// Pin a key first seen for a name (append it to the known-peers file).
    Pin {
        /// The name.
        fqdn: Fqdn,
        /// Its key.
        key: [u8; 32],
    },
    /// Replace the key pinned for a name, in one write (a rotation DNSSEC vouched for).
    Repin {
        /// The name.
        fqdn: Fqdn,
        /// Its new key.
        key: [u8; 32],
    },
}

/// What the engine has done since it started: for status displays, benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Initiations sent (one per negotiation round and retransmission).
    pub initiations_sent: u64,
    /// Handshakes we initiated that completed (an authentic response).
    pub handshakes_completed: u64,
    /// Initiations we answered with a response.
    pub responses_sent: u64,
    /// Cookie replies sent (under load).
    pub cookies_sent: u64,
    /// Cookie replies received (a responder we initiated to was under load).
    pub cookies_received: u64,
    /// Pairs installed because an initiator confirmed them.
    pub pairs_confirmed: u64,
    /// Hints sent (retransmissions included).
    pub hints_sent: u64,
    /// Authentic hints received.
    pub hints_received: u64,
    /// Acks sent to hints.
    pub acks_sent: u64,
    /// Acks received to our hints.
    pub acks_received: u64,
    /// Partners re-pointed by an authenticated packet from a new address.
    pub roams: u64,
    /// Initiations dropped before any Diffie-Hellman (bad mac1, over a rate limit, no
    /// room) or refused after it (replayed, wrong key).
    pub initiations_dropped: u64,
    /// Datagrams that did not parse or authenticate.
    pub garbage: u64,
    /// Peers' keys DNSSEC vouched for (key record answers that validated and were used).
    pub keys_vouched: u64,
    /// Key record answers refused because they should have validated and did not.
    pub keys_bogus: u64,
    /// Pinned keys replaced by one DNSSEC vouched for.
    pub key_rotations: u64,
    /// Now: partners.
    pub partners: u64,
    /// Now: handshakes answered and waiting for their confirmation (or a DNS check).
    pub pending: u64,
    /// Now: live sessions.
    pub sessions: u64,
    /// Now: negotiations we run.
    pub negotiations: u64,
}

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// A partner.
    Partner(Fqdn),
    /// A responder's handshake that waits for the initiator's confirmation.
    Pending(u32),
}

struct Slot {
    session: Session,
    owner: Owner,
}

/// A partner's sessions: the one we send with, and the one before it (still received on
/// until it expires, so that a rekey loses nothing).
#[derive(Debug, Default, Clone, Copy)]
struct Link {
    current: Option<u32>,
    previous: Option<u32>,
}

/// What a DNS query or kernel change was for.
#[derive(Debug, Clone)]
enum Purpose {
    /// One of an initiator's queries.
    Negotiation(Fqdn),
    /// A responder's key (or reverse) check.
    Pending(u32),
    /// Where a partner is now (two-sided moves, leases, MOVED).
    Locate(Fqdn),
    /// A kernel change whose completion something waits for (see `after_kernel`).
    Then(After),
    /// A dump for hints, leases and rekeys.
    Dump(DumpFor),
}

/// What to do once a kernel change is done.
#[derive(Debug, Clone)]
enum After {
    /// An initiator's install: confirm.
    InitiatorInstalled(Fqdn),
    /// A responder's install: keep the partner, acknowledge the confirmation.
    ResponderInstalled(u32),
    /// A re-point for a hint: acknowledge it.
    AckHint {
        fqdn: Fqdn,
        seq: u32,
        to: SocketAddrV4,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DumpFor {
    /// We moved: hint the active partners.
    Move,
    /// One of our addresses went: hint the active partners again.
    AddressGone,
    /// The periodic look at activity: leases, garbage collection, rekeys.
    Housekeeping,
    /// Events were lost: reinstall what the kernel lacks.
    Resync,
}

/// How long an initiator confirms a new session before it takes the pair back, and
/// about how long the responder waits for a confirmation. WireGuard keeps trying a
/// handshake for 90 s; a confirmation is cheaper to lose, the lookup was already answered.
pub(super) const CONFIRM_WINDOW: Duration = Duration::from_secs(30);

/// How often housekeeping looks at the kernel's table (at most; leases may ask sooner).
const HOUSEKEEPING: Duration = Duration::from_secs(10);
/// The partner table is saved at most this often.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Initiations this engine may make in one run: reserved (and saved) at start-up.
pub const COUNTER_BLOCK: u64 = 1 << 32;

/// What [`Engine::set_pins`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PinsReloaded {
    /// Names pinned that were not.
    pub added: usize,
    /// Names no longer pinned.
    pub removed: usize,
    /// Names pinned to another key.
    pub changed: usize,
}

/// The protocol engine of one host.
pub struct Engine {
    cfg: Config,
    identity: Identity,
    public: [u8; 32],
    own_mac_keys: MacKeys,
    partners: Partners,
    pins: HashMap<Fqdn, [u8; 32]>,
    sessions: HashMap<u32, Slot>,
    links: HashMap<Fqdn, Link>,
    negs: HashMap<Fqdn, initiator::Negotiation>,
    /// Our session index of each negotiation's handshake in flight.
    neg_by_index: HashMap<u32, Fqdn>,
    pends: HashMap<u32, responder::Pending>,
    purposes: HashMap<Id, Purpose>,
    cookies: CookieChecker,
    limits: Limits,
    mobility: mobility::State,
    /// The next initiation counter, and the first we may not use.
    counter: u64,
    counter_end: u64,
    /// Recently refused (name, key) pairs, so that a flood of them costs no DNS query.
    refused_keys: HashMap<(Fqdn, [u8; 32]), Instant>,
    /// When each pinned name's last rotation check in DNS began (a handshake with another
    /// key than the pin, in a DNSSEC zone): one a second at most per name.
    rotation_checks: HashMap<Fqdn, Instant>,
    rtt: HashMap<Fqdn, Duration>,
    out: VecDeque<Output>,
    next_id: Id,
    dirty: bool,
    last_save: Option<Instant>,
    next_housekeeping: Option<Instant>,
    /// When the engine was made: its first housekeeping and save are due then. (A fixed
    /// instant, not the clock: the engine reads no clock, its driver's `now` is the time.)
    created: Instant,
    stats: Stats,
}

/// Random bytes from the operating system; a failure (which getrandom documents as
/// unrecoverable) leaves zeros, which the callers' uses tolerate.
fn random_bytes(buf: &mut [u8]) {
    let _ = getrandom::fill(buf);
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    u64::from_be_bytes(b)
}

impl Engine {
    /// An engine for `identity`, with the partners and pins a previous run saved, and
    /// initiation counters from `counter` (the caller has saved `counter + COUNTER_BLOCK`
    /// as the next run's start, so that no counter is ever used twice).
    pub fn new(
        cfg: Config,
        identity: Identity,
        mut partners: Partners,
        pins: HashMap<Fqdn, [u8; 32]>,
        counter: u64,
        address: Ipv4Addr,
    ) -> Self {
        partners.reindex();
        partners.add_local_vip(cfg.home_vip);
        let public = identity.public_key();
        let mut links = HashMap::new();
        for p in partners.iter() {
            links.insert(p.fqdn.clone(), Link::default());
        }
        Self {
            own_mac_keys: MacKeys::of(&public),
            cookies: CookieChecker::new(&public),
            mobility: mobility::State::new(address),
            cfg,
            identity,
            public,
            partners,
            pins,
            sessions: HashMap::new(),
            links,
            negs: HashMap::new(),
            neg_by_index: HashMap::new(),
            pends: HashMap::new(),
            purposes: HashMap::new(),
            limits: Limits::new(),
            counter: counter.max(1),
            counter_end: counter.max(1).saturating_add(COUNTER_BLOCK),
            refused_keys: HashMap::new(),
            rotation_checks: HashMap::new(),
            rtt: HashMap::new(),
            out: VecDeque::new(),
            next_id: 1,
            dirty: false,
            last_save: None,
            next_housekeeping: None,
            created: Instant::now(),
            stats: Stats::default(),
        }
    }

    /// The admission of initiations for a receive task: it shares this engine's cookie
    /// secret, so it recognises our cookies.
    pub fn admission(&self) -> Admission {
        Admission::new(self.cookies.clone())
    }

    /// What the engine has done since it started.
    pub fn stats(&self) -> Stats {
        let gauge = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Stats {
            partners: gauge(self.partners.len()),
            pending: gauge(self.pends.len()),
            sessions: gauge(self.sessions.len()),
            negotiations: gauge(self.negs.len()),
            ..self.stats
        }
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The partner table.
    pub fn partners(&self) -> &Partners {
        &self.partners
    }

    /// When the engine wants [`Engine::tick`] called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A new engine looks at the kernel's table at once: a restarted daemon's adopted
        // pairs need leases, collection and new sessions before any input arrives.
        let mut next = Some(self.next_housekeeping.unwrap_or(self.created));
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for neg in self.negs.values() {
            take(neg.deadline());
        }
        for pend in self.pends.values() {
            take(pend.expires());
        }
        take(self.mobility.deadline());
        if self.dirty {
            take(Some(
                self.last_save.map_or(self.created, |t| t + SAVE_INTERVAL),
            ));
        }
        next
    }

    /// Time passes: retransmissions, give-ups, expiries, housekeeping, saving.
    pub fn tick(&mut self, now: Instant) {
        self.limits.advance(now);
        let due: Vec<Fqdn> = self
            .negs
            .iter()
            .filter(|(_, n)| n.deadline().is_some_and(|d| d <= now))
            .map(|(f, _)| f.clone())
            .collect();
        for fqdn in due {
            self.negotiation_timeout(now, &fqdn);
        }
        let expired: Vec<u32> = self
            .pends
            .iter()
            .filter(|(_, p)| p.expires().is_some_and(|t| t <= now))
            .map(|(i, _)| *i)
            .collect();
        for index in expired {
            self.drop_pending(index);
        }
        self.mobility_tick(now);
        if self.next_housekeeping.is_none_or(|t| t <= now) {
            self.next_housekeeping = Some(now + self.housekeeping_interval());
            self.expire_sessions(now);
            let id = self.kernel(KernelOp::Dump);
            self.purposes
                .insert(id, Purpose::Dump(DumpFor::Housekeeping));
        }
        if self.dirty
            && self
                .last_save
                .is_none_or(|t| now.duration_since(t) >= SAVE_INTERVAL)
        {
            self.save(now);
        }
        self.refused_keys
            .retain(|_, when| now.saturating_duration_since(*when) < Duration::from_secs(60));
        self.rotation_checks
            .retain(|_, when| now.saturating_duration_since(*when) < ROTATION_CHECK_SPACING);
    }

    fn housekeeping_interval(&self) -> Duration {
        let mut interval = HOUSEKEEPING.min(self.cfg.lease / 2);
        if let Gc::Lease(idle) = self.cfg.gc {
            interval = interval.min(idle / 2);
        }
        interval.max(Duration::from_millis(500))
    }

    fn save(&mut self, now: Instant) {
        match serde_json::to_string(&self.partners) {
            Ok(json) => self.out.push_back(Output::Save(json)),
            Err(e) => debug!("cannot serialise the partner table: {e}"),
        }
        self.dirty = false;
        self.last_save = Some(now);
    }

    /// A datagram arrived on the protocol's port.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        self.limits.advance(now);
        let packet = match wire::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.garbage += 1;
                if self.limits.log(LogKind::Garbage) {
                    debug!(%from, len = bytes.len(), "dropped a malformed datagram: {e}");
                }
                return;
            }
        };
        match packet {
            Packet::Initiation(hs) => self.on_initiation(now, from, &hs),
            Packet::Response(hs) => self.on_response(now, from, &hs),
            Packet::CookieReply(reply) => self.on_cookie_reply(now, &reply),
            Packet::Transport(t) => self.on_transport(now, from, &t),
            Packet::NakCue {
                dropped_src_vip,
                dropped_dst_vip,
            } => self.on_nak_cue(now, from, dropped_src_vip, dropped_dst_vip),
        }
    }

    fn on_transport(&mut self, now: Instant, from: SocketAddrV4, t: &wire::Transport<'_>) {
        let Some(slot) = self.sessions.get_mut(&t.receiver_index) else {
            self.stats.garbage += 1;
            if self.limits.log(LogKind::Garbage) {
                debug!(%from, index = t.receiver_index, "transport message for no session of ours");
            }
            return;
        };
        if slot.session.expired(now) {
            return;
        }
        let control = match slot.session.open(t) {
            Ok(c) => c,
            Err(e) => {
                self.stats.garbage += 1;
                if self.limits.log(LogKind::Garbage) {
                    debug!(%from, "transport message refused: {e}");
                }
                return;
            }
        };
        match slot.owner.clone() {
            Owner::Pending(index) => self.on_pending_control(now, from, index, control),
            Owner::Partner(fqdn) => {
                self.on_partner_control(now, from, &fqdn, t.receiver_index, control)
            }
        }
    }

    fn on_partner_control(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        fqdn: &Fqdn,
        index: u32,
        control: Control,
    ) {
        // Roaming, as WireGuard does: an authenticated packet from elsewhere shows where
        // the partner is now.
        let roamed = self.roam(fqdn, *from.ip(), true);
        if roamed.is_some() {
            self.hint_follows_roam(now, fqdn, *from.ip());
        }
        match control {
            Control::Confirm { round } => {
                // Our acknowledgement was lost: say it again.
                self.send_in(index, from, &Control::ConfirmAck { round });
            }
            Control::Probe { nonce } => {
                self.send_in(index, from, &Control::Pong { nonce });
            }
            Control::ConfirmAck { round } => self.on_confirm_ack(now, fqdn, index, round),
            Control::Hint { seq, vip, claimed } => {
                self.on_hint(now, from, fqdn, (seq, vip, claimed), roamed)
            }
            Control::Ack { seq, seen } => self.on_ack(now, fqdn, seq, seen),
            Control::Nak {
                dropped_src_vip,
                dropped_dst_vip,
            } => self.on_nak(now, fqdn, dropped_src_vip, dropped_dst_vip),
            Control::Pong { nonce } => self.on_pong(fqdn, nonce),
        }
    }

    /// Re-points `fqdn` at `addr` if it is elsewhere; returns the kernel change's id.
    /// `kick`: have TCP toward it retransmit (not when the kernel moved it, and kicked,
    /// itself).
    pub(super) fn roam(&mut self, fqdn: &Fqdn, addr: Ipv4Addr, kick: bool) -> Option<Id> {
        let partner = self.partners.get_mut(fqdn)?;
        if partner.addr == addr {
            return None;
        }
        self.stats.roams += 1;
        tracing::info!(peer = %fqdn, old = %partner.addr, new = %addr, "partner re-pointed (authenticated packet from its new address)");
        partner.addr = addr;
        let op = KernelOp::Repoint {
            peer_vip: partner.peer_vip,
            local_vip: partner.local_vip,
            addr,
            kick,
            esp: None,
        };
        self.dirty = true;
        Some(self.kernel(op))
    }

    /// Sends `control` in session `index` to `to`.
    fn send_in(&mut self, index: u32, to: SocketAddrV4, control: &Control) -> bool {
        let Some(slot) = self.sessions.get_mut(&index) else {
            return false;
        };
        match slot.session.seal(control) {
            Ok(bytes) => {
                self.out.push_back(Output::Send { to, bytes });
                true
            }
            Err(e) => {
                debug!("cannot seal: {e}");
                false
            }
        }
    }

    /// The session to send to `fqdn` with, if one is usable now.
    fn usable_session(&self, fqdn: &Fqdn, now: Instant) -> Option<u32> {
        let index = self.links.get(fqdn)?.current?;
        let slot = self.sessions.get(&index)?;
        (!slot.session.expired(now)).then_some(index)
    }

    fn new_id(&mut self) -> Id {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn kernel(&mut self, op: KernelOp) -> Id {
        let id = self.new_id();
        self.out.push_back(Output::Kernel { id, op });
        id
    }

    fn query(&mut self, query: Query, purpose: Purpose) -> Id {
        let id = self.new_id();
        self.purposes.insert(id, purpose);
        self.out.push_back(Output::Query { id, query });
        id
    }

    /// A session index nobody uses.
    fn new_index(&self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            random_bytes(&mut b);
            let i = u32::from_be_bytes(b);
            if i != 0
                && !self.sessions.contains_key(&i)
                && !self.pends.contains_key(&i)
                && !self.neg_by_index.contains_key(&i)
            {
                return i;
            }
        }
    }

    /// Takes a partner's new session (the current one becomes the previous).
    fn attach_session(&mut self, fqdn: &Fqdn, session: Session) {
        let index = session.local_index;
        self.sessions.insert(
            index,
            Slot {
                session,
                owner: Owner::Partner(fqdn.clone()),
            },
        );
        let link = self.links.entry(fqdn.clone()).or_default();
        if let Some(old) = link.previous.take() {
            self.sessions.remove(&old);
        }
        link.previous = link.current.replace(index);
    }

    fn detach_partner(&mut self, fqdn: &Fqdn) {
        if let Some(link) = self.links.remove(fqdn) {
            for index in link.current.into_iter().chain(link.previous) {
                self.sessions.remove(&index);
            }
        }
    }

    fn expire_sessions(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.session.expired(now))
            .map(|(i, _)| *i)
            .collect();
        for index in expired {
            self.sessions.remove(&index);
            for link in self.links.values_mut() {
                if link.current == Some(index) {
                    link.current = None;
                }
                if link.previous == Some(index) {
                    link.previous = None;
                }
            }
        }
    }

    /// An answer to a DNS query.
    pub fn dns_answer(&mut self, now: Instant, id: Id, answer: DnsAnswer) {
        self.limits.advance(now);
        match self.purposes.remove(&id) {
            Some(Purpose::Negotiation(fqdn)) => self.negotiation_dns(now, &fqdn, id, answer),
            Some(Purpose::Pending(index)) => self.pending_dns(now, index, id, answer),
            Some(Purpose::Locate(fqdn)) => self.located(now, &fqdn, answer),
            Some(other) => {
                self.purposes.insert(id, other);
            }
            None => {}
        }
    }

    /// A kernel change is done (or failed, with why).
    pub fn kernel_done(&mut self, now: Instant, id: Id, result: Result<(), String>) {
        self.limits.advance(now);
        let purpose = self.purposes.remove(&id);
        if let Err(e) = &result {
            tracing::warn!("kernel change failed: {e}");
        }
        let ok = result.is_ok();
        match purpose {
            Some(Purpose::Then(After::InitiatorInstalled(fqdn))) => {
                self.initiator_installed(now, &fqdn, ok)
            }
            Some(Purpose::Then(After::ResponderInstalled(index))) => {
                self.responder_installed(now, index, ok)
            }
            Some(Purpose::Then(After::AckHint { fqdn, seq, to })) if ok => {
                self.ack_hint(now, &fqdn, seq, to);
            }
            _ => {}
        }
    }

    /// The answer to a [`KernelOp::Dump`].
    pub fn kernel_dump(&mut self, now: Instant, id: Id, mappings: Vec<KernelMapping>) {
        self.limits.advance(now);
        self.note_activity(now, &mappings);
        match self.purposes.remove(&id) {
            Some(Purpose::Dump(DumpFor::Move)) => self.hint_active(now),
            Some(Purpose::Dump(DumpFor::AddressGone)) => self.hint_again(now),
            Some(Purpose::Dump(DumpFor::Housekeeping)) => self.housekeeping(now, &mappings),
            Some(Purpose::Dump(DumpFor::Resync)) => self.resync(&mappings),
            _ => {}
        }
    }

    /// Installs what the kernel should hold and does not.
    fn resync(&mut self, mappings: &[KernelMapping]) {
        let missing: Vec<Partner> = self
            .partners
            .iter()
            .filter(|p| {
                !mappings
                    .iter()
                    .any(|m| m.peer_vip == p.peer_vip && m.peer_ip4 == p.addr)
            })
            .cloned()
            .collect();
        for p in missing {
            tracing::info!(peer = %p.fqdn, "the kernel lacks a mapping we hold: installing it again");
            self.kernel(KernelOp::Install {
                peer_vip: p.peer_vip,
                local_vip: p.local_vip,
                addr: p.addr,
                esp: None,
            });
        }
    }

    /// What we say about ESP in a handshake.
    fn esp_offer(&self) -> EspOffer {
        EspOffer {
            esp: self.cfg.esp == EspMode::Required,
            aes_hardware: self.cfg.aes_hardware,
        }
    }

    /// The pair's ESP given the peer's offer: `Ok(Some(aead))` on, `Ok(None)` off,
    /// `Err(())` when we require ESP and the peer does not offer it.
    fn esp_with(&self, peer: EspOffer) -> Result<Option<Aead>, ()> {
        match self.cfg.esp {
            EspMode::Off => Ok(None),
            EspMode::Required if peer.esp => Ok(Some(Aead::for_pair(
                self.cfg.aes_hardware,
                peer.aes_hardware,
            ))),
            EspMode::Required => Err(()),
        }
    }

    fn rto(&self, fqdn: &Fqdn) -> Duration {
        self.rtt.get(fqdn).map_or(self.cfg.retransmit, |srtt| {
            (*srtt + (*srtt / 2).max(Duration::from_millis(3)))
                .clamp(Duration::from_millis(5), Duration::from_secs(2))
        })
    }

    fn observe_rtt(&mut self, fqdn: &Fqdn, sample: Duration) {
        let srtt = self.rtt.entry(fqdn.clone()).or_insert(sample);
        *srtt = (*srtt * 7 + sample) / 8;
    }

    /// Pins `key` for `fqdn` once a handshake with it completed: if nothing is pinned for
    /// it yet, or, replacing a different pin, only when DNSSEC `validated` `key` in this
    /// very negotiation (a rotation, paper section 3.4). The replaced key is remembered,
    /// so that a replayed old record cannot bring it back.
    fn pin(&mut self, fqdn: &Fqdn, key: [u8; 32], vouched: bool, validated: bool) {
        match self.pins.get(fqdn).copied() {
            Some(pinned) if pinned == key => {}
            Some(_) if !validated => {}
            Some(old) => {
                tracing::warn!(peer = %fqdn, "key rotation vouched by DNSSEC: {fqdn} has a new key, pinned instead of the old one");
                self.stats.key_rotations += 1;
                self.partners.retire_key(fqdn, old);
                self.dirty = true;
                self.pins.insert(fqdn.clone(), key);
                self.out.push_back(Output::Repin {
                    fqdn: fqdn.clone(),
                    key,
                });
            }
            None => {
                if vouched {
                    tracing::info!(peer = %fqdn, "the peer's key is vouched by DNSSEC: pinned without trust on first use");
                } else {
                    tracing::info!(peer = %fqdn, "pinned the peer's key on first contact");
                }
                self.pins.insert(fqdn.clone(), key);
                self.out.push_back(Output::Pin {
                    fqdn: fqdn.clone(),
                    key,
                });
            }
        }
    }

    /// Whether DNSSEC's verdict on `partner`'s key still holds: it vouched for the key, and
    /// the key is still the one pinned (not since unpinned or edited by hand).
    fn vouched_and_pinned(&self, partner: &Partner) -> bool {
        partner.vouched && self.pins.get(&partner.fqdn) == Some(&partner.key)
    }

    /// Whether a trust anchor covers `fqdn`'s key record.
    fn dnssec_covers(&self, fqdn: &Fqdn) -> bool {
        self.cfg
            .dnssec_zones
            .iter()
            .any(|zone| fqdn.is_within(zone))
    }

    /// [`Engine::judge_key`], counted: validated answers, and answers that should have
    /// validated and did not (also when a pin carries the contact regardless).
    fn judge_key_counted(
        &mut self,
        fqdn: &Fqdn,
        answer: &DnsAnswer,
        offered: Option<[u8; 32]>,
    ) -> KeyVerdict {
        let verdict = self.judge_key(fqdn, answer, offered);
        if matches!(
            verdict,
            KeyVerdict::Use {
                validated: true,
                ..
            }
        ) {
            self.stats.keys_vouched += 1;
        }
        if matches!(
            answer,
            DnsAnswer::Keys {
                proof: KeyProof::Bogus,
                ..
            }
        ) {
            self.stats.keys_bogus += 1;
            if matches!(verdict, KeyVerdict::Use { .. }) && self.limits.log(LogKind::KeyRefused) {
                tracing::warn!(peer = %fqdn, "the key record for {fqdn} does not validate (DNSSEC); the pinned key is used");
            }
        }
        verdict
    }

    /// What a key record's answer says of the key to use with `fqdn`, given its pin. The
    /// initiator passes `offered` = `None` and takes what DNS publishes; the responder
    /// passes the key the initiator authenticated with.
    ///
    /// | answer | no pin | pin P |
    /// |---|---|---|
    /// | Secure K | a key of K, vouched | P if in K, vouched; else a rotation to K |
    /// | Bogus | refused | P, as if DNS had not answered |
    /// | Unvalidated K, none | K (trust on first use) | P unless K publishes another key |
    fn judge_key(&self, fqdn: &Fqdn, answer: &DnsAnswer, offered: Option<[u8; 32]>) -> KeyVerdict {
        let pinned = self.pins.get(fqdn).copied();
        let (keys, proof) = match answer {
            DnsAnswer::Keys { keys, proof } => (keys.as_slice(), *proof),
            _ => (&[][..], KeyProof::Unvalidated),
        };
        if proof == KeyProof::Secure {
            let retired = |key: &[u8; 32]| self.partners.key_retired(fqdn, key);
            let key = match (offered, pinned) {
                (Some(offered), _) => keys.contains(&offered).then_some(offered),
                (None, Some(pinned)) if keys.contains(&pinned) => Some(pinned),
                // A first contact, or a pin DNSSEC no longer vouches for: the owner rotated.
                (None, _) => keys
                    .iter()
                    .find(|key| !retired(key))
                    .or(keys.first())
                    .copied(),
            };
            return match key {
                None => KeyVerdict::NotPublished,
                Some(key) if Some(key) != pinned && retired(&key) => KeyVerdict::RolledBack,
                Some(key) => KeyVerdict::Use {
                    key,
                    vouched: true,
                    validated: true,
                },
            };
        }
        match (pinned, offered) {
            (Some(pinned), Some(offered)) if offered != pinned => KeyVerdict::PinMismatch,
            // An answer that does not validate says nothing, not even that the pin is stale.
            (Some(pinned), _)
                if proof == KeyProof::Bogus || keys.is_empty() || keys.contains(&pinned) =>
            {
                KeyVerdict::Use {
                    key: pinned,
                    vouched: self
                        .partners
                        .get(fqdn)
                        .is_some_and(|p| self.vouched_and_pinned(p)),
                    validated: false,
                }
            }
            (Some(_), _) => KeyVerdict::PinMismatch,
            (None, _) if proof == KeyProof::Bogus => KeyVerdict::Bogus,
            (None, Some(offered)) if keys.contains(&offered) => KeyVerdict::Use {
                key: offered,
                vouched: false,
                validated: false,
            },
            (None, Some(_)) => KeyVerdict::NotPublished,
            (None, None) => keys
                .first()
                .map_or(KeyVerdict::NotPublished, |key| KeyVerdict::Use {
                    key: *key,
                    vouched: false,
                    validated: false,
                }),
        }
    }

    /// Takes the settings of `new` that a running engine can change: retransmission,
    /// rounds, the Active Partner List's time, the lease, garbage collection and the
    /// limits. Gives back the names of those that differ but need a restart (our name,
    /// the VIP range, the port, ESP), which keep their running values.
    pub fn reconfigure(&mut self, new: Config) -> Vec<&'static str> {
        let mut need_restart = Vec::new();
        if new.me != self.cfg.me {
            need_restart.push("fqdn");
        }
        if new.vip_range != self.cfg.vip_range {
            need_restart.push("vip_range");
        }
        if new.port != self.cfg.port {
            need_restart.push("negotiation.port");
        }
        if new.esp != self.cfg.esp {
            need_restart.push("ipsec.mode");
        }
        // The DNSSEC zones go with the daemon's validator, which a restart sets up.
        let dnssec_zones = std::mem::take(&mut self.cfg.dnssec_zones);
        self.cfg = Config {
            me: self.cfg.me.clone(),
            vip_range: self.cfg.vip_range,
            home_vip: self.cfg.home_vip,
            port: self.cfg.port,
            esp: self.cfg.esp,
            aes_hardware: self.cfg.aes_hardware,
            dnssec_zones,
            ..new
        };
        need_restart
    }

    /// Replaces the pinned keys with `pins`: the known-peers file as re-read after an
    /// administrator edited it. A name no longer listed is unpinned (its next first
    /// contact takes the key DNS publishes); a changed key is trusted from now on.
    /// Sessions made before go on until they expire, as after [`Engine::unpin`].
    pub fn set_pins(&mut self, pins: HashMap<Fqdn, [u8; 32]>) -> PinsReloaded {
        let mut counts = PinsReloaded::default();
        for (fqdn, key) in &pins {
            match self.pins.get(fqdn) {
                None => counts.added += 1,
                Some(old) if old != key => counts.changed += 1,
                Some(_) => {}
            }
        }
        counts.removed = self.pins.keys().filter(|f| !pins.contains_key(*f)).count();
        self.pins = pins;
        counts
    }

    /// Forgets the pinned key of `fqdn` (an administrator's decision, after a reinstall of
    /// that host): the next first contact takes the key DNS publishes. Sessions made with
    /// the old key go on until they expire. Whether a key was pinned.
    pub fn unpin(&mut self, fqdn: &Fqdn) -> bool {
        let was_pinned = self.pins.remove(fqdn).is_some();
        if was_pinned {
            tracing::info!(peer = %fqdn, "unpinned the peer's key");
            self.out.push_back(Output::Unpin { fqdn: fqdn.clone() });
        }
        was_pinned
    }

    /// Every partner, for `vipctl peers`.
    pub fn peers(&self, now: Instant) -> Vec<crate::control::Peer> {
        use crate::control::{Peer, Trust};
        self.partners
            .iter()
            .map(|p| Peer {
                name: p.fqdn.clone(),
                peer_vip: p.peer_vip,
                local_vip: p.local_vip,
                address: p.addr,
                key: crate::fqdn::key_record_text(&p.key),
                trust: if self.vouched_and_pinned(p) {
                    Trust::Dnssec
                } else if self.pins.contains_key(&p.fqdn) {
                    Trust::Pinned
                } else {
                    Trust::New
                },
                session_age_secs: self.usable_session(&p.fqdn, now).and_then(|index| {
                    let slot = self.sessions.get(&index)?;
                    Some(
                        now.saturating_duration_since(slot.session.created)
                            .as_secs(),
                    )
                }),
                negotiating: self.negs.contains_key(&p.fqdn),
                hint_pending: self.mobility.hint_pending(&p.fqdn),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
