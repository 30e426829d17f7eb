//! Well-behaved clients over in-memory streams: the observer that watches a fuzzed session's
//! traffic on `#`, and the fresh client that checks the broker still round-trips a message.
//!
//! Both talk to the real connection code through `gateway::mqtt::serve_stream`, and both
//! check everything the server sends them with [`ServerStream`].

use crate::wire::{self, ConnectOpts, Frame, ServerStream, kind};
use crate::{END_BUDGET, PEER};
use gateway::broker::Broker;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Receive maximum the observer announces; the server must respect it.
const OBSERVER_RECEIVE_MAX: u16 = 3;

/// A client connection: queued bytes go out while the server's bytes come in, so neither
/// side can block the other.
pub struct Client {
    rd: ReadHalf<DuplexStream>,
    wr: WriteHalf<DuplexStream>,
    out: Vec<u8>,
    /// Bytes queued before the CONNACK arrived, sent once it has (see the README: the
    /// clients never pipeline packets behind their CONNECT).
    held: Option<Vec<u8>>,
    /// Bytes queued and written since the start, to tell which acks the server may have seen.
    queued: usize,
    written: usize,
    /// End offsets (in `queued` terms) of final acks not yet written.
    marks: VecDeque<usize>,
    /// Final acks fully written.
    acks_written: usize,
    /// The server's side of the conversation.
    pub stream: ServerStream,
    serve: JoinHandle<()>,
}

impl Client {
    /// Starts a connection to `broker` for the client `who` (in messages) and queues the
    /// CONNECT.
    pub fn connect(who: &'static str, broker: &Arc<Broker>, opts: &ConnectOpts<'_>) -> Client {
        let (ours, theirs) = tokio::io::duplex(4096);
        let serve = tokio::spawn(gateway::mqtt::serve_stream(theirs, PEER, broker.clone()));
        let (rd, wr) = tokio::io::split(ours);
        let mut c = Client {
            rd,
            wr,
            out: Vec::new(),
            held: None,
            queued: 0,
            written: 0,
            marks: VecDeque::new(),
            acks_written: 0,
            stream: ServerStream::new(who, opts.v5, opts.max_packet),
            serve,
        };
        c.send(&wire::connect(opts));
        c.held = Some(Vec::new());
        c
    }

    /// Queues bytes to send (held back until the CONNACK has arrived).
    pub fn send(&mut self, bytes: &[u8]) {
        match &mut self.held {
            Some(held) => held.extend_from_slice(bytes),
            None => {
                self.out.extend_from_slice(bytes);
                self.queued += bytes.len();
            }
        }
    }

    /// Queues an acknowledgement that ends an exchange (PUBACK, PUBCOMP).
    fn send_final(&mut self, bytes: &[u8]) {
        self.send(bytes);
        self.marks.push_back(self.queued);
    }

    /// Final acks written so far.
    fn final_acks_written(&mut self) -> usize {
        while self.marks.front().is_some_and(|&m| m <= self.written) {
            self.marks.pop_front();
            self.acks_written += 1;
        }
        self.acks_written
    }

    /// Waits for the next packets, writing queued bytes meanwhile; `None` once the server
    /// has closed. Cancel-safe.
    pub async fn next(&mut self) -> Option<Vec<Frame>> {
        let mut buf = [0u8; 2048];
        loop {
            tokio::select! {
                biased;
                w = self.wr.write(&self.out), if !self.out.is_empty() => match w {
                    Ok(n) => {
                        wire::trace_sent(self.stream.who(), &self.out[..n]);
                        self.out.drain(..n);
                        self.written += n;
                    }
                    Err(_) => self.out.clear(),
                },
                r = self.rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => {
                        let frames = self.stream.push(&buf[..n]);
                        if self.stream.session_present.is_some()
                            && let Some(held) = self.held.take()
                        {
                            self.send(&held);
                        }
                        if !frames.is_empty() {
                            return Some(frames);
                        }
                    }
                },
            }
        }
    }

    /// Sends DISCONNECT and checks that the server closes and the connection task ends.
    pub async fn close(mut self) {
        let who = self.stream.who();
        self.send(&wire::DISCONNECT);
        let drained = timeout(END_BUDGET, async { while self.next().await.is_some() {} }).await;
        assert!(
            drained.is_ok(),
            "{who}: server did not close after DISCONNECT"
        );
        self.stream.finish();
        drop((self.rd, self.wr));
        let ended = timeout(END_BUDGET, self.serve).await;
        assert!(
            ended.is_ok(),
            "{who}: connection task did not end after DISCONNECT"
        );
    }
}

/// A well-behaved MQTT 5 client subscribed to `#` at QoS 2 that acknowledges everything,
/// running in its own task until [`Observer::stop`].
pub struct Observer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Observer {
    /// Connects, subscribes and waits for the SUBACK.
    pub async fn start(broker: &Arc<Broker>) -> Observer {
        let opts = ConnectOpts {
            v5: true,
            client_id: "observer",
            clean: true,
            keep_alive: 0,
            will: false,
            expiry: 0,
            receive_max: Some(OBSERVER_RECEIVE_MAX),
            max_packet: None,
        };
        let mut c = Client::connect("observer", broker, &opts);
        // QoS 2, retain handling 2: no retained messages at subscribe.
        c.send(&wire::subscribe(true, 1, "#", 0x22));
        let subscribed = timeout(END_BUDGET, async {
            loop {
                let frames = c.next().await;
                let Some(frames) = frames else {
                    panic!("observer: server closed before SUBACK");
                };
                if let Some(f) = frames.iter().find(|f| f.kind() == kind::SUBACK) {
                    assert_eq!(f.body.last(), Some(&2), "observer: `#` not granted QoS 2");
                    return;
                }
            }
        })
        .await;
        assert!(subscribed.is_ok(), "observer: no SUBACK");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(observe(c, stopped));
        Observer { stop, task }
    }

    /// Disconnects and waits until the server has closed the connection.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let ended = timeout(END_BUDGET * 2, self.task).await;
        assert!(ended.is_ok(), "observer did not finish");
    }
}

async fn observe(mut c: Client, mut stop: oneshot::Receiver<()>) {
    let mut received = 0usize;
    loop {
        let frames = tokio::select! {
            _ = &mut stop => break,
            frames = c.next() => frames,
        };
        let Some(frames) = frames else {
            panic!("server closed the observer's connection");
        };
        for f in frames {
            match f.kind() {
                kind::PUBLISH => {
                    let Some(d) = f.publish(true) else { continue };
                    let (qos, pkid, dup) = (d.qos, d.pkid, f.first & 0x08 != 0);
                    if qos > 0 && !dup {
                        let open = received - c.final_acks_written().min(received);
                        assert!(
                            open < usize::from(OBSERVER_RECEIVE_MAX),
                            "server sent a QoS {qos} PUBLISH with {open} unacknowledged \
                             (observer receive maximum {OBSERVER_RECEIVE_MAX})"
                        );
                        received += 1;
                    }
                    match qos {
                        1 => c.send_final(&wire::ack(0x40, pkid)),
                        2 => c.send(&wire::ack(0x50, pkid)),
                        _ => {}
                    }
                }
                kind::PUBREL => c.send_final(&wire::ack(0x70, f.pkid())),
                kind::DISCONNECT => panic!("server disconnected the observer: {f:02x?}"),
                _ => {}
            }
        }
    }
    c.close().await;
}

/// Connects a fresh client with `client_id` (clean start, which also removes what the fuzzed
/// session stored), subscribes to a topic of its own, publishes there at QoS 1 and waits for
/// both the PUBACK and the delivery. Panics if the broker cannot do that any more.
pub async fn round_trip(broker: &Arc<Broker>, v5: bool, client_id: &str, n: u64) {
    let topic = format!("check/{n}");
    let payload = format!("ping {n}");
    let opts = ConnectOpts {
        v5,
        client_id,
        clean: true,
        keep_alive: 0,
        will: false,
        expiry: 0,
        receive_max: None,
        max_packet: None,
    };
    let mut c = Client::connect("round trip", broker, &opts);
    c.send(&wire::subscribe(v5, 1, &topic, 1));
    c.send(&wire::publish(v5, 1, 2, &topic, payload.as_bytes()));
    let (mut suback, mut puback, mut delivered) = (false, false, false);
    let done = timeout(END_BUDGET, async {
        while !(suback && puback && delivered) {
            let Some(frames) = c.next().await else {
                panic!("round trip: server closed a fresh client's connection");
            };
            for f in frames {
                match f.kind() {
                    kind::SUBACK if f.pkid() == 1 => {
                        assert_eq!(f.body.last(), Some(&1), "round trip: SUBACK {f:02x?}");
                        suback = true;
                    }
                    kind::PUBACK if f.pkid() == 2 => {
                        let reason = f.body.get(2).copied().unwrap_or(0);
                        assert_eq!(reason, 0, "round trip: PUBACK {f:02x?}");
                        puback = true;
                    }
                    kind::PUBLISH => {
                        let Some(d) = f.publish(v5) else { continue };
                        if d.topic == topic.as_bytes() && d.payload == payload.as_bytes() {
                            assert_eq!(d.qos, 1, "round trip: delivered at QoS {}", d.qos);
                            let ack = wire::ack(0x40, d.pkid);
                            c.send(&ack);
                            delivered = true;
                        }
                    }
                    kind::DISCONNECT => panic!("round trip: server disconnected: {f:02x?}"),
                    _ => {}
                }
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "a fresh client could not round-trip a message: suback {suback}, puback {puback}, \
         delivered {delivered}"
    );
    assert_eq!(
        c.stream.session_present,
        Some(false),
        "clean start resumed a session"
    );
    c.close().await;
}
