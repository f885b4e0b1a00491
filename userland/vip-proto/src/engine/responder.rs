//! The responder's side. An initiation is checked cheapest first: `mac1` (a hash, no
//! Diffie-Hellman), the sender's rate, a cookie when we are under load (proof that the
//! sender receives at its address); only then the two Diffie-Hellman operations of
//! Noise, the initiation's counter against replays, and its key against the one pinned or
//! published in DNS. Then the negotiation round is decided and answered. Nothing is
//! installed, pinned or allocated for good: a bounded pending entry waits for the
//! initiator's confirmation, which proves that it received our response at the address
//! it claimed, and only that installs the pair.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};

use super::limits::LogKind;
use super::{
    After, Claim, DnsAnswer, Engine, Id, KernelOp, KeyVerdict, Output, Owner, PairSas, Partner,
    Purpose, Query, Slot, random_bytes,
};
use crate::esp::Aead;
use crate::fqdn::Fqdn;
use crate::handshake::{self, Responder};
use crate::wire::{Control, Handshake, MAC_LEN, ResponsePayload};

/// How long a pending handshake may take to be answered (its DNS checks).
const PENDING_LIFETIME: Duration = Duration::from_secs(5);
/// How long an answered handshake outlives the initiator's confirmations (which go on
/// for [`super::CONFIRM_WINDOW`] after our response reached it): a path's delay.
const ANSWERED_SLACK: Duration = Duration::from_secs(5);
/// Pending handshakes one initiator may have at once (its latest initiations): as many
/// as an initiator keeps outstanding, so that behind a queue its retransmissions, answered
/// late, do not push out the handshake it is already confirming.
const PENDING_PER_INITIATOR: usize = 8;
/// Key checks in DNS at once: a flood of initiations for unknown names asks DNS no more.
const MAX_KEY_CHECKS: usize = 64;
/// Refused (name, key) pairs remembered, at most.
const MAX_REFUSED: usize = 4096;
/// Pinned names whose rotation check is remembered, at most.
const MAX_ROTATION_CHECKS: usize = 4096;

enum Stage {
    /// Waiting for DNS to say which key the initiator's name publishes.
    CheckingKey(Id, Box<Responder>),
    /// Waiting for the reverse lookup of a static VIP the initiator proposed.
    CheckingReverse(Id, Box<Responder>),
    /// Answered; the session waits for the initiator's confirmation. With an agreement,
    /// (the initiator's VIP, ours).
    Responded {
        agreed: Option<(Ipv4Addr, Ipv4Addr)>,
    },
    /// Confirmed: being installed in the kernel, at the confirmation's source address.
    Installing {
        to: SocketAddrV4,
        peer_vip: Ipv4Addr,
        my_vip: Ipv4Addr,
    },
}

/// A handshake we answer, until it is confirmed or expires.
pub(super) struct Pending {
    created: Instant,
    /// When our response went out.
    answered: Option<Instant>,
    from: SocketAddrV4,
    requester: Fqdn,
    key: [u8; 32],
    counter: u64,
    round: u8,
    /// The pair's ESP, once decided (in the response).
    esp: Option<Aead>,
    /// DNSSEC vouched for `key` (in the key check's answer, or when it was pinned).
    vouched: bool,
    /// The key check's answer validated `key` (which alone may replace a pin).
    validated: bool,
    stage: Stage,
}

impl Pending {
    /// Confirmed, its kernel change under way: only `responder_installed` ends it.
    fn installing(&self) -> bool {
        matches!(self.stage, Stage::Installing { .. })
    }

    /// When it goes unconfirmed; `None` once it is being installed, whatever its age.
    /// Answered, it waits as long as the initiator keeps confirming: under a flood most
    /// confirmations may be lost, and the one that passes may come late.
    pub(super) fn expires(&self) -> Option<Instant> {
        if self.installing() {
            return None;
        }
        Some(match self.answered {
            Some(at) => at + super::CONFIRM_WINDOW + ANSWERED_SLACK,
            None => self.created + PENDING_LIFETIME,
        })
    }

    /// The pair agreed, waiting for confirmation: (the initiator's VIP, ours).
    pub(super) fn agreed(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        match self.stage {
            Stage::Responded { agreed } => agreed,
            Stage::Installing {
                peer_vip, my_vip, ..
            } => Some((peer_vip, my_vip)),
            _ => None,
        }
    }
}

impl Engine {
    pub(super) fn on_initiation(&mut self, now: Instant, from: SocketAddrV4, hs: &Handshake<'_>) {
        if !self.cookies.check_mac1(hs) {
            self.stats.initiations_dropped += 1;
            if self.limits.log(LogKind::Garbage) {
                debug!(%from, "initiation with a bad mac1 dropped");
            }
            return;
        }
        if !self.limits.initiation_from(*from.ip()) {
            self.stats.initiations_dropped += 1;
            if self.limits.log(LogKind::Dropped) {
                warn!(%from, "initiations over the rate limit dropped");
            }
            return;
        }
        let loaded =
            !self.limits.initiation_within_load() || self.pends.len() >= self.cfg.max_pending / 8;
        // A zero mac2 (no cookie yet: a flood's usual case) cannot verify; it costs no MAC.
        if loaded
            && (hs.mac2 == [0; MAC_LEN]
                || !self.cookies.check_mac2(hs, from, now, &mut random_bytes))
        {
            // Under load, only senders that prove their address get the expensive part.
            self.stats.cookies_sent += 1;
            let bytes = self.cookies.reply(hs, from, now, &mut random_bytes);
            self.out.push_back(Output::Send { to: from, bytes });
            return;
        }
        if self.pends.len() >= self.cfg.max_pending {
            self.stats.initiations_dropped += 1;
            if self.limits.log(LogKind::Dropped) {
                warn!(%from, max = self.cfg.max_pending, "pending handshakes at their limit: initiation dropped");
            }
            return;
        }
        let secret = self.identity.secret_bytes();
        let responder = match handshake::accept(&secret, hs) {
            Ok(r) => r,
            Err(e) => {
                self.stats.initiations_dropped += 1;
                if self.limits.log(LogKind::Garbage) {
                    debug!(%from, "initiation refused: {e}");
                }
                return;
            }
        };
        let p = &responder.payload;
        if p.responder != self.cfg.me
            || p.requester == self.cfg.me
            || responder.initiator_static == self.public
        {
            self.stats.initiations_dropped += 1;
            if self.limits.log(LogKind::Garbage) {
                debug!(%from, to = %p.responder, "initiation not for us");
            }
            return;
        }
        let requester = p.requester.clone();
        if self
            .partners
            .get(&requester)
            .is_some_and(|partner| p.counter <= partner.last_counter)
        {
            self.stats.initiations_dropped += 1;
            if self.limits.log(LogKind::Dropped) {
                warn!(peer = %requester, %from, "replayed initiation refused");
            }
            return;
        }
        // An initiator's latest few initiations are pending at once (it retransmits with a
        // new handshake each time, and may take the response to any of them); an older or
        // repeated one than a pending one is ignored. An initiator is a name and a key: one
        // who claims the name with another key (unverified yet) neither blocks nor evicts it.
        let key = responder.initiator_static;
        let mut same: Vec<(u64, u32)> = self
            .pends
            .iter()
            .filter(|(_, pend)| pend.requester == requester && pend.key == key)
            .map(|(i, pend)| (pend.counter, *i))
            .collect();
        if same.iter().any(|(counter, _)| *counter >= p.counter) {
            return;
        }
        same.sort_unstable();
        let excess = (same.len() + 1).saturating_sub(PENDING_PER_INITIATOR);
        // The oldest go first, but never one being installed: its confirmation came, and
        // dropping it would leave the kernel's pair without a partner or an answer.
        let installing = |index: &u32| self.pends.get(index).is_some_and(Pending::installing);
        let evicted: Vec<u32> = same
            .into_iter()
            .map(|(_, index)| index)
            .filter(|index| !installing(index))
            .take(excess)
            .collect();
        for index in evicted {
            self.drop_pending(index);
        }
        let (counter, round) = (responder.payload.counter, responder.payload.round);
        let index = self.new_index();
        let pending = |stage| Pending {
            created: now,
            answered: None,
            from,
            requester: requester.clone(),
            key,
            counter,
            esp: None,
            vouched: false,
            validated: false,
            round,
            stage,
        };
        match self.pins.get(&requester) {
            Some(pinned) if *pinned == key => {
                let vouched = self
                    .partners
                    .get(&requester)
                    .is_some_and(|p| self.vouched_and_pinned(p));
                let mut pend = pending(Stage::Responded { agreed: None });
                pend.vouched = vouched;
                self.pends.insert(index, pend);
                self.decide(now, index, responder);
            }
            // Outside the DNSSEC zones nothing could vouch for a new key: refused at once.
            Some(_) if !self.dnssec_covers(&requester) => {
                self.stats.initiations_dropped += 1;
                if self.limits.log(LogKind::KeyRefused) {
                    error!(
                        peer = %requester, %from,
                        "REFUSED: a handshake for {requester} with a different key than the one pinned; \
                         if the host was reinstalled, unpin it (vipctl unpin {requester})"
                    );
                }
            }
            // Unpinned, or perhaps a rotation its signed zone vouches for: DNS decides.
            pinned => {
                if self.refused_keys.contains_key(&(requester.clone(), key)) {
                    return;
                }
                // One rotation check per name at a time, and one a second: forgeries with
                // ever new keys for a pinned name cost a DNS question a second, not one each;
                // the real host, reinstalled, retries and gets through.
                if pinned.is_some() {
                    let recent = self.rotation_checks.get(&requester).is_some_and(|t| {
                        now.saturating_duration_since(*t) < super::ROTATION_CHECK_SPACING
                    });
                    let checking = self.pends.values().any(|p| {
                        p.requester == requester && matches!(p.stage, Stage::CheckingKey(..))
                    });
                    if recent || checking {
                        self.stats.initiations_dropped += 1;
                        return;
                    }
                    if self.rotation_checks.len() >= MAX_ROTATION_CHECKS {
                        self.rotation_checks.clear();
                    }
                    self.rotation_checks.insert(requester.clone(), now);
                }
                let checking = self
                    .pends
                    .values()
                    .filter(|p| matches!(p.stage, Stage::CheckingKey(..)))
                    .count();
                if checking >= MAX_KEY_CHECKS {
                    if self.limits.log(LogKind::Dropped) {
                        warn!(%from, "key checks in DNS at their limit: initiation dropped");
                    }
                    return;
                }
                let query = self.query(Query::Key(requester.clone()), Purpose::Pending(index));
                self.pends.insert(
                    index,
                    pending(Stage::CheckingKey(query, Box::new(responder))),
                );
            }
        }
    }

    pub(super) fn pending_dns(&mut self, now: Instant, index: u32, id: Id, answer: DnsAnswer) {
        let Some(pend) = self.pends.get_mut(&index) else {
            return;
        };
        match std::mem::replace(&mut pend.stage, Stage::Responded { agreed: None }) {
            Stage::CheckingKey(query, responder) if query == id => {
                let (requester, key, from) = (pend.requester.clone(), pend.key, pend.from);
                match self.judge_key_counted(&requester, &answer, Some(key)) {
                    KeyVerdict::Use {
                        vouched, validated, ..
                    } => {
                        if let Some(pend) = self.pends.get_mut(&index) {
                            pend.vouched = vouched;
                            pend.validated = validated;
                        }
                        self.decide(now, index, *responder);
                        return;
                    }
                    KeyVerdict::Bogus => {
                        if self.limits.log(LogKind::KeyRefused) {
                            error!(
                                peer = %requester, %from,
                                "REFUSED: the key record for {requester} does not validate (DNSSEC): \
                                 unsigned, stripped or forged, or the resolver drops signatures"
                            );
                        }
                    }
                    KeyVerdict::RolledBack => {
                        if self.limits.log(LogKind::KeyRefused) {
                            error!(
                                peer = %requester, %from,
                                "REFUSED: a handshake for {requester} with a key it had before a rotation \
                                 (a replayed old key record vouches for it)"
                            );
                        }
                    }
                    KeyVerdict::PinMismatch | KeyVerdict::NotPublished => {
                        if self.limits.log(LogKind::KeyRefused) {
                            warn!(peer = %requester, %from, "handshake refused: the key is not the one DNS publishes for the name");
                        }
                    }
                }
                self.stats.initiations_dropped += 1;
                if self.refused_keys.len() >= MAX_REFUSED {
                    self.refused_keys.clear();
                }
                self.refused_keys.insert((requester, key), now);
                self.drop_pending(index);
            }
            Stage::CheckingReverse(query, responder) if query == id => {
                let accept =
                    matches!(&answer, DnsAnswer::Names(names) if names.contains(&pend.requester));
                self.respond(now, index, *responder, accept);
            }
            other => pend.stage = other,
        }
    }

    /// Decides on the initiator's VIP (section 3.1's acceptance rule), then answers.
    fn decide(&mut self, now: Instant, index: u32, responder: Responder) {
        let Some(pend) = self.pends.get_mut(&index) else {
            return;
        };
        let requester = pend.requester.clone();
        let full =
            self.partners.get(&requester).is_none() && self.partners.len() >= self.cfg.max_partners;
        if full {
            if self.limits.log(LogKind::Dropped) {
                warn!(peer = %requester, max = self.cfg.max_partners, "partner table full: ending the negotiation");
            }
            return self.respond_with(now, index, responder, false, Some(Ipv4Addr::UNSPECIFIED));
        }
        if self.esp_with(responder.payload.esp).is_err() {
            if self.limits.log(LogKind::Peer) {
                warn!(peer = %requester, "the initiator does not offer ESP, which we require: ending the negotiation");
            }
            return self.respond_with(now, index, responder, false, Some(Ipv4Addr::UNSPECIFIED));
        }
        match self.partners.claim(
            responder.payload.requester_vip,
            &requester,
            self.cfg.vip_range,
        ) {
            Claim::Free => self.respond(now, index, responder, true),
            Claim::Taken => self.respond(now, index, responder, false),
            Claim::NeedsReverseDns => {
                let query = self.query(
                    Query::Reverse(responder.payload.requester_vip),
                    Purpose::Pending(index),
                );
                if let Some(pend) = self.pends.get_mut(&index) {
                    pend.stage = Stage::CheckingReverse(query, Box::new(responder));
                }
            }
        }
    }

    fn respond(&mut self, now: Instant, index: u32, responder: Responder, accept: bool) {
        self.respond_with(now, index, responder, accept, None)
    }

    /// Answers: our verdict on the initiator's VIP, and ours (its proposal if it accepted
    /// it and we may use it, a fresh one otherwise; `vip` overrides, 0.0.0.0 to end).
    fn respond_with(
        &mut self,
        now: Instant,
        index: u32,
        responder: Responder,
        accept: bool,
        vip: Option<Ipv4Addr>,
    ) {
        let p = &responder.payload;
        let requester = p.requester.clone();
        let mut my_vip = p.responder_vip;
        let mine_ok = self.partners.may_use_locally(my_vip, self.cfg.vip_range)
            || self
                .partners
                .get(&requester)
                .is_some_and(|partner| partner.local_vip == my_vip);
        let mut agreed = accept;
        if !p.accept || !mine_ok {
            my_vip = self.fresh_local_vip();
            agreed = false;
        }
        if let Some(vip) = vip {
            my_vip = vip;
            agreed = false;
        }
        let esp = self.esp_with(p.esp).ok().flatten();
        let payload = ResponsePayload {
            round: p.round,
            accept,
            esp: self.esp_offer(),
            requester_vip: p.requester_vip,
            responder_vip: my_vip,
        };
        let peer_vip = p.requester_vip;
        let (session, bytes) = match responder.respond(index, &payload, now) {
            Ok(x) => x,
            Err(e) => {
                debug!("cannot answer an initiation: {e}");
                return self.drop_pending(index);
            }
        };
        let Some(pend) = self.pends.get_mut(&index) else {
            return;
        };
        pend.stage = Stage::Responded {
            agreed: agreed.then_some((peer_vip, my_vip)),
        };
        pend.answered = Some(now);
        pend.esp = esp;
        let to = pend.from;
        self.sessions.insert(
            index,
            Slot {
                session,
                owner: Owner::Pending(index),
            },
        );
        self.stats.responses_sent += 1;
        self.out.push_back(Output::Send { to, bytes });
    }

    /// A control message in a pending session: only the confirmation means anything.
    pub(super) fn on_pending_control(
        &mut self,
        _now: Instant,
        from: SocketAddrV4,
        index: u32,
        control: Control,
    ) {
        let Control::Confirm { round } = control else {
            return;
        };
        let Some(pend) = self.pends.get_mut(&index) else {
            return;
        };
        let Stage::Responded {
            agreed: Some((peer_vip, my_vip)),
        } = pend.stage
        else {
            return;
        };
        if round != pend.round {
            return;
        }
        // The initiator got our response (only it can confirm in this session): the pair
        // may be installed, at the address the confirmation comes from.
        pend.stage = Stage::Installing {
            to: from,
            peer_vip,
            my_vip,
        };
        // Both of the session's SAs at once: the initiator keyed its inbound one before
        // it confirmed.
        let aead = pend.esp;
        let esp = match (aead, self.sessions.get_mut(&index)) {
            (Some(aead), Some(slot)) => match slot.session.esp.take_both(aead, false) {
                Some((inbound, outbound)) => Some(PairSas {
                    inbound,
                    outbound: Some(outbound),
                }),
                None => return self.drop_pending(index),
            },
            (Some(_), None) => return self.drop_pending(index),
            (None, _) => None,
        };
        let id = self.kernel(KernelOp::Install {
            peer_vip,
            local_vip: my_vip,
            addr: *from.ip(),
            esp,
        });
        self.purposes
            .insert(id, Purpose::Then(After::ResponderInstalled(index)));
    }

    pub(super) fn responder_installed(&mut self, _now: Instant, index: u32, ok: bool) {
        let Some(pend) = self.pends.remove(&index) else {
            return;
        };
        // The initiator's other handshakes of this negotiation are no longer needed.
        let siblings: Vec<u32> = self
            .pends
            .iter()
            .filter(|(_, p)| p.requester == pend.requester)
            .map(|(i, _)| *i)
            .collect();
        for sibling in siblings {
            self.drop_pending(sibling);
        }
        let Stage::Installing {
            to,
            peer_vip,
            my_vip,
        } = pend.stage
        else {
            self.sessions.remove(&index);
            return;
        };
        let Some(slot) = self.sessions.remove(&index) else {
            return;
        };
        if !ok {
            return;
        }
        let requester = pend.requester;
        let partner = Partner {
            fqdn: requester.clone(),
            peer_vip,
            local_vip: my_vip,
            addr: *to.ip(),
            key: pend.key,
            last_counter: pend.counter,
            vouched: pend.vouched,
        };
        let old = self.partners.insert(partner);
        let first = old.is_none();
        if let Some(old) = old.filter(|o| o.peer_vip != peer_vip) {
            self.invalidate(&old);
        }
        if first {
            tracing::info!(peer = %requester, %peer_vip, local_vip = %my_vip, addr = %to.ip(), "mapping established");
        }
        self.stats.pairs_confirmed += 1;
        self.pin(&requester, pend.key, pend.vouched, pend.validated);
        self.dirty = true;
        self.attach_session(&requester, slot.session);
        self.send_in(index, to, &Control::ConfirmAck { round: pend.round });
    }

    pub(super) fn drop_pending(&mut self, index: u32) {
        if self.pends.remove(&index).is_some()
            && self
                .sessions
                .get(&index)
                .is_some_and(|s| s.owner == Owner::Pending(index))
        {
            self.sessions.remove(&index);
        }
    }
}
