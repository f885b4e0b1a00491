//! The VIP control protocol, without I/O.
//!
//! VIP ("Transparent Mobility with Minimal Infrastructure") lets two hosts agree on
//! *virtual IPs*, class-E `240.0.0.0/4` tokens, for each other, and keeps each host's
//! VIP-to-address mappings right as hosts move. This crate is the protocol between the
//! daemons (`vipd`), in the style of `quinn-proto` and boringtun's `noise`: it reads
//! datagrams, DNS answers, kernel events and the time, and says what to send, what to ask
//! DNS, and what to change in the kernel. It owns no socket, timer or file.
//!
//! * [`wire`]: the datagrams and payloads; [`fqdn`]: host names.
//! * [`handshake`]: Noise IK with WireGuard's MACs and cookies; [`session`]: what a
//!   handshake leaves, with [`replay`] protection; [`esp`]: the keys a session gives ESP.
//! * [`identity`]: the host's static key; [`known_peers`]: pinned keys.
//! * [`control`]: the messages of the daemon's local control socket.
//!
//! The protocol is specified in `docs/protocol.md` at the repository root.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod control;
pub mod engine;
pub mod esp;
pub mod fqdn;
mod fsutil;
pub mod handshake;
pub mod identity;
pub mod known_peers;
pub mod replay;
pub mod session;
pub mod wire;

pub use fqdn::Fqdn;
pub use identity::Identity;
pub use known_peers::{KnownPeers, PeerKeyStatus};
pub use replay::ReplayWindow;
pub use wire::WireError;
