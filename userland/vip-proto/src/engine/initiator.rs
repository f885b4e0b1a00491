//! The initiator's side: a local application looked a name up (or a pair needs a new
//! session, or a partner lost our pair). DNS gives the peer's address, its proposed VIP
//! (the magic record) and its key; then each negotiation round is one handshake, whose
//! response completes a session; an agreed pair is installed here at once (so the lookup
//! is answered after one round trip) and confirmed to the responder, which installs it
//! only then. Without the responder's acknowledgement the pair is taken back: both ends
//! hold it, or neither does.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::limits::LogKind;
use super::{
    After, Claim, DnsAnswer, Engine, Id, KernelOp, KeyVerdict, LookupAnswer, Output, PairSas,
    Partner, Purpose, Query,
};
use crate::esp::{Aead, EspSa};
use crate::fqdn::Fqdn;
use crate::handshake::{self, Initiator};
use crate::session::Session;
use crate::wire::{Control, CookieReply, Handshake, InitiationPayload, MAC_LEN, ResponsePayload};

/// Initiations of a round whose response is still awaited: a response (or a cookie reply)
/// to any of them is taken, so a slow path or a queue at a busy responder (longer than our
/// retransmission timeout) does not make every answer stale. Eight covers every
/// initiation a first contact sends with the default `restarts`.
const OUTSTANDING: usize = 8;
/// The longest wait between two initiations of a round: the wait doubles from the RTO up
/// to this. With the defaults a first contact tries for about 7.5 s before it answers with
/// the physical address (below the 10 s a stub resolver waits by default), and outlasts a
/// queue of a few seconds in front of a loaded responder, where the cookie reply to one
/// initiation and the retry it allows each wait their turn.
const MAX_INITIATION_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between two confirmations: a loss burst at a flooded responder
/// (its socket buffer overflowing) is outlasted by confirmations spread across
/// [`super::CONFIRM_WINDOW`], not by a few sent at its start.
const MAX_CONFIRM_WAIT: Duration = Duration::from_secs(2);
/// Initiations per round before going back to DNS.
const SENDS_PER_TRY: u32 = 2;

/// Why we negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goal {
    /// A lookup: first contact.
    Lookup,
    /// A new session for a pair we have (its age, or a move); `kick` has TCP retransmit
    /// once it is confirmed (the path changed).
    Rekey { kick: bool },
    /// The partner lost our pair (a NAK): negotiate again from the previous values.
    Renegotiate,
}

enum Stage {
    /// Waiting for DNS: the peer's addresses, its magic record, its key.
    Dns {
        address: (Id, Option<DnsAnswer>),
        magic: (Id, Option<DnsAnswer>),
        key: (Id, Option<DnsAnswer>),
    },
    /// Waiting for the reverse lookup of a static VIP the peer proposed.
    Reverse(Id),
    /// Initiations are out (see `Negotiation::outstanding`).
    Handshake { deadline: Instant },
    /// The agreed pair is being installed in the kernel; `esp_out` waits for the
    /// responder's acknowledgement (a rekey: see `KernelOp::EspOut`).
    Installing {
        session: Session,
        esp_out: Option<EspSa>,
    },
    /// Installed; the responder has not acknowledged our confirmation yet.
    Confirming {
        index: u32,
        tries: u32,
        /// When the first confirmation went: the pair is taken back once
        /// [`super::CONFIRM_WINDOW`] has passed since without an acknowledgement.
        since: Instant,
        deadline: Instant,
        esp_out: Option<EspSa>,
    },
}

/// An initiation whose response is awaited.
struct Outstanding {
    initiator: Box<Initiator>,
    sent: Instant,
    round: u8,
}

/// One negotiation (a name has at most one at a time).
pub(super) struct Negotiation {
    /// This round's latest initiations, oldest first (at most `OUTSTANDING`).
    outstanding: Vec<Outstanding>,
    goal: Goal,
    waiters: Vec<Id>,
    stage: Stage,
    restarts: u32,
    /// Initiations sent in this try (see `SENDS_PER_TRY`).
    sends: u32,
    /// Initiations sent in this round: the exponent of the retransmission backoff.
    round_sends: u32,
    round: u8,
    my_vip: Ipv4Addr,
    peer_vip: Ipv4Addr,
    accept: bool,
    addr: Ipv4Addr,
    key: [u8; 32],
    /// DNSSEC vouched for `key` (in this negotiation's answer, or when it was pinned).
    vouched: bool,
    /// This negotiation's key record answer validated `key` (which alone may replace a pin).
    validated: bool,
    cookie: Option<([u8; MAC_LEN], Instant)>,
    /// The partner entry before this negotiation, if any.
    previous: Option<Partner>,
}

impl Negotiation {
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Handshake { deadline, .. } | Stage::Confirming { deadline, .. } => {
                Some(*deadline)
            }
            _ => None,
        }
    }
}

impl Engine {
    /// A local application asks for `fqdn`'s address (an A query to the stub).
    pub fn lookup(&mut self, now: Instant, id: Id, fqdn: Fqdn) {
        self.limits.advance(now);
        if fqdn == self.cfg.me {
            return self.answer(id, LookupAnswer::Upstream);
        }
        if let Some(p) = self.partners.get(&fqdn) {
            let vip = p.peer_vip;
            return self.answer(id, LookupAnswer::Vip(vip));
        }
        if let Some(neg) = self.negs.get_mut(&fqdn) {
            neg.waiters.push(id);
            return;
        }
        if self.partners.len() >= self.cfg.max_partners {
            if self.limits.log(LogKind::Dropped) {
                warn!(peer = %fqdn, max = self.cfg.max_partners, "partner table full: answering with the physical address");
            }
            return self.answer(id, LookupAnswer::Upstream);
        }
        self.start_negotiation(now, fqdn, Goal::Lookup, vec![id], None);
    }

    fn answer(&mut self, id: Id, answer: LookupAnswer) {
        self.out.push_back(Output::Answer { id, answer });
    }

    /// Starts a negotiation with `fqdn`. With a `partner` (rekey, renegotiation) it
    /// proposes the pair's VIPs and knows where and who the peer is; a rekey asks no DNS.
    pub(super) fn start_negotiation(
        &mut self,
        now: Instant,
        fqdn: Fqdn,
        goal: Goal,
        waiters: Vec<Id>,
        partner: Option<Partner>,
    ) {
        if self.negs.contains_key(&fqdn) {
            return;
        }
        let (my_vip, peer_vip, addr, key) = match &partner {
            Some(p) => (p.local_vip, p.peer_vip, p.addr, p.key),
            None => (
                self.cfg.home_vip,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                [0; 32],
            ),
        };
        let neg = Negotiation {
            outstanding: Vec::new(),
            goal,
            waiters,
            stage: Stage::Reverse(0),
            restarts: 0,
            sends: 0,
            round_sends: 0,
            round: 1,
            my_vip,
            peer_vip,
            accept: partner.is_some(),
            addr,
            key,
            vouched: partner.as_ref().is_some_and(|p| self.vouched_and_pinned(p)),
            validated: false,
            cookie: None,
            previous: partner,
        };
        // A rekey reuses the partner's key only while it is the one pinned: after an unpin
        // or an edited known-peers file, the key is asked of DNS (and judged) again.
        let key_pinned = self.pins.get(&fqdn) == Some(&key);
        self.negs.insert(fqdn.clone(), neg);
        match goal {
            Goal::Rekey { .. } if key_pinned => self.send_round(now, &fqdn),
            Goal::Rekey { .. } | Goal::Lookup | Goal::Renegotiate => self.ask_dns(&fqdn),
        }
    }

    fn ask_dns(&mut self, fqdn: &Fqdn) {
        let Some(magic) = fqdn.magic() else {
            // No magic name fits: cannot be a VIP host.
            return self.finish(fqdn, LookupAnswer::Upstream);
        };
        let purpose = || Purpose::Negotiation(fqdn.clone());
        let address = self.query(Query::Address(fqdn.clone()), purpose());
        let magic = self.query(Query::Magic(magic), purpose());
        let key = self.query(Query::Key(fqdn.clone()), purpose());
        if let Some(neg) = self.negs.get_mut(fqdn) {
            neg.stage = Stage::Dns {
                address: (address, None),
                magic: (magic, None),
                key: (key, None),
            };
        }
    }

    /// Ends a negotiation, answering its lookups.
    fn finish(&mut self, fqdn: &Fqdn, answer: LookupAnswer) {
        if let Some(neg) = self.negs.remove(fqdn) {
            self.ended_without_confirmation(fqdn);
            for o in &neg.outstanding {
                self.neg_by_index.remove(&o.initiator.sender_index);
            }
            for id in neg.waiters {
                self.answer(id, answer);
            }
        }
    }

    pub(super) fn negotiation_dns(&mut self, now: Instant, fqdn: &Fqdn, id: Id, answer: DnsAnswer) {
        let Some(neg) = self.negs.get_mut(fqdn) else {
            return;
        };
        match &mut neg.stage {
            Stage::Dns {
                address,
                magic,
                key,
            } => {
                for slot in [address, magic, key] {
                    if slot.0 == id {
                        slot.1 = Some(answer.clone());
                    }
                }
            }
            Stage::Reverse(expected) if *expected == id => {
                neg.accept = matches!(&answer, DnsAnswer::Names(names) if names.contains(fqdn));
                return self.send_round(now, fqdn);
            }
            _ => return,
        }
        let Stage::Dns {
            address: (_, Some(address)),
            magic: (_, Some(magic)),
            key: (_, Some(key)),
        } = &neg.stage
        else {
            return;
        };
        let (address, magic, key) = (address.clone(), magic.clone(), key.clone());
        self.dns_complete(now, fqdn, address, magic, key);
    }

    /// The three answers of section 3.1's lookup (with the key): legacy host, refusal, or
    /// a first proposal.
    fn dns_complete(
        &mut self,
        now: Instant,
        fqdn: &Fqdn,
        address: DnsAnswer,
        magic: DnsAnswer,
        key: DnsAnswer,
    ) {
        let addr = match address {
            DnsAnswer::Addresses(a) if !a.is_empty() => {
                a.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED)
            }
            DnsAnswer::Failed => return self.finish(fqdn, LookupAnswer::Failed),
            // No address: upstream's answer says so (NXDOMAIN, no data).
            _ => return self.finish(fqdn, LookupAnswer::Upstream),
        };
        let proposed = match magic {
            DnsAnswer::Addresses(a) if !a.is_empty() => {
                a.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED)
            }
            _ => {
                debug!(peer = %fqdn, "no magic record: a legacy host");
                return self.finish(fqdn, LookupAnswer::Upstream);
            }
        };
        let (responder_key, vouched, validated) = match self.judge_key_counted(fqdn, &key, None) {
            KeyVerdict::Use {
                key,
                vouched,
                validated,
            } => (key, vouched, validated),
            KeyVerdict::RolledBack => {
                if self.limits.log(LogKind::KeyRefused) {
                    tracing::error!(
                        peer = %fqdn,
                        "REFUSED: DNSSEC vouches only for a key {fqdn} had before a rotation \
                         (a replayed old key record?)"
                    );
                }
                return self.finish(fqdn, LookupAnswer::Failed);
            }
            KeyVerdict::PinMismatch => {
                if self.limits.log(LogKind::KeyRefused) {
                    tracing::error!(
                        peer = %fqdn,
                        "REFUSED: DNS publishes a different key for {fqdn} than the one pinned; \
                         if the host was reinstalled, unpin it (vipctl unpin {fqdn})"
                    );
                }
                return self.finish(fqdn, LookupAnswer::Failed);
            }
            KeyVerdict::Bogus => {
                if self.limits.log(LogKind::KeyRefused) {
                    tracing::error!(
                        peer = %fqdn,
                        "REFUSED: the key record for {fqdn} does not validate (DNSSEC): \
                         unsigned, stripped or forged, or the resolver drops signatures"
                    );
                }
                return self.finish(fqdn, LookupAnswer::Failed);
            }
            KeyVerdict::NotPublished => {
                if self.limits.log(LogKind::Peer) {
                    warn!(peer = %fqdn, "publishes a VIP but no key: answering with its physical address");
                }
                return self.finish(fqdn, LookupAnswer::Upstream);
            }
        };
        let previous = self.partners.get(fqdn).cloned();
        let Some(neg) = self.negs.get_mut(fqdn) else {
            return;
        };
        neg.addr = addr;
        neg.key = responder_key;
        neg.vouched = vouched;
        neg.validated = validated;
        if previous.is_none() || neg.goal == Goal::Lookup {
            neg.peer_vip = proposed;
        }
        self.choose_and_send(now, fqdn);
    }

    /// Decides what we propose for ourselves and whether we accept the peer's VIP, then
    /// sends the round (after a reverse lookup, for a static VIP).
    fn choose_and_send(&mut self, now: Instant, fqdn: &Fqdn) {
        let range = self.cfg.vip_range;
        let Some(neg) = self.negs.get(fqdn) else {
            return;
        };
        let (mut my_vip, peer_vip) = (neg.my_vip, neg.peer_vip);
        let ours_already = self
            .partners
            .get(fqdn)
            .is_some_and(|p| p.local_vip == my_vip);
        if !ours_already && !self.partners.may_use_locally(my_vip, range) {
            my_vip = self.fresh_local_vip();
        }
        let claim = self.partners.claim(peer_vip, fqdn, range);
        if let Some(neg) = self.negs.get_mut(fqdn) {
            neg.my_vip = my_vip;
            neg.accept = claim == Claim::Free;
        }
        if claim == Claim::NeedsReverseDns {
            let id = self.query(Query::Reverse(peer_vip), Purpose::Negotiation(fqdn.clone()));
            if let Some(neg) = self.negs.get_mut(fqdn) {
                neg.stage = Stage::Reverse(id);
            }
            return;
        }
        self.send_round(now, fqdn);
    }

    pub(super) fn fresh_local_vip(&mut self) -> Ipv4Addr {
        let vip = self
            .partners
            .fresh_vip(self.cfg.vip_range, &mut super::random_u64);
        self.partners.add_local_vip(vip);
        vip
    }

    /// Sends this round's initiation (a new handshake every time: new ephemeral key, new
    /// index, next counter).
    pub(super) fn send_round(&mut self, now: Instant, fqdn: &Fqdn) {
        if self.counter >= self.counter_end {
            if self.limits.log(LogKind::Peer) {
                tracing::error!("initiation counters used up: restart vipd");
            }
            return self.finish(fqdn, LookupAnswer::Failed);
        }
        let index = self.new_index();
        let counter = self.counter;
        self.counter += 1;
        let rto = self.rto(fqdn);
        let me = self.cfg.me.clone();
        let secret = self.identity.secret_bytes();
        let offer = self.esp_offer();
        let Some(neg) = self.negs.get_mut(fqdn) else {
            return;
        };
        let payload = InitiationPayload {
            counter,
            requester: me,
            responder: fqdn.clone(),
            round: neg.round,
            accept: neg.accept,
            esp: offer,
            requester_vip: neg.my_vip,
            responder_vip: neg.peer_vip,
        };
        let cookie = neg
            .cookie
            .filter(|(_, got)| now.duration_since(*got) < handshake::COOKIE_LIFETIME)
            .map(|(c, _)| c);
        let (initiator, bytes) =
            match handshake::initiate(&secret, &neg.key, index, &payload, cookie.as_ref()) {
                Ok(x) => x,
                Err(e) => {
                    warn!(peer = %fqdn, "cannot start a handshake: {e}");
                    return self.finish(fqdn, LookupAnswer::Failed);
                }
            };
        // Earlier rounds' initiations are no answer any more; this round's oldest goes
        // when there are too many.
        let round = neg.round;
        let stale = neg.outstanding.iter().filter(|o| o.round != round).count();
        let excess = (neg.outstanding.len() - stale + 1).saturating_sub(OUTSTANDING);
        let mut dropped = Vec::new();
        neg.outstanding.retain(|o| {
            let keep = o.round == round;
            if !keep {
                dropped.push(o.initiator.sender_index);
            }
            keep
        });
        for o in neg.outstanding.drain(..excess) {
            dropped.push(o.initiator.sender_index);
        }
        neg.outstanding.push(Outstanding {
            initiator: Box::new(initiator),
            sent: now,
            round,
        });
        neg.sends += 1;
        neg.round_sends += 1;
        let to = SocketAddrV4::new(neg.addr, self.cfg.port);
        neg.stage = Stage::Handshake {
            deadline: now + initiation_wait(rto, neg.round_sends),
        };
        for old in dropped {
            self.neg_by_index.remove(&old);
        }
        self.neg_by_index.insert(index, fqdn.clone());
        self.stats.initiations_sent += 1;
        self.out.push_back(Output::Send { to, bytes });
    }

    pub(super) fn negotiation_timeout(&mut self, now: Instant, fqdn: &Fqdn) {
        let restarts = self.cfg.restarts;
        let Some(neg) = self.negs.get_mut(fqdn) else {
            return;
        };
        match &mut neg.stage {
            Stage::Handshake { .. } => {
                if neg.sends < SENDS_PER_TRY {
                    return self.send_round(now, fqdn);
                }
                neg.sends = 0;
                neg.restarts += 1;
                if neg.restarts > restarts {
                    let goal = neg.goal;
                    if self.limits.log(LogKind::Peer) {
                        warn!(peer = %fqdn, ?goal, "the peer's daemon never answered");
                    }
                    return self.finish(fqdn, LookupAnswer::Upstream);
                }
                // Section 3.1: after a retransmission, start over from DNS (the peer may
                // have moved). A rekey too: it starts at the address we know, but a partner
                // that moved while our daemon was down, or at the same time as we did,
                // hinted into a session we no longer have and is only found through DNS.
                // Only where it is sent is taken from DNS: the pair follows the source of
                // the authenticated response.
                self.ask_dns(fqdn)
            }
            Stage::Confirming {
                index,
                tries,
                since,
                deadline,
                ..
            } => {
                if now.saturating_duration_since(*since) >= super::CONFIRM_WINDOW {
                    return self.confirmation_failed(fqdn);
                }
                *tries += 1;
                let wait = (self.cfg.retransmit.max(Duration::from_millis(50))
                    * (1 << (*tries).min(5)))
                .min(MAX_CONFIRM_WAIT);
                *deadline = (now + wait).min(*since + super::CONFIRM_WINDOW);
                let (index, round, to) = (
                    *index,
                    neg.round,
                    SocketAddrV4::new(neg.addr, self.cfg.port),
                );
                self.send_in(index, to, &Control::Confirm { round });
            }
            _ => {}
        }
    }

    /// The responder never acknowledged: take back what this negotiation installed.
    fn confirmation_failed(&mut self, fqdn: &Fqdn) {
        let Some(neg) = self.negs.remove(fqdn) else {
            return;
        };
        self.ended_without_confirmation(fqdn);
        if self.limits.log(LogKind::Peer) {
            warn!(peer = %fqdn, "no confirmation from the peer: taking the pair back");
        }
        match neg.previous {
            // A rekey or a renegotiation that kept the VIPs: the pair stands; only the new
            // session goes.
            Some(previous)
                if previous.peer_vip == neg.peer_vip && previous.local_vip == neg.my_vip =>
            {
                if let Some(link) = self.links.get_mut(fqdn) {
                    if let Some(index) = link.current.take() {
                        self.sessions.remove(&index);
                    }
                    link.current = link.previous.take();
                }
            }
            _ => {
                if let Some(p) = self.partners.remove(fqdn) {
                    self.detach_partner(fqdn);
                    self.dirty = true;
                    self.kernel(KernelOp::Remove {
                        peer_vip: p.peer_vip,
                        local_vip: p.local_vip,
                        fqdn: Some(p.fqdn),
                    });
                }
            }
        }
    }

    pub(super) fn on_cookie_reply(&mut self, now: Instant, reply: &CookieReply<'_>) {
        let Some(fqdn) = self.neg_by_index.get(&reply.receiver_index).cloned() else {
            return;
        };
        let Some(neg) = self.negs.get_mut(&fqdn) else {
            return;
        };
        let Some(o) = neg
            .outstanding
            .iter()
            .find(|o| o.initiator.sender_index == reply.receiver_index)
        else {
            return;
        };
        // Back at DNS after retransmitting, the cookie waits for the next initiation.
        let waiting_for_dns = matches!(neg.stage, Stage::Dns { .. });
        if !matches!(neg.stage, Stage::Handshake { .. }) && !waiting_for_dns {
            return;
        }
        match o.initiator.open_cookie(reply) {
            Ok(cookie) => {
                self.stats.cookies_received += 1;
                debug!(peer = %fqdn, "the peer is under load: retrying with its cookie");
                neg.cookie = Some((cookie, now));
                if !waiting_for_dns {
                    // Retry at once: the cookie proves our address.
                    neg.sends = neg.sends.saturating_sub(1);
                    self.send_round(now, &fqdn);
                }
            }
            Err(e) => debug!(peer = %fqdn, "cookie reply refused: {e}"),
        }
    }

    pub(super) fn on_response(&mut self, now: Instant, from: SocketAddrV4, hs: &Handshake<'_>) {
        if !self.own_mac_keys.check_mac1(hs) {
            return;
        }
        let Some(fqdn) = self.neg_by_index.get(&hs.receiver_index).cloned() else {
            return;
        };
        let Some(neg) = self.negs.get_mut(&fqdn) else {
            return;
        };
        // Before the response, the stage is Handshake, or Dns when we went back to DNS
        // after retransmitting (a response to an earlier initiation still counts).
        if !matches!(neg.stage, Stage::Handshake { .. } | Stage::Dns { .. }) {
            return;
        }
        let Some(position) = neg
            .outstanding
            .iter()
            .position(|o| o.initiator.sender_index == hs.receiver_index)
        else {
            return;
        };
        let Some(awaited) = neg.outstanding.get_mut(position) else {
            return;
        };
        let reply = match awaited.initiator.read_response(hs) {
            Ok(reply) => reply,
            Err(e) => {
                // Forged or damaged: keep waiting for the genuine response.
                if self.limits.log(LogKind::Garbage) {
                    debug!(peer = %fqdn, "response refused: {e}");
                }
                return;
            }
        };
        let answered = neg.outstanding.swap_remove(position);
        let others: Vec<u32> = neg
            .outstanding
            .drain(..)
            .map(|o| o.initiator.sender_index)
            .collect();
        neg.stage = Stage::Reverse(0);
        self.neg_by_index.remove(&hs.receiver_index);
        for index in others {
            self.neg_by_index.remove(&index);
        }
        let sent = answered.sent;
        let session = match answered.initiator.into_session(hs.sender_index, now) {
            Ok(s) => s,
            Err(e) => {
                warn!(peer = %fqdn, "cannot complete the session: {e}");
                return self.finish(&fqdn, LookupAnswer::Failed);
            }
        };
        self.stats.handshakes_completed += 1;
        self.observe_rtt(&fqdn, now.duration_since(sent));
        let Some(neg) = self.negs.get_mut(&fqdn) else {
            return;
        };
        if reply.round != neg.round {
            // Each round has its own handshakes, and earlier rounds' are forgotten: only a
            // responder that answers with another round than it was asked gets here.
            return self.finish(&fqdn, LookupAnswer::Failed);
        }
        // The responder answered from where it is: that is its address.
        neg.addr = *from.ip();
        self.on_reply(now, &fqdn, session, reply);
    }

    fn on_reply(&mut self, now: Instant, fqdn: &Fqdn, session: Session, reply: ResponsePayload) {
        let max_rounds = self.cfg.max_rounds;
        if !self.negs.contains_key(fqdn) {
            return;
        }
        if reply.terminates() {
            debug!(peer = %fqdn, "the peer ended the negotiation");
            return self.finish(fqdn, LookupAnswer::Upstream);
        }
        let Ok(esp) = self.esp_with(reply.esp) else {
            if self.limits.log(LogKind::Peer) {
                warn!(peer = %fqdn, "the peer does not offer ESP, which we require: no VIP pair");
            }
            return self.finish(fqdn, LookupAnswer::Upstream);
        };
        let Some(neg) = self.negs.get_mut(fqdn) else {
            return;
        };
        let agreed = neg.accept
            && reply.accept
            && reply.requester_vip == neg.my_vip
            && reply.responder_vip == neg.peer_vip;
        if agreed {
            return self.install_agreed(now, fqdn, session, esp);
        }
        if neg.round >= max_rounds {
            debug!(peer = %fqdn, rounds = max_rounds, "no agreement");
            return self.finish(fqdn, LookupAnswer::Upstream);
        }
        neg.round += 1;
        neg.sends = 0;
        neg.round_sends = 0;
        let rejected_mine = !reply.accept;
        neg.peer_vip = reply.responder_vip;
        if rejected_mine {
            let vip = self.fresh_local_vip();
            if let Some(neg) = self.negs.get_mut(fqdn) {
                neg.my_vip = vip;
            }
        }
        self.choose_and_send(now, fqdn);
    }

    /// Both agree: install here (for a pair that did not change, only re-point), then
    /// confirm. With ESP, the session's inbound SA is keyed first (the responder may send
    /// with it as soon as it has our confirmation); the outbound one too for a new pair,
    /// but for a pair that already has SAs only after the responder acknowledged (until
    /// then it may not have the inbound twin, and the older SA still works).
    fn install_agreed(
        &mut self,
        now: Instant,
        fqdn: &Fqdn,
        mut session: Session,
        esp: Option<Aead>,
    ) {
        let (inbound, outbound) = match esp {
            Some(aead) => {
                let Some((inbound, outbound)) = session.esp.take_both(aead, true) else {
                    warn!(peer = %fqdn, "the session gave no ESP keys");
                    return self.finish(fqdn, LookupAnswer::Failed);
                };
                (Some(inbound), Some(outbound))
            }
            None => {
                session.esp.forget();
                (None, None)
            }
        };
        let Some(neg) = self.negs.get_mut(fqdn) else {
            return;
        };
        let same_pair = neg
            .previous
            .as_ref()
            .is_some_and(|p| p.peer_vip == neg.peer_vip && p.local_vip == neg.my_vip);
        let (op, esp_out) = if same_pair {
            let kick = matches!(neg.goal, Goal::Rekey { kick: true });
            let esp = inbound.map(|inbound| PairSas {
                inbound,
                outbound: None,
            });
            let op = KernelOp::Repoint {
                peer_vip: neg.peer_vip,
                local_vip: neg.my_vip,
                addr: neg.addr,
                kick,
                esp,
            };
            (op, outbound)
        } else {
            let esp = inbound.map(|inbound| PairSas { inbound, outbound });
            let op = KernelOp::Install {
                peer_vip: neg.peer_vip,
                local_vip: neg.my_vip,
                addr: neg.addr,
                esp,
            };
            (op, None)
        };
        neg.stage = Stage::Installing { session, esp_out };
        let id = self.kernel(op);
        self.purposes
            .insert(id, Purpose::Then(After::InitiatorInstalled(fqdn.clone())));
        let _ = now;
    }

    pub(super) fn initiator_installed(&mut self, now: Instant, fqdn: &Fqdn, ok: bool) {
        let Some(mut neg) = self.negs.remove(fqdn) else {
            return;
        };
        let Stage::Installing { session, esp_out } =
            std::mem::replace(&mut neg.stage, Stage::Reverse(0))
        else {
            self.negs.insert(fqdn.clone(), neg);
            return;
        };
        if !ok {
            for id in std::mem::take(&mut neg.waiters) {
                self.answer(id, LookupAnswer::Failed);
            }
            return;
        }
        let partner = Partner {
            fqdn: fqdn.clone(),
            peer_vip: neg.peer_vip,
            local_vip: neg.my_vip,
            addr: neg.addr,
            key: neg.key,
            last_counter: neg.previous.as_ref().map_or(0, |p| p.last_counter),
            vouched: neg.vouched,
        };
        let old = self.partners.insert(partner);
        if let Some(old) = old.filter(|o| o.peer_vip != neg.peer_vip) {
            self.invalidate(&old);
        }
        self.pin(fqdn, neg.key, neg.vouched, neg.validated);
        self.dirty = true;
        let index = session.local_index;
        self.attach_session(fqdn, session);
        if neg.goal == Goal::Lookup {
            info!(peer = %fqdn, peer_vip = %neg.peer_vip, local_vip = %neg.my_vip, addr = %neg.addr, "mapping established");
        }
        for id in std::mem::take(&mut neg.waiters) {
            self.answer(id, LookupAnswer::Vip(neg.peer_vip));
        }
        let to = SocketAddrV4::new(neg.addr, self.cfg.port);
        let round = neg.round;
        let wait = self.rto(fqdn).max(Duration::from_millis(50));
        neg.stage = Stage::Confirming {
            index,
            tries: 1,
            since: now,
            deadline: now + wait,
            esp_out,
        };
        self.negs.insert(fqdn.clone(), neg);
        self.send_in(index, to, &Control::Confirm { round });
    }

    /// Section 3.1: the previous VIP could not be kept; it stays in the kernel, invalid,
    /// until garbage collection.
    pub(super) fn invalidate(&mut self, old: &Partner) {
        warn!(peer = %old.fqdn, old = %old.peer_vip, "the previous VIP is now invalid");
        self.partners.invalidate(old.peer_vip);
        self.kernel(KernelOp::Invalidate {
            peer_vip: old.peer_vip,
            local_vip: old.local_vip,
            addr: old.addr,
            fqdn: old.fqdn.clone(),
        });
    }

    pub(super) fn on_confirm_ack(&mut self, now: Instant, fqdn: &Fqdn, index: u32, round: u8) {
        let Some(neg) = self.negs.get(fqdn) else {
            return;
        };
        let Stage::Confirming {
            index: expected, ..
        } = &neg.stage
        else {
            return;
        };
        if *expected != index || neg.round != round {
            return;
        }
        let Some(mut neg) = self.negs.remove(fqdn) else {
            return;
        };
        if let Stage::Confirming {
            esp_out: Some(sa), ..
        } = std::mem::replace(&mut neg.stage, Stage::Reverse(0))
        {
            self.kernel(KernelOp::EspOut {
                peer_vip: neg.peer_vip,
                local_vip: neg.my_vip,
                sa,
            });
        }
        let first_contact = neg.previous.is_none();
        let moved = matches!(neg.goal, Goal::Rekey { kick: true });
        if neg.goal == Goal::Renegotiate {
            info!(peer = %fqdn, vip = %neg.peer_vip, "mapping re-established");
        }
        // Packets sent before the peer installed (a first SYN) were dropped there; after a
        // move the path is new: have TCP retransmit now rather than after its backoff.
        if first_contact || moved || neg.goal == Goal::Renegotiate {
            self.kernel(KernelOp::Repoint {
                peer_vip: neg.peer_vip,
                local_vip: neg.my_vip,
                addr: neg.addr,
                kick: true,
                esp: None,
            });
        }
        // Only a handshake made to carry a move confirms it: one confirmed just after a
        // move may answer a confirmation sent before, from the old address, and the hint
        // on its way must then still be acked (or sent again).
        if moved {
            self.hint_confirmed(now, fqdn);
        }
    }

    /// A rekey toward `addr` (a MOVED cue, a lease): its response, authenticated, comes
    /// from the peer's real address, which the pair then points at.
    pub(super) fn rekey(&mut self, now: Instant, fqdn: &Fqdn, to: Option<Ipv4Addr>, kick: bool) {
        let Some(mut partner) = self.partners.get(fqdn).cloned() else {
            return;
        };
        if let Some(addr) = to {
            partner.addr = addr;
        }
        self.start_negotiation(
            now,
            fqdn.clone(),
            Goal::Rekey { kick },
            Vec::new(),
            Some(partner),
        );
    }

    /// Negotiates again from the previous values (section 3.1, after a NAK).
    pub(super) fn renegotiate(&mut self, now: Instant, fqdn: &Fqdn) {
        let Some(partner) = self.partners.get(fqdn).cloned() else {
            return;
        };
        self.start_negotiation(
            now,
            fqdn.clone(),
            Goal::Renegotiate,
            Vec::new(),
            Some(partner),
        );
    }
}

/// How long to wait for an answer to the `sends`-th initiation of a round: the RTO,
/// doubled for each earlier one, at most [`MAX_INITIATION_WAIT`] (or the RTO, if longer).
fn initiation_wait(rto: Duration, sends: u32) -> Duration {
    let doublings = sends.saturating_sub(1).min(16);
    rto.saturating_mul(1 << doublings)
        .min(MAX_INITIATION_WAIT.max(rto))
}
