//! The configuration file (TOML). Every key but `fqdn` has a default; unknown keys and bad
//! values are refused, naming the key, so that a typo never silently changes behaviour.

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};
use vip_proto::Fqdn;

/// The default path of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/vipd/vipd.toml";

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This host's fully qualified name (required).
    pub fqdn: Fqdn,
    /// The vip device to create or adopt.
    #[serde(default = "default_device")]
    pub device: String,
    /// Where the identity key, the known-peers file and the state live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The range VIPs are drawn from and proposals are accepted in.
    #[serde(default = "default_vip_range")]
    pub vip_range: Ipv4Net,
    /// Our physical address as published in DNS: "auto" (the source address of the route
    /// toward the update server) or an address.
    #[serde(default)]
    pub address: AddressChoice,
    /// The control socket `vipctl peers`, `unpin` and `resolve` use (mode 0600).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    #[serde(default)]
    pub stub: Stub,
    #[serde(default)]
    pub upstream: Upstream,
    #[serde(default)]
    pub update: Update,
    #[serde(default)]
    pub negotiation: Negotiation,
    #[serde(default)]
    pub mobility: Mobility,
    #[serde(default)]
    pub ipsec: Ipsec,
    #[serde(default)]
    pub dnssec: Dnssec,
    #[serde(default)]
    pub resolved: Resolved,
}

/// systemd-resolved's own stub addresses (its stub and its proxy stub, port 53).
pub const RESOLVED_STUBS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(127, 0, 0, 53), Ipv4Addr::new(127, 0, 0, 54)];

/// systemd-resolved, where it owns 127.0.0.53: vipd registers as the DNS server of its
/// device for every name (routing domain `~.`) and asks the servers resolved knows for
/// the host's other links.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resolved {
    /// "auto": when resolved runs (its name is on the system bus) at start-up; "on": it
    /// must; "off": never (`stub.listen` and `upstream.servers` only).
    pub mode: ResolvedMode,
    /// Where vipd answers resolved: an address of 127.0.0.0/8 that vipd puts on its device
    /// (resolved sends a link's queries out of that link), port 53.
    pub address: Ipv4Addr,
}

impl Default for Resolved {
    fn default() -> Self {
        Self {
            mode: ResolvedMode::default(),
            address: Ipv4Addr::new(127, 0, 0, 153),
        }
    }
}

/// See [`Resolved::mode`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolvedMode {
    #[default]
    Auto,
    On,
    Off,
}

/// DNSSEC-vouched keys (paper section 3.4).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dnssec {
    /// A file of the DNSKEY records of the zones our peers' key records are in (every key
    /// of each zone, as BIND's `K<zone>.+013+<tag>.key`). Their key records must then
    /// validate: a peer's key is taken without trust on first use, a validated new key
    /// replaces the pinned one, and a record that does not validate is refused. Without
    /// it, keys are pinned on first use.
    pub trust_anchor: Option<PathBuf>,
}

/// ESP between VIPs (issue 11).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ipsec {
    /// "required": every pair's packets are ESP between the two VIPs, and a peer that does
    /// not offer ESP gets no pair (its name resolves to its address); "off": plain IPIP.
    pub mode: IpsecMode,
    /// An SA's hard lifetime: the kernel deletes it, key and all, this long after it was
    /// keyed. Its soft lifetime, 70 to 80 % of this, starts a new session if it carried
    /// packets. A pair in use has new SAs every 120 s anyway; an idle pair's keys go
    /// after this (WireGuard's 540 s), and its next packet starts a new session.
    pub sa_lifetime_secs: u64,
}

impl Default for Ipsec {
    fn default() -> Self {
        Self {
            mode: IpsecMode::default(),
            sa_lifetime_secs: 540,
        }
    }
}

/// See [`Ipsec::mode`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpsecMode {
    #[default]
    Required,
    Off,
}

/// Following moves: ours and our partners'.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mobility {
    /// Partners we exchanged packets with in the last `active_secs` get hints when we move
    /// (the paper's Active Partner List, T).
    pub active_secs: u64,
    /// A partner we send to but heard nothing from for `lease_secs` is looked up in DNS
    /// again (the paper's lease).
    pub lease_secs: u64,
}

impl Default for Mobility {
    fn default() -> Self {
        Self {
            active_secs: 60,
            lease_secs: 30,
        }
    }
}

/// How our published address is chosen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum AddressChoice {
    /// The source address of the route toward the update server.
    #[default]
    Auto,
    /// A fixed address.
    Fixed(Ipv4Addr),
}

impl<'de> Deserialize<'de> for AddressChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            return Ok(Self::Auto);
        }
        s.parse().map(Self::Fixed).map_err(|_| {
            serde::de::Error::custom(format!("expected \"auto\" or an IPv4 address, not {s:?}"))
        })
    }
}

/// The local DNS stub.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stub {
    /// Addresses to answer on, UDP and TCP. Unset: 127.0.0.53:53, or none when vipd
    /// registers with systemd-resolved (which owns that address).
    pub listen: Option<Vec<SocketAddr>>,
    /// TTL of answers that carry a VIP, seconds.
    pub vip_ttl: u32,
    /// Answer AAAA queries for VIP hosts with no address, so that programs that ask for
    /// both families use the VIP rather than the peer's physical IPv6 address, which
    /// breaks on its next move.
    pub hide_aaaa: bool,
}

impl Default for Stub {
    fn default() -> Self {
        Self {
            listen: None,
            vip_ttl: 5,
            hide_aaaa: true,
        }
    }
}

/// The resolvers the stub asks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// The fastest asked first (hickory-resolver ranks them), two at a time. Empty: the
    /// servers systemd-resolved knows for the host's other links, followed as they change.
    pub servers: Vec<SocketAddr>,
    /// Per query and server, milliseconds.
    pub timeout_ms: u64,
    /// Answers the stub relays kept for their TTLs, at most; 0 caches none. (vipd's own
    /// questions never come from the cache.)
    pub cache_size: u64,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout_ms: 2000,
            cache_size: 4096,
        }
    }
}

/// Secure dynamic DNS updates (RFC 2136, TSIG).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Update {
    /// Publish our address and VIP capability at start-up.
    pub enabled: bool,
    /// The primary server of our zone; by default the first upstream server.
    pub server: Option<SocketAddr>,
    /// Our zone; by default our FQDN without its first label.
    pub zone: Option<Fqdn>,
    /// The key file, as `tsig-keygen` writes it.
    pub key_file: Option<PathBuf>,
    /// TTL of our A record and our magic record, seconds.
    pub ttl: u32,
}

impl Default for Update {
    fn default() -> Self {
        Self {
            enabled: true,
            server: None,
            zone: None,
            key_file: None,
            ttl: 30,
        }
    }
}

/// VIP garbage collection policy (paper section 4.1.2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcPolicy {
    /// Mappings stay valid until this host reboots.
    #[default]
    ReclaimOnReboot,
    /// Mappings that carried no packet either way for `gc_idle_secs` are discarded
    /// (least recently used first, as they age out) and their VIPs become reusable.
    Lease,
}

/// The negotiation protocol between daemons.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Negotiation {
    /// UDP port of the negotiation protocol.
    pub port: u16,
    /// Wait for a reply this long before retransmitting, milliseconds.
    pub retransmit_ms: u64,
    /// Restarts from the DNS query after a request and its retransmission went unanswered.
    pub restarts: u32,
    /// Give up (and answer with the physical address) after this many rounds.
    pub max_rounds: u8,
    /// Garbage collection of VIP mappings.
    pub gc: GcPolicy,
    /// With `gc = "lease"`: seconds without a packet after which a mapping is discarded.
    pub gc_idle_secs: u64,
    /// The most partners (and invalid VIPs) kept; beyond it, new ones are refused (they
    /// talk to us by physical address).
    pub max_partners: usize,
    /// The most handshakes answered and awaiting confirmation at once; beyond an eighth
    /// of it, initiators must prove their address with a cookie first.
    pub max_pending: usize,
}

impl Default for Negotiation {
    fn default() -> Self {
        Self {
            port: 4877,
            retransmit_ms: 500,
            restarts: 3,
            max_rounds: 8,
            gc: GcPolicy::default(),
            gc_idle_secs: 3600,
            max_partners: 65536,
            max_pending: 1024,
        }
    }
}

fn default_device() -> String {
    "vip0".into()
}

fn default_state_dir() -> PathBuf {
    "/var/lib/vipd".into()
}

fn default_control_socket() -> PathBuf {
    "/run/vipd/control.sock".into()
}

fn default_vip_range() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(240, 0, 0, 0), 4).expect("a /4 is a valid prefix")
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Self> {
        // toml's messages name the key and show the line, which is what a user needs.
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.upstream.servers.is_empty() && self.resolved.mode == ResolvedMode::Off {
            bail!(
                "upstream.servers: at least one resolver is needed (or systemd-resolved's: resolved.mode = \"auto\" or \"on\")"
            );
        }
        if self.stub.listen.as_ref().is_some_and(Vec::is_empty)
            && self.resolved.mode == ResolvedMode::Off
        {
            bail!("stub.listen: at least one address is needed");
        }
        let resolved = self.resolved.address;
        if !resolved.is_loopback() || RESOLVED_STUBS.contains(&resolved) {
            bail!(
                "resolved.address: {resolved} must be in 127.0.0.0/8 and not one of resolved's own (127.0.0.53, 127.0.0.54)"
            );
        }
        // A server that is vipd itself, or resolved (which would ask vipd again), makes a
        // loop; 127.0.0.53 may be another resolver only where resolved is never used.
        for server in &self.upstream.servers {
            let ours = self.stub.listen.iter().flatten().any(|l| l == server)
                || *server == SocketAddr::from((resolved, 53));
            let resolveds = self.resolved.mode != ResolvedMode::Off
                && RESOLVED_STUBS.iter().any(|&stub| server.ip() == stub);
            if ours || resolveds {
                bail!(
                    "upstream.servers: {server} is vipd's own stub or systemd-resolved's, which would ask vipd again (a loop); leave upstream.servers empty to use resolved's servers"
                );
            }
        }
        if self.update.enabled && self.update.server.is_none() && self.upstream.servers.is_empty() {
            bail!(
                "update.server: needed when the upstream servers come from systemd-resolved (they change as the host moves)"
            );
        }
        let class_e = default_vip_range();
        if !class_e.contains(&self.vip_range) || self.vip_range.prefix_len() > 30 {
            bail!(
                "vip_range: {} must lie inside {class_e} and hold more than a few addresses",
                self.vip_range
            );
        }
        if self.device.is_empty() || self.device.len() > 15 || self.device.contains(['/', ' ']) {
            bail!("device: {:?} is not a valid interface name", self.device);
        }
        if self.update.enabled && self.update.key_file.is_none() {
            bail!(
                "update.key_file: needed to sign dynamic updates (or set update.enabled = false)"
            );
        }
        if self.update.ttl == 0 || self.stub.vip_ttl == 0 {
            bail!("update.ttl and stub.vip_ttl must be at least 1 second");
        }
        if self.negotiation.retransmit_ms == 0 || self.negotiation.max_rounds == 0 {
            bail!("negotiation.retransmit_ms and negotiation.max_rounds must be positive");
        }
        if !(10..=86_400).contains(&self.ipsec.sa_lifetime_secs) {
            bail!("ipsec.sa_lifetime_secs: between 10 s and a day");
        }
        if self.negotiation.gc_idle_secs == 0 {
            bail!("negotiation.gc_idle_secs must be positive");
        }
        if self.mobility.active_secs == 0 || self.mobility.lease_secs == 0 {
            bail!("mobility.active_secs and mobility.lease_secs must be positive");
        }
        if self.negotiation.port == 0 {
            bail!("negotiation.port: 0 is not a port");
        }
        if self.negotiation.max_partners == 0 || self.negotiation.max_pending < 8 {
            bail!(
                "negotiation.max_partners must be positive and negotiation.max_pending at least 8"
            );
        }
        Ok(())
    }

    /// The server that receives our dynamic updates (`check` made sure there is one, or
    /// that updates are off).
    pub fn update_server(&self) -> Option<SocketAddr> {
        self.update
            .server
            .or_else(|| self.upstream.servers.first().copied())
    }

    /// Where the stub answers: `stub.listen`, or by default 127.0.0.53:53 unless vipd
    /// answers systemd-resolved instead (`resolved.address`, added by the caller).
    pub fn stub_listen(&self, with_resolved: bool) -> Vec<SocketAddr> {
        match &self.stub.listen {
            Some(listen) => listen.clone(),
            None if with_resolved => Vec::new(),
            None => vec![SocketAddr::from((RESOLVED_STUBS[0], 53))],
        }
    }

    /// Our zone: the configured one, or our name without its first label.
    pub fn zone(&self) -> Result<Fqdn> {
        if let Some(zone) = &self.update.zone {
            return Ok(zone.clone());
        }
        let name = self.fqdn.as_str();
        let parent = name
            .split_once('.')
            .map(|(_, rest)| rest)
            .filter(|rest| !rest.is_empty())
            .with_context(|| format!("update.zone: cannot guess the zone of {name}; set it"))?;
        Fqdn::new(parent).map_err(|e| anyhow::anyhow!("update.zone: {e}"))
    }

    /// Timeout of one upstream query.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.timeout_ms)
    }

    /// Wait before a negotiation retransmission.
    pub fn retransmit(&self) -> Duration {
        Duration::from_millis(self.negotiation.retransmit_ms)
    }

    /// The daemon's settings that differ in `new` and take effect only at the next start
    /// (the engine reports its own: name, range, port, ESP mode).
    pub fn need_restart(&self, new: &Config) -> Vec<&'static str> {
        [
            ("device", self.device != new.device),
            ("state_dir", self.state_dir != new.state_dir),
            ("address", self.address != new.address),
            ("control_socket", self.control_socket != new.control_socket),
            ("stub", self.stub != new.stub),
            ("upstream", self.upstream != new.upstream),
            ("update", self.update != new.update),
            ("dnssec", self.dnssec != new.dnssec),
            ("resolved", self.resolved != new.resolved),
            (
                "ipsec.sa_lifetime_secs",
                self.ipsec.sa_lifetime_secs != new.ipsec.sa_lifetime_secs,
            ),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
    }

    /// The protocol engine's settings.
    pub fn engine(&self, home_vip: Ipv4Addr) -> vip_proto::engine::Config {
        vip_proto::engine::Config {
            me: self.fqdn.clone(),
            vip_range: self.vip_range,
            home_vip,
            port: self.negotiation.port,
            retransmit: self.retransmit(),
            restarts: self.negotiation.restarts,
            max_rounds: self.negotiation.max_rounds,
            active: Duration::from_secs(self.mobility.active_secs),
            lease: Duration::from_secs(self.mobility.lease_secs),
            gc: match self.negotiation.gc {
                GcPolicy::ReclaimOnReboot => vip_proto::engine::Gc::ReclaimOnReboot,
                GcPolicy::Lease => {
                    vip_proto::engine::Gc::Lease(Duration::from_secs(self.negotiation.gc_idle_secs))
                }
            },
            max_partners: self.negotiation.max_partners,
            max_pending: self.negotiation.max_pending,
            esp: match self.ipsec.mode {
                IpsecMode::Required => vip_proto::engine::EspMode::Required,
                IpsecMode::Off => vip_proto::engine::EspMode::Off,
            },
            aes_hardware: crate::xfrm::aes_hardware(),
            // The trust anchors' zones, once the daemon has read them (`main`).
            dnssec_zones: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
fqdn = "a.vip.test"
[upstream]
servers = ["203.0.113.53:53"]
[update]
key_file = "/etc/vipd/a.key"
"#;

    #[test]
    fn minimal_file_gets_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.fqdn.as_str(), "a.vip.test");
        assert_eq!(c.device, "vip0");
        assert_eq!(c.negotiation.port, 4877);
        assert_eq!(c.zone().unwrap().as_str(), "vip.test");
        assert_eq!(c.update_server(), Some("203.0.113.53:53".parse().unwrap()));
        assert_eq!(c.resolved.mode, ResolvedMode::Auto);
        assert_eq!(c.stub_listen(false), ["127.0.0.53:53".parse().unwrap()]);
        assert!(c.stub_listen(true).is_empty());
        assert_eq!(c.address, AddressChoice::Auto);
    }

    #[test]
    fn shipped_example_parses() {
        let c = Config::parse(include_str!("../dist/vipd.toml")).unwrap();
        assert_eq!(c.fqdn.as_str(), "laptop.example.org");
        assert_eq!(c.negotiation.retransmit_ms, 500);
    }

    #[test]
    fn esp_is_required_unless_switched_off() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.ipsec.mode, IpsecMode::Required);
        assert_eq!(
            c.engine(Ipv4Addr::new(240, 0, 0, 1)).esp,
            vip_proto::engine::EspMode::Required
        );
        let c = Config::parse(&format!("{MINIMAL}\n[ipsec]\nmode = \"off\"\n")).unwrap();
        assert_eq!(
            c.engine(Ipv4Addr::new(240, 0, 0, 1)).esp,
            vip_proto::engine::EspMode::Off
        );
        let err = Config::parse(&format!("{MINIMAL}\n[ipsec]\nmode = \"optional\"\n")).unwrap_err();
        assert!(format!("{err:#}").contains("optional"), "{err:#}");
    }

    #[test]
    fn a_trust_anchor_is_read_and_needs_a_restart() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.dnssec.trust_anchor, None);
        let signed = Config::parse(&format!(
            "{MINIMAL}\n[dnssec]\ntrust_anchor = \"/etc/vipd/z.key\"\n"
        ))
        .unwrap();
        assert_eq!(signed.dnssec.trust_anchor, Some("/etc/vipd/z.key".into()));
        assert_eq!(c.need_restart(&signed), ["dnssec"]);
        let err = Config::parse(&format!("{MINIMAL}\n[dnssec]\nanchor = \"x\"\n")).unwrap_err();
        assert!(format!("{err:#}").contains("anchor"), "{err:#}");
    }

    #[test]
    fn sa_lifetimes_are_bounded() {
        assert_eq!(Config::parse(MINIMAL).unwrap().ipsec.sa_lifetime_secs, 540);
        let with =
            |secs: u64| Config::parse(&format!("{MINIMAL}\n[ipsec]\nsa_lifetime_secs = {secs}\n"));
        assert_eq!(with(20).unwrap().ipsec.sa_lifetime_secs, 20);
        for wrong in [0, 9, 86_401] {
            let err = with(wrong).unwrap_err();
            assert!(format!("{err:#}").contains("sa_lifetime_secs"), "{err:#}");
        }
    }

    #[test]
    fn upstream_servers_may_come_from_resolved_but_updates_then_need_a_server() {
        let from_resolved = "fqdn = \"a.vip.test\"\n[update]\nenabled = false\n";
        let c = Config::parse(from_resolved).unwrap();
        assert!(c.upstream.servers.is_empty());
        assert_eq!(c.update_server(), None);
        let err =
            Config::parse(&format!("{from_resolved}[resolved]\nmode = \"off\"\n")).unwrap_err();
        assert!(format!("{err:#}").contains("upstream.servers"), "{err:#}");
        let err =
            Config::parse("fqdn = \"a.vip.test\"\n[update]\nkey_file = \"/etc/vipd/a.key\"\n")
                .unwrap_err();
        assert!(format!("{err:#}").contains("update.server"), "{err:#}");
        let c = Config::parse(
            "fqdn = \"a.vip.test\"\n[update]\nkey_file = \"k\"\nserver = \"192.0.2.53:53\"\n",
        )
        .unwrap();
        assert_eq!(c.update_server(), Some("192.0.2.53:53".parse().unwrap()));
    }

    #[test]
    fn upstream_servers_that_loop_back_are_refused() {
        for (extra, server) in [
            ("", "127.0.0.53:53"),
            ("", "127.0.0.54:53"),
            ("", "127.0.0.153:53"),
            ("[stub]\nlisten = [\"127.0.0.2:53\"]\n", "127.0.0.2:53"),
        ] {
            let text = MINIMAL.replace("203.0.113.53:53", server);
            let err = Config::parse(&format!("{text}{extra}")).unwrap_err();
            assert!(format!("{err:#}").contains("loop"), "{server}: {err:#}");
        }
        // Without resolved, 127.0.0.53 may be another local resolver.
        let text = MINIMAL.replace("203.0.113.53:53", "127.0.0.53:53");
        Config::parse(&format!(
            "{text}[resolved]\nmode = \"off\"\n[stub]\nlisten = [\"127.0.0.2:53\"]\n"
        ))
        .unwrap();
    }

    #[test]
    fn resolved_address_is_a_loopback_address_of_our_own() {
        let with = |a: &str| Config::parse(&format!("{MINIMAL}\n[resolved]\naddress = \"{a}\"\n"));
        assert_eq!(
            with("127.0.0.99").unwrap().resolved.address,
            Ipv4Addr::new(127, 0, 0, 99)
        );
        for wrong in ["127.0.0.53", "127.0.0.54", "192.0.2.1"] {
            let err = with(wrong).unwrap_err();
            assert!(
                format!("{err:#}").contains("resolved.address"),
                "{wrong}: {err:#}"
            );
        }
        let c =
            Config::parse(&format!("{MINIMAL}\n[stub]\nlisten = [\"127.0.0.2:53\"]\n")).unwrap();
        assert_eq!(c.stub_listen(true), ["127.0.0.2:53".parse().unwrap()]);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(&format!("{MINIMAL}\n[negotiation]\nprot = 5\n")).unwrap_err();
        assert!(format!("{err:#}").contains("prot"), "{err:#}");
    }

    #[test]
    fn bad_values_are_refused() {
        for (extra, key) in [
            ("vip_range = \"10.0.0.0/8\"\n", "vip_range"),
            ("address = \"nowhere\"\n", "address"),
            ("device = \"a/b\"\n", "device"),
            ("fqdn = \"bad..name\"\n", "fqdn"),
        ] {
            let text = format!(
                "{extra}{}",
                MINIMAL.replace(
                    "fqdn = \"a.vip.test\"\n",
                    if key == "fqdn" {
                        ""
                    } else {
                        "fqdn = \"a.vip.test\"\n"
                    }
                )
            );
            let err = Config::parse(&text).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{key}: {err:#}");
        }
    }

    #[test]
    fn updates_need_a_key() {
        let err =
            Config::parse("fqdn = \"a.vip.test\"\n[upstream]\nservers = [\"192.0.2.1:53\"]\n")
                .unwrap_err();
        assert!(format!("{err:#}").contains("update.key_file"), "{err:#}");
    }
}
