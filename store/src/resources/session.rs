//! Session settings Calico's API has no field for, as `tortie.io/…`
//! annotations (so the document stays valid Calico YAML): on a BGPPeer for
//! its sessions, on the `default` BGPConfiguration for the node-to-node
//! mesh. RFC 4271 names them: the hold time proposed in OPEN (§4.2), the
//! keepalive interval (§10), PassiveTcpEstablishment and the IdleHoldTime
//! that DampPeerOscillations doubles (§8.1.1); RFC 5880 the BFD intervals
//! and Detect Mult (§6.8.1), and BFD on the mesh (a BGPPeer asks for it
//! with Calico's `failureDetectionMode`). Every `tortie.io/` key is checked
//! at apply; an unknown one is refused by name.

use std::collections::BTreeMap;
use std::time::Duration;

use super::felix::duration_ms;
use super::kinds::Kind;
use super::validate::Invalid;

/// The annotation prefix tortie reads.
pub const PREFIX: &str = "tortie.io/";

const HOLD: &str = "tortie.io/hold-time";
const KEEPALIVE: &str = "tortie.io/keepalive-time";
const PASSIVE: &str = "tortie.io/passive";
const IDLE_HOLD: &str = "tortie.io/idle-hold-time";
const MAX_IDLE_HOLD: &str = "tortie.io/max-idle-hold-time";
const BFD: &str = "tortie.io/bfd";
const BFD_INTERVAL: &str = "tortie.io/bfd-interval";
const BFD_MULTIPLIER: &str = "tortie.io/bfd-multiplier";

/// BFD's intervals when nothing sets them (RFC 5880 has no default; FRR's and Calico's BIRD's).
pub const DEFAULT_BFD_INTERVAL: Duration = Duration::from_millis(300);
/// BFD's Detect Mult when nothing sets it.
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;

/// A peer's (or the mesh's) session settings; `None`: the speaker's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// Hold time proposed in OPEN, seconds (0: none, or 3–65535).
    pub hold_time: Option<u16>,
    /// Keepalive interval, seconds (the mesh's; a BGPPeer's is its
    /// `keepaliveTime` field).
    pub keepalive: Option<u16>,
    /// Never dial; wait for the peer.
    pub passive: bool,
    /// The first wait before dialling again after a session ends.
    pub idle_hold: Option<Duration>,
    /// The most that wait grows to while the peer keeps failing.
    pub max_idle_hold: Option<Duration>,
    /// BFD on the mesh's sessions (the default BGPConfiguration's `tortie.io/bfd`).
    pub bfd: bool,
    /// BFD's Desired Min TX and Required Min RX interval (RFC 5880 §6.8.1).
    pub bfd_interval: Option<Duration>,
    /// BFD's Detect Mult.
    pub bfd_multiplier: Option<u8>,
}

/// Whole seconds from `min` to `max`; 0 too for the hold time (no hold
/// timer, RFC 4271 §4.2), for nothing else (a zero wait would redial at once).
fn seconds(key: &str, v: &str, min: u64, max: u64) -> Result<u64, Invalid> {
    let zero = key == HOLD;
    match duration_ms(v) {
        Some(ms) if ms % 1000 == 0 && ((zero && ms == 0) || (min..=max).contains(&(ms / 1000))) => Ok(ms / 1000),
        _ if zero => Err(Invalid::new(key, v, format!("whole seconds, 0 or {min}–{max}, like 9s or 1m30s"))),
        _ => Err(Invalid::new(key, v, format!("whole seconds, {min}–{max}, like 9s or 1m30s"))),
    }
}

impl SessionSettings {
    /// The settings in `annotations` of a document of `kind` named `name`,
    /// or the first bad `tortie.io/` key.
    pub fn from_annotations(
        kind: Kind,
        name: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<SessionSettings, Invalid> {
        let mut s = SessionSettings::default();
        let field = |k: &str| format!("annotations.{k}");
        for (key, v) in annotations.iter().filter(|(k, _)| k.starts_with(PREFIX)) {
            let here = match kind {
                Kind::BgpPeer => {
                    [HOLD, PASSIVE, IDLE_HOLD, MAX_IDLE_HOLD, BFD_INTERVAL, BFD_MULTIPLIER].contains(&key.as_str())
                }
                Kind::BgpConfiguration if name == "default" => {
                    [HOLD, KEEPALIVE, IDLE_HOLD, MAX_IDLE_HOLD, BFD, BFD_INTERVAL, BFD_MULTIPLIER]
                        .contains(&key.as_str())
                }
                _ => false,
            };
            if !here {
                let why = match kind {
                    Kind::BgpPeer if key == KEEPALIVE => "use the BGPPeer's keepaliveTime".to_string(),
                    _ => format!(
                        "not a tortie annotation of {} {name} (BGPPeer: {HOLD}, {PASSIVE}, {IDLE_HOLD}, \
                         {MAX_IDLE_HOLD}, {BFD_INTERVAL}, {BFD_MULTIPLIER}; the default BGPConfiguration, for \
                         the mesh: {HOLD}, {KEEPALIVE}, {IDLE_HOLD}, {MAX_IDLE_HOLD}, {BFD}, {BFD_INTERVAL}, \
                         {BFD_MULTIPLIER})",
                        kind.info().name
                    ),
                };
                return Err(Invalid::new(field(key), v, why));
            }
            let bad = |e: Invalid| Invalid { field: field(key), ..e };
            match key.as_str() {
                HOLD => s.hold_time = Some(seconds(key, v, 3, 65535).map_err(bad)? as u16),
                KEEPALIVE => s.keepalive = Some(seconds(key, v, 1, 21845).map_err(bad)? as u16),
                PASSIVE | BFD => {
                    let on = v.parse().map_err(|_| Invalid::new(field(key), v, "\"true\" or \"false\""))?;
                    *(if key == PASSIVE { &mut s.passive } else { &mut s.bfd }) = on;
                }
                BFD_INTERVAL => {
                    // RFC 5880 §4.1: microseconds in 32 bits; below 10 ms no kernel timer keeps up.
                    let ms = duration_ms(v).filter(|ms| (10..=60_000).contains(ms));
                    let why = "10ms to 1m, like 300ms";
                    s.bfd_interval = Some(Duration::from_millis(ms.ok_or_else(|| Invalid::new(field(key), v, why))?));
                }
                BFD_MULTIPLIER => {
                    let m = v.parse::<u8>().ok().filter(|m| *m >= 1);
                    s.bfd_multiplier =
                        Some(m.ok_or_else(|| Invalid::new(field(key), v, "1 to 255 (RFC 5880 Detect Mult)"))?);
                }
                IDLE_HOLD => s.idle_hold = Some(Duration::from_secs(seconds(key, v, 1, 3600).map_err(bad)?)),
                _ => s.max_idle_hold = Some(Duration::from_secs(seconds(key, v, 1, 3600).map_err(bad)?)),
            }
        }
        if let (Some(hold), Some(k)) = (s.hold_time, s.keepalive)
            && hold > 0
            && k >= hold
        {
            return Err(Invalid::new(field(KEEPALIVE), k, format!("less than the hold time {hold} s (RFC 4271 §10)")));
        }
        if let (Some(first), Some(most)) = (s.idle_hold, s.max_idle_hold)
            && first > most
        {
            return Err(Invalid::new(field(IDLE_HOLD), format!("{first:?}"), format!("at most {MAX_IDLE_HOLD}")));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(kind: Kind, name: &str, pairs: &[(&str, &str)]) -> Result<SessionSettings, Invalid> {
        let a = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SessionSettings::from_annotations(kind, name, &a)
    }

    #[test]
    fn timers_and_back_off_are_read_checked_and_named_when_wrong() {
        let s = read(
            Kind::BgpPeer,
            "tor",
            &[(HOLD, "9s"), (PASSIVE, "true"), (IDLE_HOLD, "2s"), (MAX_IDLE_HOLD, "1m"), ("example.com/x", "y")],
        )
        .unwrap();
        assert_eq!(s.hold_time, Some(9));
        assert!(s.passive);
        assert_eq!((s.idle_hold, s.max_idle_hold), (Some(Duration::from_secs(2)), Some(Duration::from_secs(60))));
        assert_eq!(read(Kind::BgpPeer, "tor", &[(HOLD, "0s")]).unwrap().hold_time, Some(0));
        let err = read(Kind::BgpPeer, "tor", &[(HOLD, "2s")]).unwrap_err();
        assert_eq!((err.field.as_str(), err.value.as_str()), ("annotations.tortie.io/hold-time", "2s"));
        let err = read(Kind::BgpPeer, "tor", &[("tortie.io/hold", "9s")]).unwrap_err();
        assert!(err.why.starts_with("not a tortie annotation of BGPPeer tor"), "{err:?}");
        assert!(read(Kind::BgpPeer, "tor", &[(KEEPALIVE, "3s")]).unwrap_err().why.contains("keepaliveTime"));
        let mesh = read(Kind::BgpConfiguration, "default", &[(HOLD, "9s"), (KEEPALIVE, "3s")]).unwrap();
        assert_eq!((mesh.hold_time, mesh.keepalive), (Some(9), Some(3)));
        assert!(read(Kind::BgpConfiguration, "default", &[(HOLD, "9s"), (KEEPALIVE, "9s")]).is_err());
        assert!(read(Kind::BgpConfiguration, "default", &[(PASSIVE, "true")]).is_err(), "the mesh picks who dials");
        assert!(read(Kind::BgpConfiguration, "node.n1", &[(HOLD, "9s")]).is_err(), "mesh settings are cluster-wide");
        assert!(read(Kind::IpPool, "p", &[(HOLD, "9s")]).is_err());
        assert!(read(Kind::BgpPeer, "tor", &[(IDLE_HOLD, "1m"), (MAX_IDLE_HOLD, "2s")]).is_err());
        for key in [IDLE_HOLD, MAX_IDLE_HOLD] {
            assert!(read(Kind::BgpPeer, "tor", &[(key, "0s")]).is_err(), "{key} 0 would redial at once");
        }
        assert!(read(Kind::BgpConfiguration, "default", &[(KEEPALIVE, "0s")]).is_err());
    }

    #[test]
    fn bfd_settings_are_read_and_checked() {
        let mesh =
            read(Kind::BgpConfiguration, "default", &[(BFD, "true"), (BFD_INTERVAL, "100ms"), (BFD_MULTIPLIER, "5")])
                .unwrap();
        assert_eq!(
            (mesh.bfd, mesh.bfd_interval, mesh.bfd_multiplier),
            (true, Some(Duration::from_millis(100)), Some(5))
        );
        let peer = read(Kind::BgpPeer, "tor", &[(BFD_INTERVAL, "1s")]).unwrap();
        assert_eq!(peer.bfd_interval, Some(Duration::from_secs(1)));
        let err = read(Kind::BgpPeer, "tor", &[(BFD, "true")]).unwrap_err();
        assert_eq!(err.field, "annotations.tortie.io/bfd", "a BGPPeer asks with failureDetectionMode");
        for (key, v) in
            [(BFD_INTERVAL, "5ms"), (BFD_INTERVAL, "2m"), (BFD_MULTIPLIER, "0"), (BFD_MULTIPLIER, "x"), (BFD, "yes")]
        {
            let err = read(Kind::BgpConfiguration, "default", &[(key, v)]).unwrap_err();
            assert_eq!((err.field.as_str(), err.value.as_str()), (format!("annotations.{key}").as_str(), v));
        }
    }
}
