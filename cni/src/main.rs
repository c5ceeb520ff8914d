//! # tortie-cni — the CNI plugin binary
//!
//! Invoked by the container runtime with `CNI_COMMAND` and friends in the
//! environment and the network config on stdin; answers with JSON on
//! stdout as the CNI spec requires (errors too, with exit status 1). Logs
//! go to stderr. The work is done by the `tortie_cni` library.

use std::io::Read;

use tortie_cni::spec::{CNI_VERSION, CniError, Env, code};

fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("warn").init();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Err(e) => Err(CniError::new(code::INVALID_CONFIG, format!("cannot read stdin: {e}"))),
        Ok(_) => Env::read(|k| std::env::var(k).ok()).and_then(|env| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CniError::new(code::TRY_AGAIN, format!("cannot start a runtime: {e}")))?
                .block_on(tortie_cni::plugin::run(env, &stdin))
        }),
    };
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(String::from))
        .unwrap_or_else(|| CNI_VERSION.into());
    match outcome {
        Ok(Some(result)) => println!("{result}"),
        Ok(None) => {}
        Err(e) => {
            println!("{}", e.to_json(&version));
            std::process::exit(1);
        }
    }
}
