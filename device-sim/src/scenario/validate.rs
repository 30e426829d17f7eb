//! From the raw file to a [`Scenario`]: defaults, templates, ranges, uniqueness of names and
//! client ids, TLS files. Every problem is collected with the span of the field at fault,
//! so one run of `device-sim run` lists all of them.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{Problem, ScenarioError, locate};
use super::raw::{self, DurationValue, Protocol, RawClass, RawScenario};
use super::template::{Scope, Template, Vars};
use super::{
    Backoff, Broker, Class, ClassFaults, Command, Message, ProxyFaults, Reply, Scenario, Storm,
    Stream, TlsFiles, payload,
};

/// Longest list of problems reported at once.
const MAX_PROBLEMS: usize = 30;
/// Largest class.
const MAX_COUNT: i64 = 1_000_000;

/// Collects problems while the scenario is checked.
pub(super) struct Checker<'a> {
    file: String,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// Records a problem at `span`.
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS {
            let p = locate(&self.file, self.text, Some(span), message.into());
            self.problems.push(p);
        }
    }

    /// Records a problem of the whole file (line 1, no field).
    fn general(&mut self, message: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS {
            let p = locate(&self.file, self.text, None, message.into());
            self.problems.push(p);
        }
    }

    /// Parses a template, recording a problem (and returning `None`) when it is invalid.
    pub(super) fn template(&mut self, text: &Spanned<String>, scope: Scope) -> Option<Template> {
        match Template::parse(text.get_ref(), scope) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(text.span(), e);
                None
            }
        }
    }

    /// A topic name template: not empty, no wildcards.
    fn topic(&mut self, text: &Spanned<String>) -> Option<Template> {
        let t = text.get_ref();
        if t.is_empty() {
            self.error(text.span(), "a topic cannot be empty");
            return None;
        }
        if t.contains(['+', '#']) {
            self.error(
                text.span(),
                format!("`{t}`: wildcards (+, #) are for subscriptions"),
            );
            return None;
        }
        self.template(text, Scope::Device)
    }
}

/// Checks `text` read from `path`.
pub(super) fn scenario(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut c = Checker {
        file,
        text,
        problems: Vec::new(),
    };
    let raw: RawScenario = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let p = locate(&c.file, text, e.span(), e.message().trim_end().to_owned());
            return Err(ScenarioError::Invalid(vec![p]));
        }
    };
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let broker = raw
        .broker
        .as_ref()
        .and_then(|b| match b.get_ref().parse::<Broker>() {
            Ok(b) => Some(b),
            Err(e) => {
                c.error(b.span(), e);
                None
            }
        });
    let duration = match &raw.duration {
        Some(d) if d.get_ref().0.is_zero() => {
            c.error(d.span(), "the run needs a duration above zero");
            Duration::ZERO
        }
        Some(d) => d.get_ref().0,
        None => Duration::from_secs(60),
    };
    let proxy = raw.faults.and_then(|f| f.proxy).map(|p| proxy(&mut c, p));
    let mut classes = Vec::new();
    match raw.classes {
        Some(list) if !list.is_empty() => {
            for class in list {
                let span = class.span();
                if let Some(class) = self::class(&mut c, class, &base) {
                    classes.push((class, span));
                }
            }
        }
        _ => c.general("no device classes: add at least one [[classes]] table"),
    }
    unique(&mut c, &classes);
    let classes = classes.into_iter().map(|(class, _)| class).collect();
    if !c.problems.is_empty() {
        return Err(ScenarioError::Invalid(c.problems));
    }
    let name = raw.name.unwrap_or_else(|| {
        path.file_stem()
            .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned())
    });
    Ok(Scenario {
        name,
        file: path.to_path_buf(),
        broker,
        duration,
        seed: raw.seed,
        ramp_up: raw.ramp_up.map_or(Duration::ZERO, |d| d.0),
        proxy,
        classes,
    })
}

fn proxy(c: &mut Checker<'_>, p: raw::RawProxy) -> ProxyFaults {
    let mut probability = |v: &Option<Spanned<f64>>, what: &str| match v {
        Some(v) if !(0.0..=1.0).contains(v.get_ref()) => {
            c.error(v.span(), format!("{what} is a probability between 0 and 1"));
            0.0
        }
        Some(v) => *v.get_ref(),
        None => 0.0,
    };
    let loss = probability(&p.loss, "loss");
    let cut = probability(&p.cut, "cut");
    if let Some(rto) = p.rto.as_ref().filter(|r| r.get_ref().0.is_zero()) {
        c.error(rto.span(), "rto must be above zero");
    }
    if let Some(bw) = p.bandwidth.as_ref().filter(|b| *b.get_ref() == 0) {
        c.error(
            bw.span(),
            "bandwidth must be above zero (leave it out for unlimited)",
        );
    }
    ProxyFaults {
        latency: p.latency.map_or(Duration::ZERO, |d| d.0),
        jitter: p.jitter.map_or(Duration::ZERO, |d| d.0),
        loss,
        rto: p.rto.map(|d| d.get_ref().0),
        max_retransmits: p.max_retransmits,
        cut,
        bandwidth: p.bandwidth.map(|b| *b.get_ref()),
    }
}

fn class(c: &mut Checker<'_>, raw: Spanned<RawClass>, base: &Path) -> Option<Class> {
    let raw = raw.into_inner();
    let before = c.problems.len();
    let name = raw.name.get_ref().clone();
    if name.is_empty() || name.contains(['/', '+', '#']) {
        c.error(
            raw.name.span(),
            "a class name is non-empty and has no `/`, `+` or `#`",
        );
    }
    let count = *raw.count.get_ref();
    if !(1..=MAX_COUNT).contains(&count) {
        c.error(
            raw.count.span(),
            format!("count must be between 1 and {MAX_COUNT}, not {count}"),
        );
    }
    let client_id = match &raw.client_id {
        Some(t) => {
            let parsed = c.template(t, Scope::ClientId);
            if t.get_ref().is_empty() {
                c.error(t.span(), "a client id cannot be empty");
            } else if count > 1 && parsed.as_ref().is_some_and(|p| !p.uses_index()) {
                c.error(
                    t.span(),
                    "every device would get the same client id; add `{n}`",
                );
            }
            parsed
        }
        None => Template::parse("{class}-{n}", Scope::ClientId).ok(),
    };
    let protocol = raw.protocol.unwrap_or(Protocol::V311);
    let keep_alive = positive(
        c,
        raw.keep_alive.as_ref(),
        "keep_alive",
        Duration::from_secs(30),
    );
    let least = match protocol {
        Protocol::V311 => Duration::from_secs(1),
        Protocol::V5 => Duration::from_secs(5),
    };
    if let Some(k) = raw.keep_alive.as_ref().filter(|_| keep_alive < least) {
        let msg = format!(
            "keep_alive must be at least {}s with this protocol",
            least.as_secs()
        );
        c.error(k.span(), msg);
    }
    let session_expiry = raw.session_expiry.as_ref().map(|d| d.get_ref().0);
    if let Some(d) = raw
        .session_expiry
        .as_ref()
        .filter(|_| protocol != Protocol::V5)
    {
        c.error(d.span(), "session_expiry needs protocol = 5");
    }
    let inflight = at_least_one(c, raw.inflight.map(|v| v.map_into()), 32);
    let queue = at_least_one(c, raw.queue.map(|v| v.map_into()), 64);
    let tls = raw.tls.map(|t| tls(c, t, base));
    let will = raw.will.map(|m| message(c, m, "offline"));
    let birth = raw.birth.map(|m| message(c, m, "online"));
    let telemetry = raw
        .telemetry
        .into_iter()
        .filter_map(|s| stream(c, s))
        .collect();
    let commands = raw
        .commands
        .into_iter()
        .filter_map(|cmd| command(c, cmd))
        .collect();
    let faults = raw.faults.map(|f| faults(c, f)).unwrap_or_default();
    let reconnect = backoff(c, raw.reconnect);
    if c.problems.len() > before {
        return None;
    }
    Some(Class {
        name,
        count: u32::try_from(count).ok()?,
        client_id: client_id?,
        protocol,
        username: raw.username,
        password: raw.password,
        keep_alive,
        clean_session: raw.clean_session.unwrap_or(true),
        session_expiry,
        inflight: u16::try_from(inflight).unwrap_or(u16::MAX),
        queue: usize::try_from(queue).unwrap_or(usize::MAX),
        tls,
        will: will.flatten(),
        birth: birth.flatten(),
        telemetry,
        commands,
        faults,
        reconnect,
    })
}

trait MapInto {
    fn map_into(self) -> Spanned<u64>;
}
impl<T: Into<u64>> MapInto for Spanned<T> {
    fn map_into(self) -> Spanned<u64> {
        let span = self.span();
        Spanned::new(span, self.into_inner().into())
    }
}

fn at_least_one(c: &mut Checker<'_>, v: Option<Spanned<u64>>, default: u64) -> u64 {
    match v {
        Some(v) if *v.get_ref() == 0 => {
            c.error(v.span(), "must be at least 1");
            default
        }
        Some(v) => v.into_inner(),
        None => default,
    }
}

fn positive(
    c: &mut Checker<'_>,
    v: Option<&Spanned<DurationValue>>,
    what: &str,
    default: Duration,
) -> Duration {
    match v {
        Some(d) if d.get_ref().0.is_zero() => {
            c.error(d.span(), format!("{what} must be above zero"));
            default
        }
        Some(d) => d.get_ref().0,
        None => default,
    }
}

fn tls(c: &mut Checker<'_>, t: raw::RawTls, base: &Path) -> TlsFiles {
    let mut file = |p: Option<Spanned<String>>| -> Option<PathBuf> {
        let p = p?;
        let path = base.join(p.get_ref());
        if let Err(e) = std::fs::metadata(&path) {
            c.error(p.span(), format!("cannot read {}: {e}", path.display()));
        }
        Some(path)
    };
    let cert_span = t.cert.as_ref().or(t.key.as_ref()).map(Spanned::span);
    let files = TlsFiles {
        ca: file(t.ca),
        cert: file(t.cert),
        key: file(t.key),
    };
    if let Some(span) = cert_span.filter(|_| files.cert.is_some() != files.key.is_some()) {
        c.error(span, "mutual TLS needs both cert and key");
    }
    files
}

fn message(c: &mut Checker<'_>, m: raw::RawMessage, default: &str) -> Option<Message> {
    let topic = c.topic(&m.topic);
    let payload = match &m.payload {
        Some(p) => c.template(p, Scope::Device),
        None => Template::parse(default, Scope::Device).ok(),
    };
    Some(Message {
        topic: topic?,
        payload: payload?,
        qos: m.qos.map_or(1, |q| q.0),
        retain: m.retain.unwrap_or(true),
    })
}

fn stream(c: &mut Checker<'_>, s: raw::RawStream) -> Option<Stream> {
    let topic = c.topic(&s.topic);
    let stamp = s.stamp.unwrap_or(true);
    let model = payload::model(c, s.payload, stamp);
    let interval = positive(c, Some(&s.interval), "interval", Duration::from_secs(1));
    let jitter = s.jitter.as_ref().map_or(Duration::ZERO, |j| {
        if j.get_ref().0 > interval {
            c.error(j.span(), "jitter cannot exceed the interval");
        }
        j.get_ref().0
    });
    Some(Stream {
        topic: topic?,
        payload: model?,
        interval,
        jitter,
        qos: s.qos.map_or(0, |q| q.0),
        retain: s.retain.unwrap_or(false),
        stamp,
    })
}

fn command(c: &mut Checker<'_>, cmd: raw::RawCommand) -> Option<Command> {
    let f = cmd.topic.get_ref();
    let levels: Vec<&str> = f.split('/').collect();
    let bad_filter = f.is_empty()
        || levels.iter().enumerate().any(|(i, l)| {
            (l.contains('#') && (*l != "#" || i + 1 != levels.len()))
                || (l.contains('+') && *l != "+")
        });
    if bad_filter {
        c.error(
            cmd.topic.span(),
            format!("`{f}` is not a valid topic filter"),
        );
    }
    let filter = c.template(&cmd.topic, Scope::Device);
    let reply_topic = cmd.reply_topic.as_ref().and_then(|t| {
        if t.get_ref().contains(['+', '#']) || t.get_ref().is_empty() {
            c.error(t.span(), "a reply topic is a topic name, without wildcards");
            return None;
        }
        c.template(t, Scope::Reply)
    });
    let reply = match cmd.reply {
        Some(r) => payload::reply(c, r)?,
        None => Reply::Text(Template::parse("ok", Scope::Reply).ok()?),
    };
    Some(Command {
        filter: filter?,
        qos: cmd.qos.map_or(1, |q| q.0),
        reply_topic,
        reply,
        reply_qos: cmd.reply_qos.map_or(1, |q| q.0),
        reply_retain: cmd.reply_retain.unwrap_or(false),
        delay: cmd.delay.map_or(Duration::ZERO, |d| d.0),
    })
}

fn faults(c: &mut Checker<'_>, f: raw::RawClassFaults) -> ClassFaults {
    let mut mean = None;
    match (&f.disconnect_every, &f.disconnect_probability) {
        (Some(_), Some(p)) => c.error(
            p.span(),
            "give either disconnect_every or disconnect_probability, not both",
        ),
        (Some(every), None) => {
            mean = Some(positive(c, Some(every), "disconnect_every", Duration::ZERO));
        }
        (None, Some(p)) => {
            let p_min = *p.get_ref();
            if p_min > 0.0 && p_min < 1.0 {
                // A chance p per minute is a Poisson rate of -ln(1 - p) per minute.
                mean = Some(Duration::from_secs_f64(60.0 / -(1.0 - p_min).ln()));
            } else {
                c.error(
                    p.span(),
                    "disconnect_probability (per minute) must be above 0 and below 1",
                );
            }
        }
        (None, None) => {}
    }
    let storms = f
        .storm
        .into_iter()
        .map(|s| {
            let fraction = match s.fraction {
                Some(fr) if !(*fr.get_ref() > 0.0 && *fr.get_ref() <= 1.0) => {
                    c.error(fr.span(), "fraction must be above 0 and at most 1");
                    1.0
                }
                Some(fr) => fr.into_inner(),
                None => 1.0,
            };
            Storm {
                at: s.at.0,
                fraction,
                reconnect_delay: s.reconnect_delay.map_or(Duration::ZERO, |d| d.0),
            }
        })
        .collect();
    ClassFaults {
        disconnect_mean: mean,
        reconnect_delay: f.reconnect_delay.map_or(Duration::from_secs(1), |d| d.0),
        storms,
    }
}

fn backoff(c: &mut Checker<'_>, b: Option<raw::RawBackoff>) -> Backoff {
    let b = b.unwrap_or(raw::RawBackoff {
        initial: None,
        max: None,
    });
    let initial = positive(c, b.initial.as_ref(), "initial", Duration::from_secs(1));
    let max = positive(
        c,
        b.max.as_ref(),
        "max",
        Duration::from_secs(30).max(initial),
    );
    if let Some(m) = b.max.as_ref().filter(|_| max < initial) {
        c.error(m.span(), "max must be at least initial");
    }
    Backoff { initial, max }
}

/// Class names and client ids must be unique across the whole scenario: two devices with
/// one id would keep taking the session from each other.
fn unique(c: &mut Checker<'_>, classes: &[(Class, Range<usize>)]) {
    let mut names = HashSet::new();
    for (class, span) in classes {
        if !names.insert(class.name.as_str()) {
            c.error(
                span.clone(),
                format!("class name `{}` is used twice", class.name),
            );
        }
    }
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut reported = HashSet::new();
    for (class, span) in classes {
        for n in 1..=u64::from(class.count) {
            let vars = Vars {
                class: &class.name,
                id: "",
                n,
                command: None,
            };
            let id = class.client_id.expand(&vars);
            match seen.insert(id.clone(), &class.name) {
                Some(other) if reported.insert((other.to_owned(), class.name.clone())) => {
                    let msg = format!(
                        "client id `{id}` is also used by class `{other}`; client ids must be \
                         unique (set client_id, e.g. \"{{class}}-{{n}}\")"
                    );
                    c.error(span.clone(), msg);
                }
                _ => {}
            }
        }
    }
}
