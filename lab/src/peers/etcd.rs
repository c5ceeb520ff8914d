//! etcd 3.4 on host loopback with a temporary data directory, driven with
//! `etcdctl` (API v3); optionally with TLS client certificates (from a CA
//! made for the run with `openssl`) and user authentication.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::{Check, Daemon, Lab, LabError, Netns, Result, cmd, wait_for};

/// How long etcd gets to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts with fresh ports when another process takes one first.
const PORT_ATTEMPTS: usize = 3;
/// The user authentication is enabled for (etcd requires `root`).
const ROOT: &str = "root";

/// A running single-member etcd cluster on 127.0.0.1 (of the host or of a lab namespace).
pub struct Etcd {
    daemon: Daemon,
    client: SocketAddr,
    security: Security,
    /// The namespace it runs in (`None`: the host's).
    netns: Option<Netns>,
}

/// How clients must authenticate to an [`Etcd`].
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// TLS with client certificates.
    pub tls: Option<TlsFiles>,
    /// The `root` user's password, when authentication is on.
    pub password: Option<String>,
}

/// PEM files a TLS client needs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed etcd's (and the client's) certificate.
    pub ca: PathBuf,
    /// A client certificate signed by that CA.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

impl Etcd {
    /// Starts etcd on two free loopback ports with its data under the lab's
    /// run directory, and waits until `etcdctl endpoint health` passes.
    pub fn start(lab: &Lab) -> Result<Etcd> {
        Etcd::start_secured(lab, false, None)
    }

    /// Like [`Etcd::start`], inside `netns` (its loopback), for clients that
    /// run there (a node's CNI plugin and daemon).
    pub fn start_in(lab: &Lab, netns: &Netns) -> Result<Etcd> {
        Etcd::try_start(lab, 0, Security::default(), Some(netns))
    }

    /// Like [`Etcd::start`], requiring TLS client certificates when `tls`
    /// and turning authentication on for user `root` when `password` is given.
    pub fn start_secured(lab: &Lab, tls: bool, password: Option<&str>) -> Result<Etcd> {
        cmd::require("etcd", "etcd-server")?;
        cmd::require("etcdctl", "etcd-client")?;
        let tls = if tls { Some(make_certificates(&lab.dir().join("etcd-pki"))?) } else { None };
        let mut last = None;
        for attempt in 0..PORT_ATTEMPTS {
            match Etcd::try_start(lab, attempt, Security { tls: tls.clone(), password: None }, None) {
                Ok(mut etcd) => {
                    if let Some(password) = password {
                        etcd.etcdctl(&["user", "add", &format!("{ROOT}:{password}")])?;
                        etcd.etcdctl(&["user", "grant-role", ROOT, "root"])?;
                        etcd.etcdctl(&["auth", "enable"])?;
                        etcd.security.password = Some(password.to_string());
                    }
                    return Ok(etcd);
                }
                // A port taken between probing and binding makes etcd exit: try others.
                Err(e @ LabError::DaemonExited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LabError::parse("etcd start", "etcd", "no attempt made", "")))
    }

    fn try_start(lab: &Lab, attempt: usize, security: Security, netns: Option<&Netns>) -> Result<Etcd> {
        let (client, peer) = (free_port()?, free_port()?);
        let name = format!("etcd-{}", client.port());
        let data = lab.dir().join(format!("{name}-data"));
        let scheme = if security.tls.is_some() { "https" } else { "http" };
        let (client_url, peer_url) = (format!("{scheme}://{client}"), format!("http://{peer}"));
        let mut args: Vec<String> = [
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
        .map(String::from)
        .to_vec();
        if let Some(pki) = &security.tls {
            let dir = pki.ca.parent().unwrap_or(Path::new("."));
            let file = |f: &str| dir.join(f).display().to_string();
            args.extend(
                ["--cert-file", &file("server.pem"), "--key-file", &file("server.key")]
                    .into_iter()
                    .chain(["--trusted-ca-file", &file("ca.pem"), "--client-cert-auth"])
                    .map(String::from),
            );
        }
        let daemon = match netns {
            Some(ns) => ns.spawn(&format!("{name}-try{attempt}"), "etcd", &args, &[])?,
            None => lab.spawn_host(&format!("{name}-try{attempt}"), "etcd", &args, &[])?,
        };
        let etcd = Etcd { daemon, client, security, netns: netns.cloned() };
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

    /// What clients need to authenticate.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The daemon process.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Runs `etcdctl --endpoints <endpoint> args…` (API v3), with the
    /// client certificate and root credentials when etcd needs them.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        self.daemon.check_running()?;
        let mut full = vec![format!("--endpoints={}", self.client)];
        if let Some(tls) = &self.security.tls {
            full.push(format!("--cacert={}", tls.ca.display()));
            full.push(format!("--cert={}", tls.cert.display()));
            full.push(format!("--key={}", tls.key.display()));
        }
        if let Some(password) = &self.security.password {
            full.push(format!("--user={ROOT}:{password}"));
        }
        full.extend(args.iter().map(|a| a.to_string()));
        match &self.netns {
            Some(ns) => {
                let mut inside = vec!["netns".to_string(), "exec".into(), ns.name().into(), "etcdctl".into()];
                inside.extend(full);
                cmd::run_with_env("ip", &inside, &[("ETCDCTL_API", "3")])
            }
            None => cmd::run_with_env("etcdctl", &full, &[("ETCDCTL_API", "3")]),
        }
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
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| LabError::io("binding a free port on", "127.0.0.1".as_ref(), e))
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certificates(dir: &Path) -> Result<TlsFiles> {
    cmd::require("openssl", "openssl")?;
    std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating", dir, e))?;
    let file = |f: &str| dir.join(f).display().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (file("ca.key"), file("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem, "-days", "2", "-subj", "/CN=tortie-lab-ca"]);
    cmd::run("openssl", &ca)?;
    for (name, ext) in [
        // etcd also dials itself (its gRPC gateway) with the server certificate.
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, pem, extfile) = (
            file(&format!("{name}.key")),
            file(&format!("{name}.csr")),
            file(&format!("{name}.pem")),
            file(&format!("{name}.ext")),
        );
        std::fs::write(&extfile, ext).map_err(|e| LabError::io("writing", Path::new(&extfile), e))?;
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj"]);
        let subject = format!("/CN=tortie-lab-{name}");
        req.push(&subject);
        cmd::run("openssl", &req)?;
        cmd::run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        )?;
    }
    Ok(TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("client.pem"), key: dir.join("client.key") })
}

/// A three-or-more-member etcd cluster (real Raft), one member per lab
/// namespace at `address:2379` (clients) and `:2380` (peers); members can
/// be killed and restarted on their data.
pub struct EtcdCluster {
    members: Vec<Member>,
}

struct Member {
    name: String,
    netns: Netns,
    address: Ipv4Addr,
    args: Vec<String>,
    daemon: Option<Daemon>,
    restarts: usize,
}

impl EtcdCluster {
    /// Starts one member in each `(namespace, address)` and waits until
    /// the cluster is healthy.
    pub fn start(lab: &Lab, at: &[(Netns, Ipv4Addr)]) -> Result<EtcdCluster> {
        cmd::require("etcd", "etcd-server")?;
        cmd::require("etcdctl", "etcd-client")?;
        let name = |i: usize| format!("m{}", i + 1);
        let initial: Vec<String> =
            at.iter().enumerate().map(|(i, (_, a))| format!("{}=http://{a}:2380", name(i))).collect();
        let members = at
            .iter()
            .enumerate()
            .map(|(i, (netns, address))| {
                let data = lab.dir().join(format!("etcd-{}-data", name(i)));
                let (client, peer) = (format!("http://{address}:2379"), format!("http://{address}:2380"));
                let args = [
                    "--name",
                    &name(i),
                    "--data-dir",
                    &data.display().to_string(),
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-state",
                    "new",
                    "--logger",
                    "zap",
                    "--log-level",
                    "warn",
                ]
                .map(String::from)
                .to_vec();
                Member { name: name(i), netns: netns.clone(), address: *address, args, daemon: None, restarts: 0 }
            })
            .collect();
        let mut cluster = EtcdCluster { members };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy(&(0..cluster.members.len()).collect::<Vec<_>>())?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &mut self.members[i];
        let process = format!("etcd-{}-{}", m.name, m.restarts);
        m.restarts += 1;
        m.daemon = Some(m.netns.spawn(&process, "etcd", &m.args, &[])?);
        Ok(())
    }

    /// `http://a:2379,http://b:2379,…` as etcdctl takes it.
    fn urls(&self, which: &[usize]) -> String {
        which.iter().map(|&i| format!("http://{}:2379", self.members[i].address)).collect::<Vec<_>>().join(",")
    }

    /// The members as tortie's datastore URL: `etcd://a:2379,b:2379,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.members.iter().map(|m| format!("{}:2379", m.address)).collect();
        format!("etcd://{}", hosts.join(","))
    }

    fn wait_healthy(&self, which: &[usize]) -> Result<()> {
        wait_for("the etcd members to be healthy", START_TIMEOUT, || {
            let ns = &self.members[which[0]].netns;
            let endpoints = format!("--endpoints={}", self.urls(which));
            let args = ["netns", "exec", ns.name(), "etcdctl", &endpoints, "endpoint", "health"];
            match cmd::run_with_env("ip", &args, &[("ETCDCTL_API", "3")]) {
                Ok(out) => Ok(Check::Done(out)),
                Err(e) => Ok(Check::Pending(e.to_string())),
            }
        })
        .map(drop)
    }

    /// SIGKILLs member `i` (0-based).
    pub fn kill(&mut self, i: usize) {
        if let Some(d) = self.members[i].daemon.take() {
            d.kill_now();
        }
    }

    /// Starts member `i` again on its data and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(&[i])
    }
}
