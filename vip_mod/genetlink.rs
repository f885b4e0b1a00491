// SPDX-License-Identifier: GPL-2.0

//! Generic netlink: family registration, commands, dumps and messages.
//!
//! This wrapper holds every `unsafe` that talking to genetlink needs, so that the family
//! itself (`netlink.rs`) is defined in safe code.

use crate::{bindings, netns::Net};
use core::{
    marker::PhantomData,
    mem::ManuallyDrop,
    ptr::NonNull,
    sync::atomic::{AtomicPtr, Ordering},
};
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
    /// `CAP_NET_ADMIN` in the user namespace that owns the request's network namespace.
    NetAdmin,
}

impl Permission {
    const fn flags(self) -> u8 {
        match self {
            Permission::Any => 0,
            Permission::NetAdmin => bindings::GENL_UNS_ADMIN_PERM as u8,
        }
    }
}

/// A command answered by a `doit` handler.
pub(crate) trait Command {
    /// The command number.
    const CMD: u32;
    /// Who may run it.
    const PERMISSION: Permission;
    /// The attributes it takes; [`PolicyRef::NONE`] for none.
    const POLICY: PolicyRef;
    /// Handles one request.
    fn doit(request: &Request<'_>) -> Result;
}

/// A command answered, as a dump, by a series of messages written into successive buffers.
pub(crate) trait Dump {
    /// Where the dump has got to, kept between the reads of the requester.
    type Cursor;
    /// Starts a dump in `net`.
    fn start(net: &Net) -> Result<KBox<Self::Cursor>>;
    /// Writes as many messages as fit, from where `cursor` is.
    fn dump(cursor: &mut Self::Cursor, out: &mut DumpWriter<'_>) -> Result;
    /// Ends the dump, whether it completed or not.
    fn done(cursor: KBox<Self::Cursor>);
}

const fn op(cmd: u32, permission: Permission, policy: PolicyRef) -> bindings::genl_ops {
    bindings::genl_ops {
        doit: None,
        start: None,
        dumpit: None,
        done: None,
        // Without a policy (the family has none either), genetlink refuses every attribute.
        policy: policy.ptr,
        maxattr: policy.maxattr,
        cmd: cmd as u8,
        internal_flags: 0,
        flags: permission.flags(),
        // Strict validation: unknown attributes and trailing data are errors.
        validate: 0,
    }
}

/// The `genl_ops` entry of a command with only a `doit` handler.
pub(crate) const fn doit_op<C: Command>() -> bindings::genl_ops {
    let mut op = op(C::CMD, C::PERMISSION, C::POLICY);
    op.doit = Some(doit_callback::<C>);
    op
}

/// The `genl_ops` entry of a command that answers one request with `C` and a dump with
/// `D`. Both run with `C::PERMISSION`.
pub(crate) const fn doit_dump_op<C: Command, D: Dump>() -> bindings::genl_ops {
    let mut op = doit_op::<C>();
    op.start = Some(start_callback::<D>);
    op.dumpit = Some(dumpit_callback::<D>);
    op.done = Some(done_callback::<D>);
    op
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

/// The dump cursor lives in the first bytes of `cb->ctx`, as a pointer from `KBox`.
fn cursor_slot(cb: *mut bindings::netlink_callback) -> *mut *mut ffi::c_void {
    // SAFETY: `cb` is valid (all callers get it from genetlink), and `ctx` is 48 bytes of
    // per-dump scratch space, aligned for a pointer.
    unsafe { core::ptr::addr_of_mut!((*cb).__bindgen_anon_1.ctx).cast() }
}

/// # Safety
///
/// Only genetlink calls this, with a valid `cb`.
unsafe extern "C" fn start_callback<D: Dump>(cb: *mut bindings::netlink_callback) -> ffi::c_int {
    from_result(|| {
        // SAFETY: `cb` is valid and its socket belongs to a live namespace during the dump.
        let net = unsafe { Net::from_raw(bindings::vip_genl_dump_net(cb)) };
        let cursor = D::start(net)?;
        // SAFETY: `cursor_slot` points into `cb`; `done_callback` takes the box back.
        unsafe { *cursor_slot(cb) = KBox::into_raw(cursor).cast() };
        Ok(0)
    })
}

/// # Safety
///
/// Only genetlink calls this, with valid `skb` and `cb`, after `start_callback` succeeded.
unsafe extern "C" fn dumpit_callback<D: Dump>(
    skb: *mut bindings::sk_buff,
    cb: *mut bindings::netlink_callback,
) -> ffi::c_int {
    // SAFETY: `start_callback` stored a valid cursor, which only `done_callback` frees, and
    // genetlink runs the callbacks of one dump one at a time.
    let cursor = unsafe { &mut *(*cursor_slot(cb)).cast::<D::Cursor>() };
    let mut out = DumpWriter {
        skb,
        cb,
        written: 0,
        _lifetime: PhantomData,
    };
    match D::dump(cursor, &mut out) {
        // A non-zero length asks for another call; an empty buffer ends the dump.
        // SAFETY: `skb` is valid for the duration of the call.
        Ok(()) => unsafe { (*skb).len as ffi::c_int },
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Only genetlink calls this, once, with a valid `cb`, after `start_callback` succeeded.
unsafe extern "C" fn done_callback<D: Dump>(cb: *mut bindings::netlink_callback) -> ffi::c_int {
    // SAFETY: the slot holds the pointer `start_callback` made with `KBox::into_raw`, and
    // this is the last callback of the dump.
    let cursor = unsafe { KBox::from_raw((*cursor_slot(cb)).cast::<D::Cursor>()) };
    D::done(cursor);
    0
}

/// Attribute type and its validation, for one entry of a [`Policy`].
pub(crate) enum AttrKind {
    /// A big-endian 32-bit value, such as an IPv4 address.
    Be32,
    /// A 32-bit value whose bits must lie within the mask.
    U32Mask(u32),
    /// A 32-bit value (the handler checks its range).
    U32,
}

/// An attribute policy table, indexed by attribute type.
#[repr(transparent)]
pub(crate) struct Policy<const N: usize>([bindings::nla_policy; N]);

/// A command's policy, as its `genl_ops` entry holds it.
#[derive(Clone, Copy)]
pub(crate) struct PolicyRef {
    ptr: *const bindings::nla_policy,
    maxattr: u32,
}

impl PolicyRef {
    /// No attribute at all.
    pub(crate) const NONE: Self = Self {
        ptr: core::ptr::null(),
        maxattr: 0,
    };
}

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

    /// Accepts attribute `attr` in requests, as `kind`.
    pub(crate) const fn accept(mut self, attr: u32, kind: AttrKind) -> Self {
        let entry = &mut self.0[attr as usize];
        match kind {
            AttrKind::Be32 => entry.type_ = bindings::NLA_BE32 as u8,
            AttrKind::U32Mask(mask) => {
                entry.type_ = bindings::NLA_U32 as u8;
                entry.validation_type = bindings::NLA_VALIDATE_MASK as u8;
                entry.__bindgen_anon_1.mask = mask;
            }
            AttrKind::U32 => entry.type_ = bindings::NLA_U32 as u8,
        }
        self
    }

    /// The policy of a command.
    pub(crate) const fn as_ref(&'static self) -> PolicyRef {
        assert!(N > 0);
        PolicyRef {
            ptr: self.0.as_ptr(),
            maxattr: (N - 1) as u32,
        }
    }
}

/// The operations table of a family.
#[repr(transparent)]
pub(crate) struct Ops<const N: usize>(pub(crate) [bindings::genl_ops; N]);

// SAFETY: never written after construction; the function pointers are `'static` and the
// policy pointers null (the family's policy applies).
unsafe impl<const N: usize> Sync for Ops<N> {}

/// What a family is made of; copied into the kernel's `genl_family` on registration. Each
/// command has its own policy; the family has none.
pub(crate) struct Family<const M: usize> {
    /// NUL-terminated name, as the UAPI header defines it.
    pub(crate) name: &'static [u8],
    pub(crate) version: u32,
    pub(crate) ops: &'static Ops<M>,
    /// The multicast group for [`multicast`]; NUL-terminated. Only `CAP_NET_ADMIN` in the
    /// namespace's user namespace may join it: events reveal where peers are.
    pub(crate) events_group: &'static [u8],
}

/// The registered family, for [`multicast`] from the data path; null when there is none.
/// Readers hold the RCU read lock, and `Registration::drop` waits for them.
static FAMILY: AtomicPtr<bindings::genl_family> = AtomicPtr::new(core::ptr::null_mut());

/// A registered family; dropping it unregisters the family.
///
/// # Invariants
///
/// `raw` is registered with genetlink, and its address is stable while it is.
pub(crate) struct Registration {
    raw: Pin<KBox<Opaque<bindings::genl_family>>>,
    _groups: KBox<[bindings::genl_multicast_group; 1]>,
}

// SAFETY: after registration only genetlink touches the family, under its own locks.
unsafe impl Send for Registration {}
// SAFETY: `Registration` offers no access to the family through `&self`.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers `family`, owned by `module`.
    pub(crate) fn new<const M: usize>(
        family: &Family<M>,
        module: &'static ThisModule,
    ) -> Result<Self> {
        let mut raw = bindings::genl_family::default();
        if family.name.len() > raw.name.len() || family.name.last() != Some(&0) {
            return Err(EINVAL);
        }
        raw.name[..family.name.len()].copy_from_slice(family.name);
        raw.version = family.version;
        raw.ops = family.ops.0.as_ptr();
        raw.n_ops = u8::try_from(M)?;
        let mut group = bindings::genl_multicast_group::default();
        if family.events_group.len() > group.name.len() || family.events_group.last() != Some(&0) {
            return Err(EINVAL);
        }
        group.name[..family.events_group.len()].copy_from_slice(family.events_group);
        group.flags = bindings::VIP_GENL_MCAST_CAP_NET_ADMIN;
        let groups = KBox::new([group], GFP_KERNEL)?;
        raw.mcgrps = groups.as_ptr();
        raw.n_mcgrps = 1;
        raw.set_netnsok(1);
        // Handlers take their own locks; genl_mutex would serialise every namespace.
        raw.set_parallel_ops(1);
        raw.module = module.as_ptr().cast();

        let raw = KBox::pin(Opaque::new(raw), GFP_KERNEL)?;
        // SAFETY: `raw` is pinned on the heap, so the family keeps its address until `drop`
        // unregisters it, and the ops and policies it points to are `'static`.
        // The groups, like the family, stay in their boxes until `drop`.
        to_result(unsafe { bindings::genl_register_family(raw.get()) })?;
        FAMILY.store(raw.get(), Ordering::Release);
        // INVARIANT: registered just above.
        Ok(Self {
            raw,
            _groups: groups,
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The data path may be about to multicast: unpublish, then wait for it.
        FAMILY.store(core::ptr::null_mut(), Ordering::Release);
        crate::rcu::synchronize();
        // SAFETY: the family is registered (type invariant). Unregistering waits for running
        // handlers, and dumps in progress hold a reference on the module, so nothing uses
        // the family once this returns and the box may be freed.
        unsafe { bindings::genl_unregister_family(self.raw.get()) };
    }
}

/// Whether anyone in `net` listens to the family's events.
pub(crate) fn has_listeners(net: &Net) -> bool {
    let _guard = crate::rcu::Guard::new();
    let family = FAMILY.load(Ordering::Acquire);
    // SAFETY: a published family stays registered while our RCU read section lasts (see
    // `Registration::drop`); `net` is live.
    !family.is_null() && unsafe { bindings::vip_genl_has_listeners(family, net.as_ptr(), 0) }
}

/// Multicasts an event with header `cmd` and the attributes `build` puts to the events
/// group of `net`. Callable from any context (it allocates atomically).
pub(crate) fn multicast(
    net: &Net,
    cmd: u32,
    build: impl FnOnce(&mut Writer<'_>) -> Result,
) -> Result {
    let _guard = crate::rcu::Guard::new();
    let family = FAMILY.load(Ordering::Acquire);
    if family.is_null() {
        return Ok(());
    }
    let msg = OwnedMessage::new(128, kernel::bindings::GFP_ATOMIC)?;
    // SAFETY: `family` is registered while our RCU read section lasts (see
    // `Registration::drop`); `msg` is a fresh message we own.
    let header = unsafe { bindings::vip_genlmsg_put_event(msg.as_ptr(), family, cmd as u8) };
    // SAFETY: `header` was just put into `msg`.
    unsafe { msg.finish(header, build) }?;
    // SAFETY: the multicast consumes the message whatever it returns; `family` and `net`
    // are live (as above).
    let ret =
        unsafe { bindings::vip_genlmsg_multicast_netns(family, net.as_ptr(), msg.into_raw(), 0) };
    // ESRCH: the last listener left meanwhile.
    if ret == -(kernel::bindings::ESRCH as i32) {
        return Ok(());
    }
    to_result(ret)
}

/// A netlink attribute of a request.
///
/// # Invariants
///
/// `nla` is a valid attribute that passed the family's policy.
#[derive(Clone, Copy)]
pub(crate) struct Attr<'a> {
    nla: NonNull<bindings::nlattr>,
    _lifetime: PhantomData<&'a bindings::nlattr>,
}

impl Attr<'_> {
    /// The value of an attribute the policy declares 32 bits wide.
    pub(crate) fn u32(self) -> u32 {
        // SAFETY: valid (type invariant), and the policy checked the length.
        unsafe { bindings::vip_nla_get_u32(self.nla.as_ptr()) }
    }

    /// The raw (big-endian) value of an attribute the policy declares `NLA_BE32`.
    pub(crate) fn be32(self) -> u32 {
        // SAFETY: valid (type invariant), and the policy checked the length.
        unsafe { bindings::vip_nla_get_be32(self.nla.as_ptr()) }
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

impl<'a> Request<'a> {
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

    /// The network namespace of the requesting socket.
    pub(crate) fn net(&self) -> &'a Net {
        // SAFETY: `info` is valid (type invariant); the requesting socket keeps its
        // namespace alive for the duration of the request.
        unsafe { Net::from_raw(bindings::vip_genl_info_net(self.info.as_ptr())) }
    }

    /// The request's attribute `attr`, if present.
    pub(crate) fn attr(&self, attr: u32) -> Option<Attr<'a>> {
        // SAFETY: `info` is valid (type invariant) and `attrs` has `maxattr + 1` entries,
        // validated against the policy; out-of-range types are never asked for, since
        // every caller passes an enum `vip_attr` constant.
        let nla = unsafe { *(*self.info.as_ptr()).attrs.add(attr as usize) };
        // INVARIANT: genetlink validated every attribute it parsed.
        NonNull::new(nla).map(|nla| Attr {
            nla,
            _lifetime: PhantomData,
        })
    }

    /// The request's attribute `attr`; if it is missing, says so in the extended ack.
    pub(crate) fn required(&self, attr: u32) -> Result<Attr<'a>> {
        self.attr(attr).ok_or_else(|| {
            // SAFETY: `info` is valid (type invariant).
            unsafe { bindings::vip_genl_set_err_missing(self.info.as_ptr(), attr as ffi::c_int) };
            EINVAL
        })
    }

    /// Explains a refusal in the extended ack, pointing at `attr` if given.
    pub(crate) fn error(&self, attr: Option<Attr<'_>>, msg: &'static CStr) {
        let nla = attr.map_or(core::ptr::null(), |a| a.nla.as_ptr().cast_const());
        // SAFETY: `info` is valid (type invariant); extack keeps `msg`, which is `'static`.
        unsafe { bindings::vip_genl_set_err_msg(self.info.as_ptr(), nla, msg.as_char_ptr()) };
    }

    /// Sends a reply of one message, with header `cmd` and the attributes `build` puts.
    pub(crate) fn reply(&self, cmd: u32, build: impl FnOnce(&mut Writer<'_>) -> Result) -> Result {
        let msg = OwnedMessage::new(bindings::VIP_NLMSG_GOODSIZE, kernel::bindings::GFP_KERNEL)?;
        let info = self.info.as_ptr();
        // SAFETY: `info` is valid (type invariant) and names the family the request came to;
        // `msg` is a fresh message we own.
        let header = unsafe {
            bindings::vip_genlmsg_put_reply(msg.as_ptr(), info, (*info).family, 0, cmd as u8)
        };
        // SAFETY: `header` was just put into `msg`.
        unsafe { msg.finish(header, build) }?;
        let skb = msg.into_raw();
        // SAFETY: genlmsg_reply takes ownership of `skb` whatever it returns, and `info` is
        // valid (type invariant).
        to_result(unsafe { bindings::vip_genlmsg_reply(skb, info) })
    }
}

/// Puts attributes into a message under construction.
///
/// # Invariants
///
/// `skb` is a valid message buffer for `'a`.
pub(crate) struct Writer<'a> {
    skb: NonNull<bindings::sk_buff>,
    _lifetime: PhantomData<&'a mut bindings::sk_buff>,
}

impl Writer<'_> {
    fn skb(&mut self) -> *mut bindings::sk_buff {
        self.skb.as_ptr()
    }

    /// Puts a `u32` attribute; `EMSGSIZE` when the message is full.
    pub(crate) fn put_u32(&mut self, attr: u32, value: u32) -> Result {
        // SAFETY: `skb` is valid (type invariant).
        to_result(unsafe { bindings::vip_nla_put_u32(self.skb(), attr as ffi::c_int, value) })
    }

    /// Puts a `u64` attribute, padded with `VIP_A_PAD`; `EMSGSIZE` when the message is full.
    pub(crate) fn put_u64(&mut self, attr: u32, value: u64) -> Result {
        self.put_u64_pad(attr, value, bindings::VIP_A_PAD)
    }

    /// Puts a `u64` attribute, padded with attribute `pad` where alignment needs it.
    pub(crate) fn put_u64_pad(&mut self, attr: u32, value: u64, pad: u32) -> Result {
        let pad = pad as ffi::c_int;
        // SAFETY: `skb` is valid (type invariant).
        to_result(unsafe { bindings::vip_nla_put_u64(self.skb(), attr as ffi::c_int, value, pad) })
    }

    /// Puts a big-endian 32-bit attribute (given raw); `EMSGSIZE` when the message is full.
    pub(crate) fn put_be32(&mut self, attr: u32, value: u32) -> Result {
        // SAFETY: `skb` is valid (type invariant).
        to_result(unsafe { bindings::vip_nla_put_be32(self.skb(), attr as ffi::c_int, value) })
    }

    /// Puts a nested attribute holding what `build` puts.
    pub(crate) fn put_nested(
        &mut self,
        attr: u32,
        build: impl FnOnce(&mut Writer<'_>) -> Result,
    ) -> Result {
        // SAFETY: `skb` is valid (type invariant).
        let nest = unsafe { bindings::vip_nla_nest_start(self.skb(), attr as ffi::c_int) };
        if nest.is_null() {
            return Err(emsgsize());
        }
        build(self)?;
        // SAFETY: `nest` was started in this message just above.
        unsafe { bindings::vip_nla_nest_end(self.skb(), nest) };
        Ok(())
    }

    /// Puts a NUL-terminated string attribute; `EMSGSIZE` when the message is full.
    pub(crate) fn put_string(&mut self, attr: u32, value: &CStr) -> Result {
        // SAFETY: `skb` is valid (type invariant) and `value` is NUL-terminated.
        to_result(unsafe {
            bindings::vip_nla_put_string(self.skb(), attr as ffi::c_int, value.as_char_ptr())
        })
    }
}

/// Writes the messages of one read of a dump.
///
/// # Invariants
///
/// `skb` and `cb` are the valid buffer and callback state of the current `dumpit` call.
pub(crate) struct DumpWriter<'a> {
    skb: *mut bindings::sk_buff,
    cb: *mut bindings::netlink_callback,
    written: usize,
    _lifetime: PhantomData<&'a mut bindings::sk_buff>,
}

impl DumpWriter<'_> {
    /// Adds one message with header `cmd` and the attributes `build` puts. Returns
    /// `Ok(false)`, leaving the buffer as it was, when the message does not fit: the caller
    /// stops and sends the same item first in the next read.
    pub(crate) fn message(
        &mut self,
        cmd: u32,
        build: impl FnOnce(&mut Writer<'_>) -> Result,
    ) -> Result<bool> {
        // SAFETY: `skb` and `cb` are valid (type invariant); the family is the one the dump
        // was started on.
        let header = unsafe {
            let family = bindings::vip_genl_dump_family(self.cb);
            bindings::vip_genlmsg_put_dump(self.skb, self.cb, family, cmd as u8)
        };
        if header.is_null() {
            return self.full();
        }
        // INVARIANT: the dump buffer is valid during this call.
        // SAFETY: `skb` is not null (type invariant).
        let skb = unsafe { NonNull::new_unchecked(self.skb) };
        let result = build(&mut Writer {
            skb,
            _lifetime: PhantomData,
        });
        match result {
            Ok(()) => {
                // SAFETY: `header` was put into this buffer just above.
                unsafe { bindings::vip_genlmsg_end(self.skb, header) };
                self.written += 1;
                Ok(true)
            }
            Err(e) => {
                // SAFETY: `header` was put into this buffer just above; cancelling trims
                // the buffer back to where it was before it.
                unsafe { bindings::vip_genlmsg_cancel(self.skb, header) };
                if e == emsgsize() {
                    self.full()
                } else {
                    Err(e)
                }
            }
        }
    }

    fn full(&self) -> Result<bool> {
        // A message too large for an empty buffer would never fit: an error, not a loop.
        if self.written == 0 {
            Err(emsgsize())
        } else {
            Ok(false)
        }
    }
}

/// A generic netlink message being built; freed on drop unless it was sent.
///
/// # Invariants
///
/// `skb` is a valid socket buffer owned by this value.
struct OwnedMessage {
    skb: NonNull<bindings::sk_buff>,
}

impl OwnedMessage {
    fn new(size: usize, gfp: kernel::bindings::gfp_t) -> Result<Self> {
        // SAFETY: genlmsg_new has no preconditions; it returns null on failure.
        let skb = unsafe { bindings::vip_genlmsg_new(size, gfp) };
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

    /// Puts the attributes `build` makes after the generic netlink header `header` (null
    /// if it did not fit) and closes the message.
    ///
    /// # Safety
    ///
    /// A non-null `header` must have been put into this message, as its last header.
    unsafe fn finish(
        &self,
        header: *mut ffi::c_void,
        build: impl FnOnce(&mut Writer<'_>) -> Result,
    ) -> Result {
        if header.is_null() {
            return Err(emsgsize());
        }
        // INVARIANT: this message owns the buffer for as long as the writer lives.
        build(&mut Writer {
            skb: self.skb,
            _lifetime: PhantomData,
        })?;
        // SAFETY: `header` belongs to this message (caller contract).
        unsafe { bindings::vip_genlmsg_end(self.as_ptr(), header) };
        Ok(())
    }
}

impl Drop for OwnedMessage {
    fn drop(&mut self) {
        // SAFETY: we own `skb` (type invariant) and nothing else frees it.
        unsafe { bindings::vip_nlmsg_free(self.as_ptr()) };
    }
}
