//! A path as the Loc-RIB stores it, in 12 octets: the attribute set's
//! address packed beside the peer's index, the origination, two flags and
//! the room an IPv4 table keeps a prefix's key in. The slots of the IPv4
//! tables are these paths, and slots are most of a full table's memory
//! and of what a growing table moves (a slot with the `Arc` in it took 16
//! octets, its alignment 8).
//!
//! The attribute set is held as its `Arc` is (one strong count per stored
//! path), as a raw address of 45 significant bits: the data of an `Arc` is
//! aligned to at least 8 octets (its counts are `usize`s), and user-space
//! addresses on Linux stay below 2^48 (x86-64 and AArch64 hand out higher
//! ones only to a process that asks for them with an address hint, which
//! this one never does: `Documentation/arch/x86/x86_64/5level-paging.rst`).

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use super::decision::Origination;
use super::v4_index::{Keyed, SubKey};
use crate::packet::PathAttrs;

/// How many peers the Loc-RIB can tell apart (25 bits of a stored path).
pub(super) const MAX_PEERS: u32 = 1 << 25;

// `meta`: bits 0–1 the origination plus one (never all zero, so an empty
// IPv4 slot, `Option<Stored>`, takes no more room), bit 2 reachable, bit 3
// more paths, bits 4–25 the key, bits 26–31 address bits 32–37.
const ORIGINATION: u32 = 0b11;
const REACHABLE: u32 = 1 << 2;
const MANY: u32 = 1 << 3;
const KEY_SHIFT: u32 = 4;
const KEY_MASK: u32 = 0x3f_ffff << KEY_SHIFT;
/// The room a path's own value leaves to its slot (`replace_path` keeps it).
const ROOM: u32 = MANY | KEY_MASK;
const META_ADDR_SHIFT: u32 = 26;
// `hi`: bits 0–6 address bits 38–44, bits 7–31 the peer.
const HI_ADDR_BITS: u32 = 7;
const PEER_SHIFT: u32 = HI_ADDR_BITS;
/// What two equal paths have alike in `meta` (the rest is room or address).
const VALUE: u32 = ORIGINATION | REACHABLE;

// The fields do not overlap and the address's 45 bits are all kept.
const _: () = {
    assert!(ORIGINATION & REACHABLE == 0 && (ORIGINATION | REACHABLE) & MANY == 0);
    assert!((VALUE | MANY) & KEY_MASK == 0 && KEY_SHIFT + 22 == META_ADDR_SHIFT);
    assert!(32 + (32 - META_ADDR_SHIFT) + HI_ADDR_BITS == 45 && MAX_PEERS == 1 << (32 - PEER_SHIFT));
    // A 64-bit target: addresses of 48 bits.
    assert!(usize::BITS == 64);
};

/// A path as stored: 12 octets, aligned to 4 (`Option<Stored>` too). It
/// owns one strong count of its attribute set's `Arc`.
pub(super) struct Stored {
    meta: NonZeroU32,
    /// The attribute set's address over 8, bits 0–31.
    lo: u32,
    hi: u32,
    /// (As `Arc<PathAttrs>`, it is `Send` and `Sync` as `PathAttrs` is.)
    owns: PhantomData<Arc<PathAttrs>>,
}

/// The attribute set's address over 8, in 45 bits.
fn packed_address(attrs: Arc<PathAttrs>) -> u64 {
    let address = Arc::as_ptr(&attrs).addr() as u64;
    // (An `Arc`'s data follows its two `usize` counts: 8-aligned.)
    assert!(
        address < 1 << 48 && address.is_multiple_of(8),
        "an attribute set at {address:#x}: Linux hands out addresses below 2^48, and an Arc's data is 8-aligned"
    );
    (Arc::into_raw(attrs).expose_provenance() as u64) >> 3
}

/// `meta`, `lo` and `hi` of a path whose set's address over 8 is `q`.
fn pack(q: u64, peer: u32, origination: u32, reachable: bool) -> (u32, u32, u32) {
    let meta = origination | if reachable { REACHABLE } else { 0 } | (((q >> 32) as u32 & 0x3f) << META_ADDR_SHIFT);
    (meta, q as u32, ((q >> 38) as u32 & ((1 << HI_ADDR_BITS) - 1)) | (peer << PEER_SHIFT))
}

/// The address over 8 that `pack` packed.
fn unpack(meta: u32, lo: u32, hi: u32) -> u64 {
    let (meta_bits, hi_bits) = (u64::from(meta >> META_ADDR_SHIFT), u64::from(hi & ((1 << HI_ADDR_BITS) - 1)));
    u64::from(lo) | (meta_bits << 32) | (hi_bits << 38)
}

fn origination_bits(origination: Origination) -> u32 {
    match origination {
        Origination::Local => 1,
        Origination::Ebgp => 2,
        Origination::Ibgp => 3,
    }
}

impl Stored {
    /// `peer` is below `MAX_PEERS` (the Loc-RIB's peer table sees to it).
    pub(super) fn new(attrs: Arc<PathAttrs>, peer: u32, origination: Origination, reachable: bool) -> Stored {
        assert!(peer < MAX_PEERS, "peer index {peer}: the Loc-RIB gives out fewer");
        let (meta, lo, hi) = pack(packed_address(attrs), peer, origination_bits(origination), reachable);
        // The origination's bits are never zero.
        Stored { meta: NonZeroU32::new(meta).expect("an origination"), lo, hi, owns: PhantomData }
    }

    fn address(&self) -> *const PathAttrs {
        std::ptr::with_exposed_provenance((unpack(self.meta.get(), self.lo, self.hi) << 3) as usize)
    }

    /// The attribute set.
    pub(super) fn attrs(&self) -> AttrsRef<'_> {
        // SAFETY: the address came from `Arc::into_raw` in `new` (or a
        // clone of such a path), and this path holds a strong count on it
        // until dropped, so it points at a live `PathAttrs` for `'_`.
        AttrsRef { at: unsafe { NonNull::new_unchecked(self.address().cast_mut()) }, life: PhantomData }
    }

    /// The peer's index in the Loc-RIB's peer table.
    pub(super) fn peer(&self) -> u32 {
        self.hi >> PEER_SHIFT
    }

    pub(super) fn origination(&self) -> Origination {
        match self.meta.get() & ORIGINATION {
            1 => Origination::Local,
            2 => Origination::Ebgp,
            _ => Origination::Ibgp,
        }
    }

    pub(super) fn reachable(&self) -> bool {
        self.meta.get() & REACHABLE != 0
    }

    /// Sets `meta` to `meta`, which keeps the origination's bits.
    fn set_meta(&mut self, meta: u32) {
        debug_assert_eq!(meta & ORIGINATION, self.meta.get() & ORIGINATION);
        self.meta = NonZeroU32::new(meta).expect("the origination's bits");
    }

    /// (An IPv4 slot's:) whether the prefix's paths are in `V4Paths::many`.
    pub(super) fn many(&self) -> bool {
        self.meta.get() & MANY != 0
    }

    pub(super) fn set_many(&mut self, many: bool) {
        let meta = self.meta.get();
        self.set_meta(if many { meta | MANY } else { meta & !MANY });
    }

    /// Becomes `path`, keeping its own room (an IPv4 slot's key and flag).
    pub(super) fn replace_path(&mut self, path: Stored) {
        let room = self.meta.get() & ROOM;
        *self = path;
        self.set_meta((self.meta.get() & !ROOM) | room);
    }
}

impl Clone for Stored {
    fn clone(&self) -> Stored {
        // SAFETY: this path holds a strong count on the `Arc` at this
        // address (see `attrs`); the clone holds one more, dropped with it.
        unsafe { Arc::increment_strong_count(self.address()) };
        Stored { meta: self.meta, lo: self.lo, hi: self.hi, owns: PhantomData }
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        // SAFETY: gives back the strong count this path holds (`new`, `clone`).
        drop(unsafe { Arc::from_raw(self.address()) });
    }
}

impl PartialEq for Stored {
    /// Equal paths are equal whatever their room holds.
    fn eq(&self, other: &Stored) -> bool {
        (self.meta.get() & VALUE) == (other.meta.get() & VALUE)
            && self.peer() == other.peer()
            && (self.address() == other.address() || *self.attrs() == *other.attrs())
    }
}

impl Eq for Stored {}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("attrs", &*self.attrs())
            .field("peer", &self.peer())
            .field("origination", &self.origination())
            .field("reachable", &self.reachable())
            .finish_non_exhaustive()
    }
}

impl Keyed for Stored {
    fn sub_key(&self) -> SubKey {
        (self.meta.get() & KEY_MASK) >> KEY_SHIFT
    }

    fn set_sub_key(&mut self, sub: SubKey) {
        self.set_meta((self.meta.get() & !KEY_MASK) | ((sub << KEY_SHIFT) & KEY_MASK));
    }
}

/// An attribute set as the Loc-RIB holds it, borrowed: read it, compare it
/// by address, or take a count on it (`to_arc`).
#[derive(Clone, Copy)]
pub struct AttrsRef<'a> {
    at: NonNull<PathAttrs>,
    life: PhantomData<&'a Arc<PathAttrs>>,
}

// SAFETY: an `AttrsRef` is a shared borrow of a `PathAttrs`, as
// `&PathAttrs` is, which is `Send` and `Sync` when `PathAttrs` is `Sync`:
const _: () = {
    const fn sync<T: Sync>() {}
    sync::<PathAttrs>()
};
unsafe impl Send for AttrsRef<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for AttrsRef<'_> {}

impl AttrsRef<'_> {
    /// Its address (an `Arc`'s, as `Arc::as_ptr` gives it).
    pub fn as_ptr(self) -> *const PathAttrs {
        self.at.as_ptr()
    }

    /// The `Arc`, with one more count.
    pub fn to_arc(self) -> Arc<PathAttrs> {
        // SAFETY: `at` is the address of a live `Arc` for `'_` (`From`,
        // `Stored::attrs`): one more strong count, owned by the result.
        unsafe {
            Arc::increment_strong_count(self.as_ptr());
            Arc::from_raw(self.as_ptr())
        }
    }
}

impl<'a> From<&'a Arc<PathAttrs>> for AttrsRef<'a> {
    fn from(attrs: &'a Arc<PathAttrs>) -> AttrsRef<'a> {
        // (`Arc::as_ptr`, not the data's reference: `to_arc` reaches the counts.)
        // SAFETY: an `Arc`'s data pointer is never null.
        AttrsRef { at: unsafe { NonNull::new_unchecked(Arc::as_ptr(attrs).cast_mut()) }, life: PhantomData }
    }
}

impl Deref for AttrsRef<'_> {
    type Target = PathAttrs;
    fn deref(&self) -> &PathAttrs {
        // SAFETY: a live `Arc`'s data for `'_` (see `to_arc`).
        unsafe { self.at.as_ref() }
    }
}

impl fmt::Debug for AttrsRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_every_address_bit_apart_from_the_peer_and_the_flags() {
        let addresses = [0, (1 << 45) - 1, 0x1555_5555_5555, 0x0aaa_aaaa_aaaa, 1 << 32, 1 << 38, 1 << 44];
        for q in addresses {
            for (peer, origination, reachable) in [(0, 1, false), (MAX_PEERS - 1, 3, true), (0x0aa_aaaa, 2, true)] {
                let (meta, lo, hi) = pack(q, peer, origination, reachable);
                assert_eq!(unpack(meta, lo, hi), q, "{q:#x}");
                assert_eq!(
                    (hi >> PEER_SHIFT, meta & ORIGINATION, meta & REACHABLE != 0),
                    (peer, origination, reachable)
                );
                assert_eq!(meta & (MANY | KEY_MASK), 0, "the room is left empty");
                // The room filled does not touch the address.
                assert_eq!(unpack(meta | MANY | KEY_MASK, lo, hi), q);
            }
        }
    }

    #[test]
    fn a_stored_path_gives_back_what_went_in_and_holds_one_count_on_its_set() {
        let attrs = Arc::new(PathAttrs { med: Some(7), ..PathAttrs::default() });
        for (peer, origination, reachable) in [
            (0, Origination::Local, true),
            (MAX_PEERS - 1, Origination::Ebgp, false),
            (12_345, Origination::Ibgp, true),
        ] {
            let mut s = Stored::new(attrs.clone(), peer, origination, reachable);
            assert_eq!((s.peer(), s.origination(), s.reachable(), s.many()), (peer, origination, reachable, false));
            assert_eq!((s.attrs().as_ptr(), s.attrs().med), (Arc::as_ptr(&attrs), Some(7)));
            s.set_sub_key(0x3f_ffff);
            s.set_many(true);
            assert_eq!((s.sub_key(), s.many(), s.peer(), s.origination()), (0x3f_ffff, true, peer, origination));
            s.set_sub_key(0x15_5555);
            s.set_many(false);
            assert_eq!((s.sub_key(), s.many(), s.reachable()), (0x15_5555, false, reachable), "cleared too");
            s.set_sub_key(0x3f_ffff);
            s.set_many(true);
            assert_eq!(Arc::strong_count(&attrs), 2);
            let copy = s.clone();
            assert_eq!((Arc::strong_count(&attrs), copy.attrs().to_arc().med), (3, Some(7)));
            assert_eq!(Arc::strong_count(&attrs), 3, "to_arc's count went with it");
            // A new path in the slot keeps the slot's key and flag; its set's count moves to it.
            let other = Arc::new(PathAttrs::default());
            s.replace_path(Stored::new(other.clone(), 1, Origination::Ebgp, !reachable));
            assert_eq!((s.sub_key(), s.many(), s.peer(), s.attrs().med), (0x3f_ffff, true, 1, None));
            assert_eq!((s.origination(), s.reachable()), (Origination::Ebgp, !reachable), "the new path's own");
            assert_eq!((Arc::strong_count(&attrs), Arc::strong_count(&other)), (2, 2));
            assert_eq!(copy, Stored::new(Arc::new((*attrs).clone()), peer, origination, reachable), "equal by value");
            assert_ne!(copy, Stored::new(attrs.clone(), peer, origination, !reachable));
            // A set borrowed from an `Arc` of a `Path` gives a count too.
            let borrowed = AttrsRef::from(&attrs).to_arc();
            assert_eq!((Arc::strong_count(&attrs), Arc::as_ptr(&borrowed)), (3, Arc::as_ptr(&attrs)));
        }
        assert_eq!(Arc::strong_count(&attrs), 1, "every stored path gave its count back");
    }
}
