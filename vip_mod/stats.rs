// SPDX-License-Identifier: GPL-2.0

//! Per-namespace counters: what the data path dropped and why, events not sent, TCP sockets
//! kicked. Only drop paths and rare events count here; the per-packet counters are the
//! mappings' own and the device's.

use crate::bindings;
use core::sync::atomic::{AtomicU64, Ordering};

/// A counter; each is reported as the UAPI's `enum vip_stat` value it names.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    /// Not IPv4, or shorter than its header.
    TxMalformed,
    /// No mapping for the destination VIP.
    TxNoMapping,
    /// The destination VIP's mapping is marked invalid.
    TxInvalid,
    /// No route to the peer's physical address.
    TxNoRoute,
    /// The route to the peer's physical address goes back into the vip device.
    TxLoop,
    /// Larger than the path MTU with DF set (ICMP "fragmentation needed" sent).
    TxTooBig,
    /// Encapsulation failed (memory, offloads).
    TxError,
    /// A packet for a VIP with a broken inner header.
    RxMalformed,
    /// From a VIP without a mapping.
    RxUnknown,
    /// From a mapped VIP, but not from its mapped address.
    RxMoved,
    /// From a VIP whose mapping is marked invalid.
    RxInvalid,
    /// To a VIP other than the local VIP agreed with the sender.
    RxWrongLocal,
    /// No vip device in the namespace to deliver to.
    RxNoDevice,
    /// Events not sent: over a limit, or out of memory.
    EventsDropped,
    /// Conntrack refused to confirm the outer packet's entry.
    RxConntrack,
    /// TCP sockets told to retransmit at once after their peer moved.
    TcpKicks,
    /// Neighbour entries of a peer's old address failed at once, so that the packets
    /// they held (and TCP's retransmissions behind them) go free.
    NeighReleased,
    /// ESP not yet applied: XFRM's offload path passed the packet on unencrypted.
    TxXfrmPending,
    /// TCP sockets with segments in flight, no timeout fired yet, told to send a loss
    /// probe at once after their peer moved.
    TcpProbes,
    /// ESP from a mapped VIP at another address, let through for IPsec to authenticate
    /// (`roam`).
    RxRoamCandidates,
    /// Mappings moved to the source of an authenticated packet.
    Roams,
    /// Such moves not made: more at once than the namespace queues.
    RoamsDropped,
}

/// Every counter, in the order the array keeps them, with its UAPI number.
const ALL: [(Counter, u32); 22] = [
    (Counter::TxMalformed, bindings::VIP_STAT_TX_MALFORMED),
    (Counter::TxNoMapping, bindings::VIP_STAT_TX_NO_MAPPING),
    (Counter::TxInvalid, bindings::VIP_STAT_TX_INVALID),
    (Counter::TxNoRoute, bindings::VIP_STAT_TX_NO_ROUTE),
    (Counter::TxLoop, bindings::VIP_STAT_TX_LOOP),
    (Counter::TxTooBig, bindings::VIP_STAT_TX_TOO_BIG),
    (Counter::TxError, bindings::VIP_STAT_TX_ERROR),
    (Counter::RxMalformed, bindings::VIP_STAT_RX_MALFORMED),
    (Counter::RxUnknown, bindings::VIP_STAT_RX_UNKNOWN),
    (Counter::RxMoved, bindings::VIP_STAT_RX_MOVED),
    (Counter::RxInvalid, bindings::VIP_STAT_RX_INVALID),
    (Counter::RxWrongLocal, bindings::VIP_STAT_RX_WRONG_LOCAL),
    (Counter::RxNoDevice, bindings::VIP_STAT_RX_NO_DEVICE),
    (Counter::EventsDropped, bindings::VIP_STAT_EVENTS_DROPPED),
    (Counter::RxConntrack, bindings::VIP_STAT_RX_CONNTRACK),
    (Counter::TcpKicks, bindings::VIP_STAT_TCP_KICKS),
    (Counter::NeighReleased, bindings::VIP_STAT_NEIGH_RELEASED),
    (Counter::TxXfrmPending, bindings::VIP_STAT_TX_XFRM_PENDING),
    (Counter::TcpProbes, bindings::VIP_STAT_TCP_PROBES),
    (
        Counter::RxRoamCandidates,
        bindings::VIP_STAT_RX_ROAM_CANDIDATES,
    ),
    (Counter::Roams, bindings::VIP_STAT_ROAMS),
    (Counter::RoamsDropped, bindings::VIP_STAT_ROAMS_DROPPED),
];
const _: () = {
    let mut i = 0;
    while i < ALL.len() {
        assert!(ALL[i].0 as usize == i);
        i += 1;
    }
};

/// The counters of one namespace.
pub(crate) struct Stats([AtomicU64; ALL.len()]);

impl Stats {
    pub(crate) const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; ALL.len()])
    }

    pub(crate) fn count(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.0[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Every counter, with its `VIP_STAT_*` number.
    pub(crate) fn snapshot(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        ALL.iter()
            .map(|&(counter, stat)| (stat, self.0[counter as usize].load(Ordering::Relaxed)))
    }
}
