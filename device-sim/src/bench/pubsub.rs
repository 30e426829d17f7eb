//! The client tasks of `bench throughput`: a subscriber that counts deliveries, and a
//! publisher that sends as fast as its connection takes messages.
//!
//! Both report "connected (and subscribed)" through a oneshot before the measurement starts,
//! so set-up time never counts. Neither reconnects: a connection error ends the task and is
//! tallied, and whatever it did not deliver shows up as loss.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{Event, Outgoing, Packet, QoS};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::mqtt::{self, Tally, bump};
use super::raw::{ConnectSpec, RawConnection};
use super::{BenchError, BrokerUrl};
use rumqttc::mqttbytes::v4::{Packet as RawPacket, Publish as RawPublish};

/// "Connected and ready", or why not.
pub type Ready = oneshot::Receiver<Result<(), BenchError>>;

/// Deliveries counted by one subscriber, read by the coordinator while the run goes on.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// PUBLISH packets received.
    pub received: AtomicU64,
    /// When the latest one arrived: nanoseconds after the run's base instant.
    pub last_ns: AtomicU64,
}

impl Deliveries {
    /// Deliveries so far.
    pub fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Counts `n` deliveries that arrived just now.
    fn add(&self, n: u64, base: Instant) {
        self.received.fetch_add(n, Ordering::Relaxed);
        let ns = base.elapsed().as_nanos() as u64;
        self.last_ns.store(ns, Ordering::Relaxed);
    }

    /// When the latest delivery arrived, in nanoseconds after the run's base instant.
    pub fn last_ns(&self) -> u64 {
        self.last_ns.load(Ordering::Relaxed)
    }
}

/// What a subscriber connects to and subscribes.
#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    /// The broker.
    pub broker: BrokerUrl,
    /// MQTT client id.
    pub client_id: String,
    /// Topic filter.
    pub filter: String,
    /// Subscription QoS.
    pub qos: QoS,
    /// Largest packet accepted.
    pub max_packet: usize,
    /// Instant that `Deliveries::last_ns` counts from.
    pub base: Instant,
    /// End of set-up at the latest.
    pub deadline: Instant,
}

/// Starts a subscriber. It counts deliveries until `stop` turns true, then returns its errors.
pub fn spawn_subscriber(
    spec: SubscriberSpec,
    mut stop: watch::Receiver<bool>,
) -> (JoinHandle<Tally>, Ready, Arc<Deliveries>) {
    let deliveries = Arc::new(Deliveries::default());
    let counter = deliveries.clone();
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut errors = Tally::new();
        let opts = mqtt::options(&spec.broker, spec.client_id.clone(), spec.max_packet, 100);
        let (client, mut eventloop) = mqtt::client(opts, 16);
        let setup = async {
            mqtt::connect(&mut eventloop, &spec.broker, spec.deadline).await?;
            mqtt::subscribe(
                &client,
                &mut eventloop,
                &spec.filter,
                spec.qos,
                spec.deadline,
            )
            .await
        };
        if report_ready(ready_tx, setup.await).is_none() {
            return errors;
        }
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::Publish(_))) => counter.add(1, spec.base),
                    Ok(_) => {}
                    Err(e) => {
                        bump(&mut errors, mqtt::error_kind(&e));
                        break;
                    }
                },
            }
        }
        mqtt::disconnect(&client, &mut eventloop).await;
        errors
    });
    (task, ready_rx, deliveries)
}

/// What a publisher sends.
#[derive(Debug, Clone)]
pub struct PublisherSpec {
    /// The broker.
    pub broker: BrokerUrl,
    /// MQTT client id.
    pub client_id: String,
    /// Topic of every publish.
    pub topic: String,
    /// Publish QoS.
    pub qos: QoS,
    /// Payload of every publish.
    pub payload: Arc<[u8]>,
    /// Messages to send (ignored when `duration` is set).
    pub messages: u64,
    /// Send for this long instead of a fixed count.
    pub duration: Option<Duration>,
    /// QoS 1 publishes in flight.
    pub inflight: u16,
    /// Capacity of the request queue in front of the connection.
    pub queue: usize,
    /// Largest packet.
    pub max_packet: usize,
    /// Hard end of the run.
    pub deadline: Instant,
}

/// What one publisher did.
#[derive(Debug, Default)]
pub struct PubOutcome {
    /// Publishes written to the socket.
    pub sent: u64,
    /// PUBACKs received (QoS 1).
    pub acked: u64,
    /// When publishing was over: last write (QoS 0) or last PUBACK (QoS 1).
    pub done_at: Option<Instant>,
    /// Errors by kind.
    pub errors: Tally,
}

/// Starts a publisher: it connects, reports ready, waits until `start` holds the start instant,
/// then keeps rumqttc's request queue full and pumps the event loop in the same task, so the
/// connection always has the next publish at hand (and, at QoS 1, `inflight` unacknowledged).
pub fn spawn_publisher(
    spec: PublisherSpec,
    mut start: watch::Receiver<Option<Instant>>,
) -> (JoinHandle<PubOutcome>, Ready) {
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut out = PubOutcome::default();
        let opts = mqtt::options(
            &spec.broker,
            spec.client_id.clone(),
            spec.max_packet,
            spec.inflight,
        );
        let (client, mut eventloop) = mqtt::client(opts, spec.queue);
        if let Err(e) = mqtt::connect(&mut eventloop, &spec.broker, spec.deadline).await {
            let _ = ready_tx.send(Err(e));
            return out;
        }
        let _ = ready_tx.send(Ok(()));
        let Some((end_at, limit)) = wait_for_start(&spec, &mut start).await else {
            return out;
        };
        let mut queued: u64 = 0;
        let mut queueing = true;
        loop {
            if queueing {
                if end_at.is_some_and(|end| Instant::now() >= end) {
                    queueing = false;
                }
                while queueing && queued < limit {
                    match client.try_publish(
                        spec.topic.as_str(),
                        spec.qos,
                        false,
                        &spec.payload[..],
                    ) {
                        Ok(()) => queued += 1,
                        Err(_) => break, // queue full: let the connection drain it
                    }
                }
                queueing &= queued < limit;
            }
            let all_acked = spec.qos == QoS::AtMostOnce || out.acked >= queued;
            if !queueing && out.sent >= queued && all_acked {
                break;
            }
            match timeout_at(spec.deadline, eventloop.poll()).await {
                Err(_) => {
                    bump(&mut out.errors, "timeout_while_publishing");
                    break;
                }
                Ok(Err(e)) => {
                    bump(&mut out.errors, mqtt::error_kind(&e));
                    break;
                }
                Ok(Ok(Event::Outgoing(Outgoing::Publish(_)))) => {
                    out.sent += 1;
                    if spec.qos == QoS::AtMostOnce {
                        out.done_at = Some(Instant::now());
                    }
                }
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                    out.acked += 1;
                    out.done_at = Some(Instant::now());
                }
                Ok(Ok(_)) => {}
            }
        }
        mqtt::disconnect(&client, &mut eventloop).await;
        out
    });
    (task, ready_rx)
}

/// As [`spawn_subscriber`] for a QoS 0 subscription, on a raw connection that counts
/// PUBLISH frames without decoding them, so one load-generator core keeps up with a broker
/// far faster than rumqttc could follow.
pub fn spawn_raw_subscriber(
    spec: SubscriberSpec,
    mut stop: watch::Receiver<bool>,
) -> (JoinHandle<Tally>, Ready, Arc<Deliveries>) {
    let deliveries = Arc::new(Deliveries::default());
    let counter = deliveries.clone();
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut errors = Tally::new();
        let setup = async {
            let addr = spec.broker.resolve().await?;
            let (mut conn, _) = timeout_at(
                spec.deadline,
                RawConnection::connect(addr, raw_spec(&spec.client_id)),
            )
            .await
            .map_err(|_| unreachable(&spec.broker, "no CONNACK before the timeout"))?
            .map_err(|e| unreachable(&spec.broker, &e.to_string()))?;
            timeout_at(
                spec.deadline,
                conn.subscribe(&spec.filter, QoS::AtMostOnce, 1),
            )
            .await
            .map_err(|_| BenchError::Setup("no SUBACK before the timeout".into()))?
            .map_err(|e| BenchError::Setup(format!("subscribe failed: {e}")))?;
            Ok::<_, BenchError>(conn)
        };
        let Some(mut conn) = report_ready(ready_tx, setup.await) else {
            return errors;
        };
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                got = conn.count_publishes() => match got {
                    Ok(0) => {}
                    Ok(n) => counter.add(n, spec.base),
                    Err(e) => {
                        bump(&mut errors, e.kind());
                        return errors;
                    }
                },
            }
        }
        let _ = conn.disconnect().await;
        errors
    });
    (task, ready_rx, deliveries)
}

/// Bytes a raw publisher hands the socket per write.
const RAW_CHUNK: usize = 64 * 1024;

/// As [`spawn_publisher`] for QoS 0, on a raw connection: the PUBLISH is encoded once and
/// written many to a write, as fast as the socket takes them.
pub fn spawn_raw_publisher(
    spec: PublisherSpec,
    mut start: watch::Receiver<Option<Instant>>,
) -> (JoinHandle<PubOutcome>, Ready) {
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut out = PubOutcome::default();
        let frame = match encode_qos0(&spec.topic, &spec.payload) {
            Ok(f) => f,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return out;
            }
        };
        let connected = async {
            let addr = spec.broker.resolve().await?;
            timeout_at(
                spec.deadline,
                RawConnection::connect(addr, raw_spec(&spec.client_id)),
            )
            .await
            .map_err(|_| unreachable(&spec.broker, "no CONNACK before the timeout"))?
            .map_err(|e| unreachable(&spec.broker, &e.to_string()))
        };
        let Some((mut conn, _)) = report_ready(ready_tx, connected.await) else {
            return out;
        };
        let Some((end_at, limit)) = wait_for_start(&spec, &mut start).await else {
            return out;
        };
        let per_chunk = (RAW_CHUNK / frame.len()).max(1) as u64;
        let chunk = frame.repeat(per_chunk as usize);
        while out.sent < limit && end_at.is_none_or(|end| Instant::now() < end) {
            let n = per_chunk.min(limit - out.sent);
            let bytes = &chunk[..n as usize * frame.len()];
            match timeout_at(spec.deadline, conn.write_raw(bytes)).await {
                Ok(Ok(())) => {
                    out.sent += n;
                    out.done_at = Some(Instant::now());
                }
                Ok(Err(e)) => {
                    bump(&mut out.errors, e.kind());
                    return out;
                }
                Err(_) => {
                    bump(&mut out.errors, "timeout_while_publishing");
                    return out;
                }
            }
        }
        let _ = conn.disconnect().await;
        out
    });
    (task, ready_rx)
}

/// Tells the coordinator whether set-up worked; the set-up's value when it did.
fn report_ready<T>(
    ready: oneshot::Sender<Result<(), BenchError>>,
    setup: Result<T, BenchError>,
) -> Option<T> {
    match setup {
        Ok(v) => {
            let _ = ready.send(Ok(()));
            Some(v)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            None
        }
    }
}

/// Waits for the common start instant; then when to stop (with `--duration`) and how many
/// messages to send at most. `None` if the start never came before the deadline.
async fn wait_for_start(
    spec: &PublisherSpec,
    start: &mut watch::Receiver<Option<Instant>>,
) -> Option<(Option<Instant>, u64)> {
    let t0 = match timeout_at(spec.deadline, start.wait_for(Option::is_some)).await {
        Ok(Ok(t0)) => (*t0).unwrap_or_else(Instant::now),
        _ => return None,
    };
    let end_at = spec.duration.map(|d| t0 + d);
    let limit = if spec.duration.is_some() {
        u64::MAX
    } else {
        spec.messages
    };
    Some((end_at, limit))
}

/// One QoS 0 PUBLISH on the wire (MQTT 3.1.1).
fn encode_qos0(topic: &str, payload: &[u8]) -> Result<Vec<u8>, BenchError> {
    let publish = RawPacket::Publish(RawPublish::new(topic, QoS::AtMostOnce, payload.to_vec()));
    let mut buf = bytes::BytesMut::new();
    publish
        .write(&mut buf, usize::MAX)
        .map_err(|e| BenchError::InvalidArgs(format!("cannot encode the PUBLISH: {e}")))?;
    Ok(buf.to_vec())
}

/// CONNECT of a raw benchmark client: clean session, 60 s keep-alive.
fn raw_spec(client_id: &str) -> ConnectSpec<'_> {
    ConnectSpec {
        client_id,
        keep_alive_secs: 60,
        clean_session: true,
    }
}

fn unreachable(broker: &BrokerUrl, detail: &str) -> BenchError {
    BenchError::Unreachable {
        broker: broker.to_string(),
        detail: detail.to_string(),
    }
}

/// Waits for every client's ready signal; the first failure is returned.
pub async fn await_ready(ready: Vec<Ready>) -> Result<(), BenchError> {
    for rx in ready {
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(BenchError::Setup(
                    "a client task ended during set-up".into(),
                ));
            }
        }
    }
    Ok(())
}
