//! The daemon's I/O around the protocol engine (`vip_proto::engine`), as `quinn` is around
//! `quinn-proto`: one task owns the engine and feeds it what happens (datagrams, lookups,
//! DNS answers, kernel results and events, address changes, time); what it asks for is
//! done by other tasks that report back through the same channel. Nothing here decides
//! anything about the protocol, and nothing blocks the engine's task: sockets are
//! non-blocking, DNS queries and updates run as tasks of their own, kernel changes go to a
//! worker in order, and files are written by the writer task.

use crate::{dns, kernel::KernelWorker, state::Writer};
use anyhow::{Result, bail};
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
};
use tracing::{debug, warn};
use vip_proto::{
    Fqdn, control,
    engine::{
        Admission, Config as EngineConfig, DnsAnswer, Engine, Id, KernelEvent, KernelMapping,
        KernelOp, Lane, LookupAnswer, Output, PinsReloaded,
    },
};

/// What the engine's task is told.
pub enum Input {
    /// A local application looks a name up.
    Lookup {
        fqdn: Fqdn,
        reply: oneshot::Sender<LookupAnswer>,
    },
    /// A datagram on the protocol's port.
    Datagram { from: SocketAddrV4, bytes: Vec<u8> },
    /// The answer to a DNS query.
    Dns { id: Id, answer: DnsAnswer },
    /// A kernel change is done.
    KernelDone { id: Id, result: Result<(), String> },
    /// A kernel dump.
    KernelDump {
        id: Id,
        mappings: Vec<KernelMapping>,
    },
    /// A kernel event.
    KernelEvent(KernelEvent),
    /// Our address changed.
    Address(Ipv4Addr),
    /// One of our addresses was removed (after `Address` for the same change).
    AddressRemoved,
    /// A DNS update is done.
    UpdateDone { id: Id, ok: bool },
    /// Log the engine's counters (SIGUSR1).
    LogStats,
    /// A request on the control socket that the engine answers.
    Control {
        request: control::Request,
        reply: oneshot::Sender<control::Reply>,
    },
    /// The configuration was read again: the engine takes `config`'s changeable settings
    /// and the known-peers file's pins, and answers with what needs a restart and what
    /// changed in the pins (or why the file does not load: then nothing changes).
    Reload {
        config: Box<EngineConfig>,
        reply: oneshot::Sender<Result<(Vec<&'static str>, PinsReloaded), String>>,
    },
    /// A task the daemon cannot do without has ended: the daemon ends too (and systemd
    /// restarts it) rather than carry on half-alive.
    Fatal(String),
}

/// Queued inputs from inside the daemon (lookups, DNS answers, kernel events) at most;
/// senders wait beyond that. The network's datagrams have queues of their own.
pub const INPUT_QUEUE: usize = 4096;
/// Datagrams other than initiations (responses, cookie replies, control messages) wait in
/// a queue of their own and are dropped when it is full: the socket reader never waits, so
/// a flood of forgeries fills this queue, not the kernel's socket buffer, and cannot make
/// the kernel drop the initiations that the lanes below protect.
pub const DATAGRAM_QUEUE: usize = 256;
/// Initiations wait in a short queue of their own, and are dropped when it is full: under
/// a flood of them the wait stays far below an initiator's retransmission timeout (a long
/// queue would make every answer late), and nothing else waits behind them.
pub const INITIATION_QUEUE: usize = 128;
/// Datagrams read in a row without once finding the socket empty, past which the reader
/// counts itself behind: datagrams are waiting in the kernel, and an initiation's
/// Diffie-Hellman would make them wait longer. Behind, initiations without our cookie are
/// answered with one from here and never reach the engine, as WireGuard's "under load" is
/// a queue's length and not a rate (a flood of valid-`mac1` initiations slower than the
/// engine's load threshold, but faster than it can run Diffie-Hellman, once filled the
/// 4-MiB socket buffer with 10 s of datagrams: every answer came late). About half a
/// second of reading under emulation, a few milliseconds on real hardware.
pub const BACKLOG: u32 = 256;
/// The reader lets the runtime's other tasks run every this many datagrams: reads that
/// never find the socket empty never wait, so they never yield by themselves.
const READS_PER_YIELD: u32 = 64;

/// Initiations that carry our cookie for their source wait in a queue of their own,
/// served before the other initiations (the per-source rate keeps one sender from
/// filling it): a flood of forged initiations cannot shed a real sender's retry.
pub const PROVEN_QUEUE: usize = 64;

/// The queues datagrams wait in (see [`receive`]), in the order the engine serves them.
pub struct Lanes {
    pub proven: mpsc::Receiver<Input>,
    pub datagrams: mpsc::Receiver<Input>,
    pub unproven: mpsc::Receiver<Input>,
}

/// What happened to datagrams before they reached the engine.
#[derive(Default)]
pub struct Door {
    /// Dropped because their queue was full.
    pub shed: AtomicU64,
    /// Initiations queued in the proven lane.
    pub proven: AtomicU64,
    /// Dropped for not parsing (the engine would drop them too).
    pub garbage: AtomicU64,
    /// Cookie replies sent to shed initiations.
    pub cookies: AtomicU64,
    /// Initiations without our cookie kept from the engine because the reader was behind
    /// ([`BACKLOG`]); each is answered with a cookie (counted in `cookies` too).
    pub behind: AtomicU64,
}

/// Whether the reader is behind: how many datagrams it has read since it last found the
/// socket empty.
#[derive(Default)]
struct Backlog {
    streak: u32,
}

impl Backlog {
    /// A datagram was read; true once [`BACKLOG`] have been read in a row.
    fn read(&mut self) -> bool {
        self.streak = self.streak.saturating_add(1);
        self.streak > BACKLOG
    }

    /// The socket was found empty.
    fn emptied(&mut self) {
        self.streak = 0;
    }
}

impl Door {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A handle on the engine's task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Input>,
}

impl Handle {
    pub fn new(tx: mpsc::Sender<Input>) -> Self {
        Self { tx }
    }

    /// Asks the engine to answer a control request.
    pub async fn control(&self, request: control::Request) -> control::Reply {
        let (reply, answer) = oneshot::channel();
        let gone = || control::Reply::Error {
            message: "the daemon's engine is gone".into(),
        };
        if self
            .tx
            .send(Input::Control { request, reply })
            .await
            .is_err()
        {
            return gone();
        }
        answer.await.unwrap_or_else(|_| gone())
    }

    /// Asks the engine for `fqdn` (a stub's A query).
    pub async fn lookup(&self, fqdn: Fqdn) -> LookupAnswer {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Input::Lookup { fqdn, reply }).await.is_err() {
            return LookupAnswer::Failed;
        }
        answer.await.unwrap_or(LookupAnswer::Failed)
    }

    pub async fn send(&self, input: Input) {
        let _ = self.tx.send(input).await;
    }

    pub fn sender(&self) -> mpsc::Sender<Input> {
        self.tx.clone()
    }
}

/// What the engine's task drives.
pub struct Io {
    pub socket: Arc<UdpSocket>,
    pub upstream: dns::Upstream,
    pub updater: Option<Arc<dns::Updater>>,
    pub update_ttl: u32,
    pub me: Fqdn,
    pub kernel: KernelWorker,
    pub writer: Writer,
    pub handle: Handle,
    /// What happened to initiations before they reached the engine.
    pub door: Arc<Door>,
}

/// Runs the engine until a fatal input or the end of the inputs. A due timer comes first,
/// then the daemon's own inputs, initiations that carry our cookie, other datagrams, and
/// last the other initiations (the lanes a flood fills).
pub async fn run(
    mut engine: Engine,
    mut inputs: mpsc::Receiver<Input>,
    mut lanes: Lanes,
    io: Io,
) -> Result<()> {
    let mut lookups: HashMap<Id, oneshot::Sender<LookupAnswer>> = HashMap::new();
    let mut next_lookup: Id = 1 << 62;
    loop {
        let timeout = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let input = tokio::select! {
            biased;
            // First, so that a busy queue cannot hold back retransmissions and expiries.
            _ = async { tokio::time::sleep_until(timeout.unwrap_or_else(tokio::time::Instant::now)).await }, if timeout.is_some() => {
                engine.tick(Instant::now());
                drain(&mut engine, &io, &mut lookups).await;
                continue;
            }
            input = inputs.recv() => input,
            Some(initiation) = lanes.proven.recv() => Some(initiation),
            Some(datagram) = lanes.datagrams.recv() => Some(datagram),
            Some(initiation) = lanes.unproven.recv() => Some(initiation),
        };
        let now = Instant::now();
        match input {
            None => bail!("the engine's inputs are gone"),
            Some(Input::Fatal(why)) => bail!("{why}"),
            Some(Input::LogStats) => {
                let s = engine.stats();
                tracing::info!(
                    partners = s.partners,
                    pending = s.pending,
                    sessions = s.sessions,
                    negotiations = s.negotiations,
                    initiations_sent = s.initiations_sent,
                    handshakes_completed = s.handshakes_completed,
                    responses_sent = s.responses_sent,
                    cookies_sent = s.cookies_sent,
                    cookies_received = s.cookies_received,
                    pairs_confirmed = s.pairs_confirmed,
                    hints_sent = s.hints_sent,
                    hints_received = s.hints_received,
                    acks_sent = s.acks_sent,
                    acks_received = s.acks_received,
                    roams = s.roams,
                    initiations_dropped = s.initiations_dropped,
                    garbage = s.garbage,
                    keys_vouched = s.keys_vouched,
                    keys_bogus = s.keys_bogus,
                    key_rotations = s.key_rotations,
                    queued = inputs.len(),
                    datagrams_queued = lanes.datagrams.len(),
                    initiations_queued = lanes.unproven.len(),
                    initiations_proven_queued = lanes.proven.len(),
                    door_shed = io.door.shed.load(Ordering::Relaxed),
                    door_garbage = io.door.garbage.load(Ordering::Relaxed),
                    door_cookies = io.door.cookies.load(Ordering::Relaxed),
                    door_behind = io.door.behind.load(Ordering::Relaxed),
                    initiations_proven = io.door.proven.load(Ordering::Relaxed),
                    "stats"
                );
            }
            Some(Input::Control { request, reply }) => {
                let _ = reply.send(control_reply(&mut engine, now, request));
            }
            Some(Input::Reload { config, reply }) => {
                // The file is read here, in the engine's task: every pin and unpin the
                // engine asked for before is in it (the writer takes them in order), and
                // none can come between the reading and the engine taking its pins.
                let answer = match io.writer.reload_pins().await {
                    Ok(pins) => Ok((engine.reconfigure(*config), engine.set_pins(pins))),
                    Err(e) => Err(format!("the known-peers file does not load: {e:#}")),
                };
                let _ = reply.send(answer);
            }
            Some(Input::Lookup { fqdn, reply }) => {
                next_lookup += 1;
                lookups.insert(next_lookup, reply);
                engine.lookup(now, next_lookup, fqdn);
            }
            Some(Input::Datagram { from, bytes }) => engine.handle_datagram(now, from, &bytes),
            Some(Input::Dns { id, answer }) => engine.dns_answer(now, id, answer),
            Some(Input::KernelDone { id, result }) => engine.kernel_done(now, id, result),
            Some(Input::KernelDump { id, mappings }) => engine.kernel_dump(now, id, mappings),
            Some(Input::KernelEvent(event)) => engine.kernel_event(now, event),
            Some(Input::Address(addr)) => engine.address_changed(now, addr),
            Some(Input::AddressRemoved) => engine.local_address_removed(now),
            Some(Input::UpdateDone { id, ok }) => engine.update_done(now, id, ok),
        }
        drain(&mut engine, &io, &mut lookups).await;
    }
}

/// What the engine says to a control request. `Resolve` is answered here only for a
/// partner's physical address; the control task asks the stub's way (or DNS) otherwise.
fn control_reply(engine: &mut Engine, now: Instant, request: control::Request) -> control::Reply {
    use control::{Reply, Request};
    match request {
        Request::Peers {} => Reply::Peers {
            peers: engine.peers(now),
        },
        Request::Unpin { name } => {
            let was_pinned = engine.unpin(&name);
            Reply::Unpinned { name, was_pinned }
        }
        Request::Resolve { name, .. } => {
            let addresses = engine
                .partners()
                .get(&name)
                .map(|p| p.addr)
                .into_iter()
                .collect();
            Reply::Resolved { name, addresses }
        }
        // The control task serves these itself (it reads the files, or streams changes).
        Request::Watch {} | Request::Reload {} => Reply::Error {
            message: "served by the control socket, not the engine".into(),
        },
    }
}

/// What `vipctl watch` clients are told once the kernel has made `op`: mapping changes
/// only, with the partner's name (none for an invalid VIP collected).
fn mapping_change(engine: &Engine, op: &KernelOp) -> Option<control::Reply> {
    use control::ChangeKind;
    let held = |vip: Ipv4Addr| engine.partners().by_vip(vip).map(|p| p.fqdn.clone());
    let (change, peer_vip, local_vip, address, name) = match op {
        &KernelOp::Install {
            peer_vip,
            local_vip,
            addr,
            ..
        } => (
            ChangeKind::Added,
            peer_vip,
            local_vip,
            Some(addr),
            held(peer_vip),
        ),
        &KernelOp::Repoint {
            peer_vip,
            local_vip,
            addr,
            ..
        } => (
            ChangeKind::Moved,
            peer_vip,
            local_vip,
            Some(addr),
            held(peer_vip),
        ),
        KernelOp::Invalidate {
            peer_vip,
            local_vip,
            addr,
            fqdn,
        } => (
            ChangeKind::Invalidated,
            *peer_vip,
            *local_vip,
            Some(*addr),
            Some(fqdn.clone()),
        ),
        KernelOp::Remove {
            peer_vip,
            local_vip,
            fqdn,
        } => (
            ChangeKind::Removed,
            *peer_vip,
            *local_vip,
            None,
            fqdn.clone(),
        ),
        KernelOp::EspOut { .. } | KernelOp::Dump => return None,
    };
    Some(control::Reply::Change {
        change,
        name,
        peer_vip,
        local_vip,
        address,
    })
}

/// Does what the engine asked.
async fn drain(
    engine: &mut Engine,
    io: &Io,
    lookups: &mut HashMap<Id, oneshot::Sender<LookupAnswer>>,
) {
    while let Some(output) = engine.poll_output() {
        match output {
            Output::Send { to, bytes } => {
                if let Err(e) = io.socket.send_to(&bytes, SocketAddr::V4(to)).await {
                    debug!(%to, "send: {e}");
                }
            }
            Output::Query { id, query } => {
                let (upstream, handle) = (io.upstream.clone(), io.handle.clone());
                tokio::spawn(async move {
                    let answer = upstream.answer(&query).await;
                    handle.send(Input::Dns { id, answer }).await;
                });
            }
            Output::Answer { id, answer } => {
                if let Some(reply) = lookups.remove(&id) {
                    let _ = reply.send(answer);
                }
            }
            Output::Kernel { id, op } => {
                let change = mapping_change(engine, &op);
                io.kernel.submit(id, op, change);
            }
            Output::Update { id, address } => {
                let Some(updater) = io.updater.clone() else {
                    engine.update_done(Instant::now(), id, true);
                    continue;
                };
                let (handle, me, ttl) = (io.handle.clone(), io.me.clone(), io.update_ttl);
                tokio::spawn(async move {
                    let ok = match updater.publish(&[dns::Publish::A(me, address)], ttl).await {
                        Ok(()) => true,
                        Err(e) => {
                            warn!("{e:#}");
                            false
                        }
                    };
                    handle.send(Input::UpdateDone { id, ok }).await;
                });
            }
            Output::Save(json) => io.writer.save_partners(json),
            Output::Pin { fqdn, key } => io.writer.pin(fqdn, key),
            Output::Repin { fqdn, key } => io.writer.repin(fqdn, key),
            Output::Unpin { fqdn } => io.writer.unpin(fqdn),
        }
    }
}

/// The sending ends of [`Lanes`].
pub struct LaneSenders {
    pub proven: mpsc::Sender<Input>,
    pub datagrams: mpsc::Sender<Input>,
    pub unproven: mpsc::Sender<Input>,
}

/// Reads datagrams for the engine forever and never waits for the engine: what does not
/// parse is dropped at once; initiations go to their lanes (see [`INITIATION_QUEUE`],
/// [`PROVEN_QUEUE`]; `admission` sorts them by cookie), everything else to
/// [`DATAGRAM_QUEUE`]. A full queue sheds (counted in `door`), so that the kernel's socket
/// buffer never overflows behind us; a shed initiation gets a cookie reply from here
/// (`Admission::cookie_for_shed`), and so does every initiation without our cookie while
/// the reader is behind ([`BACKLOG`]).
pub async fn receive(
    socket: Arc<UdpSocket>,
    mut admission: Admission,
    lanes: LaneSenders,
    door: Arc<Door>,
) -> Result<()> {
    let mut buf = vec![0u8; vip_proto::wire::MAX_MESSAGE + 1];
    let mut backlog = Backlog::default();
    let mut reads = 0u32;
    loop {
        let (n, from) = match socket.try_recv_from(&mut buf) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                backlog.emptied();
                socket.readable().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let behind = backlog.read();
        reads = reads.wrapping_add(1);
        if reads.is_multiple_of(READS_PER_YIELD) {
            tokio::task::yield_now().await;
        }
        let SocketAddr::V4(from) = from else { continue };
        let Some(bytes) = buf.get(..n) else { continue };
        let lane = if vip_proto::wire::is_initiation(bytes) {
            admission.sort(bytes, from, Instant::now())
        } else if vip_proto::wire::parse(bytes).is_ok() {
            Lane::Other
        } else {
            Lane::Drop
        };
        let queue = match lane {
            Lane::Proven => &lanes.proven,
            Lane::Unproven if behind => {
                Door::count(&door.behind);
                send_door_cookie(&socket, &mut admission, bytes, from, &door);
                continue;
            }
            Lane::Unproven => &lanes.unproven,
            Lane::Other => &lanes.datagrams,
            Lane::Drop => {
                Door::count(&door.garbage);
                continue;
            }
        };
        let input = Input::Datagram {
            from,
            bytes: bytes.to_vec(),
        };
        match queue.try_send(input) {
            Ok(()) if lane == Lane::Proven => Door::count(&door.proven),
            Ok(()) => {}
            Err(_) => {
                Door::count(&door.shed);
                // The engine is behind: the cookie it would send under load goes from
                // here, so that a real initiator's retry can pass the flood.
                if lane == Lane::Unproven {
                    send_door_cookie(&socket, &mut admission, bytes, from, &door);
                }
            }
        }
    }
}

/// Answers an initiation the engine will not see with a cookie reply, if it deserves one
/// (`Admission::cookie_for_shed`: a valid `mac1`, within the rate).
fn send_door_cookie(
    socket: &UdpSocket,
    admission: &mut Admission,
    bytes: &[u8],
    from: SocketAddrV4,
    door: &Door,
) {
    if let Some(reply) = admission.cookie_for_shed(bytes, from, Instant::now())
        && socket.try_send_to(&reply, from.into()).is_ok()
    {
        Door::count(&door.cookies);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vip_proto::{
        Identity, engine::Partners, handshake, wire::EspOffer, wire::InitiationPayload,
    };

    fn initiation(initiator: &Identity, responder: &[u8; 32], index: u32) -> Vec<u8> {
        let payload = InitiationPayload {
            counter: u64::from(index) + 1,
            requester: "e.vip.test".parse().unwrap(),
            responder: "b.vip.test".parse().unwrap(),
            round: 1,
            accept: true,
            esp: EspOffer::default(),
            requester_vip: Ipv4Addr::new(240, 9, 9, 9),
            responder_vip: Ipv4Addr::new(240, 0, 0, 2),
        };
        handshake::initiate(&initiator.secret_bytes(), responder, index, &payload, None)
            .unwrap()
            .1
    }

    /// More initiations than BACKLOG wait in the socket before the reader starts: the
    /// first BACKLOG go to the engine's lane, the rest are answered with cookies and kept
    /// from it; once the socket has been found empty, the next initiation is queued again.
    #[tokio::test]
    async fn a_reader_that_is_behind_answers_initiations_with_cookies_instead_of_queuing_them() {
        use nix::sys::socket::{getsockopt, setsockopt, sockopt};
        let b = Identity::from_secret_bytes([2; 32]);
        let b_public = b.public_key();
        let engine = Engine::new(
            EngineConfig::new("b.vip.test".parse().unwrap(), Ipv4Addr::new(240, 0, 0, 2)),
            b,
            Partners::default(),
            HashMap::new(),
            1,
            Ipv4Addr::LOCALHOST,
        );
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Room for them all (as root, past net.core.rmem_max, as vipd's own socket).
        let _ = setsockopt(&socket, sockopt::RcvBufForce, &(4usize << 20));
        assert!(
            getsockopt(&socket, sockopt::RcvBuf).unwrap() >= 1 << 20,
            "the test needs a 1-MiB receive buffer (run as root)"
        );
        socket.set_nonblocking(true).unwrap();
        let socket = Arc::new(UdpSocket::from_std(socket).unwrap());
        let to = socket.local_addr().unwrap();
        let e = Identity::from_secret_bytes([5; 32]);
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let extra = 100;
        for i in 0..BACKLOG + extra {
            sender
                .send_to(&initiation(&e, &b_public, i), to)
                .await
                .unwrap();
        }
        let (proven, _proven_rx) = mpsc::channel(1024);
        let (datagrams, _datagrams_rx) = mpsc::channel(1024);
        let (unproven, mut unproven_rx) = mpsc::channel(1024);
        let door = Arc::new(Door::default());
        let lanes = LaneSenders {
            proven,
            datagrams,
            unproven,
        };
        let reader = tokio::spawn(receive(socket, engine.admission(), lanes, door.clone()));
        let mut cookies = 0;
        let mut buf = [0u8; 256];
        while cookies < extra {
            tokio::time::timeout(Duration::from_secs(5), sender.recv_from(&mut buf))
                .await
                .expect("a cookie reply for every initiation past the backlog")
                .unwrap();
            cookies += 1;
        }
        assert_eq!(door.behind.load(Ordering::Relaxed), u64::from(extra));
        assert_eq!(door.cookies.load(Ordering::Relaxed), u64::from(extra));
        assert_eq!(door.shed.load(Ordering::Relaxed), 0);
        assert_eq!(unproven_rx.len(), BACKLOG as usize);

        // The socket is empty now: the next initiation is the engine's again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        sender
            .send_to(&initiation(&e, &b_public, BACKLOG + extra), to)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while unproven_rx.len() <= BACKLOG as usize {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("queued for the engine");
        assert_eq!(door.behind.load(Ordering::Relaxed), u64::from(extra));
        while unproven_rx.try_recv().is_ok() {}
        reader.abort();
    }

    #[test]
    fn the_backlog_counts_reads_since_the_socket_was_last_empty() {
        let mut backlog = Backlog::default();
        assert!((0..BACKLOG).all(|_| !backlog.read()));
        assert!(backlog.read());
        backlog.emptied();
        assert!(!backlog.read());
    }
}
