//! `tortie apply`, `get` and `delete`: calicoctl's resource commands.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use comfy_table::{Table, presets};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::resources::{Kind, Resource, parse_documents};

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// File with one or more YAML/JSON documents; `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    file: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// A table of the main fields.
    Table,
    /// A table with more fields.
    Wide,
    /// YAML documents (re-applicable).
    Yaml,
    /// JSON.
    Json,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Kind: ippool(s), bgppeer(s), node(s), bgpconfiguration(s), …
    kind: String,
    /// One resource by name.
    name: Option<String>,
    /// Namespace of namespaced kinds (default: all namespaces for a list, `default` for a name).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kind.
    kind: String,
    /// Name.
    name: String,
    /// Namespace of namespaced kinds (default `default`).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

fn kind(arg: &str) -> anyhow::Result<Kind> {
    Kind::from_cli(arg).with_context(|| format!("unknown kind `{arg}` (supported: {})", Kind::names().join(", ")))
}

pub async fn apply(store: &Datastore, args: ApplyArgs) -> anyhow::Result<()> {
    let text = if args.file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file))?
    };
    let resources = parse_documents(&text).with_context(|| format!("{}: nothing was applied", args.file))?;
    if resources.is_empty() {
        bail!("{}: no documents", args.file);
    }
    let applied = api::apply(store, &resources).await.with_context(|| format!("{}: nothing was applied", args.file))?;
    for a in applied {
        let name = a.namespace.map_or(a.name.clone(), |ns| format!("{ns}/{}", a.name));
        println!("{} {} {name}", if a.created { "created" } else { "updated" }, a.kind.info().name);
    }
    Ok(())
}

pub async fn get(store: &Datastore, args: GetArgs) -> anyhow::Result<()> {
    let kind = kind(&args.kind)?;
    let resources = match &args.name {
        Some(name) => vec![api::get(store, kind, args.namespace.as_deref(), name).await?],
        None => api::list(store, kind, args.namespace.as_deref()).await?,
    };
    match args.output {
        Output::Yaml => {
            let docs: Vec<String> = resources.iter().map(Resource::to_yaml).collect();
            print!("{}", docs.join("---\n"));
        }
        Output::Json => {
            let values: Vec<serde_json::Value> = resources.iter().map(Resource::to_value).collect();
            let out = if args.name.is_some() { values.into_iter().next().unwrap_or_default() } else { values.into() };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Table | Output::Wide => println!("{}", table(kind, &resources, args.output == Output::Wide)),
    }
    Ok(())
}

pub async fn delete(store: &Datastore, args: DeleteArgs) -> anyhow::Result<()> {
    let kind = kind(&args.kind)?;
    api::delete(store, kind, args.namespace.as_deref(), &args.name).await?;
    println!("deleted {} {}", kind.info().name, args.name);
    Ok(())
}

/// Columns per kind: (header, JSON pointer, wide only).
fn columns(kind: Kind) -> &'static [(&'static str, &'static str, bool)] {
    match kind {
        Kind::IpPool => &[
            ("CIDR", "/spec/cidr", false),
            ("SELECTOR", "/spec/nodeSelector", false),
            ("BLOCKSIZE", "/spec/blockSize", true),
            ("IPIPMODE", "/spec/ipipMode", true),
            ("VXLANMODE", "/spec/vxlanMode", true),
            ("NAT", "/spec/natOutgoing", true),
            ("DISABLED", "/spec/disabled", true),
        ],
        Kind::Node => &[
            ("IPV4", "/spec/bgp/ipv4Address", true),
            ("IPV6", "/spec/bgp/ipv6Address", true),
            ("ASN", "/spec/bgp/asNumber", true),
            ("RRCLUSTERID", "/spec/bgp/routeReflectorClusterID", true),
        ],
        Kind::BgpPeer => &[
            ("PEERIP", "/spec/peerIP", false),
            ("NODE", "/spec/node", false),
            ("ASN", "/spec/asNumber", false),
            ("NODESELECTOR", "/spec/nodeSelector", true),
            ("PEERSELECTOR", "/spec/peerSelector", true),
        ],
        Kind::BgpConfiguration => &[
            ("LOGSEVERITY", "/spec/logSeverityScreen", false),
            ("MESHENABLED", "/spec/nodeToNodeMeshEnabled", false),
            ("ASNUMBER", "/spec/asNumber", false),
        ],
        Kind::WorkloadEndpoint => &[
            ("WORKLOAD", "/spec/workload", false),
            ("NODE", "/spec/node", false),
            ("NETWORKS", "/spec/ipNetworks", false),
            ("INTERFACE", "/spec/interfaceName", false),
        ],
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy => {
            &[("ORDER", "/spec/order", true), ("SELECTOR", "/spec/selector", true)]
        }
        Kind::HostEndpoint => &[("NODE", "/spec/node", false), ("INTERFACE", "/spec/interfaceName", false)],
        Kind::NetworkSet | Kind::GlobalNetworkSet => &[("NETS", "/spec/nets", false)],
        Kind::BgpFilter | Kind::IpamConfig | Kind::Profile | Kind::FelixConfiguration | Kind::Tier => &[],
    }
}

fn table(kind: Kind, resources: &[Resource], wide: bool) -> Table {
    let cols: Vec<_> = columns(kind).iter().filter(|(_, _, w)| wide || !w).collect();
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    let mut header = vec![];
    if kind.info().namespaced {
        header.push("NAMESPACE");
    }
    header.push("NAME");
    header.extend(cols.iter().map(|(h, _, _)| *h));
    t.set_header(header);
    for r in resources {
        let v = r.to_value();
        let mut row = vec![];
        if kind.info().namespaced {
            row.push(r.metadata().namespace.clone().unwrap_or_default());
        }
        row.push(r.metadata().name.clone());
        for (_, pointer, _) in &cols {
            row.push(match v.pointer(pointer) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(items)) => {
                    items.iter().map(|i| i.as_str().map_or(i.to_string(), str::to_string)).collect::<Vec<_>>().join(",")
                }
                Some(other) => other.to_string(),
            });
        }
        t.add_row(row);
    }
    t
}
