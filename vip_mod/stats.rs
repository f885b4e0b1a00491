// SPDX-License-Identifier: GPL-2.0

//! Per-namespace counters of what the data path dropped, and why.

use core::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped, or an event not sent. The order is the UAPI's
/// `enum vip_stat` (`VIP_STAT_*`), from 1.
#[derive(Clone, Copy)]
#[repr(u32)]
pub(crate) enum Counter {
    /// Not IPv4, or shorter than its header.
    TxMalformed = 1,
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
    /// Events not sent: over the rate limit, or out of memory.
    EventsDropped,
}

/// The number of counters.
pub(crate) const COUNT: usize = Counter::EventsDropped as usize;

/// The counters of one namespace.
pub(crate) struct Stats([AtomicU64; COUNT]);

impl Stats {
    pub(crate) const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; COUNT])
    }

    pub(crate) fn count(&self, counter: Counter) {
        self.0[counter as usize - 1].fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter, with its `VIP_STAT_*` number.
    pub(crate) fn snapshot(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        (1..).zip(self.0.iter().map(|c| c.load(Ordering::Relaxed)))
    }
}
