//! Fuzzes the wire format: `wire::parse` and the payload decoders must never panic, and
//! whatever a decoder accepts must encode back to the same bytes (a canonical encoding:
//! no two byte strings mean the same message).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vip_proto::wire::{Control, InitiationPayload, ResponsePayload, parse};

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    if let Ok(p) = InitiationPayload::decode(data) {
        assert_eq!(p.encode(), data);
    }
    if let Ok(p) = ResponsePayload::decode(data) {
        assert_eq!(p.encode(), data);
    }
    if let Ok(c) = Control::decode(data) {
        assert_eq!(c.encode(), data);
    }
});
