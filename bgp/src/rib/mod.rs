//! The routing information bases and the decision process.

pub mod decision;
mod entries;
pub mod export;
pub mod outbound;
mod peers;
pub mod policy;
mod stored;
pub mod table;
mod v4_index;
mod v6_index;
