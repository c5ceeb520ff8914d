//! One conformance suite, run against both engines: the embedded SQLite
//! file and a real etcd-server started by the lab harness.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use tortie_store::kv::{Compare, EventKind, Kv, Op, Txn};
use tortie_store::syncer::Syncer;
use tortie_store::{Datastore, StoreError};

const PROCESS_ENV: &str = "TORTIE_CONFORMANCE_CHILD";

/// A fresh SQLite file, removed afterwards.
struct SqliteFile(std::path::PathBuf);

impl SqliteFile {
    fn new(name: &str) -> SqliteFile {
        let dir = std::env::temp_dir().join(format!("tortie-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        SqliteFile(dir)
    }

    fn url(&self) -> String {
        format!("sqlite://{}/store.db", self.0.display())
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let file = super::SqliteFile::new(stringify!($name));
                    super::$name(&file.url()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let lab = tortie_lab::Lab::new(concat!("store_", stringify!($name))).unwrap();
                    let etcd = tokio::task::block_in_place(|| tortie_lab::peers::Etcd::start(&lab)).unwrap();
                    super::$name(&format!("etcd://{}", etcd.endpoint())).await;
                    drop(etcd);
                }
            )*
        }
    };
}

conformance!(
    keys_carry_etcd_revisions,
    transactions_compare_mod_revision,
    cas_from_many_tasks_loses_no_update,
    cas_from_several_processes_loses_no_update,
    watch_delivers_in_order_and_resumes_from_a_revision,
    compaction_tells_the_watcher_to_resync,
    expired_lease_deletes_its_keys_and_a_kept_one_survives,
    syncer_serves_reads_from_memory_and_tells_only_the_parts_concerned,
    syncer_cache_equals_the_store_under_concurrent_writers,
    create_makes_a_resource_only_where_there_is_none,
    updates_of_one_resource_from_many_writers_lose_no_field,
);

async fn open(url: &str) -> Datastore {
    Datastore::open(url).await.unwrap()
}

async fn keys_carry_etcd_revisions(url: &str) {
    let s = open(url).await;
    let r1 = s.put("/t/a", b"1".to_vec()).await.unwrap();
    let r2 = s.put("/t/b", b"2".to_vec()).await.unwrap();
    let r3 = s.put("/t/a", b"3".to_vec()).await.unwrap();
    assert_eq!((r2, r3), (r1 + 1, r1 + 2), "one revision per write");
    let a = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!((a.value.as_slice(), a.create_revision, a.mod_revision, a.version), (&b"3"[..], r1, r3, 2));
    s.put("/t2/c", b"x".to_vec()).await.unwrap();
    let range = s.range("/t/").await.unwrap();
    assert_eq!(range.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), vec!["/t/a", "/t/b"]);
    assert_eq!(range.revision, r3 + 1);
    let r5 = s.delete("/t/a").await.unwrap();
    assert_eq!(r5, r3 + 2);
    assert_eq!(s.get("/t/a").await.unwrap(), None);
    assert_eq!(s.delete("/t/missing").await.unwrap(), r5, "deleting nothing changes no revision");
    let again = s.put("/t/a", b"4".to_vec()).await.unwrap();
    let a = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.version), (again, 1), "a re-created key starts over");
}

async fn transactions_compare_mod_revision(url: &str) {
    let s = open(url).await;
    let put = |v: &str| Op::Put { key: "/t/k".into(), value: v.as_bytes().to_vec(), lease: None };
    // Create only if absent (mod_revision 0).
    let create =
        Txn { compares: vec![Compare::ModRevision("/t/k".into(), 0)], success: vec![put("one")], ..Txn::default() };
    assert!(s.txn(create.clone()).await.unwrap().succeeded);
    assert!(!s.txn(create).await.unwrap().succeeded, "second create must fail");
    let rev = s.get("/t/k").await.unwrap().unwrap().mod_revision;
    let stale = Txn {
        compares: vec![Compare::ModRevision("/t/k".into(), rev - 1)],
        success: vec![put("stale")],
        failure: vec![Op::Put { key: "/t/lost".into(), value: b"yes".to_vec(), lease: None }],
    };
    let resp = s.txn(stale).await.unwrap();
    assert!(!resp.succeeded);
    assert_eq!(s.get("/t/k").await.unwrap().unwrap().value, b"one");
    assert_eq!(s.get("/t/lost").await.unwrap().unwrap().value, b"yes", "failure branch ran");
    let fresh = Txn {
        compares: vec![Compare::ModRevision("/t/k".into(), rev)],
        success: vec![put("two"), Op::Delete { key: "/t/lost".into() }],
        ..Txn::default()
    };
    let resp = s.txn(fresh).await.unwrap();
    assert!(resp.succeeded);
    let k = s.get("/t/k").await.unwrap().unwrap();
    assert_eq!((k.value.as_slice(), k.mod_revision), (&b"two"[..], resp.revision), "both ops share one revision");
    assert_eq!(s.get("/t/lost").await.unwrap(), None);
}

/// Adds 1 to the counter at `key` with a compare-and-swap loop.
async fn increment(s: &Datastore, key: &str) {
    loop {
        let current = s.get(key).await.unwrap();
        let (rev, n) = current
            .map_or((0, 0), |kv| (kv.mod_revision, String::from_utf8(kv.value).unwrap().parse::<u64>().unwrap()));
        let txn = Txn {
            compares: vec![Compare::ModRevision(key.into(), rev)],
            success: vec![Op::Put { key: key.into(), value: (n + 1).to_string().into_bytes(), lease: None }],
            ..Txn::default()
        };
        if s.txn(txn).await.unwrap().succeeded {
            return;
        }
    }
}

async fn counter(s: &Datastore, key: &str) -> u64 {
    String::from_utf8(s.get(key).await.unwrap().unwrap().value).unwrap().parse().unwrap()
}

async fn cas_from_many_tasks_loses_no_update(url: &str) {
    let s = Arc::new(open(url).await);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    increment(&s, "/t/counter").await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(counter(&s, "/t/counter").await, 320);
}

async fn cas_from_several_processes_loses_no_update(url: &str) {
    // This test binary, re-run as a worker: see `child_process_worker` below.
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_process_worker", "--nocapture", "--test-threads", "1"])
                .env(PROCESS_ENV, url)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a worker process failed");
    }
    assert_eq!(counter(&open(url).await, "/t/shared-counter").await, 4 * 30);
}

/// Not a test of its own: the worker that `cas_from_several_processes_loses_no_update`
/// starts in child processes (it does nothing unless the parent set the variable).
#[tokio::test]
async fn child_process_worker() {
    let Ok(url) = std::env::var(PROCESS_ENV) else { return };
    let s = open(&url).await;
    for _ in 0..30 {
        increment(&s, "/t/shared-counter").await;
    }
}

async fn next_batch(w: &mut tortie_store::kv::Watch) -> Vec<tortie_store::kv::Event> {
    tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("watch event within 10 s").unwrap().unwrap()
}

async fn watch_delivers_in_order_and_resumes_from_a_revision(url: &str) {
    let s = open(url).await;
    let start = s.range("/w/").await.unwrap().revision + 1;
    let mut w = s.watch("/w/", start).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..20 {
        revs.push(s.put(&format!("/w/k{}", i % 5), i.to_string().into_bytes()).await.unwrap());
        s.put("/other/noise", b"x".to_vec()).await.unwrap();
    }
    let deleted = s.delete("/w/k0").await.unwrap();
    let txn_rev = s
        .txn(Txn {
            success: vec![
                Op::Put { key: "/w/t1".into(), value: b"a".to_vec(), lease: None },
                Op::Put { key: "/w/t2".into(), value: b"b".to_vec(), lease: None },
            ],
            ..Txn::default()
        })
        .await
        .unwrap()
        .revision;
    let mut seen = Vec::new();
    while seen.len() < 23 {
        for e in next_batch(&mut w).await {
            assert!(e.kv.key.starts_with("/w/"), "prefix only: {}", e.kv.key);
            seen.push((e.kind, e.kv.key, e.kv.mod_revision));
        }
    }
    let puts: Vec<i64> = seen[..20].iter().map(|(_, _, r)| *r).collect();
    assert_eq!(puts, revs, "in revision order, nothing missing");
    assert_eq!(seen[20], (EventKind::Delete, "/w/k0".to_string(), deleted));
    assert_eq!((seen[21].2, seen[22].2), (txn_rev, txn_rev));
    // Resume from the middle: exactly the tail, again.
    let mut resumed = s.watch("/w/", revs[10]).await.unwrap();
    let first = next_batch(&mut resumed).await;
    assert_eq!(first[0].kv.mod_revision, revs[10]);
    assert_eq!(first[0].kv.value, b"10");
}

async fn compaction_tells_the_watcher_to_resync(url: &str) {
    let s = open(url).await;
    let first = s.put("/c/a", b"1".to_vec()).await.unwrap();
    for i in 0..5 {
        s.put("/c/a", vec![i]).await.unwrap();
    }
    let last = s.put("/c/a", b"end".to_vec()).await.unwrap();
    s.compact(last).await.unwrap();
    let mut w = s.watch("/c/", first).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap();
    match got {
        Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, last),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // The resync path: a fresh list, then a watch from its revision, works.
    let range = s.range("/c/").await.unwrap();
    assert_eq!(range.kvs[0].value, b"end");
    let mut w = s.watch("/c/", range.revision + 1).await.unwrap();
    let rev = s.put("/c/a", b"after".to_vec()).await.unwrap();
    assert_eq!(next_batch(&mut w).await[0].kv.mod_revision, rev);
}

async fn expired_lease_deletes_its_keys_and_a_kept_one_survives(url: &str) {
    let s = open(url).await;
    // etcd's minimum TTL is about 2 s; use it for both engines.
    let ttl = Duration::from_secs(2);
    // Timed from before the grant: the lease cannot expire sooner than its TTL after this.
    let start = Instant::now();
    let (doomed, kept) = (s.grant_lease(ttl).await.unwrap(), s.grant_lease(ttl).await.unwrap());
    let put = |key: &str, lease| Op::Put { key: key.into(), value: b"alive".to_vec(), lease: Some(lease) };
    let rev = s
        .txn(Txn { success: vec![put("/l/doomed", doomed), put("/l/kept", kept)], ..Txn::default() })
        .await
        .unwrap()
        .revision;
    let mut w = s.watch("/l/", rev + 1).await.unwrap();
    let deleted = loop {
        s.keep_alive(kept).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), w.next()).await {
            Ok(Some(Ok(batch))) => break batch,
            Ok(other) => panic!("watch ended: {other:?}"),
            Err(_) => assert!(start.elapsed() < Duration::from_secs(15), "lease never expired"),
        }
    };
    assert_eq!(deleted.len(), 1);
    assert_eq!((deleted[0].kind, deleted[0].kv.key.as_str()), (EventKind::Delete, "/l/doomed"));
    assert!(start.elapsed() >= Duration::from_millis(1500), "expired too early: {:?}", start.elapsed());
    assert!(s.get("/l/kept").await.unwrap().is_some(), "kept alive");
    assert!(matches!(s.keep_alive(doomed).await, Err(StoreError::LeaseNotFound(_))));
    s.revoke_lease(kept).await.unwrap();
    assert_eq!(s.get("/l/kept").await.unwrap(), None, "revoking deletes the lease's keys");
    let bad = Op::Put { key: "/l/x".into(), value: vec![], lease: Some(doomed) };
    assert!(matches!(s.txn(Txn { success: vec![bad], ..Txn::default() }).await, Err(StoreError::LeaseNotFound(_))));
}

#[tokio::test]
async fn unreachable_etcd_is_a_clear_error_after_bounded_retries() {
    // Port 9 on loopback (discard): nothing listens there in the test namespace.
    let start = Instant::now();
    let err = Datastore::open("etcd://127.0.0.1:9").await.err().expect("must fail");
    assert!(matches!(err, StoreError::Unreachable { attempts: 3, .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(15), "bounded: {:?}", start.elapsed());
}

#[tokio::test]
async fn bad_urls_name_the_problem() {
    for (url, needle) in [
        ("mysql://x", "use sqlite:///path"),
        ("etcd://nohost", "not host:port"),
        ("etcd://h:1?colour=red", "unknown option `colour`"),
        ("etcd://h:1?cert=/a", "cert and key go together"),
        ("sqlite://", "no file path"),
    ] {
        let err = Datastore::open(url).await.err().expect(url).to_string();
        assert!(err.contains(needle) && err.contains(url), "{url}: {err}");
    }
}

#[tokio::test]
async fn unusable_sqlite_path_names_the_file() {
    let err = Datastore::open("sqlite:///proc/tortie-cannot-exist/store.db").await.err().expect("must fail");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Sqlite { .. }) && text.contains("/proc/tortie-cannot-exist"), "{text}");
}

/// Waits for a notice (at most 10 s).
async fn told(changes: &mut tortie_store::syncer::Changes) {
    let told = tokio::time::timeout(Duration::from_secs(10), changes.changed()).await;
    assert!(told.is_ok_and(|running| running), "no notice within 10 s");
}

async fn syncer_serves_reads_from_memory_and_tells_only_the_parts_concerned(url: &str) {
    let store = open(url).await;
    store.put("/s/a/1", b"1".to_vec()).await.unwrap();
    let syncer = Syncer::start(store.clone(), "/s/").await.unwrap();
    let (mut a, mut b) = (syncer.changes(&["/s/a/"]), syncer.changes(&["/s/b/", "/s/c/"]));
    assert_eq!(syncer.range("/s/a/").await.unwrap().kvs, store.range("/s/a/").await.unwrap().kvs);

    // Another client writes under /s/a/: that part is told, the other is not.
    let rev = store.put("/s/a/2", b"2".to_vec()).await.unwrap();
    told(&mut a).await;
    assert!(tokio::time::timeout(Duration::from_millis(300), b.changed()).await.is_err(), "b reads none of it");
    let cached = syncer.get("/s/a/2").await.unwrap().unwrap();
    assert_eq!((cached.value.as_slice(), cached.mod_revision), (&b"2"[..], rev));
    store.delete("/s/a/1").await.unwrap();
    told(&mut a).await;
    assert_eq!(syncer.get("/s/a/1").await.unwrap(), None);
    assert_eq!(syncer.range("/s/a/").await.unwrap().kvs.len(), 1);

    // A write through the syncer is read back at once, and the part that reads it is told.
    let rev = syncer.put("/s/c/x", b"x".to_vec()).await.unwrap();
    assert_eq!(syncer.get("/s/c/x").await.unwrap().map(|kv| kv.mod_revision), Some(rev));
    assert!(syncer.revision() >= rev);
    told(&mut b).await;

    // Outside its prefix the syncer reads the store.
    store.put("/elsewhere/k", b"k".to_vec()).await.unwrap();
    assert!(syncer.get("/elsewhere/k").await.unwrap().is_some());
    assert_eq!(syncer.range("/elsewhere/").await.unwrap().kvs.len(), 1);
}

async fn syncer_cache_equals_the_store_under_concurrent_writers(url: &str) {
    let store = open(url).await;
    let syncer = Syncer::start(store.clone(), "/w/").await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u8 {
                let key = format!("/w/{}", (t * 7 + usize::from(i)) % 20);
                match i % 3 {
                    0 => s.delete(&key).await.unwrap(),
                    _ => s.put(&key, vec![t as u8, i]).await.unwrap(),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = store.put("/w/last", b"end".to_vec()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while syncer.revision() < last {
        assert!(Instant::now() < deadline, "the syncer never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(syncer.range("/w/").await.unwrap().kvs, store.range("/w/").await.unwrap().kvs);
}

/// `api::update` from several writers at once, each changing its own field
/// (a label) of one Node, half of them reading through a syncer's cache
/// (as a node's tunnel tasks do) and half straight from the store: every
/// writer's last value is there at the end. A read followed by `apply`
/// loses some (each writes back the fields it read).
async fn updates_of_one_resource_from_many_writers_lose_no_field(url: &str) {
    use tortie_store::api;
    use tortie_store::resources::{Kind, Resource, parse_documents};
    let store = open(url).await;
    let node = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\nspec: {}\n";
    api::apply(&store, &parse_documents(node).unwrap()).await.unwrap();
    let syncer = Syncer::start(store.clone(), "/calico/").await.unwrap();
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let (store, syncer) = (store.clone(), syncer.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let label = |r: &mut Resource| {
                    r.metadata_mut().labels.insert(format!("writer{writer}"), format!("round{round}"));
                    true
                };
                if writer % 2 == 0 {
                    api::update(&syncer, Kind::Node, None, "n1", label).await.unwrap();
                } else {
                    api::update(&store, Kind::Node, None, "n1", label).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let labels = api::get(&store, Kind::Node, None, "n1").await.unwrap().metadata().labels.clone();
    let want: std::collections::BTreeMap<String, String> =
        (0..4).map(|w| (format!("writer{w}"), "round9".to_string())).collect();
    assert_eq!(labels, want);

    // What comes back is the resource as written, at its revision.
    let written = api::update(&store, Kind::Node, None, "n1", |r| {
        r.metadata_mut().labels.insert("last".into(), "yes".into());
        true
    })
    .await
    .unwrap();
    let stored = store.get(&Kind::Node.key(None, "n1")).await.unwrap().unwrap().mod_revision;
    assert_eq!(written.metadata().resource_version, Some(stored.to_string()));
    assert_eq!(written.metadata().labels.get("last").map(String::as_str), Some("yes"));
    // An update cannot rename: refused, naming the resource.
    let renamed = api::update(&store, Kind::Node, None, "n1", |r| {
        r.metadata_mut().name = "n9".into();
        true
    })
    .await
    .unwrap_err();
    assert!(renamed.to_string().contains("`n1` cannot be renamed"), "{renamed}");
    // A change that changes nothing writes nothing.
    let before = store.get(&Kind::Node.key(None, "n1")).await.unwrap().unwrap().mod_revision;
    api::update(&store, Kind::Node, None, "n1", |_| false).await.unwrap();
    assert_eq!(store.get(&Kind::Node.key(None, "n1")).await.unwrap().unwrap().mod_revision, before);
    // No such resource: named.
    let missing = api::update(&store, Kind::Node, None, "n2", |_| true).await.unwrap_err();
    assert!(missing.to_string().contains("n2"), "{missing}");
}

async fn create_makes_a_resource_only_where_there_is_none(url: &str) {
    use tortie_store::api::{self, ApiError};
    use tortie_store::resources::{Kind, parse_documents};
    let store = open(url).await;
    let node = |by: &str| {
        let doc = format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: n1, labels: {{by: {by}}}}}\nspec: {{}}\n"
        );
        parse_documents(&doc).unwrap().remove(0)
    };
    api::create(&store, &node("first")).await.unwrap();
    // A second writer that found it missing too: refused, naming it; the first one's stays.
    let second = api::create(&store, &node("second")).await;
    assert!(matches!(&second, Err(ApiError::Conflict(m)) if m.contains("Node `n1`")), "{second:?}");
    let labels = api::get(&store, Kind::Node, None, "n1").await.unwrap().metadata().labels.clone();
    assert_eq!(labels.get("by").map(String::as_str), Some("first"));
}
