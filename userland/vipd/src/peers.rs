//! The daemon's FQDN <-> VIP table: for each partner, the VIP we agreed to call it, the VIP
//! it calls us, its physical address and its key. The kernel holds the VIP -> IP half; this
//! is the half only the daemon knows.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::Ipv4Addr,
    path::Path,
};
use vip_proto::wire::Fqdn;

/// One partner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Peer {
    pub fqdn: Fqdn,
    /// What we call the partner.
    pub peer_vip: Ipv4Addr,
    /// What the partner calls us.
    pub local_vip: Ipv4Addr,
    /// Its physical address, as last learnt.
    pub addr: Ipv4Addr,
}

/// Whether a VIP may be taken for a given name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// In the VIP range and free (or already that name's).
    Free,
    /// Outside the range: acceptable only if reverse DNS gives the name (a static VIP).
    NeedsReverseDns,
    /// Taken by another name, by one of our own VIPs, marked invalid, or not unicast.
    Taken,
}

/// All partners, indexed both ways, and our own VIPs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Peers {
    by_fqdn: HashMap<Fqdn, Peer>,
    #[serde(skip)]
    by_vip: HashMap<Ipv4Addr, Fqdn>,
    /// Our VIPs (the home VIP first in use, then any we had to pick for a partner).
    local_vips: BTreeSet<Ipv4Addr>,
    /// VIPs that could not be re-established after a NAK: not reused until collected.
    invalid: HashSet<Ipv4Addr>,
}

impl Peers {
    /// A table with our home VIP.
    pub fn new(home_vip: Ipv4Addr) -> Self {
        let mut peers = Self::default();
        peers.local_vips.insert(home_vip);
        peers
    }

    /// Reads a table saved by [`Peers::save`]; a missing file gives `None`.
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut peers: Peers = serde_json::from_str(&text)?;
        peers.by_vip = peers
            .by_fqdn
            .values()
            .map(|p| (p.peer_vip, p.fqdn.clone()))
            .collect();
        Ok(Some(peers))
    }

    /// Writes the table atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn get(&self, fqdn: &Fqdn) -> Option<&Peer> {
        self.by_fqdn.get(fqdn)
    }

    pub fn by_vip(&self, vip: Ipv4Addr) -> Option<&Peer> {
        self.by_vip.get(&vip).and_then(|f| self.by_fqdn.get(f))
    }

    pub fn len(&self) -> usize {
        self.by_fqdn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fqdn.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.by_fqdn.values()
    }

    /// Whether `fqdn` may be called `vip` here.
    pub fn claim(&self, vip: Ipv4Addr, fqdn: &Fqdn, range: Ipv4Net) -> Claim {
        if self.local_vips.contains(&vip) || self.invalid.contains(&vip) || !usable(vip) {
            return Claim::Taken;
        }
        match self.by_vip.get(&vip) {
            Some(owner) if owner != fqdn => Claim::Taken,
            _ if range.contains(&vip) => Claim::Free,
            _ => Claim::NeedsReverseDns,
        }
    }

    /// Whether we may call ourselves `vip` toward `fqdn`: not a partner's VIP.
    pub fn may_use_locally(&self, vip: Ipv4Addr, range: Ipv4Net) -> bool {
        usable(vip)
            && range.contains(&vip)
            && !self.by_vip.contains_key(&vip)
            && !self.invalid.contains(&vip)
    }

    /// A VIP from `range` that is nobody's here yet.
    pub fn fresh_vip(&self, range: Ipv4Net) -> Ipv4Addr {
        let size = 1u64 << (32 - range.prefix_len());
        let base = u32::from(range.network());
        loop {
            let offset = rand::random::<u64>() % size;
            let vip = Ipv4Addr::from(base.wrapping_add(offset as u32));
            if usable(vip)
                && !self.local_vips.contains(&vip)
                && self.claim(vip, &fqdn_none(), range) == Claim::Free
            {
                return vip;
            }
        }
    }

    /// Records that `vip` is one of ours.
    pub fn add_local_vip(&mut self, vip: Ipv4Addr) {
        self.local_vips.insert(vip);
    }

    /// Adds or replaces a partner; gives back the previous entry for that name.
    pub fn insert(&mut self, peer: Peer) -> Option<Peer> {
        self.local_vips.insert(peer.local_vip);
        let old = self.by_fqdn.insert(peer.fqdn.clone(), peer.clone());
        if let Some(old) = &old {
            self.by_vip.remove(&old.peer_vip);
        }
        self.by_vip.insert(peer.peer_vip, peer.fqdn);
        old
    }

    /// Forgets a partner (garbage collection); its VIP becomes free.
    pub fn remove(&mut self, fqdn: &Fqdn) -> Option<Peer> {
        let peer = self.by_fqdn.remove(fqdn)?;
        self.by_vip.remove(&peer.peer_vip);
        Some(peer)
    }

    /// Marks `vip` invalid: it stays unusable until collected.
    pub fn invalidate(&mut self, vip: Ipv4Addr) {
        self.invalid.insert(vip);
    }
}

/// The all-zero, all-ones and network-boundary addresses are never handed out.
fn usable(vip: Ipv4Addr) -> bool {
    let last = vip.octets()[3];
    !vip.is_unspecified() && !vip.is_broadcast() && last != 0 && last != 255
}

/// A name no partner can have (names never start with a hyphen), for "taken by anyone?".
fn fqdn_none() -> Fqdn {
    Fqdn::new("none.invalid").expect("a valid name")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Ipv4Net {
        "240.0.0.0/4".parse().unwrap()
    }

    fn peer(name: &str, vip: [u8; 4]) -> Peer {
        Peer {
            fqdn: Fqdn::new(name).unwrap(),
            peer_vip: vip.into(),
            local_vip: [240, 0, 0, 1].into(),
            addr: [192, 0, 2, 10].into(),
        }
    }

    #[test]
    fn claims() {
        let mut t = Peers::new([240, 0, 0, 1].into());
        t.insert(peer("b.vip.test", [240, 0, 0, 2]));
        let b = Fqdn::new("b.vip.test").unwrap();
        let c = Fqdn::new("c.vip.test").unwrap();
        assert_eq!(t.claim([240, 0, 0, 2].into(), &b, net()), Claim::Free);
        assert_eq!(t.claim([240, 0, 0, 2].into(), &c, net()), Claim::Taken);
        assert_eq!(
            t.claim([240, 0, 0, 1].into(), &c, net()),
            Claim::Taken,
            "our own VIP"
        );
        assert_eq!(t.claim([240, 0, 0, 3].into(), &c, net()), Claim::Free);
        assert_eq!(
            t.claim([198, 51, 100, 7].into(), &c, net()),
            Claim::NeedsReverseDns
        );
        assert_eq!(t.claim([0, 0, 0, 0].into(), &c, net()), Claim::Taken);
        t.invalidate([240, 0, 0, 3].into());
        assert_eq!(t.claim([240, 0, 0, 3].into(), &c, net()), Claim::Taken);
        let v = t.fresh_vip(net());
        assert!(net().contains(&v) && t.claim(v, &c, net()) == Claim::Free);
    }

    #[test]
    fn replacing_a_partner_frees_its_old_vip() {
        let mut t = Peers::new([240, 0, 0, 1].into());
        t.insert(peer("b.vip.test", [240, 0, 0, 2]));
        let old = t.insert(peer("b.vip.test", [240, 0, 0, 9])).unwrap();
        assert_eq!(old.peer_vip, Ipv4Addr::from([240, 0, 0, 2]));
        assert!(t.by_vip([240, 0, 0, 2].into()).is_none());
        assert_eq!(
            t.by_vip([240, 0, 0, 9].into()).unwrap().fqdn.as_str(),
            "b.vip.test"
        );
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let mut t = Peers::new([240, 0, 0, 1].into());
        t.insert(peer("b.vip.test", [240, 0, 0, 2]));
        t.save(&path).unwrap();
        let back = Peers::load(&path).unwrap().unwrap();
        assert_eq!(
            back.by_vip([240, 0, 0, 2].into()).unwrap().addr,
            Ipv4Addr::from([192, 0, 2, 10])
        );
    }
}
