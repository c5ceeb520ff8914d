//! `tortie lab up` and `tortie lab down`: a whole cluster on one machine.
//!
//! `up` builds node namespaces in two subnets behind a ToR namespace
//! running FRR (or BIRD) that peers with every node, the embedded SQLite
//! datastore with a default CrossSubnet pool, starts `tortie node run` on
//! every node, plumbs two pods per node through `tortie-cni`, waits (with
//! progress) for every session to be Established and the ToR to hold every
//! node's blocks, then prints each node's `tortie status` and a pod-to-pod
//! reachability matrix. Everything lives in namespaces named `tlab-…` and
//! one run directory; nothing touches the host's own network. `down`
//! removes every namespace, process and file of it.

mod topology;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use tokio::runtime::Handle;
use tortie_lab::peers::{BgpPeer, Bird, Frr, Neighbor, Speaker};
use tortie_lab::{Bridge, Daemon, Lab, Netns};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::resources::parse_documents;

use crate::cli::status;
use topology::{Encap, LabNode, OUTSIDE_HOST, OUTSIDE_TOR, SERVICE_RANGE, SUBNETS, TOR_AS};

/// Every lab namespace's name starts with this.
pub const PREFIX: &str = "tlab-";
/// Pods per node.
const PODS_PER_NODE: usize = 2;
/// Longest wait for sessions, routes and reachability.
const SETTLE: Duration = Duration::from_secs(90);

/// The ToR's routing daemon.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum TorKind {
    /// FRR 8 (bgpd + zebra).
    Frr,
    /// BIRD 2.
    Bird,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Number of nodes (2–20), alternating between the two subnets.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=20))]
    nodes: u8,
    /// The ToR's routing daemon.
    #[arg(long, value_enum, default_value_t = TorKind::Frr)]
    tor: TorKind,
    /// Install missing Debian packages (apt-get) instead of stopping.
    #[arg(long)]
    install: bool,
    /// How pods' traffic crosses between the two subnets.
    #[arg(long, value_enum, default_value_t = Encap::Ipip)]
    encap: Encap,
    /// No BGP (the nodes' `--networking-backend vxlan`): each node routes
    /// the others' blocks from the datastore; the ToR only forwards.
    #[arg(long)]
    no_bgp: bool,
    /// Dual stack: the nodes and the ToR get IPv6 addresses too, pods an
    /// address of each family, the mesh and the ToR sessions run over IPv6
    /// as well (with `--encap vxlan`, IPv6 crosses the subnets on the IPv6
    /// VXLAN device), and the reachability matrix is shown for each family.
    #[arg(long)]
    ipv6: bool,
}

/// The ToR as it runs.
enum Tor {
    Frr(Box<Frr>),
    Bird(Bird),
}

impl Tor {
    fn routes(&self) -> anyhow::Result<Vec<tortie_lab::peers::Route>> {
        Ok(match self {
            Tor::Frr(f) => f.routes()?,
            Tor::Bird(b) => b.routes()?,
        })
    }
}

/// A pod the lab plumbed.
struct LabPod {
    name: String,
    netns: Netns,
    address: Ipv4Addr,
    /// With `--ipv6`.
    address6: Option<Ipv6Addr>,
}

/// Everything the lab is made of. Dropped on a failure (which removes it
/// all); forgotten once the lab is up, so it outlives this process.
struct Built {
    lab: Lab,
    _switches: Vec<Bridge>,
    _tor_ns: Netns,
    _outside: Netns,
    /// The ToR's routing daemon (none without BGP: it only forwards).
    tor: Option<Tor>,
    nodes: Vec<(LabNode, Netns)>,
    _daemons: Vec<Daemon>,
    pods: Vec<LabPod>,
}

fn on_path(tool: &str) -> bool {
    Path::new(tool).is_absolute() && Path::new(tool).exists()
        || std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        || ["/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(tool).exists())
}

/// Checks the tools the lab runs; installs the missing ones when allowed.
fn tools(tor: Option<TorKind>, install: bool) -> anyhow::Result<()> {
    let mut need = vec![("ip", "iproute2"), ("ping", "iputils-ping")];
    need.extend(match tor {
        Some(TorKind::Frr) => vec![("vtysh", "frr"), ("/usr/lib/frr/bgpd", "frr")],
        Some(TorKind::Bird) => vec![("bird", "bird2"), ("birdc", "bird2")],
        None => vec![],
    });
    let missing: Vec<(&str, &str)> = need.into_iter().filter(|(t, _)| !on_path(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    let names: Vec<String> = missing.iter().map(|(t, p)| format!("{t} (Debian package {p})")).collect();
    if !install {
        bail!("missing {}: install them or rerun with --install", names.join(", "));
    }
    eprintln!("installing {}", packages.join(" "));
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?
        .success();
    if !ok {
        bail!("apt-get install {} failed", packages.join(" "));
    }
    Ok(())
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("tortie lab needs root: it creates network namespaces, veths and routes (run it with sudo)");
    }
    if args.ipv6 && args.no_bgp && args.encap != Encap::Vxlan {
        bail!(
            "--ipv6 --no-bgp needs --encap vxlan: without BGP the ToR knows no IPv6 pod routes, and IPIP carries IPv4 only"
        );
    }
    tools((!args.no_bgp).then_some(args.tor), args.install)?;
    let rt = Handle::current();
    tokio::task::spawn_blocking(move || up_blocking(&args, &rt)).await?
}

fn up_blocking(args: &UpArgs, rt: &Handle) -> anyhow::Result<()> {
    let started = Instant::now();
    let lab = Lab::persistent(PREFIX).map_err(|e| anyhow::anyhow!("{e}; run `tortie lab down` first"))?;
    let url = format!("sqlite://{}/store.db", lab.dir().display());
    let plan = topology::nodes(usize::from(args.nodes));
    let bgp = !args.no_bgp;
    let tor_kind = if bgp { format!("{:?}", args.tor) } else { "forwarding only, no BGP".into() };
    eprintln!(
        "building {} nodes in two subnets behind a ToR ({tor_kind}), {:?} across subnets, in {}",
        plan.len(),
        args.encap,
        lab.dir().display()
    );

    let switches = vec![lab.bridge("swa")?, lab.bridge("swb")?];
    let tor_ns = lab.netns("tor")?;
    for (i, (sw, subnet)) in switches.iter().zip(SUBNETS).enumerate() {
        let ifname = format!("eth{i}");
        sw.attach(&tor_ns, &ifname)?;
        tor_ns.add_addr(&ifname, format!("{}/24", subnet.tor()).parse()?)?;
        if args.ipv6 {
            tor_ns.ip(&["-6", "addr", "add", &format!("{}/64", subnet.tor6()), "dev", &ifname, "nodad"])?;
        }
    }
    tor_ns.enable_forwarding()?;
    // The outside: reachable from the nodes' subnets, with no route back to the pods.
    let outside = lab.netns("outside")?;
    tortie_lab::veth((&tor_ns, "out0"), (&outside, "eth0"))?;
    tor_ns.add_addr("out0", OUTSIDE_TOR.parse()?)?;
    outside.add_addr("eth0", format!("{OUTSIDE_HOST}/24").parse()?)?;
    let tor_side = OUTSIDE_TOR.split('/').next().unwrap_or_default();
    for subnet in SUBNETS {
        outside.add_route(&format!("{}/24 via {tor_side}", subnet.host(0)))?;
    }

    let mut nodes = Vec::new();
    for n in &plan {
        let ns = lab.netns(&n.name)?;
        let sw = if n.subnet == SUBNETS[0] { &switches[0] } else { &switches[1] };
        sw.attach(&ns, "eth0")?;
        ns.add_addr("eth0", format!("{}/24", n.address).parse()?)?;
        ns.add_route(&format!("default via {}", n.subnet.tor()))?;
        if args.ipv6 {
            ns.ip(&["-6", "addr", "add", &format!("{}/64", n.address6), "dev", "eth0", "nodad"])?;
            ns.ip(&["-6", "route", "add", "default", "via", &n.subnet.tor6().to_string()])?;
        }
        nodes.push((n.clone(), ns));
    }

    rt.block_on(async {
        let kv = Datastore::open(&url).await?;
        api::apply(&kv, &parse_documents(&topology::resources(&plan, args.encap, bgp, args.ipv6))?).await?;
        anyhow::Ok(())
    })
    .context("writing the lab's resources")?;

    let speaker = Speaker {
        router_id: SUBNETS[0].tor(),
        asn: TOR_AS,
        announce: Vec::new(),
        // BFD on every node's session, as the nodes' BGPPeers ask.
        neighbors: plan
            .iter()
            .map(|n| Neighbor::new(&n.name, IpAddr::V4(n.address), topology::NODE_AS).bfd())
            .chain(
                plan.iter()
                    .filter(|_| args.ipv6)
                    .map(|n| Neighbor::new(&format!("{}_v6", n.name), IpAddr::V6(n.address6), topology::NODE_AS)),
            )
            .collect(),
    };
    let tor = match args.tor {
        _ if !bgp => None,
        TorKind::Frr => {
            let frr = Frr::start(&tor_ns, &speaker)?;
            // Equal paths through every node, as a fabric spreads service traffic.
            frr.vtysh(&format!(
                "configure terminal\nrouter bgp {TOR_AS}\naddress-family ipv4 unicast\nmaximum-paths 16"
            ))?;

            Some(Tor::Frr(Box::new(frr)))
        }
        TorKind::Bird => Some(Tor::Bird(Bird::start_router(&tor_ns, &speaker)?)),
    };

    let exe = std::env::current_exe().context("locating the tortie binary")?;
    let mut daemons = Vec::new();
    for (n, ns) in &nodes {
        let ip = format!("{}/24", n.address);
        let backend = if bgp { "bird" } else { "vxlan" };
        let env = [("TORTIE_DATASTORE", url.as_str()), ("TORTIE_NETWORKING_BACKEND", backend)];
        let ip6 = format!("{}/64", n.address6);
        let extra: &[&str] = if args.ipv6 { &["--ip6", &ip6] } else { &[] };
        daemons.push(ns.spawn_tortie_node(
            &format!("tortie-{}", n.name),
            path_str(&exe)?,
            &n.name,
            &ip,
            extra,
            &env,
        )?);
    }

    let cni = lab.dir().join("bin/tortie-cni");
    std::fs::create_dir_all(lab.dir().join("bin"))?;
    std::os::unix::fs::symlink(&exe, &cni).context("linking tortie-cni")?;
    let mut pods = Vec::new();
    for (n, ns) in &nodes {
        for p in 1..=PODS_PER_NODE {
            let name = format!("{}-pod{p}", n.name);
            let pod_ns = lab.netns(&name)?;
            let (address, address6) = cni_add(&cni, ns, &pod_ns, &n.name, &name, &url, args.ipv6)?;
            pods.push(LabPod { name, netns: pod_ns, address, address6 });
        }
    }
    let built =
        Built { lab, _switches: switches, _tor_ns: tor_ns, _outside: outside, tor, nodes, _daemons: daemons, pods };

    let (tor_routes, service) = match &built.tor {
        Some(tor) => {
            wait_sessions(&built, rt)?;
            (wait_tor_routes(tor, &url, rt)?, wait_service_route(&built, tor, args.tor))
        }
        None => (Vec::new(), String::new()),
    };
    let matrix = wait_matrix(&built.pods, false);
    let matrix6 = if args.ipv6 { wait_matrix(&built.pods, true) } else { Vec::new() };
    let outside = outside_row(&built.pods);
    for (n, ns) in &built.nodes {
        let s = rt.block_on(status::fetch(&run_dir(ns)))?;
        println!("=== {} ({}) — tortie status --run-dir {}", n.name, n.address, run_dir(ns).display());
        print!("{}", status::render(&s, now()));
        println!();
    }
    if bgp {
        println!("=== ToR ({:?}, AS {TOR_AS}) routes to the pods", args.tor);
        for r in &tor_routes {
            println!("  {r}");
        }
        println!();
        println!("=== The service range {SERVICE_RANGE} (serviceClusterIPs, from every node) at the ToR");
        for l in service.lines() {
            println!("  {l}");
        }
        println!();
    }
    println!("=== Pod-to-pod reachability (ping, one probe each)");
    print!("{}", render_matrix(&built.pods, &matrix, false));
    println!();
    if args.ipv6 {
        println!("=== Pod-to-pod reachability over IPv6 (ping -6, one probe each)");
        print!("{}", render_matrix(&built.pods, &matrix6, true));
        println!();
    }
    println!("=== Pods to the outside ({OUTSIDE_HOST}, behind the ToR, no route back to the pods: natOutgoing)");
    for (p, ok) in built.pods.iter().zip(&outside) {
        println!("  {:<12} {:<15} {}", p.name, p.address.to_string(), if *ok { "ok" } else { "FAIL" });
    }
    let failed = matrix.iter().chain(&matrix6).flatten().filter(|c| **c == Some(false)).count()
        + outside.iter().filter(|ok| !**ok).count();
    println!();
    println!(
        "Lab up in {:.1} s: {} nodes, {} pods, datastore {url}",
        started.elapsed().as_secs_f64(),
        built.nodes.len(),
        built.pods.len()
    );
    println!("  status of a node:   tortie status --run-dir {}", run_dir(&built.nodes[0].1).display());
    println!("  resources:          TORTIE_DATASTORE={url} tortie get nodes");
    println!("  a shell in a pod:   ip netns exec {} sh", built.pods[0].netns.name());
    println!("  remove everything:  tortie lab down");
    if failed > 0 {
        // Leave it up for debugging, but say so and fail.
        std::mem::forget(built);
        bail!("{failed} pings failed (see the matrix and the outside row); the lab stays up for debugging");
    }
    std::mem::forget(built);
    Ok(())
}

pub async fn down() -> anyhow::Result<()> {
    let removed = tokio::task::spawn_blocking(|| tortie_lab::leftovers::remove(PREFIX)).await??;
    if removed.is_empty() {
        println!("no lab is up");
    } else {
        println!(
            "lab removed: {} namespaces, {} processes, its run directory",
            removed.namespaces.len(),
            removed.processes.len()
        );
    }
    Ok(())
}

fn run_dir(ns: &Netns) -> PathBuf {
    ns.dir().join("run")
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().with_context(|| format!("path {} is not UTF-8", p.display()))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Runs CNI ADD for a pod, in its node's namespace, as a runtime would;
/// its IPv4 address, and its IPv6 one with `ipv6`.
fn cni_add(
    cni: &Path,
    node: &Netns,
    pod: &Netns,
    node_name: &str,
    container: &str,
    url: &str,
    ipv6: bool,
) -> anyhow::Result<(Ipv4Addr, Option<Ipv6Addr>)> {
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "tortie-lab", "type": "tortie-cni", "datastore": url, "nodename": node_name,
        "ipam": {"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": ipv6.to_string()}
    });
    let mut child = Command::new("ip")
        .args(["netns", "exec", node.name(), path_str(cni)?])
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", container)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", format!("/run/netns/{}", pod.name()))
        .env("CNI_ARGS", format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={container}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running tortie-cni")?;
    child.stdin.take().context("stdin")?.write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("tortie-cni ADD {container}: {}", String::from_utf8_lossy(&out.stderr)))?;
    if !out.status.success() {
        bail!("tortie-cni ADD {container} failed: {result}");
    }
    let address = |i: usize| result["ips"][i]["address"].as_str().map(|a| a.split('/').next().unwrap_or(a));
    let v4 = address(0).context("no address in the CNI result")?.parse()?;
    let v6 = address(1).map(str::parse).transpose()?;
    Ok((v4, v6))
}

/// Waits for every node's sessions (the mesh and the ToR) to be Established.
fn wait_sessions(built: &Built, rt: &Handle) -> anyhow::Result<()> {
    // n − 1 mesh peers + the ToR, per family.
    let families = if built.pods.iter().any(|p| p.address6.is_some()) { 2 } else { 1 };
    let per_node = built.nodes.len() * families;
    let total = (per_node * built.nodes.len()) as u64;
    let bar = indicatif::ProgressBar::new(total).with_message("BGP sessions Established");
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut up = 0;
        let mut waiting = Vec::new();
        for (n, ns) in &built.nodes {
            match rt.block_on(status::fetch(&run_dir(ns))) {
                Ok(s) => {
                    up += s.peers.iter().filter(|p| p.state == "up").count();
                    waiting.extend(
                        s.peers
                            .iter()
                            .filter(|p| p.state != "up")
                            .map(|p| format!("{} → {} ({})", n.name, p.address, p.info)),
                    );
                }
                Err(_) => waiting.push(format!("{}: daemon not answering yet", n.name)),
            }
        }
        bar.set_position(up as u64);
        if up as u64 >= total {
            bar.finish();
            return Ok(());
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!(
                "sessions not Established after {SETTLE:?}: {}; logs in {}",
                waiting.join(", "),
                built.lab.dir().display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until the ToR holds every node's blocks; returns its pod routes.
fn wait_tor_routes(tor: &Tor, url: &str, rt: &Handle) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let blocks = rt.block_on(async {
            let kv = Datastore::open(url).await?;
            anyhow::Ok(tortie_ipam::blocks(&kv).await?)
        })?;
        let routes = tor.routes()?;
        let have: Vec<String> = routes
            .iter()
            .filter(|r| r.best)
            .map(|r| format!("{} via {}", r.prefix, r.next_hop.map_or("-".into(), |h| h.to_string())))
            .collect();
        let missing: Vec<String> = blocks
            .iter()
            .map(|b| b.block.cidr.to_string())
            // A path the ToR holds but has not chosen (yet) is not what is shown.
            .filter(|c| !routes.iter().any(|r| r.best && r.prefix.to_string() == *c))
            .collect();
        if missing.is_empty() {
            return Ok(have);
        }
        if Instant::now() > deadline {
            bail!("the ToR lacks the blocks {}", missing.join(", "));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The ToR's route to the service range once it has a path through every
/// node: FRR's kernel route (one route, a next hop per node); BIRD's paths
/// in its RIB (its kernel route holds only the paths BIRD merged).
fn wait_service_route(built: &Built, tor: &Tor, kind: TorKind) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let shown = match kind {
            TorKind::Frr => built._tor_ns.ip(&["route", "show", SERVICE_RANGE]).unwrap_or_default(),
            TorKind::Bird => tor
                .routes()
                .unwrap_or_default()
                .iter()
                .filter(|r| r.prefix.to_string() == SERVICE_RANGE)
                .map(|r| {
                    format!("{} via {} (BIRD's RIB)\n", r.prefix, r.next_hop.map_or("-".into(), |h| h.to_string()))
                })
                .collect(),
        };
        if shown.matches(" via ").count() >= built.nodes.len() || Instant::now() > deadline {
            return shown;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Each pod's address of one family (IPv6 with `v6`).
fn addresses(pods: &[LabPod], v6: bool) -> Vec<IpAddr> {
    pods.iter()
        .map(|p| match (v6, p.address6) {
            (true, Some(a)) => IpAddr::V6(a),
            _ => IpAddr::V4(p.address),
        })
        .collect()
}

/// Pings every pod from every pod (in parallel) at its address of one
/// family; `None` on the diagonal.
fn matrix(pods: &[LabPod], v6: bool) -> Vec<Vec<Option<bool>>> {
    let to_all = addresses(pods, v6);
    let family = if v6 { "-6" } else { "-4" };
    std::thread::scope(|s| {
        let rows: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, from)| {
                let to_all = &to_all;
                s.spawn(move || {
                    to_all
                        .iter()
                        .enumerate()
                        .map(|(j, to)| {
                            (i != j).then(|| {
                                let to = to.to_string();
                                from.netns.exec("ping", &[family, "-n", "-q", "-c", "1", "-W", "1", &to]).is_ok()
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        rows.into_iter().map(|r| r.join().unwrap_or_default()).collect()
    })
}

/// The matrix once every pair answers (routes take a moment to spread), or
/// the last attempt.
fn wait_matrix(pods: &[LabPod], v6: bool) -> Vec<Vec<Option<bool>>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = matrix(pods, v6);
        if m.iter().flatten().all(|c| *c != Some(false)) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether each pod reaches the outside host (three tries: the NAT rule may
/// still be on its way).
fn outside_row(pods: &[LabPod]) -> Vec<bool> {
    let to = OUTSIDE_HOST.to_string();
    pods.iter()
        .map(|p| (0..3).any(|_| p.netns.exec("ping", &["-n", "-q", "-c", "1", "-W", "1", &to]).is_ok()))
        .collect()
}

fn render_matrix(pods: &[LabPod], m: &[Vec<Option<bool>>], v6: bool) -> String {
    let width = pods.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    let addrs = addresses(pods, v6);
    let aw = addrs.iter().map(|a| a.to_string().len()).max().unwrap_or(15).max(15);
    let mut out = format!("{:<w$} {:<aw$}", "from \\ to", "", w = width);
    for p in pods {
        out += &format!(" {:>w$}", p.name, w = width);
    }
    out.push('\n');
    for ((p, a), row) in pods.iter().zip(&addrs).zip(m) {
        out += &format!("{:<w$} {:<aw$}", p.name, a.to_string(), w = width);
        for cell in row {
            let mark = match cell {
                None => "-",
                Some(true) => "ok",
                Some(false) => "FAIL",
            };
            out += &format!(" {mark:>w$}", w = width);
        }
        out.push('\n');
    }
    out
}
