//! ESP for the daemon's pairs (issue 11): the kernel's XFRM, as the engine's kernel changes
//! ask. A pair's policies come first (from then on its packets are ESP or nothing), then
//! each session's SAs; SPIs and keys come from the session (`vip_proto::esp`).

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use tracing::{info, warn};
use vip_proto::engine::PairSas;
use vip_proto::esp::{Aead as SessionAead, EspSa};
use vip_xfrm::{Aead, Direction, EspKey, Lifetime, Sa, Xfrm};

/// Inbound SAs kept per pair: the newest and the ones before it. The peer moves onto a new
/// one only when its session completes, so older ones stay for packets still in flight,
/// rekeys crossing, and sessions whose confirmation was lost (each adds an inbound SA the
/// peer never uses; housekeeping retries at most every 10 s).
const INBOUND_KEPT: usize = 8;

/// The daemon's hands in XFRM.
#[derive(Clone)]
pub struct Esp {
    xfrm: Xfrm,
}

impl Esp {
    /// Opens the XFRM socket; its connection runs as a task of the current runtime.
    pub fn open() -> Result<Self> {
        let (xfrm, connection) = Xfrm::new().context("cannot open an XFRM netlink socket")?;
        tokio::spawn(connection);
        Ok(Self { xfrm })
    }

    /// The pair's policies (idempotent), then `sas`: the inbound SA, and the outbound one
    /// if given; then the SAs they replace go.
    pub async fn prepare(
        &self,
        local_vip: Ipv4Addr,
        peer_vip: Ipv4Addr,
        sas: Option<&PairSas>,
    ) -> Result<()> {
        self.xfrm.add_policies(local_vip, peer_vip).await?;
        let Some(sas) = sas else {
            return Ok(());
        };
        let inbound = sa(local_vip, peer_vip, Direction::In, &sas.inbound);
        self.xfrm.add_new_sa(&inbound).await?;
        if let Some(outbound) = &sas.outbound {
            let outbound = sa(local_vip, peer_vip, Direction::Out, outbound);
            self.xfrm.add_new_sa(&outbound).await?;
        }
        let newest_out = sas.outbound.as_ref().map(|o| o.spi);
        self.retire(local_vip, peer_vip, Some(sas.inbound.spi), newest_out)
            .await
    }

    /// The pair's new outbound SA (the peer receives on it); the older ones go.
    pub async fn outbound(
        &self,
        local_vip: Ipv4Addr,
        peer_vip: Ipv4Addr,
        new: &EspSa,
    ) -> Result<()> {
        self.xfrm
            .add_new_sa(&sa(local_vip, peer_vip, Direction::Out, new))
            .await?;
        self.retire(local_vip, peer_vip, None, Some(new.spi)).await
    }

    /// Deletes, from one listing, the pair's outbound SAs other than `newest_out`, and its
    /// inbound SAs beyond the [`INBOUND_KEPT`] newest (`newest_in` first).
    async fn retire(
        &self,
        local_vip: Ipv4Addr,
        peer_vip: Ipv4Addr,
        newest_in: Option<u32>,
        newest_out: Option<u32>,
    ) -> Result<()> {
        let states = self.xfrm.states().await?;
        let mut older_in: Vec<_> = states
            .iter()
            .filter(|s| {
                newest_in.is_some_and(|new| s.spi != new)
                    && (s.source, s.destination) == (peer_vip, local_vip)
            })
            .collect();
        older_in.sort_by_key(|s| std::cmp::Reverse(s.added));
        let older_out = states.iter().filter(|s| {
            newest_out.is_some_and(|new| s.spi != new)
                && (s.source, s.destination) == (local_vip, peer_vip)
        });
        for old in older_in.into_iter().skip(INBOUND_KEPT - 1).chain(older_out) {
            self.xfrm.delete_sa(old).await?;
        }
        Ok(())
    }

    /// The pair's policies and SAs, all generations.
    pub async fn remove(&self, local_vip: Ipv4Addr, peer_vip: Ipv4Addr) -> Result<()> {
        Ok(self.xfrm.remove_pair(local_vip, peer_vip).await?)
    }

    /// At start: ours that belong to none of the pairs the kernel still maps (a crash, a
    /// pair collected while the daemon was down) go; the others keep their SAs until their
    /// next session replaces them.
    pub async fn clean_up(&self, adopted: &[(Ipv4Addr, Ipv4Addr)]) -> Result<()> {
        let mut removed = 0usize;
        for peer in self.xfrm.policy_peers().await? {
            if !adopted.iter().any(|(_, p)| *p == peer) {
                self.xfrm.remove_policies(peer).await?;
                removed += 1;
            }
        }
        for state in self.xfrm.states().await? {
            let adopted_pair = adopted.iter().any(|&(local, peer)| {
                (state.source, state.destination) == (local, peer)
                    || (state.source, state.destination) == (peer, local)
            });
            if !adopted_pair || state.larval {
                self.xfrm.delete_sa(&state).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            info!(
                removed,
                "removed ESP policies and SAs of pairs we no longer hold"
            );
        }
        Ok(())
    }
}

fn sa(local_vip: Ipv4Addr, peer_vip: Ipv4Addr, direction: Direction, sa: &EspSa) -> Sa {
    Sa {
        local_vip,
        peer_vip,
        direction,
        spi: sa.spi,
        aead: match sa.aead {
            SessionAead::AesGcm => Aead::AesGcm,
            SessionAead::ChaCha20Poly1305 => Aead::ChaCha20Poly1305,
        },
        key: EspKey::new(*sa.key),
        // The daemon replaces a pair's SAs with every session (at most 120 s apart while
        // the pair carries packets) and removes them with the pair.
        lifetime: Lifetime::default(),
    }
}

/// Whether the CPU has AES and carry-less multiplication instructions (what AES-GCM
/// needs to be fast and constant-time).
pub fn aes_hardware() -> bool {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|flags| {
            let has = |w: &str| flags.split_whitespace().any(|f| f == w);
            has("aes") && has("pclmulqdq")
        })
}

/// XFRM must not be switched off on the vip device: its packets would skip the policies
/// and cross in clear. Switched back on, with a warning; an error if that fails.
pub fn require_xfrm_on(device: &str) -> Result<()> {
    for knob in ["disable_xfrm", "disable_policy"] {
        let path = format!("/proc/sys/net/ipv4/conf/{device}/{knob}");
        let value =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        if value.trim() != "0" {
            warn!(
                device,
                knob, "IPsec was switched off on the vip device: switching it back on"
            );
            std::fs::write(&path, "0").with_context(|| format!("cannot write 0 to {path}"))?;
        }
    }
    Ok(())
}
