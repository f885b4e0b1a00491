//! systemd-resolved, where it owns 127.0.0.53 (most distributions): resolved stays the
//! host's resolver and vipd becomes the DNS server of its own device for every name
//! (routing domain `~.`, default route), answering on an address of that device; vipd in
//! turn asks the servers resolved knows for the host's other links (from DHCP,
//! networkd, NetworkManager), and follows them as the host moves between networks.
//! All of it over resolved's D-Bus API (`org.freedesktop.resolve1(5)`), what `resolvectl`
//! uses.

use anyhow::{Context, Result, anyhow, bail};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};
use tracing::{info, warn};
use zbus::{Connection, proxy};

use crate::config::ResolvedMode;
use crate::dns::Upstream;

const RESOLVED: &str = "org.freedesktop.resolve1";
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;

/// How often resolved's servers, and our registration, are checked: resolved sends no
/// change signal for its server list, and forgets our link when it restarts.
const FOLLOW_PERIOD: Duration = Duration::from_secs(2);

/// How long finding resolved on the bus may take at start-up.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);

#[proxy(
    interface = "org.freedesktop.resolve1.Manager",
    default_service = "org.freedesktop.resolve1",
    default_path = "/org/freedesktop/resolve1"
)]
pub trait Manager {
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
    #[zbus(name = "RevertLink")]
    fn revert_link(&self, ifindex: i32) -> zbus::Result<()>;
    /// Every server resolved uses: (ifindex, 0 for the global ones; family; address).
    #[zbus(property, name = "DNS")]
    fn dns(&self) -> zbus::Result<Vec<(i32, i32, Vec<u8>)>>;
}

/// resolved, once found on the system bus.
pub struct Resolved {
    manager: ManagerProxy<'static>,
    /// Our device's.
    ifindex: i32,
    /// Where vipd answers resolved.
    address: Ipv4Addr,
    /// Whether vipd's upstream servers are resolved's (`upstream.servers` unset).
    follow_servers: bool,
}

/// resolved's manager on the system bus: `None` in mode "auto" when there is no system
/// bus or resolved is not on it; an error in mode "on".
pub async fn find(mode: ResolvedMode) -> Result<Option<ManagerProxy<'static>>> {
    if mode == ResolvedMode::Off {
        return Ok(None);
    }
    let found = tokio::time::timeout(BUS_TIMEOUT, async {
        let bus = Connection::system().await.context("no D-Bus system bus")?;
        let names = zbus::fdo::DBusProxy::new(&bus).await?;
        if !names.name_has_owner(RESOLVED.try_into()?).await? {
            return Ok(None);
        }
        // A bus can be shared across network namespaces (a container given the host's
        // socket): a resolved elsewhere has other links, and ours would be its stranger's.
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
        anyhow::Ok(Some(manager))
    })
    .await
    .unwrap_or_else(|_| {
        Err(anyhow!(
            "the D-Bus system bus did not answer within {BUS_TIMEOUT:?}"
        ))
    });
    match (found, mode) {
        (Ok(Some(manager)), _) => Ok(Some(manager)),
        (Ok(None), ResolvedMode::On) => Err(anyhow!(
            "resolved.mode = \"on\", but systemd-resolved is not on the system bus"
        )),
        (Err(e), ResolvedMode::On) => {
            Err(e.context("resolved.mode = \"on\", but systemd-resolved cannot be reached"))
        }
        (Ok(None), _) => Ok(None),
        (Err(e), _) => {
            info!("systemd-resolved not found ({e:#}): answering on stub.listen");
            Ok(None)
        }
    }
}

/// The servers `manager` (resolved) uses, but for `ours`, before our device is known.
pub async fn initial_servers(
    manager: &ManagerProxy<'static>,
    ours: Ipv4Addr,
) -> Result<Vec<SocketAddr>> {
    let all = manager
        .dns()
        .await
        .context("cannot read systemd-resolved's DNS servers")?;
    Ok(upstream_servers(&all, -1, ours))
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

impl Resolved {
    pub fn new(
        manager: ManagerProxy<'static>,
        ifindex: u32,
        address: Ipv4Addr,
        follow_servers: bool,
    ) -> Result<Self> {
        let ifindex = i32::try_from(ifindex).context("interface index out of range")?;
        Ok(Self {
            manager,
            ifindex,
            address,
            follow_servers,
        })
    }

    /// The servers resolved uses for everything but our device, as vipd's upstream.
    pub async fn servers(&self) -> Result<Vec<SocketAddr>> {
        let all = self
            .manager
            .dns()
            .await
            .context("cannot read systemd-resolved's DNS servers")?;
        Ok(upstream_servers(&all, self.ifindex, self.address))
    }

    /// Whether resolved still has us as a server (it forgets our device when it
    /// restarts). resolved lists a loopback server under the loopback device, whichever
    /// link it serves: our address alone tells.
    async fn registered(&self) -> Result<bool> {
        let all = self.manager.dns().await?;
        Ok(all.iter().any(|(_, family, address)| {
            *family == AF_INET && address.as_slice() == self.address.octets()
        }))
    }

    /// Makes vipd the server of our device for every name, with no multicast name
    /// resolution there. resolved does not validate DNSSEC on this link: vipd's answers
    /// that carry VIPs are its own and cannot be signed (vipd validates key records
    /// itself, `[dnssec]`).
    pub async fn register(&self) -> Result<()> {
        let m = &self.manager;
        let i = self.ifindex;
        let context = || "systemd-resolved refused vipd's link settings";
        m.set_link_dns(i, &[(AF_INET, self.address.octets().to_vec())])
            .await
            .with_context(context)?;
        m.set_link_domains(i, &[(".", true)])
            .await
            .with_context(context)?;
        m.set_link_default_route(i, true)
            .await
            .with_context(context)?;
        m.set_link_llmnr(i, "no").await.with_context(context)?;
        m.set_link_multicast_dns(i, "no")
            .await
            .with_context(context)?;
        m.set_link_dnssec(i, "no").await.with_context(context)?;
        Ok(())
    }

    /// Hands our device back to resolved's defaults (no server): names no longer go to a
    /// vipd that has stopped.
    pub async fn revert(&self) -> Result<()> {
        self.manager
            .revert_link(self.ifindex)
            .await
            .context("cannot revert systemd-resolved's settings of our device")
    }

    /// Keeps us registered, and `upstream` on resolved's servers unless they are
    /// configured, as long as vipd runs.
    /// resolved being away (restarting) is logged once and waited out.
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
        if !self.registered().await? {
            self.register().await?;
            info!(address = %self.address, "registered with systemd-resolved again (it had restarted or was reset)");
        }
        if !self.follow_servers {
            return Ok(());
        }
        let servers = self.servers().await?;
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

/// The servers of `all` (resolved's `DNS` property) that vipd should ask: those of other
/// links and the global ones, never our device's (that is us) nor resolved's own stub
/// addresses, which would send the question round in a loop. IPv6 link-local servers
/// need their link, which the upstream pool cannot carry: left out.
fn upstream_servers(all: &[(i32, i32, Vec<u8>)], ifindex: i32, ours: Ipv4Addr) -> Vec<SocketAddr> {
    let stubs = [
        Ipv4Addr::new(127, 0, 0, 53),
        Ipv4Addr::new(127, 0, 0, 54),
        ours,
    ];
    let mut servers = Vec::new();
    for (link, family, address) in all {
        if *link == ifindex {
            continue;
        }
        let ip = match (*family, address.as_slice()) {
            (AF_INET, &[a, b, c, d]) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            (AF_INET6, bytes) if bytes.len() == 16 => {
                let octets: [u8; 16] = bytes.try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(octets))
            }
            _ => continue,
        };
        let unusable = match ip {
            IpAddr::V4(v4) => stubs.contains(&v4) || v4.is_unspecified(),
            IpAddr::V6(v6) => v6.is_unicast_link_local() || v6.is_unspecified(),
        };
        let server = SocketAddr::new(ip, 53);
        if !unusable && !servers.contains(&server) {
            servers.push(server);
        }
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 153);

    #[test]
    fn upstream_is_every_other_links_servers_without_loops() {
        let v6: Ipv6Addr = "2001:db8::53".parse().unwrap();
        let link_local: Ipv6Addr = "fe80::1".parse().unwrap();
        let all = vec![
            (7, AF_INET, OURS.octets().to_vec()),        // our device: us
            (2, AF_INET, vec![192, 0, 2, 53]),           // the LAN's server
            (0, AF_INET, vec![198, 51, 100, 1]),         // a global one
            (2, AF_INET6, v6.octets().to_vec()),         // an IPv6 one
            (2, AF_INET6, link_local.octets().to_vec()), // needs its link: left out
            (0, AF_INET, vec![127, 0, 0, 53]),           // resolved itself
            (3, AF_INET, vec![192, 0, 2, 53]),           // the same server twice
            (3, AF_INET, vec![1, 2, 3]),                 // malformed
            (3, 99, vec![1, 2, 3, 4]),                   // unknown family
        ];
        assert_eq!(
            upstream_servers(&all, 7, OURS),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "198.51.100.1:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn our_address_is_never_upstream_even_on_another_link() {
        let all = vec![(4, AF_INET, OURS.octets().to_vec())];
        assert!(upstream_servers(&all, 7, OURS).is_empty());
    }
}
