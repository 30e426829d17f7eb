//! The HTTP transports of the browser side: SSE read with a raw event-stream reader,
//! long-poll, and the REST API.

#[path = "browser_http/rest.rs"]
mod rest;

use e2e_tests::GatewayHarness;
use e2e_tests::http::{get_json, post_json};
use e2e_tests::sse::SseReader;
use serde_json::json;
use std::time::Duration;

async fn publish_numbers(
    http: std::net::SocketAddr,
    channel_of: impl Fn(i64) -> String,
    r: std::ops::Range<i64>,
) {
    let messages: Vec<serde_json::Value> = r
        .map(|i| json!({"channel": channel_of(i), "data": i, "qos": 1}))
        .collect();
    let (status, body) = post_json(
        http,
        "/api/v1/publish/batch",
        &json!({"messages": messages}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn sse_numbers(r: &mut SseReader, n: usize) -> Vec<i64> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = r.next_event().await;
        if e.event.is_empty() {
            let v = e.json();
            assert_eq!(e.id.as_deref(), v["pos"].as_str(), "id is the position");
            out.push(v["data"].as_i64().expect("number"));
        }
    }
    out
}

#[tokio::test]
async fn sse_headers_welcome_messages_and_last_event_id_resume() {
    let gw = GatewayHarness::new().start().await;
    let http = gw.http_addr();
    let mut r = SseReader::open(http, "/sse?filter=s%2F%2B%2Ft&filter=alarms", None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    );
    assert!(
        r.header("cache-control")
            .is_some_and(|c| c.contains("no-cache"))
    );
    let w = r.next_event().await;
    assert_eq!(w.event, "welcome");
    assert!(w.id.is_some(), "the welcome sets Last-Event-ID");
    let topic = |i: i64| {
        if i % 2 == 0 {
            format!("s/{i}/t")
        } else {
            "alarms".to_string()
        }
    };
    publish_numbers(http, topic, 0..6).await;
    assert_eq!(sse_numbers(&mut r, 6).await, (0..6).collect::<Vec<_>>());
    // Drop after 6, publish more, come back with Last-Event-ID: exactly what was missed.
    let last = r.last_event_id.clone().expect("an id");
    drop(r);
    publish_numbers(http, topic, 6..12).await;
    let mut again = SseReader::open(
        http,
        "/sse?filter=s%2F%2B%2Ft&filter=alarms&rewind=100",
        Some(&last),
    )
    .await;
    let w = again.next_event().await;
    assert_eq!(
        (w.event.as_str(), w.id.as_deref()),
        ("welcome", Some(last.as_str()))
    );
    assert_eq!(
        sse_numbers(&mut again, 6).await,
        (6..12).collect::<Vec<_>>()
    );
    assert!(
        again
            .try_next_block(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing more"
    );
    gw.stop().await;
}

#[tokio::test]
async fn sse_heartbeats_carry_the_position_and_reset_is_an_event() {
    let gw = GatewayHarness::new()
        .with_config(|c| {
            c.browser.heartbeat = Duration::from_millis(200);
            c.history.max_messages = 3;
        })
        .start()
        .await;
    let http = gw.http_addr();
    let mut r = SseReader::open(http, "/sse?filter=t", None).await;
    r.next_event().await;
    publish_numbers(http, |_| "t".into(), 0..1).await;
    assert_eq!(sse_numbers(&mut r, 1).await, vec![0]);
    let last = r.last_event_id.clone().expect("id");
    // Traffic on other channels does not reach this stream; the heartbeat repeats where it
    // stands, a valid point to resume from.
    publish_numbers(http, |_| "other".into(), 0..3).await;
    let hb = loop {
        let b = r
            .try_next_block(Duration::from_secs(5))
            .await
            .expect("heartbeat");
        if !b.comments.is_empty() {
            break b;
        }
    };
    assert!(hb.data.is_empty());
    let hb_seq: u64 = hb
        .id
        .as_deref()
        .and_then(|i| i.split_once('-'))
        .and_then(|(_, s)| s.parse().ok())
        .expect("id");
    let last_seq: u64 = last
        .split_once('-')
        .and_then(|(_, s)| s.parse().ok())
        .expect("id");
    assert_eq!(hb_seq, last_seq, "heartbeat id is the stream's position");
    drop(r);
    // One by one, so that count retention trims as they come.
    for i in 1..20 {
        publish_numbers(http, |_| "t".into(), i..i + 1).await;
    }
    let mut again = SseReader::open(http, "/sse?filter=t", Some(&last)).await;
    again.next_event().await;
    let reset = again.next_event().await;
    assert_eq!(reset.event, "reset");
    let v = reset.json();
    assert_eq!(
        (v["reason"].clone(), v["filter"].clone()),
        (json!("retention"), json!("t"))
    );
    let kept_from: u64 = v["to"]
        .as_str()
        .and_then(|t| t.split_once('-'))
        .and_then(|(_, s)| s.parse::<u64>().ok())
        .expect("to")
        + 1;
    let first = again.next_event().await;
    let first_seq = first
        .id
        .as_deref()
        .and_then(|i| i.split_once('-'))
        .and_then(|(_, s)| s.parse::<u64>().ok());
    assert_eq!(
        first_seq,
        Some(kept_from),
        "continues right after the reset"
    );
    let mut got = vec![first.json()["data"].as_i64().expect("n")];
    while got.last() != Some(&19) {
        got.extend(sse_numbers(&mut again, 1).await);
    }
    assert!(got.len() <= 5, "only what history still holds: {got:?}");
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    gw.stop().await;
}

#[tokio::test]
async fn sse_refuses_bad_queries_with_json_codes() {
    let gw = GatewayHarness::new().start().await;
    for (q, code) in [
        ("", "bad_request"),
        ("filter=a%2F%23%2Fb", "invalid_filter"),
        ("filter=a&since=zz", "bad_position"),
        ("filter=a&colour=red", "bad_request"),
    ] {
        let r = SseReader::open(gw.http_addr(), &format!("/sse?{q}"), None).await;
        assert_eq!(r.status, 400, "{q}");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON error");
        assert_eq!(v["code"], code, "{q}: {v}");
    }
    let r = SseReader::open(gw.http_addr(), "/sse?filter=a", Some("1-x")).await;
    assert_eq!(r.status, 400, "a bad Last-Event-ID is refused, not ignored");
    gw.stop().await;
}

#[tokio::test]
async fn long_poll_continues_with_position() {
    let gw = GatewayHarness::new().start().await;
    let http = gw.http_addr();
    let (s, first) = get_json(http, "/poll?filter=p%2F%23&timeout=0").await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["events"], json!([]));
    let mut pos = first["position"].as_str().expect("position").to_owned();
    publish_numbers(http, |i| format!("p/{i}"), 0..5).await;
    let mut got = Vec::new();
    for _ in 0..10 {
        if got.len() == 5 {
            break;
        }
        let (s, r) = get_json(http, &format!("/poll?filter=p%2F%23&since={pos}&limit=2")).await;
        assert_eq!(s, 200, "{r}");
        for e in r["events"].as_array().expect("events") {
            assert_eq!(e["op"], "msg");
            got.push(e["data"].as_i64().expect("n"));
        }
        pos = r["position"].as_str().expect("position").to_owned();
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    // A waiting poll answers as soon as something comes.
    let waiter = tokio::spawn(async move {
        get_json(
            http,
            &format!("/poll?filter=p%2F%23&since={pos}&timeout=20"),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_numbers(http, |_| "p/x".into(), 5..6).await;
    let (s, r) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("answers")
        .expect("task");
    assert_eq!((s, r["events"][0]["data"].clone()), (200, json!(5)));
    let (s, r) = get_json(http, "/poll?filter=p&since=nope").await;
    assert_eq!((s, r["code"].clone()), (400, json!("bad_position")));
    gw.stop().await;
}

#[tokio::test]
async fn metrics_count_open_browser_connections_by_transport() {
    let gw = GatewayHarness::new().start().await;
    let gauge = |body: &str, transport: &str| -> Option<u64> {
        let name = format!("gateway_browser_connections{{transport=\"{transport}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&name))
            .and_then(|v| v.trim().parse().ok())
    };
    let metrics = e2e_tests::http::request(gw.admin_addr(), "GET", "/metrics", None, &[]).await;
    assert_eq!(gauge(&metrics.body, "ws"), Some(0), "{}", metrics.body);
    let ws = e2e_tests::ws::WsClient::connect(gw.http_addr(), "").await;
    let mut sse = SseReader::open(gw.http_addr(), "/sse?filter=t", None).await;
    sse.next_event().await;
    let metrics = e2e_tests::http::request(gw.admin_addr(), "GET", "/metrics", None, &[]).await;
    assert_eq!(
        (
            gauge(&metrics.body, "ws"),
            gauge(&metrics.body, "sse"),
            gauge(&metrics.body, "poll")
        ),
        (Some(1), Some(1), Some(0)),
        "{}",
        metrics.body
    );
    drop((ws, sse));
    gw.stop().await;
}

#[tokio::test]
async fn allowed_origins_answer_cors_and_gate_websocket_upgrades() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let gw = GatewayHarness::new()
        .with_config(|c| c.browser.allowed_origins = vec!["https://dash.example.com".into()])
        .start()
        .await;
    let http = gw.http_addr();
    let preflight = |origin: &'static str| {
        let headers = [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ];
        async move { e2e_tests::http::request(http, "OPTIONS", "/api/v1/publish", None, &headers).await }
    };
    let ok = preflight("https://dash.example.com").await;
    assert!(ok.status < 300, "{}", ok.status);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://dash.example.com")
    );
    let other = preflight("https://evil.example.net").await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    let get = e2e_tests::http::request(
        http,
        "GET",
        "/api/v1/channels",
        None,
        &[("Origin", "https://dash.example.com")],
    )
    .await;
    assert_eq!(get.status, 200);
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some("https://dash.example.com")
    );

    let module = e2e_tests::http::request(
        http,
        "GET",
        "/client.js",
        None,
        &[("Origin", "https://dash.example.com")],
    )
    .await;
    assert_eq!(module.status, 200);
    assert_eq!(
        module.header("access-control-allow-origin"),
        Some("https://dash.example.com"),
        "a page on another origin can import the client module"
    );

    let upgrade = |origin: Option<&'static str>| async move {
        let mut req = format!("ws://{http}/ws")
            .into_client_request()
            .expect("request");
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", o.parse().expect("header value"));
        }
        tokio_tungstenite::connect_async(req).await.map(|_| ())
    };
    assert!(upgrade(Some("https://dash.example.com")).await.is_ok());
    assert!(
        upgrade(None).await.is_ok(),
        "clients without an Origin are let in"
    );
    match upgrade(Some("https://evil.example.net")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a foreign origin is refused, got {other:?}"),
    }
    gw.stop().await;
}
