//! ESP for the daemon's pairs (issue 11): the kernel's XFRM, as the engine's kernel changes
//! ask. A pair's policies come first (from then on its packets are ESP or nothing), then
//! each session's SAs; SPIs and keys come from the session (`vip_proto::esp`).

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use tracing::{debug, info, warn};
use vip_proto::engine::{KernelEvent, PairSas};
use vip_proto::esp::{Aead as SessionAead, EspSa};
use vip_xfrm::{Aead, Direction, EspKey, Event, Events, Lifetime, Sa, Xfrm};

use crate::driver::{Handle, Input};

/// Inbound SAs kept per pair: the newest and the ones before it. The peer moves onto a new
/// one only when its session completes, so older ones stay for packets still in flight,
/// rekeys crossing, and sessions whose confirmation was lost (each adds an inbound SA the
/// peer never uses; housekeeping retries at most every 10 s). Beyond these, the newest
/// inbound SA that has carried packets stays too: it is the one the peer sends on until a
/// session completes, however many did not.
const INBOUND_KEPT: usize = 8;

/// The daemon's hands in XFRM.
#[derive(Clone)]
pub struct Esp {
    xfrm: Xfrm,
    /// Every SA's hard lifetime, in seconds (`[ipsec] sa_lifetime_secs`).
    lifetime_secs: u64,
}

impl Esp {
    /// Opens the XFRM socket; its connection runs as a task of the current runtime.
    pub fn open(lifetime_secs: u64) -> Result<Self> {
        let (xfrm, connection) = Xfrm::new().context("cannot open an XFRM netlink socket")?;
        tokio::spawn(connection);
        Ok(Self {
            xfrm,
            lifetime_secs,
        })
    }

    /// One of the pair's SAs as the kernel gets it.
    fn sa(&self, local_vip: Ipv4Addr, peer_vip: Ipv4Addr, direction: Direction, sa: &EspSa) -> Sa {
        // The soft lifetime is drawn from 70-80 % of the hard one, so that the two ends of
        // a pair, keyed at the same moment, seldom start a new session at once.
        let hard = self.lifetime_secs;
        let soft = hard * 7 / 10 + rand::random_range(0..=hard / 10);
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
            lifetime: Lifetime {
                soft_secs: soft,
                hard_secs: hard,
            },
        }
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
        let inbound = self.sa(local_vip, peer_vip, Direction::In, &sas.inbound);
        self.xfrm.add_new_sa(&inbound).await?;
        if let Some(outbound) = &sas.outbound {
            let outbound = self.sa(local_vip, peer_vip, Direction::Out, outbound);
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
            .add_new_sa(&self.sa(local_vip, peer_vip, Direction::Out, new))
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
        for old in retired(&states, local_vip, peer_vip, newest_in, newest_out) {
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

/// Hands the kernel's reports about our SAs to the engine. A soft expiry of an outbound SA
/// that carried packets, and an acquire (a packet toward a peer's VIP found our policy and
/// no SA), each ask for a new session; the engine ignores VIPs that are not a partner's
/// (an inbound SA's destination is ours). A hard expiry needs nothing: the SA is gone.
pub async fn events(handle: Handle) -> Result<()> {
    let (mut events, connection) =
        Events::subscribe().context("cannot subscribe to XFRM expiries and acquires")?;
    tokio::spawn(connection);
    while let Some(event) = events.next().await {
        let renew = match event {
            Event::Expired { sa, hard: false } if sa.packets > 0 => KernelEvent::EspRenew {
                peer_vip: sa.destination,
                missing: false,
            },
            Event::Expired { sa, hard } => {
                debug!(
                    spi = format_args!("{:#x}", sa.spi),
                    hard,
                    packets = sa.packets,
                    "SA expired"
                );
                continue;
            }
            Event::Acquire {
                source,
                destination,
            } => {
                debug!(%source, %destination, "a packet found no SA");
                KernelEvent::EspRenew {
                    peer_vip: destination,
                    missing: true,
                }
            }
        };
        handle.send(Input::KernelEvent(renew)).await;
    }
    bail!("the XFRM event socket closed")
}

/// The pair's SAs that [`Esp::retire`] deletes: outbound ones other than `newest_out`
/// (when given); inbound ones other than `newest_in` (when given) beyond the
/// [`INBOUND_KEPT`] newest, except the newest one that has carried packets.
fn retired(
    states: &[vip_xfrm::SaState],
    local_vip: Ipv4Addr,
    peer_vip: Ipv4Addr,
    newest_in: Option<u32>,
    newest_out: Option<u32>,
) -> Vec<&vip_xfrm::SaState> {
    let mut older_in: Vec<_> = states
        .iter()
        .filter(|s| {
            newest_in.is_some_and(|new| s.spi != new)
                && (s.source, s.destination) == (peer_vip, local_vip)
        })
        .collect();
    older_in.sort_by_key(|s| std::cmp::Reverse(s.added));
    let in_use = older_in.iter().find(|s| s.packets > 0).map(|s| s.spi);
    let older_out = states.iter().filter(|s| {
        newest_out.is_some_and(|new| s.spi != new)
            && (s.source, s.destination) == (local_vip, peer_vip)
    });
    older_in
        .into_iter()
        .skip(INBOUND_KEPT - 1)
        .filter(|s| Some(s.spi) != in_use)
        .chain(older_out)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use vip_xfrm::SaState;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(240, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(240, 0, 0, 2);

    fn state(inbound: bool, spi: u32, added: u64, packets: u64) -> SaState {
        let (source, destination) = if inbound {
            (PEER, LOCAL)
        } else {
            (LOCAL, PEER)
        };
        SaState {
            source,
            destination,
            spi,
            larval: false,
            aead: None,
            bytes: packets * 100,
            packets,
            added,
            drops: Default::default(),
        }
    }

    fn spis(retired: Vec<&SaState>) -> Vec<u32> {
        let mut spis: Vec<u32> = retired.iter().map(|s| s.spi).collect();
        spis.sort_unstable();
        spis
    }

    #[test]
    fn a_rekey_retires_older_outbound_sas_and_inbound_ones_beyond_the_kept() {
        // Inbound SAs 1..=10 (10 newest), all used in turn; outbound 100 and 101.
        let mut states: Vec<SaState> = (1..=10).map(|i| state(true, i, i.into(), 5)).collect();
        states.push(state(false, 100, 1, 5));
        states.push(state(false, 101, 2, 0));
        states.push(state(true, 7000, 3, 9)); // another pair's
        states.last_mut().unwrap().source = Ipv4Addr::new(240, 0, 0, 3);
        let retired = retired(&states, LOCAL, PEER, Some(10), Some(101));
        assert_eq!(spis(retired), [1, 2, 100]);
        // Without a new outbound SA, no outbound SA goes.
        assert_eq!(
            spis(super::retired(&states, LOCAL, PEER, Some(10), None)),
            [1, 2]
        );
    }

    #[test]
    fn the_inbound_sa_the_peer_still_sends_on_stays_however_many_sessions_failed() {
        // The peer sends on SA 1; sessions 2..=12 lost their confirmations, so the peer
        // never moved onto them.
        let mut states = vec![state(true, 1, 1, 40)];
        states.extend((2..=12).map(|i| state(true, i, i.into(), 0)));
        let retired = spis(retired(&states, LOCAL, PEER, Some(12), None));
        assert!(!retired.contains(&1), "the SA in use stays: {retired:?}");
        assert_eq!(retired, [2, 3, 4]);
    }
}
