//! UPDATEs captured from real BIRD ↔ GoBGP sessions (tshark in a lab
//! namespace) decode with our codec without error, and carry what the
//! daemons were told to send.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio_util::codec::Decoder;
use tortie_bgp::packet::*;
use tortie_lab::peers::{BgpPeer, Bird, GoBgp, Neighbor, Speaker};
use tortie_lab::{Check, Lab, wait_for};
use tortie_proto_tests::{Pair, net};

const UP: Duration = Duration::from_secs(40);

fn bird_config() -> String {
    "router id 192.0.2.1;
protocol device { }
protocol static announce4 {
  ipv4;
  route 198.18.1.0/24 blackhole;
  route 198.18.16.0/20 blackhole;
  route 198.19.0.0/16 blackhole;
}
protocol bgp gobgp_b {
  local as 65001; neighbor 192.0.2.2 as 65002;
  ipv4 {
    import all;
    export filter {
      if source != RTS_STATIC then reject;
      bgp_community.add((65001, 100));
      bgp_large_community.add((65001, 1, 2));
      bgp_ext_community.add((rt, 65001, 7));
      bgp_med = 30;
      accept;
    };
  };
  connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 9; keepalive time 3;
  graceful restart off;
}
"
    .into()
}

/// Captured TCP payloads, per (stream, source port), in capture order.
fn payloads(pcap: &std::path::Path) -> BTreeMap<(u32, u16), Vec<u8>> {
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r", &pcap.display().to_string(), "-Y", "tcp.len > 0"])
        .args(["-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tcp.payload"])
        .output()
        .expect("tshark is not installed: run scripts/test");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut streams: BTreeMap<(u32, u16), Vec<u8>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let key = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let hex = f[2].replace(':', "");
        let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
        streams.entry(key).or_default().extend(bytes);
    }
    streams
}

#[test]
fn updates_captured_from_bird_and_gobgp_decode_cleanly() {
    let lab = Lab::new("capture").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let pcap = pair.a.dir().join("bgp.pcap");
    let capture = pair
        .a
        .spawn("tshark", "tshark", &["-n", "-i", "eth-a", "-f", "tcp port 179", "-w", &pcap.display().to_string()], &[])
        .unwrap();
    wait_for("tshark to capture", UP, || {
        capture.check_running()?;
        Ok(if capture.log().contains("Capturing on") { Check::Done(()) } else { Check::Pending(capture.log()) })
    })
    .unwrap();

    let gobgp = GoBgp::start(
        &pair.b,
        &Speaker {
            router_id: "192.0.2.2".parse().unwrap(),
            asn: 65002,
            announce: vec![],
            neighbors: vec![Neighbor::new("bird_a", pair.a_ip(), 65001).local_address(pair.b_ip())],
        },
    )
    .unwrap();
    for p in ["198.18.2.0/24", "198.18.3.0/24"] {
        gobgp
            .gobgp(&[
                "global",
                "rib",
                "add",
                "-a",
                "ipv4",
                p,
                "origin",
                "egp",
                "community",
                "65002:200,no-export",
                "large-community",
                "65002:3:4",
                "med",
                "50",
            ])
            .unwrap();
    }
    let bird = Bird::start_with_config(&pair.a, "bird", &bird_config()).unwrap();
    bird.wait_route(net("198.18.3.0/24"), UP).unwrap();
    gobgp.wait_route(net("198.19.0.0/16"), UP).unwrap();
    // Let KEEPALIVEs pass too, then stop the capture (SIGTERM flushes the file).
    std::thread::sleep(Duration::from_secs(4));
    drop(capture);

    let streams = payloads(&pcap);
    assert!(!streams.is_empty(), "nothing captured");
    let mut announced = Vec::new();
    let mut kinds = BTreeMap::new();
    for ((stream, port), bytes) in &streams {
        // Both daemons negotiate 4-octet AS; ours is the receive context of each direction.
        let mut codec = BgpCodec::default();
        codec.context(Context { four_octet_as: true, ..Context::default() }, Context::default());
        let mut buf = BytesMut::from(&bytes[..]);
        while let Some(m) = codec.decode(&mut buf).unwrap_or_else(|e| panic!("stream {stream} from port {port}: {e}")) {
            *kinds.entry(format!("{m:?}").split('(').next().unwrap().to_string()).or_insert(0) += 1;
            if let Message::Update(u) = m {
                assert!(u.errors.is_empty(), "RFC 7606 repairs on a real UPDATE: {:?}", u.errors);
                for n in &u.nlri {
                    announced.push((ipnet::IpNet::V4(n.prefix), u.attrs.clone().unwrap()));
                }
            }
        }
        assert!(buf.is_empty(), "stream {stream} from port {port} ends inside a message");
    }
    for kind in ["Open", "Update", "Keepalive"] {
        assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "no {kind} captured: {kinds:?}");
    }
    let from_gobgp = announced.iter().find(|(p, _)| *p == net("198.18.2.0/24")).expect("GoBGP's route");
    assert_eq!(from_gobgp.1.origin, Some(Origin::Egp));
    assert_eq!(from_gobgp.1.med, Some(50));
    assert!(from_gobgp.1.communities.contains(&Community::NO_EXPORT));
    assert!(from_gobgp.1.communities.contains(&Community::new(65002, 200)));
    assert_eq!(from_gobgp.1.large_communities[0].to_string(), "65002:3:4");
    let from_bird = announced.iter().find(|(p, _)| *p == net("198.18.16.0/20")).expect("BIRD's route");
    assert_eq!(from_bird.1.as_path.as_ref().unwrap().asns().collect::<Vec<_>>(), vec![65001]);
    assert_eq!(from_bird.1.med, Some(30));
    assert_eq!(from_bird.1.communities, vec![Community::new(65001, 100)].into());
    assert_eq!(from_bird.1.large_communities[0].to_string(), "65001:1:2");
    assert_eq!(from_bird.1.ext_communities, vec![ExtCommunity::route_target(65001, 7)].into());
}
