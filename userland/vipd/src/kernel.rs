//! The daemon's hands in the kernel: the vip device, its addresses and routes (rtnetlink),
//! and the module's mapping table (the `vip` generic netlink family).

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::{
    Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
    packet_route::{
        address::AddressScope,
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
        route::RouteScope,
    },
};
use std::net::{IpAddr, Ipv4Addr};
use tokio::sync::{broadcast, mpsc};
use tracing::info;
use vip_netlink::{Client as VipClient, Mapping, MappingSpec, SetMode, VIP_MAP_F_INVALID};
use vip_proto::control::Reply;
use vip_proto::engine::{Id, KernelMapping, KernelOp};

use crate::driver::{Handle as Engine, Input};
use crate::xfrm::Esp;

/// The link kind the module registers.
const KIND: &str = "vip";

/// Handles on rtnetlink, on the module and on XFRM, for one device in our namespace.
#[derive(Clone)]
pub struct Kernel {
    rt: Handle,
    vip: VipClient,
    ifindex: u32,
    /// Set when pairs are ESP (`[ipsec] mode = "required"`).
    esp: Option<Esp>,
}

fn kind_of(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Kind(kind) => Some(kind.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

/// The link called `name`, if there is one.
async fn link_by_name(rt: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    match rt
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        // The kernel answers ENODEV for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(e))
            if e.raw_code() == -(nix::errno::Errno::ENODEV as i32) =>
        {
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot look up the link {name}")),
    }
}

impl Kernel {
    /// Checks that the module is loaded.
    pub async fn module() -> Result<VipClient> {
        let mut vip = VipClient::connect().context("generic netlink")?;
        let version = vip.version().await.context("the vip kernel module")?;
        info!(module = %version.version, "vip module found");
        Ok(vip)
    }

    /// Creates `device` or adopts the vip device of that name, and brings it up.
    pub async fn open(vip: VipClient, device: &str) -> Result<Self> {
        let (connection, rt, _) = rtnetlink::new_connection().context("rtnetlink socket")?;
        tokio::spawn(connection);
        let existing = link_by_name(&rt, device).await;
        let ifindex = match existing? {
            Some(link) => {
                match kind_of(&link).as_deref() {
                    Some(KIND) => {}
                    other => bail!(
                        "device {device} exists but is not a vip device (kind {})",
                        other.unwrap_or("none")
                    ),
                }
                info!(device, "adopting the existing vip device");
                link.header.index
            }
            None => {
                let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Other(
                    KIND.into(),
                ))
                .name(device.to_string())
                .build();
                rt.link()
                    .add(msg)
                    .execute()
                    .await
                    .with_context(|| format!("cannot create the vip device {device}"))?;
                info!(device, "created the vip device");
                let link = link_by_name(&rt, device)
                    .await?
                    .with_context(|| format!("{device} vanished after creation"))?;
                link.header.index
            }
        };
        rt.link()
            .set(LinkUnspec::new_with_index(ifindex).up().build())
            .execute()
            .await
            .with_context(|| format!("cannot bring {device} up"))?;
        Ok(Self {
            rt,
            vip,
            ifindex,
            esp: None,
        })
    }

    /// Gives the device the local VIP `vip` (a /32), if it does not have it yet.
    pub async fn add_local_vip(&self, vip: Ipv4Addr) -> Result<()> {
        self.rt
            .address()
            .add(self.ifindex, IpAddr::V4(vip), 32)
            .replace()
            .execute()
            .await
            .with_context(|| format!("cannot add the local VIP {vip}"))
    }

    /// Puts `address` (127.0.0.0/8, host scope) on the device: where vipd answers
    /// systemd-resolved, which sends the device's queries out of the device.
    pub async fn add_service_address(&self, address: Ipv4Addr) -> Result<()> {
        let mut request = self.rt.address().add(self.ifindex, IpAddr::V4(address), 32);
        request.message_mut().header.scope = AddressScope::Host;
        request
            .replace()
            .execute()
            .await
            .with_context(|| format!("cannot add {address} to the vip device"))
    }

    /// Routes `net` into the device, with `src` as the source address.
    pub async fn route(&self, net: Ipv4Net, src: Ipv4Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(net.network(), net.prefix_len())
            .output_interface(self.ifindex)
            .pref_source(src)
            .scope(RouteScope::Link)
            .build();
        self.rt
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .with_context(|| format!("cannot route {net} into the vip device"))
    }

    /// Installs or replaces the mapping of `peer_vip`.
    pub async fn set_mapping(
        &self,
        peer_vip: Ipv4Addr,
        peer_ip4: Ipv4Addr,
        local_vip: Ipv4Addr,
    ) -> Result<()> {
        self.set(peer_vip, peer_ip4, local_vip, 0).await
    }

    /// Keeps `peer_vip` in the table but marked invalid: its packets are dropped.
    pub async fn set_mapping_invalid(
        &self,
        peer_vip: Ipv4Addr,
        peer_ip4: Ipv4Addr,
        local_vip: Ipv4Addr,
    ) -> Result<()> {
        self.set(peer_vip, peer_ip4, local_vip, VIP_MAP_F_INVALID)
            .await
    }

    async fn set(
        &self,
        peer_vip: Ipv4Addr,
        peer_ip4: Ipv4Addr,
        local_vip: Ipv4Addr,
        flags: u32,
    ) -> Result<()> {
        let spec = MappingSpec {
            peer_vip,
            peer_ip4,
            local_vip: Some(local_vip),
            flags,
        };
        self.vip
            .clone()
            .map_set(&spec, SetMode::Replace)
            .await
            .with_context(|| format!("cannot map {peer_vip} to {peer_ip4}"))
    }

    /// Removes the mapping of `peer_vip` and its route.
    pub async fn remove_mapping(&self, peer_vip: Ipv4Addr, local_vip: Ipv4Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(peer_vip, 32)
            .output_interface(self.ifindex)
            .pref_source(local_vip)
            .scope(RouteScope::Link)
            .build();
        if let Err(e) = self.rt.route().del(msg).execute().await {
            tracing::debug!(%peer_vip, "route already gone: {e}");
        }
        self.vip
            .clone()
            .map_del(peer_vip)
            .await
            .with_context(|| format!("cannot delete the mapping of {peer_vip}"))
    }

    /// The module's table.
    pub async fn mappings(&self) -> Result<Vec<Mapping>> {
        self.vip
            .clone()
            .map_dump()
            .await
            .context("cannot read the mapping table")
    }

    /// The module's client, e.g. to subscribe to its events.
    /// The vip device's interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn vip(&self) -> &VipClient {
        &self.vip
    }

    /// Pairs are ESP from now on: every change goes through `esp` first.
    pub fn with_esp(mut self, esp: Esp) -> Self {
        self.esp = Some(esp);
        self
    }

    /// Does what the engine asked.
    async fn execute(&self, op: KernelOp) -> Result<()> {
        match op {
            KernelOp::Install {
                peer_vip,
                local_vip,
                addr,
                esp,
            } => {
                if let Some(xfrm) = &self.esp {
                    xfrm.prepare(local_vip, peer_vip, esp.as_ref())
                        .await
                        .with_context(|| format!("ESP with {peer_vip}"))?;
                }
                self.add_local_vip(local_vip).await?;
                self.route(Ipv4Net::new(peer_vip, 32).context("a /32")?, local_vip)
                    .await?;
                self.set_mapping(peer_vip, addr, local_vip).await
            }
            KernelOp::Repoint {
                peer_vip,
                local_vip,
                addr,
                kick,
                esp,
            } => {
                if let (Some(xfrm), Some(sas)) = (&self.esp, &esp) {
                    xfrm.prepare(local_vip, peer_vip, Some(sas))
                        .await
                        .with_context(|| format!("ESP with {peer_vip}"))?;
                }
                let spec = MappingSpec {
                    peer_vip,
                    peer_ip4: addr,
                    local_vip: Some(local_vip),
                    flags: 0,
                };
                let mut vip = self.vip.clone();
                if kick {
                    vip.map_set_and_kick(&spec).await
                } else {
                    vip.map_set(&spec, SetMode::Replace).await
                }
                .with_context(|| format!("cannot point {peer_vip} at {addr}"))
            }
            KernelOp::Invalidate {
                peer_vip,
                local_vip,
                addr,
                ..
            } => self.set_mapping_invalid(peer_vip, addr, local_vip).await,
            KernelOp::EspOut {
                peer_vip,
                local_vip,
                sa,
            } => match &self.esp {
                Some(xfrm) => xfrm
                    .outbound(local_vip, peer_vip, &sa)
                    .await
                    .with_context(|| format!("ESP with {peer_vip}")),
                None => Ok(()),
            },
            KernelOp::Remove {
                peer_vip,
                local_vip,
                ..
            } => {
                // The policies go only once the mapping is gone: a mapping left without
                // them would send in clear (left-overs are removed at the next start).
                self.remove_mapping(peer_vip, local_vip).await?;
                match &self.esp {
                    Some(xfrm) => xfrm
                        .remove(local_vip, peer_vip)
                        .await
                        .with_context(|| format!("ESP with {peer_vip}")),
                    None => Ok(()),
                }
            }
            KernelOp::Dump => Ok(()),
        }
    }

    /// The table, as the engine wants it.
    async fn dump(&self) -> Result<Vec<KernelMapping>> {
        Ok(self
            .mappings()
            .await?
            .into_iter()
            .map(|m| KernelMapping {
                peer_vip: m.spec.peer_vip,
                peer_ip4: m.spec.peer_ip4,
                local_vip: m.spec.local_vip,
                invalid: m.spec.flags & VIP_MAP_F_INVALID != 0,
                last_rx: m.last_rx,
                last_tx: m.last_tx,
            })
            .collect())
    }
}

/// Kernel changes waiting at most; the engine is told of a change it could not queue as a
/// failure.
const KERNEL_QUEUE: usize = 65536;

/// Mapping changes kept for `vipctl watch` clients that read slowly; one further behind is
/// told how many it missed.
pub const CHANGES_KEPT: usize = 1024;

/// A kernel change, and what `vipctl watch` clients are told once it is made.
type Job = (Id, KernelOp, Option<Reply>);

/// Carries out the engine's kernel changes one after another, in the order asked (a
/// re-point must not overtake the install it follows), and reports each; mapping changes
/// are then announced on `changes`.
#[derive(Clone)]
pub struct KernelWorker {
    tx: mpsc::Sender<Job>,
    handle: Engine,
}

impl KernelWorker {
    /// Starts the worker on the current runtime.
    pub fn start(
        kernel: Kernel,
        handle: Engine,
        changes: broadcast::Sender<Reply>,
    ) -> (Self, tokio::task::JoinHandle<Result<()>>) {
        let (tx, mut rx) = mpsc::channel::<Job>(KERNEL_QUEUE);
        let reporter = handle.clone();
        let task = tokio::spawn(async move {
            while let Some((id, op, change)) = rx.recv().await {
                let input = if op == KernelOp::Dump {
                    match kernel.dump().await {
                        Ok(mappings) => Input::KernelDump { id, mappings },
                        Err(e) => Input::KernelDone {
                            id,
                            result: Err(format!("{e:#}")),
                        },
                    }
                } else {
                    let result = kernel.execute(op).await.map_err(|e| format!("{e:#}"));
                    if let (Ok(()), Some(change)) = (&result, change) {
                        // Nobody watching is not an error.
                        let _ = changes.send(change);
                    }
                    Input::KernelDone { id, result }
                };
                reporter.send(input).await;
            }
            anyhow::bail!("the kernel worker's queue closed")
        });
        (Self { tx, handle }, task)
    }

    /// Queues a change; `change` is announced once it is made.
    pub fn submit(&self, id: Id, op: KernelOp, change: Option<Reply>) {
        if self.tx.try_send((id, op, change)).is_err() {
            let handle = self.handle.clone();
            tokio::spawn(async move {
                handle
                    .send(Input::KernelDone {
                        id,
                        result: Err("too many kernel changes queued".into()),
                    })
                    .await
            });
        }
    }
}
