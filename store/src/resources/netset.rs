//! NetworkSet (namespaced) and GlobalNetworkSet: labelled lists of
//! networks that policy rule selectors match alongside endpoints.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::validate::Invalid;
use super::{Metadata, Spec};

/// NetworkSet and GlobalNetworkSet spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSetSpec {
    /// The networks (host bits are ignored, as Calico ignores them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<IpNet>,
}

impl Spec for NetworkSetSpec {
    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        // A net is a CIDR by type; nothing else to check.
        Ok(())
    }
}
