//! Crash safety: a child process appends reliable messages and prints each acknowledged
//! position; it is killed with SIGKILL mid-stream; every acknowledged message must be in the
//! reopened store, in order.
//!
//! The child is this same test binary, re-run with `--exact` on this test and an environment
//! variable naming the store directory.

use super::*;
use crate::log::MessageLog;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

const CHILD_DIR_VAR: &str = "GATEWAY_LOG_CRASH_CHILD_DIR";
const PRODUCERS: usize = 4;
/// Acknowledgements the parent waits for before killing the child.
const ACKS_BEFORE_KILL: usize = 300;

#[test]
fn acknowledged_messages_survive_sigkill() {
    match std::env::var_os(CHILD_DIR_VAR) {
        Some(dir) => child(Path::new(&dir)),
        None => parent(),
    }
}

/// Appends numbered QoS 1 messages from several producers and prints `ACK <producer> <n>
/// <seq>` for each once acknowledged. Stops on its own after a bounded run.
fn child(dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (log, _feed) = open(dir, default_rules());
        let mut tasks = Vec::new();
        for p in 0..PRODUCERS {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..5_000u32 {
                    let m = msg(&format!("crash/{p}"), QoS::AtLeastOnce, &format!("{p}-{n}"));
                    let seq = log.append(m, None).await.unwrap().position().seq;
                    println!("ACK {p} {n} {seq}");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        // Finished before being killed: wait (bounded) so the parent still kills a live writer.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let test_name = module_path!()
        .split_once("::")
        .map_or("", |(_, rest)| rest)
        .to_string()
        + "::acknowledged_messages_survive_sigkill";
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let f: Vec<&str> = line.split_whitespace().collect();
            if let ["ACK", p, n, seq] = f[..] {
                let parsed = (p.parse::<usize>(), n.parse::<u32>(), seq.parse::<u64>());
                if let (Ok(p), Ok(n), Ok(seq)) = parsed {
                    if tx.send((p, n, seq)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut acks = Vec::new();
    while acks.len() < ACKS_BEFORE_KILL {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => acks.push(a),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped acknowledging after {} acks: {e}", acks.len());
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acks printed before the kill but not yet read still count: the child promised them.
    while let Ok(a) = rx.recv_timeout(Duration::from_secs(5)) {
        acks.push(a);
    }
    reader.join().unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (log, _feed) = open(dir.path(), default_rules());
        let history = log.read(0, 100_000).unwrap();
        assert!(history.windows(2).all(|w| w[0].pos.seq < w[1].pos.seq));
        let by_seq: std::collections::HashMap<u64, String> = history
            .iter()
            .map(|m| {
                (
                    m.pos.seq,
                    String::from_utf8_lossy(&m.msg.payload).into_owned(),
                )
            })
            .collect();
        for &(p, n, seq) in &acks {
            assert_eq!(
                by_seq.get(&seq),
                Some(&format!("{p}-{n}")),
                "acknowledged seq {seq} lost"
            );
        }
        // Each producer's messages are in history in the order it sent them, without holes
        // up to its last acknowledged one.
        for p in 0..PRODUCERS {
            let mine = payloads(&log.read_channel(&format!("crash/{p}"), 0, 100_000).unwrap());
            let last_ack = acks.iter().filter(|a| a.0 == p).map(|a| a.1).max();
            if let Some(last) = last_ack {
                let expect: Vec<String> = (0..=last).map(|n| format!("{p}-{n}")).collect();
                assert!(
                    mine.len() >= expect.len(),
                    "producer {p}: history shorter than acks"
                );
                assert_eq!(&mine[..expect.len()], &expect[..]);
            }
        }
        // New appends continue above everything acknowledged.
        let max_ack = acks.iter().map(|a| a.2).max().unwrap_or(0);
        let next = log
            .append(msg("after", QoS::AtLeastOnce, "x"), None)
            .await
            .unwrap()
            .position()
            .seq;
        assert!(next > max_ack);
    });
}
