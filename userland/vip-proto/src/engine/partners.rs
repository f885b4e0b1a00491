//! The FQDN <-> VIP table: for each partner, the VIP we agreed to call it, the VIP it calls
//! us, where it is and its key. The kernel holds the VIP -> IP half; this is the half only
//! the daemon knows. Serialisable: the daemon saves it so that a restart (not a reboot)
//! finds its partners again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::fqdn::Fqdn;

/// One partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    /// Its name.
    pub fqdn: Fqdn,
    /// What we call it.
    pub peer_vip: Ipv4Addr,
    /// What it calls us.
    pub local_vip: Ipv4Addr,
    /// Where it is: the source address of its last authenticated packet.
    pub addr: Ipv4Addr,
    /// Its static public key.
    #[serde(with = "key_base64")]
    pub key: [u8; 32],
    /// The greatest initiation counter accepted from it: older initiations are replays.
    #[serde(default)]
    pub last_counter: u64,
    /// DNSSEC vouched for its key (rather than trust on first use).
    #[serde(default)]
    pub vouched: bool,
}

mod key_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD.decode(text).map_err(D::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom("a key of 32 bytes"))
    }
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

/// All partners, indexed both ways, our own VIPs, and the VIPs kept out of use.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Partners {
    by_fqdn: HashMap<Fqdn, Partner>,
    #[serde(skip)]
    by_vip: HashMap<Ipv4Addr, Fqdn>,
    /// Our VIPs (the home VIP, then any we had to pick for a partner).
    local_vips: BTreeSet<Ipv4Addr>,
    /// VIPs that could not be re-established after a NAK: not reused until collected.
    invalid: HashSet<Ipv4Addr>,
    /// Invalid VIPs whose kernel entry was collected, oldest first: still never handed out,
    /// because the kernel drops an invalid VIP's packets without counting them, so "idle"
    /// cannot prove that no connection still uses it. Bounded; kept across restarts.
    #[serde(default)]
    retired: VecDeque<Ipv4Addr>,
    #[serde(skip)]
    retired_index: HashSet<Ipv4Addr>,
    /// Keys each name had before a rotation DNSSEC vouched for: never taken again for it,
    /// whatever a (replayed, still signed) old key record says. Bounded, kept across
    /// restarts.
    #[serde(default)]
    retired_keys: BTreeMap<Fqdn, Vec<RetiredKey>>,
}

/// A key a rotation replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RetiredKey(#[serde(with = "key_base64")] [u8; 32]);

/// Replaced keys remembered per name, and names with replaced keys, at most.
const RETIRED_KEYS_PER_NAME: usize = 8;
const NAMES_WITH_RETIRED_KEYS: usize = 4096;

/// Retired VIPs remembered at most (of 2^28 in the default range: a reuse after that is
/// as unlikely as any collision of random VIPs).
const RETIRED_KEPT: usize = 65536;

impl Partners {
    /// Remembers that `key` was `fqdn`'s key until a rotation replaced it.
    pub fn retire_key(&mut self, fqdn: &Fqdn, key: [u8; 32]) {
        if !self.retired_keys.contains_key(fqdn)
            && self.retired_keys.len() >= NAMES_WITH_RETIRED_KEYS
        {
            self.retired_keys.pop_first();
        }
        let keys = self.retired_keys.entry(fqdn.clone()).or_default();
        if !keys.contains(&RetiredKey(key)) {
            if keys.len() >= RETIRED_KEYS_PER_NAME {
                keys.remove(0);
            }
            keys.push(RetiredKey(key));
        }
    }

    /// Whether a rotation replaced `key` as `fqdn`'s key.
    pub fn key_retired(&self, fqdn: &Fqdn, key: &[u8; 32]) -> bool {
        self.retired_keys
            .get(fqdn)
            .is_some_and(|keys| keys.contains(&RetiredKey(*key)))
    }

    /// A table with our home VIP.
    pub fn new(home_vip: Ipv4Addr) -> Self {
        let mut t = Self::default();
        t.local_vips.insert(home_vip);
        t
    }

    /// Rebuilds the indices after deserialising.
    pub fn reindex(&mut self) {
        self.by_vip = self
            .by_fqdn
            .values()
            .map(|p| (p.peer_vip, p.fqdn.clone()))
            .collect();
        self.retired_index = self.retired.iter().copied().collect();
    }

    /// Marked invalid, or retired after that: never handed out.
    fn kept_out(&self, vip: Ipv4Addr) -> bool {
        self.invalid.contains(&vip) || self.retired_index.contains(&vip)
    }

    /// The partner called `fqdn`.
    pub fn get(&self, fqdn: &Fqdn) -> Option<&Partner> {
        self.by_fqdn.get(fqdn)
    }

    pub(crate) fn get_mut(&mut self, fqdn: &Fqdn) -> Option<&mut Partner> {
        self.by_fqdn.get_mut(fqdn)
    }

    /// The partner we call `vip`.
    pub fn by_vip(&self, vip: Ipv4Addr) -> Option<&Partner> {
        self.by_vip.get(&vip).and_then(|f| self.by_fqdn.get(f))
    }

    /// How many partners, and invalid VIPs (which hold a kernel entry each).
    pub fn len(&self) -> usize {
        self.by_fqdn.len() + self.invalid.len()
    }

    /// Whether there is no partner.
    pub fn is_empty(&self) -> bool {
        self.by_fqdn.is_empty()
    }

    /// Every partner.
    pub fn iter(&self) -> impl Iterator<Item = &Partner> {
        self.by_fqdn.values()
    }

    /// Whether `fqdn` may be called `vip` here.
    pub fn claim(&self, vip: Ipv4Addr, fqdn: &Fqdn, range: Ipv4Net) -> Claim {
        if self.local_vips.contains(&vip) || self.kept_out(vip) || !usable(vip) {
            return Claim::Taken;
        }
        match self.by_vip.get(&vip) {
            Some(owner) if owner != fqdn => Claim::Taken,
            _ if range.contains(&vip) => Claim::Free,
            _ => Claim::NeedsReverseDns,
        }
    }

    /// Whether we may call ourselves `vip`: in range and not a partner's VIP.
    pub fn may_use_locally(&self, vip: Ipv4Addr, range: Ipv4Net) -> bool {
        usable(vip)
            && range.contains(&vip)
            && !self.by_vip.contains_key(&vip)
            && !self.kept_out(vip)
    }

    /// A VIP from `range` that is nobody's here yet; `random` draws offsets.
    pub fn fresh_vip(&self, range: Ipv4Net, random: &mut dyn FnMut() -> u64) -> Ipv4Addr {
        let size = 1u64 << (32 - range.prefix_len());
        let base = u32::from(range.network());
        loop {
            let vip = Ipv4Addr::from(base.wrapping_add((random() % size) as u32));
            if usable(vip)
                && !self.local_vips.contains(&vip)
                && !self.kept_out(vip)
                && !self.by_vip.contains_key(&vip)
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
    pub fn insert(&mut self, partner: Partner) -> Option<Partner> {
        self.local_vips.insert(partner.local_vip);
        let old = self.by_fqdn.insert(partner.fqdn.clone(), partner.clone());
        if let Some(old) = &old {
            self.by_vip.remove(&old.peer_vip);
        }
        self.by_vip.insert(partner.peer_vip, partner.fqdn);
        old
    }

    /// Forgets a partner (garbage collection); its VIP becomes free.
    pub fn remove(&mut self, fqdn: &Fqdn) -> Option<Partner> {
        let partner = self.by_fqdn.remove(fqdn)?;
        self.by_vip.remove(&partner.peer_vip);
        Some(partner)
    }

    /// Marks `vip` invalid: it stays unusable until collected.
    pub fn invalidate(&mut self, vip: Ipv4Addr) {
        self.invalid.insert(vip);
    }

    /// An invalid VIP's kernel entry was collected: it no longer counts as a partner, and
    /// is still never handed out (retired, up to [`RETIRED_KEPT`] of them).
    pub fn retire_invalid(&mut self, vip: Ipv4Addr) {
        if !self.invalid.remove(&vip) || !self.retired_index.insert(vip) {
            return;
        }
        self.retired.push_back(vip);
        if self.retired.len() > RETIRED_KEPT
            && let Some(oldest) = self.retired.pop_front()
        {
            self.retired_index.remove(&oldest);
        }
    }

    /// Whether `vip` was retired (collected after being invalid).
    pub fn is_retired(&self, vip: Ipv4Addr) -> bool {
        self.retired_index.contains(&vip)
    }

    /// Whether `vip` is marked invalid.
    pub fn is_invalid(&self, vip: Ipv4Addr) -> bool {
        self.invalid.contains(&vip)
    }
}

/// The all-zero, all-ones and network-boundary addresses are never handed out.
fn usable(vip: Ipv4Addr) -> bool {
    let last = vip.octets()[3];
    !vip.is_unspecified() && !vip.is_broadcast() && last != 0 && last != 255
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Ipv4Net {
        "240.0.0.0/4".parse().unwrap()
    }

    fn partner(name: &str, vip: [u8; 4]) -> Partner {
        Partner {
            fqdn: Fqdn::new(name).unwrap(),
            peer_vip: vip.into(),
            local_vip: [240, 0, 0, 1].into(),
            addr: [192, 0, 2, 10].into(),
            key: [3; 32],
            last_counter: 0,
            vouched: false,
        }
    }

    #[test]
    fn claims() {
        let mut t = Partners::new([240, 0, 0, 1].into());
        t.insert(partner("b.vip.test", [240, 0, 0, 2]));
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
        let mut n = 0u64;
        let v = t.fresh_vip(net(), &mut || {
            n += 1;
            n
        });
        assert!(net().contains(&v) && t.claim(v, &c, net()) == Claim::Free);
    }

    #[test]
    fn retired_vips_stay_out_of_use_across_a_save_and_are_bounded() {
        let mut t = Partners::new([240, 0, 0, 1].into());
        let c = Fqdn::new("c.vip.test").unwrap();
        let vip = |i: u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(241, 0, 0, 1)) + i);
        for i in 0..=RETIRED_KEPT as u32 {
            t.invalidate(vip(i));
            t.retire_invalid(vip(i));
        }
        assert_eq!(t.len(), 0, "retired VIPs are no partners");
        let mut saved: Partners =
            serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        saved.reindex();
        assert_eq!(
            saved.claim(vip(1), &c, net()),
            Claim::Taken,
            "kept out after a restart"
        );
        assert!(
            !saved.is_retired(vip(0)),
            "the oldest went beyond the bound"
        );
        assert_eq!(saved.claim(vip(0), &c, net()), Claim::Free);
        // Only an invalid VIP is retired.
        saved.retire_invalid([240, 9, 9, 9].into());
        assert!(!saved.is_retired([240, 9, 9, 9].into()));
    }

    #[test]
    fn replacing_a_partner_frees_its_old_vip_and_saves() {
        let mut t = Partners::new([240, 0, 0, 1].into());
        t.insert(partner("b.vip.test", [240, 0, 0, 2]));
        let old = t.insert(partner("b.vip.test", [240, 0, 0, 9])).unwrap();
        assert_eq!(old.peer_vip, Ipv4Addr::from([240, 0, 0, 2]));
        assert!(t.by_vip([240, 0, 0, 2].into()).is_none());
        let json = serde_json::to_string(&t).unwrap();
        let mut back: Partners = serde_json::from_str(&json).unwrap();
        back.reindex();
        assert_eq!(back.by_vip([240, 0, 0, 9].into()).unwrap().key, [3; 32]);
    }
}
