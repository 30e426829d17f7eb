//! Fuzzes the MQTT session layer: arbitrary client bytes, after a valid CONNECT, served by the
//! real connection code (`gateway::mqtt::serve_stream`) over a real broker and embedded log.
//!
//! Run from `gateway/fuzz` (see README.md): `cargo +nightly fuzz run session -s none`.
//!
//! Input: the first byte picks the set-up (see [`Plan`]); the rest is what the client sends
//! after its CONNECT. With a persistent session, the next two bytes give the length of the
//! first connection's bytes and the remainder is sent by a second connection that resumes
//! the session. Checked for every input:
//! - no panic anywhere, in the connection, the broker or the log (the hook aborts, so
//!   libFuzzer reports it even when tokio would have caught it);
//! - everything the server sends is a well-formed packet of the client's version, starting
//!   with one successful CONNACK, never larger than the client's maximum packet size, nothing
//!   after a DISCONNECT;
//! - the server closes after the client's EOF, and on its own after 1.5 × keep-alive;
//! - the connection task ends once the peer is gone, and the registry is back to the clients
//!   still connected (`Broker::client_count`);
//! - a 3.1.1 persistent session is resumed by the next connection (session present);
//! - the observer (a well-behaved client on `#`) is never disconnected, never sent more
//!   unacknowledged QoS 1/2 messages than its receive maximum;
//! - afterwards a fresh client can still subscribe, publish at QoS 1 and receive its message,
//!   and no stored session is left.
//!
//! Retained messages an input leaves are cleared after it, so inputs do not depend on the
//! ones before them.
#![no_main]

#[path = "session/clients.rs"]
mod clients;
#[path = "session/wire.rs"]
mod wire;
#[path = "session/world.rs"]
mod world;

use gateway::broker::Broker;
use gateway::core::{Message, MessageProps, QoS};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use wire::{ConnectOpts, ServerStream};

/// Peer address the connections report (nothing listens on it).
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);
/// How long (on the paused clock) the server gets to close, or a task to end, once it must.
const END_BUDGET: Duration = Duration::from_secs(30);
/// Pause after the client's bytes, so that log commits and acknowledgements complete.
const SETTLE: Duration = Duration::from_millis(100);
/// Pause between packets fed one by one. The clock moves only once every task waits (and
/// no log commit runs), so this also waits for the server to finish with the packet.
const STEP: Duration = Duration::from_millis(1);
/// How long an aborting client stays silent before it drops the connection.
const IDLE: Duration = Duration::from_secs(5);
/// Keep-alive asked for by clients that wait for the server to time them out.
const KEEP_ALIVE: u16 = 2;
/// The fuzzed client's maximum packet size (MQTT 5).
const CLIENT_MAX_PACKET: u32 = 512;
/// The fuzzed client's receive maximum (MQTT 5).
const CLIENT_RECEIVE_MAX: u16 = 2;

/// How the fuzzed connection ends after its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closes its sending side; the server must close.
    Eof,
    /// The client keeps the connection open and silent; the server must time it out.
    KeepAlive,
    /// The client stays silent a while, then drops the whole connection.
    Abort,
}

/// How the client's bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// One packet at a time, each once the server has finished with the previous one (its
    /// log writes done, its answers sent), so that acknowledgements in the input can match
    /// the deliveries they answer.
    Packets,
    /// All at once.
    Whole,
    /// In pieces of this many bytes, letting the server run between them.
    Pieces(usize),
}

/// The set-up picked by the first input byte.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Bit 0: MQTT 5 (else 3.1.1).
    v5: bool,
    /// Bit 1: an observer is subscribed to `#` meanwhile.
    observer: bool,
    /// Bit 2: persistent session, resumed by a second connection.
    resume: bool,
    /// Bit 3: the CONNECT carries a will.
    will: bool,
    /// Bits 4-5: 0 and 1 EOF, 2 keep-alive timeout, 3 abort.
    end: End,
    /// Bits 6-7: 0 packet by packet, 1 all at once, 2 one byte at a time, 3 seven bytes.
    feed: Feed,
}

impl Plan {
    fn new(mode: u8) -> Plan {
        Plan {
            v5: mode & 1 != 0,
            observer: mode & 2 != 0,
            resume: mode & 4 != 0,
            will: mode & 8 != 0,
            end: match (mode >> 4) & 3 {
                0 | 1 => End::Eof,
                2 => End::KeepAlive,
                _ => End::Abort,
            },
            feed: match mode >> 6 {
                0 => Feed::Packets,
                1 => Feed::Whole,
                2 => Feed::Pieces(1),
                _ => Feed::Pieces(7),
            },
        }
    }
}

static HOOK: Once = Once::new();
static WORLD: Mutex<Option<world::World>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort();
        }));
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let plan = Plan::new(mode);
    let (first, second) = if plan.resume {
        match rest {
            [hi, lo, tail @ ..] => {
                let at = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
                let (a, b) = tail.split_at(at);
                (a, Some(b))
            }
            _ => (rest, Some(&[][..])),
        }
    } else {
        (rest, None)
    };
    let mut guard = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    let world = guard.get_or_insert_with(world::World::new);
    let n = world.next_input();
    let broker = world.broker.clone();
    world
        .rt
        .block_on(one_input(&broker, n, plan, first, second));
});

/// Runs one input: observer, fuzzed connection(s), checks, round trip.
async fn one_input(broker: &Arc<Broker>, n: u64, plan: Plan, first: &[u8], second: Option<&[u8]>) {
    let id = format!("fz-{n}");
    let observer = if plan.observer {
        Some(clients::Observer::start(broker).await)
    } else {
        None
    };
    let others = usize::from(observer.is_some());
    assert_eq!(broker.client_count(), others, "registry before the input");
    let opts = ConnectOpts {
        v5: plan.v5,
        client_id: &id,
        clean: !plan.resume,
        keep_alive: if plan.end == End::KeepAlive {
            KEEP_ALIVE
        } else {
            0
        },
        will: plan.will,
        expiry: if plan.resume { 60 } else { 0 },
        receive_max: plan.v5.then_some(CLIENT_RECEIVE_MAX),
        max_packet: plan.v5.then_some(CLIENT_MAX_PACKET),
    };
    fuzzed(broker, &opts, plan, first).await;
    assert_eq!(
        broker.client_count(),
        others,
        "a connection stayed in the registry after it ended"
    );
    if let Some(body) = second {
        let present = fuzzed(broker, &opts, plan, body).await;
        assert!(
            plan.v5 || present,
            "a 3.1.1 persistent session was not resumed by the next connection"
        );
        assert_eq!(
            broker.client_count(),
            others,
            "a resumed connection stayed in the registry after it ended"
        );
    }
    if let Some(o) = observer {
        o.stop().await;
    }
    assert_eq!(broker.client_count(), 0, "registry after the observer left");
    clients::round_trip(broker, plan.v5, &id, n).await;
    assert_eq!(broker.client_count(), 0, "registry after the round trip");
    let stored = broker.log.session_load(&id);
    assert!(
        matches!(stored, Ok(None)),
        "a session is stored after its client left with a clean session: {stored:?}"
    );
    if wire::may_retain(first) || second.is_some_and(wire::may_retain) {
        clear_retained(broker).await;
    }
}

/// Removes the retained messages the input left, so that the next input starts without them
/// (an input's outcome then depends on that input alone). Listing them walks every retained
/// entry the store still holds, deleted ones included, so it is done only after inputs that
/// may have retained something.
async fn clear_retained(broker: &Arc<Broker>) {
    let retained = broker.log.retained("#").unwrap_or_default();
    for m in retained {
        let clear = Message {
            topic: m.msg.topic.clone(),
            payload: bytes::Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: true,
            props: MessageProps::default(),
            ts_ms: gateway::core::message::now_ms(),
            origin: None,
        };
        let cleared = broker.log.append(clear, None).await;
        assert!(
            cleared.is_ok(),
            "could not clear a retained message: {cleared:?}"
        );
    }
    let left = broker.log.retained("#").map(|r| r.len()).unwrap_or(0);
    assert_eq!(
        left, 0,
        "retained messages survived an empty retained publish"
    );
}

/// Serves one connection that sends CONNECT and then `body`, reads everything the server
/// sends, ends as the plan says and checks the server's side. Returns CONNACK's
/// session-present flag.
async fn fuzzed(broker: &Arc<Broker>, opts: &ConnectOpts<'_>, plan: Plan, body: &[u8]) -> bool {
    let (client, server) = tokio::io::duplex(1024);
    let serve = tokio::spawn(gateway::mqtt::serve_stream(server, PEER, broker.clone()));
    let (mut rd, mut wr) = tokio::io::split(client);
    let mut stream = ServerStream::new("fuzzed", opts.v5, opts.max_packet);
    let connacked = tokio::sync::Notify::new();
    let mut reading = Box::pin(async {
        let mut buf = [0u8; 2048];
        while let Ok(n @ 1..) = rd.read(&mut buf).await {
            stream.push(&buf[..n]);
            if stream.session_present.is_some() {
                connacked.notify_one();
            }
        }
    });
    let hello = wire::connect(opts);
    let writing = async {
        wire::trace_sent("fuzzed", &hello);
        wr.write_all(&hello).await?;
        // Nothing is pipelined behind the CONNECT (see the README).
        connacked.notified().await;
        let pieces = match plan.feed {
            Feed::Packets => wire::split_packets(body),
            Feed::Whole => vec![body],
            Feed::Pieces(n) => body.chunks(n).collect(),
        };
        for piece in pieces {
            wire::trace_sent("fuzzed", piece);
            wr.write_all(piece).await?;
            match plan.feed {
                Feed::Packets => tokio::time::sleep(STEP).await,
                _ => tokio::task::yield_now().await,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    // The server may stop reading (it closed, or waits for the log): the reading side
    // decides when writing is over.
    let mut closed = tokio::select! {
        _ = &mut reading => true,
        _ = timeout(END_BUDGET, writing) => false,
    };
    if !closed {
        closed = timeout(SETTLE, &mut reading).await.is_ok();
    }
    match plan.end {
        End::Eof => {
            let _ = wr.shutdown().await;
            closed = closed || timeout(END_BUDGET, &mut reading).await.is_ok();
            assert!(closed, "server did not close after the client's EOF");
        }
        End::KeepAlive => {
            closed = closed || timeout(END_BUDGET, &mut reading).await.is_ok();
            assert!(
                closed,
                "server did not close a silent client after its keep-alive"
            );
        }
        End::Abort => {
            if !closed {
                closed = timeout(IDLE, &mut reading).await.is_ok();
            }
        }
    }
    drop(reading);
    drop((rd, wr));
    if closed {
        stream.finish();
    }
    let ended = timeout(END_BUDGET, serve).await;
    assert!(
        ended.is_ok(),
        "connection task did not end after the peer went away"
    );
    stream.session_present == Some(true)
}
