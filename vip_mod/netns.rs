// SPDX-License-Identifier: GPL-2.0

//! Per network namespace state: every namespace has its own mapping table, counters, event
//! limits, TCP kicker and roamer, and at most one vip device.

use crate::{bindings, events, kick::Kicker, roam::Roamer, stats::Stats, table::Table};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use kernel::{error::from_result, ffi, prelude::*, types::Opaque};

/// A network namespace (`struct net`).
#[repr(transparent)]
pub(crate) struct Net(Opaque<bindings::net>);

impl Net {
    /// # Safety
    ///
    /// `net` must point to a live namespace that stays alive for `'a`.
    pub(crate) unsafe fn from_raw<'a>(net: *mut bindings::net) -> &'a Net {
        // SAFETY: `Net` is a transparent wrapper, and the caller guarantees validity.
        unsafe { &*net.cast::<Net>() }
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::net {
        self.0.get()
    }

    /// VIP's state in this namespace.
    pub(crate) fn vip(&self) -> &VipNet {
        let id = NET_ID.load(Ordering::Relaxed);
        // SAFETY: `id` was assigned when the pernet operations were registered, before any
        // namespace could reach our code, and `net_init` filled the slot of every namespace
        // with a pointer to its `VipNet`, which lives until `net_exit`, after the
        // namespace's last user.
        unsafe { &**bindings::vip_net_generic(self.as_ptr(), id).cast::<*const VipNet>() }
    }
}

/// VIP's state in one network namespace.
#[pin_data]
pub(crate) struct VipNet {
    #[pin]
    pub(crate) table: Table,
    pub(crate) stats: Stats,
    /// The namespace's vip device, which `receive` delivers to; null when there is none.
    /// Set under RTNL once the device is registered (`device::newlink`), cleared by its
    /// `uninit`; read under RCU.
    pub(crate) rx_device: AtomicPtr<bindings::net_device>,
    #[pin]
    pub(crate) events: events::Limits,
    #[pin]
    pub(crate) kicker: Kicker,
    #[pin]
    pub(crate) roamer: Roamer,
}

/// The slot number the kernel assigns our per-namespace pointer; written once, by
/// `register_pernet_subsys`.
static NET_ID: AtomicU32 = AtomicU32::new(0);

/// # Safety
///
/// Called by the namespace core only, with a namespace being set up.
unsafe extern "C" fn net_init(net: *mut bindings::net) -> ffi::c_int {
    from_result(|| {
        // Charged to whoever creates the namespace.
        let state = KBox::pin_init(
            try_pin_init!(VipNet {
                table <- Table::new(),
                stats: Stats::new(),
                rx_device: AtomicPtr::new(core::ptr::null_mut()),
                events <- events::Limits::new(),
                kicker <- Kicker::new(net),
                roamer <- Roamer::new(net),
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        // SAFETY: the slot is ours, sized for a pointer (`size` below); `net_exit` takes the
        // box back. Pinned: nothing moves it out of the box before then.
        unsafe {
            let slot = bindings::vip_net_generic(net, NET_ID.load(Ordering::Relaxed));
            *slot.cast::<*mut VipNet>() = KBox::into_raw(Pin::into_inner_unchecked(state));
        }
        Ok(0)
    })
}

/// # Safety
///
/// Called by the namespace core only, once per namespace, after `net_init` succeeded, when
/// the namespace is going away.
unsafe extern "C" fn net_pre_exit(net: *mut bindings::net) {
    // No command can queue kicks in a dying namespace; wait for one that runs. (The receive
    // hook goes with the vip device, which the core deletes before `net_exit`.)
    // SAFETY: the namespace is still alive during pre_exit.
    unsafe { Net::from_raw(net) }.vip().kicker.cancel();
}

/// # Safety
///
/// Called by the namespace core only, once per namespace, after `net_init` succeeded, after
/// the namespace's devices were deleted and after an RCU grace period that follows
/// `net_pre_exit`.
unsafe extern "C" fn net_exit(net: *mut bindings::net) {
    // Packets received until the devices went may have queued a roam, which kicks TCP:
    // both are cancelled now that no packet of the namespace is in flight (the devices
    // are gone, and a grace period has passed).
    {
        // SAFETY: the state is still in place (freed below).
        let vips = unsafe { Net::from_raw(net) }.vip();
        vips.roamer.cancel();
        vips.kicker.cancel();
    }
    // SAFETY: the slot holds the pointer `net_init` made with `KBox::into_raw`. The
    // namespace is dead, its vip device and receive hook are gone (unregistered, then a
    // grace period), and its kicker is cancelled, so no reader of the state remains.
    unsafe {
        let slot = bindings::vip_net_generic(net, NET_ID.load(Ordering::Relaxed));
        drop(KBox::from_raw(*slot.cast::<*mut VipNet>()));
    }
}

/// Registered per-namespace operations; dropping this tears down every namespace's state.
///
/// # Invariants
///
/// `ops` is registered, and its address is stable while it is.
pub(crate) struct Registration {
    ops: Pin<KBox<Opaque<bindings::pernet_operations>>>,
}

// SAFETY: after registration only the namespace core touches `ops`, under its own lock.
unsafe impl Send for Registration {}
// SAFETY: `Registration` offers no access to `ops` through `&self`.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers the operations: every existing namespace gets its state now, every new one
    /// when it is created.
    pub(crate) fn new() -> Result<Self> {
        let ops = bindings::pernet_operations {
            init: Some(net_init),
            pre_exit: Some(net_pre_exit),
            exit: Some(net_exit),
            id: NET_ID.as_ptr(),
            size: core::mem::size_of::<*mut VipNet>(),
            ..Default::default()
        };
        let ops = KBox::pin(Opaque::new(ops), GFP_KERNEL)?;
        // SAFETY: `ops` is pinned on the heap until `drop` unregisters it; `id` points to a
        // static that nothing else writes.
        kernel::error::to_result(unsafe { bindings::register_pernet_subsys(ops.get()) })?;
        // INVARIANT: registered just above.
        Ok(Self { ops })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant). This runs `net_pre_exit` and `net_exit` for
        // every namespace, with a grace period between, and returns when all are done.
        unsafe { bindings::unregister_pernet_subsys(self.ops.get()) };
    }
}
