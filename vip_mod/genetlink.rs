// SPDX-License-Identifier: GPL-2.0

//! Generic netlink: family registration, commands and reply messages.
//!
//! This wrapper holds every `unsafe` that talking to genetlink needs, so that the family
//! itself (`netlink.rs`) is defined in safe code.

use crate::bindings;
use core::{marker::PhantomData, mem::ManuallyDrop, ptr::NonNull};
use kernel::{
    error::{from_result, to_result},
    ffi,
    prelude::*,
    types::Opaque,
};

/// `EMSGSIZE`, which the 6.12 `kernel` crate does not name.
fn emsgsize() -> Error {
    Error::from_errno(-(kernel::bindings::EMSGSIZE as i32))
}

/// Who may run a command.
#[derive(Clone, Copy)]
pub(crate) enum Permission {
    /// Anyone.
    Any,
}

/// A command of a generic netlink family, answered by a `doit` handler.
pub(crate) trait Command {
    /// The command number.
    const CMD: u32;
    /// Who may run it.
    const PERMISSION: Permission;
    /// Handles one request.
    fn doit(request: &Request<'_>) -> Result;
}

/// The `genl_small_ops` entry that dispatches `C::CMD` to `C::doit`.
pub(crate) const fn small_op<C: Command>() -> bindings::genl_small_ops {
    bindings::genl_small_ops {
        doit: Some(doit_callback::<C>),
        dumpit: None,
        cmd: C::CMD as u8,
        internal_flags: 0,
        flags: match C::PERMISSION {
            Permission::Any => 0,
        },
        // Strict validation: unknown attributes and trailing data are errors.
        validate: 0,
    }
}

/// # Safety
///
/// Only genetlink calls this, with an `info` that is valid for the duration of the call.
unsafe extern "C" fn doit_callback<C: Command>(
    _skb: *mut bindings::sk_buff,
    info: *mut bindings::genl_info,
) -> ffi::c_int {
    // SAFETY: genetlink passes an `info` that stays valid until we return, and `request`
    // does not outlive this call.
    let request = unsafe { Request::from_raw(info) };
    from_result(|| C::doit(&request).map(|()| 0))
}

/// An attribute policy table, indexed by attribute type.
#[repr(transparent)]
pub(crate) struct Policy<const N: usize>([bindings::nla_policy; N]);

// SAFETY: a `Policy` is never written after construction, and the pointers an entry may
// hold point to other immutable statics.
unsafe impl<const N: usize> Sync for Policy<N> {}

impl<const N: usize> Policy<N> {
    /// A table that rejects every attribute: under strict validation `NLA_UNSPEC` entries
    /// answer "Unsupported attribute".
    pub(crate) const fn reject_all() -> Self {
        // SAFETY: `nla_policy` is plain data; all zeroes is `NLA_UNSPEC` with no bounds.
        Self(unsafe { core::mem::zeroed() })
    }

    fn as_slice(&'static self) -> &'static [bindings::nla_policy] {
        &self.0
    }
}

/// What a family is made of; copied into the kernel's `genl_family` on registration.
pub(crate) struct Family<const N: usize> {
    /// NUL-terminated name, as the UAPI header defines it.
    pub(crate) name: &'static [u8],
    pub(crate) version: u32,
    pub(crate) policy: &'static Policy<N>,
    pub(crate) ops: &'static [bindings::genl_small_ops],
}

/// A registered family; dropping it unregisters the family.
///
/// # Invariants
///
/// `raw` is registered with genetlink, and its address is stable while it is.
pub(crate) struct Registration {
    raw: Pin<KBox<Opaque<bindings::genl_family>>>,
}

// SAFETY: after registration only genetlink touches the family, under its own locks.
unsafe impl Send for Registration {}
// SAFETY: `Registration` offers no access to the family through `&self`.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers `family`, owned by `module`.
    pub(crate) fn new<const N: usize>(
        family: &Family<N>,
        module: &'static ThisModule,
    ) -> Result<Self> {
        let mut raw = bindings::genl_family::default();
        if family.name.len() > raw.name.len() || family.name.last() != Some(&0) {
            return Err(EINVAL);
        }
        raw.name[..family.name.len()].copy_from_slice(family.name);
        raw.version = family.version;
        let policy = family.policy.as_slice();
        raw.maxattr = u32::try_from(policy.len().checked_sub(1).ok_or(EINVAL)?)?;
        raw.policy = policy.as_ptr();
        raw.small_ops = family.ops.as_ptr();
        raw.n_small_ops = u8::try_from(family.ops.len())?;
        raw.set_netnsok(1);
        // Handlers take their own locks; genl_mutex would serialise every namespace.
        raw.set_parallel_ops(1);
        raw.module = module.as_ptr().cast();

        let raw = KBox::pin(Opaque::new(raw), GFP_KERNEL)?;
        // SAFETY: `raw` is pinned on the heap, so the family keeps its address until `drop`
        // unregisters it, and the policy and ops it points to are `'static`.
        to_result(unsafe { bindings::genl_register_family(raw.get()) })?;
        // INVARIANT: registered just above.
        Ok(Self { raw })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: the family is registered (type invariant). Unregistering waits for running
        // handlers, and dumps in progress hold a reference on the module, so nothing uses
        // the family once this returns and the box may be freed.
        unsafe { bindings::genl_unregister_family(self.raw.get()) };
    }
}

/// A request being answered by a `doit` handler.
///
/// # Invariants
///
/// `info` is valid for `'a`.
pub(crate) struct Request<'a> {
    info: NonNull<bindings::genl_info>,
    _lifetime: PhantomData<&'a bindings::genl_info>,
}

impl Request<'_> {
    /// # Safety
    ///
    /// `info` must be valid and not null for the lifetime of the returned value.
    unsafe fn from_raw(info: *mut bindings::genl_info) -> Self {
        // INVARIANT: the caller guarantees `info` is valid for the lifetime.
        Self {
            // SAFETY: the caller guarantees `info` is not null.
            info: unsafe { NonNull::new_unchecked(info) },
            _lifetime: PhantomData,
        }
    }

    /// Sends a reply of one message, with header `cmd` and the attributes `build` puts.
    pub(crate) fn reply(&self, cmd: u32, build: impl FnOnce(&mut Message) -> Result) -> Result {
        let mut msg = Message::new(bindings::VIP_NLMSG_GOODSIZE)?;
        let info = self.info.as_ptr();
        // SAFETY: `info` is valid (type invariant) and names the family the request came to;
        // `msg` is a fresh message we own.
        let header = unsafe {
            bindings::vip_genlmsg_put_reply(msg.as_ptr(), info, (*info).family, 0, cmd as u8)
        };
        if header.is_null() {
            return Err(emsgsize());
        }
        build(&mut msg)?;
        // SAFETY: `header` was put into this message just above.
        unsafe { bindings::vip_genlmsg_end(msg.as_ptr(), header) };
        let skb = msg.into_raw();
        // SAFETY: genlmsg_reply takes ownership of `skb` whatever it returns, and `info` is
        // valid (type invariant).
        to_result(unsafe { bindings::vip_genlmsg_reply(skb, info) })
    }
}

/// A generic netlink message being built; freed on drop unless it was sent.
///
/// # Invariants
///
/// `skb` is a valid socket buffer owned by this value.
pub(crate) struct Message {
    skb: NonNull<bindings::sk_buff>,
}

impl Message {
    fn new(size: usize) -> Result<Self> {
        // SAFETY: genlmsg_new has no preconditions; it returns null on failure.
        let skb = unsafe { bindings::vip_genlmsg_new(size, kernel::bindings::GFP_KERNEL) };
        // INVARIANT: a non-null result is a fresh socket buffer we now own.
        Ok(Self {
            skb: NonNull::new(skb).ok_or(ENOMEM)?,
        })
    }

    fn as_ptr(&self) -> *mut bindings::sk_buff {
        self.skb.as_ptr()
    }

    fn into_raw(self) -> *mut bindings::sk_buff {
        ManuallyDrop::new(self).skb.as_ptr()
    }

    /// Puts a `u32` attribute; `EMSGSIZE` when the message is full.
    pub(crate) fn put_u32(&mut self, attr: u32, value: u32) -> Result {
        // SAFETY: `skb` is valid (type invariant).
        to_result(unsafe { bindings::vip_nla_put_u32(self.as_ptr(), attr as ffi::c_int, value) })
    }

    /// Puts a NUL-terminated string attribute; `EMSGSIZE` when the message is full.
    pub(crate) fn put_string(&mut self, attr: u32, value: &CStr) -> Result {
        // SAFETY: `skb` is valid (type invariant) and `value` is NUL-terminated.
        to_result(unsafe {
            bindings::vip_nla_put_string(self.as_ptr(), attr as ffi::c_int, value.as_char_ptr())
        })
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        // SAFETY: we own `skb` (type invariant) and nothing else frees it.
        unsafe { bindings::vip_nlmsg_free(self.as_ptr()) };
    }
}
