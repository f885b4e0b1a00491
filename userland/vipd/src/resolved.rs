//! systemd-resolved, where it owns 127.0.0.53 (most distributions): resolved stays the
//! host's resolver and vipd becomes the DNS server of its own device for every name
//! (routing domain `~.`, default route), answering on an address of that device; vipd in
//! turn asks the servers resolved would have asked (those of the links that are default
//! routes, or the global ones), and follows them as the host moves between networks.
//! All of it over resolved's D-Bus API (`org.freedesktop.resolve1(5)`), what `resolvectl`
//! uses. While vipd is registered, every name goes to it: every path out of the daemon
//! hands the device back (`revert`), and the systemd unit does too after a crash.

use anyhow::{Context, Result, anyhow, bail};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};
use tracing::{info, warn};
use zbus::{OwnedObjectPath, fdo::DBusProxy, proxy};

use crate::config::{RESOLVED_STUBS, ResolvedMode};
use crate::dns::Upstream;

const RESOLVED: &str = "org.freedesktop.resolve1";
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;

/// How often resolved's servers, and our registration, are checked: resolved 252 sends
/// no change signal for its server list, and forgets our device when it is reset.
const FOLLOW_PERIOD: Duration = Duration::from_secs(2);

/// The longest any one D-Bus call may take: a resolved that hangs never holds vipd's
/// start-up or shutdown (the revert) for longer.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// One of resolved's servers: (ifindex, 0 for the global ones; family; address; port, 0
/// for 53; the name DNS-over-TLS checks).
type ServerEx = (i32, i32, Vec<u8>, u16, String);

#[proxy(
    interface = "org.freedesktop.resolve1.Manager",
    default_service = "org.freedesktop.resolve1",
    default_path = "/org/freedesktop/resolve1"
)]
pub trait Manager {
    #[zbus(name = "GetLink")]
    fn get_link(&self, ifindex: i32) -> zbus::Result<OwnedObjectPath>;
    #[zbus(name = "SetLinkDNS")]
    fn set_link_dns(&self, ifindex: i32, addresses: &[(i32, Vec<u8>)]) -> zbus::Result<()>;
    #[zbus(name = "SetLinkDomains")]
    fn set_link_domains(&self, ifindex: i32, domains: &[(&str, bool)]) -> zbus::Result<()>;
    #[zbus(name = "SetLinkDefaultRoute")]
    fn set_link_default_route(&self, ifindex: i32, enable: bool) -> zbus::Result<()>;
    #[zbus(name = "SetLinkLLMNR")]
    fn set_link_llmnr(&self, ifindex: i32, mode: &str) -> zbus::Result<()>;
    #[zbus(name = "SetLinkMulticastDNS")]
    fn set_link_multicast_dns(&self, ifindex: i32, mode: &str) -> zbus::Result<()>;
    #[zbus(name = "SetLinkDNSSEC")]
    fn set_link_dnssec(&self, ifindex: i32, mode: &str) -> zbus::Result<()>;
    #[zbus(name = "SetLinkDNSOverTLS")]
    fn set_link_dns_over_tls(&self, ifindex: i32, mode: &str) -> zbus::Result<()>;
    #[zbus(name = "RevertLink")]
    fn revert_link(&self, ifindex: i32) -> zbus::Result<()>;
    /// Every server resolved uses, global and per link.
    #[zbus(property, name = "DNSEx")]
    fn dns_ex(&self) -> zbus::Result<Vec<ServerEx>>;
    /// Those it falls back to when there are none.
    #[zbus(property, name = "FallbackDNSEx")]
    fn fallback_dns_ex(&self) -> zbus::Result<Vec<ServerEx>>;
    #[zbus(property, name = "DNSSEC")]
    fn dnssec(&self) -> zbus::Result<String>;
    #[zbus(property, name = "DNSOverTLS")]
    fn dns_over_tls(&self) -> zbus::Result<String>;
}

#[proxy(
    interface = "org.freedesktop.resolve1.Link",
    default_service = "org.freedesktop.resolve1"
)]
pub trait Link {
    #[zbus(property, name = "DNS")]
    fn dns(&self) -> zbus::Result<Vec<(i32, Vec<u8>)>>;
    #[zbus(property, name = "Domains")]
    fn domains(&self) -> zbus::Result<Vec<(String, bool)>>;
    #[zbus(property, name = "DefaultRoute")]
    fn default_route(&self) -> zbus::Result<bool>;
}

/// resolved, found on the system bus and in our network namespace.
pub struct Bus {
    manager: ManagerProxy<'static>,
    names: DBusProxy<'static>,
}

/// resolved, once our device is known.
pub struct Resolved {
    bus: Bus,
    /// Our device's.
    ifindex: i32,
    /// Where vipd answers resolved.
    address: Ipv4Addr,
    /// Whether vipd's upstream servers are resolved's (`upstream.servers` unset).
    follow_servers: bool,
}

/// resolved on the system bus: `None` in mode "auto" when there is no system bus or
/// resolved does not run (in our network namespace); an error in mode "on". In mode
/// "auto", a resolved that validates DNSSEC or uses DNS-over-TLS is an error: every name
/// would go through vipd, without either, so that takes `mode = "on"`.
pub async fn find(mode: ResolvedMode) -> Result<Option<Bus>> {
    if mode == ResolvedMode::Off {
        return Ok(None);
    }
    let found = tokio::time::timeout(BUS_TIMEOUT, connect())
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "the D-Bus system bus did not answer within {BUS_TIMEOUT:?}"
            ))
        });
    let bus = match (found, mode) {
        (Ok(Some(bus)), _) => bus,
        (Ok(None), ResolvedMode::On) => {
            bail!("resolved.mode = \"on\", but systemd-resolved is not on the system bus")
        }
        (Err(e), ResolvedMode::On) => {
            return Err(e.context("resolved.mode = \"on\", but systemd-resolved cannot be reached"));
        }
        (Ok(None), _) => return Ok(None),
        (Err(e), _) => {
            info!("systemd-resolved not found ({e:#}): answering on stub.listen");
            return Ok(None);
        }
    };
    let dnssec = bus
        .manager
        .dnssec()
        .await
        .context("resolved's DNSSEC setting")?;
    let tls = bus
        .manager
        .dns_over_tls()
        .await
        .context("resolved's DNSOverTLS setting")?;
    if dnssec != "no" || tls != "no" {
        let what = format!(
            "systemd-resolved validates DNSSEC or uses DNS-over-TLS (DNSSEC={dnssec}, DNSOverTLS={tls}), which vipd's link would turn off for every name (its VIP answers cannot be signed; it asks upstream over plain DNS)"
        );
        if mode == ResolvedMode::Auto {
            bail!(
                "{what}: set resolved.mode = \"on\" to accept that, or \"off\" with stub.listen on another address"
            );
        }
        warn!("{what}; resolved.mode = \"on\" accepts it");
    }
    Ok(Some(bus))
}

async fn connect() -> Result<Option<Bus>> {
    let bus = zbus::connection::Builder::system()
        .method_timeout(BUS_TIMEOUT)
        .build()
        .await
        .context("no D-Bus system bus")?;
    let names = DBusProxy::new(&bus).await?;
    if !names.name_has_owner(RESOLVED.try_into()?).await? {
        return Ok(None);
    }
    // A bus can be shared across network namespaces (a container given the host's socket):
    // a resolved elsewhere has other links, and our device's index would name a stranger.
    let pid = names
        .get_connection_unix_process_id(RESOLVED.try_into()?)
        .await?;
    if !same_network_namespace(pid).await? {
        bail!("systemd-resolved (PID {pid}) runs in another network namespace");
    }
    let manager = ManagerProxy::builder(&bus)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    Ok(Some(Bus { manager, names }))
}

/// Whether process `pid` shares our network namespace.
async fn same_network_namespace(pid: u32) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let theirs = tokio::fs::metadata(format!("/proc/{pid}/ns/net"))
        .await
        .with_context(|| format!("cannot see systemd-resolved's (PID {pid}) network namespace"))?;
    let ours = tokio::fs::metadata("/proc/self/ns/net").await?;
    Ok((theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()))
}

impl Bus {
    /// The servers resolved would ask for a name no link claims: vipd's upstream. Our
    /// device (`ours`, when known) and our address are never among them.
    pub async fn servers(&self, ours: Option<i32>, address: Ipv4Addr) -> Result<Vec<SocketAddr>> {
        let all = self
            .manager
            .dns_ex()
            .await
            .context("cannot read systemd-resolved's DNS servers")?;
        let mut links: Vec<i32> = all.iter().map(|s| s.0).filter(|&i| i != 0).collect();
        links.sort_unstable();
        links.dedup();
        let mut default_routes = Vec::new();
        for ifindex in links {
            if Some(ifindex) != ours && self.link(ifindex).await?.default_route().await? {
                default_routes.push(ifindex);
            }
        }
        let servers = upstream_servers(&all, &default_routes, address);
        if !servers.is_empty() {
            return Ok(servers);
        }
        let fallback = self.manager.fallback_dns_ex().await?;
        Ok(upstream_servers(&fallback, &[], address))
    }

    async fn link(&self, ifindex: i32) -> Result<LinkProxy<'static>> {
        let path = self.manager.get_link(ifindex).await?;
        Ok(LinkProxy::builder(self.manager.inner().connection())
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?)
    }
}

impl Resolved {
    pub fn new(bus: Bus, ifindex: u32, address: Ipv4Addr, follow_servers: bool) -> Result<Self> {
        let ifindex = i32::try_from(ifindex).context("interface index out of range")?;
        Ok(Self {
            bus,
            ifindex,
            address,
            follow_servers,
        })
    }

    /// Whether resolved still sends every name to us (it forgets our settings when the
    /// device is reset, or when it restarts without its saved state).
    async fn registered(&self) -> Result<bool> {
        let link = self.bus.link(self.ifindex).await?;
        let ours = (AF_INET, self.address.octets().to_vec());
        Ok(link.dns().await?.contains(&ours)
            && link.domains().await?.contains(&(".".into(), true))
            && link.default_route().await?)
    }

    /// Makes vipd the server of our device for every name, with no multicast name
    /// resolution there. resolved neither validates DNSSEC nor uses TLS toward vipd: the
    /// answers that carry VIPs are vipd's own and cannot be signed (vipd validates key
    /// records itself, `[dnssec]`). The routing domain comes last, so that names go to
    /// vipd only once the rest is in place; a refusal midway hands the device back.
    pub async fn register(&self) -> Result<()> {
        let result = self.set_link().await;
        if result.is_err() {
            let _ = self.revert().await;
        }
        result
    }

    async fn set_link(&self) -> Result<()> {
        let m = &self.bus.manager;
        let i = self.ifindex;
        let refused = |method: &str| {
            format!(
                "systemd-resolved refused {method} for vipd's device (is it managed by systemd-networkd? resolvectl then says \"Link ... is managed\")"
            )
        };
        m.set_link_llmnr(i, "no")
            .await
            .with_context(|| refused("SetLinkLLMNR"))?;
        m.set_link_multicast_dns(i, "no")
            .await
            .with_context(|| refused("SetLinkMulticastDNS"))?;
        m.set_link_dnssec(i, "no")
            .await
            .with_context(|| refused("SetLinkDNSSEC"))?;
        m.set_link_dns_over_tls(i, "no")
            .await
            .with_context(|| refused("SetLinkDNSOverTLS"))?;
        m.set_link_dns(i, &[(AF_INET, self.address.octets().to_vec())])
            .await
            .with_context(|| refused("SetLinkDNS"))?;
        m.set_link_default_route(i, true)
            .await
            .with_context(|| refused("SetLinkDefaultRoute"))?;
        m.set_link_domains(i, &[(".", true)])
            .await
            .with_context(|| refused("SetLinkDomains"))?;
        Ok(())
    }

    /// Hands our device back to resolved's defaults (no server): names no longer go to a
    /// vipd that has stopped.
    pub async fn revert(&self) -> Result<()> {
        self.bus
            .manager
            .revert_link(self.ifindex)
            .await
            .context("cannot revert systemd-resolved's settings of our device")
    }

    /// Keeps us registered, and `upstream` on resolved's servers unless they are
    /// configured, as long as vipd runs. resolved being away (restarting, or stopped by
    /// the administrator: it is never started on our account) is logged once and waited
    /// out.
    pub async fn follow(&self, upstream: Upstream) -> Result<()> {
        let mut reachable = true;
        loop {
            tokio::time::sleep(FOLLOW_PERIOD).await;
            match self.check(&upstream).await {
                Ok(()) => {
                    if !reachable {
                        info!("systemd-resolved is back");
                    }
                    reachable = true;
                }
                Err(e) => {
                    if reachable {
                        warn!("{e:#}; trying again every {FOLLOW_PERIOD:?}");
                    }
                    reachable = false;
                }
            }
        }
    }

    async fn check(&self, upstream: &Upstream) -> Result<()> {
        // Asked of the bus itself: a call to resolved's name would start a resolved the
        // administrator stopped (D-Bus activation).
        if !self.bus.names.name_has_owner(RESOLVED.try_into()?).await? {
            bail!("systemd-resolved is not running");
        }
        if !self.registered().await? {
            self.register().await?;
            info!(address = %self.address, "registered with systemd-resolved again (it had restarted or was reset)");
        }
        if !self.follow_servers {
            return Ok(());
        }
        let servers = self.bus.servers(Some(self.ifindex), self.address).await?;
        if servers != upstream.servers() {
            if servers.is_empty() {
                warn!(
                    "systemd-resolved knows no DNS server for the other links: names that are not VIP hosts fail until it does"
                );
            }
            info!(?servers, "upstream servers from systemd-resolved");
            upstream.set_servers(&servers)?;
        }
        Ok(())
    }
}

/// The servers of `all` (resolved's `DNSEx` or `FallbackDNSEx`) that vipd should ask:
/// the global ones and those of the links in `default_routes` (a split-tunnel VPN's
/// server sees only its own domains, as without vipd), sorted, never resolved's own stub
/// addresses nor ours, which would send the question round in a loop. IPv6 link-local
/// servers are left out: hickory's server configuration takes an address without a
/// scope.
fn upstream_servers(all: &[ServerEx], default_routes: &[i32], ours: Ipv4Addr) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for (link, family, address, port, _) in all {
        if *link != 0 && !default_routes.contains(link) {
            continue;
        }
        let ip = match (*family, address.as_slice()) {
            (AF_INET, &[a, b, c, d]) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            (AF_INET6, bytes) => match <[u8; 16]>::try_from(bytes) {
                Ok(octets) => IpAddr::V6(Ipv6Addr::from(octets)),
                Err(_) => continue,
            },
            _ => continue,
        };
        let unusable = match ip {
            IpAddr::V4(v4) => RESOLVED_STUBS.contains(&v4) || v4 == ours || v4.is_unspecified(),
            IpAddr::V6(v6) => v6.is_unicast_link_local() || v6.is_unspecified(),
        };
        let server = SocketAddr::new(ip, if *port == 0 { 53 } else { *port });
        if !unusable && !servers.contains(&server) {
            servers.push(server);
        }
    }
    servers.sort_unstable();
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 153);

    fn server(link: i32, family: i32, address: Vec<u8>, port: u16) -> ServerEx {
        (link, family, address, port, String::new())
    }

    #[test]
    fn upstream_is_the_default_routes_servers_without_loops() {
        let v6: Ipv6Addr = "2001:db8::53".parse().unwrap();
        let link_local: Ipv6Addr = "fe80::1".parse().unwrap();
        let all = vec![
            server(7, AF_INET, OURS.octets().to_vec(), 0), // our device: us
            server(2, AF_INET, vec![192, 0, 2, 53], 0),    // the LAN's server
            server(0, AF_INET, vec![198, 51, 100, 1], 0),  // a global one
            server(2, AF_INET6, v6.octets().to_vec(), 0),  // an IPv6 one
            server(2, AF_INET6, link_local.octets().to_vec(), 0), // needs its link
            server(0, AF_INET, vec![127, 0, 0, 53], 0),    // resolved itself
            server(2, AF_INET, vec![192, 0, 2, 53], 0),    // the same server twice
            server(3, AF_INET, vec![1, 2, 3], 0),          // malformed
            server(3, 99, vec![1, 2, 3, 4], 0),            // unknown family
            server(5, AF_INET, vec![10, 8, 0, 1], 0),      // a split-tunnel VPN's
            server(0, AF_INET, vec![127, 0, 0, 1], 5335),  // a local cache's port
        ];
        assert_eq!(
            upstream_servers(&all, &[2, 3], OURS),
            [
                "127.0.0.1:5335".parse::<SocketAddr>().unwrap(),
                "192.0.2.53:53".parse().unwrap(),
                "198.51.100.1:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn our_address_is_never_upstream_even_on_a_default_route() {
        let all = vec![server(4, AF_INET, OURS.octets().to_vec(), 0)];
        assert!(upstream_servers(&all, &[4], OURS).is_empty());
    }
}
