//! Network namespaces, veth links, bridges, addresses, routes and sysctls,
//! driven through `ip(8)`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::IpNet;

use crate::lab::RunDir;
use crate::{Daemon, LabError, Result, cmd};

/// Linux limits interface names to 15 bytes (IFNAMSIZ − 1).
const IFNAMSIZ_MAX: usize = 15;

/// A network namespace of a lab. Clones share it; the namespace is deleted
/// (after killing whatever still runs inside) when the last clone drops.
#[derive(Clone)]
pub struct Netns(Arc<NetnsInner>);

struct NetnsInner {
    name: String,
    dir: PathBuf,
    // Dropped after the namespace is deleted: the run directory outlives it.
    run_dir: Arc<RunDir>,
}

impl Netns {
    pub(crate) fn create(prefix: &str, short: &str, run_dir: Arc<RunDir>) -> Result<Netns> {
        if short.is_empty() || !short.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(LabError::InvalidName {
                what: "namespace name",
                value: short.into(),
                why: "use letters, digits and '-'",
            });
        }
        let name = format!("{prefix}{short}");
        let dir = run_dir.subdir(short)?;
        cmd::run("ip", &["netns", "add", &name])?;
        // From here on, Drop deletes the namespace even if a later step fails.
        let ns = Netns(Arc::new(NetnsInner { name, dir, run_dir }));
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's full name (as `ip netns list` shows it).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// This namespace's own directory inside the lab's run directory.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// Runs `ip -n <ns> args…` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name()];
        full.extend_from_slice(args);
        cmd::run("ip", &full)
    }

    /// Runs `program args…` inside the namespace to completion; returns stdout.
    pub fn exec<S: AsRef<str>>(&self, program: &str, args: &[S]) -> Result<String> {
        let mut full = vec!["netns", "exec", self.name(), program];
        full.extend(args.iter().map(AsRef::as_ref));
        cmd::run("ip", &full)
    }

    /// Adds `addr` (address and prefix length, e.g. `192.0.2.1/24`) to `ifname`.
    pub fn add_addr(&self, ifname: &str, addr: IpNet) -> Result<()> {
        let a = addr.to_string();
        match addr {
            IpNet::V4(_) => self.ip(&["addr", "add", &a, "dev", ifname]),
            // A lab link has no duplicate to detect; a tentative address
            // could not be bound to for its first seconds.
            IpNet::V6(_) => self.ip(&["addr", "add", &a, "dev", ifname, "nodad"]),
        }
        .map(drop)
    }

    /// Sets `ifname` up.
    pub fn link_up(&self, ifname: &str) -> Result<()> {
        self.ip(&["link", "set", ifname, "up"]).map(drop)
    }

    /// Adds a route given in `ip route` syntax, e.g. `198.18.0.0/16 via 192.0.2.2`.
    pub fn add_route(&self, route: &str) -> Result<()> {
        let mut args = vec!["route", "add"];
        args.extend(route.split_whitespace());
        self.ip(&args).map(drop)
    }

    /// Sets a sysctl inside the namespace (`net.*` keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]).map(drop)
    }

    /// Turns on IPv4 and IPv6 forwarding, making the namespace a router.
    pub fn enable_forwarding(&self) -> Result<()> {
        self.sysctl("net.ipv4.ip_forward", "1")?;
        self.sysctl("net.ipv6.conf.all.forwarding", "1")
    }

    /// Starts `program args…` inside the namespace as a long-lived daemon
    /// whose stdout and stderr go to `<ns dir>/<name>.log`.
    pub fn spawn<S: AsRef<str>>(&self, name: &str, program: &str, args: &[S], env: &[(&str, &str)]) -> Result<Daemon> {
        Daemon::spawn(Some(self), self.0.run_dir.clone(), self.dir(), name, program, args, env)
    }

    /// Starts a tortie node daemon here (`BIN node run --name NAME --ip IP
    /// --run-dir <this namespace's dir>/run --bpffs <the lab's> EXTRA…`),
    /// as process `name`; its datastore and log level come from `env`.
    pub fn spawn_tortie_node(
        &self,
        name: &str,
        bin: &str,
        node: &str,
        ip: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let run_dir = self.dir().join("run").display().to_string();
        let bpffs = crate::bpffs()?.display().to_string();
        let mut args = vec!["node", "run", "--name", node, "--ip", ip, "--run-dir", &run_dir, "--bpffs", &bpffs];
        args.extend_from_slice(extra);
        self.spawn(name, bin, &args, env)
    }

    /// Runs `f` on a new thread that has joined this namespace (sockets it
    /// opens live here), and returns its result. The caller's thread stays
    /// where it was.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = std::path::Path::new("/run/netns").join(self.name());
        let file = std::fs::File::open(&path).map_err(|e| LabError::io("opening", &path, e))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    use std::os::fd::AsRawFd;
                    // SAFETY: setns(2) on a valid namespace fd; only this new thread moves.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(LabError::io("entering namespace", &path, std::io::Error::last_os_error()));
                    }
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The whole response (headers and body) to `GET path` on `addr`
    /// from inside this namespace (a daemon's metrics endpoint).
    pub fn http_get(&self, addr: std::net::SocketAddr, path: &str) -> Result<String> {
        use std::io::{Read, Write};
        let io = |e| LabError::io("HTTP GET", std::path::Path::new(path), e);
        self.enter(|| {
            let mut s = std::net::TcpStream::connect(addr)?;
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })?
        .map_err(io)
    }

    /// PIDs of every process whose network namespace is this one.
    pub fn pids(&self) -> Result<Vec<i32>> {
        pids_in(self.name())
    }
}

/// PIDs of the processes inside the named namespace (`ip netns pids`).
pub(crate) fn pids_in(name: &str) -> Result<Vec<i32>> {
    let out = cmd::run("ip", &["netns", "pids", name])?;
    Ok(out.split_whitespace().filter_map(|pid| pid.parse().ok()).collect())
}

/// Kills everything inside the named namespace, then deletes it.
pub(crate) fn destroy(name: &str) -> Result<()> {
    for pid in pids_in(name)? {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    crate::bpffs::forget(&std::path::Path::new("/run/netns").join(name));
    cmd::run("ip", &["netns", "del", name]).map(drop)
}

impl Drop for NetnsInner {
    fn drop(&mut self) {
        if let Err(e) = destroy(&self.name) {
            eprintln!("tortie-lab: cannot remove namespace {}: {e}", self.name);
        }
    }
}

/// Connects two namespaces with a veth pair, `a.0:a.1` ⇄ `b.0:b.1`, both ends up.
pub fn veth(a: (&Netns, &str), b: (&Netns, &str)) -> Result<()> {
    for ifname in [a.1, b.1] {
        check_ifname(ifname)?;
    }
    cmd::run(
        "ip",
        &["link", "add", a.1, "netns", a.0.name(), "type", "veth", "peer", "name", b.1, "netns", b.0.name()],
    )?;
    a.0.link_up(a.1)?;
    b.0.link_up(b.1)
}

fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX || name.contains(['/', ' ', ':']) {
        return Err(LabError::InvalidName {
            what: "interface name",
            value: name.into(),
            why: "1 to 15 bytes, no '/', ':' or spaces (IFNAMSIZ)",
        });
    }
    Ok(())
}

/// A namespace holding the Linux bridge `br0`: a layer-2 switch for nodes.
pub struct Bridge {
    ns: Netns,
    next_port: AtomicU32,
}

impl Bridge {
    /// The bridge device's name inside its namespace.
    const DEVICE: &'static str = "br0";

    pub(crate) fn create(ns: Netns) -> Result<Bridge> {
        ns.ip(&["link", "add", Self::DEVICE, "type", "bridge"])?;
        ns.link_up(Self::DEVICE)?;
        Ok(Bridge { ns, next_port: AtomicU32::new(0) })
    }

    /// The namespace the bridge lives in.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Plugs `node` into the bridge through a veth whose node end is `ifname`.
    pub fn attach(&self, node: &Netns, ifname: &str) -> Result<()> {
        let port = format!("port{}", self.next_port.fetch_add(1, Ordering::Relaxed));
        veth((node, ifname), (&self.ns, &port))?;
        self.ns.ip(&["link", "set", &port, "master", Self::DEVICE]).map(drop)
    }

    /// Makes the link to `node`'s `ifname` (port `port` of the bridge,
    /// numbered in attach order) carry frames as a NIC on a wire does: the
    /// port cuts GSO packets into frames of the MTU (no TSO), and the node
    /// merges frames as they arrive (GRO, its NAPI in a thread of its own
    /// so that frames queue up, as a NIC's interrupt coalescing lets them).
    /// Needs `ethtool`.
    pub fn wire_like(&self, port: usize, node: &Netns, ifname: &str) -> Result<()> {
        self.ns.exec("ethtool", &["-K", &format!("port{port}"), "tso", "off"])?;
        node.exec("ethtool", &["-K", ifname, "gro", "on"])?;
        node.exec("sh", &["-c", &format!("echo 1 > /sys/class/net/{ifname}/threaded")]).map(drop)
    }
}
