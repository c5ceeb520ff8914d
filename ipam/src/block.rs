//! Pure operations on one IPAM block record: hand out an address, give
//! addresses back, and find the next unclaimed block of a pool. No I/O;
//! the caller writes the result with compare-and-swap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use tortie_store::ipam::{AllocationAttribute, IpamBlock};

/// The address at `ordinal` in `cidr`.
pub fn address_at(cidr: IpNet, ordinal: usize) -> IpAddr {
    match cidr {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).wrapping_add(ordinal as u32))),
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(ordinal as u128))),
    }
}

/// The ordinal of `ip` in `cidr`, if it is inside.
pub fn ordinal_of(cidr: IpNet, ip: IpAddr) -> Option<usize> {
    if !cidr.contains(&ip) {
        return None;
    }
    match (cidr, ip) {
        (IpNet::V4(n), IpAddr::V4(a)) => Some((u32::from(a) - u32::from(n.network())) as usize),
        (IpNet::V6(n), IpAddr::V6(a)) => Some((u128::from(a) - u128::from(n.network())) as usize),
        _ => None,
    }
}

/// Takes the next free address for `attr`; `None` when the block is full
/// or being released.
pub fn allocate(block: &mut IpamBlock, attr: AllocationAttribute) -> Option<IpAddr> {
    if block.deleted || block.unallocated.is_empty() {
        return None;
    }
    let ordinal = block.unallocated.remove(0);
    let index = match block.attributes.iter().position(|a| *a == attr) {
        Some(i) => i,
        None => {
            block.attributes.push(attr);
            block.attributes.len() - 1
        }
    };
    *block.allocations.get_mut(ordinal)? = Some(index);
    Some(address_at(block.cidr, ordinal))
}

/// Frees every address whose attribute matches `owns`; returns them.
pub fn release_where(block: &mut IpamBlock, owns: impl Fn(&AllocationAttribute) -> bool) -> Vec<IpAddr> {
    let mut freed = Vec::new();
    for (ordinal, slot) in block.allocations.iter_mut().enumerate() {
        if slot.and_then(|i| block.attributes.get(i)).is_some_and(&owns) {
            *slot = None;
            block.unallocated.push(ordinal);
            freed.push(address_at(block.cidr, ordinal));
        }
    }
    compact_attributes(block);
    freed
}

/// Frees one address; returns the attribute it had, if it was allocated.
pub fn release_ip(block: &mut IpamBlock, ip: IpAddr) -> Option<AllocationAttribute> {
    let ordinal = ordinal_of(block.cidr, ip)?;
    let index = block.allocations.get_mut(ordinal)?.take()?;
    block.unallocated.push(ordinal);
    let attr = block.attributes.get(index).cloned();
    compact_attributes(block);
    attr
}

/// Drops attributes no allocation refers to, renumbering the rest.
fn compact_attributes(block: &mut IpamBlock) {
    let mut used = vec![false; block.attributes.len()];
    for i in block.allocations.iter().flatten() {
        if let Some(u) = used.get_mut(*i) {
            *u = true;
        }
    }
    let mut renumber = vec![0; used.len()];
    let mut next = 0;
    for (i, u) in used.iter().enumerate() {
        renumber[i] = next;
        next += usize::from(*u);
    }
    for slot in block.allocations.iter_mut().flatten() {
        *slot = renumber.get(*slot).copied().unwrap_or(0);
    }
    let mut i = 0;
    block.attributes.retain(|_| {
        i += 1;
        used[i - 1]
    });
}

/// Allocated addresses with their attributes.
pub fn allocated(block: &IpamBlock) -> impl Iterator<Item = (IpAddr, &AllocationAttribute)> {
    block.allocations.iter().enumerate().filter_map(|(ordinal, slot)| {
        let attr = block.attributes.get((*slot)?)?;
        Some((address_at(block.cidr, ordinal), attr))
    })
}

/// The first block of `block_size` in `pool` that is not in `taken`.
pub fn next_free_block(pool: IpNet, block_size: u8, taken: &[IpNet]) -> Option<IpNet> {
    pool.subnets(block_size).ok()?.find(|b| !taken.contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(handle: &str) -> AllocationAttribute {
        AllocationAttribute { handle_id: Some(handle.into()), ..AllocationAttribute::default() }
    }

    #[test]
    fn allocates_in_order_and_releases_by_handle_and_by_address() {
        let mut b = IpamBlock::new("198.18.0.0/30".parse().unwrap(), "n1");
        let ips: Vec<IpAddr> = ["a", "b", "a", "c"].iter().map(|h| allocate(&mut b, attr(h)).unwrap()).collect();
        assert_eq!(ips, ["198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3"].map(|s| s.parse::<IpAddr>().unwrap()));
        assert_eq!(allocate(&mut b, attr("d")), None, "full");
        assert_eq!(b.attributes.len(), 3, "one attribute per owner");
        let freed = release_where(&mut b, |a| a.handle_id.as_deref() == Some("a"));
        assert_eq!(freed, ["198.18.0.0", "198.18.0.2"].map(|s| s.parse::<IpAddr>().unwrap()));
        assert_eq!(b.attributes.len(), 2);
        let left: Vec<(IpAddr, Option<&str>)> = allocated(&b).map(|(ip, a)| (ip, a.handle_id.as_deref())).collect();
        assert_eq!(left, [("198.18.0.1".parse().unwrap(), Some("b")), ("198.18.0.3".parse().unwrap(), Some("c"))]);
        assert_eq!(release_ip(&mut b, "198.18.0.3".parse().unwrap()), Some(attr("c")));
        assert_eq!(release_ip(&mut b, "198.18.0.3".parse().unwrap()), None, "already free");
        assert_eq!(release_ip(&mut b, "198.18.9.9".parse().unwrap()), None, "outside");
        assert_eq!(allocated(&b).count(), 1);
        assert_eq!(b.unallocated.len(), 3);
    }

    #[test]
    fn next_free_block_skips_taken_ones() {
        let pool: IpNet = "198.18.0.0/24".parse().unwrap();
        let taken = ["198.18.0.0/26".parse().unwrap(), "198.18.0.128/26".parse().unwrap()];
        assert_eq!(next_free_block(pool, 26, &taken), Some("198.18.0.64/26".parse().unwrap()));
        let all: Vec<IpNet> = pool.subnets(26).unwrap().collect();
        assert_eq!(next_free_block(pool, 26, &all), None);
    }
}
