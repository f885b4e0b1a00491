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
            })
            .collect()
    };
    PairSas {
        outbound: view(local_vip, peer_vip),
        inbound: view(peer_vip, local_vip),
    }
}

/// The text lines for a pair: its current outbound SA and newest inbound one, and how many
/// older inbound SAs are kept.
pub fn lines(sas: Option<&PairSas>) -> String {
    let Some(sas) = sas else {
        return "  esp: unknown (reading the kernel's SAs needs CAP_NET_ADMIN)".into();
    };
    if sas.outbound.is_empty() && sas.inbound.is_empty() {
        return "  esp: no SA (ESP off, or an idle pair whose keys expired)".into();
    }
    let line = |dir: &str, sa: Option<&SaView>, older: usize| match sa {
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
            if older > 0 {
                line += &format!(" (and {older} older)");
            }
            line
        }
    };
    [
        line(
            "out",
            sas.outbound.first(),
            sas.outbound.len().saturating_sub(1),
        ),
        line(
            "in",
            sas.inbound.first(),
            sas.inbound.len().saturating_sub(1),
        ),
    ]
    .join("\n")
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
        assert!(lines(Some(&PairSas::default())).contains("no SA"));
        assert!(lines(None).contains("CAP_NET_ADMIN"));
    }
}
