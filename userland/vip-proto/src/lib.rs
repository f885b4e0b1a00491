//! The VIP control protocol: wire format, key handling, replay protection
//! and peer key pinning.
//!
//! VIP ("Transparent Mobility with Minimal Infrastructure") lets two hosts
//! agree on *virtual IPs* — class-E `240.0.0.0/4` tokens — for each other.
//! The daemons (`vipd`) negotiate those VIPs over UDP, exchange long-term
//! X25519 public keys on first contact (trust on first use, like SSH) and
//! afterwards authenticate their control traffic (invalidation hints, acks,
//! NAKs) with a pairwise key derived from those public keys.
//!
//! This crate is deliberately free of I/O apart from the key and known-peers
//! files: it parses and builds datagrams and does the cryptography; the
//! daemon owns sockets, timers and state machines.
//!
//! * [`wire`] — message formats, [`wire::decode`], sealing and MACs.
//! * [`crypto`] — the host [`crypto::Identity`] and [`crypto::derive_pair_keys`].
//! * [`replay`] — the sliding [`replay::ReplayWindow`] and the counter scheme.
//! * [`known_peers`] — the pinned-key file, `known_hosts` style.
//!
//! The protocol is specified in `docs/protocol.md` at the repository root.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod crypto;
mod fsutil;
pub mod known_peers;
pub mod replay;
pub mod wire;

pub use crypto::{Identity, MacKey, PairKeys, RecvKey, SendKey, derive_pair_keys};
pub use known_peers::{KnownPeers, PeerKeyStatus};
pub use replay::ReplayWindow;
pub use wire::{Control, Decoded, Fqdn, Negotiation, WireError};
