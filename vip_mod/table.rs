// SPDX-License-Identifier: GPL-2.0

//! The VIP->IP mapping table of one namespace.
//!
//! A kernel rhashtable of `struct vip_mapping` keyed on the peer's VIP: lookups take no
//! lock (RCU), the table grows and shrinks with its contents, and writers are serialised by
//! a mutex. A mapping is never changed in place: a change publishes a new copy, and the old
//! one is freed after a grace period, so a reader sees either the old or the new mapping.
//!
//! Mappings are charged to the memory cgroup of whoever creates them, and a namespace holds
//! at most `limit` of them. The rhashtable's bucket array is the one allocation the kernel
//! makes for us in a worker, uncharged: at most 8 bytes a bucket, and the table never has
//! more than `VIP_MAX_MAPPINGS_LIMIT` buckets (see `vip_table_params` in `helpers.c`).

use crate::{addr::Ipv4Addr, bindings, rcu};
use core::{
    marker::PhantomData,
    ptr::NonNull,
    sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering},
};
use kernel::{
    c_str, error::to_result, ffi, init, new_mutex, prelude::*, sync::Mutex, types::Opaque,
};

/// The default and the highest limit on a namespace's mappings.
pub(crate) const DEFAULT_LIMIT: u32 = bindings::VIP_MAX_MAPPINGS_DEFAULT;
pub(crate) const LIMIT_MAX: u32 = bindings::VIP_MAX_MAPPINGS_LIMIT;

/// Bytes allocated for one mapping (the slab object size): the lookup line and the
/// counters line.
pub(crate) const MAPPING_SIZE: usize = core::mem::size_of::<bindings::vip_mapping>();
const _: () = assert!(MAPPING_SIZE == 128);
const _: () = assert!(core::mem::offset_of!(bindings::vip_mapping, counters) == 64);

/// Mappings a flush deletes between two reschedules (and RCU read sections).
const FLUSH_BATCH: usize = 1024;

/// The slab cache all mappings come from; set while a [`CacheRegistration`] lives.
static CACHE: AtomicPtr<bindings::kmem_cache> = AtomicPtr::new(core::ptr::null_mut());

/// The mapping slab cache. Created first and dropped last by the module, so it outlives
/// every table.
pub(crate) struct CacheRegistration(());

impl CacheRegistration {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: the name is a static NUL-terminated string.
        let cache =
            unsafe { bindings::vip_mapping_cache_create(c_str!("vip_mapping").as_char_ptr()) };
        if cache.is_null() {
            return Err(ENOMEM);
        }
        CACHE.store(cache, Ordering::Release);
        Ok(Self(()))
    }
}

impl Drop for CacheRegistration {
    fn drop(&mut self) {
        // Mappings replaced or deleted recently are still queued for freeing.
        rcu::barrier();
        let cache = CACHE.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: every table has been destroyed and every deferred free has run, so the
        // cache is empty, and nobody can allocate from it any more.
        unsafe { bindings::kmem_cache_destroy(cache) };
    }
}

fn cache() -> *mut bindings::kmem_cache {
    CACHE.load(Ordering::Acquire)
}

/// Frees a mapping at once: for mappings no reader can reach any more.
///
/// # Safety
///
/// `ptr` must be a mapping from the cache that nothing references.
unsafe extern "C" fn free_now(ptr: *mut ffi::c_void, _arg: *mut ffi::c_void) {
    // SAFETY: guaranteed by the caller.
    unsafe { bindings::kmem_cache_free(cache(), ptr) };
}

/// Frees a mapping at the end of the grace period it was queued in.
///
/// # Safety
///
/// Only `call_rcu` calls this, with the `rcu` field of a mapping unlinked before.
unsafe extern "C" fn free_after_grace_period(head: *mut bindings::callback_head) {
    let offset = core::mem::offset_of!(bindings::vip_mapping, rcu);
    // SAFETY: `head` is the `rcu` field of a mapping (caller contract), and after the grace
    // period no reader references the mapping.
    unsafe { free_now(head.cast::<u8>().sub(offset).cast(), core::ptr::null_mut()) };
}

/// What a mapping says, as userspace sets it.
#[derive(Clone, Copy)]
pub(crate) struct MappingSpec {
    pub(crate) peer_vip: Ipv4Addr,
    pub(crate) peer_ip4: Ipv4Addr,
    /// Unspecified (0.0.0.0) for none.
    pub(crate) local_vip: Ipv4Addr,
    pub(crate) flags: u32,
}

/// A mapping as it is now, with its counters: a copy taken under RCU.
pub(crate) struct MappingInfo {
    pub(crate) spec: MappingSpec,
    pub(crate) rx_packets: u64,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_packets: u64,
    pub(crate) tx_bytes: u64,
    /// Jiffies of the last packet from/to the peer; 0 for never.
    pub(crate) last_rx: u64,
    pub(crate) last_tx: u64,
}

/// What a set may do: create a missing mapping, change an existing one.
#[derive(Clone, Copy)]
pub(crate) struct SetMode {
    pub(crate) create: bool,
    pub(crate) replace: bool,
}

/// What a successful set did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetOutcome {
    Created,
    /// Changed; the peer's address was `old` (it may be the same as before).
    Replaced {
        old: Ipv4Addr,
    },
}

/// Why a set or delete was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// The peer VIP already has a mapping and the mode does not allow changing it.
    Exists,
    /// The peer VIP has no mapping and the mode does not allow creating one.
    NotFound,
    /// The namespace has as many mappings as its limit allows.
    Full,
    /// The kernel failed to allocate or insert.
    Kernel(Error),
}

/// A mapping that is not in any table yet; freed on drop.
///
/// # Invariants
///
/// `ptr` is an exclusively owned mapping from the cache.
struct NewMapping {
    ptr: NonNull<bindings::vip_mapping>,
}

impl NewMapping {
    /// Allocates a mapping, charged to the caller's memory cgroup.
    fn new(spec: &MappingSpec) -> Result<Self> {
        // SAFETY: the cache exists while any table does; a zeroed mapping is valid.
        let ptr = unsafe { bindings::vip_kmem_cache_zalloc(cache(), bindings::VIP_GFP_ACCOUNT) };
        let ptr = NonNull::new(ptr.cast::<bindings::vip_mapping>()).ok_or(ENOMEM)?;
        // SAFETY: freshly allocated and exclusively ours.
        let m = unsafe { &mut *ptr.as_ptr() };
        m.peer_vip = spec.peer_vip.to_raw();
        m.local_vip = spec.local_vip.to_raw();
        m.peer.family = bindings::AF_INET as u16;
        m.peer.__bindgen_anon_1.ip4 = spec.peer_ip4.to_raw();
        m.flags = spec.flags;
        // INVARIANT: allocated above, referenced nowhere else.
        Ok(Self { ptr })
    }

    /// Takes over the counters of `old`, which the data path may still be updating:
    /// updates between this copy and the replace are lost, which counters may afford.
    fn inherit_counters(&mut self, old: Mapping<'_>) {
        let new = &raw mut self.as_mut().counters;
        let old = old.counters();
        // SAFETY: `new` is exclusively ours; `old`'s fields are read atomically.
        unsafe {
            (*new).rx_packets = load_counter(&raw mut (*old).rx_packets);
            (*new).rx_bytes = load_counter(&raw mut (*old).rx_bytes);
            (*new).tx_packets = load_counter(&raw mut (*old).tx_packets);
            (*new).tx_bytes = load_counter(&raw mut (*old).tx_bytes);
            (*new).last_rx = load_counter(&raw mut (*old).last_rx) as ffi::c_ulong;
            (*new).last_tx = load_counter(&raw mut (*old).last_tx) as ffi::c_ulong;
        }
    }

    /// Starts the roaming record where `old`'s is: what `old` saw of the peer's ESP from
    /// where the peer is now (see `roam`). Packets on `old` between this copy and the
    /// replace may leave it behind; a number it misses is one that IPsec has seen.
    fn inherit_esp_seen(&mut self, old: &Mapping<'_>) {
        self.as_mut().roam.esp_seen = old.roam_words().0.load(Ordering::SeqCst);
    }

    fn as_mut(&mut self) -> &mut bindings::vip_mapping {
        // SAFETY: exclusively owned (type invariant).
        unsafe { self.ptr.as_mut() }
    }

    /// Gives up ownership: the mapping now belongs to the table.
    fn publish(self) -> *mut bindings::vip_mapping {
        core::mem::ManuallyDrop::new(self).ptr.as_ptr()
    }
}

impl Drop for NewMapping {
    fn drop(&mut self) {
        // SAFETY: exclusively owned (type invariant), never published.
        unsafe { free_now(self.ptr.as_ptr().cast(), core::ptr::null_mut()) };
    }
}

/// A mapping found in a table, valid while the RCU read section `'g` lasts.
///
/// # Invariants
///
/// `ptr` is a published mapping, found under the RCU read lock that `'g` borrows; its first
/// cache line never changes after publication.
#[derive(Clone, Copy)]
pub(crate) struct Mapping<'g> {
    ptr: NonNull<bindings::vip_mapping>,
    _guard: PhantomData<&'g rcu::Guard>,
}

impl Mapping<'_> {
    fn raw(&self) -> *mut bindings::vip_mapping {
        self.ptr.as_ptr()
    }

    /// The peer's physical address.
    pub(crate) fn peer(&self) -> Ipv4Addr {
        // SAFETY: valid for `'g`, and the first line never changes (type invariant); a place
        // read, with no reference to the struct, whose counters other CPUs write. Every
        // mapping is AF_INET so far (`NewMapping::new`).
        Ipv4Addr::from_raw(unsafe { (*self.raw()).peer.__bindgen_anon_1.ip4 })
    }

    /// Our VIP toward the peer; unspecified for none.
    pub(crate) fn local_vip(&self) -> Ipv4Addr {
        // SAFETY: as in `peer`.
        Ipv4Addr::from_raw(unsafe { (*self.raw()).local_vip })
    }

    fn peer_vip(&self) -> Ipv4Addr {
        // SAFETY: as in `peer`.
        Ipv4Addr::from_raw(unsafe { (*self.raw()).peer_vip })
    }

    fn flags(&self) -> u32 {
        // SAFETY: as in `peer`.
        unsafe { (*self.raw()).flags }
    }

    /// Whether renegotiation failed and the VIP must not be used.
    pub(crate) fn is_invalid(&self) -> bool {
        self.flags() & bindings::VIP_MAP_F_INVALID != 0
    }

    fn counters(&self) -> *mut bindings::vip_counters {
        // SAFETY: valid for `'g` (type invariant); no reference is made.
        unsafe { &raw mut (*self.raw()).counters }
    }

    /// Counts a packet of `len` bytes sent to the peer.
    pub(crate) fn count_tx(&self, len: u32) {
        let c = self.counters();
        // SAFETY: the counters of a mapping valid for `'g`.
        unsafe {
            add_counter(&raw mut (*c).tx_packets, 1);
            add_counter(&raw mut (*c).tx_bytes, u64::from(len));
            touch(&raw mut (*c).last_tx);
        }
    }

    /// Counts a packet of `len` bytes delivered from the peer.
    pub(crate) fn count_rx(&self, len: u32) {
        let c = self.counters();
        // SAFETY: the counters of a mapping valid for `'g`.
        unsafe {
            add_counter(&raw mut (*c).rx_packets, 1);
            add_counter(&raw mut (*c).rx_bytes, u64::from(len));
            touch(&raw mut (*c).last_rx);
        }
    }

    /// The words `roam` keeps for this mapping: what the mapped address sent of ESP, and a
    /// candidate address to roam to.
    pub(crate) fn roam_words(&self) -> (&AtomicU64, &AtomicU64) {
        // SAFETY: valid for `'g`, which outlives `&self`; aligned 8-byte fields that
        // everyone accesses atomically, and no reference to the struct is made.
        unsafe {
            let roam = &raw mut (*self.raw()).roam;
            (
                AtomicU64::from_ptr(&raw mut (*roam).esp_seen),
                AtomicU64::from_ptr(&raw mut (*roam).candidate),
            )
        }
    }

    /// A copy of everything, counters included.
    fn info(&self) -> MappingInfo {
        let c = self.counters();
        // SAFETY: the counters of a mapping valid for `'g`, read atomically.
        unsafe {
            MappingInfo {
                spec: MappingSpec {
                    peer_vip: self.peer_vip(),
                    peer_ip4: self.peer(),
                    local_vip: self.local_vip(),
                    flags: self.flags(),
                },
                rx_packets: load_counter(&raw mut (*c).rx_packets),
                rx_bytes: load_counter(&raw mut (*c).rx_bytes),
                tx_packets: load_counter(&raw mut (*c).tx_packets),
                tx_bytes: load_counter(&raw mut (*c).tx_bytes),
                last_rx: load_counter(&raw mut (*c).last_rx),
                last_tx: load_counter(&raw mut (*c).last_tx),
            }
        }
    }
}

/// Adds to one of a mapping's counters.
///
/// # Safety
///
/// `field` must point to a counter of a mapping that stays valid during the call.
unsafe fn add_counter(field: *mut u64, n: u64) {
    // SAFETY: an aligned 8-byte field that everyone accesses atomically.
    unsafe { AtomicU64::from_ptr(field) }.fetch_add(n, Ordering::Relaxed);
}

/// Sets a mapping's last-packet time to now, writing only when it changes so that a busy
/// mapping's counters line is not written twice per packet.
///
/// # Safety
///
/// As for [`add_counter`].
unsafe fn touch(field: *mut ffi::c_ulong) {
    const { assert!(core::mem::size_of::<ffi::c_ulong>() == 8) };
    let now = crate::time::jiffies();
    // SAFETY: an aligned 8-byte field that everyone accesses atomically.
    let time = unsafe { AtomicU64::from_ptr(field.cast()) };
    if time.load(Ordering::Relaxed) != now {
        time.store(now, Ordering::Relaxed);
    }
}

/// Reads one of a mapping's counters, which the data path updates concurrently.
///
/// # Safety
///
/// `field` must point to a counter of a mapping that stays valid during the call.
unsafe fn load_counter<T>(field: *mut T) -> u64 {
    const { assert!(core::mem::size_of::<T>() == 8) };
    // SAFETY: an aligned 8-byte field; the data path only touches it atomically.
    unsafe { AtomicU64::from_ptr(field.cast()).load(Ordering::Relaxed) }
}

/// The mapping table of one namespace.
#[pin_data(PinnedDrop)]
pub(crate) struct Table {
    /// Serialises changes: a set is a lookup then an insert or replace.
    #[pin]
    writer: Mutex<()>,
    #[pin]
    ht: Opaque<bindings::rhashtable>,
    /// The most mappings the table may hold; changed by `VIP_CMD_SET_CONFIG`.
    limit: AtomicU32,
}

impl Table {
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        // SAFETY: on success the closure leaves an initialised rhashtable in the slot; on
        // failure rhashtable_init leaves nothing to undo.
        let ht = unsafe {
            init::pin_init_from_closure(|slot: *mut Opaque<bindings::rhashtable>| {
                to_result(bindings::vip_table_init(Opaque::raw_get(slot)))
            })
        };
        try_pin_init!(Self {
            writer <- new_mutex!(()),
            ht <- ht,
            limit: AtomicU32::new(DEFAULT_LIMIT),
        })
    }

    fn ht(&self) -> *mut bindings::rhashtable {
        self.ht.get()
    }

    /// The mapping of `vip`, valid while `guard` holds the RCU read lock.
    pub(crate) fn lookup<'g>(&self, guard: &'g rcu::Guard, vip: Ipv4Addr) -> Option<Mapping<'g>> {
        let _ = guard;
        // SAFETY: the table is initialised, and the RCU read lock is held (`guard`).
        let ptr = NonNull::new(unsafe { bindings::vip_table_lookup(self.ht(), vip.to_raw()) })?;
        // INVARIANT: found under the read lock `guard` holds.
        Some(Mapping {
            ptr,
            _guard: PhantomData,
        })
    }

    /// The number of mappings.
    pub(crate) fn count(&self) -> u32 {
        // SAFETY: the table is initialised.
        unsafe { bindings::vip_table_count(self.ht()) }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Sets the limit; `limit` must be in `1..=LIMIT_MAX` (netlink's policy checks it).
    pub(crate) fn set_limit(&self, limit: u32) -> Result {
        if !(1..=LIMIT_MAX).contains(&limit) {
            return Err(EINVAL);
        }
        self.limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// Creates or changes the mapping of `spec.peer_vip`, as `mode` allows. A change keeps
    /// the counters and times: a peer that moved is the same peer.
    pub(crate) fn set(&self, spec: &MappingSpec, mode: SetMode) -> Result<SetOutcome, TableError> {
        let _writer = self.writer.lock();
        let mut new = NewMapping::new(spec).map_err(TableError::Kernel)?;
        let guard = rcu::Guard::new();
        match self.lookup(&guard, spec.peer_vip) {
            None => {
                if !mode.create {
                    return Err(TableError::NotFound);
                }
                if self.count() >= self.limit() {
                    return Err(TableError::Full);
                }
                let new = new.publish();
                // SAFETY: `new` is a complete mapping that no table holds yet; the writer
                // lock makes the lookup above still true.
                let ret = unsafe { bindings::vip_table_insert(self.ht(), new) };
                if ret != 0 {
                    // SAFETY: the insert failed, so no reader can have seen `new`.
                    unsafe { free_now(new.cast(), core::ptr::null_mut()) };
                    return Err(TableError::Kernel(Error::from_errno(ret)));
                }
                Ok(SetOutcome::Created)
            }
            Some(old) => {
                if !mode.replace {
                    return Err(TableError::Exists);
                }
                let outcome = SetOutcome::Replaced { old: old.peer() };
                // At the same address (vipd confirms a roam, or changes flags), what was
                // seen from there still holds; from another address, a late packet from the
                // old one must not look fresh (see `roam`).
                if old.peer() == spec.peer_ip4 {
                    new.inherit_esp_seen(&old);
                }
                self.replace(old, new)?;
                Ok(outcome)
            }
        }
    }

    /// Moves `peer_vip`'s mapping to `to`, keeping the rest, unless it is there already,
    /// marked invalid, or no longer `still` as the caller found it; returns the address it
    /// had. For `roam`, in process context.
    pub(crate) fn move_peer(
        &self,
        peer_vip: Ipv4Addr,
        to: Ipv4Addr,
        still: impl Fn(&Mapping<'_>) -> bool,
    ) -> Result<Option<Ipv4Addr>, TableError> {
        let _writer = self.writer.lock();
        let (spec, from) = {
            let guard = rcu::Guard::new();
            let Some(old) = self.lookup(&guard, peer_vip) else {
                return Ok(None);
            };
            let from = old.peer();
            if from == to || old.is_invalid() || !still(&old) {
                return Ok(None);
            }
            let spec = MappingSpec {
                peer_vip,
                peer_ip4: to,
                local_vip: old.local_vip(),
                flags: old.flags(),
            };
            (spec, from)
        };
        // Allocated outside the read-side section: it may sleep.
        let mut new = NewMapping::new(&spec).map_err(TableError::Kernel)?;
        let guard = rcu::Guard::new();
        // Still there, unchanged: we hold the writer lock. The copy goes on from the
        // authenticated packet that moved it, so that the peer can move on again before
        // it sends a second one from here (see `roam::take`).
        let old = self.lookup(&guard, peer_vip).ok_or(TableError::NotFound)?;
        new.inherit_esp_seen(&old);
        self.replace(old, new)?;
        Ok(Some(from))
    }

    /// Replaces `old`, found in the table under the writer lock (which the caller holds),
    /// with `new`, which takes over its counters.
    fn replace(&self, old: Mapping<'_>, mut new: NewMapping) -> Result<(), TableError> {
        new.inherit_counters(old);
        let old = old.ptr.as_ptr();
        let new = new.publish();
        // SAFETY: `old` is in the table and stays there while the caller holds the writer
        // lock; `new` is complete and ours.
        let ret = unsafe { bindings::vip_table_replace(self.ht(), old, new) };
        if ret != 0 {
            // SAFETY: not published: the replace failed.
            unsafe { free_now(new.cast(), core::ptr::null_mut()) };
            return Err(TableError::Kernel(Error::from_errno(ret)));
        }
        // SAFETY: `old` is unlinked; readers that found it may use it until the end of the
        // grace period, after which it is freed.
        unsafe { bindings::call_rcu(&raw mut (*old).rcu, Some(free_after_grace_period)) };
        Ok(())
    }

    /// Deletes the mapping of `vip`.
    pub(crate) fn delete(&self, vip: Ipv4Addr) -> Result<(), TableError> {
        let _writer = self.writer.lock();
        let guard = rcu::Guard::new();
        let mapping = self.lookup(&guard, vip).ok_or(TableError::NotFound)?;
        // SAFETY: `mapping` is in the table, and stays there while we hold the writer lock.
        unsafe { self.unlink(mapping.ptr) }.map_err(TableError::Kernel)
    }

    /// Unlinks `mapping` and frees it after a grace period.
    ///
    /// # Safety
    ///
    /// `mapping` must be in this table, and the caller must hold the writer lock.
    unsafe fn unlink(&self, mapping: NonNull<bindings::vip_mapping>) -> Result {
        let mapping = mapping.as_ptr();
        // SAFETY: guaranteed by the caller.
        to_result(unsafe { bindings::vip_table_remove(self.ht(), mapping) })?;
        // SAFETY: unlinked just above; readers may hold it until the grace period ends.
        unsafe { bindings::call_rcu(&raw mut (*mapping).rcu, Some(free_after_grace_period)) };
        Ok(())
    }

    /// Deletes every mapping; returns how many there were. Works in batches, each its own
    /// RCU read section, with a reschedule between them: a million mappings must not hold
    /// up grace periods or the CPU.
    pub(crate) fn flush(&self) -> Result<u32> {
        let _writer = self.writer.lock();
        let mut deleted = 0;
        // A walk may step over a few mappings when the table shrinks under it: walk again
        // until none is left (the writer lock keeps new ones out).
        while self.count() > 0 {
            let mut walk = Walk::new(self)?;
            loop {
                let mut batch = 0;
                let progress = walk.for_each(FLUSH_BATCH, |mapping| {
                    // SAFETY: the walk found `mapping` in this table, and we hold the
                    // writer lock.
                    unsafe { self.unlink(mapping) }?;
                    batch += 1;
                    Ok(true)
                })?;
                deleted += batch;
                crate::rcu::cond_resched();
                if progress == Progress::Done {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// A copy of the mapping of `vip`, if any.
    pub(crate) fn get(&self, vip: Ipv4Addr) -> Option<MappingInfo> {
        let guard = rcu::Guard::new();
        Some(self.lookup(&guard, vip)?.info())
    }
}

#[pinned_drop]
impl PinnedDrop for Table {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: the table is initialised; its namespace is gone and a grace period has
        // passed (see `netns::net_exit`), so no reader remains and mappings can be freed now.
        unsafe { bindings::vip_table_destroy(self.ht(), Some(free_now)) };
    }
}

/// How far a walk's `for_each` got.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The table ended.
    Done,
    /// It stopped early (the visitor asked, or the batch was used up): call again.
    Paused,
}

/// A walk over a table, resumable across RCU read sections (a dump's reads, a flush's
/// batches).
///
/// # Invariants
///
/// `iter` was entered on `table`, is never moved out of its box, and is exited on drop; the
/// table outlives the walk. When `after_current` is set, the mapping the iterator is at was
/// visited already, and the next `for_each` starts after it.
pub(crate) struct Walk {
    iter: Opaque<bindings::rhashtable_iter>,
    after_current: bool,
}

// SAFETY: the iterator is only used by whoever holds the walk.
unsafe impl Send for Walk {}

impl Walk {
    /// Starts a walk over `table`, which must outlive it: for a dump, its namespace does.
    pub(crate) fn new(table: &Table) -> Result<KBox<Self>> {
        let walk = KBox::new(
            Self {
                iter: Opaque::uninit(),
                after_current: false,
            },
            GFP_KERNEL_ACCOUNT,
        )?;
        // SAFETY: the iterator is in its final place in the box.
        unsafe { bindings::rhashtable_walk_enter(table.ht(), walk.iter.get()) };
        // INVARIANT: entered just above.
        Ok(walk)
    }

    /// Visits up to `budget` mappings from where the walk is. `visit` returns `Ok(false)` to
    /// stop before a mapping (it comes first next time). A table resized meanwhile may show
    /// a mapping twice, or skip one that a visitor's deletions moved.
    pub(crate) fn for_each(
        &mut self,
        budget: usize,
        mut visit: impl FnMut(NonNull<bindings::vip_mapping>) -> Result<bool>,
    ) -> Result<Progress> {
        let iter = self.iter.get();
        // SAFETY: entered (type invariant); takes the RCU read lock until the stop below.
        unsafe { bindings::vip_table_walk_start(iter) };
        // SAFETY: as above: peek gives back the mapping the iterator is at, which a previous
        // call either stopped before (visit it) or had visited (move past it).
        let mut next = unsafe {
            if self.after_current {
                bindings::rhashtable_walk_next(iter)
            } else {
                bindings::rhashtable_walk_peek(iter)
            }
        };
        let mut visited = 0;
        self.after_current = false;
        let result = loop {
            match kernel::error::from_err_ptr(next) {
                // The table was resized under us: carry on from where the walk now is.
                Err(e) if e == EAGAIN => {}
                Err(e) => break Err(e),
                Ok(p) => match NonNull::new(p.cast::<bindings::vip_mapping>()) {
                    None => break Ok(Progress::Done),
                    Some(mapping) => match visit(mapping) {
                        Ok(true) => {
                            visited += 1;
                            if visited == budget {
                                self.after_current = true;
                                break Ok(Progress::Paused);
                            }
                        }
                        Ok(false) => break Ok(Progress::Paused),
                        Err(e) => break Err(e),
                    },
                },
            }
            // SAFETY: started above.
            next = unsafe { bindings::rhashtable_walk_next(iter) };
        };
        // SAFETY: started above; releases the RCU read lock.
        unsafe { bindings::rhashtable_walk_stop(iter) };
        result
    }

    /// Like `for_each`, with copies of the mappings.
    pub(crate) fn for_each_info(
        &mut self,
        budget: usize,
        mut visit: impl FnMut(&MappingInfo) -> Result<bool>,
    ) -> Result<Progress> {
        self.for_each(budget, |ptr| {
            // INVARIANT: the walk holds the RCU read lock while it visits, and `ptr` is in
            // the table.
            let mapping = Mapping {
                ptr,
                _guard: PhantomData,
            };
            visit(&mapping.info())
        })
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        // SAFETY: entered (type invariant), and not started.
        unsafe { bindings::rhashtable_walk_exit(self.iter.get()) };
    }
}
