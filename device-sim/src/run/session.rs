//! One connection of a device, from CONNACK to its end: subscribe to commands, send the birth
//! message and what the last connection left unfinished, publish telemetry on schedule,
//! answer commands, follow acks, and end on an injected fault, a lost connection, or the
//! end of the run (after in-flight messages are acknowledged or the drain time is up).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::device::Device;
use super::link::{Event, Incoming, Link, LinkError, Publish};
use super::outbox::{Kind, Message, Props};
use super::schedule::{first_offset, gap, next_failure};
use super::stats::ClassStats;
use crate::scenario::model::render;
use crate::scenario::template::CommandVars;
use crate::scenario::{Protocol, Reply, Vars};
use crate::stamp::Stamp;

/// Most messages one stream publishes in one wake-up when it has fallen behind.
const MAX_CATCH_UP: u32 = 1000;
/// How long a device waits for its DISCONNECT to be written.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    /// The run is over; the device disconnected cleanly.
    Stopped,
    /// The scenario dropped the connection; stay offline this long.
    Injected(Duration),
    /// The connection failed.
    Lost(LinkError),
}

/// Runs one connected session.
pub async fn run(dev: &mut Device, link: &mut Link, stop: &CancellationToken) -> End {
    let plan = dev.plan.clone();
    let class = &plan.class;
    for (filter, cmd) in dev.filters.iter().zip(&class.commands) {
        if let Err(refused) = link.subscribe(filter, cmd.qos) {
            plan.stats.error(refused.kind());
        }
    }
    if let Some(birth) = &class.birth {
        let vars = dev.vars(None);
        let m = Message::new(
            birth.topic.expand(&vars),
            Bytes::from(birth.payload.expand(&vars)),
            birth.qos,
            birth.retain,
            Kind::Birth,
        );
        dev.send(link, m);
    }
    for m in std::mem::take(&mut dev.backlog) {
        dev.send(link, m);
    }
    let now = Instant::now();
    dev.catch_up(now);
    let next_failure_at = class
        .faults
        .disconnect_mean
        .map(|mean| now + next_failure(&mut dev.rng, mean));
    while dev.storms.front().is_some_and(|s| s.0 <= now) {
        dev.storms.pop_front();
    }
    let mut replies: Vec<(Instant, Message)> = Vec::new();
    let mut drain_until: Option<Instant> = None;
    loop {
        let next_tick = match drain_until {
            None => dev.streams.iter().filter_map(|s| s.next).min(),
            Some(_) => None,
        };
        let storm = dev.storms.front().copied();
        let fault = match (next_failure_at, storm) {
            (Some(f), Some((s, _))) => Some(f.min(s)),
            (f, s) => f.or(s.map(|s| s.0)),
        };
        let next_reply = replies.iter().map(|r| r.0).min();
        // One timer for all of them: a fleet holds one of these loops per device.
        let wake = [next_tick, fault, next_reply, drain_until]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            _ = stop.cancelled(), if drain_until.is_none() => {
                drain_until = Some(Instant::now() + plan.drain);
                if dev.outbox.is_idle() {
                    break;
                }
            }
            ev = link.next() => match ev {
                Ok(ev) => {
                    dev.on_event(link, ev, &mut replies);
                    if drain_until.is_some() && dev.outbox.is_idle() {
                        break;
                    }
                }
                Err(e) => return End::Lost(e),
            },
            _ = at(wake) => {
                let now = Instant::now();
                if drain_until.is_some_and(|t| t <= now) {
                    break;
                }
                if fault.is_some_and(|t| t <= now) {
                    if let Some((_, offline)) = storm.filter(|s| s.0 <= now) {
                        dev.storms.pop_front();
                        return End::Injected(offline);
                    }
                    return End::Injected(class.faults.reconnect_delay);
                }
                if next_reply.is_some_and(|t| t <= now) {
                    let (due, later): (Vec<_>, Vec<_>) =
                        replies.into_iter().partition(|r| r.0 <= now);
                    replies = later;
                    for (_, m) in due {
                        dev.send(link, m);
                    }
                }
                if next_tick.is_some_and(|t| t <= now) {
                    dev.tick(link, now);
                }
            }
        }
    }
    // The end of the run: a clean DISCONNECT (so no will is published).
    if link.disconnect() {
        let deadline = Instant::now() + DISCONNECT_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, link.next()).await {
                Ok(Ok(Event::Disconnected)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(ev)) => dev.on_event(link, ev, &mut Vec::new()),
            }
        }
    }
    End::Stopped
}

/// Sleeps until `t`, or forever when there is nothing to wait for.
async fn at(t: Option<Instant>) {
    match t {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Device {
    pub(super) fn vars<'a>(&'a self, command: Option<&'a CommandVars<'a>>) -> Vars<'a> {
        Vars {
            class: &self.plan.class.name,
            id: &self.id,
            n: self.n,
            command,
        }
    }

    /// Hands a message to the link; counts it dropped when the link refuses it (queue full).
    fn send(&mut self, link: &mut Link, m: Message) -> bool {
        let publish = Publish {
            topic: m.topic.clone(),
            qos: m.qos,
            retain: m.retain,
            payload: m.payload.clone(),
            props: m.props.clone(),
        };
        match link.publish(publish) {
            Ok(()) => {
                self.outbox.queued(m);
                true
            }
            Err(refused) => {
                if let Kind::Telemetry(_) = m.kind {
                    ClassStats::add(&self.plan.stats.dropped, 1);
                }
                self.plan.stats.error(refused.kind());
                false
            }
        }
    }

    /// After (re)connecting: schedule first messages, and skip ticks that fell while offline.
    fn catch_up(&mut self, now: Instant) {
        let stats = self.plan.stats.clone();
        for (s, spec) in self.streams.iter_mut().zip(&self.plan.class.telemetry) {
            match s.next {
                None => s.next = Some(now + first_offset(&mut self.rng, spec.interval)),
                Some(mut t) if t <= now => {
                    let missed = ((now - t).as_secs_f64() / spec.interval.as_secs_f64()) as u64;
                    t += spec.interval.mul_f64(missed as f64);
                    let mut skipped = missed;
                    while t <= now {
                        t += gap(&mut self.rng, spec.interval, spec.jitter);
                        skipped += 1;
                    }
                    ClassStats::add(&stats.skipped, skipped);
                    s.next = Some(t);
                }
                Some(_) => {}
            }
        }
    }

    /// Publishes every message that is due.
    fn tick(&mut self, link: &mut Link, now: Instant) {
        for i in 0..self.streams.len() {
            let mut sent = 0;
            while self.streams[i].next.is_some_and(|t| t <= now) && sent < MAX_CATCH_UP {
                self.publish(link, i);
                let spec = &self.plan.class.telemetry[i];
                let g = gap(&mut self.rng, spec.interval, spec.jitter);
                self.streams[i].next = self.streams[i].next.map(|t| t + g);
                sent += 1;
            }
        }
    }

    /// Makes and queues one message of stream `i`.
    fn publish(&mut self, link: &mut Link, i: usize) {
        let plan = self.plan.clone();
        let spec = &plan.class.telemetry[i];
        let elapsed = Instant::now().saturating_duration_since(plan.run_start);
        let value = {
            let vars = Vars {
                class: &plan.class.name,
                id: &self.id,
                n: self.n,
                command: None,
            };
            spec.payload
                .next(&mut self.streams[i].model, elapsed, &vars, &mut self.rng)
        };
        let v5 = plan.class.protocol == Protocol::V5;
        let stamped = spec.stamp && (v5 || value.is_object());
        let seq = self.seq + 1;
        let stamp = stamped.then(|| Stamp::now(self.id.clone(), seq));
        let mut m = Message::new(
            self.streams[i].topic.clone(),
            render(value, stamp.as_ref()),
            spec.qos,
            spec.retain,
            Kind::Telemetry(if stamped { seq } else { 0 }),
        );
        if let Some(stamp) = stamp.as_ref().filter(|_| v5) {
            m.props = Some(Props {
                user_properties: stamp.user_properties(),
                correlation: None,
            });
        }
        if self.send(link, m) && stamped {
            self.seq = seq;
        }
    }

    fn on_event(&mut self, link: &mut Link, ev: Event, replies: &mut Vec<(Instant, Message)>) {
        let stats = self.plan.stats.clone();
        match ev {
            Event::Sent(pkid) => {
                let Some(done) = self.outbox.on_sent(pkid) else {
                    return;
                };
                match done.kind {
                    Kind::Telemetry(_) if done.first => {
                        ClassStats::add(&stats.sent, 1);
                        if done.qos == 0 {
                            ClassStats::add(&stats.acked, 1);
                        }
                    }
                    Kind::Reply if done.first => ClassStats::add(&stats.replies, 1),
                    _ => {}
                }
            }
            Event::Acked { pkid, ok } => {
                let Some(m) = self.outbox.on_acked(pkid) else {
                    return;
                };
                if let Kind::Telemetry(_) = m.kind {
                    if ok {
                        ClassStats::add(&stats.acked, 1);
                        stats.record_latency(m.created.elapsed());
                    } else {
                        ClassStats::add(&stats.failed, 1);
                        stats.error("publish_refused");
                    }
                }
            }
            Event::Received(inc) => self.on_command(link, *inc, replies),
            Event::SubAck(refused) if refused > 0 => stats.error("subscribe_refused"),
            _ => {}
        }
    }

    /// Answers a command: to its MQTT 5 response topic (with its correlation data) when it
    /// has one, else to the command's `reply_topic`, else not at all.
    fn on_command(
        &mut self,
        link: &mut Link,
        inc: Incoming,
        replies: &mut Vec<(Instant, Message)>,
    ) {
        let plan = self.plan.clone();
        let Some(i) = self.filters.iter().position(|f| matches(f, &inc.topic)) else {
            return;
        };
        let cmd = &plan.class.commands[i];
        ClassStats::add(&plan.stats.commands, 1);
        let json: Option<Value> = serde_json::from_slice(&inc.payload).ok();
        let cv = CommandVars {
            topic: &inc.topic,
            payload: &inc.payload,
            json: json.as_ref(),
        };
        let vars = self.vars(Some(&cv));
        let topic = match (&inc.response_topic, &cmd.reply_topic) {
            (Some(t), _) => t.clone(),
            (None, Some(t)) => t.expand(&vars),
            (None, None) => return,
        };
        let payload = match &cmd.reply {
            Reply::Text(t) => Bytes::from(t.expand(&vars)),
            other => Bytes::from(reply_value(other, &vars).to_string()),
        };
        let mut m = Message::new(topic, payload, cmd.reply_qos, cmd.reply_retain, Kind::Reply);
        if inc.correlation.is_some() {
            m.props = Some(Props {
                user_properties: Vec::new(),
                correlation: inc.correlation,
            });
        }
        if cmd.delay.is_zero() {
            self.send(link, m);
        } else {
            replies.push((Instant::now() + cmd.delay, m));
        }
    }
}

fn reply_value(r: &Reply, vars: &Vars<'_>) -> Value {
    match r {
        Reply::Text(t) => t.expand_value(vars),
        Reply::Value(v) => v.clone(),
        Reply::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), reply_value(v, vars)))
                .collect(),
        ),
        Reply::Array(items) => Value::Array(items.iter().map(|v| reply_value(v, vars)).collect()),
    }
}

/// MQTT topic filter matching (`+` one level, `#` the rest; a leading wildcard does not match
/// a `$` topic).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn filters_match_like_mqtt() {
        assert!(matches("cmd/press-1", "cmd/press-1"));
        assert!(matches("cmd/+/set", "cmd/a/set"));
        assert!(matches("cmd/#", "cmd"));
        assert!(matches("cmd/#", "cmd/a/b"));
        assert!(!matches("cmd/+", "cmd/a/b"));
        assert!(!matches("cmd/a", "cmd/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("cmd/a/b", "cmd/a"));
    }
}
