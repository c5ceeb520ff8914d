//! A real container runtime (podman 4, CNI backend) starts a container on
//! a lab node whose network is `tortie-cni`; the container reaches a pod on
//! the other node through the routes felix and BGP set up, and stopping it
//! (DEL) gives its address back.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, block_on, wait_routes};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::resources::Kind;

/// podman settings that work on this kind of machine (see LAB.md): the CNI
/// backend with our plugin directory first, cgroupfs, runc, small ulimits.
fn containers_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"[network]
network_backend = "cni"
cni_plugin_dirs = ["{d}/cni/bin", "/usr/lib/cni"]
network_config_dir = "{d}/cni/net.d"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{d}/tmp"
runtime = "runc"

[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
"#
    )
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn a_podman_container_on_tortie_cni_reaches_a_pod_on_another_node() {
    let c = Cluster::new("podman", 2);
    let b = c.pod(1, "b1", "198.18.0.65");
    let d1 = c.start(0);
    let _d2 = c.start(1);
    wait_routes(&c.nodes[0], &["blackhole 198.18.0.0/26", "198.18.0.64/26 via 192.0.2.2 dev eth0"], &d1);

    let dir = c.lab.dir().join("podman");
    for sub in ["cni/bin", "cni/net.d", "tmp", "rootfs/bin"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    // The plugin is the tortie binary under the name tortie-cni.
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tortie"), dir.join("cni/bin/tortie-cni")).unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0", "name": "tortie-net",
        "plugins": [{"type": "tortie-cni", "datastore": c.url, "nodename": "n1", "mtu": 1450,
                     "run_dir": c.nodes[0].dir().join("run")}]
    });
    std::fs::write(dir.join("cni/net.d/tortie.conflist"), conflist.to_string()).unwrap();
    std::fs::write(dir.join("containers.conf"), containers_conf(&dir)).unwrap();
    // busybox as the image's root filesystem.
    let rootfs = dir.join("rootfs");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    run(Command::new("chroot").arg(&rootfs).args(["/bin/busybox", "--install", "-s", "/bin"]));

    let out = run(Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", c.nodes[0].name()))
        .args(["podman", "--root"])
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args(["--storage-driver", "vfs", "run", "--rm", "--cap-add", "NET_RAW", "--network", "tortie-net", "--rootfs"])
        .arg(&rootfs)
        .args(["/bin/sh", "-c", &format!("ip -4 addr show eth0 && ping -c 3 -w 15 {}", b.addr)])
        .env("CONTAINERS_CONF", dir.join("containers.conf")));
    assert!(out.contains("inet 198.18.0.0/32"), "the container got n1's first address:\n{out}");
    assert!(out.contains("mtu 1450"), "{out}");
    assert!(out.contains("3 packets received"), "{out}");

    // The plugin reported both commands to n1's daemon (it does not wait
    // for the count after DEL, so the daemon may count it a moment later).
    let del_ok = "tortie_cni_requests_total{command=\"DEL\",result=\"ok\"} 1";
    common::wait_until("the DEL to be counted", || common::metrics(&c.nodes[0]).contains(del_ok));
    let m = common::metrics(&c.nodes[0]);
    assert!(m.contains("tortie_cni_requests_total{command=\"ADD\",result=\"ok\"} 1"), "{m}");
    assert!(m.contains(del_ok), "{m}");
    assert!(m.contains("tortie_cni_duration_seconds_count{command=\"ADD\"} 1"), "{m}");

    // The container is gone (--rm): its endpoint and address went with it.
    block_on(async {
        let kv = Datastore::open(&c.url).await.unwrap();
        let eps = api::list(&kv, Kind::WorkloadEndpoint, None).await.unwrap();
        assert_eq!(eps.len(), 1, "only the lab pod's endpoint is left: {eps:?}");
        let blocks = tortie_ipam::blocks(&kv).await.unwrap();
        assert!(blocks.iter().all(|b| tortie_ipam::block::allocated(&b.block).next().is_none()));
    });
}
