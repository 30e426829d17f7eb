//! `device-sim proxy` against a TCP echo server and a real Mosquitto: configured latency
//! really delays round trips, loss really stalls (and, when every retransmission is lost,
//! cuts the connection), the cut probability really resets connections, jitter never
//! reorders bytes, and an MQTT client works through a lossy, jittery proxy. Only lower
//! bounds that the configuration guarantees are asserted on timings.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use device_sim::proxy::{Faults, Proxy};
use support::start_echo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

const PATIENCE: Duration = Duration::from_secs(20);

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = timeout(PATIENCE, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let _ = s.set_nodelay(true);
    s
}

/// Sends `n` bytes and waits until they are all echoed; returns the time it took.
async fn round_trip(s: &mut TcpStream, n: usize) -> Duration {
    let start = Instant::now();
    let out = vec![0x5a; n];
    s.write_all(&out)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut back = vec![0; n];
    timeout(PATIENCE, s.read_exact(&mut back))
        .await
        .unwrap_or_else(|_| panic!("no echo within {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("read: {e}"));
    start.elapsed()
}

#[tokio::test]
async fn proxy_latency_delays_each_direction() {
    let echo = start_echo().await;
    let mut direct = connect(echo.addr).await;
    let mut fastest_direct = Duration::MAX;
    for _ in 0..5 {
        fastest_direct = fastest_direct.min(round_trip(&mut direct, 10).await);
    }
    let faults = Faults {
        latency: Duration::from_millis(100),
        ..Faults::default()
    };
    let proxy = Proxy::start(any_port(), echo.addr, faults)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let mut s = connect(proxy.local_addr()).await;
    for _ in 0..3 {
        let rtt = round_trip(&mut s, 10).await;
        // 100 ms on the way out, 100 ms on the way back.
        assert!(
            rtt >= Duration::from_millis(200),
            "round trip {rtt:?} through a 100 ms proxy (direct {fastest_direct:?})"
        );
        assert!(rtt >= fastest_direct + Duration::from_millis(100));
    }
    let st = proxy.stats();
    assert_eq!((st.connections, st.open), (1, 1), "{st:?}");
    assert_eq!((st.bytes_up, st.bytes_down), (30, 30), "{st:?}");
    assert_eq!(st.chunks_delayed, st.chunks_up + st.chunks_down, "{st:?}");
    drop(s);
    proxy.shutdown().await;
}

#[tokio::test]
async fn proxy_jitter_never_reorders_bytes() {
    let echo = start_echo().await;
    let faults = Faults {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(19),
        seed: Some(11),
        ..Faults::default()
    };
    let proxy = Proxy::start(any_port(), echo.addr, faults)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let s = connect(proxy.local_addr()).await;
    let (mut rd, mut wr) = s.into_split();
    const N: u32 = 3000;
    let writer = tokio::spawn(async move {
        for i in 0..N {
            wr.write_all(&i.to_be_bytes())
                .await
                .unwrap_or_else(|e| panic!("write: {e}"));
            // Separate writes become separate chunks, each with its own random delay.
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        wr
    });
    let mut back = vec![0u8; N as usize * 4];
    timeout(PATIENCE, rd.read_exact(&mut back))
        .await
        .unwrap_or_else(|_| panic!("echo incomplete after {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("read: {e}"));
    for (i, word) in back.chunks_exact(4).enumerate() {
        let got = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        assert_eq!(got, i as u32, "byte stream reordered at word {i}");
    }
    let _wr = writer.await;
    let st = proxy.stats();
    assert!(
        st.chunks_up > 50,
        "too few chunks to exercise jitter: {st:?}"
    );
    assert_eq!(st.bytes_up, u64::from(N) * 4);
    proxy.shutdown().await;
}

#[tokio::test]
async fn proxy_loss_stalls_in_order_without_dropping_bytes() {
    let echo = start_echo().await;
    let faults = Faults {
        loss: 0.3,
        rto: Duration::from_millis(100),
        max_retransmits: 50,
        seed: Some(5),
        ..Faults::default()
    };
    let proxy = Proxy::start(any_port(), echo.addr, faults)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let mut s = connect(proxy.local_addr()).await;
    let mut slowest = Duration::ZERO;
    for i in 0u8..20 {
        let start = Instant::now();
        s.write_all(&[i])
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut b = [0u8; 1];
        timeout(PATIENCE, s.read_exact(&mut b))
            .await
            .unwrap_or_else(|_| panic!("byte {i} never came back"))
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(b[0], i, "bytes out of order");
        slowest = slowest.max(start.elapsed());
    }
    let st = proxy.stats();
    assert!(st.losses > 0 && st.chunks_stalled > 0, "{st:?}");
    assert!(
        slowest >= Duration::from_millis(100),
        "no stall seen: {slowest:?} {st:?}"
    );
    assert_eq!((st.cuts, st.bytes_up, st.bytes_down), (0, 20, 20), "{st:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn proxy_total_loss_stalls_then_cuts() {
    let echo = start_echo().await;
    let faults = Faults {
        loss: 1.0,
        rto: Duration::from_millis(50),
        max_retransmits: 3,
        ..Faults::default()
    };
    let proxy = Proxy::start(any_port(), echo.addr, faults)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let mut s = connect(proxy.local_addr()).await;
    let start = Instant::now();
    s.write_all(b"x")
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut b = [0u8; 1];
    let end = timeout(PATIENCE, s.read(&mut b))
        .await
        .unwrap_or_else(|_| panic!("the connection neither answered nor ended"));
    assert!(
        matches!(end, Ok(0) | Err(_)),
        "a byte came through a link losing everything: {end:?}"
    );
    // 50 + 100 + 200 ms of retransmission timeouts before giving up.
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "{:?}",
        start.elapsed()
    );
    let st = proxy.stats();
    assert_eq!((st.cuts, st.losses, st.bytes_up), (1, 3, 0), "{st:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn proxy_cut_probability_resets_connections() {
    let echo = start_echo().await;
    let faults = Faults {
        cut: 1.0,
        ..Faults::default()
    };
    let proxy = Proxy::start(any_port(), echo.addr, faults)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    for round in 1..=3 {
        let mut s = connect(proxy.local_addr()).await;
        s.write_all(b"hello")
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut b = [0u8; 8];
        let end = timeout(PATIENCE, s.read(&mut b))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the connection was not cut"));
        assert!(matches!(end, Ok(0) | Err(_)), "round {round}: {end:?}");
        let cut = timeout(PATIENCE, async {
            while proxy.stats().cuts < round {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(cut.is_ok(), "cut not counted: {:?}", proxy.stats());
    }
    assert_eq!(proxy.stats().bytes_up, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn proxy_refuses_nonsense_and_stops_on_shutdown() {
    let echo = start_echo().await;
    let bad = Faults {
        loss: 2.0,
        ..Faults::default()
    };
    assert!(Proxy::start(any_port(), echo.addr, bad).await.is_err());
    let proxy = Proxy::start(any_port(), echo.addr, Faults::default())
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let addr = proxy.local_addr();
    let mut s = connect(addr).await;
    round_trip(&mut s, 100).await;
    proxy.shutdown().await;
    // The relayed connection is cut, and nothing accepts any more.
    let mut b = [0u8; 1];
    let end = timeout(PATIENCE, s.read(&mut b)).await;
    assert!(matches!(end, Ok(Ok(0) | Err(_))), "{end:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn mqtt_works_through_a_lossy_jittery_proxy() {
    let broker = support::start_mosquitto();
    let faults = Faults {
        latency: Duration::from_millis(10),
        jitter: Duration::from_millis(5),
        loss: 0.05,
        rto: Duration::from_millis(50),
        max_retransmits: 20,
        seed: Some(3),
        ..Faults::default()
    };
    let proxy = Proxy::start(any_port(), broker.addr(), faults)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let proxied = proxy.local_addr();
    let config = {
        let source = format!("mqtt://{proxied}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut c = device_sim::verify::Config::new(source, "lossy/#");
        c.expect.from_start = true;
        c.expect.devices = Some(2);
        c.expect.last_seq = Some(100);
        c.until_idle = Some(Duration::from_secs(10));
        c.duration = Some(Duration::from_secs(40));
        c
    };
    let verifier = device_sim::verify::Verifier::connect(config)
        .await
        .unwrap_or_else(|e| panic!("verify: {e}"));
    let run = tokio::spawn(verifier.run(std::future::pending()));
    let stream = support::clean_stream(&["p1", "p2"], 100);
    support::publish_stream(proxied, "lossy", &stream, Duration::from_millis(1)).await;
    let report = match timeout(Duration::from_secs(60), run).await {
        Ok(Ok(Ok(r))) => r,
        other => panic!("verify did not finish: {other:?}"),
    };
    assert!(report.passed, "{}", report.render(10));
    assert_eq!(report.totals.unique, 200);
    let st = proxy.stats();
    assert!(st.losses > 0, "the proxy injected no loss: {st:?}");
    proxy.shutdown().await;
}
