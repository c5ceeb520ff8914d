//! Fuzzes what the userspace IPIP data plane parses from the network: an
//! outer packet taken apart (RFC 2003), and its inner packet checked for
//! the form the kernel's GRO leaves merged TCP in. Whatever is accepted
//! must be consistent: the inner packet lies inside the outer one,
//! wrapping it again gives the same inner packet back, and merged TCP's
//! headers lie inside it.

#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use tortie_ipip::packet::{decapsulate, encapsulate, merged_tcp};

fuzz_target!(|data: &[u8]| {
    let Ok((src, inner)) = decapsulate(data) else { return };
    let at = inner.as_ptr() as usize - data.as_ptr() as usize;
    assert!(at >= 20 && at + inner.len() <= data.len(), "the inner packet lies inside the outer one");
    let mut again = Vec::new();
    if encapsulate(inner, src, Ipv4Addr::new(192, 0, 2, 1), &mut again).is_ok() {
        assert_eq!(decapsulate(&again), Ok((src, inner)), "wrapping again round-trips");
    }
    if let Some(h) = merged_tcp(inner) {
        assert!(h.ip_len >= 20 && h.len >= h.ip_len + 20 && h.len <= inner.len());
    }
});
