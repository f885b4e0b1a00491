// SPDX-License-Identifier: GPL-2.0

//! The VIP->IP mapping table of one namespace.
//!
//! A kernel rhashtable of `struct vip_mapping` keyed on the peer's VIP: lookups take no
//! lock (RCU), the table grows and shrinks with its contents, and writers are serialised by
//! a mutex. A mapping is never changed in place: a change publishes a new copy, and the old
//! one is freed after a grace period, so a reader sees either the old or the new mapping.

use crate::{addr::Ipv4Addr, bindings, rcu};
use core::{
    ptr::NonNull,
    sync::atomic::{AtomicPtr, AtomicU64, Ordering},
};
use kernel::{
    c_str, error::to_result, ffi, init, new_mutex, prelude::*, sync::Mutex, types::Opaque,
};

/// More mappings than this in one namespace are refused (`ENOSPC`): a bound on the memory a
/// namespace's administrator can pin, four times the million peers the table is built for.
pub(crate) const MAX_MAPPINGS: u32 = 4 << 20;

/// Bytes allocated for one mapping (the slab object size).
pub(crate) const MAPPING_SIZE: usize = core::mem::size_of::<bindings::vip_mapping>();
const _: () = assert!(MAPPING_SIZE <= 128);

/// The slab cache all mappings come from; set while a [`CacheRegistration`] lives.
static CACHE: AtomicPtr<bindings::kmem_cache> = AtomicPtr::new(core::ptr::null_mut());

/// The mapping slab cache. Created first and dropped last by the module, so it outlives
/// every table.
pub(crate) struct CacheRegistration(());

impl CacheRegistration {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: the name is a static NUL-terminated string.
        let cache = unsafe {
            bindings::vip_kmem_cache_create(
                c_str!("vip_mapping").as_char_ptr(),
                MAPPING_SIZE as u32,
            )
        };
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

/// Why a set or delete was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// The peer VIP already has a mapping and the mode does not allow changing it.
    Exists,
    /// The peer VIP has no mapping and the mode does not allow creating one.
    NotFound,
    /// The namespace has [`MAX_MAPPINGS`] already.
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
    fn new(spec: &MappingSpec) -> Result<Self> {
        // SAFETY: the cache exists while any table does; a zeroed mapping is valid.
        let ptr = unsafe { bindings::vip_kmem_cache_zalloc(cache(), kernel::bindings::GFP_KERNEL) };
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

/// What transmit learns from the table about a destination VIP.
pub(crate) enum TxLookup {
    /// Send to this physical address.
    Peer(Ipv4Addr),
    /// No mapping.
    Missing,
    /// The mapping is marked invalid.
    Invalid,
}

/// What receive learns from the table about a packet from a peer VIP.
pub(crate) enum RxVerdict {
    /// Mapped, from its mapped address, to the agreed local VIP: deliver it.
    Accept,
    /// No mapping for the source VIP.
    Unknown,
    /// Mapped, but from another address than `mapped`.
    Moved { mapped: Ipv4Addr },
    /// The mapping is marked invalid.
    Invalid,
    /// To another VIP than the local VIP agreed with the peer.
    WrongLocal,
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
/// mapping's cache line is not written on every packet.
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
        })
    }

    fn ht(&self) -> *mut bindings::rhashtable {
        self.ht.get()
    }

    /// Finds the mapping of `vip` while `_guard` keeps it alive.
    fn lookup_raw(
        &self,
        _guard: &rcu::Guard,
        vip: Ipv4Addr,
    ) -> Option<NonNull<bindings::vip_mapping>> {
        // SAFETY: the table is initialised, and the RCU read lock is held.
        NonNull::new(unsafe { bindings::vip_table_lookup(self.ht(), vip.to_raw()) })
    }

    /// Where to send a packet of `len` bytes to `vip`; counts it as sent.
    pub(crate) fn lookup_tx(&self, vip: Ipv4Addr, len: u32) -> TxLookup {
        let guard = rcu::Guard::new();
        let Some(mapping) = self.lookup_raw(&guard, vip) else {
            return TxLookup::Missing;
        };
        let m = mapping.as_ptr();
        // SAFETY: found under the RCU read lock, which `guard` holds until we return. The
        // flags and the peer never change once published; the counters are atomic.
        unsafe {
            if (*m).flags & bindings::VIP_MAP_F_INVALID != 0 {
                return TxLookup::Invalid;
            }
            add_counter(&raw mut (*m).tx_packets, 1);
            add_counter(&raw mut (*m).tx_bytes, u64::from(len));
            touch(&raw mut (*m).last_tx);
            TxLookup::Peer(Ipv4Addr::from_raw((*m).peer.__bindgen_anon_1.ip4))
        }
    }

    /// Whether a packet of `len` bytes from `source` to `destination`, which came from
    /// `outer_source`, may be delivered; counts it as received if so.
    pub(crate) fn check_rx(
        &self,
        source: Ipv4Addr,
        destination: Ipv4Addr,
        outer_source: Ipv4Addr,
        len: u32,
    ) -> RxVerdict {
        let guard = rcu::Guard::new();
        let Some(mapping) = self.lookup_raw(&guard, source) else {
            return RxVerdict::Unknown;
        };
        let m = mapping.as_ptr();
        // SAFETY: as in `lookup_tx`.
        unsafe {
            let mapped = Ipv4Addr::from_raw((*m).peer.__bindgen_anon_1.ip4);
            if (*m).flags & bindings::VIP_MAP_F_INVALID != 0 {
                return RxVerdict::Invalid;
            }
            if mapped != outer_source {
                return RxVerdict::Moved { mapped };
            }
            let local = Ipv4Addr::from_raw((*m).local_vip);
            if local != Ipv4Addr::UNSPECIFIED && local != destination {
                return RxVerdict::WrongLocal;
            }
            add_counter(&raw mut (*m).rx_packets, 1);
            add_counter(&raw mut (*m).rx_bytes, u64::from(len));
            touch(&raw mut (*m).last_rx);
        }
        RxVerdict::Accept
    }

    /// The number of mappings.
    pub(crate) fn count(&self) -> u32 {
        // SAFETY: the table is initialised.
        unsafe { bindings::vip_table_count(self.ht()) }
    }

    /// Creates or changes the mapping of `spec.peer_vip`, as `mode` allows. A change keeps
    /// the counters and times: a peer that moved is the same peer.
    pub(crate) fn set(&self, spec: &MappingSpec, mode: SetMode) -> Result<(), TableError> {
        let _writer = self.writer.lock();
        let new = NewMapping::new(spec).map_err(TableError::Kernel)?;
        let guard = rcu::Guard::new();
        match self.lookup_raw(&guard, spec.peer_vip) {
            None => {
                if !mode.create {
                    return Err(TableError::NotFound);
                }
                if self.count() >= MAX_MAPPINGS {
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
            }
            Some(old) => {
                if !mode.replace {
                    return Err(TableError::Exists);
                }
                let old = old.as_ptr();
                let new = new.publish();
                // SAFETY: `old` is in the table and stays there while we hold the writer
                // lock; `new` is ours. The counters are read atomically (the data path may
                // be updating them); updates between this copy and the replace are lost,
                // which counters may afford.
                unsafe {
                    (*new).rx_packets = load_counter(&raw mut (*old).rx_packets);
                    (*new).rx_bytes = load_counter(&raw mut (*old).rx_bytes);
                    (*new).tx_packets = load_counter(&raw mut (*old).tx_packets);
                    (*new).tx_bytes = load_counter(&raw mut (*old).tx_bytes);
                    (*new).last_rx = load_counter(&raw mut (*old).last_rx) as ffi::c_ulong;
                    (*new).last_tx = load_counter(&raw mut (*old).last_tx) as ffi::c_ulong;
                }
                // SAFETY: as above; replacing cannot fail for an entry that is in the table.
                let ret = unsafe { bindings::vip_table_replace(self.ht(), old, new) };
                if ret != 0 {
                    // SAFETY: not published: the replace failed.
                    unsafe { free_now(new.cast(), core::ptr::null_mut()) };
                    return Err(TableError::Kernel(Error::from_errno(ret)));
                }
                // SAFETY: `old` is unlinked; readers that found it may use it until the end
                // of the grace period, after which it is freed.
                unsafe { bindings::call_rcu(&raw mut (*old).rcu, Some(free_after_grace_period)) };
            }
        }
        Ok(())
    }

    /// Deletes the mapping of `vip`.
    pub(crate) fn delete(&self, vip: Ipv4Addr) -> Result<(), TableError> {
        let _writer = self.writer.lock();
        let guard = rcu::Guard::new();
        let mapping = self.lookup_raw(&guard, vip).ok_or(TableError::NotFound)?;
        // SAFETY: `mapping` is in the table, and stays there while we hold the writer lock.
        unsafe { self.unlink(mapping) }.map_err(TableError::Kernel)
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

    /// Deletes every mapping; returns how many there were.
    pub(crate) fn flush(&self) -> Result<u32> {
        let _writer = self.writer.lock();
        let mut deleted = 0;
        let mut walk = Walk::new(self)?;
        walk.for_each(|mapping| {
            // SAFETY: the walk found `mapping` in this table, and we hold the writer lock.
            unsafe { self.unlink(mapping) }?;
            deleted += 1;
            Ok(true)
        })?;
        Ok(deleted)
    }

    /// A copy of the mapping of `vip`, if any.
    pub(crate) fn get(&self, vip: Ipv4Addr) -> Option<MappingInfo> {
        let guard = rcu::Guard::new();
        let mapping = self.lookup_raw(&guard, vip)?;
        // SAFETY: found under the RCU read lock, which `guard` holds until after the copy.
        Some(unsafe { info_of(mapping) })
    }
}

/// Copies a mapping out.
///
/// # Safety
///
/// `mapping` must be valid during the call (found under an RCU read lock still held).
unsafe fn info_of(mapping: NonNull<bindings::vip_mapping>) -> MappingInfo {
    let m = mapping.as_ptr();
    // SAFETY: valid (caller contract); the fixed fields never change after publication, and
    // the counters are read atomically.
    unsafe {
        MappingInfo {
            spec: MappingSpec {
                peer_vip: Ipv4Addr::from_raw((*m).peer_vip),
                peer_ip4: Ipv4Addr::from_raw((*m).peer.__bindgen_anon_1.ip4),
                local_vip: Ipv4Addr::from_raw((*m).local_vip),
                flags: (*m).flags,
            },
            rx_packets: load_counter(&raw mut (*m).rx_packets),
            rx_bytes: load_counter(&raw mut (*m).rx_bytes),
            tx_packets: load_counter(&raw mut (*m).tx_packets),
            tx_bytes: load_counter(&raw mut (*m).tx_bytes),
            last_rx: load_counter(&raw mut (*m).last_rx),
            last_tx: load_counter(&raw mut (*m).last_tx),
        }
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

/// A walk over a table, resumable across RCU read sections (a dump's reads).
///
/// # Invariants
///
/// `iter` was entered on `table`, is never moved out of its box, and is exited on drop; the
/// table outlives the walk.
pub(crate) struct Walk {
    iter: Opaque<bindings::rhashtable_iter>,
}

// SAFETY: the iterator is only used by whoever holds the walk.
unsafe impl Send for Walk {}

impl Walk {
    /// Starts a walk over `table`, which must outlive it: for a dump, its namespace does.
    pub(crate) fn new(table: &Table) -> Result<KBox<Self>> {
        let walk = KBox::new(
            Self {
                iter: Opaque::uninit(),
            },
            GFP_KERNEL,
        )?;
        // SAFETY: the iterator is in its final place in the box.
        unsafe { bindings::rhashtable_walk_enter(table.ht(), walk.iter.get()) };
        // INVARIANT: entered just above.
        Ok(walk)
    }

    /// Visits mappings from where the walk is, until `visit` returns `Ok(false)` (the same
    /// mapping comes first next time) or the table ends. A table resized meanwhile may
    /// show a mapping twice.
    pub(crate) fn for_each(
        &mut self,
        mut visit: impl FnMut(NonNull<bindings::vip_mapping>) -> Result<bool>,
    ) -> Result {
        let iter = self.iter.get();
        // SAFETY: entered (type invariant); takes the RCU read lock until the stop below.
        unsafe { bindings::vip_table_walk_start(iter) };
        // SAFETY: as above: peek gives back the mapping a previous call stopped at.
        let mut next = unsafe { bindings::rhashtable_walk_peek(iter) };
        let result = loop {
            match kernel::error::from_err_ptr(next) {
                // The table was resized under us: carry on from where the walk now is.
                Err(e) if e == EAGAIN => {}
                Err(e) => break Err(e),
                Ok(p) => match NonNull::new(p.cast::<bindings::vip_mapping>()) {
                    None => break Ok(()),
                    Some(mapping) => match visit(mapping) {
                        Ok(true) => {}
                        Ok(false) => break Ok(()),
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
        mut visit: impl FnMut(&MappingInfo) -> Result<bool>,
    ) -> Result {
        // SAFETY: the walk holds the RCU read lock while it visits.
        self.for_each(|mapping| visit(&unsafe { info_of(mapping) }))
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        // SAFETY: entered (type invariant), and not started.
        unsafe { bindings::rhashtable_walk_exit(self.iter.get()) };
    }
}
