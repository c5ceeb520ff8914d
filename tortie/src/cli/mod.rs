//! The command line: global options and the subcommands.

mod ipam;
mod policy;
mod resources;
pub mod status;

use crate::node;

use clap::{Parser, Subcommand};
use tortie_store::{DEFAULT_URL, Datastore};

/// Layer-3 pod networking with an embedded BGP speaker.
#[derive(Parser, Debug)]
#[command(name = "tortie", version, about, long_about = None)]
pub struct Cli {
    /// Datastore: sqlite:///path/to/store.db or etcd://host:port[,host:port…]
    #[arg(long, global = true, env = "TORTIE_DATASTORE", default_value = DEFAULT_URL)]
    datastore: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or update resources from a YAML or JSON file (`-` for stdin).
    Apply(resources::ApplyArgs),
    /// Show resources of a kind, or one by name.
    Get(resources::GetArgs),
    /// Delete one resource.
    Delete(resources::DeleteArgs),
    /// The node daemon.
    #[command(subcommand)]
    Node(NodeCommand),
    /// IP address management: usage, consistency, release.
    #[command(subcommand)]
    Ipam(ipam::IpamCommand),
    /// This node's BGP sessions, as `calicoctl node status` shows them.
    Status(status::StatusArgs),
    /// BGP in depth: peers and routes.
    #[command(subcommand)]
    Bgp(BgpCommand),
    /// A whole cluster in network namespaces on this machine.
    #[command(subcommand)]
    Lab(LabCommand),
    /// A dedicated route reflector.
    #[command(subcommand)]
    Reflector(ReflectorCommand),
    /// Network policy on this node.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// BFD (RFC 5880): the sessions, and the helper that runs them.
    #[command(subcommand)]
    Bfd(BfdCommand),
}

#[derive(Subcommand, Debug)]
enum BfdCommand {
    /// Each session: state, intervals, last diagnostic.
    Show(status::BfdShowArgs),
    /// The helper process the node daemon starts (it outlives a daemon restart).
    Run(BfdRunArgs),
}

#[derive(clap::Args, Debug)]
struct BfdRunArgs {
    /// The node daemon's run directory (the helper's socket lives there).
    #[arg(long, default_value = "/var/run/tortie")]
    run_dir: std::path::PathBuf,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// What applies to this node's endpoints, rule by rule, with packet counters.
    Show(policy::ShowArgs),
}

#[derive(Subcommand, Debug)]
enum ReflectorCommand {
    /// Run a route reflector with no data plane (peers from the datastore).
    Run(node::ReflectorArgs),
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Build and start the lab: nodes in two subnets, a ToR, pods; show status and reachability.
    Up(crate::lab::UpArgs),
    /// Remove every namespace, process and file of the lab.
    Down,
}

#[derive(Subcommand, Debug)]
enum BgpCommand {
    /// Peers in depth: capabilities, timers, counters, last error.
    Peers(status::PeersArgs),
    /// The Loc-RIB: best paths and their attributes.
    Routes(status::RoutesArgs),
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Run the node daemon: felix, the BGP speaker and their peers.
    Run(node::RunArgs),
    /// This node's BGP sessions (same as `tortie status`).
    Status(status::StatusArgs),
}

/// Runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let open = || async {
        Datastore::open(&cli.datastore).await.map_err(|e| anyhow::anyhow!("cannot open the datastore: {e}"))
    };
    match cli.command {
        Command::Apply(args) => resources::apply(&open().await?, args).await,
        Command::Get(args) => resources::get(&open().await?, args).await,
        Command::Delete(args) => resources::delete(&open().await?, args).await,
        Command::Node(NodeCommand::Run(args)) => node::run(open().await?, args).await,
        Command::Ipam(cmd) => ipam::run(&open().await?, cmd).await,
        Command::Status(args) | Command::Node(NodeCommand::Status(args)) => status::status(args, open).await,
        Command::Bgp(BgpCommand::Peers(args)) => status::peers(args).await,
        Command::Bgp(BgpCommand::Routes(args)) => status::routes(args).await,
        Command::Lab(LabCommand::Up(args)) => crate::lab::up(args).await,
        Command::Lab(LabCommand::Down) => crate::lab::down().await,
        Command::Reflector(ReflectorCommand::Run(args)) => node::run_reflector(open().await?, args).await,
        Command::Policy(PolicyCommand::Show(args)) => policy::show(args).await,
        Command::Bfd(BfdCommand::Show(args)) => status::bfd_show(args).await,
        Command::Bfd(BfdCommand::Run(args)) => {
            drop(crate::node::settings::init_logs(false));
            crate::node::bfd::run_helper(&args.run_dir).await
        }
    }
}
