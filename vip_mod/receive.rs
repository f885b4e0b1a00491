// SPDX-License-Identifier: GPL-2.0

//! Receive: a netfilter hook at IPv4 LOCAL_IN claims IPIP packets whose inner destination
//! is a VIP. LOCAL_IN, not PRE_ROUTING: only packets addressed to this host are ours (a
//! router with the module loaded must forward other hosts' VIP traffic untouched), and
//! the outer packet has been reassembled by then. A packet from a mapped peer, at its mapped address, loses its
//! outer header and arrives on the namespace's vip device; anything else is dropped,
//! counted, and (for unknown or moved peers) reported to userspace. Other IPIP packets are
//! left alone, so the kernel's `ipip` tunnels keep working beside us.

use crate::{
    bindings,
    device::NetDevice,
    events,
    netns::Net,
    skb::{self, SkBuff, IPV4_HEADER_LEN},
    stats::Counter,
    table::RxVerdict,
};
use core::{mem::ManuallyDrop, sync::atomic::Ordering};
use kernel::{ffi, prelude::*};

/// After the filter table (0): the administrator's INPUT rules see the outer packet first;
/// the inner packet then traverses the hooks again, arriving on the vip device.
const PRIORITY: ffi::c_int = 10;

#[repr(transparent)]
struct HookOps(bindings::nf_hook_ops);

// SAFETY: never written after construction (netfilter keeps a pointer to it, read-only).
unsafe impl Sync for HookOps {}

static HOOK_OPS: HookOps = HookOps(bindings::nf_hook_ops {
    hook: Some(hook),
    pf: bindings::NFPROTO_IPV4 as u8,
    hooknum: bindings::NF_INET_LOCAL_IN,
    priority: PRIORITY,
    // SAFETY: the other fields are optional or filled in by netfilter; zero is their default.
    ..unsafe { core::mem::zeroed() }
});

/// Starts claiming VIP packets in `net`. Called once per namespace, at its creation.
pub(crate) fn register(net: &Net) -> Result {
    // SAFETY: `net` is live and `HOOK_OPS` is static; `unregister` undoes this.
    kernel::error::to_result(unsafe { bindings::nf_register_net_hook(net.as_ptr(), &HOOK_OPS.0) })
}

/// Stops claiming VIP packets in `net`; packets already in the hook may still be running
/// until the next RCU grace period.
pub(crate) fn unregister(net: &Net) {
    // SAFETY: registered by `register` for this namespace.
    unsafe { bindings::nf_unregister_net_hook(net.as_ptr(), &HOOK_OPS.0) };
}

/// # Safety
///
/// Called by netfilter only, with a valid buffer and state, in an RCU read-side section.
unsafe extern "C" fn hook(
    _priv: *mut ffi::c_void,
    skb: *mut bindings::sk_buff,
    state: *const bindings::nf_hook_state,
) -> ffi::c_uint {
    // SAFETY: the buffer stays netfilter's unless we return NF_STOLEN; `ManuallyDrop` keeps
    // us from freeing it on the other paths. The state names a live namespace.
    let (mut skb, net) = unsafe {
        (
            ManuallyDrop::new(SkBuff::from_raw(skb)),
            Net::from_raw((*state).net),
        )
    };
    match claim(&mut skb, net) {
        Claim::NotOurs => bindings::NF_ACCEPT,
        Claim::Drop(reason) => {
            net.vip().stats.count(reason);
            bindings::NF_DROP
        }
        Claim::Deliver { outer_len, dev } => {
            let skb = ManuallyDrop::into_inner(skb);
            let len = skb.len() - outer_len;
            if let Some(inner) = skb::decapsulate(skb, outer_len, dev) {
                dev.rx_add(len);
                dev.receive(inner);
            }
            bindings::NF_STOLEN
        }
    }
}

enum Claim<'a> {
    /// Not a VIP packet: let the stack have it.
    NotOurs,
    /// A VIP packet we refuse.
    Drop(Counter),
    /// Strip `outer_len` bytes and deliver on `dev`.
    Deliver { outer_len: u32, dev: &'a NetDevice },
}

fn claim<'a>(skb: &mut SkBuff, net: &'a Net) -> Claim<'a> {
    let outer = skb.ipv4_header();
    if outer.protocol != bindings::IPPROTO_IPIP as u8 {
        return Claim::NotOurs;
    }
    let outer_len = outer.header_len;
    // Too short to show an inner destination: not recognisably ours.
    if !skb.may_pull(outer_len + IPV4_HEADER_LEN) {
        return Claim::NotOurs;
    }
    let inner = skb.ipv4_header_at(outer_len);
    if !inner.destination.is_vip() {
        return Claim::NotOurs;
    }
    let payload = skb.len() - outer_len;
    if inner.version != 4
        || inner.header_len < IPV4_HEADER_LEN
        || inner.total_len < inner.header_len
        || inner.total_len > payload
    {
        return Claim::Drop(Counter::RxMalformed);
    }
    let vip = net.vip();
    match vip
        .table
        .check_rx(inner.source, inner.destination, outer.source, payload)
    {
        RxVerdict::Accept => {}
        RxVerdict::Unknown => {
            events::unknown(net, inner.source, inner.destination, outer.source);
            return Claim::Drop(Counter::RxUnknown);
        }
        RxVerdict::Moved { mapped } => {
            events::moved(net, inner.source, mapped, outer.source);
            return Claim::Drop(Counter::RxMoved);
        }
        RxVerdict::Invalid => return Claim::Drop(Counter::RxInvalid),
        RxVerdict::WrongLocal => return Claim::Drop(Counter::RxWrongLocal),
    }
    let dev = vip.rx_device.load(Ordering::Acquire);
    if dev.is_null() {
        return Claim::Drop(Counter::RxNoDevice);
    }
    // SAFETY: a device stays valid for an RCU grace period after `device::uninit` clears
    // the pointer, and netfilter runs this hook in an RCU read-side section.
    let dev = unsafe { NetDevice::from_raw(dev) };
    Claim::Deliver { outer_len, dev }
}
