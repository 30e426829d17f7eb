//! Progress of a run while it goes: on a terminal a small status block redrawn about every
//! 500 ms (ANSI cursor movement, no extra dependency); otherwise one plain line every few
//! seconds, for logs and CI. Rendering is a pure function of two [`Snapshot`]s, so it is
//! tested without a terminal.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::stats::{ClassStats, Snapshot};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayMode {
    /// A status block redrawn in place (stdout is a terminal).
    Live,
    /// One line per period (stdout is a file or a pipe).
    Lines(Duration),
    /// Nothing (library use, tests).
    Off,
}

/// Redraw period of the live block.
const LIVE_PERIOD: Duration = Duration::from_millis(500);
/// Classes listed one per line in the live block; more are summed only.
const MAX_CLASS_LINES: usize = 8;

/// Shows progress until `stop` is cancelled; the live block is left on screen.
pub async fn show(
    mode: DisplayMode,
    header: String,
    classes: Arc<[Arc<ClassStats>]>,
    duration: Duration,
    stop: CancellationToken,
) {
    let period = match mode {
        DisplayMode::Off => return,
        DisplayMode::Live => LIVE_PERIOD,
        DisplayMode::Lines(p) => p.max(Duration::from_millis(100)),
    };
    let started = Instant::now();
    let mut ticker = tokio::time::interval_at(started + period, period);
    let mut prev: Option<(Instant, u64)> = None;
    let mut drawn = 0usize;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let parts: Vec<Snapshot> = classes.iter().map(|c| c.snapshot()).collect();
        let total = Snapshot::total("all", &parts);
        let now = Instant::now();
        let rate = match prev {
            Some((t, sent)) => per_sec(total.sent.saturating_sub(sent), now - t),
            None => per_sec(total.sent, now - started),
        };
        prev = Some((now, total.sent));
        let view = View {
            elapsed: now - started,
            duration,
            rate,
            rss: crate::bench::sys::own_rss(),
            now,
        };
        let mut out = std::io::stdout().lock();
        let _ = match mode {
            DisplayMode::Live => {
                let block = live_block(&header, &view, &total, &parts);
                let mut text = String::new();
                if drawn > 0 {
                    // Up to the first line of the previous block, then clear to the end.
                    let _ = write!(text, "\x1b[{drawn}F\x1b[J");
                }
                text.push_str(&block);
                drawn = block.lines().count();
                out.write_all(text.as_bytes())
            }
            _ => out.write_all(format!("{}\n", plain_line(&view, &total)).as_bytes()),
        };
        let _ = out.flush();
    }
}

/// What the display knows besides the counters.
pub struct View {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Planned length of the run.
    pub duration: Duration,
    /// Telemetry sent per second since the last redraw.
    pub rate: f64,
    /// This process's resident memory, when known.
    pub rss: Option<u64>,
    /// Now (for "retrying in ...").
    pub now: Instant,
}

/// The live status block.
pub fn live_block(header: &str, v: &View, t: &Snapshot, classes: &[Snapshot]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{header}   {:.1} s / {:.0} s{}",
        v.elapsed.as_secs_f64(),
        v.duration.as_secs_f64(),
        v.rss
            .map(|b| format!("   memory {} MB", b / (1024 * 1024)))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "  devices    {}/{} connected   reconnects {}   injected disconnects {}",
        t.connected, t.devices, t.reconnects, t.injected
    );
    let _ = writeln!(
        s,
        "  telemetry  sent {} ({:.0}/s)   acked {}   failed {}   dropped {}",
        t.sent, v.rate, t.acked, t.failed, t.dropped
    );
    let _ = writeln!(s, "  ack        {}", latency(t));
    if t.commands > 0 || t.replies > 0 {
        let _ = writeln!(
            s,
            "  commands   {} received, {} replies",
            t.commands, t.replies
        );
    }
    let _ = writeln!(s, "  errors     {}", errors(t));
    if let Some(state) = connection_state(t, v.now) {
        let _ = writeln!(s, "  broker     {state}");
    }
    if classes.len() > 1 && classes.len() <= MAX_CLASS_LINES {
        let width = classes.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in classes {
            let _ = writeln!(
                s,
                "  {:width$}  {}/{} connected   sent {}   acked {}   reconnects {}",
                c.name, c.connected, c.devices, c.sent, c.acked, c.reconnects
            );
        }
    }
    s
}

/// The plain progress line.
pub fn plain_line(v: &View, t: &Snapshot) -> String {
    let mut s = format!(
        "[{:6.1}s] connected {}/{}  sent {} ({:.0}/s)  acked {}  failed {}  {}  reconnects {}  \
         errors {}",
        v.elapsed.as_secs_f64(),
        t.connected,
        t.devices,
        t.sent,
        v.rate,
        t.acked,
        t.failed,
        latency(t),
        t.reconnects,
        t.error_count()
    );
    if let Some(rss) = v.rss {
        let _ = write!(s, "  mem {} MB", rss / (1024 * 1024));
    }
    if let Some(state) = connection_state(t, v.now) {
        let _ = write!(s, "  | {state}");
    }
    s
}

fn latency(t: &Snapshot) -> String {
    match (t.latency_us(0.5), t.latency_us(0.99)) {
        (Some(p50), Some(p99)) => format!("p50 {}  p99 {}", ms(p50), ms(p99)),
        _ => "p50 -  p99 -".into(),
    }
}

/// Microseconds as milliseconds for people.
pub fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn errors(t: &Snapshot) -> String {
    if t.errors.is_empty() {
        return "0".into();
    }
    let kinds: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{} ({})", t.error_count(), kinds.join(", "))
}

/// "retrying in 2s: connection refused (3 devices waiting)" while devices wait to retry.
fn connection_state(t: &Snapshot, now: Instant) -> Option<String> {
    let r = t.retry.as_ref().filter(|_| t.waiting > 0)?;
    let secs = r.at.saturating_duration_since(now).as_secs_f64().ceil();
    let waiting = match t.waiting {
        1 => "1 device waiting".to_string(),
        n => format!("{n} devices waiting"),
    };
    Some(format!("retrying in {secs:.0}s: {} ({waiting})", r.detail))
}

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::stats::Retry;

    fn view(now: Instant) -> View {
        View {
            elapsed: Duration::from_millis(5200),
            duration: Duration::from_secs(60),
            rate: 250.0,
            rss: Some(40 * 1024 * 1024),
            now,
        }
    }

    #[test]
    fn unreachable_broker_shows_the_retry() {
        let now = Instant::now();
        let t = Snapshot {
            devices: 3,
            waiting: 3,
            retry: Some(Retry {
                detail: "connection refused".into(),
                at: now + Duration::from_millis(1500),
            }),
            ..Snapshot::default()
        };
        let line = plain_line(&view(now), &t);
        assert!(line.contains("connected 0/3"), "{line}");
        assert!(
            line.contains("retrying in 2s: connection refused (3 devices waiting)"),
            "{line}"
        );
        let block = live_block("run x", &view(now), &t, &[]);
        assert!(block.contains("broker     retrying in 2s"), "{block}");
        assert!(block.contains("memory 40 MB"), "{block}");
    }

    #[test]
    fn counters_and_classes_are_listed() {
        let mut a = Snapshot {
            name: "press".into(),
            devices: 2,
            connected: 2,
            sent: 10,
            acked: 9,
            ..Snapshot::default()
        };
        a.errors.insert("socket_error".into(), 2);
        let b = Snapshot {
            name: "conveyor".into(),
            devices: 1,
            ..Snapshot::default()
        };
        let t = Snapshot::total("all", &[a.clone(), b.clone()]);
        let block = live_block("run", &view(Instant::now()), &t, &[a, b]);
        assert!(block.contains("2/3 connected"), "{block}");
        assert!(block.contains("sent 10 (250/s)   acked 9"), "{block}");
        assert!(block.contains("errors     2 (socket_error 2)"), "{block}");
        assert!(block.contains("press     2/2 connected"), "{block}");
        assert!(!block.contains("broker"), "{block}");
    }
}
