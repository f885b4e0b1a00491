//! One host running the protocol engine over a UDP socket, with a table in memory for a
//! kernel and fixed answers for DNS.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::time::sleep_until;
use vip_proto::engine::{
    DnsAnswer, Engine, Id, KernelMapping, KernelOp, LookupAnswer, Output, Query,
};
use vip_proto::wire;

/// The kernel's table, in memory. Every mapping counts as used just now (so every partner
/// is active, and gets hints).
#[derive(Default)]
pub struct FakeKernel {
    /// The mappings, by peer VIP.
    pub mappings: BTreeMap<Ipv4Addr, KernelMapping>,
}

impl FakeKernel {
    /// Carries out a change (a dump changes nothing).
    pub fn apply(&mut self, op: KernelOp) {
        match op {
            KernelOp::Install {
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
            } => {
                self.mappings.insert(
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
            KernelOp::Invalidate { peer_vip, .. } => {
                if let Some(m) = self.mappings.get_mut(&peer_vip) {
                    m.invalid = true;
                }
            }
            KernelOp::Remove { peer_vip, .. } => {
                self.mappings.remove(&peer_vip);
            }
            KernelOp::Dump | KernelOp::EspOut { .. } => {}
        }
    }
}

/// A host: its engine, its socket, its fake kernel, and what DNS answers it.
pub struct Peer {
    /// The protocol engine.
    pub engine: Engine,
    /// The kernel's table.
    pub kernel: FakeKernel,
    /// The protocol's socket.
    pub socket: UdpSocket,
    /// DNS answers by question; anything else is answered "failed".
    pub dns: HashMap<Query, DnsAnswer>,
    /// Answers to lookups, by lookup id.
    pub answers: HashMap<Id, LookupAnswer>,
}

impl Peer {
    /// A peer with no DNS answers.
    pub fn new(engine: Engine, socket: UdpSocket) -> Self {
        Self {
            engine,
            kernel: FakeKernel::default(),
            socket,
            dns: HashMap::new(),
            answers: HashMap::new(),
        }
    }

    /// Waits for one datagram or the engine's next timer (at most until `until`), feeds
    /// it to the engine, and carries out what the engine asks.
    pub async fn step(&mut self, buf: &mut [u8], until: Option<Instant>) {
        let deadline = match (self.engine.poll_timeout(), until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let far = || Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            received = self.socket.recv_from(buf) => {
                if let Ok((n, SocketAddr::V4(from))) = received
                    && let Some(bytes) = buf.get(..n)
                {
                    self.engine.handle_datagram(Instant::now(), from, bytes);
                }
            }
            () = sleep_until(deadline.unwrap_or_else(far).into()), if deadline.is_some() => {
                self.engine.tick(Instant::now());
            }
        }
        self.drain().await;
    }

    /// Runs until `done` says so or `timeout` passes; returns whether `done` said so.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Peer) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        let mut buf = vec![0u8; wire::MAX_MESSAGE + 1];
        self.drain().await;
        while !done(self) {
            if Instant::now() >= end {
                return false;
            }
            self.step(&mut buf, Some(end)).await;
        }
        true
    }

    /// Carries out what the engine asks, feeding answers back until it asks nothing more.
    pub async fn drain(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            let now = Instant::now();
            match output {
                Output::Send { to, bytes } => {
                    // A datagram that cannot be sent is lost, as on a network.
                    let _ = self.socket.send_to(&bytes, SocketAddr::V4(to)).await;
                }
                Output::Query { id, query } => {
                    let answer = self.dns.get(&query).cloned().unwrap_or(DnsAnswer::Failed);
                    self.engine.dns_answer(now, id, answer);
                }
                Output::Kernel {
                    id,
                    op: KernelOp::Dump,
                } => {
                    let table = self.kernel.mappings.values().cloned().collect();
                    self.engine.kernel_dump(now, id, table);
                }
                Output::Kernel { id, op } => {
                    self.kernel.apply(op);
                    self.engine.kernel_done(now, id, Ok(()));
                }
                Output::Update { id, .. } => self.engine.update_done(now, id, true),
                Output::Answer { id, answer } => {
                    self.answers.insert(id, answer);
                }
                Output::Save(_)
                | Output::Pin { .. }
                | Output::Repin { .. }
                | Output::Unpin { .. } => {}
            }
        }
    }
}
