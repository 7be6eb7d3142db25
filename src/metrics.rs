//! What operators watch: Prometheus metrics and health checks, served on a
//! listener of their own (never on the appservice port the homeserver
//! reaches). The counters are process-wide, as Prometheus expects.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::{Effect, Input, Outcome};
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhatLabel {
    pub what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub transactions: Counter,
    pub events: Family<KindLabel, Counter>,
    pub held_invites: Counter,
    pub replies_sent: Counter,
    pub replies_suppressed: Counter,
    pub replies_suppressed_wave: Counter,
    pub replies_sent_late: Counter,
    pub wave_invites: Counter,
    pub urgent_sent: Counter,
    pub invites_banned: Counter,
    pub digests_sent: Counter,
    pub emails_sent: Counter,
    pub action_failures: Counter,
    pub action_retries: Counter,
    pub effects_given_up: Counter,
    pub lanes_retrying: Gauge,
    /// 1 while this Gatekeeper acts (it holds the lease, or its store has
    /// none), 0 while it stands by: a standby's `/metrics` answers too, so
    /// that Prometheus sees it up and alerts only on who is active.
    pub active: Gauge,
    pub not_kept: Family<WhatLabel, Counter>,
    pub processing_seconds: Histogram,
    deferred_messages: Gauge,
    inbox_pending: Gauge,
    outbox_pending: Gauge,
    store_write_failures: Gauge,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("gatekeeper");
        let m = Metrics {
            transactions: Counter::default(),
            events: Family::default(),
            held_invites: Counter::default(),
            replies_sent: Counter::default(),
            replies_suppressed: Counter::default(),
            replies_suppressed_wave: Counter::default(),
            replies_sent_late: Counter::default(),
            wave_invites: Counter::default(),
            urgent_sent: Counter::default(),
            invites_banned: Counter::default(),
            digests_sent: Counter::default(),
            emails_sent: Counter::default(),
            action_failures: Counter::default(),
            action_retries: Counter::default(),
            effects_given_up: Counter::default(),
            lanes_retrying: Gauge::default(),
            active: Gauge::default(),
            not_kept: Family::default(),
            // 50 µs .. ~1.6 s: one event's decision and commit.
            processing_seconds: Histogram::new((0..16).map(|i| 0.000_05 * 2f64.powi(i))),
            deferred_messages: Gauge::default(),
            inbox_pending: Gauge::default(),
            outbox_pending: Gauge::default(),
            store_write_failures: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("transactions", "Transactions (or sync responses) stored", m.transactions.clone());
        r.register("events", "Events and inputs processed, by kind", m.events.clone());
        r.register("held_invites", "Invites held for an owner", m.held_invites.clone());
        r.register("replies_sent", "Etiquette replies decided and queued to send", m.replies_sent.clone());
        r.register(
            "replies_suppressed",
            "Strangers' messages kept without a reply (limits)",
            m.replies_suppressed.clone(),
        );
        r.register(
            "replies_suppressed_wave",
            "Strangers' messages kept without a reply because the sender is part of a wave",
            m.replies_suppressed_wave.clone(),
        );
        r.register(
            "replies_sent_late",
            "Etiquette replies the hourly cap held back, queued once the budget allowed (also in replies_sent)",
            m.replies_sent_late.clone(),
        );
        r.register("wave_invites", "Invites held from senders who are part of a wave", m.wave_invites.clone());
        r.register("urgent_sent", "Urgent messages passed on to their owner at once", m.urgent_sent.clone());
        r.register(
            "invites_banned",
            "Strangers' invitations declined (or left silent) because a followed ban list names the sender",
            m.invites_banned.clone(),
        );
        r.register("digests_sent", "Digest notices decided and queued to send", m.digests_sent.clone());
        r.register("emails_sent", "E-mails sent", m.emails_sent.clone());
        r.register("action_failures", "Effects that failed for good", m.action_failures.clone());
        r.register("action_retries", "Effect attempts that failed and will be retried", m.action_retries.clone());
        r.register(
            "effects_given_up",
            "Effects still failing when their retry time ran out, set aside",
            m.effects_given_up.clone(),
        );
        r.register(
            "lanes_retrying",
            "Lanes (rooms, owners) whose next effect is failing and being retried",
            m.lanes_retrying.clone(),
        );
        r.register(
            "active",
            "1 while this Gatekeeper acts (holds the lease, or runs alone), 0 while it stands by",
            m.active.clone(),
        );
        r.register(
            "not_kept",
            "Strangers' invitations (what=invitation) and messages (what=message) counted but not kept: a bound was reached",
            m.not_kept.clone(),
        );
        r.register("processing_seconds", "Time to decide and commit one event", m.processing_seconds.clone());
        r.register("deferred_messages", "Captured messages kept now", m.deferred_messages.clone());
        r.register("inbox_pending", "Events waiting to be processed", m.inbox_pending.clone());
        r.register("outbox_pending", "Effects waiting to be carried out", m.outbox_pending.clone());
        r.register(
            "store_write_failures",
            "Write transactions to the database (PostgreSQL) that failed in a row, 0 since the last that succeeded",
            m.store_write_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one committed input of `kind` and what the engine said it
    /// amounted to.
    pub fn decided(&self, kind: &'static str, outcomes: &[Outcome]) {
        self.events.get_or_create(&KindLabel { kind }).inc();
        for outcome in outcomes {
            match outcome {
                Outcome::InviteHeld => self.held_invites.inc(),
                Outcome::ReplySent => self.replies_sent.inc(),
                Outcome::ReplySuppressed => self.replies_suppressed.inc(),
                Outcome::ReplySuppressedWave => self.replies_suppressed_wave.inc(),
                Outcome::WaveInvite => self.wave_invites.inc(),
                Outcome::UrgentSent => self.urgent_sent.inc(),
                Outcome::InviteBanned => self.invites_banned.inc(),
                Outcome::ReplySentLate => {
                    self.replies_sent_late.inc();
                    self.replies_sent.inc()
                }
                Outcome::DigestSent { notices } => self.digests_sent.inc_by(*notices as u64),
                Outcome::InviteNotHeld => self.not_kept.get_or_create(&WhatLabel { what: "invitation" }).inc(),
                Outcome::MessageNotKept => self.not_kept.get_or_create(&WhatLabel { what: "message" }).inc(),
                // Kept messages are a gauge read from the store.
                Outcome::MessageCaptured => 0,
            };
        }
    }

    /// Counts a carried-out effect.
    pub fn done(&self, effect: &Effect) {
        if let Effect::SendEmail { .. } = effect {
            self.emails_sent.inc();
        }
    }

    /// What `/metrics` serves: the counters, and the store's kept sizes.
    pub fn render(&self, store: &dyn Store) -> Result<String, String> {
        let stats = store.stats().map_err(|e| e.to_string())?;
        self.deferred_messages.set(stats.deferred_messages as i64);
        self.inbox_pending.set(stats.inbox_pending as i64);
        self.outbox_pending.set(stats.outbox_pending as i64);
        self.store_write_failures.set(store.writes_failing().map_or(0, |(n, _)| n as i64));
        self.encode()
    }

    /// What a standby's `/metrics` serves: the process's own counters (all
    /// still 0: nothing runs) and `active` 0 (set by the lease's wait),
    /// without reading the store — its sizes are the active one's to report,
    /// and a standby's would only count them twice in a sum across both.
    pub fn render_standby(&self) -> Result<String, String> {
        self.encode()
    }

    fn encode(&self) -> Result<String, String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// The label an input is counted under.
pub fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Member { .. } => "member",
        Input::Message { .. } => "message",
        Input::Encrypted { .. } => "encrypted",
        Input::Redaction { .. } => "redaction",
        Input::PolicyRule { .. } => "policy_rule",
        Input::Tick | Input::OwnerDue { .. } => "tick",
        _ => "lookup",
    }
}

/// What `/health` checks beyond the process being alive.
pub struct Health {
    pub store: Arc<dyn Store>,
    pub homeserver: String,
    http: reqwest::Client,
    /// When the homeserver last answered (a monotonic instant: readiness
    /// must not jump with the wall clock).
    last_ok: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Health {
    pub fn new(store: Arc<dyn Store>, homeserver: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
        Ok(Self { store, homeserver: homeserver.trim_end_matches('/').to_owned(), http, last_ok: Default::default() })
    }

    /// Ready: the store answers and the homeserver did within 5 s (asked
    /// again when older, so frequent probes cost one request each 5 s).
    async fn ready(&self) -> (bool, serde_json::Value) {
        // One point read, not the whole-tree counts of `stats`: load
        // balancers probe often, and a probe must cost the same whatever the
        // store holds.
        // Reads answering is not enough: a database that refuses every
        // write (a full disk) stores nothing the homeserver sends.
        let writes_failing = self.store.writes_failing().and_then(|(_, why)| why);
        let store_ok =
            self.store.failure().is_none() && writes_failing.is_none() && self.store.outbox_high_water().is_ok();
        let recent = |t: &Option<std::time::Instant>| t.is_some_and(|t| t.elapsed() < Duration::from_secs(5));
        let mut hs_ok = recent(&self.last_ok.lock().expect("not poisoned"));
        if !hs_ok {
            let url = format!("{}/_matrix/client/versions", self.homeserver);
            hs_ok = matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success());
            if hs_ok {
                *self.last_ok.lock().expect("not poisoned") = Some(std::time::Instant::now());
            }
        }
        let mut body = serde_json::json!({
            "store": if store_ok { "ok" } else { "failing" },
            "homeserver": if hs_ok { "reachable" } else { "unreachable" },
        });
        if let Some(why) = writes_failing {
            body["writes"] = why.into();
        }
        (store_ok && hs_ok, body)
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { (StatusCode::OK, "live\n") }))
        .route("/health/ready", get(ready))
        .route("/health", get(ready))
        .with_state(health)
}

/// `/health` and `/metrics` of a standby: alive, not ready (a load
/// balancer sends nothing here), and saying why.
pub fn standby_router() -> Router {
    let standby = || async {
        let body = serde_json::json!({ "role": "standby", "lease": "held by another Gatekeeper" });
        (StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::CONTENT_TYPE, "application/json")], format!("{body}\n"))
    };
    Router::new()
        .route("/health/live", get(|| async { (StatusCode::OK, "live\n") }))
        .route("/health/ready", get(standby))
        .route("/health", get(standby))
        // 200, unlike readiness: a standby is up, and Prometheus must not
        // alert on it; `gatekeeper_active 0` says what it is.
        .route("/metrics", get(|| async { metrics_text(METRICS.render_standby()) }))
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    let store = health.store.clone();
    match tokio::task::spawn_blocking(move || METRICS.render(store.as_ref())).await {
        Ok(rendered) => metrics_text(rendered),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn metrics_text(rendered: Result<String, String>) -> Response {
    match rendered {
        Ok(text) => {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}\n")).into_response(),
    }
}

async fn ready(State(health): State<Arc<Health>>) -> Response {
    let (ok, body) = health.ready().await;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
}
