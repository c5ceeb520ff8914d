//! The etcd engine against an etcd that requires TLS client certificates
//! and user authentication.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use tortie_lab::Lab;
use tortie_lab::peers::Etcd;
use tortie_store::StoreError;
use tortie_store::kv::Kv;
use tortie_store::kv::etcd::{EtcdConfig, EtcdStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_and_password_are_used() {
    let lab = Lab::new("etcd_tls").unwrap();
    let etcd = tokio::task::block_in_place(|| Etcd::start_secured(&lab, true, Some("s3cret"))).unwrap();
    let tls = etcd.security().tls.clone().unwrap();
    let path = |p: &std::path::Path| Some(p.display().to_string());
    let url = format!("etcd://{}", etcd.endpoint());
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint().to_string()],
        ca: path(&tls.ca),
        cert: path(&tls.cert),
        key: path(&tls.key),
        user: Some("root".into()),
        password: Some("s3cret".into()),
    };
    let store = EtcdStore::connect_config(&url, &config).await.unwrap();
    store.put("/sec/k", b"v".to_vec()).await.unwrap();
    assert_eq!(store.get("/sec/k").await.unwrap().unwrap().value, b"v");
    assert_eq!(tokio::task::block_in_place(|| etcd.get("/sec/k")).unwrap().as_deref(), Some("v"));

    // A wrong password is refused by etcd, and said so.
    let wrong = EtcdConfig { password: Some("nope".into()), ..config.clone() };
    let err = EtcdStore::connect_config(&url, &wrong).await.err().expect("wrong password must fail");
    assert!(matches!(&err, StoreError::Etcd { message, .. } if message.contains("authentication failed")), "{err}");
    // Without a client certificate the TLS handshake fails: unreachable, after bounded retries.
    let no_cert = EtcdConfig { cert: None, key: None, ..config };
    let err = EtcdStore::connect_config(&url, &no_cert).await.err().expect("no client cert must fail");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
}
