//! Fuzzes the BFD Control packet decoder (RFC 5880 §6.8.6): any UDP
//! payload either is discarded with a reason or decodes to a packet that
//! encodes to its first 24 octets (Length aside, which we always write as 24).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tortie_bfd::Control;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Control::decode(data) else { return };
    let out = packet.encode();
    assert_eq!(Control::decode(&out), Ok(packet), "re-encoded packet decodes to itself");
    // Everything but Length (octet 3) and the reserved flag bits is carried as received.
    assert_eq!(out[0], data[0]);
    assert_eq!(out[1] & !0x05, data[1] & !0x05);
    assert_eq!(out[2], data[2]);
    assert_eq!(out[4..], data[4..24]);
});
