//! ESP between VIPs through the kernel's XFRM: what vipd (and the test tool `vip-esp`)
//! asks of the kernel so that a VIP pair's packets cross the network as ciphertext inside
//! vip.ko's IPIP (issue 11, `docs/esp-plan.md`).
//!
//! Transport-mode ESP is applied on the VIP route, before vip0 encapsulates: the outer
//! IPIP header carries the physical addresses, the inner IP header the VIPs and protocol 50.
//! A pair has a policy each way (VIP/32 to VIP/32, any protocol, ESP required), so that a
//! packet between the two VIPs without a usable SA is dropped, never sent or accepted in
//! clear; each direction has its own SA, keyed once and never re-keyed in place (a new
//! session makes new SAs with new SPIs, whose counters start at zero).
//!
//! Everything made here carries [`REQID`], which is how it is found again (for removal, for
//! clean-up after a crash) and told apart from other IPsec users of the host.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_core::DefaultNla;
use netlink_packet_xfrm::{
    IPPROTO_ESP, UserSaInfo, UserTemplate, XFRM_MODE_TRANSPORT, XFRM_POLICY_IN, XFRM_POLICY_OUT,
    XFRM_STATE_ESN, XfrmAttrs,
};
use netlink_sys::AsyncSocket;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The reqid of every SA, template and policy made for VIP ("VIP" and a zero).
pub const REQID: u32 = 0x5649_5000;
/// The highest precedence there is (the lowest number wins): a broader policy made by
/// hand or by another IPsec daemon must not exempt VIP traffic from ESP.
pub const POLICY_PRIORITY: u32 = 0;
/// The largest replay window the kernel takes (`XFRMA_REPLAY_ESN_MAX`, 128 words).
pub const REPLAY_WINDOW: u32 = 4096;
/// SPIs are drawn from here (below 256 is reserved, RFC 4303 section 2.1).
const SPI_RANGE: (u32, u32) = (0x100, u32::MAX);
/// `XFRMA_SA_DIR` (Linux 6.10): the kernel then checks that each SA is used and configured
/// for its one direction. Not in netlink-packet-xfrm 0.5, hence raw.
const XFRMA_SA_DIR: u16 = 33;
const ICV_BITS: u32 = 128;

/// Failures, with the operation that failed. Only the error code of a kernel answer is
/// kept: an error reply can quote the request, and a request can carry a key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open an XFRM netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("{op}: {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel { op: &'static str, errno: i32 },
    #[error("{op}: {what}")]
    Unexpected {
        op: &'static str,
        what: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The kernel's error code, if the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn kernel(op: &'static str) -> impl FnOnce(xfrmnetlink::Error) -> Error {
    move |error| match error {
        xfrmnetlink::Error::NetlinkError(e) => Error::Kernel {
            op,
            errno: e.raw_code().saturating_neg(),
        },
        _ => Error::Unexpected {
            op,
            what: "the kernel's answer was not understood",
        },
    }
}

/// The AEAD an SA uses; both are 256-bit keys with a 32-bit salt, ICV 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    AesGcm,
    ChaCha20Poly1305,
}

impl Aead {
    /// The kernel's name for it (`xfrm_aead_list` in `net/xfrm/xfrm_algo.c`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Aead::AesGcm => "rfc4106(gcm(aes))",
            Aead::ChaCha20Poly1305 => "rfc7539esp(chacha20,poly1305)",
        }
    }

    /// Ours with this kernel name (a NUL-padded field), if any.
    pub fn from_kernel_name(name: &[u8]) -> Option<Self> {
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        [Aead::AesGcm, Aead::ChaCha20Poly1305]
            .into_iter()
            .find(|a| a.kernel_name().as_bytes() == name)
    }

    /// Its name in our configuration and output (`aes-gcm`, `chacha20-poly1305`).
    pub fn name(self) -> &'static str {
        match self {
            Aead::AesGcm => "aes-gcm",
            Aead::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }
}

impl std::str::FromStr for Aead {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "aes-gcm" => Ok(Aead::AesGcm),
            "chacha20-poly1305" => Ok(Aead::ChaCha20Poly1305),
            _ => Err(format!("unknown AEAD {s:?} (aes-gcm or chacha20-poly1305)")),
        }
    }
}

/// Key material for one SA: 32 bytes of key, then the 4-byte salt (RFC 4106 section 8.1,
/// RFC 7634 section 2). Wiped when dropped; the crate underneath copies it into a `Vec`
/// for the one request that carries it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EspKey([u8; EspKey::LEN]);

impl EspKey {
    pub const LEN: usize = 36;

    pub fn new(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for EspKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EspKey(..)")
    }
}

/// Which way an SA carries packets, seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    /// `XFRM_SA_DIR_IN` / `XFRM_SA_DIR_OUT`.
    fn sa_dir(self) -> u8 {
        match self {
            Direction::In => 1,
            Direction::Out => 2,
        }
    }
}

/// Lifetimes in seconds from the SA's creation; 0 is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifetime {
    pub soft_secs: u64,
    pub hard_secs: u64,
}

/// One SA of a pair: between our VIP and the peer's, one direction.
#[derive(Debug, Clone)]
pub struct Sa {
    pub local_vip: Ipv4Addr,
    pub peer_vip: Ipv4Addr,
    pub direction: Direction,
    pub spi: u32,
    pub aead: Aead,
    pub key: EspKey,
    pub lifetime: Lifetime,
}

impl Sa {
    /// (source, destination) of the packets it carries.
    fn addresses(&self) -> (IpAddr, IpAddr) {
        endpoints(self.local_vip, self.peer_vip, self.direction)
    }
}

fn endpoints(local: Ipv4Addr, peer: Ipv4Addr, direction: Direction) -> (IpAddr, IpAddr) {
    match direction {
        Direction::Out => (local.into(), peer.into()),
        Direction::In => (peer.into(), local.into()),
    }
}

/// An SA of ours as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaState {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub spi: u32,
    /// No key yet: an SPI reserved by [`Xfrm::allocate_spi`].
    pub larval: bool,
    /// Its AEAD, if it has a key and the kernel names one of ours.
    pub aead: Option<Aead>,
    pub bytes: u64,
    pub packets: u64,
    /// When it was added (seconds, the kernel's clock).
    pub added: u64,
    /// Packets it refused, by reason (inbound SAs count them).
    pub drops: SaDrops,
}

/// The kernel's per-SA counts of refused packets (`struct xfrm_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaDrops {
    /// Failed authentication: tampered with, or keyed otherwise.
    pub integrity: u32,
    /// A sequence number already seen: replayed.
    pub replayed: u32,
    /// A sequence number older than the replay window.
    pub too_old: u32,
}

/// The kernel's XFRM, over one netlink socket.
#[derive(Clone)]
pub struct Xfrm {
    handle: xfrmnetlink::Handle,
}

impl Xfrm {
    /// Opens the socket; the connection task must be spawned for requests to complete.
    pub fn new() -> Result<(Self, impl std::future::Future<Output = ()>)> {
        let (mut connection, handle, _) = xfrmnetlink::new_connection()?;
        // Error replies without the request in them (it may carry a key).
        connection.socket_mut().socket_ref().set_cap_ack(true)?;
        Ok((Self { handle }, connection))
    }

    /// Reserves an SPI for the SA that will carry the peer's packets to us: the kernel
    /// holds it (in a keyless state) until [`Xfrm::add_sa`] keys it, and drops it after
    /// 30 s otherwise. The SPI is what the peer is told.
    pub async fn allocate_spi(&self, local_vip: Ipv4Addr, peer_vip: Ipv4Addr) -> Result<u32> {
        const OP: &str = "allocating an SPI";
        let (src, dst) = endpoints(local_vip, peer_vip, Direction::In);
        let mut request = self
            .handle
            .state()
            .alloc_spi(src, dst)
            .protocol(IPPROTO_ESP)
            .mode(XFRM_MODE_TRANSPORT)
            .reqid(REQID)
            .spi_range(SPI_RANGE.0, SPI_RANGE.1);
        request.message_mut().nlas.push(sa_dir(Direction::In));
        let mut answers = request.execute();
        let state = answers.try_next().await.map_err(kernel(OP))?;
        let state = state.ok_or(Error::Unexpected {
            op: OP,
            what: "the kernel sent no answer",
        })?;
        Ok(state.user_sa_info.id.spi)
    }

    /// Adds `sa` as a new SA (NEWSA), whichever way it goes: the kernel refuses it with
    /// `EEXIST` if an SA with its SPI exists already, so no key is installed twice and no
    /// counter starts over under a key. For SPIs both ends derive (vipd's sessions).
    pub async fn add_new_sa(&self, sa: &Sa) -> Result<()> {
        let (src, dst) = sa.addresses();
        let op = match sa.direction {
            Direction::In => "adding an inbound SA",
            Direction::Out => "adding an outbound SA",
        };
        self.key(self.handle.state().add(src, dst), sa, op).await
    }

    /// Keys `sa`. An inbound SA replaces the keyless state of its reserved SPI (UPDSA, as
    /// strongSwan does; NEWSA would find the SPI taken), and only that: UPDSA on a keyed
    /// SA would keep the old key and only renew its lifetime, so that is refused here. An
    /// outbound SA is new (NEWSA, which fails with `EEXIST` rather than replace an SA with
    /// the same SPI): no key is installed twice, and no counter starts over under a key.
    pub async fn add_sa(&self, sa: &Sa) -> Result<()> {
        const OP: &str = "keying an inbound SA";
        if sa.direction == Direction::Out {
            return self.add_new_sa(sa).await;
        }
        let (src, dst) = sa.addresses();
        let state = self.handle.state();
        let mut found = state
            .get(src, dst)
            .protocol(IPPROTO_ESP)
            .spi(sa.spi)
            .execute();
        let reserved = found.try_next().await.map_err(kernel(OP))?;
        let ours_and_keyless = reserved.is_some_and(|s| {
            s.user_sa_info.reqid == REQID
                && !s
                    .nlas
                    .iter()
                    .any(|a| matches!(a, XfrmAttrs::EncryptionAlgAead(_)))
        });
        if !ours_and_keyless {
            return Err(Error::Unexpected {
                op: OP,
                what: "the SPI is not one we reserved, or it is keyed already",
            });
        }
        self.key(state.update(src, dst), sa, OP).await
    }

    async fn key(
        &self,
        request: xfrmnetlink::StateModifyRequest,
        sa: &Sa,
        op: &'static str,
    ) -> Result<()> {
        let (src, dst) = sa.addresses();
        let key = Zeroizing::new(sa.key.0.to_vec());
        // The ESN flag goes first: `replay_window` reads it to choose the attribute.
        let window = match sa.direction {
            Direction::In => REPLAY_WINDOW,
            Direction::Out => 0,
        };
        let mut request = request
            .protocol(IPPROTO_ESP)
            .spi(sa.spi)
            .mode(XFRM_MODE_TRANSPORT)
            .reqid(REQID)
            .selector_addresses(src, 32, dst, 32)
            .flags(XFRM_STATE_ESN)
            .replay_window(window, 0, 0, 0, 0)
            .time_limit(sa.lifetime.soft_secs, sa.lifetime.hard_secs)
            .encryption_aead(sa.aead.kernel_name(), &key, ICV_BITS)
            .map_err(kernel(op))?;
        request.message_mut().nlas.push(sa_dir(sa.direction));
        request.execute().await.map_err(kernel(op))
    }

    /// The pair's policies, both ways: ESP with one of our SAs, or nothing. Outbound, they
    /// cover every packet to the peer's VIP, whatever its source (a socket bound to
    /// another address must not go out in clear through vip0: it finds no SA and is
    /// held); inbound, every packet from it. Idempotent.
    pub async fn add_policies(&self, local_vip: Ipv4Addr, peer_vip: Ipv4Addr) -> Result<()> {
        for direction in [Direction::Out, Direction::In] {
            let ((src, src_len), (dst, dst_len)) = policy_selector(peer_vip, direction);
            let (tmpl_src, tmpl_dst) = endpoints(local_vip, peer_vip, direction);
            let mut template = UserTemplate::default();
            template.source(&tmpl_src);
            template.destination(&tmpl_dst);
            template.protocol(IPPROTO_ESP);
            template.mode(XFRM_MODE_TRANSPORT);
            template.reqid(REQID);
            template.optional(false);
            self.handle
                .policy()
                .update(src, src_len, dst, dst_len)
                .direction(policy_dir(direction))
                .priority(POLICY_PRIORITY)
                .add_template(template)
                .execute()
                .await
                .map_err(kernel("adding a policy"))?;
        }
        Ok(())
    }

    /// Removes a pair: its policies first (a packet then goes in clear only if vip.ko
    /// still has the mapping, which the caller removes before), then every SA of ours
    /// between the two VIPs, of any generation. What is already gone is no error.
    pub async fn remove_pair(&self, local_vip: Ipv4Addr, peer_vip: Ipv4Addr) -> Result<()> {
        self.remove_policies(peer_vip).await?;
        for sa in self.states().await? {
            let ours = (sa.source, sa.destination) == (local_vip, peer_vip)
                || (sa.source, sa.destination) == (peer_vip, local_vip);
            if ours {
                self.delete_sa(&sa).await?;
            }
        }
        Ok(())
    }

    /// Removes the policies of the pairs with `peer_vip`, both ways.
    pub async fn remove_policies(&self, peer_vip: Ipv4Addr) -> Result<()> {
        for direction in [Direction::Out, Direction::In] {
            let ((src, src_len), (dst, dst_len)) = policy_selector(peer_vip, direction);
            let result = self
                .handle
                .policy()
                .delete(src, src_len, dst, dst_len)
                .direction(policy_dir(direction))
                .execute()
                .await;
            removed(result, ENOENT, "deleting a policy")?;
        }
        Ok(())
    }

    /// The peer VIPs that policies of ours cover (either way).
    pub async fn policy_peers(&self) -> Result<Vec<Ipv4Addr>> {
        let mut dump = self.handle.policy().get_dump().execute();
        let mut peers = Vec::new();
        while let Some(policy) = dump.try_next().await.map_err(kernel("listing policies"))? {
            let ours = policy.nlas.iter().any(|a| {
                matches!(a, XfrmAttrs::Template(templates)
                    if templates.iter().any(|t| t.reqid == REQID))
            });
            let selector = &policy.user_policy_info.selector;
            if !ours || selector.family != AF_INET {
                continue;
            }
            let peer = match policy.user_policy_info.direction {
                XFRM_POLICY_OUT => selector.daddr.to_ipv4(),
                XFRM_POLICY_IN => selector.saddr.to_ipv4(),
                _ => continue,
            };
            if !peers.contains(&peer) {
                peers.push(peer);
            }
        }
        Ok(peers)
    }

    /// Deletes one SA.
    pub async fn delete_sa(&self, sa: &SaState) -> Result<()> {
        let result = self
            .handle
            .state()
            .delete(sa.source.into(), sa.destination.into())
            .protocol(IPPROTO_ESP)
            .spi(sa.spi)
            .execute()
            .await;
        removed(result, ESRCH, "deleting an SA")
    }

    /// Every IPv4 ESP SA with our reqid.
    pub async fn states(&self) -> Result<Vec<SaState>> {
        let mut dump = self.handle.state().get_dump().execute();
        let mut ours = Vec::new();
        while let Some(mut state) = dump.try_next().await.map_err(kernel("listing SAs"))? {
            let info = &state.user_sa_info;
            // SPI 0: a state the kernel made for an ACQUIRE, which expires by itself.
            let ours_esp =
                info.reqid == REQID && info.id.proto == IPPROTO_ESP && info.family == AF_INET;
            if !ours_esp || info.id.spi == 0 {
                continue;
            }
            let mut larval = true;
            let mut aead = None;
            for attribute in &mut state.nlas {
                if let XfrmAttrs::EncryptionAlgAead(alg) = attribute {
                    larval = false;
                    aead = Aead::from_kernel_name(&alg.alg_name);
                    // A dump carries the key; it is not kept.
                    alg.alg_key.zeroize();
                }
            }
            ours.push(SaState {
                aead,
                ..sa_state(info, larval)
            });
        }
        Ok(ours)
    }
}

fn sa_state(info: &UserSaInfo, larval: bool) -> SaState {
    SaState {
        source: info.saddr.to_ipv4(),
        destination: info.id.daddr.to_ipv4(),
        spi: info.id.spi,
        larval,
        aead: None,
        bytes: info.lifetime_cur.bytes,
        packets: info.lifetime_cur.packets,
        added: info.lifetime_cur.add_time,
        drops: SaDrops {
            integrity: info.stats.integrity_failed,
            replayed: info.stats.replay,
            too_old: info.stats.replay_window,
        },
    }
}

/// What the kernel reports about our SAs and policies as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An SA of ours reached its soft lifetime (`hard` false: it still works) or its hard
    /// one (the kernel deleted it).
    Expired { sa: SaState, hard: bool },
    /// A packet from `source` to `destination` met one of our policies and found no SA
    /// (the kernel drops it, and asks no more for that pair while its request stands,
    /// `net.core.xfrm_acq_expires`, 30 s).
    Acquire {
        source: Ipv4Addr,
        destination: Ipv4Addr,
    },
}

/// A subscription to the kernel's expiries and acquires (the `XFRMNLGRP_EXPIRE` and
/// `XFRMNLGRP_ACQUIRE` groups, which need `CAP_NET_ADMIN`), on a socket of its own.
pub struct Events {
    messages: futures::channel::mpsc::UnboundedReceiver<(
        netlink_packet_core::NetlinkMessage<netlink_packet_xfrm::XfrmMessage>,
        netlink_sys::SocketAddr,
    )>,
}

impl Events {
    /// Subscribes; the connection task must be spawned for events to arrive, and its end
    /// ends the events.
    pub fn subscribe() -> Result<(Self, impl std::future::Future<Output = ()>)> {
        let (mut connection, _, messages) = xfrmnetlink::new_connection()?;
        let socket = connection.socket_mut().socket_mut();
        // Bound now, not at a first send (there is none): the kernel's broadcasts skip a
        // socket whose port id is still 0, the kernel's own.
        socket.bind_auto()?;
        socket.add_membership(XFRMNLGRP_EXPIRE)?;
        socket.add_membership(XFRMNLGRP_ACQUIRE)?;
        Ok((Self { messages }, connection))
    }

    /// The next event about our SAs and policies (others' are skipped); `None` once the
    /// socket is gone.
    pub async fn next(&mut self) -> Option<Event> {
        use futures::StreamExt;
        while let Some((message, _)) = self.messages.next().await {
            if let Some(event) = our_event(&message.payload) {
                return Some(event);
            }
        }
        None
    }
}

const XFRMNLGRP_ACQUIRE: u32 = 1;
const XFRMNLGRP_EXPIRE: u32 = 2;

fn our_event(
    payload: &netlink_packet_core::NetlinkPayload<netlink_packet_xfrm::XfrmMessage>,
) -> Option<Event> {
    use netlink_packet_core::NetlinkPayload;
    use netlink_packet_xfrm::XfrmMessage;
    let NetlinkPayload::InnerMessage(message) = payload else {
        return None;
    };
    match message {
        XfrmMessage::Expire(expire) => {
            let info = &expire.expire.state;
            let ours =
                info.reqid == REQID && info.id.proto == IPPROTO_ESP && info.family == AF_INET;
            ours.then(|| Event::Expired {
                sa: sa_state(info, false),
                hard: expire.expire.hard != 0,
            })
        }
        XfrmMessage::Acquire(acquire) => {
            let ours = acquire.nlas.iter().any(|a| {
                matches!(a, XfrmAttrs::Template(templates)
                    if templates.iter().any(|t| t.reqid == REQID))
            });
            let a = &acquire.acquire;
            // Only our policies carry our reqid, and they are all IPv4.
            ours.then(|| Event::Acquire {
                source: a.saddr.to_ipv4(),
                destination: a.id.daddr.to_ipv4(),
            })
        }
        _ => None,
    }
}

const AF_INET: u16 = 2;

fn sa_dir(direction: Direction) -> XfrmAttrs {
    XfrmAttrs::Other(DefaultNla::new(XFRMA_SA_DIR, vec![direction.sa_dir()]))
}

fn policy_dir(direction: Direction) -> u8 {
    match direction {
        Direction::In => XFRM_POLICY_IN,
        Direction::Out => XFRM_POLICY_OUT,
    }
}

/// The outcome of a removal: `missing`, what the kernel answers when the object is not
/// there (`ENOENT` for a policy, `ESRCH` for an SA), is success.
fn removed(
    result: std::result::Result<(), xfrmnetlink::Error>,
    missing: i32,
    op: &'static str,
) -> Result<()> {
    match result.map_err(kernel(op)) {
        Err(e) if e.errno() == Some(missing) => Ok(()),
        other => other,
    }
}

const ENOENT: i32 = 2;
const ESRCH: i32 = 3;

/// A policy's selector: the peer's VIP on its side, anything on ours.
fn policy_selector(peer_vip: Ipv4Addr, direction: Direction) -> ((IpAddr, u8), (IpAddr, u8)) {
    let any = (IpAddr::from(Ipv4Addr::UNSPECIFIED), 0);
    let peer = (IpAddr::from(peer_vip), 32);
    match direction {
        Direction::Out => (any, peer),
        Direction::In => (peer, any),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aead_names_are_the_kernels() {
        assert_eq!("aes-gcm".parse(), Ok(Aead::AesGcm));
        assert_eq!(
            "chacha20-poly1305".parse::<Aead>().map(Aead::kernel_name),
            Ok("rfc7539esp(chacha20,poly1305)")
        );
        assert!("des".parse::<Aead>().is_err());
        for aead in [Aead::AesGcm, Aead::ChaCha20Poly1305] {
            assert_eq!(aead.name().parse(), Ok(aead));
            let mut field = [0u8; 64];
            field[..aead.kernel_name().len()].copy_from_slice(aead.kernel_name().as_bytes());
            assert_eq!(Aead::from_kernel_name(&field), Some(aead));
        }
        assert_eq!(Aead::from_kernel_name(b"rfc4106(gcm(aes))x\0"), None);
    }

    #[test]
    fn a_key_never_prints() {
        let key = EspKey::new([0x41; EspKey::LEN]);
        assert_eq!(format!("{key:?}"), "EspKey(..)");
    }

    #[test]
    fn only_our_expiries_and_acquires_are_events() {
        use netlink_packet_core::NetlinkPayload;
        use netlink_packet_xfrm::{
            AcquireMessage, Address, ExpireMessage, UserAcquire, UserExpire, XfrmMessage,
        };
        let (a, b) = (Ipv4Addr::new(240, 0, 0, 1), Ipv4Addr::new(240, 0, 0, 2));
        let expire = |reqid, hard| {
            let mut state = UserSaInfo {
                reqid,
                family: AF_INET,
                ..Default::default()
            };
            state.id.proto = IPPROTO_ESP;
            state.id.spi = 0x1234;
            state.id.daddr = Address::from_ipv4(&b);
            state.saddr = Address::from_ipv4(&a);
            state.lifetime_cur.packets = 7;
            NetlinkPayload::InnerMessage(XfrmMessage::Expire(ExpireMessage {
                expire: UserExpire { state, hard },
            }))
        };
        let Some(Event::Expired { sa, hard: false }) = our_event(&expire(REQID, 0)) else {
            panic!("a soft expiry of ours")
        };
        assert_eq!(
            (sa.source, sa.destination, sa.spi, sa.packets),
            (a, b, 0x1234, 7)
        );
        assert!(matches!(
            our_event(&expire(REQID, 1)),
            Some(Event::Expired { hard: true, .. })
        ));
        assert_eq!(our_event(&expire(7, 0)), None, "another IPsec user's SA");

        let acquire = |reqid| {
            let mut acquire = UserAcquire::default();
            acquire.id.daddr = Address::from_ipv4(&b);
            acquire.saddr = Address::from_ipv4(&a);
            let template = UserTemplate {
                reqid,
                ..Default::default()
            };
            NetlinkPayload::InnerMessage(XfrmMessage::Acquire(AcquireMessage {
                acquire,
                nlas: vec![XfrmAttrs::Template(vec![template])],
            }))
        };
        assert_eq!(
            our_event(&acquire(REQID)),
            Some(Event::Acquire {
                source: a,
                destination: b
            })
        );
        assert_eq!(our_event(&acquire(7)), None, "another IPsec user's policy");
    }

    #[test]
    fn directions_name_source_and_destination() {
        let (a, b) = (Ipv4Addr::new(240, 0, 0, 1), Ipv4Addr::new(240, 0, 0, 2));
        assert_eq!(endpoints(a, b, Direction::Out), (a.into(), b.into()));
        assert_eq!(endpoints(a, b, Direction::In), (b.into(), a.into()));
    }
}
