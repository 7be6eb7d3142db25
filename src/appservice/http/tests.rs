//! The HTTP boundary in-process: a real listener on 127.0.0.1:0, a real
//! HTTP client, the in-memory store.

use super::*;
use crate::store::MemoryStore;

const TOKEN: &str = "hs-token-for-tests";

struct Server {
    base: String,
    store: Arc<MemoryStore>,
    http: reqwest::Client,
}

async fn serve() -> Server {
    let store = Arc::new(MemoryStore::new());
    let intake = Arc::new(Intake {
        store: store.clone(),
        hs_token: Secret::new(TOKEN),
        wake: Arc::new(Notify::new()),
        max_body_bytes: 8 * 1024 * 1024,
        clock: crate::pipeline::clock::system(),
        gaps: std::sync::Mutex::new(crate::appservice::gaps::Gaps::after(None)),
        resends: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(intake)).await.unwrap() });
    Server { base, store, http: reqwest::Client::new() }
}

impl Server {
    async fn put(&self, path: &str, token: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let mut req = self.http.put(format!("{}{path}", self.base)).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default())
    }

    fn stored(&self) -> (u64, u64) {
        let s = self.store.stats().unwrap();
        (s.transactions, s.inbox_pending)
    }
}

const TXN: &str = r#"{"events":[{"type":"m.room.message","event_id":"$a","room_id":"!r:x","sender":"@s:x","content":{}},
    {"type":"m.room.message","event_id":"$b","room_id":"!r:x","sender":"@s:x","content":{}}]}"#;

#[tokio::test]
async fn transaction_is_stored_and_acknowledged_once() {
    let s = serve().await;
    let (status, body) = s.put("/_matrix/app/v1/transactions/1", Some(TOKEN), TXN).await;
    assert_eq!((status, body), (200, serde_json::json!({})));
    assert_eq!(s.stored(), (1, 2));
    let (status, _) = s.put("/_matrix/app/v1/transactions/1", Some(TOKEN), TXN).await;
    assert_eq!(status, 200);
    assert_eq!(s.stored(), (1, 2), "a replay must store nothing");
    assert_eq!(s.store.stats().unwrap().replayed_transactions, 1);
}

#[tokio::test]
async fn missing_token_is_401_and_stores_nothing() {
    let s = serve().await;
    let (status, body) = s.put("/_matrix/app/v1/transactions/1", None, TXN).await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")));
    assert_eq!(s.stored(), (0, 0));
}

#[tokio::test]
async fn wrong_token_is_403_and_stores_nothing() {
    let s = serve().await;
    for token in ["nope", "hs-token-for-test", "hs-token-for-testss", ""] {
        let (status, body) = s.put("/_matrix/app/v1/transactions/1", Some(token), TXN).await;
        assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "token {token:?}");
    }
    assert_eq!(s.stored(), (0, 0));
}

#[tokio::test]
async fn legacy_path_and_query_token_are_accepted() {
    let s = serve().await;
    let (status, _) = s.put(&format!("/transactions/7?access_token={TOKEN}"), None, TXN).await;
    assert_eq!(status, 200);
    let (status, _) = s.put("/transactions/8?access_token=wrong", Some(TOKEN), TXN).await;
    assert_eq!(status, 403, "header and query token must agree");
    assert_eq!(s.stored(), (1, 2));
}

#[tokio::test]
async fn malformed_bodies_are_400_and_store_nothing() {
    let s = serve().await;
    for (body, errcode) in [
        ("{not json", "M_NOT_JSON"),
        ("", "M_NOT_JSON"),
        ("\u{0}\u{1}", "M_NOT_JSON"),
        ("[]", "M_BAD_JSON"),
        ("{}", "M_BAD_JSON"),
        (r#"{"events": {}}"#, "M_BAD_JSON"),
        (r#"{"events": "x"}"#, "M_BAD_JSON"),
    ] {
        let (status, got) = s.put("/_matrix/app/v1/transactions/1", Some(TOKEN), body).await;
        assert_eq!((status, got["errcode"].as_str()), (400, Some(errcode)), "body {body:?}");
    }
    assert_eq!(s.stored(), (0, 0));
}

#[tokio::test]
async fn oversized_body_is_413_and_a_maximal_transaction_fits() {
    let s = serve().await;
    let huge = vec![b' '; 8 * 1024 * 1024 + 1];
    let (status, body) = s.put("/_matrix/app/v1/transactions/1", Some(TOKEN), huge).await;
    assert_eq!((status, body["errcode"].as_str()), (413, Some("M_TOO_LARGE")));
    // 100 events of almost 64 KiB each: what a homeserver may really send.
    let event = format!(
        r#"{{"type":"m.room.message","event_id":"$e","room_id":"!r:x","sender":"@s:x","content":{{"body":"{}"}}}}"#,
        "x".repeat(64_000)
    );
    let body = format!(r#"{{"events":[{}]}}"#, vec![event; 100].join(","));
    let (status, _) = s.put("/_matrix/app/v1/transactions/2", Some(TOKEN), body).await;
    assert_eq!(status, 200);
    assert_eq!(s.stored(), (1, 100));
}

#[tokio::test]
async fn store_failure_is_500_so_the_homeserver_retries() {
    let s = serve().await;
    s.store.fail_writes(true);
    let (status, body) = s.put("/_matrix/app/v1/transactions/1", Some(TOKEN), TXN).await;
    assert_eq!((status, body["errcode"].as_str()), (500, Some("M_UNKNOWN")));
    s.store.fail_writes(false);
    let (status, _) = s.put("/_matrix/app/v1/transactions/1", Some(TOKEN), TXN).await;
    assert_eq!(status, 200, "the retry after recovery is accepted as new");
    assert_eq!(s.stored(), (1, 2));
}

#[tokio::test]
async fn ping_queries_and_unknown_routes() {
    let s = serve().await;
    let ping = s
        .http
        .post(format!("{}/_matrix/app/v1/ping", s.base))
        .bearer_auth(TOKEN)
        .body(r#"{"transaction_id":"t"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status().as_u16(), 200);
    let unauth_ping = s.http.post(format!("{}/_matrix/app/v1/ping", s.base)).body("{}").send().await.unwrap();
    assert_eq!(unauth_ping.status().as_u16(), 401);
    for (path, status, errcode) in [
        ("/_matrix/app/v1/users/%40x%3Aexample.org", 404, "M_NOT_FOUND"),
        ("/users/%40x%3Aexample.org", 404, "M_NOT_FOUND"),
        ("/_matrix/app/v1/rooms/%23a%3Aexample.org", 404, "M_NOT_FOUND"),
        ("/_matrix/app/v1/thirdparty/protocol/irc", 404, "M_UNRECOGNIZED"),
        ("/_matrix/app/v1/transactions/1", 405, "M_UNRECOGNIZED"),
    ] {
        let resp = s.http.get(format!("{}{path}", s.base)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let body: serde_json::Value = resp.json_body().await;
        assert_eq!(body["errcode"], errcode, "{path}");
    }
}

trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

fn one_event(id: &str) -> String {
    format!(
        r#"{{"events":[{{"type":"m.room.message","event_id":"${id}","room_id":"!r:x","sender":"@s:x","content":{{}}}}]}}"#
    )
}

/// Transaction 30 was stranded by the homeserver: 31 is refused once with a
/// retryable error and nothing of it stored, then 30 and 31 are accepted.
#[tokio::test]
async fn a_gap_in_the_numbering_is_refused_once_so_the_homeserver_sends_the_missing_one() {
    let s = serve().await;
    let server = &s;
    let put = |n: u32| {
        let path = format!("/_matrix/app/v1/transactions/{n}");
        let body = one_event(&format!("e{n}"));
        async move { server.put(&path, Some(TOKEN), body).await }
    };
    assert_eq!(put(29).await.0, 200);
    let (status, body) = put(31).await;
    assert_eq!((status, body["errcode"].as_str()), (503, Some("M_UNKNOWN")));
    assert_eq!(s.stored(), (1, 1), "nothing of the refused transaction is stored");
    assert_eq!(put(30).await.0, 200);
    assert_eq!(put(31).await.0, 200);
    assert_eq!(s.stored(), (3, 3));
    let order: Vec<String> =
        s.store.inbox_batch(10).unwrap().iter().map(|i| String::from_utf8_lossy(&i.raw).into_owned()).collect();
    assert!(order[1].contains("$e30") && order[2].contains("$e31"), "in the homeserver's order: {order:?}");
}
