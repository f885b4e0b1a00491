//! Mobility (paper sections 3.1 end and 3.2): our address changing (DNS updated until it
//! lands, hints to every active partner inside its session, retransmitted on a timer
//! from the measured round trip, with DNS asked where a silent partner went), the
//! partners' moves (a mapping follows the source address of an authenticated packet, and
//! only that; MOVED cues and leases lead to probes that a partner answers from where it
//! really is), the kernel's cues (reinstalling what it lost, NAKs), garbage collection,
//! and keeping active partners' sessions fresh.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::limits::LogKind;
use super::{
    DnsAnswer, DumpFor, Engine, Gc, Id, KernelEvent, KernelMapping, KernelOp, Output, Purpose,
    Query, random_u64,
};
use crate::fqdn::Fqdn;
use crate::session::REKEY_AFTER_TIME;
use crate::wire::{self, Control};

/// Hint transmissions before giving up.
const HINT_TRIES: u32 = 10;
/// The longest a hint waits for its ack.
const MAX_RTO: Duration = Duration::from_secs(2);
/// The first DNS update retry, doubled up to the next.
const UPDATE_RETRY: Duration = Duration::from_secs(1);
const MAX_UPDATE_RETRY: Duration = Duration::from_secs(60);
/// Cues about one partner (kernel events, NAK cues) acted on at most this often.
const CUE_INTERVAL: Duration = Duration::from_secs(1);
const NAK_CUE_INTERVAL: Duration = Duration::from_secs(5);
/// A responder rekeys this much later than an initiator would, so that the two rarely
/// start at once.
const RESPONDER_REKEY_LAG: Duration = Duration::from_secs(15);

/// A hint on its way to one partner.
struct Hint {
    seq: u32,
    tries: u32,
    rto: Duration,
    deadline: Instant,
    target: Ipv4Addr,
    first_sent: Instant,
}

/// Our DNS update.
struct Update {
    id: Option<Id>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// The hints of one move, until every partner acked or was given up on.
struct Burst {
    started: Instant,
    partners: usize,
    acked: usize,
    waiting: std::collections::HashSet<Fqdn>,
}

/// Mobility state.
pub(super) struct State {
    /// Our address, as published (or being published) in DNS.
    address: Ipv4Addr,
    update: Option<Update>,
    moved_at: Option<Instant>,
    hints: HashMap<Fqdn, Hint>,
    seq: u32,
    probes: HashMap<Fqdn, u64>,
    /// When a cue about a partner (by VIP, or by name for NAK cues) was last acted on.
    cues: HashMap<Ipv4Addr, Instant>,
    nak_cues: HashMap<Fqdn, Instant>,
    locating: HashMap<Fqdn, Id>,
    burst: Option<Burst>,
    /// Mappings that have carried no packet yet (the kernel gives them no age), by peer
    /// VIP: since when housekeeping has seen them so, which is how long they have been idle.
    unused_since: HashMap<Ipv4Addr, Instant>,
    /// When each partner last exchanged a packet with us, as of the latest read of the
    /// kernel's table (housekeeping reads it every few seconds): a move hints these at
    /// once, without waiting for a new read.
    activity: HashMap<Fqdn, Instant>,
    /// The partners the current move has hinted already.
    hinted: std::collections::HashSet<Fqdn>,
}

impl State {
    pub(super) fn new(address: Ipv4Addr) -> Self {
        Self {
            address,
            update: None,
            moved_at: None,
            hints: HashMap::new(),
            seq: (random_u64() >> 32) as u32,
            probes: HashMap::new(),
            cues: HashMap::new(),
            nak_cues: HashMap::new(),
            locating: HashMap::new(),
            burst: None,
            unused_since: HashMap::new(),
            activity: HashMap::new(),
            hinted: std::collections::HashSet::new(),
        }
    }

    /// Hints sent and not acknowledged yet.
    #[cfg(test)]
    pub(super) fn hints_unacked(&self) -> usize {
        self.hints.len()
    }

    /// Whether a hint to `fqdn` awaits its ack.
    pub(super) fn hint_pending(&self, fqdn: &Fqdn) -> bool {
        self.hints.contains_key(fqdn)
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        let hints = self.hints.values().map(|h| h.deadline);
        let update = self.update.as_ref().and_then(|u| u.retry_at);
        hints.chain(update).min()
    }
}

impl Engine {
    /// Our address changed (or the one we are reached at, for a new route).
    pub fn address_changed(&mut self, now: Instant, address: Ipv4Addr) {
        self.limits.advance(now);
        if self.mobility.address == address {
            return;
        }
        info!(old = %self.mobility.address, new = %address, "our address changed");
        self.mobility.address = address;
        self.mobility.moved_at = Some(now);
        // DNS and the partners are told at the same time.
        self.mobility.update = Some(Update {
            id: None,
            retry_at: None,
            backoff: UPDATE_RETRY,
        });
        self.publish_address();
        // The partners active at the last read of the kernel's table are hinted now; the
        // read asked for here adds those active since (reading it takes milliseconds,
        // most of a move's time to its first hint).
        self.mobility.hinted.clear();
        let early = self.active_partners(now);
        if !early.is_empty() {
            info!(
                partners = early.len(),
                "hinting the partners active at the last read of the kernel's table"
            );
            self.hint_burst(now, early);
        }
        let id = self.kernel(KernelOp::Dump);
        self.purposes.insert(id, Purpose::Dump(DumpFor::Move));
    }

    /// Notes when each partner last exchanged packets with us, from a read of the kernel's
    /// table at `now`.
    pub(super) fn note_activity(&mut self, now: Instant, mappings: &[KernelMapping]) {
        let activity = mappings
            .iter()
            .filter_map(|m| {
                let age = m.last_rx.into_iter().chain(m.last_tx).min()?;
                let fqdn = self.partners.by_vip(m.peer_vip)?.fqdn.clone();
                Some((fqdn, now.checked_sub(age).unwrap_or(now)))
            })
            .collect();
        self.mobility.activity = activity;
    }

    /// One of our addresses went. A partner may have followed it (it was the source of an
    /// authenticated packet: an old address lingering on its link after a
    /// make-before-break move, which the kernel picked toward a partner on that link), and
    /// while only the partner sends, nothing else would re-point it: hint the active
    /// partners again, from the addresses we have left. A burst of removals costs one
    /// dump; a partner that already follows us just acks.
    pub fn local_address_removed(&mut self, now: Instant) {
        self.limits.advance(now);
        let dumping = self.purposes.values().any(|p| {
            matches!(
                p,
                Purpose::Dump(DumpFor::Move) | Purpose::Dump(DumpFor::AddressGone)
            )
        });
        if dumping {
            return;
        }
        let id = self.kernel(KernelOp::Dump);
        self.purposes
            .insert(id, Purpose::Dump(DumpFor::AddressGone));
    }

    fn publish_address(&mut self) {
        let id = self.new_id();
        let address = self.mobility.address;
        if let Some(update) = &mut self.mobility.update {
            update.id = Some(id);
            update.retry_at = None;
        }
        self.out.push_back(Output::Update { id, address });
    }

    /// The result of a DNS update: a failed one is retried, with backoff, until it lands
    /// (or our address changes again).
    pub fn update_done(&mut self, now: Instant, id: Id, ok: bool) {
        let Some(update) = &mut self.mobility.update else {
            return;
        };
        if update.id != Some(id) {
            return;
        }
        update.id = None;
        if ok {
            let ms = self
                .mobility
                .moved_at
                .map(|t| now.duration_since(t).as_millis());
            info!(address = %self.mobility.address, ms, "DNS updated");
            self.mobility.update = None;
        } else {
            let wait = update.backoff;
            update.backoff = (update.backoff * 2).min(MAX_UPDATE_RETRY);
            update.retry_at = Some(now + wait);
            warn!(retry_in = ?wait, "the DNS update did not land: trying again");
        }
    }

    /// After a move, with the kernel's table: hint every partner that exchanged packets
    /// with us within the active window (the Active Partner List).
    pub(super) fn hint_active(&mut self, now: Instant) {
        let recent: Vec<Fqdn> = self
            .active_partners(now)
            .into_iter()
            .filter(|fqdn| !self.mobility.hinted.contains(fqdn))
            .collect();
        // How long the kernel's table took to read: the hints it adds waited for it.
        let ms = self.mobility.moved_at.map_or(0.0, |t| {
            now.saturating_duration_since(t).as_secs_f64() * 1e3
        });
        info!(
            partners = recent.len(),
            hinted_before = self.mobility.hinted.len(),
            after_ms = ms,
            "hinting the active partners"
        );
        self.hint_burst(now, recent);
    }

    /// Hints `partners` as part of the current move's burst (started if there is none).
    fn hint_burst(&mut self, now: Instant, partners: Vec<Fqdn>) {
        let burst = self.mobility.burst.get_or_insert_with(|| Burst {
            started: now,
            partners: 0,
            acked: 0,
            waiting: std::collections::HashSet::new(),
        });
        burst.partners += partners.len();
        burst.waiting.extend(partners.iter().cloned());
        let size = burst.partners;
        for fqdn in partners {
            self.mobility.hinted.insert(fqdn.clone());
            self.hint(now, &fqdn, size);
        }
        self.burst_progress(now, None, false);
    }

    /// Hints the active partners that no hint is on its way to already (its retransmissions
    /// leave from where we are now), outside any move's burst.
    pub(super) fn hint_again(&mut self, now: Instant) {
        let recent: Vec<Fqdn> = self
            .active_partners(now)
            .into_iter()
            .filter(|fqdn| !self.mobility.hint_pending(fqdn))
            .collect();
        if !recent.is_empty() {
            info!(
                partners = recent.len(),
                "an address of ours went: hinting the active partners again"
            );
        }
        let count = recent.len();
        for fqdn in recent {
            self.hint(now, &fqdn, count);
        }
    }

    /// The Active Partner List: the partners whose mappings carried a packet within
    /// `active` of `now`, as of the latest read of the kernel's table.
    fn active_partners(&self, now: Instant) -> Vec<Fqdn> {
        let active = self.cfg.active;
        self.mobility
            .activity
            .iter()
            .filter(|(fqdn, at)| {
                now.saturating_duration_since(**at) < active && self.partners.get(fqdn).is_some()
            })
            .map(|(fqdn, _)| fqdn.clone())
            .collect()
    }

    /// One partner of the move's burst is done (`acked`, or given up on); the last one
    /// ends the burst with a summary line.
    fn burst_progress(&mut self, now: Instant, fqdn: Option<&Fqdn>, acked: bool) {
        let Some(burst) = &mut self.mobility.burst else {
            return;
        };
        if let Some(fqdn) = fqdn
            && burst.waiting.remove(fqdn)
            && acked
        {
            burst.acked += 1;
        }
        if burst.waiting.is_empty() {
            let ms = now.duration_since(burst.started).as_secs_f64() * 1e3;
            info!(
                partners = burst.partners,
                acked = burst.acked,
                ms = format!("{ms:.3}"),
                "all active partners hinted"
            );
            self.mobility.burst = None;
        }
    }

    fn hint(&mut self, now: Instant, fqdn: &Fqdn, burst: usize) {
        let Some(partner) = self.partners.get(fqdn).cloned() else {
            return;
        };
        let Some(_) = self.usable_session(fqdn, now) else {
            // No session to carry a hint: a new handshake from our new address is one (its
            // confirmation re-points the partner).
            self.mobility.hints.remove(fqdn);
            self.rekey(now, fqdn, None, true);
            return;
        };
        self.mobility.seq = self.mobility.seq.wrapping_add(1);
        // The acks to a burst come back one after another: the first wait grows with it.
        let rto = (self.rto(fqdn)
            + Duration::from_micros(500) * u32::try_from(burst).unwrap_or(u32::MAX))
        .min(MAX_RTO);
        let hint = Hint {
            seq: self.mobility.seq,
            tries: 0,
            rto,
            deadline: now,
            target: partner.addr,
            first_sent: now,
        };
        self.mobility.hints.insert(fqdn.clone(), hint);
        self.send_hint(now, fqdn);
    }

    fn send_hint(&mut self, now: Instant, fqdn: &Fqdn) {
        let Some(index) = self.usable_session(fqdn, now) else {
            return;
        };
        let Some(partner) = self.partners.get(fqdn) else {
            return;
        };
        let vip = partner.local_vip;
        let claimed = self.mobility.address;
        let port = self.cfg.port;
        let Some(hint) = self.mobility.hints.get_mut(fqdn) else {
            return;
        };
        hint.tries += 1;
        if hint.tries == 1 {
            hint.first_sent = now;
        }
        hint.deadline = now + hint.rto;
        let (seq, to, tries) = (hint.seq, SocketAddrV4::new(hint.target, port), hint.tries);
        self.stats.hints_sent += 1;
        self.send_in(index, to, &Control::Hint { seq, vip, claimed });
        // From the first retransmission on, ask DNS where the partner is: it may have
        // moved too (a two-sided move), and then its own hint went to our old address.
        // Asked again every other try: the partner's update may land after our question
        // (DNS unreachable for a while, or simply slower than our first retransmission).
        if tries >= 2 && tries % 2 == 0 {
            self.locate(fqdn);
        }
    }

    /// An authenticated packet showed that `fqdn` is at `addr` now (a two-sided move: it
    /// moved too, and our hint went to its old address): our hint goes there at once,
    /// whatever DNS still says.
    pub(super) fn hint_follows_roam(&mut self, now: Instant, fqdn: &Fqdn, addr: Ipv4Addr) {
        let Some(hint) = self.mobility.hints.get_mut(fqdn) else {
            return;
        };
        if hint.target == addr {
            return;
        }
        hint.target = addr;
        self.send_hint(now, fqdn);
    }

    /// Asks DNS where `fqdn` is now (one question per partner at a time).
    fn locate(&mut self, fqdn: &Fqdn) {
        if self.mobility.locating.contains_key(fqdn) {
            return;
        }
        let id = self.query(Query::Address(fqdn.clone()), Purpose::Locate(fqdn.clone()));
        self.mobility.locating.insert(fqdn.clone(), id);
    }

    /// DNS says where a partner is. An address is only a claim: the partner is sent a hint
    /// or a probe there, and its authenticated answer is what re-points it.
    pub(super) fn located(&mut self, now: Instant, fqdn: &Fqdn, answer: DnsAnswer) {
        self.mobility.locating.remove(fqdn);
        let DnsAnswer::Addresses(addrs) = answer else {
            return;
        };
        let Some(&addr) = addrs.first() else { return };
        let Some(partner) = self.partners.get(fqdn) else {
            return;
        };
        let known = partner.addr;
        if let Some(hint) = self.mobility.hints.get_mut(fqdn) {
            if hint.target != addr {
                debug!(peer = %fqdn, %addr, "no ack yet; DNS knows another address: hinting there");
                hint.target = addr;
                self.send_hint(now, fqdn);
            }
            return;
        }
        if addr != known {
            self.probe(now, fqdn, addr);
        }
    }

    /// Asks `fqdn` whether it is at `addr`: in its session if there is one (its Pong from
    /// there re-points it), with a handshake toward `addr` otherwise.
    fn probe(&mut self, now: Instant, fqdn: &Fqdn, addr: Ipv4Addr) {
        match self.usable_session(fqdn, now) {
            Some(index) => {
                let nonce = random_u64();
                self.mobility.probes.insert(fqdn.clone(), nonce);
                self.send_in(
                    index,
                    SocketAddrV4::new(addr, self.cfg.port),
                    &Control::Probe { nonce },
                );
            }
            None => self.rekey(now, fqdn, Some(addr), true),
        }
    }

    pub(super) fn on_pong(&mut self, fqdn: &Fqdn, nonce: u64) {
        if self.mobility.probes.get(fqdn) == Some(&nonce) {
            self.mobility.probes.remove(fqdn);
        }
    }

    pub(super) fn mobility_tick(&mut self, now: Instant) {
        if self
            .mobility
            .update
            .as_ref()
            .and_then(|u| u.retry_at)
            .is_some_and(|t| t <= now)
        {
            self.publish_address();
        }
        let due: Vec<Fqdn> = self
            .mobility
            .hints
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(f, _)| f.clone())
            .collect();
        for fqdn in due {
            let Some(hint) = self.mobility.hints.get_mut(&fqdn) else {
                continue;
            };
            if hint.tries >= HINT_TRIES {
                self.mobility.hints.remove(&fqdn);
                if self.limits.log(LogKind::Peer) {
                    warn!(peer = %fqdn, "no ack to our hints: trying a new handshake");
                }
                self.burst_progress(now, Some(&fqdn), false);
                // The partner may have lost our session (a restart) or be where neither
                // we nor DNS knew yet: a handshake, which asks DNS again after its first
                // tries, finds it or gives up.
                self.rekey(now, &fqdn, None, true);
                continue;
            }
            hint.rto = (hint.rto * 2).min(MAX_RTO);
            self.send_hint(now, &fqdn);
        }
    }

    /// An authentic hint: `vip` is the VIP the partner says we call it by, `claimed` the
    /// address it says it moved to (logged only: its source address is what counts).
    pub(super) fn on_hint(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        fqdn: &Fqdn,
        hint: (u32, Ipv4Addr, Ipv4Addr),
        roamed: Option<Id>,
    ) {
        let (seq, vip, claimed) = hint;
        self.stats.hints_received += 1;
        if self.partners.get(fqdn).is_none_or(|p| p.peer_vip != vip) {
            debug!(peer = %fqdn, %vip, "hint for a VIP we do not call it by");
            return;
        }
        if claimed != *from.ip() {
            debug!(peer = %fqdn, %claimed, seen = %from.ip(), "a hint from another address than it claims (NAT?): following its source");
        }
        match roamed {
            // Acknowledge once the kernel follows.
            Some(id) => {
                self.purposes.insert(
                    id,
                    Purpose::Then(super::After::AckHint {
                        fqdn: fqdn.clone(),
                        seq,
                        to: from,
                    }),
                );
            }
            None => self.ack_hint(now, fqdn, seq, from),
        }
    }

    pub(super) fn ack_hint(&mut self, now: Instant, fqdn: &Fqdn, seq: u32, to: SocketAddrV4) {
        if let Some(index) = self.usable_session(fqdn, now)
            && self.send_in(
                index,
                to,
                &Control::Ack {
                    seq,
                    seen: *to.ip(),
                },
            )
        {
            self.stats.acks_sent += 1;
        }
    }

    pub(super) fn on_ack(&mut self, now: Instant, fqdn: &Fqdn, seq: u32, seen: Ipv4Addr) {
        let Some(hint) = self.mobility.hints.get(fqdn) else {
            return;
        };
        if hint.seq != seq {
            return;
        }
        let attempt = hint.tries;
        if attempt == 1 {
            // Karn: only a first transmission's ack times a round trip.
            let sample = now.duration_since(hint.first_sent);
            self.observe_rtt(fqdn, sample);
        }
        self.mobility.hints.remove(fqdn);
        self.stats.acks_received += 1;
        debug!(peer = %fqdn, %seen, attempt, "hint acked");
        self.burst_progress(now, Some(fqdn), true);
        // The partner has our new address: TCP toward it may retransmit now.
        if let Some(p) = self.partners.get(fqdn) {
            let op = KernelOp::Repoint {
                peer_vip: p.peer_vip,
                local_vip: p.local_vip,
                addr: p.addr,
                kick: true,
                esp: None,
            };
            self.kernel(op);
        }
    }

    /// A move carried by a handshake (no session was there for a hint) is confirmed.
    pub(super) fn hint_confirmed(&mut self, now: Instant, fqdn: &Fqdn) {
        self.mobility.hints.remove(fqdn);
        self.burst_progress(now, Some(fqdn), true);
    }

    /// A negotiation ended unconfirmed: if it carried a move, the partner is given up on.
    pub(super) fn ended_without_confirmation(&mut self, fqdn: &Fqdn) {
        if let Some(now) = self.limits.now() {
            self.burst_progress(now, Some(fqdn), false);
        }
    }

    /// An authenticated NAK: the partner lost our pair.
    pub(super) fn on_nak(
        &mut self,
        now: Instant,
        fqdn: &Fqdn,
        dropped_src_vip: Ipv4Addr,
        dropped_dst_vip: Ipv4Addr,
    ) {
        let ours = self
            .partners
            .get(fqdn)
            .is_some_and(|p| p.local_vip == dropped_src_vip && p.peer_vip == dropped_dst_vip);
        if ours {
            info!(peer = %fqdn, "NAK: the partner lost our pair; negotiating again");
            self.renegotiate(now, fqdn);
        }
    }

    /// An unauthenticated NAK cue: someone at `from` dropped our packets and knows
    /// nothing of them. Only a cue to handshake again (rate-limited per partner), which
    /// changes nothing if it was forged.
    pub(super) fn on_nak_cue(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        dropped_src_vip: Ipv4Addr,
        dropped_dst_vip: Ipv4Addr,
    ) {
        let Some(partner) = self.partners.by_vip(dropped_dst_vip) else {
            return;
        };
        if partner.local_vip != dropped_src_vip {
            return;
        }
        let fqdn = partner.fqdn.clone();
        if self
            .mobility
            .nak_cues
            .get(&fqdn)
            .is_some_and(|t| now.duration_since(*t) < NAK_CUE_INTERVAL)
        {
            return;
        }
        self.mobility.nak_cues.insert(fqdn.clone(), now);
        info!(peer = %fqdn, %from, "NAK cue: the partner may have lost our pair; negotiating again");
        self.renegotiate(now, &fqdn);
    }

    fn cue_allowed(&mut self, vip: Ipv4Addr, now: Instant) -> bool {
        if self.mobility.cues.len() > 4096 {
            self.mobility
                .cues
                .retain(|_, t| now.duration_since(*t) < CUE_INTERVAL);
        }
        match self.mobility.cues.get(&vip) {
            Some(t) if now.duration_since(*t) < CUE_INTERVAL => false,
            _ => {
                self.mobility.cues.insert(vip, now);
                true
            }
        }
    }

    /// What the kernel module reports.
    pub fn kernel_event(&mut self, now: Instant, event: KernelEvent) {
        self.limits.advance(now);
        match event {
            KernelEvent::Unknown {
                peer_vip,
                local_vip,
                seen,
            } => {
                let known = self
                    .partners
                    .by_vip(peer_vip)
                    .filter(|p| p.local_vip == local_vip)
                    .map(|p| (p.fqdn.clone(), p.addr));
                if let Some((fqdn, addr)) = known {
                    // Our kernel lost a mapping we hold.
                    if self.cue_allowed(peer_vip, now) {
                        info!(peer = %fqdn, "the kernel lost a mapping we hold: installing it again");
                        self.kernel(KernelOp::Install {
                            peer_vip,
                            local_vip,
                            addr,
                            esp: None,
                        });
                    }
                    return;
                }
                if self.pends_expect(peer_vip, local_vip) {
                    // A pair being confirmed: its first packets may beat the confirmation.
                    return;
                }
                let at_seen = self
                    .partners
                    .iter()
                    .find(|p| p.addr == seen)
                    .map(|p| p.fqdn.clone());
                if let Some(index) = at_seen.and_then(|fqdn| self.usable_session(&fqdn, now)) {
                    // A partner uses VIPs we do not know: it should negotiate again.
                    if self.cue_allowed(peer_vip, now) {
                        self.send_in(
                            index,
                            SocketAddrV4::new(seen, self.cfg.port),
                            &Control::Nak {
                                dropped_src_vip: peer_vip,
                                dropped_dst_vip: local_vip,
                            },
                        );
                    }
                    return;
                }
                // We know nothing of this pair: say so, unauthenticated, at a bounded rate.
                if self.limits.cue_to(seen) {
                    debug!(%peer_vip, %seen, "packet from a VIP we know nothing of: sending a NAK cue");
                    self.out.push_back(Output::Send {
                        to: SocketAddrV4::new(seen, self.cfg.port),
                        bytes: wire::nak_cue(peer_vip, local_vip),
                    });
                }
            }
            KernelEvent::Moved { peer_vip, seen, .. } => {
                // A cue, not a proof: ask the partner at that address; only its
                // authenticated answer from there re-points it.
                let Some(fqdn) = self.partners.by_vip(peer_vip).map(|p| p.fqdn.clone()) else {
                    return;
                };
                if self.cue_allowed(peer_vip, now) {
                    self.probe(now, &fqdn, seen);
                }
            }
            KernelEvent::Roamed { peer_vip, addr } => {
                // The kernel followed the partner already, on its authenticated packet, and
                // kicked TCP: our record follows, the kernel is told the same again (which
                // tells `vipctl watch`), and a hint on its way goes there.
                let Some(fqdn) = self.partners.by_vip(peer_vip).map(|p| p.fqdn.clone()) else {
                    return;
                };
                if self.roam(&fqdn, addr, false).is_some() {
                    self.hint_follows_roam(now, &fqdn, addr);
                }
            }
            KernelEvent::NoMapping { peer_vip } => {
                if let Some(p) = self.partners.by_vip(peer_vip) {
                    let op = KernelOp::Install {
                        peer_vip,
                        local_vip: p.local_vip,
                        addr: p.addr,
                        esp: None,
                    };
                    if self.cue_allowed(peer_vip, now) {
                        self.kernel(op);
                    }
                }
            }
            KernelEvent::Lost => {
                if self.limits.log(LogKind::Peer) {
                    warn!("kernel events were lost: checking the table");
                }
                let id = self.kernel(KernelOp::Dump);
                self.purposes.insert(id, Purpose::Dump(DumpFor::Resync));
            }
            KernelEvent::EspRenew { peer_vip, missing } => {
                // Only the kernel reports these, at most once per SA or per 30 s of a
                // pair without one; a negotiation under way brings new SAs anyway.
                let Some(fqdn) = self.partners.by_vip(peer_vip).map(|p| p.fqdn.clone()) else {
                    return;
                };
                if self.negs.contains_key(&fqdn) {
                    return;
                }
                debug!(peer = %fqdn, missing, "ESP keys aged out: a new session");
                self.rekey(now, &fqdn, None, missing);
            }
        }
    }

    /// Whether a pending handshake agreed on this pair: its first packets may beat its
    /// confirmation.
    fn pends_expect(&self, peer_vip: Ipv4Addr, local_vip: Ipv4Addr) -> bool {
        self.pends
            .values()
            .any(|p| p.agreed() == Some((peer_vip, local_vip)))
    }

    /// The periodic look at the kernel's table: leases, garbage collection, rekeys, and
    /// anything the kernel lacks.
    pub(super) fn housekeeping(&mut self, now: Instant, mappings: &[KernelMapping]) {
        self.resync(mappings);
        let active = self.cfg.active;
        let lease = self.cfg.lease;
        self.mobility
            .unused_since
            .retain(|vip, _| mappings.iter().any(|m| m.peer_vip == *vip));
        for m in mappings {
            let Some(partner) = self.partners.by_vip(m.peer_vip).cloned() else {
                if m.invalid {
                    self.collect_invalid(now, m);
                }
                continue;
            };
            let fqdn = partner.fqdn.clone();
            if let Gc::Lease(idle) = self.cfg.gc
                && self.idle_for(now, m) >= idle
            {
                info!(peer = %fqdn, vip = %partner.peer_vip, "idle mapping collected");
                self.mobility.unused_since.remove(&m.peer_vip);
                self.partners.remove(&fqdn);
                self.detach_partner(&fqdn);
                self.dirty = true;
                self.kernel(KernelOp::Remove {
                    peer_vip: partner.peer_vip,
                    local_vip: partner.local_vip,
                    fqdn: Some(fqdn),
                });
                continue;
            }
            // Section 3.2: sending, but silent for a lease: it may have moved unseen.
            let sending = m.last_tx.is_some_and(|age| age < lease);
            let silent = m.last_rx.is_none_or(|age| age >= lease);
            if sending && silent {
                self.locate(&fqdn);
            }
            // An active partner's session is renewed before it ages out.
            let is_active = m
                .last_rx
                .into_iter()
                .chain(m.last_tx)
                .any(|age| age < active);
            if is_active && !self.negs.contains_key(&fqdn) && self.wants_rekey(&fqdn, now) {
                self.rekey(now, &fqdn, None, false);
            }
        }
    }

    /// How long the mapping has carried no packet either way. One that never carried a
    /// packet is as old as our first sight of it so: one installed a moment ago has not
    /// been idle for long yet.
    fn idle_for(&mut self, now: Instant, m: &KernelMapping) -> Duration {
        match m.last_rx.into_iter().chain(m.last_tx).min() {
            Some(age) => {
                self.mobility.unused_since.remove(&m.peer_vip);
                age
            }
            None => now.saturating_duration_since(
                *self.mobility.unused_since.entry(m.peer_vip).or_insert(now),
            ),
        }
    }

    /// Section 3.1: a VIP marked invalid stays in the kernel (which drops its packets) until
    /// garbage collection: under the lease GC, `gc_idle_secs` after the last packet it
    /// carried before it was marked (the kernel does not count the packets it drops).
    /// Its mapping, policies and SAs then go, but the VIP is retired, not freed: a
    /// connection may still be sending to it, so it is never handed out again. One that an
    /// earlier run marked is taken over first (it counts against `max_partners` like ours);
    /// vipd treats every invalid mapping in its namespace as its own.
    fn collect_invalid(&mut self, now: Instant, m: &KernelMapping) {
        self.partners.invalidate(m.peer_vip);
        let Gc::Lease(idle) = self.cfg.gc else {
            return;
        };
        if self.idle_for(now, m) < idle {
            return;
        }
        info!(vip = %m.peer_vip, "invalid VIP collected (retired: never handed out again)");
        self.mobility.unused_since.remove(&m.peer_vip);
        self.partners.retire_invalid(m.peer_vip);
        self.dirty = true;
        self.kernel(KernelOp::Remove {
            peer_vip: m.peer_vip,
            local_vip: m.local_vip.unwrap_or(self.cfg.home_vip),
            fqdn: None,
        });
    }

    fn wants_rekey(&self, fqdn: &Fqdn, now: Instant) -> bool {
        let Some(index) = self.links.get(fqdn).and_then(|l| l.current) else {
            return true;
        };
        let Some(slot) = self.sessions.get(&index) else {
            return true;
        };
        let age = now.duration_since(slot.session.created);
        let due = if slot.session.initiator {
            REKEY_AFTER_TIME
        } else {
            REKEY_AFTER_TIME + RESPONDER_REKEY_LAG
        };
        age >= due
            || slot.session.wants_rekey(now)
                && slot.session.sent() >= crate::session::REKEY_AFTER_MESSAGES
    }
}
