//! The Calico → BGP translation, as confd and BIRD's templates do it in
//! Calico: from the datastore's BGPConfiguration, BGPPeer, BGPFilter and
//! Node resources to the speaker's neighbours (with their session
//! settings), policies and originations. Pure: resources in, a plan out;
//! no sockets, no kernel, no clocks. The binary reads the datastore and
//! hands the plan to the speaker.

pub mod advertise;
pub mod filters;
pub mod plan;

pub use advertise::Advertise;
pub use plan::{Configs, DEFAULT_AS, Me, PeerType, PlannedPeer, dynamic_template, neighbor, plan};
