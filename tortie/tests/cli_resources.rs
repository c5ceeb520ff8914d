//! `tortie apply / get / delete` as an operator runs them, on the embedded
//! SQLite store and on a real etcd.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::Write;
use std::process::{Command, Output, Stdio};

const POOLS: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 198.18.0.0/16
  ipipMode: CrossSubnet
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
spec:
  peerIP: 192.0.2.254
  asNumber: 64567
";

struct Tortie {
    datastore: String,
    password: Option<&'static str>,
}

impl Tortie {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(args)
            .env("TORTIE_DATASTORE", &self.datastore)
            .envs(self.password.map(|p| ("TORTIE_ETCD_PASSWORD", p)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "tortie {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "tortie {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

fn exercise(t: &Tortie) {
    assert_eq!(t.ok(&["apply", "-f", "-"], Some(POOLS)), "created IPPool pool-a\ncreated BGPPeer tor\n");
    assert_eq!(t.ok(&["apply", "-f", "-"], Some(POOLS)), "updated IPPool pool-a\nupdated BGPPeer tor\n");
    let table = t.ok(&["get", "ippools", "-o", "wide"], None);
    assert!(table.contains("pool-a") && table.contains("198.18.0.0/16") && table.contains("CrossSubnet"), "{table}");
    // get -o yaml | apply round-trips.
    let yaml = t.ok(&["get", "ippool", "pool-a", "-o", "yaml"], None);
    assert!(yaml.contains("blockSize: 26"), "defaults are stored: {yaml}");
    assert_eq!(t.ok(&["apply", "-f", "-"], Some(&yaml)), "updated IPPool pool-a\n");
    let json: serde_json::Value = serde_json::from_str(&t.ok(&["get", "bgppeers", "-o", "json"], None)).unwrap();
    assert_eq!(json[0]["spec"]["asNumber"], 64567);

    // A batch with one bad document writes nothing, and says which document and field.
    let bad = format!(
        "{}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pool-c}}\nspec: {{cidr: 198.20.0.0/16, blockSize: 40}}\n",
        POOLS.replace("pool-a", "pool-b").replace("198.18.0.0/16", "198.19.0.0/16").replace("name: tor", "name: tor2")
    );
    let err = t.fails(&["apply", "-f", "-"], Some(&bad));
    assert!(err.contains("document 3 (IPPool pool-c): spec.blockSize: `40`"), "{err}");
    assert!(!t.ok(&["get", "ippools"], None).contains("pool-b"), "nothing half-applied");
    // An overlap with a stored pool is refused whole too.
    let overlap =
        POOLS.replace("pool-a", "pool-d").replace("198.18.0.0/16", "198.18.4.0/24").replace("name: tor", "name: tor3");
    let err = t.fails(&["apply", "-f", "-"], Some(&overlap));
    assert!(err.contains("overlaps IPPool `pool-a`"), "{err}");
    assert!(!t.ok(&["get", "bgppeers"], None).contains("tor3"));

    assert_eq!(t.ok(&["delete", "ippool", "pool-a"], None), "deleted IPPool pool-a\n");
    let err = t.fails(&["delete", "ippool", "pool-a"], None);
    assert!(err.contains("IPPool `pool-a` not found"), "{err}");
    let err = t.fails(&["get", "pods"], None);
    assert!(err.contains("unknown kind `pods`"), "{err}");
}

#[test]
fn apply_get_delete_on_the_embedded_store() {
    let dir = std::env::temp_dir().join(format!("tortie-cli-{}", std::process::id()));
    let t = Tortie { datastore: format!("sqlite://{}/store.db", dir.display()), password: None };
    exercise(&t);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn apply_get_delete_on_etcd() {
    let lab = tortie_lab::Lab::new("cli_etcd").unwrap();
    let etcd = tortie_lab::peers::Etcd::start(&lab).unwrap();
    exercise(&Tortie { datastore: format!("etcd://{}", etcd.endpoint()), password: None });
    // The keys are where Calico keeps them.
    assert!(etcd.get("/calico/resources/v3/projectcalico.org/bgppeers/tor").unwrap().is_some());
}

#[test]
fn apply_get_delete_on_etcd_with_tls_client_certificate_and_password() {
    let lab = tortie_lab::Lab::new("cli_etcd_tls").unwrap();
    let etcd = tortie_lab::peers::Etcd::start_secured(&lab, true, Some("pw-from-env")).unwrap();
    let tls = etcd.security().tls.clone().unwrap();
    let datastore = format!(
        "etcd://{}?ca={}&cert={}&key={}&user=root",
        etcd.endpoint(),
        tls.ca.display(),
        tls.cert.display(),
        tls.key.display()
    );
    let without_password = Tortie { datastore: datastore.clone(), password: None };
    let err = without_password.fails(&["get", "ippools"], None);
    assert!(err.contains("TORTIE_ETCD_PASSWORD is not set"), "{err}");
    exercise(&Tortie { datastore, password: Some("pw-from-env") });
}

#[test]
fn unreachable_datastore_fails_fast_with_the_url() {
    let t = Tortie { datastore: "etcd://127.0.0.1:9".into(), password: None };
    let start = std::time::Instant::now();
    let err = t.fails(&["get", "ippools"], None);
    assert!(err.contains("etcd://127.0.0.1:9 unreachable after 3 attempts"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}
