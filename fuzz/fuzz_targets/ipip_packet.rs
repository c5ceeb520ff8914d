//! Fuzzes what the userspace IPIP data plane parses from the network: an
//! outer packet taken apart (RFC 2003), and its inner TCP readied for the
//! TUN's offload. Whatever is accepted must be consistent: the inner packet
//! lies inside the outer one, wrapping it again gives the same inner packet
//! back, and readying TCP changes nothing but its checksum field.

#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use tortie_ipip::packet::{TCP_CHECKSUM_OFFSET, decapsulate, encapsulate, offload_tcp};

fuzz_target!(|data: &[u8]| {
    let Ok((src, inner)) = decapsulate(data) else { return };
    let at = inner.as_ptr() as usize - data.as_ptr() as usize;
    assert!(at >= 20 && at + inner.len() <= data.len(), "the inner packet lies inside the outer one");
    let mut again = Vec::new();
    if encapsulate(inner, src, Ipv4Addr::new(192, 0, 2, 1), &mut again).is_ok() {
        assert_eq!(decapsulate(&again), Ok((src, inner)), "wrapping again round-trips");
    }
    let mut readied = inner.to_vec();
    if let Some(h) = offload_tcp(&mut readied) {
        assert!(h.ip_len >= 20 && h.len >= h.ip_len + 20 && h.len <= inner.len());
        let check = h.ip_len + TCP_CHECKSUM_OFFSET;
        for (i, (a, b)) in inner.iter().zip(&readied).enumerate() {
            assert!(a == b || i == check || i == check + 1, "only the checksum field changes");
        }
    }
});
