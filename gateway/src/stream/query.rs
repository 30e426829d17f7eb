//! Subscription options in a query string, for the transports that have no frames to carry
//! them: SSE (`/sse`) and long-poll (`/poll`).
//!
//! `filter` may repeat; `since`, `rewind`, `rewind_seconds`, `retained` and `qos` apply to
//! every filter, as in a WebSocket `subscribe`. `presence` (may repeat) watches presence,
//! `client_id` declares the connection's id. Long-poll adds `timeout` (seconds) and `limit`.

use super::options::{RawOptions, SubscribeSpec};
use super::{StreamError, StreamHub};

/// Parsed query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamQuery {
    /// Filters to subscribe to (at least one, unless only presence is watched).
    pub filters: Vec<String>,
    /// `since`: resume after this position.
    pub since: Option<String>,
    /// `rewind`: message count.
    pub rewind: Option<u64>,
    /// `rewind_seconds`.
    pub rewind_seconds: Option<u64>,
    /// `retained`: retained messages first.
    pub retained: bool,
    /// `qos`: 0 (live only) or 1.
    pub qos: Option<u64>,
    /// Presence filters to watch.
    pub presence: Vec<String>,
    /// Declared client id.
    pub client_id: Option<String>,
    /// Long-poll: seconds to wait.
    pub timeout: Option<u64>,
    /// Long-poll: most events in one answer.
    pub limit: Option<u64>,
}

fn number(key: &str, v: &str) -> Result<u64, StreamError> {
    v.parse()
        .map_err(|_| StreamError::BadRequest(format!("{key:?} must be a whole number")))
}

fn flag(key: &str, v: &str) -> Result<bool, StreamError> {
    match v {
        "" | "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(StreamError::BadRequest(format!(
            "{key:?} must be true or false"
        ))),
    }
}

impl StreamQuery {
    /// Parses a raw query string (without the `?`). Unknown keys are refused, so a typo does
    /// not silently change what is delivered.
    pub fn parse(raw: &str) -> Result<StreamQuery, StreamError> {
        let mut q = StreamQuery::default();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            match &*k {
                "filter" => q.filters.push(v.into_owned()),
                "since" => q.since = Some(v.into_owned()),
                "rewind" => q.rewind = Some(number(&k, &v)?),
                "rewind_seconds" => q.rewind_seconds = Some(number(&k, &v)?),
                "retained" => q.retained = flag(&k, &v)?,
                "qos" => q.qos = Some(number(&k, &v)?),
                "presence" => q.presence.push(v.into_owned()),
                "client_id" => q.client_id = Some(v.into_owned()),
                "timeout" => q.timeout = Some(number(&k, &v)?),
                "limit" => q.limit = Some(number(&k, &v)?),
                other => {
                    return Err(StreamError::BadRequest(format!(
                        "unknown query parameter {:?}",
                        other.chars().take(64).collect::<String>()
                    )));
                }
            }
        }
        if q.filters.is_empty() && q.presence.is_empty() {
            return Err(StreamError::BadRequest(
                "give at least one \"filter\" (or \"presence\")".into(),
            ));
        }
        Ok(q)
    }

    /// One validated spec per filter.
    pub fn specs(&self, hub: &StreamHub) -> Result<Vec<SubscribeSpec>, StreamError> {
        self.filters
            .iter()
            .map(|f| {
                let raw = RawOptions {
                    filter: Some(f),
                    since: self.since.as_deref(),
                    rewind: self.rewind,
                    rewind_seconds: self.rewind_seconds,
                    retained: self.retained,
                    qos: self.qos,
                };
                SubscribeSpec::parse(&raw, &hub.limits, hub.config.max_rewind)
            })
            .collect()
    }

    /// Builds a stream with everything the query asks for.
    pub fn open(&self, hub: &std::sync::Arc<StreamHub>) -> Result<super::Stream, StreamError> {
        let specs = self.specs(hub)?;
        let mut stream = super::Stream::new(hub.clone());
        if let Some(c) = &self.client_id {
            stream.set_client_id(c)?;
        }
        for s in &specs {
            stream.subscribe(s)?;
        }
        for p in &self.presence {
            stream.watch_presence(p, true)?;
        }
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_filters_and_options() {
        let q = StreamQuery::parse("filter=a%2F%2B&filter=b%2F%23&since=5-9&retained=1&qos=0")
            .expect("parses");
        assert_eq!(q.filters, vec!["a/+", "b/#"]);
        assert_eq!(q.since.as_deref(), Some("5-9"));
        assert!(q.retained);
        assert_eq!(q.qos, Some(0));
        assert_eq!(
            StreamQuery::parse("filter=a&rewnd=3").map_err(|e| e.code()),
            Err("bad_request")
        );
        assert_eq!(
            StreamQuery::parse("since=1-1").map_err(|e| e.code()),
            Err("bad_request")
        );
        assert_eq!(
            StreamQuery::parse("filter=a&rewind=x").map_err(|e| e.code()),
            Err("bad_request")
        );
    }
}
