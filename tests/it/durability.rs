//! "Acknowledged" means on stable storage, not only written: the real
//! binary runs under strace, and between reading a transaction and
//! answering it 200, a database file is synced (`fsync`/`fdatasync`).
//! sled's own flush ends in `sync_file_range`, which neither flushes the
//! disk's write cache nor the file's size, so without Gatekeeper's own
//! sync no such call comes (sled's background flusher syncs every 500 ms:
//! several transactions in a row cannot all fall in its beat).

use std::time::Duration;

use serde_json::json;

use crate::support::strace::{Call, calls, strace};
use crate::support::{World, eventually};

const LONG: Duration = Duration::from_secs(60);
const PROBES: usize = 5;

/// The last read of transaction `txn` (the server may read its request
/// line, headers and body in several reads), and the 200 that answered it
/// on the same connection.
fn read_and_answer<'a>(calls: &'a [Call], txn: &str) -> Result<(&'a Call, &'a Call), String> {
    let is_read = |c: &Call| matches!(c.name.as_str(), "read" | "recvfrom");
    let request = format!("/{txn} HTTP/1.1");
    let first =
        calls.iter().find(|c| is_read(c) && c.text.contains(&request)).ok_or_else(|| format!("no read of {txn}"))?;
    let answer = calls
        .iter()
        .find(|c| {
            c.entered > first.ended
                && c.fd == first.fd
                && matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg")
                && c.text.contains("HTTP/1.1 200")
        })
        .ok_or_else(|| format!("no 200 answer to {txn} on {}", first.fd))?;
    let last = calls
        .iter()
        .filter(|c| is_read(c) && c.fd == first.fd && c.entered >= first.entered && c.ended < answer.entered)
        .rfind(|c| c.result.as_deref().is_some_and(|r| r != "0" && !r.starts_with('-')))
        .unwrap_or(first);
    Ok((last, answer))
}

/// A sync of a file under `data` that began after `read` ended and ended
/// before `answer` began.
fn sync_between<'a>(calls: &'a [Call], read: &Call, answer: &Call, data: &str) -> Option<&'a Call> {
    calls.iter().find(|c| {
        matches!(c.name.as_str(), "fsync" | "fdatasync")
            && c.fd.contains(data)
            && c.result.as_deref() == Some("0")
            && c.entered > read.ended
            && c.ended < answer.entered
    })
}

#[tokio::test]
async fn a_transaction_reaches_stable_storage_before_it_is_acknowledged() {
    let strace = strace();
    let mut w = World::new("@.*:localhost").await;
    let trace = w.gatekeeper.dir.join("strace.txt");
    w.gatekeeper.start_traced(&strace, &trace, "fsync,fdatasync,read,recvfrom,write,writev,sendto,sendmsg");
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;

    let http = reqwest::Client::new();
    for i in 0..PROBES {
        let body = json!({"events": [{
            "type": "m.room.message", "event_id": format!("$probe{i}"), "room_id": "!elsewhere:localhost",
            "sender": "@nobody:localhost", "origin_server_ts": 1,
            "content": {"msgtype": "m.text", "body": "a message nobody protected wrote"},
        }]});
        let resp = http
            .put(format!("{}/_matrix/app/v1/transactions/durable-probe-{i}", w.gatekeeper.url))
            .bearer_auth(w.gatekeeper.hs_token())
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }

    let data = w.gatekeeper.dir.join("data");
    let data = data.to_str().unwrap();
    // strace writes a call once it ends: the last answer may still be on its way.
    let last = format!("durable-probe-{}", PROBES - 1);
    let traced = eventually("the last answer in the trace", LONG, || {
        let trace = std::fs::read_to_string(&trace).unwrap_or_default();
        let answered = read_and_answer(&calls(&trace), &last).is_ok();
        async move { answered.then_some(trace) }
    })
    .await;
    let all = calls(&traced);
    for i in 0..PROBES {
        let txn = format!("durable-probe-{i}");
        let (read, answer) = read_and_answer(&all, &txn).unwrap_or_else(|e| {
            let near: Vec<&str> = traced.lines().filter(|l| l.contains(&txn)).collect();
            panic!("{e}; the trace's lines naming it:\n{}", near.join("\n"))
        });
        let Some(sync) = sync_between(&all, read, answer, data) else {
            let shown: Vec<&str> = traced.lines().skip(read.entered).take(answer.entered + 1 - read.entered).collect();
            panic!("no sync of a file under {data} between reading {txn} and answering it 200:\n{}", shown.join("\n"));
        };
        println!(
            "{txn}: read on line {}, {} on line {}, 200 on line {}",
            read.ended, sync.text, sync.ended, answer.entered
        );
    }

    w.gatekeeper.stop();
}
