//! Server-Sent Events at `/sse`: the browser's own `EventSource` reads a subscription.
//!
//! `GET /sse?filter=a/%2B/temp&filter=b&since=…` (options in [`crate::stream::query`]). The
//! body is `text/event-stream`:
//! - first `retry: 2000`, then `event: welcome` whose `id:` is the position the stream
//!   starts after, so `Last-Event-ID` is set even before the first message;
//! - each message as `id: <position>` + `data: <msg object>` (the default event type, so
//!   `onmessage` gets it); retained messages sent on subscribe carry no `id:` (they are not
//!   part of the sequence);
//! - `event: reset`, `event: dropped`, `event: presence` with the same objects as
//!   WebSocket frames;
//! - every `browser.heartbeat` without traffic, a comment line and an `id:` line with the
//!   current position (an `id:` alone updates `Last-Event-ID` without firing an event), so
//!   proxies keep the connection open and a resume starts where the stream is.
//!
//! A reconnecting `EventSource` sends `Last-Event-ID`, which takes the place of `since`.

use crate::http::api::error::ApiError;
use crate::stream::encode;
use crate::stream::query::StreamQuery;
use crate::stream::{Event, Stream, StreamHub};
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

/// Events written per chunk.
const BATCH: usize = 256;

/// `GET /sse`.
pub async fn handler(
    State(hub): State<Arc<StreamHub>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = StreamQuery::parse(raw.as_deref().unwrap_or(""))?;
    if let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    {
        q.since = Some(last.trim().to_owned());
        q.rewind = None;
        q.rewind_seconds = None;
        q.retained = false;
    }
    let stream = q.open(&hub)?;
    let mut beat =
        tokio::time::interval_at(Instant::now() + hub.config.heartbeat, hub.config.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = Sse {
        first: true,
        shutdown: hub.broker.shutdown.clone(),
        hub: hub.clone(),
        stream,
        beat,
        _open: OpenGuard::new(hub),
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), s))
    });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// Counts an open SSE stream while it lives.
struct OpenGuard(Arc<StreamHub>);

impl OpenGuard {
    fn new(hub: Arc<StreamHub>) -> Self {
        hub.open.sse.fetch_add(1, Ordering::Relaxed);
        OpenGuard(hub)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.sse.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Sse {
    first: bool,
    shutdown: CancellationToken,
    hub: Arc<StreamHub>,
    stream: Stream,
    beat: Interval,
    _open: OpenGuard,
}

impl Sse {
    /// The next piece of the body; `None` ends it (shutdown or a log failure).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.first {
            self.first = false;
            let pos = self.stream.position();
            let w = encode::welcome(self.stream.conn_id(), self.hub.log.epoch(), pos);
            return Some(Bytes::from(format!(
                "retry: 2000\nevent: welcome\nid: {pos}\ndata: {w}\n\n"
            )));
        }
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            let events = match self.stream.next_events(BATCH) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the log for an SSE client failed");
                    let body = encode::error(None, &e);
                    self.shutdown = CancellationToken::new();
                    self.shutdown.cancel();
                    return Some(Bytes::from(format!("event: error\ndata: {body}\n\n")));
                }
            };
            if !events.is_empty() {
                self.beat.reset();
                let mut buf = String::new();
                for e in &events {
                    write_event(&mut buf, &self.hub, e);
                }
                return Some(Bytes::from(buf));
            }
            if self.stream.has_pending() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = self.stream.wait() => {}
                _ = self.beat.tick() => {
                    let pos = self.stream.position();
                    return Some(Bytes::from(format!(": heartbeat\nid: {pos}\n\n")));
                }
            }
        }
    }
}

fn write_event(buf: &mut String, hub: &StreamHub, e: &Event) {
    let json = encode::event(&hub.encoder, e);
    match e {
        Event::Msg {
            msg,
            retained: false,
        } => {
            buf.push_str("id: ");
            buf.push_str(&msg.pos.to_string());
            buf.push('\n');
        }
        Event::Msg { retained: true, .. } => {}
        Event::Reset(_) => buf.push_str("event: reset\n"),
        Event::Dropped { .. } => buf.push_str("event: dropped\n"),
        Event::Presence { .. } | Event::Members { .. } => buf.push_str("event: presence\n"),
    }
    buf.push_str("data: ");
    buf.push_str(json.as_str());
    buf.push_str("\n\n");
}
