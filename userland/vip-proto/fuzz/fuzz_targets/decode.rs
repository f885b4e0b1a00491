//! Fuzzes `vip_proto::wire::decode`: it must never panic, and an accepted
//! negotiation must re-encode to a message that decodes to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vip_proto::crypto::MacKey;
use vip_proto::wire::{Decoded, decode};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(Decoded::Negotiation(packet)) => {
            let key = MacKey::from_bytes([0x5a; 32]);
            // Arbitrary input essentially never carries a valid MAC.
            let _ = packet.verify(&key);
            for mac in [None, Some(&key)] {
                let again = decode(&packet.msg.encode(mac));
                match again {
                    Ok(Decoded::Negotiation(p)) => assert_eq!(p.msg, packet.msg),
                    other => panic!("re-encoded negotiation did not decode: {other:?}"),
                }
            }
        }
        Ok(Decoded::Control(sealed)) => {
            let _ = sealed.open(&vip_proto::crypto::RecvKey::from_bytes([0x5a; 32]));
        }
        Err(_) => {}
    }
});
