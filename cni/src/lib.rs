//! # tortie-cni — the CNI plugin and IPAM
//!
//! Owns the CNI protocol (spec 1.0 / 1.1: ADD, DEL, CHECK, STATUS, GC,
//! VERSION), pod veth plumbing the Calico way, and block IPAM with node
//! affinity.
//!
//! Must not: keep state outside the datastore.

use serde_json::json;

/// The CNI spec version of our results.
pub const CNI_VERSION: &str = "1.1.0";
/// Spec versions this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];

/// CNI error code 7: invalid necessary environment variables (CNI spec §"Error").
const ERR_INVALID_ENV: u32 = 7;
/// CNI error codes from 100 up are the plugin's own; 100: command not available in this build.
const ERR_UNAVAILABLE: u32 = 100;

/// What the plugin prints and how it exits.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// JSON for stdout.
    pub body: String,
    /// 0 on success, 1 on an error result.
    pub exit_code: i32,
}

/// Answers `CNI_COMMAND`. VERSION is answered as the spec defines it; the
/// other commands arrive with the CNI issue and return a plugin error
/// until then, never a fake success.
pub fn respond(command: Option<&str>) -> Reply {
    match command {
        Some("VERSION") => Reply {
            body: json!({ "cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS }).to_string(),
            exit_code: 0,
        },
        Some(other) => {
            error(ERR_UNAVAILABLE, &format!("CNI_COMMAND {other} is not available in this build of tortie-cni"))
        }
        None => error(ERR_INVALID_ENV, "CNI_COMMAND is not set"),
    }
}

fn error(code: u32, msg: &str) -> Reply {
    Reply { body: json!({ "cniVersion": CNI_VERSION, "code": code, "msg": msg }).to_string(), exit_code: 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists_supported_spec_versions() {
        let reply = respond(Some("VERSION"));
        assert_eq!(reply.exit_code, 0);
        let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(v["supportedVersions"], json!(["1.0.0", "1.1.0"]));
    }

    #[test]
    fn missing_command_is_error_code_7() {
        let reply = respond(None);
        let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!((v["code"].as_u64(), reply.exit_code), (Some(7), 1));
    }
}
