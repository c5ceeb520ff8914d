//! The embedded SQLite store at its edges (issue #26): a second daemon on
//! the same run directory is refused before it touches anything; a full
//! disk (a 1 MiB tmpfs, mounted in a mount namespace of the test's own, so
//! it vanishes with it) makes writes fail with a clear error while the
//! daemon runs on, and loses nothing once there is room again; writers
//! killed in the middle of their transactions lose nothing that was
//! committed.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{Cluster, wait_until};
use tortie_lab::{Check, Daemon, Lab, wait_for};

#[test]
fn a_second_daemon_on_the_same_run_dir_is_refused_before_it_touches_anything() {
    let c = Cluster::new("runlock", 1);
    let _pod = c.pod(0, "a", "198.18.0.1");
    let first = c.start(0);
    let run = c.nodes[0].dir().join("run").display().to_string();
    let answers = || {
        Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "--run-dir", &run])
            .output()
            .unwrap()
            .status
            .success()
    };
    wait_until("the first daemon's API", answers);
    let table = || c.nodes[0].exec("nft", &["-a", "list", "table", "inet", "tortie"]).unwrap();
    let before = table();
    let second = c.start(0);
    let refused = wait_for("the second daemon to stop", std::time::Duration::from_secs(10), || {
        Ok(match second.check_running() {
            Ok(()) => Check::Pending(String::new()),
            Err(e) => Check::Done(e.to_string()),
        })
    })
    .unwrap();
    assert!(refused.contains(&format!("another tortie daemon (pid {})", first.pid())), "{refused}");
    first.check_running().unwrap();
    assert!(answers(), "the first keeps its API socket");
    assert_eq!(table(), before, "the second touched no rule");
}

/// A mount namespace of the test's own with a 1 MiB tmpfs at `dir`.
struct SmallDisk {
    holder: Daemon,
    dir: PathBuf,
}

impl SmallDisk {
    fn new(lab: &Lab) -> SmallDisk {
        let dir = lab.dir().join("small-disk");
        std::fs::create_dir_all(&dir).unwrap();
        let script = "mount -t tmpfs -o size=1m tortie-test \"$0\" && touch \"$0/mounted\" && exec sleep 100000";
        let args = ["-m", "--propagation", "private", "sh", "-c", script, &dir.display().to_string()];
        let holder = lab.spawn_host("small-disk", "unshare", &args, &[]).unwrap();
        let disk = SmallDisk { holder, dir };
        wait_until("the tmpfs", || disk.run("test", &["-e", &disk.path("mounted")]).status.success());
        disk
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Runs `program args` inside the namespace.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.pid().to_string(), "-m", "--", program]).args(args);
        c
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args).output().unwrap()
    }

    /// `tortie args` on the store in the tmpfs, `stdin` as its input.
    fn tortie(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(env!("CARGO_BIN_EXE_tortie"), args)
            .env("TORTIE_DATASTORE", format!("sqlite://{}", self.path("store.db")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}

fn set(name: &str, nets: usize) -> String {
    let nets: Vec<String> = (0..nets).map(|i| format!("240.{}.{}.0/24", i / 256, i % 256)).collect();
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: {name}}}\nspec: {{nets: [{}]}}\n",
        nets.join(", ")
    )
}

#[test]
fn a_full_disk_fails_writes_clearly_and_loses_nothing() {
    let lab = Lab::new("diskfull").unwrap();
    let node = lab.netns("n1").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
    node.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    let disk = SmallDisk::new(&lab);
    let ok = |o: Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    ok(disk.tortie(&["apply", "-f", "-"], &set("kept", 10)));
    // The daemon, on the store in the tmpfs.
    let run = node.dir().join("run").display().to_string();
    let url = format!("sqlite://{}", disk.path("store.db"));
    let args = ["-t", &disk.holder.pid().to_string(), "-m", "--", "ip", "netns", "exec", node.name()];
    let daemon_args: Vec<&str> = args
        .iter()
        .copied()
        .chain([env!("CARGO_BIN_EXE_tortie"), "node", "run", "--name", "n1", "--ip", "192.0.2.1/24", "--run-dir", &run])
        .collect();
    let daemon = lab.spawn_host("tortie-n1", "nsenter", &daemon_args, &[("TORTIE_DATASTORE", &url)]).unwrap();
    let status = || disk.tortie(&["status", "--run-dir", &run], "");
    wait_until("the daemon's API", || status().status.success());

    // Fill the disk.
    let fill = disk.run("dd", &["if=/dev/zero", &format!("of={}", disk.path("fill")), "bs=64k"]);
    assert!(String::from_utf8_lossy(&fill.stderr).contains("No space left"), "{fill:?}");
    let full = disk.tortie(&["apply", "-f", "-"], &set("too-much", 4000));
    assert!(!full.status.success(), "a write to a full disk must fail");
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(err.contains("full") && err.contains("store.db"), "names the store and the cause: {err}");
    daemon.check_running().unwrap();
    assert!(status().status.success(), "the daemon answers on a full disk");

    // Room again: everything committed is there, and writes work.
    ok(disk.run("rm", &[&disk.path("fill")]));
    ok(disk.tortie(&["apply", "-f", "-"], &set("after", 10)));
    let names = ok(disk.tortie(&["get", "globalnetworkset"], ""));
    assert!(names.contains("kept") && names.contains("after") && !names.contains("too-much"), "{names}");
    daemon.check_running().unwrap();
}

#[test]
fn writers_killed_mid_transaction_lose_nothing_committed() {
    let c = Cluster::new("sqlitekill", 1);
    let url = c.url.clone();
    // A daemon on the same store, writing its node and summaries, is killed too.
    let daemon = c.start(0);
    let run = c.nodes[0].dir().join("run").display().to_string();
    let answers = || {
        Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "--run-dir", &run])
            .output()
            .unwrap()
            .status
            .success()
    };
    wait_until("the daemon's API", answers);
    let apply = |name: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["apply", "-f", "-"])
            .env("TORTIE_DATASTORE", &url)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(set(name, 300).as_bytes()).unwrap();
        child
    };
    // Forty writers at once; every third is killed at some point of its run
    // (SIGKILL: no chance to tidy up), while the others write.
    let mut writers: Vec<(String, std::process::Child)> =
        (0..40).map(|i| (format!("w{i}"), apply(&format!("w{i}")))).collect();
    for (i, (_, child)) in writers.iter_mut().enumerate().step_by(3) {
        std::thread::sleep(std::time::Duration::from_millis(2 * i as u64));
        let _ = child.kill();
    }
    daemon.kill_now();
    let committed: Vec<String> =
        writers.into_iter().filter_map(|(name, mut c)| c.wait().unwrap().success().then_some(name)).collect();
    // The killed daemon starts again on the store it left.
    let _again = c.start(0);
    wait_until("the daemon back on the same store", answers);
    assert!(committed.len() >= 20, "most writers finish: {committed:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["get", "globalnetworkset", "-o", "json"])
        .env("TORTIE_DATASTORE", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "the store opens: {}", String::from_utf8_lossy(&out.stderr));
    let stored = String::from_utf8(out.stdout).unwrap();
    for name in &committed {
        assert!(stored.contains(&format!("\"name\": \"{name}\"")), "{name} was committed and is gone");
    }
    // What is stored is whole: every set has all its nets.
    let sets: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let items = sets.as_array().cloned().unwrap_or_else(|| sets["items"].as_array().cloned().unwrap_or_default());
    assert!(items.len() >= committed.len());
    for s in items {
        assert_eq!(s["spec"]["nets"].as_array().map(Vec::len), Some(300), "a half-written set: {s}");
    }
}
