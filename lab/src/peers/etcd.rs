//! etcd 3.4 on host loopback with a temporary data directory, driven with
//! `etcdctl` (API v3).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::{Check, Daemon, Lab, LabError, Result, cmd, wait_for};

/// How long etcd gets to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts with fresh ports when another process takes one first.
const PORT_ATTEMPTS: usize = 3;

/// A running single-member etcd cluster on 127.0.0.1.
pub struct Etcd {
    daemon: Daemon,
    client: SocketAddr,
}

impl Etcd {
    /// Starts etcd on two free loopback ports with its data under the lab's
    /// run directory, and waits until `etcdctl endpoint health` passes.
    pub fn start(lab: &Lab) -> Result<Etcd> {
        cmd::require("etcd", "etcd-server")?;
        cmd::require("etcdctl", "etcd-client")?;
        let mut last = None;
        for attempt in 0..PORT_ATTEMPTS {
            match Etcd::try_start(lab, attempt) {
                Ok(etcd) => return Ok(etcd),
                // A port taken between probing and binding makes etcd exit: try others.
                Err(e @ LabError::DaemonExited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LabError::parse("etcd start", "etcd", "no attempt made", "")))
    }

    fn try_start(lab: &Lab, attempt: usize) -> Result<Etcd> {
        let (client, peer) = (free_port()?, free_port()?);
        let name = format!("etcd-{}", client.port());
        let data = lab.dir().join(format!("{name}-data"));
        let (client_url, peer_url) = (format!("http://{client}"), format!("http://{peer}"));
        let args = [
            "--name",
            "t",
            "--data-dir",
            &data.display().to_string(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("t={peer_url}"),
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]
        .map(String::from);
        let daemon = lab.spawn_host(&format!("{name}-try{attempt}"), "etcd", &args, &[])?;
        let etcd = Etcd { daemon, client };
        wait_for(&format!("{name} to be healthy"), START_TIMEOUT, || {
            etcd.daemon.check_running()?;
            etcd.etcdctl(&["endpoint", "health"]).map(Check::Done)
        })?;
        Ok(etcd)
    }

    /// The client endpoint, `127.0.0.1:<port>`.
    pub fn endpoint(&self) -> SocketAddr {
        self.client
    }

    /// The daemon process.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Runs `etcdctl --endpoints <endpoint> args…` (API v3).
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        self.daemon.check_running()?;
        let endpoints = format!("--endpoints={}", self.client);
        let mut full = vec![endpoints.as_str()];
        full.extend_from_slice(args);
        cmd::run_with_env("etcdctl", &full, &[("ETCDCTL_API", "3")])
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.etcdctl(&["put", key, value]).map(drop)
    }

    /// The value under `key`, or `None` when there is no such key.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.etcdctl(&["get", key, "-w", "json"])?;
        let reply: GetReply =
            serde_json::from_str(&out).map_err(|e| LabError::parse("get reply", "etcdctl", e, &out))?;
        let Some(kv) = reply.kvs.into_iter().next() else { return Ok(None) };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&kv.value)
            .map_err(|e| LabError::parse("value", "etcdctl", e, &out))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

#[derive(Deserialize)]
struct GetReply {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct KeyValue {
    /// Base64, as etcdctl's JSON output encodes bytes.
    #[serde(default)]
    value: String,
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| LabError::io("binding a free port on", "127.0.0.1".as_ref(), e))?;
    Ok(listener)
}
