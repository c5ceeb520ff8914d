//! `tortie policy show [ENDPOINT]`: what applies to this node's endpoints,
//! rule by rule in evaluation order, with packet counters.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tortie_felix::policy::show::EndpointView;

use super::status::{Output, get};

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// One endpoint (`namespace/name`, host endpoint name, or interface); all when absent.
    endpoint: Option<String>,
    /// The daemon's run directory.
    #[arg(long, default_value = "/var/run/tortie")]
    run_dir: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

pub async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let path = match &args.endpoint {
        Some(e) => format!("/policy?endpoint={}", e.replace('/', "%2F")),
        None => "/policy".into(),
    };
    let views: Vec<EndpointView> =
        serde_json::from_str(&get(&args.run_dir, &path).await?).context("decoding the policy view")?;
    if let Some(e) = &args.endpoint
        && views.is_empty()
    {
        anyhow::bail!("no local endpoint `{e}` on this node");
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&views)?),
        Output::Table => print!("{}", render(&views)),
    }
    Ok(())
}

fn render(views: &[EndpointView]) -> String {
    let mut out = String::new();
    for v in views {
        let _ = writeln!(out, "{} ({})", v.endpoint, v.interface);
        for (dir, rules) in [("ingress", &v.ingress), ("egress", &v.egress)] {
            if rules.is_empty() {
                let _ = writeln!(out, "  {dir}: no policy selects it; all allowed");
                continue;
            }
            let _ = writeln!(out, "  {dir}:");
            for r in rules {
                let policy = if r.policy.is_empty() { "(endpoint)" } else { &r.policy };
                let _ = writeln!(
                    out,
                    "    {policy:<32} {:<14} {:<6} {:>10} pkts {:>12} bytes",
                    r.rule, r.action, r.packets, r.bytes
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use tortie_felix::policy::show::RuleView;

    use super::*;

    #[test]
    fn rules_print_in_order_with_counters_and_unselected_directions_say_so() {
        let rule = |policy: &str, rule: &str, action: &str, packets| RuleView {
            policy: policy.into(),
            rule: rule.into(),
            action: action.into(),
            packets,
            bytes: packets * 60,
        };
        let views = vec![EndpointView {
            endpoint: "default/web".into(),
            interface: "cali1234".into(),
            ingress: vec![rule("default/allow-8080", "ingress[0]", "Allow", 3), rule("", "default deny", "Deny", 1)],
            egress: vec![],
        }];
        let text = render(&views);
        assert_eq!(
            text,
            "default/web (cali1234)\n  ingress:\n    default/allow-8080               ingress[0]     Allow           3 pkts          180 bytes\n    (endpoint)                       default deny   Deny            1 pkts           60 bytes\n  egress: no policy selects it; all allowed\n"
        );
    }
}
