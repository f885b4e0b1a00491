// SPDX-License-Identifier: GPL-2.0

//! Socket buffers and IPv4 headers, as much as the data path needs.

use crate::{addr::Ipv4Addr, bindings, device::NetDevice};
use core::{mem::ManuallyDrop, ptr::NonNull};
use kernel::ffi;

/// Size of an IPv4 header without options.
pub(crate) const IPV4_HEADER_LEN: u32 = 20;

/// The fields of an IPv4 header the data path reads, copied out.
#[derive(Clone, Copy)]
pub(crate) struct Ipv4Header {
    pub(crate) version: u8,
    /// Header length in bytes.
    pub(crate) header_len: u32,
    pub(crate) tos: u8,
    pub(crate) total_len: u32,
    /// Fragment offset and flags, in host order.
    pub(crate) frag_off: u16,
    pub(crate) ttl: u8,
    pub(crate) protocol: u8,
    pub(crate) source: Ipv4Addr,
    pub(crate) destination: Ipv4Addr,
}

impl Ipv4Header {
    /// Reads a header from 20 bytes that the caller made sure are there.
    ///
    /// # Safety
    ///
    /// `bytes` must point to at least 20 readable bytes.
    unsafe fn read(bytes: *const u8) -> Self {
        // SAFETY: 20 readable bytes (caller contract); unaligned reads throughout.
        let b = unsafe { core::ptr::read_unaligned(bytes.cast::<[u8; 20]>()) };
        Self {
            version: b[0] >> 4,
            header_len: u32::from(b[0] & 0x0f) * 4,
            tos: b[1],
            total_len: u32::from(u16::from_be_bytes([b[2], b[3]])),
            frag_off: u16::from_be_bytes([b[6], b[7]]),
            ttl: b[8],
            protocol: b[9],
            source: Ipv4Addr::from_raw(u32::from_ne_bytes([b[12], b[13], b[14], b[15]])),
            destination: Ipv4Addr::from_raw(u32::from_ne_bytes([b[16], b[17], b[18], b[19]])),
        }
    }

    /// Whether the sender forbade fragmentation.
    pub(crate) fn dont_fragment(&self) -> bool {
        self.frag_off & bindings::IP_DF as u16 != 0
    }
}

/// A socket buffer we own: dropping it frees it.
///
/// # Invariants
///
/// `ptr` is a valid socket buffer that nothing else frees.
pub(crate) struct SkBuff {
    ptr: NonNull<bindings::sk_buff>,
}

impl SkBuff {
    /// # Safety
    ///
    /// `ptr` must be a valid socket buffer whose ownership passes to the returned value.
    pub(crate) unsafe fn from_raw(ptr: *mut bindings::sk_buff) -> Self {
        // INVARIANT: the caller hands over a valid buffer.
        Self {
            // SAFETY: the caller guarantees validity, hence non-null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
        }
    }

    /// Gives up ownership (to a kernel function that consumes the buffer).
    pub(crate) fn into_raw(self) -> *mut bindings::sk_buff {
        ManuallyDrop::new(self).ptr.as_ptr()
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::sk_buff {
        self.ptr.as_ptr()
    }

    /// Bytes in the packet, from `data` on.
    pub(crate) fn len(&self) -> u32 {
        // SAFETY: valid (type invariant).
        unsafe { (*self.as_ptr()).len }
    }

    /// Whether the packet carries IPv4 (by `skb->protocol`).
    pub(crate) fn is_ipv4(&self) -> bool {
        // SAFETY: valid (type invariant).
        let protocol = unsafe { bindings::vip_skb_protocol(self.as_ptr()) };
        protocol == (bindings::ETH_P_IP as u16).to_be()
    }

    /// Whether the packet is a GSO super-packet.
    pub(crate) fn is_gso(&self) -> bool {
        // SAFETY: valid (type invariant).
        unsafe { bindings::vip_skb_is_gso(self.as_ptr()) }
    }

    /// Whether all GSO segments fit in `mtu` at the network layer.
    pub(crate) fn gso_fits(&self, mtu: u32) -> bool {
        // SAFETY: valid (type invariant).
        unsafe { bindings::skb_gso_validate_network_len(self.as_ptr(), mtu) }
    }

    /// Makes the first `len` bytes from the network header linear; false if the packet is
    /// shorter.
    pub(crate) fn may_pull(&mut self, len: u32) -> bool {
        // SAFETY: valid (type invariant); may reallocate the head, which is why it takes
        // `&mut self` (no header read before it survives it).
        unsafe { bindings::vip_pskb_network_may_pull(self.as_ptr(), len) }
    }

    /// The flow hash, computed from the packet's headers if it has none yet.
    pub(crate) fn hash(&mut self) -> u32 {
        // SAFETY: valid (type invariant).
        unsafe { bindings::vip_skb_get_hash(self.as_ptr()) }
    }

    /// The MTU of the route the packet is on; 0 if it has none.
    pub(crate) fn dst_mtu(&self) -> u32 {
        // SAFETY: valid (type invariant).
        unsafe { bindings::vip_skb_dst_mtu(self.as_ptr()) }
    }

    /// Whether XFRM's offload path still has to apply ESP to the packet: it carries an
    /// offload state that is not GRO's (a received packet already decrypted). Software ESP
    /// offload encrypts in `validate_xmit_xfrm` before our `ndo_start_xmit`, and clears the
    /// state when it has; but when the CPU's XFRM backlog is busy it hands the packet on
    /// unencrypted, asking for a requeue that a device without a queue never does
    /// (`docs/esp-plan.md`, 4.3). Sent, it would leave in clear inside IPIP.
    pub(crate) fn xfrm_pending(&self) -> bool {
        // SAFETY: valid (type invariant); `xfrm_offload` only reads the skb's extensions.
        let offload = unsafe { bindings::vip_xfrm_offload(self.as_ptr()) };
        if offload.is_null() {
            return false;
        }
        // SAFETY: non-null, it points into the skb's sec_path extension, which lives as
        // long as the skb, which we hold.
        let flags = unsafe { (*offload).flags };
        flags & bindings::VIP_XFRM_GRO == 0
    }

    /// Confirms the packet's conntrack entry, if it has an unconfirmed one (see `glue.c`);
    /// returns conntrack's verdict.
    pub(crate) fn confirm_conntrack(&mut self) -> u32 {
        // SAFETY: valid (type invariant); netfilter calls our hooks in an RCU read-side
        // section, which `nf_ct_hook` needs.
        unsafe { bindings::vip_confirm_conntrack(self.as_ptr()) }
    }

    /// The IPv4 header at the network header.
    ///
    /// The caller must have made sure (`may_pull`) 20 bytes are linear there.
    pub(crate) fn ipv4_header(&self) -> Ipv4Header {
        // SAFETY: valid (type invariant); the network header is set on both paths that call
        // this (transmit and LOCAL_IN), and the caller pulled 20 bytes.
        unsafe { Ipv4Header::read(bindings::vip_ip_hdr(self.as_ptr()).cast()) }
    }

    /// `N` bytes `offset` bytes after the network header. The caller must have pulled
    /// `offset + N` bytes.
    pub(crate) fn bytes_at<const N: usize>(&self, offset: u32) -> [u8; N] {
        // SAFETY: valid (type invariant); `offset + N` linear bytes (caller contract).
        unsafe {
            core::ptr::read_unaligned(
                bindings::vip_ip_hdr(self.as_ptr())
                    .cast::<u8>()
                    .add(offset as usize)
                    .cast::<[u8; N]>(),
            )
        }
    }

    /// Runs `f` on the buffer with its data pointer `offset` bytes further (for kernel
    /// functions that read a header at `skb->data`), then moves it back. The caller must
    /// have pulled at least `offset` bytes; `f` must not keep the buffer.
    pub(crate) fn with_data_advanced(
        &mut self,
        offset: u32,
        f: impl FnOnce(*mut bindings::sk_buff),
    ) {
        let raw = self.as_ptr();
        // SAFETY: valid (type invariant); `offset` linear bytes (caller contract), so the
        // pull stays within the head, and the push restores exactly what was pulled.
        unsafe { bindings::vip_skb_pull_data(raw, offset) };
        f(raw);
        // SAFETY: as above.
        unsafe { bindings::vip_skb_push_data(raw, offset) };
    }

    /// The IPv4 header `offset` bytes after the network header (the inner header of an
    /// encapsulated packet). The caller must have pulled `offset + 20` bytes.
    pub(crate) fn ipv4_header_at(&self, offset: u32) -> Ipv4Header {
        // SAFETY: as `ipv4_header`, with `offset + 20` bytes pulled by the caller.
        unsafe {
            Ipv4Header::read(
                bindings::vip_ip_hdr(self.as_ptr())
                    .cast::<u8>()
                    .add(offset as usize),
            )
        }
    }
}

impl Drop for SkBuff {
    fn drop(&mut self) {
        // SAFETY: owned (type invariant).
        unsafe { bindings::vip_kfree_skb(self.as_ptr()) };
    }
}

/// Turns an encapsulated packet at LOCAL_IN into its inner packet, arriving on `dev`, as
/// `ip_tunnel_rcv` does: strips the `outer_len`-byte outer header with
/// `__iptunnel_pull_header` (which also clears what belonged to the outer packet's journey:
/// conntrack, hash, VLAN tag, queue, offload state), and applies ECN from the outer header.
/// Returns the packet ready for `NetDevice::receive`, or `None` if it had to be dropped (the
/// buffer is then freed and the drop counted on `dev`).
pub(crate) fn decapsulate(skb: SkBuff, outer_len: u32, dev: &NetDevice) -> Option<SkBuff> {
    let raw = skb.as_ptr();
    // Where the outer header is, from the head: the pull may reallocate the head.
    // SAFETY: valid (type invariant of `SkBuff`).
    let outer_at = unsafe { bindings::vip_skb_network_offset_from_head(raw) };
    // SAFETY: as above; at LOCAL_IN the data starts at the outer header, and the caller
    // pulled it and the inner one, so this strips exactly the outer header.
    let pulled = unsafe {
        bindings::__iptunnel_pull_header(
            raw,
            outer_len as ffi::c_int,
            (bindings::ETH_P_IP as u16).to_be(),
            false,
            false,
        )
    };
    // SAFETY: as above; the data now starts at the inner header.
    if pulled != 0 || !unsafe { bindings::vip_skb_reset_inner(raw) } {
        dev.rx_dropped();
        return None;
    }
    // SAFETY: the outer header's bytes stay in the head, at the offset saved above.
    let ecn = unsafe { bindings::vip_ecn_decap_at(raw, outer_at) };
    // As ip_tunnel_rcv: 1 is "log and go on", 2 "drop".
    if ecn > 1 {
        dev.rx_dropped();
        return None;
    }
    // SAFETY: valid, and `dev` is a registered device.
    unsafe { bindings::vip_skb_set_dev(raw, dev.as_ptr()) };
    Some(skb)
}
