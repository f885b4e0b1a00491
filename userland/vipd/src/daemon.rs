//! The daemon's state and its two roles in the negotiation of paper section 3.1: the
//! requester (a local application looked a name up) and the responder (another daemon asks).
//! Mobility (our address changes, hints, acks) is in the `mobility` submodule.

mod mobility;

use crate::{
    config::Config,
    dns::{ALookup, Upstream, magic_name},
    kernel::Kernel,
    peers::{Claim, Peer, Peers},
};
use anyhow::{Context, Result};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{DNSClass, Name, RecordType},
};
use ipnet::Ipv4Net;
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{
    net::UdpSocket,
    sync::{Semaphore, mpsc},
};
use tracing::{debug, error, info, warn};
use vip_proto::{
    crypto::{Identity, PairKeys, derive_pair_keys},
    known_peers::{KnownPeers, PeerKeyStatus},
    wire::{self, Decoded, Fqdn, Negotiation, NegotiationKind, NegotiationPacket},
};

/// What the stub answers an A query with.
#[derive(Debug)]
pub enum Answer {
    /// The partner's VIP (negotiated now or earlier).
    Vip(Ipv4Addr),
    /// Upstream's own response: legacy peers, other names, negative answers.
    Upstream(Message),
    /// No answer could be had.
    Failure(ResponseCode),
}

/// Why a negotiation did not end in a mapping.
#[derive(Debug, thiserror::Error)]
enum NegotiationError {
    #[error("no reply from the peer's daemon")]
    Timeout,
    #[error("the peer's daemon presented a key that differs from the one pinned for it")]
    KeyMismatch,
    #[error("the peer ended the negotiation")]
    Terminated,
    #[error("no agreement after {0} rounds")]
    TooManyRounds(u8),
    #[error(transparent)]
    Local(#[from] anyhow::Error),
}

/// How many requests from other daemons are worked on at once; more are dropped (each one
/// costs a DNS query, so this bounds what a flood of forged requests can make us do).
const MAX_RESPONDER_WORK: usize = 64;
/// How long a responder remembers a session, to answer retransmissions identically.
const SESSION_MEMORY: Duration = Duration::from_secs(30);

/// The responder's memory of one session.
struct ResponderSession {
    created: Instant,
    /// The requester's address checked against DNS already.
    verified: bool,
    /// The last reply sent, by round.
    reply: Option<(u8, Vec<u8>)>,
}

/// Everything the daemon knows.
pub struct Daemon {
    config: Config,
    identity: Identity,
    home_vip: Ipv4Addr,
    upstream: Upstream,
    kernel: Kernel,
    socket: Arc<UdpSocket>,
    known: Mutex<KnownPeers>,
    peers: Mutex<Peers>,
    peers_path: PathBuf,
    /// Requester side: replies are routed to the negotiation waiting on their session.
    pending: Mutex<HashMap<u64, mpsc::Sender<NegotiationPacket>>>,
    /// One negotiation at a time per name; concurrent lookups wait for it.
    inflight: Mutex<HashMap<Fqdn, Arc<tokio::sync::Mutex<()>>>>,
    sessions: Mutex<HashMap<(Fqdn, u64), ResponderSession>>,
    responder_work: Arc<Semaphore>,
    /// Mobility: our published address, and the state of hints and acks.
    mobility: mobility::State,
}

/// Locks a std mutex; a poisoned lock means a panic elsewhere already, so carry on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Daemon {
    /// Assembles the daemon; nothing is sent yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        identity: Identity,
        home_vip: Ipv4Addr,
        upstream: Upstream,
        kernel: Kernel,
        socket: UdpSocket,
        known: KnownPeers,
        peers: Peers,
        peers_path: PathBuf,
        address: Ipv4Addr,
        updater: Option<crate::dns::Updater>,
    ) -> Self {
        Self {
            config,
            identity,
            home_vip,
            upstream,
            kernel,
            socket: Arc::new(socket),
            known: Mutex::new(known),
            peers: Mutex::new(peers),
            peers_path,
            pending: Mutex::default(),
            inflight: Mutex::default(),
            sessions: Mutex::default(),
            responder_work: Arc::new(Semaphore::new(MAX_RESPONDER_WORK)),
            mobility: mobility::State::new(address, updater),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn me(&self) -> &Fqdn {
        &self.config.fqdn
    }

    fn range(&self) -> Ipv4Net {
        self.config.vip_range
    }

    /// Forwards a query upstream and relays the answer.
    pub async fn forward(&self, name: Name, class: DNSClass, rtype: RecordType) -> Answer {
        match self.upstream.query(name.clone(), class, rtype).await {
            Ok(m) => Answer::Upstream(m),
            Err(e) => {
                warn!(%name, ?rtype, "upstream failed: {e:#}");
                Answer::Failure(ResponseCode::ServFail)
            }
        }
    }

    /// The answer to an A query for `fqdn`: the partner's VIP, negotiating one if needed.
    pub async fn resolve_a(&self, fqdn: &Fqdn) -> Answer {
        if fqdn == self.me() {
            return self.forward_a(fqdn).await;
        }
        if let Some(peer) = lock(&self.peers).get(fqdn) {
            return Answer::Vip(peer.peer_vip);
        }
        let gate = lock(&self.inflight)
            .entry(fqdn.clone())
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        // Someone else may have negotiated while we waited.
        if let Some(peer) = lock(&self.peers).get(fqdn) {
            return Answer::Vip(peer.peer_vip);
        }
        let answer = self.resolve_uncached(fqdn).await;
        lock(&self.inflight).remove(fqdn);
        answer
    }

    async fn forward_a(&self, fqdn: &Fqdn) -> Answer {
        match crate::dns::to_name(fqdn) {
            Ok(name) => self.forward(name, DNSClass::IN, RecordType::A).await,
            Err(_) => Answer::Failure(ResponseCode::FormErr),
        }
    }

    async fn resolve_uncached(&self, fqdn: &Fqdn) -> Answer {
        let Ok(magic) = magic_name(fqdn) else {
            // Too long a first label for a magic name: cannot be a VIP host.
            return self.forward_a(fqdn).await;
        };
        let mut last_a: Option<ALookup> = None;
        for attempt in 0..=self.config.negotiation.restarts {
            // The two queries of section 3.1, in parallel.
            let (a, m) = tokio::join!(self.upstream.lookup_a(fqdn), self.upstream.lookup_a(&magic));
            let a = match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(%fqdn, "lookup failed: {e:#}");
                    return Answer::Failure(ResponseCode::ServFail);
                }
            };
            let (Some(&addr), Ok(m)) = (a.addrs.first(), m) else {
                return Answer::Upstream(a.response);
            };
            let Some(&proposed) = m.addrs.first() else {
                debug!(%fqdn, "no magic record: a legacy host");
                return Answer::Upstream(a.response);
            };
            match self.negotiate(fqdn, addr, proposed).await {
                Ok(vip) => return Answer::Vip(vip),
                Err(NegotiationError::Timeout) => {
                    info!(%fqdn, %addr, attempt, "negotiation timed out; asking DNS again");
                    last_a = Some(a);
                }
                Err(NegotiationError::KeyMismatch) => {
                    error!(
                        %fqdn,
                        "REFUSED: {fqdn} presented a different key than the one pinned in {}; \
                         if the host was reinstalled, remove its line from that file",
                        self.known_peers_path().display()
                    );
                    return Answer::Failure(ResponseCode::ServFail);
                }
                Err(e) => {
                    info!(%fqdn, "no VIP ({e:#}); answering with the physical address");
                    return Answer::Upstream(a.response);
                }
            }
        }
        warn!(%fqdn, "the peer's daemon never answered; answering with the physical address");
        match last_a {
            Some(a) => Answer::Upstream(a.response),
            None => Answer::Failure(ResponseCode::ServFail),
        }
    }

    fn known_peers_path(&self) -> PathBuf {
        self.config.state_dir.join("known_peers")
    }

    /// Keys for `peer`, if we have its public key pinned.
    fn pinned_keys(&self, peer: &Fqdn) -> Option<PairKeys> {
        let key = lock(&self.known).get(peer)?;
        derive_pair_keys(&self.identity, self.me(), &key, peer).ok()
    }

    /// Pins `key` for `peer` on first contact; refuses a key that differs from the pinned one.
    fn check_key(&self, peer: &Fqdn, key: &[u8; 32]) -> Result<PeerKeyStatus, NegotiationError> {
        match lock(&self.known).check(peer, key) {
            PeerKeyStatus::Mismatch { .. } => Err(NegotiationError::KeyMismatch),
            status => Ok(status),
        }
    }

    fn pin(&self, peer: &Fqdn, key: [u8; 32]) {
        let mut known = lock(&self.known);
        if matches!(known.check(peer, &key), PeerKeyStatus::New) {
            match known.pin(peer.clone(), key) {
                Ok(()) => info!(%peer, "pinned the peer's key on first contact"),
                Err(e) => error!(%peer, "cannot save the pinned key: {e}"),
            }
        }
    }

    /// Whether we accept calling `peer` by `vip`: free and in range, or outside the range
    /// with reverse DNS naming `peer` (a static VIP).
    async fn accept_peer_vip(&self, vip: Ipv4Addr, peer: &Fqdn) -> bool {
        let claim = lock(&self.peers).claim(vip, peer, self.range());
        match claim {
            Claim::Free => true,
            Claim::Taken => false,
            Claim::NeedsReverseDns => match self.upstream.lookup_ptr(vip).await {
                Ok(names) => names.contains(peer),
                Err(e) => {
                    debug!(%vip, "reverse lookup failed: {e:#}");
                    false
                }
            },
        }
    }

    /// Installs an agreed pair in the kernel and in our table.
    async fn install(&self, peer: Peer, key: [u8; 32]) -> Result<()> {
        self.kernel.add_local_vip(peer.local_vip).await?;
        self.kernel
            .route(
                Ipv4Net::new(peer.peer_vip, 32).context("a /32")?,
                peer.local_vip,
            )
            .await?;
        self.kernel
            .set_mapping(peer.peer_vip, peer.addr, peer.local_vip)
            .await?;
        self.pin(&peer.fqdn, key);
        info!(
            peer = %peer.fqdn, peer_vip = %peer.peer_vip, local_vip = %peer.local_vip, addr = %peer.addr,
            "mapping established"
        );
        let old = {
            let mut peers = lock(&self.peers);
            let old = peers.insert(peer.clone());
            if let Err(e) = peers.save(&self.peers_path) {
                warn!("cannot save {}: {e:#}", self.peers_path.display());
            }
            old
        };
        if let Some(old) = old.filter(|o| o.peer_vip != peer.peer_vip) {
            // Section 3.1: the old VIP could not be re-established; keep it out of use.
            warn!(peer = %peer.fqdn, old = %old.peer_vip, "the previous VIP is now invalid");
            lock(&self.peers).invalidate(old.peer_vip);
            if let Err(e) = self
                .kernel
                .set_mapping_invalid(old.peer_vip, old.addr, old.local_vip)
                .await
            {
                warn!("cannot mark {} invalid: {e:#}", old.peer_vip);
            }
        }
        Ok(())
    }

    // ---- requester ----

    /// Negotiates VIPs with `peer` at `addr`, starting from its proposal `proposed`.
    async fn negotiate(
        &self,
        peer: &Fqdn,
        addr: Ipv4Addr,
        proposed: Ipv4Addr,
    ) -> Result<Ipv4Addr, NegotiationError> {
        self.negotiate_from(peer, addr, proposed, None).await
    }

    /// Negotiates starting from given proposals: `my_vip` for us (the home VIP if none).
    async fn negotiate_from(
        &self,
        peer: &Fqdn,
        addr: Ipv4Addr,
        proposed: Ipv4Addr,
        my_vip: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, NegotiationError> {
        let session = rand::random::<u64>();
        let (tx, mut rx) = mpsc::channel(8);
        lock(&self.pending).insert(session, tx);
        let result = self
            .negotiate_rounds(peer, addr, proposed, my_vip, session, &mut rx)
            .await;
        lock(&self.pending).remove(&session);
        result
    }

    async fn negotiate_rounds(
        &self,
        peer: &Fqdn,
        addr: Ipv4Addr,
        proposed: Ipv4Addr,
        my_vip: Option<Ipv4Addr>,
        session: u64,
        rx: &mut mpsc::Receiver<NegotiationPacket>,
    ) -> Result<Ipv4Addr, NegotiationError> {
        let mut my_vip = my_vip.unwrap_or(self.home_vip);
        let mut peer_vip = proposed;
        let ours_already = lock(&self.peers)
            .get(peer)
            .is_some_and(|p| p.local_vip == my_vip);
        if !ours_already && !lock(&self.peers).may_use_locally(my_vip, self.range()) {
            my_vip = self.pick_local_vip();
        }
        let mac_key = self.pinned_keys(peer);
        let max_rounds = self.config.negotiation.max_rounds;
        for round in 1..=max_rounds {
            let accept = self.accept_peer_vip(peer_vip, peer).await;
            let request = Negotiation {
                kind: NegotiationKind::Request,
                session,
                round,
                accept,
                requester_fqdn: self.me().clone(),
                responder_fqdn: peer.clone(),
                requester_vip: my_vip,
                responder_vip: peer_vip,
                sender_key: self.identity.public_key(),
            };
            let bytes = request.encode(mac_key.as_ref().map(|k| &k.mac));
            let (reply, keys) = self.exchange(&bytes, peer, addr, round, rx).await?;
            drop(keys);
            if reply.terminates() {
                return Err(NegotiationError::Terminated);
            }
            if accept
                && reply.accept
                && reply.requester_vip == my_vip
                && reply.responder_vip == peer_vip
            {
                let installed = Peer {
                    fqdn: peer.clone(),
                    peer_vip,
                    local_vip: my_vip,
                    addr,
                };
                self.install(installed, reply.sender_key).await?;
                return Ok(peer_vip);
            }
            debug!(%peer, round, accept, peer_accepts = reply.accept, "another round");
            if !reply.accept {
                my_vip = self.pick_local_vip();
            }
            peer_vip = reply.responder_vip;
        }
        Err(NegotiationError::TooManyRounds(max_rounds))
    }

    /// A VIP for ourselves that no partner has; remembered as ours.
    fn pick_local_vip(&self) -> Ipv4Addr {
        let mut peers = lock(&self.peers);
        let vip = peers.fresh_vip(self.range());
        peers.add_local_vip(vip);
        vip
    }

    /// Sends a request, retransmits it once, and returns the first valid reply for `round`.
    async fn exchange(
        &self,
        bytes: &[u8],
        peer: &Fqdn,
        addr: Ipv4Addr,
        round: u8,
        rx: &mut mpsc::Receiver<NegotiationPacket>,
    ) -> Result<(Negotiation, PairKeys), NegotiationError> {
        let to = SocketAddr::V4(SocketAddrV4::new(addr, self.config.negotiation.port));
        let wait = self.config.retransmit();
        for _send in 0..2 {
            if let Err(e) = self.socket.send_to(bytes, to).await {
                debug!(%to, "negotiation send: {e}");
            }
            let sent = Instant::now();
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(Some(packet)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                let msg = &packet.msg;
                if msg.round != round
                    || &msg.responder_fqdn != peer
                    || msg.requester_fqdn != *self.me()
                {
                    debug!(%peer, round = msg.round, "stale or misaddressed reply ignored");
                    continue;
                }
                self.check_key(peer, &msg.sender_key)?;
                let keys = match derive_pair_keys(&self.identity, self.me(), &msg.sender_key, peer)
                {
                    Ok(k) => k,
                    Err(e) => {
                        warn!(%peer, "unusable peer key: {e}");
                        continue;
                    }
                };
                if packet.verify(&keys.mac).is_err() {
                    warn!(%peer, "reply with a bad MAC ignored");
                    continue;
                }
                self.observe_rtt(peer, sent.elapsed());
                return Ok((packet.msg, keys));
            }
        }
        Err(NegotiationError::Timeout)
    }

    // ---- responder and dispatch ----

    /// Receives negotiation traffic forever.
    pub async fn serve_negotiation(self: Arc<Self>) {
        let mut buf = vec![0u8; wire::MAX_MESSAGE + 1];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    warn!("negotiation receive: {e}");
                    continue;
                }
            };
            let SocketAddr::V4(from) = from else { continue };
            let packet = match wire::decode(&buf[..n]) {
                Ok(Decoded::Negotiation(p)) => p,
                Ok(Decoded::Control(c)) => {
                    let daemon = self.clone();
                    tokio::spawn(async move { daemon.on_control(c, from).await });
                    continue;
                }
                Err(e) => {
                    debug!(%from, len = n, "dropped a malformed packet: {e}");
                    continue;
                }
            };
            match packet.msg.kind {
                NegotiationKind::Reply => {
                    let tx = lock(&self.pending).get(&packet.msg.session).cloned();
                    match tx {
                        Some(tx) => {
                            let _ = tx.try_send(packet);
                        }
                        None => debug!(%from, "reply to no session of ours"),
                    }
                }
                NegotiationKind::Request => {
                    let Ok(permit) = self.responder_work.clone().try_acquire_owned() else {
                        debug!(%from, "busy: request dropped");
                        continue;
                    };
                    let daemon = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = daemon.respond(packet, from).await {
                            warn!(%from, "negotiation request: {e:#}");
                        }
                        drop(permit);
                    });
                }
            }
        }
    }

    async fn respond(&self, packet: NegotiationPacket, from: SocketAddrV4) -> Result<()> {
        let req = &packet.msg;
        if &req.responder_fqdn != self.me() {
            debug!(%from, to = %req.responder_fqdn, "request for another name ignored");
            return Ok(());
        }
        let peer = req.requester_fqdn.clone();
        let key = (peer.clone(), req.session);
        let cached = {
            let mut sessions = lock(&self.sessions);
            sessions.retain(|_, s| s.created.elapsed() < SESSION_MEMORY);
            sessions
                .get(&key)
                .and_then(|s| s.reply.as_ref())
                .filter(|(round, _)| *round == req.round)
                .map(|(_, bytes)| bytes.clone())
        };
        if let Some(bytes) = cached {
            // A retransmission: the same answer again, without redoing the checks.
            self.socket.send_to(&bytes, SocketAddr::V4(from)).await?;
            return Ok(());
        }
        if let Err(NegotiationError::KeyMismatch) = self.check_key(&peer, &req.sender_key) {
            error!(
                %peer, %from,
                "REFUSED: a negotiation request for {peer} carries a different key than the one \
                 pinned in {}; if the host was reinstalled, remove its line from that file",
                self.known_peers_path().display()
            );
            return Ok(());
        }
        let keys = derive_pair_keys(&self.identity, self.me(), &req.sender_key, &peer)
            .map_err(|e| anyhow::anyhow!("unusable key from {peer}: {e}"))?;
        if packet.has_mac() && packet.verify(&keys.mac).is_err() {
            warn!(%peer, %from, "request with a bad MAC ignored");
            return Ok(());
        }
        let verified = lock(&self.sessions).get(&key).is_some_and(|s| s.verified);
        if !verified {
            // Section 3.1: the requester's name must map to the address it speaks from.
            let a = self.upstream.lookup_a(&peer).await?;
            if !a.addrs.contains(from.ip()) {
                warn!(%peer, %from, dns = ?a.addrs, "request ignored: the name does not map to the sender's address");
                return Ok(());
            }
            lock(&self.sessions).insert(
                key.clone(),
                ResponderSession {
                    created: Instant::now(),
                    verified: true,
                    reply: None,
                },
            );
        }

        let accept = self.accept_peer_vip(req.requester_vip, &peer).await;
        // Our VIP toward the requester: its proposal if it accepted it and it is free here,
        // otherwise one we pick.
        let mut my_vip = req.responder_vip;
        let mine_ok = lock(&self.peers).may_use_locally(my_vip, self.range())
            || lock(&self.peers)
                .get(&peer)
                .is_some_and(|p| p.local_vip == my_vip);
        let done = if req.accept && mine_ok {
            accept
        } else {
            if !req.accept || !mine_ok {
                my_vip = self.pick_local_vip();
            }
            false
        };
        if done {
            let installed = Peer {
                fqdn: peer.clone(),
                peer_vip: req.requester_vip,
                local_vip: my_vip,
                addr: *from.ip(),
            };
            self.install(installed, req.sender_key).await?;
        }
        let reply = Negotiation {
            kind: NegotiationKind::Reply,
            session: req.session,
            round: req.round,
            accept,
            requester_fqdn: peer.clone(),
            responder_fqdn: self.me().clone(),
            requester_vip: req.requester_vip,
            responder_vip: my_vip,
            sender_key: self.identity.public_key(),
        };
        let bytes = reply.encode(Some(&keys.mac));
        if let Some(s) = lock(&self.sessions).get_mut(&key) {
            s.reply = Some((req.round, bytes.clone()));
        }
        self.socket.send_to(&bytes, SocketAddr::V4(from)).await?;
        Ok(())
    }
}
