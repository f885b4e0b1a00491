//! Fuzzes the protocol engine with datagrams from anyone: whatever arrives, in whatever
//! order, it must not panic, and its tables must stay within their bounds. The input is
//! cut into datagrams at 0xFF 0xFE 0xFD; each comes from one of a few sources, and the
//! clock moves a little between them.

#![no_main]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vip_proto::engine::{Config, Engine, Output, Partners};
use vip_proto::{Fqdn, Identity};

fuzz_target!(|data: &[u8]| {
    let me = Fqdn::new("b.vip.test").unwrap();
    let home = Ipv4Addr::new(240, 0, 0, 2);
    let cfg = Config {
        max_partners: 16,
        max_pending: 8,
        ..Config::new(me, home)
    };
    let mut engine = Engine::new(
        cfg,
        Identity::from_secret_bytes([2; 32]),
        Partners::new(home),
        HashMap::new(),
        1,
        Ipv4Addr::new(192, 0, 2, 2),
    );
    let mut now = Instant::now();
    let mut start = 0;
    let mut n = 0u8;
    for i in 0..=data.len() {
        let at_end = i == data.len();
        if !at_end && !(data[i..].starts_with(&[0xff, 0xfe, 0xfd])) {
            continue;
        }
        let from = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, n % 4), 4877);
        engine.handle_datagram(now, from, &data[start..i]);
        now += Duration::from_millis(u64::from(n % 7) * 100);
        engine.tick(now);
        while let Some(out) = engine.poll_output() {
            if let Output::Query { id, .. } = out {
                engine.dns_answer(now, id, vip_proto::engine::DnsAnswer::Failed);
            }
        }
        assert!(engine.partners().len() <= 16);
        n = n.wrapping_add(1);
        start = i + 3;
        if start > data.len() {
            break;
        }
    }
});
