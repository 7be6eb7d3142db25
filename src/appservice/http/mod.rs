//! The appservice API that the homeserver calls: transactions, ping and the
//! user/room queries. The token is checked before anything else; a
//! transaction is durable before it is acknowledged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::auth::{self, AuthError};
use crate::pipeline::Clock;
use crate::secret::Secret;
use crate::store::{Accepted, Store};

pub struct Intake {
    pub store: Arc<dyn Store>,
    pub hs_token: Secret,
    /// Woken after each accepted transaction so processing starts at once.
    pub wake: Arc<Notify>,
    pub max_body_bytes: usize,
    /// When a transaction was accepted (for forgetting old IDs later).
    pub clock: Arc<dyn Clock>,
    /// The homeserver's transaction numbering, to notice one it stranded.
    pub gaps: std::sync::Mutex<super::gaps::Gaps>,
    /// Told of every transaction and its answer (the homeserver resends
    /// after one not accepted), for the read forward after a resend.
    pub resends: Arc<super::resends::Resends>,
}

pub fn matrix_error(status: StatusCode, errcode: &str, error: &str) -> Response {
    let body = serde_json::json!({ "errcode": errcode, "error": error });
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn ok_empty() -> Response {
    (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/_matrix/app/v1/transactions/{txn_id}", put(transaction))
        .route("/transactions/{txn_id}", put(transaction))
        .route("/_matrix/app/v1/ping", post(ping))
        .route("/_matrix/app/v1/users/{user_id}", get(query_user))
        .route("/users/{user_id}", get(query_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(query_room))
        .route("/rooms/{alias}", get(query_room))
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(intake.clone(), require_hs_token))
        .with_state(intake)
}

/// The appservice API of a standby (another Gatekeeper holds the lease):
/// every request is answered 503, and nothing is stored, so that the
/// homeserver keeps the transaction and sends it again — through a load
/// balancer, to the active one.
pub fn standby_router() -> Router {
    Router::new().fallback(standby)
}

async fn standby() -> Response {
    let mut response = matrix_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNKNOWN",
        "This Gatekeeper is on standby: another one holds the lease and serves",
    );
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    response
}

async fn require_hs_token(State(intake): State<Arc<Intake>>, request: Request, next: Next) -> Response {
    let header = request.headers().get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
    let query: HashMap<String, String> = Query::try_from_uri(request.uri()).map(|Query(q)| q).unwrap_or_default();
    match auth::check(header.as_deref(), query.get("access_token").map(String::as_str), &intake.hs_token) {
        Ok(()) => next.run(request).await,
        Err(AuthError::Missing) => {
            tracing::warn!(path = %request.uri().path(), "request without hs_token refused");
            matrix_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing homeserver token (hs_token)")
        }
        Err(AuthError::Wrong) => {
            tracing::warn!(path = %request.uri().path(), "request with a wrong hs_token refused");
            matrix_error(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Invalid homeserver token (hs_token)")
        }
    }
}

#[derive(serde::Deserialize)]
struct TransactionBody<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

pub(crate) enum Parsed {
    Accepted(Accepted),
    NotJson(String),
    BadJson(String),
    StoreFailed(String),
}

pub(crate) fn parse_and_store(store: &dyn Store, txn_id: &str, bytes: &Bytes, now_ms: u64) -> Parsed {
    let body: TransactionBody<'_> = match serde_json::from_slice(bytes) {
        Ok(b) => b,
        Err(e) if e.is_syntax() || e.is_eof() => return Parsed::NotJson(e.to_string()),
        Err(e) => return Parsed::BadJson(e.to_string()),
    };
    let events: Vec<&[u8]> = body.events.iter().map(|e| e.get().as_bytes()).collect();
    match store.accept_transaction(txn_id, &events, now_ms) {
        Ok(a) => Parsed::Accepted(a),
        Err(e) => Parsed::StoreFailed(e.to_string()),
    }
}

async fn transaction(State(intake): State<Arc<Intake>>, Path(txn_id): Path<String>, body: Body) -> Response {
    let span = tracing::info_span!("transaction", txn_id = %txn_id);
    tracing::Instrument::instrument(store_transaction(intake, txn_id, body), span).await
}

async fn store_transaction(intake: Arc<Intake>, txn_id: String, body: Body) -> Response {
    let in_flight = intake.resends.arrived();
    let answer = answer_transaction(&intake, txn_id, body).await;
    in_flight.answered(answer.status().is_success());
    answer
}

async fn answer_transaction(intake: &Intake, txn_id: String, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, intake.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return matrix_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "M_TOO_LARGE",
                &format!("Transaction body larger than {} bytes", intake.max_body_bytes),
            );
        }
    };
    // A std Mutex: held for a comparison, never across an await. The
    // homeserver sends one transaction at a time, so checks do not race.
    let verdict = intake.gaps.lock().unwrap_or_else(|p| p.into_inner()).check(&txn_id);
    if let super::gaps::Verdict::RefuseGap { missing: (from, to) } = verdict {
        tracing::warn!(
            %txn_id,
            from,
            to,
            "transactions before this one never arrived; refusing it once so that the homeserver sends them first"
        );
        return matrix_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "M_UNKNOWN",
            &format!("Transactions {from} to {to} have not arrived; send them first"),
        );
    }
    let store = intake.store.clone();
    let id = txn_id.clone();
    let now = intake.clock.now_ms();
    let outcome = match tokio::task::spawn_blocking(move || parse_and_store(store.as_ref(), &id, &bytes, now)).await {
        Ok(o) => o,
        Err(e) => Parsed::StoreFailed(e.to_string()),
    };
    match outcome {
        Parsed::Accepted(Accepted::New { events }) => {
            intake.gaps.lock().unwrap_or_else(|p| p.into_inner()).accepted(&txn_id);
            tracing::debug!(%txn_id, events, "transaction accepted");
            crate::metrics::METRICS.transactions.inc();
            intake.wake.notify_one();
            ok_empty()
        }
        Parsed::Accepted(Accepted::ReusedId { events }) => {
            intake.gaps.lock().unwrap_or_else(|p| p.into_inner()).accepted(&txn_id);
            tracing::warn!(
                %txn_id,
                events,
                "transaction ID seen before with other events (was the homeserver's database reset?); accepted as new"
            );
            intake.wake.notify_one();
            ok_empty()
        }
        Parsed::Accepted(Accepted::Replay) => {
            tracing::info!(%txn_id, "replayed transaction acknowledged, not processed again");
            ok_empty()
        }
        Parsed::NotJson(e) => matrix_error(StatusCode::BAD_REQUEST, "M_NOT_JSON", &format!("Body is not JSON: {e}")),
        Parsed::BadJson(e) => matrix_error(
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            &format!("Body is not a transaction ({{\"events\": [...]}}): {e}"),
        ),
        Parsed::StoreFailed(e) => {
            // Non-2xx makes the homeserver keep the transaction and retry.
            tracing::error!(%txn_id, error = %e, "could not store transaction; homeserver will retry");
            matrix_error(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "Could not store the transaction")
        }
    }
}

async fn ping(body: Bytes) -> Response {
    let txn = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("transaction_id").and_then(|t| t.as_str()).map(str::to_owned));
    tracing::debug!(transaction_id = ?txn, "pinged by the homeserver");
    ok_empty()
}

async fn query_user(Path(user_id): Path<String>) -> Response {
    tracing::debug!(%user_id, "user query answered: not ours to create");
    matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Gatekeeper does not provide this user")
}

async fn query_room(Path(alias): Path<String>) -> Response {
    tracing::debug!(%alias, "room query answered: not ours to create");
    matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Gatekeeper does not provide this room alias")
}

async fn unrecognized() -> Response {
    matrix_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unrecognized request")
}

async fn method_not_allowed() -> Response {
    matrix_error(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED", "Unsupported method for this endpoint")
}

#[cfg(test)]
mod tests;
