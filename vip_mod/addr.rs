// SPDX-License-Identifier: GPL-2.0

//! IPv4 addresses as the module keeps them: in network byte order, as on the wire.

use core::fmt;

/// An IPv4 address, stored in network byte order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4Addr(u32);

impl Ipv4Addr {
    pub(crate) const UNSPECIFIED: Self = Self(0);

    /// From a value in network byte order, as it sits in a header or a `__be32`.
    pub(crate) const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The value in network byte order.
    pub(crate) const fn to_raw(self) -> u32 {
        self.0
    }

    pub(crate) const fn octets(self) -> [u8; 4] {
        self.0.to_ne_bytes()
    }

    /// A virtual IP: class E (240.0.0.0/4), but not the limited broadcast address.
    pub(crate) const fn is_vip(self) -> bool {
        self.octets()[0] >= 240 && self.0 != u32::MAX
    }

    /// An address a peer can be reached at: unicast, not loopback, not class E.
    pub(crate) const fn is_physical_unicast(self) -> bool {
        let first = self.octets()[0];
        self.0 != 0 && first != 127 && first < 224
    }
}

impl fmt::Display for Ipv4Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.octets();
        write!(f, "{a}.{b}.{c}.{d}")
    }
}
