//! The one-click pages behind e-mail links. A GET only shows what the link
//! would do, with a button (mail scanners fetch links; they must not act);
//! the POST acts, once: the decision goes into the inbox like any other
//! input and the owner sees the answer in the control room. Plain HTML
//! that works without JavaScript.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Notify;

use crate::engine::links::{self, Link, LinkAction, LinkError};
use crate::engine::texts::escape_html;
use crate::pipeline::Clock;
use crate::pipeline::translate::Internal;
use crate::secret::Secret;
use crate::store::Store;

pub struct Pages {
    pub store: Arc<dyn Store>,
    pub secret: Secret,
    /// Links expire by this clock.
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<Notify>,
}

pub fn router(pages: Arc<Pages>) -> Router {
    Router::new()
        .route("/action/{token}", get(show).post(act))
        .fallback(|| async { page(StatusCode::NOT_FOUND, "Not found", "<p>There is nothing here.</p>") })
        .with_state(pages)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} – Gatekeeper</title></head>\
         <body style=\"font-family: sans-serif; max-width: 36em; margin: 2em auto; padding: 0 1em; line-height: 1.5\">\
         <main><h1>{t}</h1>{body}</main></body></html>",
        t = escape_html(title)
    );
    (status, [("cache-control", "no-store"), ("referrer-policy", "no-referrer")], Html(html)).into_response()
}

fn describe(link: &Link) -> (String, String) {
    let who = &link.subject;
    match link.action {
        LinkAction::Allow => (
            format!("Allow {who}?"),
            format!("{who} will reach you directly; what they sent is released into your chats."),
        ),
        LinkAction::Allow30 => (
            format!("Allow {who} for 30 days?"),
            format!("{who} will reach you directly for 30 days; what they sent is released into your chats."),
        ),
        LinkAction::Deny => {
            (format!("Deny {who}?"), "Gatekeeper leaves their rooms quietly and drops what they sent.".into())
        }
        LinkAction::Block => {
            (format!("Block {who}?"), "Their invites will be declined from now on, without a reply.".into())
        }
        LinkAction::BlockServer => (
            format!("Block everyone on {}?", who.trim_start_matches("*:")),
            "Invites from that server will be declined from now on, without a reply.".into(),
        ),
        LinkAction::Unsubscribe => {
            ("Stop the e-mailed digests?".into(), "Your digests will still arrive in your Gatekeeper chat.".into())
        }
        LinkAction::Undo => (
            "Undo that decision?".into(),
            "Gatekeeper takes back what that link did: they wait for you again as before.".into(),
        ),
    }
}

/// After a link decided about someone: a button that takes it back, for
/// the day the decision can be undone (a link of its own, used once).
fn undo_offer(pages: &Pages, link: &Link) -> String {
    if matches!(link.action, LinkAction::Unsubscribe | LinkAction::Undo) {
        return String::new();
    }
    let undo = Link {
        owner: link.owner.clone(),
        action: LinkAction::Undo,
        subject: String::new(),
        expires_ms: pages.clock.now_ms().saturating_add(crate::engine::undo::KEEP_MS),
        nonce: links::undo_nonce(&link.nonce),
    };
    format!(
        "<form method=\"post\" action=\"{}\"><p>Changed your mind? For the next 24 hours:</p>\
         <button type=\"submit\">{}</button></form>",
        escape_html(&links::sign(&pages.secret, &undo)),
        escape_html(LinkAction::Undo.label())
    )
}

fn refused(e: LinkError) -> Response {
    let text = match e {
        LinkError::Invalid => {
            "This link is not valid. Use the links in your latest digest, or answer in your Gatekeeper chat."
        }
        LinkError::Expired => "This link has expired. Answer in your Gatekeeper chat instead, e.g. with `pending`.",
    };
    page(StatusCode::BAD_REQUEST, "Link not valid", &format!("<p>{}</p>", escape_html(text)))
}

async fn show(State(pages): State<Arc<Pages>>, Path(token): Path<String>) -> Response {
    let link = match links::verify(&pages.secret, &token, pages.clock.now_ms()) {
        Ok(l) => l,
        Err(e) => return refused(e),
    };
    let (question, detail) = describe(&link);
    let body = format!(
        "<p>{}</p><p>For {}.</p><form method=\"post\"><button type=\"submit\" style=\"font-size: 1.2em; padding: 0.4em 1em\">{}</button></form>",
        escape_html(&detail),
        escape_html(&link.owner),
        escape_html(link.action.label())
    );
    page(StatusCode::OK, &question, &body)
}

async fn act(State(pages): State<Arc<Pages>>, Path(token): Path<String>) -> Response {
    let link = match links::verify(&pages.secret, &token, pages.clock.now_ms()) {
        Ok(l) => l,
        Err(e) => return refused(e),
    };
    let Ok(owner) = ruma::OwnedUserId::try_from(link.owner.clone()) else { return refused(LinkError::Invalid) };
    let input =
        Internal::LinkUsed { owner, action: link.action, subject: link.subject.clone(), nonce: link.nonce.clone() };
    let raw = serde_json::to_vec(&input).expect("inputs serialize");
    let store = pages.store.clone();
    let (nonce, expires) = (link.nonce.clone(), link.expires_ms);
    match tokio::task::spawn_blocking(move || store.use_link(&nonce, expires, &raw)).await {
        Ok(Ok(true)) => {
            pages.wake.notify_one();
            tracing::info!(owner = %link.owner, action = ?link.action, "one-click link used");
            let undo = undo_offer(&pages, &link);
            page(StatusCode::OK, "Done", &format!("<p>Done. Gatekeeper confirms it in your Matrix chat.</p>{undo}"))
        }
        Ok(Ok(false)) => page(StatusCode::CONFLICT, "Already done", "<p>This link was used before; it works once.</p>"),
        failed => {
            tracing::error!(error = ?failed, "could not record a link");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>Something went wrong on our side; try again in a minute.</p>",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    async fn serve() -> (String, Arc<MemoryStore>, Secret) {
        let store = Arc::new(MemoryStore::new());
        let secret = Secret::new("s".repeat(40));
        let pages = Arc::new(Pages {
            store: store.clone(),
            secret: secret.clone(),
            clock: crate::pipeline::clock::system(),
            wake: Arc::new(Notify::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(pages)).await.unwrap() });
        (base, store, secret)
    }

    fn link(expires_ms: u64) -> Link {
        Link {
            owner: "@alice:example.org".into(),
            action: LinkAction::Block,
            subject: "@<b>spam</b>:x.org".into(),
            expires_ms,
            nonce: "n1".into(),
        }
    }

    #[tokio::test]
    async fn get_only_asks_post_acts_once_and_bad_links_change_nothing() {
        let (base, store, secret) = serve().await;
        let http = reqwest::Client::new();
        let url = format!("{base}/action/{}", links::sign(&secret, &link(u64::MAX)));
        let get = http.get(&url).send().await.unwrap();
        assert_eq!(get.status().as_u16(), 200);
        let html = get.text().await.unwrap();
        assert!(html.contains("<form method=\"post\">") && html.contains("Block"), "{html}");
        assert!(html.contains("&lt;b&gt;spam") && !html.contains("<b>spam"), "{html}");
        assert_eq!(store.inbox_batch(10).unwrap().len(), 0, "a GET never acts");

        let post = http.post(&url).body("List-Unsubscribe=One-Click").send().await.unwrap();
        assert_eq!(post.status().as_u16(), 200);
        let again = http.post(&url).send().await.unwrap();
        assert_eq!(again.status().as_u16(), 409);
        let inbox = store.inbox_batch(10).unwrap();
        assert_eq!(inbox.len(), 1);
        assert!(inbox[0].internal);

        let expired = format!("{base}/action/{}", links::sign(&secret, &Link { nonce: "n2".into(), ..link(1) }));
        assert_eq!(http.post(&expired).send().await.unwrap().status().as_u16(), 400);
        let tampered = url.replace("/action/7b", "/action/7c");
        assert_eq!(http.post(&tampered).send().await.unwrap().status().as_u16(), 400);
        assert_eq!(store.inbox_batch(10).unwrap().len(), 1);
    }
}
