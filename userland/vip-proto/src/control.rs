//! The daemon's local control socket (`vipctl peers`, `unpin`, `resolve`, `watch`,
//! `reload`): one JSON request per line, one JSON reply per line (`watch`: a stream of
//! them). Specified in `docs/protocol.md`, "Control socket"; these are its messages,
//! shared by `vipd` and `vipctl`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::Fqdn;

/// The longest request line taken (a name is at most 253 bytes).
pub const MAX_REQUEST: usize = 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Every partner, as `wg show` shows peers. (A struct variant with no fields, so that
    /// unknown fields are refused here too.)
    Peers {},
    /// Forget the key pinned for `name`: the next first contact takes the key DNS
    /// publishes (after a reinstall of that host, say).
    Unpin {
        /// The partner's name.
        name: Fqdn,
    },
    /// `name`'s address as a program sees it (its VIP, negotiated if need be), or with
    /// `physical` where it really is now (the paper's `p_gethostbyname`, section 4.3).
    Resolve {
        /// The name to resolve.
        name: Fqdn,
        /// Where it is, not its VIP.
        #[serde(default)]
        physical: bool,
    },
    /// A stream of the changes vipd makes to the kernel's mappings, as it makes them (the
    /// paper's `callOnChange`, section 4.3, for programs that do not speak netlink):
    /// [`Reply::Watching`], then one [`Reply::Change`] per change until the client leaves.
    Watch {},
    /// Read the configuration file and the known-peers file again (also SIGHUP): the
    /// pinned keys are replaced by the file's, the settings a running daemon can change
    /// take effect, and the others are named as needing a restart.
    Reload {},
}

/// What happened to a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A new partner's mapping (or one the kernel lacked, installed again).
    Added,
    /// The partner moved: its mapping points at `address` now.
    Moved,
    /// Section 3.1: the VIP could not be kept; its packets are dropped until collected.
    Invalidated,
    /// Collected, or the pair ended: the mapping is gone.
    Removed,
}

/// How a partner's key is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Vouched for by DNSSEC, validated up to a configured trust anchor (and pinned).
    Dnssec,
    /// Pinned on first contact (trust on first use, as SSH's `known_hosts`).
    Pinned,
    /// Nothing vouches for it: not pinned (unpinned since), so the next first contact
    /// takes the key DNS publishes.
    New,
}

/// One partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its name.
    pub name: Fqdn,
    /// Its VIP, as our programs call it.
    pub peer_vip: Ipv4Addr,
    /// Our VIP toward it.
    pub local_vip: Ipv4Addr,
    /// Where it is now (where our mapping points).
    pub address: Ipv4Addr,
    /// Its key record's text (`v=vip2 k=x25519 p=...`).
    pub key: String,
    /// How its key is trusted.
    pub trust: Trust,
    /// Seconds since the current session's handshake, if there is a usable session.
    pub session_age_secs: Option<u64>,
    /// A handshake with it is under way.
    pub negotiating: bool,
    /// A hint to it awaits its ack.
    pub hint_pending: bool,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Reply {
    /// The partners.
    Peers {
        /// One per partner.
        peers: Vec<Peer>,
    },
    /// Done: `name` has no pinned key now.
    Unpinned {
        /// The name.
        name: Fqdn,
        /// Whether a key was pinned before.
        was_pinned: bool,
    },
    /// `name`'s addresses.
    Resolved {
        /// The name.
        name: Fqdn,
        /// Its VIP, or its physical addresses (none: no such name).
        addresses: Vec<Ipv4Addr>,
    },
    /// The files were read again.
    Reloaded {
        /// What changed in the pinned keys.
        pins: crate::engine::PinsReloaded,
        /// Settings that differ in the file but keep their running values until vipd
        /// restarts.
        need_restart: Vec<String>,
    },
    /// The stream of changes begins.
    Watching {},
    /// A change the kernel has made.
    Change {
        /// What happened.
        change: ChangeKind,
        /// The partner's name (none for an invalid VIP collected: that one's is gone).
        name: Option<Fqdn>,
        /// The peer's VIP.
        peer_vip: Ipv4Addr,
        /// Our VIP toward it.
        local_vip: Ipv4Addr,
        /// Where its packets go now (none once removed).
        address: Option<Ipv4Addr>,
    },
    /// The client read too slowly: this many changes were not sent to it.
    Lagged {
        /// How many.
        missed: u64,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_each() {
        let r: Request = serde_json::from_str(r#"{"cmd":"unpin","name":"B.vip.test."}"#).unwrap();
        assert_eq!(
            r,
            Request::Unpin {
                name: Fqdn::new("b.vip.test").unwrap()
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"resolve","name":"b"}"#).unwrap();
        assert!(matches!(
            r,
            Request::Resolve {
                physical: false,
                ..
            }
        ));
        for bad in [
            r#"{"cmd":"peers","extra":1}"#,
            r#"{"cmd":"reboot"}"#,
            r#"{"cmd":"unpin","name":"not a name"}"#,
            r#"{"cmd":"unpin"}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
        let r: Request = serde_json::from_str(r#"{"cmd":"watch"}"#).unwrap();
        assert_eq!(r, Request::Watch {});
        assert_eq!(
            serde_json::to_string(&Reply::Change {
                change: ChangeKind::Moved,
                name: Some(Fqdn::new("b.vip.test").unwrap()),
                peer_vip: [240, 0, 0, 2].into(),
                local_vip: [240, 0, 0, 1].into(),
                address: Some([198, 51, 100, 20].into()),
            })
            .unwrap(),
            r#"{"result":"change","change":"moved","name":"b.vip.test","peer_vip":"240.0.0.2","local_vip":"240.0.0.1","address":"198.51.100.20"}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::Error {
                message: "no".into()
            })
            .unwrap(),
            r#"{"result":"error","message":"no"}"#
        );
    }
}
