//! Load side of `bench/bridge.sh`: publishes numbered QoS 1 messages to one broker and counts
//! what arrives at another, through whatever bridge joins them.
//!
//! Run it through the script (`bash bench/bridge.sh`), or by hand:
//!
//! ```text
//! cargo run --release -p e2e-tests --example bridge_bench -- \
//!     --pub 127.0.0.1:1883 --sub 127.0.0.1:1884 --messages 100000 --inflight 256
//! ```
//!
//! The subscriber keeps a persistent session (clean session off, QoS 1) at the `--sub`
//! broker and reconnects on its own, so it survives that broker being restarted. The
//! publisher sends `--messages` messages of `--payload` bytes on `bench/<n % 16>`, as fast
//! as its `--inflight` window allows, or at `--rate` messages per second. The run ends when
//! every message arrived, or when nothing new arrived for `--settle` seconds after the last
//! publish was acknowledged. It prints one JSON line: sent, acked, received (distinct),
//! duplicates, lost, seconds (first publish to last new arrival) and msgs_per_s.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

struct Args {
    publish: SocketAddr,
    subscribe: SocketAddr,
    messages: u64,
    rate: u64,
    inflight: u16,
    payload: usize,
    settle: Duration,
    id: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        publish: "127.0.0.1:1883".parse().map_err(|e| format!("{e}"))?,
        subscribe: "127.0.0.1:1884".parse().map_err(|e| format!("{e}"))?,
        messages: 100_000,
        rate: 0,
        inflight: 256,
        payload: 100,
        settle: Duration::from_secs(20),
        id: format!("bridge-bench-{}", std::process::id()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--pub" => a.publish = value()?.parse().map_err(|e| bad(&e))?,
            "--sub" => a.subscribe = value()?.parse().map_err(|e| bad(&e))?,
            "--messages" => a.messages = value()?.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = value()?.parse().map_err(|e| bad(&e))?,
            "--inflight" => a.inflight = value()?.parse().map_err(|e| bad(&e))?,
            "--payload" => a.payload = value()?.parse().map_err(|e| bad(&e))?,
            "--settle" => a.settle = Duration::from_secs(value()?.parse().map_err(|e| bad(&e))?),
            "--id" => a.id = value()?,
            "--help" | "-h" => {
                return Err("usage: bridge_bench --pub ADDR --sub ADDR [--messages N] \
                            [--rate MSG/S] [--inflight W] [--payload BYTES] [--settle S] \
                            [--id PREFIX]"
                    .into());
            }
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    if a.payload < 8 {
        return Err("--payload must be at least 8 bytes (the sequence number)".into());
    }
    Ok(a)
}

/// What the subscriber has seen.
struct Seen {
    bits: Vec<bool>,
    distinct: u64,
    duplicates: u64,
    last_new: Option<Instant>,
}

fn options(addr: SocketAddr, id: &str, clean: bool, inflight: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(clean);
    o.set_inflight(inflight.max(1));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

#[tokio::main]
async fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bridge_bench: {e}");
            std::process::exit(2);
        }
    };
    let n = a.messages;
    let len = usize::try_from(n).unwrap_or(usize::MAX);
    let seen = Arc::new(Mutex::new(Seen {
        bits: vec![false; len],
        distinct: 0,
        duplicates: 0,
        last_new: None,
    }));

    // Subscriber: persistent session, reconnects by polling again after an error.
    let (sub, mut sub_loop) = AsyncClient::new(
        options(a.subscribe, &format!("{}-sub", a.id), false, 1000),
        10_000,
    );
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let seen_sub = seen.clone();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // Subscribing again into a kept session changes nothing.
                    let _ = sub.subscribe("bench/#", QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let seq = p
                        .payload
                        .get(..8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes);
                    let mut s = seen_sub.lock().await;
                    match seq.and_then(|q| usize::try_from(q).ok()) {
                        Some(i) if i < s.bits.len() => {
                            if s.bits[i] {
                                s.duplicates += 1;
                            } else {
                                s.bits[i] = true;
                                s.distinct += 1;
                                s.last_new = Some(Instant::now());
                            }
                        }
                        _ => s.duplicates += 1,
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    if tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .is_err()
    {
        eprintln!(
            "bridge_bench: the subscriber could not subscribe at {}",
            a.subscribe
        );
        std::process::exit(1);
    }

    // Publisher.
    let (publisher, mut pub_loop) = AsyncClient::new(
        options(a.publish, &format!("{}-pub", a.id), true, a.inflight),
        usize::from(a.inflight).max(16),
    );
    let acked = Arc::new(AtomicU64::new(0));
    let acked_loop = acked.clone();
    tokio::spawn(async move {
        loop {
            match pub_loop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked_loop.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("bridge_bench: publisher connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });

    let started = Instant::now();
    let mut payload = vec![0u8; a.payload];
    let tick = Duration::from_millis(10);
    let per_tick = if a.rate == 0 {
        u64::MAX
    } else {
        (a.rate / 100).max(1)
    };
    let mut next_tick = Instant::now();
    let mut seq = 0u64;
    while seq < n {
        let mut batch = 0;
        while seq < n && batch < per_tick {
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            if publisher
                .publish(
                    format!("bench/{}", seq % 16),
                    QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .await
                .is_err()
            {
                eprintln!("bridge_bench: the publisher stopped");
                std::process::exit(1);
            }
            seq += 1;
            batch += 1;
        }
        if a.rate > 0 {
            next_tick += tick;
            tokio::time::sleep_until(next_tick).await;
        }
    }

    // Wait for the acknowledgements and the arrivals.
    let mut idle_since = Instant::now();
    let mut last_distinct = 0;
    loop {
        let (distinct, _) = {
            let s = seen.lock().await;
            (s.distinct, s.duplicates)
        };
        if distinct >= n {
            break;
        }
        if distinct != last_distinct {
            last_distinct = distinct;
            idle_since = Instant::now();
        }
        let all_acked = acked.load(Ordering::Relaxed) >= n;
        if all_acked && idle_since.elapsed() >= a.settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = seen.lock().await;
    let seconds = s
        .last_new
        .map(|t| t.duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    let rate = if seconds > 0.0 {
        s.distinct as f64 / seconds
    } else {
        0.0
    };
    println!(
        "{{\"sent\":{n},\"acked\":{},\"received\":{},\"duplicates\":{},\"lost\":{},\
         \"seconds\":{seconds:.3},\"msgs_per_s\":{rate:.0}}}",
        acked.load(Ordering::Relaxed),
        s.distinct,
        s.duplicates,
        n - s.distinct
    );
}
