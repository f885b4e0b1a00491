//! Mobility (paper sections 3.1 end and 3.2): noticing that our address changed, telling
//! DNS and every active partner (authenticated, replay-protected invalidation hints with
//! acks and adaptive retransmission), following partners that move, and the kernel's cues
//! (NAK on packets from unknown VIPs, verification on packets from moved ones, leases).

use super::*;
use crate::{config::AddressChoice, dns::Updater};
use futures::StreamExt;
use rtnetlink::MulticastGroup;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tokio::sync::oneshot;
use vip_netlink::Event;
use vip_proto::{
    replay::{ReplayWindow, initial_counter},
    wire::{Control, SealedControl, seal},
};

/// Hint transmissions before giving up. From the first retransmission on, DNS is asked
/// where the partner is now (it may have moved too: a two-sided move).
const HINT_TRIES: u32 = 10;
/// Acks to a burst of hints come back one after another: the first timeout grows with the
/// burst so that a move with many partners is not retransmitted before its acks are read.
const RTO_PER_BURST_HINT: Duration = Duration::from_micros(500);
/// In a burst larger than this, DNS is asked only from the second retransmission on.
const SMALL_BURST: usize = 8;
/// Pause between two lookups of one silent partner.
const LOOKUP_GAP: Duration = Duration::from_millis(20);
/// Partner lookups in flight at once during hints (a burst must not swamp the server).
const HINT_LOOKUPS: usize = 32;
/// Retransmission timeout before any round trip was measured.
const INITIAL_RTO: Duration = Duration::from_millis(200);
const MIN_RTO: Duration = Duration::from_millis(5);
const MAX_RTO: Duration = Duration::from_secs(2);
/// Kernel cues about one partner are acted on at most this often.
const CUE_INTERVAL: Duration = Duration::from_secs(1);

/// Mobility state of the daemon.
pub(super) struct State {
    /// Our address as published in DNS.
    address: Mutex<Ipv4Addr>,
    updater: Option<Updater>,
    /// Nonce counter for sealed messages (starts at the UNIX time in ns: never reused).
    counter: AtomicU64,
    seq: AtomicU32,
    replay: Mutex<HashMap<Fqdn, ReplayWindow>>,
    acks: Mutex<HashMap<(Fqdn, u32), oneshot::Sender<()>>>,
    /// Smoothed round trip per partner (negotiation replies and acks).
    rtt: Mutex<HashMap<Fqdn, Duration>>,
    keys: Mutex<HashMap<Fqdn, Arc<PairKeys>>>,
    /// Last time a kernel cue was acted on, per VIP.
    cues: Mutex<HashMap<Ipv4Addr, Instant>>,
    /// One address change handled at a time.
    moves: tokio::sync::Mutex<()>,
    lookups: Arc<tokio::sync::Semaphore>,
}

impl State {
    pub(super) fn new(address: Ipv4Addr, updater: Option<Updater>) -> Self {
        Self {
            address: Mutex::new(address),
            updater,
            counter: AtomicU64::new(initial_counter()),
            seq: AtomicU32::new(rand::random()),
            replay: Mutex::default(),
            acks: Mutex::default(),
            rtt: Mutex::default(),
            keys: Mutex::default(),
            cues: Mutex::default(),
            moves: tokio::sync::Mutex::new(()),
            lookups: Arc::new(tokio::sync::Semaphore::new(HINT_LOOKUPS)),
        }
    }
}

impl Daemon {
    /// Folds a round-trip sample into the partner's estimate (RFC 6298's 1/8 gain).
    pub(super) fn observe_rtt(&self, peer: &Fqdn, sample: Duration) {
        let mut rtt = lock(&self.mobility.rtt);
        let srtt = rtt.entry(peer.clone()).or_insert(sample);
        *srtt = (*srtt * 7 + sample) / 8;
    }

    /// The hint retransmission timeout for `peer`, from its measured round trip.
    fn rto(&self, peer: &Fqdn) -> Duration {
        // An ack comes after one round trip plus the partner's processing: half a round
        // trip of slack (at least 3 ms) is enough, and a premature retransmission costs
        // only a datagram and a DNS query. Not the paper's fixed 500 ms.
        lock(&self.mobility.rtt)
            .get(peer)
            .map_or(INITIAL_RTO, |srtt| {
                (*srtt + (*srtt / 2).max(Duration::from_millis(3))).clamp(MIN_RTO, MAX_RTO)
            })
    }

    /// The pairwise keys for `peer` (from its pinned key), cached.
    fn pair_keys(&self, peer: &Fqdn) -> Option<Arc<PairKeys>> {
        if let Some(keys) = lock(&self.mobility.keys).get(peer) {
            return Some(keys.clone());
        }
        let keys = Arc::new(self.pinned_keys(peer)?);
        lock(&self.mobility.keys).insert(peer.clone(), keys.clone());
        Some(keys)
    }

    async fn send_control(&self, peer: &Fqdn, control: &Control, to: SocketAddrV4) -> bool {
        let Some(keys) = self.pair_keys(peer) else {
            debug!(%peer, "no key pinned: cannot authenticate a control message");
            return false;
        };
        let counter = self.mobility.counter.fetch_add(1, Ordering::Relaxed);
        let bytes = seal(control, self.me(), counter, &keys.send);
        match self.socket.send_to(&bytes, SocketAddr::V4(to)).await {
            Ok(_) => true,
            Err(e) => {
                debug!(%to, "control send: {e}");
                false
            }
        }
    }

    fn port_of(&self, addr: Ipv4Addr) -> SocketAddrV4 {
        SocketAddrV4::new(addr, self.config.negotiation.port)
    }

    /// Points the kernel and our table at `peer`'s new address.
    async fn repoint(&self, fqdn: &Fqdn, addr: Ipv4Addr, why: &str) {
        let peer = {
            let mut peers = lock(&self.peers);
            let Some(mut peer) = peers.get(fqdn).cloned() else {
                return;
            };
            if peer.addr == addr {
                return;
            }
            peer.addr = addr;
            peers.insert(peer.clone());
            if let Err(e) = peers.save(&self.peers_path) {
                warn!("cannot save {}: {e:#}", self.peers_path.display());
            }
            peer
        };
        match self
            .kernel
            .set_mapping(peer.peer_vip, addr, peer.local_vip)
            .await
        {
            Ok(()) => info!(peer = %fqdn, %addr, why, "partner re-pointed"),
            Err(e) => warn!(peer = %fqdn, "cannot re-point: {e:#}"),
        }
    }

    // ---- our own address ----

    /// Follows our addresses and routes (rtnetlink) and reacts to a change of the address
    /// we are reached at.
    pub async fn watch_addresses(self: Arc<Self>) -> Result<()> {
        let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv4Route,
        ])
        .context("rtnetlink multicast socket")?;
        tokio::spawn(connection);
        while messages.next().await.is_some() {
            // An address and its routes arrive as a burst; look once it has passed.
            tokio::time::sleep(Duration::from_millis(2)).await;
            while messages.try_recv().is_ok() {}
            self.clone().check_address().await;
        }
        Ok(())
    }

    async fn check_address(self: Arc<Self>) {
        let _one = self.mobility.moves.lock().await;
        let new = match self.config.address {
            AddressChoice::Fixed(a) => a,
            AddressChoice::Auto => match crate::source_toward(self.config.update_server()) {
                Ok(a) => a,
                Err(e) => {
                    debug!("no usable address right now: {e:#}");
                    return;
                }
            },
        };
        let old = std::mem::replace(&mut *lock(&self.mobility.address), new);
        if old == new {
            return;
        }
        let start = Instant::now();
        info!(%old, %new, "our address changed");
        // DNS and the partners are told at the same time.
        let daemon = self.clone();
        tokio::spawn(async move {
            if let Some(updater) = &daemon.mobility.updater {
                let records = [(daemon.me().clone(), new)];
                match updater.publish(&records, daemon.config.update.ttl).await {
                    Ok(()) => info!(%new, ms = start.elapsed().as_millis() as u64, "DNS updated"),
                    Err(e) => warn!("{e:#}"),
                }
            }
        });
        let daemon = self.clone();
        tokio::spawn(daemon.hint_partners(new, start));
    }

    /// Sends hints to every partner on the Active Partner List and logs when all acked.
    async fn hint_partners(self: Arc<Self>, new: Ipv4Addr, start: Instant) {
        let active = Duration::from_secs(self.config.mobility.active_secs);
        let mappings = match self.kernel.mappings().await {
            Ok(m) => m,
            Err(e) => {
                warn!("cannot read the kernel table: {e:#}");
                return;
            }
        };
        let recent: std::collections::HashSet<Ipv4Addr> = mappings
            .iter()
            .filter(|m| {
                m.last_rx
                    .into_iter()
                    .chain(m.last_tx)
                    .any(|age| age < active)
            })
            .map(|m| m.spec.peer_vip)
            .collect();
        let partners: Vec<Peer> = lock(&self.peers)
            .iter()
            .filter(|p| recent.contains(&p.peer_vip))
            .cloned()
            .collect();
        let total = partners.len();
        let mut tasks = tokio::task::JoinSet::new();
        for peer in partners {
            tasks.spawn(self.clone().hint(peer, new, total));
        }
        let mut acked = 0;
        while let Some(r) = tasks.join_next().await {
            acked += usize::from(r.unwrap_or(false));
        }
        info!(
            partners = total,
            acked,
            ms = start.elapsed().as_secs_f64() * 1e3,
            "all active partners hinted"
        );
    }

    /// One partner: hint, wait for the ack, retransmit with backoff. From the first
    /// retransmission on, ask DNS (in parallel) where the partner is now: it may have moved
    /// too, and then its hint to us went to our old address.
    async fn hint(self: Arc<Self>, peer: Peer, new: Ipv4Addr, burst: usize) -> bool {
        let seq = self.mobility.seq.fetch_add(1, Ordering::Relaxed);
        let key = (peer.fqdn.clone(), seq);
        let (tx, mut ack) = oneshot::channel();
        lock(&self.mobility.acks).insert(key.clone(), tx);
        let mut target = peer.addr;
        let burst_floor = RTO_PER_BURST_HINT * u32::try_from(burst).unwrap_or(u32::MAX);
        let mut rto = self.rto(&peer.fqdn).max(burst_floor).min(MAX_RTO);
        let first_lookup = if burst <= SMALL_BURST { 1 } else { 2 };
        let mut dns: Option<tokio::task::JoinHandle<Option<Ipv4Addr>>> = None;
        let mut acked = false;
        for attempt in 0..HINT_TRIES {
            if *lock(&self.mobility.address) != new {
                break; // superseded by a newer move
            }
            if attempt >= first_lookup && dns.is_none() {
                // Ask DNS until it gives an address other than the one we send to: the
                // partner's own update may land well after our first look.
                let (daemon, fqdn, known) = (self.clone(), peer.fqdn.clone(), target);
                let gap = LOOKUP_GAP
                    .max(RTO_PER_BURST_HINT * 4 * u32::try_from(burst).unwrap_or(u32::MAX));
                dns = Some(tokio::spawn(async move {
                    loop {
                        {
                            let _slot = daemon.mobility.lookups.acquire().await.ok()?;
                            if let Ok(a) = daemon.upstream.lookup_a(&fqdn).await
                                && let Some(&addr) = a.addrs.first()
                                && addr != known
                            {
                                return Some(addr);
                            }
                        }
                        tokio::time::sleep(gap).await;
                    }
                }));
            }
            // The address that reaches this partner (the kernel picks the same one as the
            // outer source of our packets to it).
            let new_addr =
                crate::source_toward(SocketAddr::V4(self.port_of(target))).unwrap_or(new);
            let control = Control::Hint {
                vip: peer.local_vip,
                new_addr,
                seq,
            };
            let sent = Instant::now();
            if !self
                .send_control(&peer.fqdn, &control, self.port_of(target))
                .await
            {
                break;
            }
            let deadline = tokio::time::Instant::now() + rto;
            let outcome = loop {
                tokio::select! {
                    r = &mut ack => break Some(r.is_ok()),
                    found = async { dns.as_mut().expect("guarded by the condition").await }, if dns.is_some() => {
                        dns = None;
                        if let Ok(Some(addr)) = found && addr != target {
                            target = addr;
                            self.repoint(&peer.fqdn, addr, "no ack; DNS knows a new address").await;
                            break None; // resend there now
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break None,
                }
            };
            match outcome {
                Some(ok) => {
                    // Karn: only a first transmission's ack times a round trip.
                    if ok && attempt == 0 {
                        self.observe_rtt(&peer.fqdn, sent.elapsed());
                    }
                    debug!(peer = %peer.fqdn, attempt, "hint acked");
                    acked = ok;
                    break;
                }
                None => rto = (rto * 2).min(MAX_RTO),
            }
        }
        lock(&self.mobility.acks).remove(&key);
        if let Some(dns) = dns {
            dns.abort();
        }
        if !acked {
            warn!(peer = %peer.fqdn, "no ack to our hints");
        }
        acked
    }

    // ---- control messages from partners ----

    pub(super) async fn on_control(self: Arc<Self>, sealed: SealedControl, from: SocketAddrV4) {
        let fqdn = sealed.sender.clone();
        let Some(keys) = self.pair_keys(&fqdn) else {
            debug!(%from, peer = %fqdn, "control message from a peer with no pinned key");
            return;
        };
        let fresh = |replay: &Mutex<HashMap<Fqdn, ReplayWindow>>| {
            lock(replay)
                .get(&fqdn)
                .is_none_or(|w| w.check(sealed.counter))
        };
        if !fresh(&self.mobility.replay) {
            debug!(%from, peer = %fqdn, "replayed control message dropped");
            return;
        }
        let control = match sealed.open(&keys.recv) {
            Ok(c) => c,
            Err(e) => {
                debug!(%from, peer = %fqdn, "control message does not authenticate: {e}");
                return;
            }
        };
        // Only an authentic message moves the window.
        if !lock(&self.mobility.replay)
            .entry(fqdn.clone())
            .or_default()
            .check_and_update(sealed.counter)
        {
            return;
        }
        match control {
            Control::Hint { vip, new_addr, seq } => {
                let known = lock(&self.peers).get(&fqdn).map(|p| p.peer_vip);
                if known != Some(vip) {
                    debug!(peer = %fqdn, %vip, "hint for a VIP we do not call it by");
                    return;
                }
                self.repoint(&fqdn, new_addr, "hint").await;
                let ack = Control::Ack {
                    seq,
                    your_addr: *from.ip(),
                };
                self.send_control(&fqdn, &ack, from).await;
            }
            Control::Ack { seq, .. } => {
                if let Some(tx) = lock(&self.mobility.acks).remove(&(fqdn, seq)) {
                    let _ = tx.send(());
                }
            }
            Control::Nak {
                dropped_src_vip,
                dropped_dst_vip,
            } => {
                let previous = lock(&self.peers).get(&fqdn).cloned();
                match previous {
                    Some(p) if p.local_vip == dropped_src_vip && p.peer_vip == dropped_dst_vip => {
                        info!(peer = %fqdn, "NAK: the partner lost our mapping; renegotiating");
                        self.renegotiate(p).await;
                    }
                    _ => debug!(peer = %fqdn, "NAK about VIPs we do not use with it"),
                }
            }
        }
    }

    /// Negotiates again with a partner, proposing the previous VIPs (section 3.1).
    async fn renegotiate(&self, previous: Peer) {
        let gate = lock(&self.inflight)
            .entry(previous.fqdn.clone())
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        let addr = match self.upstream.lookup_a(&previous.fqdn).await {
            Ok(a) => a.addrs.first().copied().unwrap_or(previous.addr),
            Err(_) => previous.addr,
        };
        match self
            .negotiate_from(
                &previous.fqdn,
                addr,
                previous.peer_vip,
                Some(previous.local_vip),
            )
            .await
        {
            Ok(vip) if vip == previous.peer_vip => {
                info!(peer = %previous.fqdn, %vip, "mapping re-established")
            }
            Ok(vip) => {
                warn!(peer = %previous.fqdn, old = %previous.peer_vip, new = %vip, "renegotiated to a new VIP")
            }
            Err(e) => warn!(peer = %previous.fqdn, "renegotiation failed: {e}"),
        }
        lock(&self.inflight).remove(&previous.fqdn);
    }

    // ---- kernel events ----

    /// Acts on the module's events: NAK for packets from unknown VIPs, verification for
    /// packets from moved ones, re-installation for mappings the kernel lost.
    pub async fn watch_kernel_events(self: Arc<Self>) -> Result<()> {
        let mut listener = vip_netlink::EventListener::subscribe(self.kernel.vip())
            .await
            .context("cannot subscribe to the module's events")?;
        let (tx, mut rx) = mpsc::channel(1024);
        std::thread::Builder::new()
            .name("vip-events".into())
            .spawn(move || {
                while let Ok(event) = listener.wait() {
                    if tx.blocking_send(event).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the event thread")?;
        while let Some(event) = rx.recv().await {
            let daemon = self.clone();
            tokio::spawn(async move { daemon.on_kernel_event(event).await });
        }
        Ok(())
    }

    /// Whether a cue about `vip` may be acted on now (at most once per CUE_INTERVAL).
    fn cue_allowed(&self, vip: Ipv4Addr) -> bool {
        let mut cues = lock(&self.mobility.cues);
        let now = Instant::now();
        match cues.get(&vip) {
            Some(last) if now.duration_since(*last) < CUE_INTERVAL => false,
            _ => {
                cues.insert(vip, now);
                true
            }
        }
    }

    async fn on_kernel_event(&self, event: Event) {
        match event {
            Event::Unknown {
                peer_vip,
                local_vip,
                seen,
            } => {
                // The kernel has no mapping for this sender. If we know the partner (our
                // kernel table was flushed), NAK so that it renegotiates.
                let peer = lock(&self.peers).by_vip(peer_vip).cloned();
                let Some(peer) = peer.filter(|p| p.local_vip == local_vip) else {
                    debug!(%peer_vip, %seen, "packet from an unknown VIP: no partner to NAK");
                    return;
                };
                if !self.cue_allowed(peer_vip) {
                    return;
                }
                info!(peer = %peer.fqdn, %seen, "packet from an unmapped partner: sending a NAK");
                let nak = Control::Nak {
                    dropped_src_vip: peer_vip,
                    dropped_dst_vip: local_vip,
                };
                self.send_control(&peer.fqdn, &nak, self.port_of(seen))
                    .await;
            }
            Event::Moved { peer_vip, seen, .. } => {
                // A cue, not a proof: believe DNS (or an authenticated hint), not the packet.
                let peer = lock(&self.peers).by_vip(peer_vip).cloned();
                let Some(peer) = peer else { return };
                if !self.cue_allowed(peer_vip) {
                    return;
                }
                match self.upstream.lookup_a(&peer.fqdn).await {
                    Ok(a) if a.addrs.contains(&seen) => {
                        self.repoint(&peer.fqdn, seen, "DNS confirms the move")
                            .await
                    }
                    Ok(_) => {
                        debug!(peer = %peer.fqdn, %seen, "packets from an address DNS does not give: ignored")
                    }
                    Err(e) => debug!("cannot verify a move: {e:#}"),
                }
            }
            Event::NoMapping { peer_vip } => {
                let peer = lock(&self.peers).by_vip(peer_vip).cloned();
                if let Some(peer) = peer
                    && self.cue_allowed(peer_vip)
                {
                    info!(peer = %peer.fqdn, "the kernel lost a mapping we hold: re-installing");
                    if let Err(e) = self
                        .kernel
                        .set_mapping(peer.peer_vip, peer.addr, peer.local_vip)
                        .await
                    {
                        warn!("{e:#}");
                    }
                }
            }
            // Our own changes, echoed by the kernel.
            Event::MappingChanged { .. } => {}
        }
    }

    // ---- leases ----

    /// Section 3.2: a partner we send to but have heard nothing from for `lease_secs` may
    /// have moved without our knowing (its hint was lost, or we moved too): ask DNS.
    /// With the "lease" garbage-collection policy (section 4.1.2), mappings idle for
    /// `gc_idle_secs` are also discarded here.
    pub async fn renew_leases(self: Arc<Self>) {
        let lease = Duration::from_secs(self.config.mobility.lease_secs);
        let idle = (self.config.negotiation.gc == crate::config::GcPolicy::Lease)
            .then(|| Duration::from_secs(self.config.negotiation.gc_idle_secs));
        let period = lease.min(idle.unwrap_or(lease)) / 2;
        let mut tick = tokio::time::interval(period.max(Duration::from_millis(500)));
        loop {
            tick.tick().await;
            let Ok(mappings) = self.kernel.mappings().await else {
                continue;
            };
            for m in mappings {
                let unused =
                    |age: Option<Duration>| idle.is_some_and(|idle| age.is_none_or(|a| a >= idle));
                if unused(m.last_tx) && unused(m.last_rx) {
                    self.collect(m.spec.peer_vip).await;
                    continue;
                }
                let sending = m.last_tx.is_some_and(|age| age < lease);
                let silent = m.last_rx.is_none_or(|age| age >= lease);
                if !(sending && silent) {
                    continue;
                }
                let peer = lock(&self.peers).by_vip(m.spec.peer_vip).cloned();
                let Some(peer) = peer else { continue };
                if let Ok(a) = self.upstream.lookup_a(&peer.fqdn).await
                    && let Some(&addr) = a.addrs.first()
                {
                    self.repoint(&peer.fqdn, addr, "lease expired; DNS gives a new address")
                        .await;
                }
            }
        }
    }

    /// Discards an idle partner: its VIP may be reused from now on.
    async fn collect(&self, peer_vip: Ipv4Addr) {
        let peer = {
            let mut peers = lock(&self.peers);
            let Some(fqdn) = peers.by_vip(peer_vip).map(|p| p.fqdn.clone()) else {
                return;
            };
            let peer = peers.remove(&fqdn);
            if let Err(e) = peers.save(&self.peers_path) {
                warn!("cannot save {}: {e:#}", self.peers_path.display());
            }
            peer
        };
        let Some(peer) = peer else { return };
        match self
            .kernel
            .remove_mapping(peer.peer_vip, peer.local_vip)
            .await
        {
            Ok(()) => info!(peer = %peer.fqdn, vip = %peer.peer_vip, "idle mapping collected"),
            Err(e) => warn!("{e:#}"),
        }
    }
}
