// SPDX-License-Identifier: GPL-2.0

//! Receive: a netfilter hook at IPv4 LOCAL_IN claims IPIP packets whose inner destination
//! is a VIP. LOCAL_IN, not PRE_ROUTING: only packets addressed to this host are ours (a
//! router with the module loaded must forward other hosts' VIP traffic untouched), and the
//! outer packet has been reassembled by then. A packet from a mapped peer, at its mapped
//! address, loses its outer header and arrives on the namespace's vip device, and so does
//! ESP from elsewhere that may prove the peer moved (`roam`); anything else is dropped,
//! counted, and (for unknown or moved peers) reported to userspace. Other IPIP
//! packets are left alone, so the kernel's `ipip` tunnels keep working beside us.
//!
//! The hook is registered in a namespace only while it has a vip device (`device::newlink`
//! registers it, `device::uninit` unregisters it).

use crate::{
    addr::Ipv4Addr,
    bindings,
    device::NetDevice,
    events,
    netns::Net,
    rcu,
    roam::{self, EspId},
    skb::{self, Ipv4Header, SkBuff, IPV4_HEADER_LEN},
    stats::Counter,
    table::Mapping,
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

/// Starts claiming VIP packets in `net`. Called under RTNL, once per vip device.
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
    let guard = rcu::Guard::new();
    match claim(&mut skb, net, &guard) {
        Claim::NotOurs => bindings::NF_ACCEPT,
        Claim::Drop(reason) => {
            net.vip().stats.count(reason);
            bindings::NF_DROP
        }
        Claim::Deliver {
            outer_len,
            dev,
            mapping,
        } => {
            // Our hook steals the packet before conntrack would confirm the outer flow's
            // entry: confirm it here, or every packet would make (and free) a new one.
            if skb.confirm_conntrack() != bindings::NF_ACCEPT {
                net.vip().stats.count(Counter::RxConntrack);
                return bindings::NF_DROP;
            }
            let skb = ManuallyDrop::into_inner(skb);
            let len = skb.len() - outer_len;
            if let Some(inner) = skb::decapsulate(skb, outer_len, dev) {
                mapping.count_rx(len);
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
    /// Strip `outer_len` bytes and deliver on `dev`; it comes from `mapping`'s peer.
    Deliver {
        outer_len: u32,
        dev: &'a NetDevice,
        mapping: Mapping<'a>,
    },
}

/// Whether a refused packet may cause an event: only virtual IPs on the inside and a
/// physical address outside, and no tunnel inside the tunnel. Anything else is noise that
/// would only spend the daemon's event budget.
fn reportable(outer: &Ipv4Header, inner: &Ipv4Header) -> bool {
    inner.source.is_vip()
        && !outer.source.is_vip()
        && inner.protocol != bindings::IPPROTO_IPIP as u8
}

fn claim<'a>(skb: &mut SkBuff, net: &'a Net, guard: &'a rcu::Guard) -> Claim<'a> {
    if !skb.may_pull(IPV4_HEADER_LEN) {
        return Claim::NotOurs;
    }
    let outer = skb.ipv4_header();
    if outer.protocol == bindings::IPPROTO_ICMP as u8 {
        learn_path_mtu(skb, net, outer.header_len);
        return Claim::NotOurs;
    }
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
    let Some(mapping) = vip.table.lookup(guard, inner.source) else {
        if reportable(&outer, &inner) {
            events::unknown(net, inner.source, inner.destination, outer.source);
        }
        return Claim::Drop(Counter::RxUnknown);
    };
    if mapping.is_invalid() {
        return Claim::Drop(Counter::RxInvalid);
    }
    let esp = esp_of(skb, outer_len, &inner);
    let peer = roam::current_peer(&mapping);
    if peer != outer.source {
        if reportable(&outer, &inner) {
            events::moved(net, inner.source, peer, outer.source);
        }
        // A whole ESP packet that may prove the peer moved goes on, for IPsec to
        // authenticate (a fragment could not: the rest of it is dropped here).
        match esp {
            Esp::Header { id, whole: true }
                if vip.roamer.limit() > 0 && roam::offer(&mapping, outer.source, id) =>
            {
                vip.stats.count(Counter::RxRoamCandidates)
            }
            _ => return Claim::Drop(Counter::RxMoved),
        }
    } else {
        match esp {
            Esp::Header { id, .. } => roam::saw_from_mapped(&mapping, id),
            // Its number is unknown: it might be the candidate's.
            Esp::Unreadable => roam::void(&mapping),
            Esp::No => {}
        }
    }
    let local = mapping.local_vip();
    if local != Ipv4Addr::UNSPECIFIED && local != inner.destination {
        return Claim::Drop(Counter::RxWrongLocal);
    }
    let dev = vip.rx_device.load(Ordering::Acquire);
    if dev.is_null() {
        return Claim::Drop(Counter::RxNoDevice);
    }
    // SAFETY: a device stays valid for an RCU grace period after `device::uninit` clears
    // the pointer, and we are in an RCU read-side section (`guard`).
    let dev = unsafe { NetDevice::from_raw(dev) };
    Claim::Deliver {
        outer_len,
        dev,
        mapping,
    }
}

/// What the inner packet shows of ESP.
enum Esp {
    /// Not ESP.
    No,
    /// ESP with its header: a whole packet, or the first fragment of one.
    Header { id: EspId, whole: bool },
    /// ESP whose header is not here: a later fragment, or too short.
    Unreadable,
}

fn esp_of(skb: &mut SkBuff, outer_len: u32, inner: &Ipv4Header) -> Esp {
    const ESP_ID_LEN: u32 = 8;
    const MORE_FRAGMENTS: u16 = 0x2000;
    const OFFSET: u16 = 0x1fff;
    if inner.protocol != bindings::IPPROTO_ESP as u8 {
        return Esp::No;
    }
    let at = outer_len + inner.header_len;
    if inner.frag_off & OFFSET != 0
        || inner.total_len < inner.header_len + ESP_ID_LEN
        || !skb.may_pull(at + ESP_ID_LEN)
    {
        return Esp::Unreadable;
    }
    Esp::Header {
        id: EspId::from_header(skb.bytes_at::<8>(at)),
        whole: inner.frag_off & MORE_FRAGMENTS == 0,
    }
}

/// ICMP "fragmentation needed" (type 3, code 4).
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
/// The ICMP header: type, code, checksum, unused, next-hop MTU.
const ICMP_HEADER_LEN: u32 = 8;

/// A router on the way to a peer said that one of our outer packets was too big: the
/// route to the peer learns the path MTU, as `ipip_err` does for the kernel's tunnels, so
/// that transmit sizes the next inner packets (and tells their senders) accordingly. Only
/// messages quoting an IPIP packet with a VIP inside are ours; the ICMP packet goes on to
/// the stack either way.
fn learn_path_mtu(skb: &mut SkBuff, net: &Net, header_len: u32) {
    let quoted_at = header_len + ICMP_HEADER_LEN;
    if !skb.may_pull(quoted_at + IPV4_HEADER_LEN) {
        return;
    }
    let [kind, code, _, _, _, _, mtu_hi, mtu_lo] = skb.bytes_at::<8>(header_len);
    if kind != ICMP_DEST_UNREACH || code != ICMP_FRAG_NEEDED {
        return;
    }
    let quoted = skb.ipv4_header_at(quoted_at);
    if quoted.version != 4
        || quoted.header_len < IPV4_HEADER_LEN
        || quoted.protocol != bindings::IPPROTO_IPIP as u8
    {
        return;
    }
    let inner_at = quoted_at + quoted.header_len;
    if !skb.may_pull(inner_at + IPV4_HEADER_LEN)
        || !skb.ipv4_header_at(inner_at).destination.is_vip()
    {
        return;
    }
    let mtu = u32::from(u16::from_be_bytes([mtu_hi, mtu_lo]));
    skb.with_data_advanced(quoted_at, |raw| {
        // SAFETY: `raw` is valid and its data now starts at the quoted outer header, with
        // 20 bytes linear; the namespace is live. The kernel bounds `mtu` (min_pmtu).
        unsafe {
            bindings::ipv4_update_pmtu(raw, net.as_ptr(), mtu, 0, bindings::IPPROTO_IPIP as u8)
        };
    });
}
