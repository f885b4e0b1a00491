// SPDX-License-Identifier: GPL-2.0

//! Roaming on authenticated ESP: a mapping follows its peer to the source address of a
//! packet that the kernel's IPsec authenticated, as WireGuard's endpoints do, without
//! waiting for the daemons' hint.
//!
//! The receive path drops a peer's packets that come from another address than the mapped
//! one, except ESP on the association the mapped address uses, with a sequence number
//! above any seen from there: that packet, the *candidate*, goes on to XFRM, and its source
//! is remembered in the mapping (one per mapping, the latest). XFRM calls us back after it
//! has checked every ESP packet (an `xfrm4_protocol` callback, as `ip_vti` has); if the
//! packet XFRM authenticated has the candidate's association and sequence number, the
//! data path uses the candidate's address at once (the answer to that very packet goes
//! there), and a work item moves the mapping.
//!
//! Why the sequence number proves which copy was authenticated: XFRM authenticates a
//! given sequence number of an association at most once (its replay window), and a packet
//! from the mapped address with that number or a later one, or on another association,
//! voids the candidate when it arrives, before its own authentication. Whoever stores
//! second of the candidate and the mapped address's progress sees the other's store
//! (sequentially consistent atomics), so either the candidate is voided or it was never
//! taken. What remains is WireGuard's own exposure: an attacker on the path who delivers
//! a copy of a fresh packet from another address before the real one arrives moves the
//! mapping there, until the peer's next packet moves it back. Each such move copies the
//! mapping and walks the namespace's TCP sockets, so moves have a budget per namespace
//! (`VIP_A_ROAM_LIMIT` a second); over it, they are left to the daemons.

use crate::{
    addr::Ipv4Addr, bindings, events, netns::Net, ratelimit::RateLimit, rcu, stats::Counter,
    table::Mapping, work::Work,
};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use kernel::{ffi, prelude::*, types::Opaque};

/// An ESP header's security parameter index (as on the wire) and sequence number (host
/// order, low 32 bits).
#[derive(Clone, Copy)]
pub(crate) struct EspId {
    pub(crate) spi: u32,
    pub(crate) seq: u32,
}

impl EspId {
    /// From the first 8 bytes of an ESP header.
    pub(crate) fn from_header(bytes: [u8; 8]) -> Self {
        let [s0, s1, s2, s3, q0, q1, q2, q3] = bytes;
        Self {
            spi: u32::from_ne_bytes([s0, s1, s2, s3]),
            seq: u32::from_be_bytes([q0, q1, q2, q3]),
        }
    }
}

/// The `esp_seen` word: the association in the high half, its highest sequence number in
/// the low; 0 for nothing seen (no association has SPI 0).
fn seen_word(id: EspId) -> u64 {
    u64::from(id.spi) << 32 | u64::from(id.seq)
}

fn seen_of(word: u64) -> Option<EspId> {
    (word != 0).then_some(EspId {
        spi: (word >> 32) as u32,
        seq: word as u32,
    })
}

/// The `candidate` word: the source address in the high half, the sequence number in the
/// low; 0 for none (the address is a unicast one, never 0). Sequence number 0 (which only
/// a 64-bit number's wrap shows) marks a candidate authenticated: the mapping is moving
/// there, and the data path uses that address until the work item has moved it.
fn candidate_word(from: Ipv4Addr, seq: u32) -> u64 {
    u64::from(from.to_raw()) << 32 | u64::from(seq)
}

/// The address of an authenticated candidate, if the word holds one.
fn authenticated_of(word: u64) -> Option<Ipv4Addr> {
    (word != 0 && word as u32 == 0).then(|| Ipv4Addr::from_raw((word >> 32) as u32))
}

/// Where the peer is: the mapped address, or the source of an authenticated packet that
/// the work item has not moved the mapping to yet (so that answers to that very packet
/// go there).
pub(crate) fn current_peer(mapping: &Mapping<'_>) -> Ipv4Addr {
    authenticated_of(mapping.roam_words().1.load(SeqCst)).unwrap_or_else(|| mapping.peer())
}

/// Whether sequence number `a` comes after `b`, in serial-number arithmetic (the low 32
/// bits of ESN wrap).
fn after(a: u32, b: u32) -> bool {
    let ahead = a.wrapping_sub(b);
    ahead != 0 && ahead < 1 << 31
}

/// Whether `id` is newer than what the mapped address sent: on the same association, with
/// a later sequence number.
fn is_newer(seen: u64, id: EspId) -> bool {
    seen_of(seen).is_some_and(|s| s.spi == id.spi && after(id.seq, s.seq))
}

/// Voids a candidate not yet authenticated, if it is `pending`.
fn void_pending(candidate: &AtomicU64, pending: u64) {
    if pending != 0 && pending as u32 != 0 {
        let _ = candidate.compare_exchange(pending, 0, SeqCst, SeqCst);
    }
}

/// ESP from the mapped address whose sequence number cannot be read (a later fragment):
/// it might be the candidate's number, so the candidate goes.
pub(crate) fn void(mapping: &Mapping<'_>) {
    let candidate = mapping.roam_words().1;
    void_pending(candidate, candidate.load(SeqCst));
}

/// The receive path delivered ESP `id` from the peer's mapped address: records how far the
/// association got, and voids a candidate that this packet outdates.
pub(crate) fn saw_from_mapped(mapping: &Mapping<'_>, id: EspId) {
    let (seen, candidate) = mapping.roam_words();
    let mut current = seen.load(SeqCst);
    loop {
        let next = match seen_of(current) {
            // Reordered or duplicated: nothing new, and an older number cannot void.
            Some(s) if s.spi == id.spi && !after(id.seq, s.seq) => return,
            _ => seen_word(id),
        };
        match seen.compare_exchange_weak(current, next, SeqCst, SeqCst) {
            Ok(_) => break,
            Err(now) => current = now,
        }
    }
    let pending = candidate.load(SeqCst);
    // Only the candidate's number or a later one voids it (it was taken on the association
    // the word had; another association in the word voids it too, at `take`). One that is
    // authenticated already stays.
    if !after(pending as u32, id.seq) {
        void_pending(candidate, pending);
    }
}

/// ESP `id` from the peer arrived from `from`, not its mapped address: takes it as the
/// candidate if it is newer than anything from the mapped address and no candidate with
/// its number is pending. Returns whether it did; the packet may then go on to XFRM.
pub(crate) fn offer(mapping: &Mapping<'_>, from: Ipv4Addr, id: EspId) -> bool {
    let (seen, candidate) = mapping.roam_words();
    if id.seq == 0 || !from.is_physical_unicast() || !is_newer(seen.load(SeqCst), id) {
        return false;
    }
    let pending = candidate.load(SeqCst);
    // A second copy of a packet already taken (a replay from a third address) changes
    // nothing: first come. Nor does anything once a candidate is authenticated.
    if pending != 0 && (pending as u32 == id.seq || pending as u32 == 0) {
        return false;
    }
    let word = candidate_word(from, id.seq);
    if candidate
        .compare_exchange(pending, word, SeqCst, SeqCst)
        .is_err()
    {
        return false;
    }
    // The mapped address may have sent this number (or gone to another association) while
    // we stored: then it voids what we stored.
    if !is_newer(seen.load(SeqCst), id) {
        let _ = candidate.compare_exchange(word, 0, SeqCst, SeqCst);
        return false;
    }
    true
}

/// XFRM refused ESP `id` from the peer: if it was the candidate, it goes at once (a
/// forgery does not stay to be replaced by the next packet only).
fn refused(mapping: &Mapping<'_>, id: EspId) {
    let candidate = mapping.roam_words().1;
    let pending = candidate.load(SeqCst);
    if pending as u32 == id.seq {
        void_pending(candidate, pending);
    }
}

/// The move to `to` that `take` marked will not be made: the data path goes back to the
/// mapped address.
fn unmark(mapping: &Mapping<'_>, to: Ipv4Addr) {
    let _ = mapping
        .roam_words()
        .1
        .compare_exchange(candidate_word(to, 0), 0, SeqCst, SeqCst);
}

/// Whether `mapping` is marked to move to `to` (by `take`): the work item moves only
/// those, so that a change an administrator or vipd made since wins.
pub(crate) fn marked_for(mapping: &Mapping<'_>, to: Ipv4Addr) -> bool {
    authenticated_of(mapping.roam_words().1.load(SeqCst)) == Some(to)
}

/// XFRM authenticated ESP `id` from the peer: if it is the candidate, marks it
/// authenticated and returns where it came from. `id` is then the progress seen from
/// where the peer is (the move's copy starts from it), so that it can move on again
/// after this one packet.
fn take(mapping: &Mapping<'_>, id: EspId) -> Option<Ipv4Addr> {
    let (seen, candidate) = mapping.roam_words();
    let pending = candidate.load(SeqCst);
    if pending == 0 || pending as u32 == 0 || pending as u32 != id.seq {
        return None;
    }
    // Taken on the association the mapped address used; if that has changed since, the
    // candidate was for another one.
    if !seen_of(seen.load(SeqCst)).is_some_and(|s| s.spi == id.spi) {
        return None;
    }
    let from = Ipv4Addr::from_raw((pending >> 32) as u32);
    candidate
        .compare_exchange(pending, candidate_word(from, 0), SeqCst, SeqCst)
        .ok()?;
    raise_seen(seen, id);
    Some(from)
}

/// Raises the `esp_seen` word to `id` if it is a later number on the same association:
/// later packets from the candidate's address may have raised it already, and the mapped
/// address may have gone on to another association since `take` checked, which then stays.
fn raise_seen(seen: &AtomicU64, id: EspId) {
    let mut current = seen.load(SeqCst);
    while seen_of(current).is_some_and(|s| s.spi == id.spi && after(id.seq, s.seq)) {
        match seen.compare_exchange_weak(current, seen_word(id), SeqCst, SeqCst) {
            Ok(_) => return,
            Err(now) => current = now,
        }
    }
}

/// Moves waiting for the work item: peer VIP in the high half, address in the low.
const QUEUE_SLOTS: usize = 16;

/// Moves the mappings of one namespace that XFRM's callback found authenticated, in process
/// context (the table's writers sleep).
#[pin_data]
pub(crate) struct Roamer {
    /// The moves a second that may be made (`VIP_A_ROAM_LIMIT`).
    #[pin]
    budget: RateLimit,
    queue: [AtomicU64; QUEUE_SLOTS],
    #[pin]
    work: Work,
    /// The namespace, alive while this is (see `netns`).
    net: *mut bindings::net,
}

// SAFETY: `net` is only read, and the namespace outlives the roamer; the rest is atomics,
// the workqueue and the rate limit.
unsafe impl Send for Roamer {}
// SAFETY: as above.
unsafe impl Sync for Roamer {}

impl Roamer {
    /// A roamer for `net`, whose state it lives in. The owner must call `cancel` before the
    /// roamer goes.
    pub(crate) fn new(net: *mut bindings::net) -> impl PinInit<Self> {
        pin_init!(Self {
            budget <- RateLimit::per_second(bindings::VIP_ROAM_LIMIT_DEFAULT),
            queue: [const { AtomicU64::new(0) }; QUEUE_SLOTS],
            work <- Work::new(run),
            net,
        })
    }

    /// The most moves a second (`VIP_A_ROAM_LIMIT`); 0: roaming is off.
    pub(crate) fn limit(&self) -> u32 {
        self.budget.burst()
    }

    /// Sets the most moves a second, up to `VIP_ROAM_LIMIT_MAX` (`VIP_CMD_SET_CONFIG`
    /// refuses more).
    pub(crate) fn set_limit(&self, limit: u32) {
        self.budget
            .set_burst(limit.min(bindings::VIP_ROAM_LIMIT_MAX));
    }

    /// Has `peer` moved to `to` soon. From any context, lock-free but for the budget's
    /// trylock: a move for a peer already waiting replaces it; over the budget or beyond
    /// the queue, the move is left to the daemons (false).
    fn queue(&self, vips: &crate::netns::VipNet, peer: Ipv4Addr, to: Ipv4Addr) -> bool {
        if !self.budget.allow() {
            vips.stats.count(Counter::RoamsDropped);
            return false;
        }
        let entry = u64::from(peer.to_raw()) << 32 | u64::from(to.to_raw());
        let queued = self.queue.iter().any(|slot| {
            let current = slot.load(SeqCst);
            let ours = current != 0 && (current >> 32) as u32 == peer.to_raw();
            (ours || current == 0)
                && slot
                    .compare_exchange(current, entry, SeqCst, SeqCst)
                    .is_ok()
        });
        if queued {
            self.work.queue();
        } else {
            vips.stats.count(Counter::RoamsDropped);
        }
        queued
    }

    /// Cancels a queued run and waits for a running one.
    pub(crate) fn cancel(&self) {
        self.work.cancel_sync();
    }

    fn run(&self) {
        // SAFETY: the namespace outlives the roamer, whose work is cancelled before it goes.
        let net = unsafe { Net::from_raw(self.net) };
        let vips = net.vip();
        for slot in &self.queue {
            let entry = slot.swap(0, SeqCst);
            if entry == 0 {
                continue;
            }
            let peer = Ipv4Addr::from_raw((entry >> 32) as u32);
            let to = Ipv4Addr::from_raw(entry as u32);
            // Gone, invalid, changed since (by the daemon or an administrator), or moved
            // there already (an earlier entry).
            let from = match vips.table.move_peer(peer, to, |m| marked_for(m, to)) {
                Ok(Some(from)) => from,
                Ok(None) => continue,
                Err(_) => {
                    let guard = rcu::Guard::new();
                    if let Some(mapping) = vips.table.lookup(&guard, peer) {
                        unmark(&mapping, to);
                    }
                    vips.stats.count(Counter::RoamsDropped);
                    continue;
                }
            };
            vips.stats.count(Counter::Roams);
            events::roamed(net, peer, from, to);
            events::mapping_changed(net, peer, from, to);
            vips.kicker.kick(peer, Some(from));
        }
    }
}

/// # Safety
///
/// Only the workqueue calls this, with the work item of a live `Roamer`.
unsafe extern "C" fn run(work: *mut bindings::work_struct) {
    let offset = core::mem::offset_of!(Roamer, work);
    // SAFETY: `work` is the `work_struct` at the start of a `Roamer`'s `work` field, and the
    // roamer is alive: its owner cancels the work before freeing it.
    let roamer = unsafe { &*work.cast::<u8>().sub(offset).cast::<Roamer>() };
    roamer.run();
}

/// Between `ip_vti` (100) and `xfrm_interface` (10), before `esp4` (0): the callbacks run
/// from the highest priority down, and each passes on what is not its own.
const PRIORITY: ffi::c_int = 50;

/// Our callbacks on ESP, registered once for every namespace; dropping this unregisters
/// them (and waits for callbacks running).
///
/// # Invariants
///
/// `ops` is registered, and its address is stable while it is.
pub(crate) struct Registration {
    ops: Pin<KBox<Opaque<bindings::xfrm4_protocol>>>,
}

// SAFETY: after registration only XFRM touches `ops`, under its own lock.
unsafe impl Send for Registration {}
// SAFETY: `Registration` offers no access to `ops` through `&self`.
unsafe impl Sync for Registration {}

impl Registration {
    pub(crate) fn new() -> Result<Self> {
        let ops = bindings::xfrm4_protocol {
            handler: Some(not_ours_rcv),
            input_handler: Some(not_ours_input),
            cb_handler: Some(authenticated),
            err_handler: Some(not_ours_err),
            next: core::ptr::null_mut(),
            priority: PRIORITY,
        };
        let ops = KBox::pin(Opaque::new(ops), GFP_KERNEL)?;
        // SAFETY: `ops` is pinned on the heap until `drop` unregisters it; XFRM links it
        // into its list (writing `next`) and calls it until then.
        let ret =
            unsafe { bindings::xfrm4_protocol_register(ops.get(), bindings::IPPROTO_ESP as u8) };
        if ret == EAGAIN.to_errno() {
            // Linked, but the ESP protocol could not be added: unlink before `ops` goes.
            // SAFETY: registered (linked) just above.
            unsafe { bindings::xfrm4_protocol_deregister(ops.get(), bindings::IPPROTO_ESP as u8) };
        }
        kernel::error::to_result(ret)?;
        // INVARIANT: registered just above.
        Ok(Self { ops })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant). Waits for callbacks in flight
        // (`synchronize_net`) before it returns.
        unsafe { bindings::xfrm4_protocol_deregister(self.ops.get(), bindings::IPPROTO_ESP as u8) };
    }
}

/// Receiving ESP is `esp4`'s (the next handler): `-EINVAL` passes it on.
///
/// # Safety
///
/// Called by XFRM only.
unsafe extern "C" fn not_ours_rcv(_skb: *mut bindings::sk_buff) -> ffi::c_int {
    EINVAL.to_errno()
}

/// # Safety
///
/// Called by XFRM only.
unsafe extern "C" fn not_ours_input(
    _skb: *mut bindings::sk_buff,
    _nexthdr: ffi::c_int,
    _spi: bindings::__be32,
    _encap_type: ffi::c_int,
) -> ffi::c_int {
    EINVAL.to_errno()
}

/// ICMP errors about ESP are not ours either: non-zero passes them on.
///
/// # Safety
///
/// Called by XFRM only.
unsafe extern "C" fn not_ours_err(_skb: *mut bindings::sk_buff, _info: u32) -> ffi::c_int {
    ENOENT.to_errno()
}

/// XFRM is done with an ESP packet (`err` 0: authenticated and decrypted): if it is the
/// candidate of its peer's mapping, the mapping moves; if XFRM refused the candidate, it
/// goes. Returns 1 to let the next callback see the packet.
///
/// # Safety
///
/// Called by XFRM only, with a valid buffer, in an RCU read-side section.
unsafe extern "C" fn authenticated(skb: *mut bindings::sk_buff, err: ffi::c_int) -> ffi::c_int {
    const PASS: ffi::c_int = 1;
    let mut sa = bindings::vip_esp_sa::default();
    // SAFETY: a valid buffer that XFRM has just processed (caller contract).
    if !unsafe { bindings::vip_xfrm_input_sa(skb, &mut sa) } || !followable(&sa) {
        return PASS;
    }
    let (peer, local) = (Ipv4Addr::from_raw(sa.saddr), Ipv4Addr::from_raw(sa.daddr));
    // SAFETY: the association's namespace is alive while XFRM processes its packets.
    let net = unsafe { Net::from_raw(sa.net) };
    let vips = net.vip();
    let guard = rcu::Guard::new();
    let Some(mapping) = vips.table.lookup(&guard, peer) else {
        return PASS;
    };
    let agreed = mapping.local_vip();
    if agreed != Ipv4Addr::UNSPECIFIED && agreed != local {
        return PASS;
    }
    let id = EspId {
        spi: sa.spi,
        seq: sa.seq,
    };
    if err != 0 {
        refused(&mapping, id);
    } else if let Some(to) = take(&mapping, id) {
        if !vips.roamer.queue(vips, peer, to) {
            unmark(&mapping, to);
        }
    }
    PASS
}

/// Whether a mapping may follow packets that `sa` authenticated: IPv4 transport-mode ESP
/// (the only mode whose sequence number XFRM leaves where `vip_xfrm_input_sa` reads it)
/// that authenticates, between two VIPs, with a selector bound to exactly those two, as
/// vipd makes them.
fn followable(sa: &bindings::vip_esp_sa) -> bool {
    let (peer, local) = (Ipv4Addr::from_raw(sa.saddr), Ipv4Addr::from_raw(sa.daddr));
    u32::from(sa.family) == bindings::AF_INET
        && u32::from(sa.proto) == bindings::IPPROTO_ESP
        && u32::from(sa.mode) == bindings::XFRM_MODE_TRANSPORT
        && sa.authenticates
        && peer.is_vip()
        && local.is_vip()
        && u32::from(sa.sel_family) == bindings::AF_INET
        && (sa.sel_prefixlen_s, sa.sel_prefixlen_d) == (32, 32)
        && (sa.sel_saddr, sa.sel_daddr) == (sa.saddr, sa.daddr)
}
