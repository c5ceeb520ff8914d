//! TCP MD5 (RFC 2385) and GTSM (RFC 5082) on real sockets in lab
//! namespaces: the kernel drops what the options say it must.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::timeout;
use tortie_bgp::session::socket::{self, SocketOptions};
use tortie_lab::{Lab, Netns, veth};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Accepts connections on `listener` for `window`; returns the peers accepted.
async fn accept_for(listener: tokio::net::TcpListener, window: Duration) -> Vec<IpAddr> {
    let mut peers = Vec::new();
    let _ = timeout(window, async {
        while let Ok((_stream, peer)) = listener.accept().await {
            peers.push(peer.ip());
        }
    })
    .await;
    peers
}

/// Whether a connection from `ns` to `remote` succeeds within 2 s.
fn connects(ns: &Netns, remote: SocketAddr, local: IpAddr, options: SocketOptions) -> bool {
    ns.enter(|| {
        runtime().block_on(async {
            matches!(timeout(Duration::from_secs(2), socket::connect(remote, Some(local), &options)).await, Ok(Ok(_)))
        })
    })
    .unwrap()
}

#[test]
fn md5_right_key_connects_wrong_or_missing_key_never_does() {
    let lab = Lab::new("md5").unwrap();
    let (a, b) = (lab.netns("a").unwrap(), lab.netns("b").unwrap());
    veth((&a, "eth0"), (&b, "eth0")).unwrap();
    a.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    b.add_addr("eth0", "192.0.2.2/24".parse().unwrap()).unwrap();
    let remote: SocketAddr = "192.0.2.2:179".parse().unwrap();
    let key = |k: Option<&str>| SocketOptions { md5_key: k.map(String::from), ..SocketOptions::default() };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            b.enter(|| {
                runtime().block_on(async {
                    let listener = socket::listen(remote).unwrap();
                    socket::set_md5_key(&listener, ip("192.0.2.1"), Some(b"lab-md5-secret")).unwrap();
                    ready_tx.send(()).unwrap();
                    accept_for(listener, Duration::from_secs(8)).await
                })
            })
            .unwrap()
        });
        ready_rx.recv().unwrap();
        assert!(connects(&a, remote, ip("192.0.2.1"), key(Some("lab-md5-secret"))), "right key must connect");
        assert!(!connects(&a, remote, ip("192.0.2.1"), key(Some("wrong-secret"))), "wrong key must not connect");
        assert!(!connects(&a, remote, ip("192.0.2.1"), key(None)), "no key must not connect");
        assert_eq!(server.join().unwrap(), vec![ip("192.0.2.1")], "exactly the signed connection was accepted");
    });
}

#[test]
fn md5_keys_longer_than_80_octets_are_refused_by_name() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let err = socket::set_md5_key(&socket, ip("192.0.2.9"), Some(&[b'x'; 81])).unwrap_err().to_string();
    assert!(err.contains("192.0.2.9") && err.contains("81 octets"), "{err}");
}

#[test]
fn gtsm_refuses_a_peer_one_hop_too_far() {
    // a —— r —— b: a is two hops from b, r one.
    let lab = Lab::new("gtsm").unwrap();
    let (a, r, b) = (lab.netns("a").unwrap(), lab.netns("r").unwrap(), lab.netns("b").unwrap());
    veth((&a, "eth0"), (&r, "to-a")).unwrap();
    veth((&b, "eth0"), (&r, "to-b")).unwrap();
    a.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    r.add_addr("to-a", "192.0.2.254/24".parse().unwrap()).unwrap();
    r.add_addr("to-b", "198.51.100.254/24".parse().unwrap()).unwrap();
    b.add_addr("eth0", "198.51.100.1/24".parse().unwrap()).unwrap();
    a.add_route("198.51.100.0/24 via 192.0.2.254").unwrap();
    b.add_route("192.0.2.0/24 via 198.51.100.254").unwrap();
    r.enable_forwarding().unwrap();
    let one_hop: SocketAddr = "198.51.100.1:179".parse().unwrap();
    let two_hops: SocketAddr = "198.51.100.1:1179".parse().unwrap();
    let gtsm = SocketOptions { ttl_security: Some(1), ..SocketOptions::default() };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            b.enter(|| {
                runtime().block_on(async {
                    let near = socket::listen(one_hop).unwrap();
                    socket::set_ttl_security(&near, ip("192.0.2.1"), 1).unwrap();
                    let far = socket::listen(two_hops).unwrap();
                    socket::set_ttl_security(&far, ip("192.0.2.1"), 2).unwrap();
                    ready_tx.send(()).unwrap();
                    tokio::join!(accept_for(near, Duration::from_secs(7)), accept_for(far, Duration::from_secs(7)))
                })
            })
            .unwrap()
        });
        ready_rx.recv().unwrap();
        // The client side accepts replies from two hops (as both ends of a two-hop peering would
        // configure), so only b's listener decides.
        let gtsm2 = SocketOptions { ttl_security: Some(2), ..SocketOptions::default() };
        assert!(connects(&r, one_hop, ip("198.51.100.254"), gtsm), "a direct neighbour passes hops=1");
        assert!(!connects(&a, one_hop, ip("192.0.2.1"), gtsm2.clone()), "two hops away fails b's hops=1");
        assert!(connects(&a, two_hops, ip("192.0.2.1"), gtsm2), "two hops away passes hops=2");
        let (near, far) = server.join().unwrap();
        assert_eq!((near, far), (vec![ip("198.51.100.254")], vec![ip("192.0.2.1")]));
    });
}

#[test]
fn listener_routes_peers_and_closes_strangers() {
    use tokio::io::AsyncReadExt;
    use tortie_bgp::session::listener::Listener;
    use tortie_bgp::session::peer::PeerCommand;
    let lab = Lab::new("listener").unwrap();
    let ns = lab.netns("a").unwrap();
    ns.enter(|| {
        runtime().block_on(async {
            let listener = Listener::bind("127.0.0.1:179".parse().unwrap()).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            listener.add_peer(ip("127.0.0.2"), &SocketOptions::default(), tx).unwrap();
            let addr = listener.local_addr().unwrap();
            // A stranger (127.0.0.1) is closed at once.
            let mut stranger = socket::connect(addr, Some(ip("127.0.0.1")), &SocketOptions::default()).await.unwrap();
            let mut buf = [0u8; 1];
            let read = timeout(Duration::from_secs(2), stranger.read(&mut buf)).await.unwrap();
            assert_eq!(read.unwrap(), 0, "closed without a word");
            // The peer's connection reaches its task.
            let _peer = socket::connect(addr, Some(ip("127.0.0.2")), &SocketOptions::default()).await.unwrap();
            let cmd = timeout(Duration::from_secs(2), rx.recv()).await.unwrap().unwrap();
            assert!(matches!(cmd, PeerCommand::Incoming(s) if s.peer_addr().unwrap().ip() == ip("127.0.0.2")));
            // Removed: strangers again.
            listener.remove_peer(ip("127.0.0.2")).unwrap();
            let mut gone = socket::connect(addr, Some(ip("127.0.0.2")), &SocketOptions::default()).await.unwrap();
            assert_eq!(timeout(Duration::from_secs(2), gone.read(&mut buf)).await.unwrap().unwrap(), 0);
        })
    })
    .unwrap();
}
