//! The commands: ADD (address from IPAM → veth plumbing → WorkloadEndpoint,
//! undone in reverse on failure), DEL (idempotent, tolerates a missing
//! namespace), CHECK (against `prevResult`), STATUS, GC (release what no
//! valid attachment holds) and VERSION.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};
use tortie_store::api::{self, ApiError};
use tortie_store::kv::Op;
use tortie_store::resources::{API_VERSION, Kind, Metadata, Object, Resource, WorkloadEndpointSpec};
use tortie_store::{Datastore, StoreError};

use crate::plumb::{self, POD_GATEWAY, POD_GATEWAY_V6, PlumbError, PodLink};
use crate::spec::{
    AddResult, CNI_VERSION, CniError, Env, Interface, IpConfig, NetConf, RouteConfig, SUPPORTED_VERSIONS, code,
};
use tortie_ipam::{self as ipam, IpamError};

/// Default pod MTU.
const DEFAULT_MTU: u32 = 1500;
/// Secondary IPAM attribute: the interface (GC needs it to find the veth).
const ATTR_IFNAME: &str = "ifname";

fn store_error(e: StoreError) -> CniError {
    let code = match e {
        StoreError::Unreachable { .. } | StoreError::Unavailable { .. } => code::TRY_AGAIN,
        _ => code::DATASTORE,
    };
    CniError::new(code, format!("datastore: {e}"))
}

fn api_error(e: ApiError) -> CniError {
    match e {
        ApiError::Store(s) => store_error(s),
        other => CniError::new(code::DATASTORE, format!("datastore: {other}")),
    }
}

fn ipam_error(e: IpamError) -> CniError {
    match e {
        IpamError::Store(s) => store_error(s),
        IpamError::Api(a) => api_error(a),
        IpamError::Exhausted { .. } => CniError::new(code::IPAM_EXHAUSTED, e.to_string()),
        IpamError::Contended => CniError::new(code::TRY_AGAIN, e.to_string()),
        IpamError::Record { .. } => CniError::new(code::DATASTORE, e.to_string()),
        IpamError::Request(_) => CniError::new(code::INVALID_CONFIG, e.to_string()),
    }
}

fn plumb_error(e: PlumbError) -> CniError {
    match e {
        PlumbError::Netns { .. } => CniError::new(code::INVALID_ENV, format!("CNI_NETNS: {e}")),
        other => CniError::new(code::PLUMBING, other.to_string()),
    }
}

/// Who this invocation is about.
struct Context {
    conf: NetConf,
    env: Env,
    node: String,
    handle: String,
    host_if: String,
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `len` bytes into our buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { String::new() }
}

impl Context {
    fn new(conf: NetConf, env: Env) -> Result<Context, CniError> {
        let node = conf.nodename.clone().or_else(|| std::env::var("TORTIE_NODENAME").ok()).unwrap_or_else(hostname);
        if node.is_empty() {
            return Err(CniError::new(code::INVALID_CONFIG, "no node name: set `nodename` or TORTIE_NODENAME"));
        }
        let handle = format!("{}.{}", conf.name, env.container_id);
        let prefix = conf.interface_prefix.as_deref().unwrap_or(plumb::DEFAULT_PREFIX);
        let host_if = plumb::host_ifname(prefix, &env.container_id, &env.ifname);
        Ok(Context { conf, env, node, handle, host_if })
    }

    async fn datastore(&self) -> Result<Datastore, CniError> {
        let url = self
            .conf
            .datastore
            .clone()
            .or_else(|| std::env::var("TORTIE_DATASTORE").ok())
            .unwrap_or_else(|| tortie_store::DEFAULT_URL.into());
        Datastore::open(&url).await.map_err(store_error)
    }

    fn pod_name(&self) -> Option<&str> {
        self.env.args.get("K8S_POD_NAME").map(String::as_str)
    }

    fn namespace(&self) -> String {
        self.env.args.get("K8S_POD_NAMESPACE").cloned().unwrap_or_else(|| "default".into())
    }

    /// Calico's WorkloadEndpoint name: `<node>-k8s-<pod>-<if>` or
    /// `<node>-cni-<container>-<if>`, with `-` inside a part doubled and
    /// anything a resource name cannot hold (`_`, capitals…) made `.`-safe.
    fn endpoint_name(&self) -> String {
        let esc =
            |s: &str| {
                s.to_lowercase()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
                            c.to_string()
                        } else {
                            "--".into()
                        }
                    })
                    .collect::<String>()
            };
        let (orchestrator, workload) = match self.pod_name() {
            Some(pod) => ("k8s", pod.to_string()),
            None => ("cni", self.env.container_id.clone()),
        };
        format!("{}-{orchestrator}-{}-{}", esc(&self.node), esc(&workload), esc(&self.env.ifname))
    }
}

/// The whole plugin process: reads `CNI_*` and stdin, runs the command,
/// prints the result or the error as JSON on stdout, and returns the exit
/// status (0, or 1 with an error). Logs go to stderr. Both `tortie-cni`
/// and `tortie` invoked as `tortie-cni` (a symlink) end up here.
pub fn invoke() -> i32 {
    use std::io::Read;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_env_filter("warn").try_init();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Err(e) => Err(CniError::new(code::INVALID_CONFIG, format!("cannot read stdin: {e}"))),
        Ok(_) => Env::read(|k| std::env::var(k).ok()).and_then(|env| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CniError::new(code::TRY_AGAIN, format!("cannot start a runtime: {e}")))?
                .block_on(run(env, &stdin))
        }),
    };
    let version = serde_json::from_slice::<Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(String::from))
        .unwrap_or_else(|| CNI_VERSION.into());
    match outcome {
        Ok(Some(result)) => {
            println!("{result}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            println!("{}", e.to_json(&version));
            1
        }
    }
}

/// Runs one invocation; `Ok(Some(json))` is printed on stdout.
pub async fn run(env: Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if env.command == "VERSION" {
        let version = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(String::from))
            .unwrap_or_else(|| CNI_VERSION.into());
        return Ok(Some(json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS })));
    }
    let conf = NetConf::parse(stdin)?;
    let cx = Context::new(conf, env)?;
    match cx.env.command.as_str() {
        "ADD" => reported(&cx, add(&cx)).await.map(Some),
        "DEL" => reported(&cx, del(&cx)).await.map(|()| None),
        "CHECK" => check(&cx).await.map(|()| None),
        "STATUS" => status(&cx).await.map(|()| None),
        "GC" => gc(&cx).await.map(|()| None),
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
        )),
    }
}

/// Runs ADD or DEL and reports its outcome and duration to the node daemon.
async fn reported<T>(cx: &Context, work: impl Future<Output = Result<T, CniError>>) -> Result<T, CniError> {
    let started = std::time::Instant::now();
    let result = work.await;
    let event = crate::report::CniEvent {
        command: cx.env.command.clone(),
        ok: result.is_ok(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let run_dir = cx.conf.run_dir.clone().unwrap_or_else(|| crate::report::DEFAULT_RUN_DIR.into());
    crate::report::send(&run_dir, &event);
    result
}

impl Context {
    /// The veth to plumb (or check) for the pod's `addresses`.
    fn pod_link(&self, addresses: &[IpNet]) -> PodLink {
        PodLink {
            host_if: self.host_if.clone(),
            pod_if: self.env.ifname.clone(),
            netns: self.env.netns.clone().unwrap_or_default(),
            v4: addresses.iter().find_map(|a| match a.addr() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            }),
            v6: addresses.iter().find_map(|a| match a.addr() {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => None,
            }),
            mtu: self.conf.mtu.unwrap_or(DEFAULT_MTU),
        }
    }
}

/// The WorkloadEndpoint of this attachment, for `addresses`.
fn endpoint(cx: &Context, addresses: &[IpNet]) -> Resource {
    let mac = addresses.first().map(|a| plumb::mac_string(&plumb::pod_mac(a.addr()))).unwrap_or_default();
    Resource::WorkloadEndpoint(Object {
        api_version: API_VERSION.into(),
        kind: "WorkloadEndpoint".into(),
        metadata: Metadata { name: cx.endpoint_name(), namespace: Some(cx.namespace()), ..Metadata::default() },
        spec: WorkloadEndpointSpec {
            orchestrator: if cx.pod_name().is_some() { "k8s" } else { "cni" }.into(),
            node: cx.node.clone(),
            container_id: cx.env.container_id.clone(),
            pod: cx.pod_name().unwrap_or_default().into(),
            endpoint: cx.env.ifname.clone(),
            ip_networks: addresses.to_vec(),
            profiles: if cx.pod_name().is_some() { vec![format!("kns.{}", cx.namespace())] } else { Vec::new() },
            interface_name: cx.host_if.clone(),
            mac,
            ..WorkloadEndpointSpec::default()
        },
    })
}

/// ADD: an address of each family the configuration asks for (IPv4, and
/// IPv6 in a dual-stack cluster), all taken in one transaction with the
/// WorkloadEndpoint (felix routes to the interface as soon as it appears);
/// then the veth is plumbed. A failure undoes it all (one handle
/// holds every address); a crash in between is GC's to collect.
async fn add(cx: &Context) -> Result<Value, CniError> {
    // Refuse a name or namespace the datastore would not take before writing anything.
    endpoint(cx, &[IpNet::from(IpAddr::from([0, 0, 0, 0]))])
        .checked(1)
        .map_err(|e| CniError::new(code::INVALID_ENV, e.to_string()))?;
    let families = cx.conf.families(&cx.env.args)?;
    let kv = cx.datastore().await?;
    // A repeated ADD for the same container starts over rather than taking a second address.
    ipam::release_handle(&kv, &cx.handle).await.map_err(ipam_error)?;
    let mut attrs = BTreeMap::from([(ATTR_IFNAME.to_string(), cx.env.ifname.clone())]);
    if let Some(pod) = cx.pod_name() {
        attrs.insert("pod".into(), pod.into());
        attrs.insert("namespace".into(), cx.namespace());
    }
    // Every family's address in one transaction, with the WorkloadEndpoint.
    let requests: Vec<ipam::Request> = families
        .iter()
        .map(|(family, pools)| ipam::Request {
            node: cx.node.clone(),
            handle: cx.handle.clone(),
            purpose: ipam::Purpose::Workload,
            family: *family,
            attrs: attrs.clone(),
            pools: pools.clone(),
        })
        .collect();
    let write_endpoint = |addresses: &[IpNet]| {
        let r = endpoint(cx, addresses);
        vec![Op::Put { key: r.key(), value: r.to_json(), lease: None }]
    };
    // All or nothing: a refusal leaves nothing to undo.
    let addresses = ipam::assign_all(&kv, &requests, write_endpoint).await.map_err(ipam_error)?;
    let link = cx.pod_link(&addresses);
    if let Err(e) = plumb::add(&link).await {
        ipam::release_handle(&kv, &cx.handle).await.ok();
        delete_endpoint(&kv, cx).await.ok();
        return Err(plumb_error(e));
    }
    let result = AddResult {
        cni_version: cx.conf.cni_version.clone(),
        interfaces: vec![
            Interface { name: cx.host_if.clone(), mac: plumb::mac_string(&plumb::HOST_MAC), sandbox: None },
            Interface {
                name: cx.env.ifname.clone(),
                mac: plumb::mac_string(&link.mac()),
                sandbox: Some(link.netns.clone()),
            },
        ],
        ips: addresses
            .iter()
            .map(|a| IpConfig { address: a.to_string(), gateway: Some(gateway(a).to_string()), interface: 1 })
            .collect(),
        routes: addresses
            .iter()
            .map(|a| RouteConfig {
                dst: if a.addr().is_ipv4() { "0.0.0.0/0" } else { "::/0" }.into(),
                gw: Some(gateway(a).to_string()),
            })
            .collect(),
        dns: json!({}),
    };
    serde_json::to_value(result).map_err(|e| CniError::new(code::DATASTORE, e.to_string()))
}

/// The pod's gateway for `address`'s family.
fn gateway(address: &IpNet) -> IpAddr {
    match address {
        IpNet::V4(_) => IpAddr::V4(POD_GATEWAY),
        IpNet::V6(_) => IpAddr::V6(POD_GATEWAY_V6),
    }
}

async fn delete_endpoint(kv: &Datastore, cx: &Context) -> Result<(), CniError> {
    match api::delete(kv, Kind::WorkloadEndpoint, Some(&cx.namespace()), &cx.endpoint_name()).await {
        Ok(()) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(api_error(e)),
    }
}

async fn del(cx: &Context) -> Result<(), CniError> {
    let kv = cx.datastore().await?;
    // Removing the host end removes the pod end; a namespace already gone took both with it.
    plumb::del(&cx.host_if).await.map_err(plumb_error)?;
    ipam::release_handle(&kv, &cx.handle).await.map_err(ipam_error)?;
    delete_endpoint(&kv, cx).await
}

async fn check(cx: &Context) -> Result<(), CniError> {
    let prev: AddResult = cx
        .conf
        .prev_result
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "CHECK needs the ADD result as `prevResult`"))?;
    let addresses: Vec<IpNet> = prev.ips.iter().filter_map(|ip| ip.address.parse().ok()).collect();
    if addresses.is_empty() {
        return Err(CniError::new(code::INVALID_CONFIG, "prevResult has no address"));
    }
    let link = cx.pod_link(&addresses);
    let mut problems = plumb::check(&link).await.map_err(plumb_error)?;
    let kv = cx.datastore().await?;
    let blocks = ipam::blocks(&kv).await.map_err(ipam_error)?;
    for address in &addresses {
        let held = blocks.iter().any(|b| {
            ipam::block::allocated(&b.block)
                .any(|(ip, a)| ip == address.addr() && a.handle_id.as_deref() == Some(&cx.handle))
        });
        if !held {
            problems.push(format!("IPAM does not hold {address} for {}", cx.handle));
        }
    }
    if api::get(&kv, Kind::WorkloadEndpoint, Some(&cx.namespace()), &cx.endpoint_name()).await.is_err() {
        problems.push(format!("WorkloadEndpoint {} is missing", cx.endpoint_name()));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(CniError {
        code: code::CHECK_FAILED,
        msg: "the pod's network is not as ADD left it".into(),
        details: problems.join("; "),
    })
}

async fn status(cx: &Context) -> Result<(), CniError> {
    let not_ready = |why: String| CniError::new(code::NOT_AVAILABLE, why);
    let kv = cx.datastore().await.map_err(|e| not_ready(e.msg))?;
    for (family, requested) in cx.conf.families(&cx.env.args).map_err(|e| not_ready(e.msg))? {
        let pools = ipam::pools_for(&kv, &cx.node, ipam::Purpose::Workload, family, &requested)
            .await
            .map_err(|e| not_ready(e.to_string()))?;
        if pools.is_empty() {
            return Err(not_ready(format!("no enabled {family} IPPool for workloads selects node {}", cx.node)));
        }
    }
    Ok(())
}

async fn gc(cx: &Context) -> Result<(), CniError> {
    let valid: HashSet<String> = cx
        .conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "GC needs `cni.dev/valid-attachments`"))?
        .iter()
        .map(|a| format!("{}.{}", cx.conf.name, a.container_id))
        .collect();
    let kv = cx.datastore().await?;
    // Interfaces of the stale allocations, read before they are released.
    let mut stale_ifs: BTreeMap<String, String> = BTreeMap::new();
    for b in ipam::blocks(&kv).await.map_err(ipam_error)? {
        for (_, a) in ipam::block::allocated(&b.block) {
            if let (Some(h), Some(i)) = (a.handle_id.as_ref(), a.secondary.get(ATTR_IFNAME)) {
                stale_ifs.insert(h.clone(), i.clone());
            }
        }
    }
    let released = ipam::gc(&kv, &cx.node, &cx.conf.name, &valid).await.map_err(ipam_error)?;
    let prefix = cx.conf.interface_prefix.as_deref().unwrap_or(plumb::DEFAULT_PREFIX);
    for handle in &released {
        let container = handle.strip_prefix(&format!("{}.", cx.conf.name)).unwrap_or(handle);
        if let Some(ifname) = stale_ifs.get(handle) {
            plumb::del(&plumb::host_ifname(prefix, container, ifname)).await.map_err(plumb_error)?;
        }
    }
    // Endpoints of this node whose container is no longer valid.
    for r in api::list(&kv, Kind::WorkloadEndpoint, None).await.map_err(api_error)? {
        let Resource::WorkloadEndpoint(w) = r else { continue };
        let handle = format!("{}.{}", cx.conf.name, w.spec.container_id);
        // Also an endpoint whose allocation is already gone (a crash between the two).
        if w.spec.node == cx.node && (released.contains(&handle) || !valid.contains(&handle)) {
            let ns = w.metadata.namespace.as_deref();
            match api::delete(&kv, Kind::WorkloadEndpoint, ns, &w.metadata.name).await {
                Ok(()) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(api_error(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_are_valid_resource_names_whatever_the_runtime_calls_the_pod() {
        let conf = NetConf { name: "net".into(), nodename: Some("node-1".into()), ..NetConf::default() };
        let mut env = Env { container_id: "C0FFEE".into(), ifname: "eth0".into(), ..Env::default() };
        let cx = Context::new(conf.clone(), env.clone()).unwrap();
        assert_eq!(cx.endpoint_name(), "node--1-cni-c0ffee-eth0");
        env.args.insert("K8S_POD_NAME".into(), "Musing_Lamarr".into());
        let cx = Context::new(conf, env).unwrap();
        assert_eq!(cx.endpoint_name(), "node--1-k8s-musing--lamarr-eth0");
        assert_eq!(cx.handle, "net.C0FFEE");
    }
}
