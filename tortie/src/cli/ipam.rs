//! `tortie ipam show | check | release`: calicoctl's IPAM commands.

use std::net::IpAddr;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets};
use ipnet::IpNet;
use tortie_ipam::{self as ipam, usage};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::resources::{Kind, Resource};

#[derive(Subcommand, Debug)]
pub enum IpamCommand {
    /// Address usage per pool (and per block, or the borrowed addresses).
    Show(ShowArgs),
    /// Compare allocations with WorkloadEndpoints: leaks and unheld addresses.
    Check,
    /// Free one address (e.g. a leak `ipam check` found).
    Release(ReleaseArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// One row per block too.
    #[arg(long)]
    show_blocks: bool,
    /// The addresses nodes borrowed from other nodes' blocks.
    #[arg(long)]
    show_borrowed: bool,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The address.
    #[arg(long)]
    ip: IpAddr,
}

fn percent(part: u128, total: u128) -> String {
    format!("{part} ({}%)", (part * 100).checked_div(total).unwrap_or(0))
}

pub async fn run(store: &Datastore, command: IpamCommand) -> anyhow::Result<()> {
    let blocks: Vec<_> = ipam::blocks(store).await?.into_iter().map(|b| b.block).collect();
    match command {
        IpamCommand::Show(args) if args.show_borrowed => {
            let mut t = Table::new();
            t.load_style(presets::ASCII_FULL);
            t.set_header(["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER"]);
            for b in usage::borrowed(&blocks) {
                t.add_row([b.ip.to_string(), b.node, b.block.to_string(), b.block_node.unwrap_or_default()]);
            }
            println!("{t}");
        }
        IpamCommand::Show(args) => {
            let pools: Vec<IpNet> = api::list(store, Kind::IpPool, None)
                .await?
                .into_iter()
                .filter_map(|r| if let Resource::IpPool(p) = r { p.spec.cidr } else { None })
                .collect();
            let mut t = Table::new();
            t.load_style(presets::ASCII_FULL);
            t.set_header(["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"]);
            for p in usage::pools(&pools, &blocks) {
                t.add_row([
                    "IP Pool".into(),
                    p.cidr.to_string(),
                    p.total.to_string(),
                    percent(p.in_use, p.total),
                    percent(p.free(), p.total),
                ]);
                if args.show_blocks {
                    for b in usage::blocks(&blocks).into_iter().filter(|b| p.cidr.contains(&b.cidr)) {
                        t.add_row([
                            "Block".into(),
                            b.cidr.to_string(),
                            b.total.to_string(),
                            percent(b.in_use, b.total),
                            percent(b.free(), b.total),
                        ]);
                    }
                }
            }
            println!("{t}");
        }
        IpamCommand::Check => {
            let endpoints: Vec<usage::EndpointAddrs> = api::list(store, Kind::WorkloadEndpoint, None)
                .await?
                .into_iter()
                .filter_map(|r| match r {
                    Resource::WorkloadEndpoint(w) => Some(usage::EndpointAddrs {
                        name: format!("{}/{}", w.metadata.namespace.unwrap_or_default(), w.metadata.name),
                        addresses: w.spec.ip_networks.iter().map(IpNet::addr).collect(),
                    }),
                    _ => None,
                })
                .collect();
            let allocated: usize = blocks.iter().map(|b| ipam::block::allocated(b).count()).sum();
            let problems = usage::check(&blocks, &endpoints);
            println!("{allocated} addresses allocated, {} WorkloadEndpoints.", endpoints.len());
            if problems.is_empty() {
                println!("IPAM is consistent: every allocation is in use and every endpoint address is held.");
            } else {
                for p in &problems {
                    println!("  {p}");
                }
                bail!("found {} IPAM problem(s)", problems.len());
            }
        }
        IpamCommand::Release(args) => {
            let attr = ipam::release_ip(store, args.ip).await.context("releasing")?;
            match attr {
                Some(a) => println!("released {} (was {})", args.ip, a.handle_id.unwrap_or_default()),
                None => bail!("{} is not allocated", args.ip),
            }
        }
    }
    Ok(())
}
