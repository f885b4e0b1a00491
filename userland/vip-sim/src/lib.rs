//! Test peers for the VIP control protocol: hosts that run the real protocol engine
//! (`vip_proto::engine`) without a kernel module or a DNS server, for benchmarks
//! (`vip-sim`, many responders in one process) and attack scenarios (`vip-attack`, a
//! malicious partner, a forger of datagrams, a fuzzer of the control port). Not a daemon:
//! see `vipd` for that.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod peer;
pub mod spoof;
pub mod wirefuzz;
