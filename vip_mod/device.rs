// SPDX-License-Identifier: GPL-2.0

//! The `vip` network device: `ip link add vip0 type vip`.
//!
//! A point-to-point device without link-layer header or ARP. Packets routed to it are
//! addressed to peer VIPs; `xmit` tunnels them to the peers' physical addresses. Packets
//! that `receive` decapsulates arrive on it.

use crate::{bindings, netns::Net, receive, skb::SkBuff, xmit};
use core::sync::atomic::Ordering;
use kernel::{c_str, ffi, prelude::*, types::Opaque};

/// The MTU of a new device: Ethernet's, less the outer IPv4 header.
const DEFAULT_MTU: u32 = bindings::ETH_DATA_LEN - crate::skb::IPV4_HEADER_LEN;

/// A network device (`struct net_device`).
#[repr(transparent)]
pub(crate) struct NetDevice(Opaque<bindings::net_device>);

impl NetDevice {
    /// # Safety
    ///
    /// `dev` must point to a device that stays valid for `'a`.
    pub(crate) unsafe fn from_raw<'a>(dev: *mut bindings::net_device) -> &'a NetDevice {
        // SAFETY: `NetDevice` is a transparent wrapper; validity is the caller's promise.
        unsafe { &*dev.cast::<NetDevice>() }
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::net_device {
        self.0.get()
    }

    /// The namespace the device is in.
    pub(crate) fn net(&self) -> &Net {
        // SAFETY: a device keeps its namespace alive while it is registered, and the
        // callers run with the device registered.
        unsafe { Net::from_raw(bindings::vip_dev_net(self.as_ptr())) }
    }

    /// Counts a packet dropped on transmit.
    pub(crate) fn tx_dropped(&self) {
        // SAFETY: valid (see `from_raw`).
        unsafe { bindings::vip_dev_tx_dropped(self.as_ptr()) };
    }

    /// Counts a packet dropped on receive.
    pub(crate) fn rx_dropped(&self) {
        // SAFETY: valid (see `from_raw`).
        unsafe { bindings::vip_dev_rx_dropped(self.as_ptr()) };
    }

    /// The device's GRO cells (its private area; see `LinkRegistration::new`).
    fn gro_cells(&self) -> *mut bindings::gro_cells {
        // SAFETY: valid (see `from_raw`); every vip device is allocated with a private
        // area that holds a `struct gro_cells`.
        unsafe { bindings::vip_netdev_priv(self.as_ptr()).cast() }
    }

    /// Hands a decapsulated packet to the stack through GRO, as the kernel's ip tunnels do
    /// (`gro_cells_receive` falls back to `netif_rx` when GRO cannot apply).
    pub(crate) fn receive(&self, skb: SkBuff) {
        // SAFETY: the cells were set up by `init` and are freed only by `free_private`,
        // after the device left `rx_device` and RCU readers (we are one) finished; the
        // buffer's ownership passes to the callee whatever it returns.
        unsafe { bindings::gro_cells_receive(self.gro_cells(), skb.into_raw()) };
    }

    /// Headroom to reserve in front of an inner packet for the outer headers.
    pub(crate) fn needed_headroom(&self) -> u32 {
        // SAFETY: valid (see `from_raw`); read with READ_ONCE, as `ip_tunnel_xmit` does.
        u32::from(unsafe { bindings::vip_dev_needed_headroom(self.as_ptr()) })
    }

    /// Raises the headroom the stack reserves for this device to `headroom`, when more is
    /// needed: from then on, packets are built with room for the outer headers and need no
    /// reallocation here.
    pub(crate) fn raise_needed_headroom(&self, headroom: u32) {
        if headroom > self.needed_headroom() {
            let headroom = u16::try_from(headroom).unwrap_or(u16::MAX);
            // SAFETY: valid (see `from_raw`); a WRITE_ONCE racing with others is what the
            // kernel's tunnels do too: the value only grows, and any value is safe.
            unsafe { bindings::vip_dev_set_needed_headroom(self.as_ptr(), headroom) };
        }
    }

    /// Counts a packet received, of `len` bytes.
    pub(crate) fn rx_add(&self, len: u32) {
        // SAFETY: valid (see `from_raw`); the core allocated per-CPU tstats for it.
        unsafe { bindings::vip_dev_rx_add(self.as_ptr(), len) };
    }
}

/// # Safety
///
/// Called by the core only, from `alloc_netdev`, with a device being set up.
unsafe extern "C" fn setup(dev: *mut bindings::net_device) {
    // SAFETY: the device is being allocated and is ours alone until registered.
    unsafe {
        bindings::vip_netdev_add_priv_flags(dev, bindings::IFF_NO_QUEUE as ffi::c_ulonglong);
        // Lockless transmit: nothing in `xmit` needs the device's queue lock.
        bindings::vip_netdev_set_lltx(dev);
        bindings::vip_netdev_set_needs_free(dev);
        // Transmit needs the inner packet's route: to update its path MTU, and for ICMP
        // "fragmentation needed" to find its way back.
        bindings::vip_netif_keep_dst(dev);
        // The namespace's state points at its device: it must stay there.
        bindings::vip_netdev_set_netns_immutable(dev);
        // The core allocates per-CPU counters, which `iptunnel_xmit` and `rx_add` update.
        bindings::vip_netdev_set_tstats(dev);
    }
    // SAFETY: as above.
    let d = unsafe { &mut *dev };
    d.netdev_ops = &NETDEV_OPS.0;
    d.priv_destructor = Some(free_private);
    d.type_ = bindings::ARPHRD_NONE as u16;
    d.flags = bindings::IFF_POINTOPOINT | bindings::IFF_NOARP;
    d.hard_header_len = 0;
    d.addr_len = 0;
    // Room for the outer IPv4 header (the link layer's is added by the output device).
    d.needed_headroom = crate::skb::IPV4_HEADER_LEN as u16;
    d.mtu = DEFAULT_MTU;
    d.min_mtu = 68;
    d.max_mtu = 0xffff - crate::skb::IPV4_HEADER_LEN;
    d.features = bindings::VIP_NETDEV_FEATURES;
    d.hw_features = bindings::VIP_NETDEV_FEATURES;
}

/// # Safety
///
/// Called by the core only, under RTNL, from `register_netdevice`.
unsafe extern "C" fn init(dev: *mut bindings::net_device) -> ffi::c_int {
    // SAFETY: the device is being registered in its namespace, which is alive.
    let device = unsafe { NetDevice::from_raw(dev) };
    // SAFETY: the private area holds zeroed `gro_cells` until now (see `new`).
    unsafe { bindings::gro_cells_init(device.gro_cells(), dev) }
}

/// Creates a vip device: `ip link add NAME type vip`. A namespace has at most one, which
/// receives everything `receive` decapsulates there; the receive hook is registered with
/// it, so namespaces without VIP pay nothing for it.
///
/// # Safety
///
/// Called by rtnetlink only, under RTNL, with a device that `setup` prepared in its target
/// namespace.
unsafe extern "C" fn newlink(
    _src_net: *mut bindings::net,
    dev: *mut bindings::net_device,
    _tb: *mut *mut bindings::nlattr,
    _data: *mut *mut bindings::nlattr,
    extack: *mut bindings::netlink_ext_ack,
) -> ffi::c_int {
    // SAFETY: the device is allocated, and its namespace alive, for the whole call.
    let device = unsafe { NetDevice::from_raw(dev) };
    let net = device.net();
    let vip = net.vip();
    // RTNL serialises this check with the store below and with `uninit`.
    if !vip.rx_device.load(Ordering::Relaxed).is_null() {
        // SAFETY: `extack` is null or valid for the call; the message is static.
        unsafe {
            bindings::vip_extack_set_msg(
                extack,
                c_str!("this network namespace has a vip device already").as_char_ptr(),
            )
        };
        return -(kernel::bindings::EEXIST as ffi::c_int);
    }
    if let Err(e) = receive::register(net) {
        return e.to_errno();
    }
    // SAFETY: as above; on failure the core has undone everything (`uninit` found the
    // device unpublished and left the hook alone) and the caller frees the device.
    let err = unsafe { bindings::register_netdevice(dev) };
    if err != 0 {
        receive::unregister(net);
        return err;
    }
    // Published only now that the device is complete (per-CPU stats, GRO cells) and will
    // be freed only after `uninit` and a grace period: a receive that finds it may use it.
    vip.rx_device.store(dev, Ordering::Release);
    0
}

/// # Safety
///
/// Called by the core only, under RTNL, when the device is unregistered, or when its
/// registration fails after `init`.
unsafe extern "C" fn uninit(dev: *mut bindings::net_device) {
    // SAFETY: the device's namespace is alive while the device exists.
    let device = unsafe { NetDevice::from_raw(dev) };
    let net = device.net();
    // Only a published device owns the hook. The core waits for an RCU grace period after
    // this returns and before the device is freed, so a receive that found it finishes.
    if net.vip().rx_device.load(Ordering::Relaxed) == dev {
        net.vip()
            .rx_device
            .store(core::ptr::null_mut(), Ordering::Release);
        receive::unregister(net);
    }
}

/// # Safety
///
/// Called by the core only, when the device is freed: after `uninit` and an RCU grace
/// period, so no `receive` can still use its GRO cells. Also called if registration failed
/// after `init` (the device was never published), or before it (the cells are then zeroed,
/// which `gro_cells_destroy` skips).
unsafe extern "C" fn free_private(dev: *mut bindings::net_device) {
    // SAFETY: see above; the device's memory is still allocated.
    let device = unsafe { NetDevice::from_raw(dev) };
    // SAFETY: initialised by `init` or still zeroed.
    unsafe { bindings::gro_cells_destroy(device.gro_cells()) };
}

/// # Safety
///
/// Called by the core only, with a buffer that we now own and a registered device.
unsafe extern "C" fn start_xmit(
    skb: *mut bindings::sk_buff,
    dev: *mut bindings::net_device,
) -> bindings::netdev_tx_t {
    // SAFETY: ownership of `skb` passes to us; the device is registered during the call.
    let (skb, device) = unsafe { (SkBuff::from_raw(skb), NetDevice::from_raw(dev)) };
    xmit::xmit(skb, device);
    bindings::NETDEV_TX_OK
}

#[repr(transparent)]
struct NetdevOps(bindings::net_device_ops);

// SAFETY: never written after construction; it holds only function pointers.
unsafe impl Sync for NetdevOps {}

static NETDEV_OPS: NetdevOps = NetdevOps(bindings::net_device_ops {
    ndo_init: Some(init),
    ndo_uninit: Some(uninit),
    ndo_start_xmit: Some(start_xmit),
    ndo_get_stats64: Some(bindings::dev_get_tstats64),
    // SAFETY: all other operations are optional: null is "not implemented".
    ..unsafe { core::mem::zeroed() }
});

/// The registered `vip` link type; dropping it deletes every vip device in every namespace.
///
/// # Invariants
///
/// `ops` is registered, at a stable address, while this lives.
pub(crate) struct LinkRegistration {
    ops: Pin<KBox<Opaque<bindings::rtnl_link_ops>>>,
}

// SAFETY: after registration only the core touches `ops`, under RTNL.
unsafe impl Send for LinkRegistration {}
// SAFETY: no access to `ops` through `&self`.
unsafe impl Sync for LinkRegistration {}

impl LinkRegistration {
    pub(crate) fn new() -> Result<Self> {
        let ops = bindings::rtnl_link_ops {
            kind: c_str!("vip").as_char_ptr(),
            setup: Some(setup),
            newlink: Some(newlink),
            // The core zeroes the private area on allocation.
            priv_size: core::mem::size_of::<bindings::gro_cells>(),
            ..Default::default()
        };
        let ops = KBox::pin(Opaque::new(ops), GFP_KERNEL)?;
        // SAFETY: pinned on the heap until `drop` unregisters it.
        kernel::error::to_result(unsafe { bindings::rtnl_link_register(ops.get()) })?;
        // INVARIANT: registered just above.
        Ok(Self { ops })
    }
}

impl Drop for LinkRegistration {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant); this deletes every device of the kind and
        // waits until they are gone.
        unsafe { bindings::rtnl_link_unregister(self.ops.get()) };
    }
}
