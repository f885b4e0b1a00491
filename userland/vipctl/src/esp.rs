//! The ESP part of `vipctl peers`: the kernel's SAs of vipd's reqid between a peer's VIP
//! and ours, read from XFRM directly (vipd keys them, the kernel counts their packets).

use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use vip_xfrm::{SaState, Xfrm};

/// A pair's SAs, newest first.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct PairSas {
    pub outbound: Vec<SaView>,
    pub inbound: Vec<SaView>,
}

/// One SA as shown.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SaView {
    /// As `ip xfrm` prints it.
    pub spi: String,
    pub aead: Option<&'static str>,
    pub packets: u64,
    pub bytes: u64,
    /// Seconds since it was keyed.
    pub age_secs: u64,
    /// Packets it refused, by reason (the kernel counts them on inbound SAs).
    pub dropped: Dropped,
}

/// An SA's refused packets, by reason.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Dropped {
    /// Failed authentication (tampered with, or under another key).
    pub integrity: u64,
    /// Replayed: a sequence number already seen.
    pub replayed: u64,
    /// Older than the replay window.
    pub too_old: u64,
}

impl Dropped {
    fn add(self, other: Dropped) -> Dropped {
        Dropped {
            integrity: self.integrity + other.integrity,
            replayed: self.replayed + other.replayed,
            too_old: self.too_old + other.too_old,
        }
    }

    /// ", dropped 3 failing authentication, 1 replayed", or nothing if none was.
    fn text(self) -> String {
        let reasons: Vec<String> = [
            (self.integrity, "failing authentication"),
            (self.replayed, "replayed"),
            (self.too_old, "older than the replay window"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
        if reasons.is_empty() {
            String::new()
        } else {
            format!(", dropped {}", reasons.join(", "))
        }
    }
}

/// Every SA of vipd's reqid; an error when XFRM cannot be read (it needs
/// `CAP_NET_ADMIN`).
pub async fn states() -> vip_xfrm::Result<Vec<SaState>> {
    let (xfrm, connection) = Xfrm::new()?;
    let connection = tokio::spawn(connection);
    let states = xfrm.states().await;
    connection.abort();
    states
}

/// The SAs between `local_vip` and `peer_vip` among `states`, newest first.
pub fn pair(states: &[SaState], local_vip: Ipv4Addr, peer_vip: Ipv4Addr) -> PairSas {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let view = |from: Ipv4Addr, to: Ipv4Addr| {
        let mut sas: Vec<&SaState> = states
            .iter()
            .filter(|s| (s.source, s.destination) == (from, to) && !s.larval)
            .collect();
        sas.sort_by_key(|s| std::cmp::Reverse(s.added));
        sas.into_iter()
            .map(|s| SaView {
                spi: format!("{:#010x}", s.spi),
                aead: s.aead.map(vip_xfrm::Aead::name),
                packets: s.packets,
                bytes: s.bytes,
                age_secs: now.saturating_sub(s.added),
                dropped: Dropped {
                    integrity: s.drops.integrity.into(),
                    replayed: s.drops.replayed.into(),
                    too_old: s.drops.too_old.into(),
                },
            })
            .collect()
    };
    PairSas {
        outbound: view(local_vip, peer_vip),
        inbound: view(peer_vip, local_vip),
    }
}

/// The text lines for a pair: its current outbound SA and newest inbound one, how many
/// older inbound SAs are kept, and what the inbound ones refused (all of them together).
pub fn lines(sas: Option<&PairSas>) -> String {
    let Some(sas) = sas else {
        return "  esp: unknown (reading the kernel's SAs needs CAP_NET_ADMIN)".into();
    };
    if sas.outbound.is_empty() && sas.inbound.is_empty() {
        return "  esp: no SA (ESP off, or an idle pair whose keys expired)".into();
    }
    let line = |dir: &str, sas: &[SaView]| match sas.first() {
        None => format!("  esp {dir}: none"),
        Some(sa) => {
            let mut line = format!(
                "  esp {dir}: spi {} {}, {} s old, {} packets, {} bytes",
                sa.spi,
                sa.aead.unwrap_or("?"),
                sa.age_secs,
                sa.packets,
                sa.bytes
            );
            if sas.len() > 1 {
                line += &format!(" (and {} older)", sas.len() - 1);
            }
            let dropped = sas
                .iter()
                .fold(Dropped::default(), |sum, sa| sum.add(sa.dropped));
            line + &dropped.text()
        }
    };
    [line("out", &sas.outbound), line("in", &sas.inbound)].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(source: [u8; 4], destination: [u8; 4], spi: u32, added: u64) -> SaState {
        SaState {
            source: source.into(),
            destination: destination.into(),
            spi,
            larval: false,
            aead: Some(vip_xfrm::Aead::AesGcm),
            bytes: 100,
            packets: 1,
            added,
            drops: vip_xfrm::SaDrops::default(),
        }
    }

    #[test]
    fn a_pair_shows_its_own_sas_newest_first() {
        let (me, peer, other) = ([240, 0, 0, 1], [240, 0, 0, 2], [240, 0, 0, 3]);
        let states = [
            state(peer, me, 0x10, 100),
            state(peer, me, 0x11, 200),
            state(me, peer, 0x20, 200),
            state(me, other, 0x30, 200),
        ];
        let sas = pair(&states, me.into(), peer.into());
        let spis = |v: &[SaView]| v.iter().map(|s| s.spi.clone()).collect::<Vec<_>>();
        assert_eq!(spis(&sas.outbound), ["0x00000020"]);
        assert_eq!(spis(&sas.inbound), ["0x00000011", "0x00000010"]);
        let text = lines(Some(&sas));
        assert!(text.contains("esp out: spi 0x00000020 aes-gcm"), "{text}");
        assert!(
            text.contains("esp in: spi 0x00000011") && text.contains("(and 1 older)"),
            "{text}"
        );
        assert!(!text.contains("dropped"), "{text}");
        assert!(lines(Some(&PairSas::default())).contains("no SA"));
        assert!(lines(None).contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn drops_are_shown_by_reason_summed_over_the_inbound_sas() {
        let (me, peer) = ([240, 0, 0, 1], [240, 0, 0, 2]);
        let mut old = state(peer, me, 0x10, 100);
        old.drops = vip_xfrm::SaDrops {
            integrity: 2,
            replayed: 0,
            too_old: 4,
        };
        let mut new = state(peer, me, 0x11, 200);
        new.drops.integrity = 1;
        new.drops.replayed = 3;
        let sas = pair(
            &[old, new, state(me, peer, 0x20, 200)],
            me.into(),
            peer.into(),
        );
        assert_eq!(sas.inbound[0].dropped.replayed, 3);
        assert_eq!(sas.inbound[1].dropped.too_old, 4);
        let text = lines(Some(&sas));
        let inbound = text.lines().find(|l| l.contains("esp in")).unwrap();
        assert!(
            inbound.ends_with(
                ", dropped 3 failing authentication, 3 replayed, 4 older than the replay window"
            ),
            "{inbound}"
        );
        let outbound = text.lines().find(|l| l.contains("esp out")).unwrap();
        assert!(!outbound.contains("dropped"), "{outbound}");
    }
}
