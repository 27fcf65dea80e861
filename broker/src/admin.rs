//! The admin HTTP listener (axum): health for Kubernetes, metrics and the
//! admin API (`docs/observability.md`).
//!
//! `/livez`, `/readyz` and `/metrics` are open (probes and scrapers carry no
//! credentials); everything under `/api/v1` needs `Authorization: Bearer
//! <token>` and is disabled when no token is configured. Cluster and policy
//! endpoints live here, clients/retained/bans/top publishers in `api.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::broker::Broker;

mod api;
use crate::message::now_ms;
use crate::state::Command;

/// Serves the admin API until the broker shuts down.
pub(crate) async fn serve(listener: TcpListener, broker: Arc<Broker>, token: Option<Arc<str>>) {
    let shutdown = broker.shutdown.clone();
    let admin = Admin { broker, token };
    // Everything under /api/v1 passes the bearer-token check first.
    let api = Router::new()
        .route("/api/v1/cluster", get(cluster_status))
        .route("/api/v1/cluster/nodes", post(add_node))
        .route("/api/v1/cluster/nodes/{id}", delete(remove_node))
        .route("/api/v1/clients", get(api::list_clients))
        .route(
            "/api/v1/clients/{id}",
            get(api::show_client).delete(api::disconnect_client),
        )
        .route("/api/v1/retained", get(api::list_retained))
        .route("/api/v1/retained/{*topic}", delete(api::delete_retained))
        .route("/api/v1/bans", get(api::list_bans).post(api::add_ban))
        .route("/api/v1/bans/{kind}/{*value}", delete(api::remove_ban))
        .route("/api/v1/publishers/top", get(api::top_publishers))
        .route("/api/v1/policy", get(policy_status))
        .route("/api/v1/policy/reload", post(policy_reload))
        .route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_token,
        ));
    let app = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .with_state(admin);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "admin listener failed");
    }
}

#[derive(Clone)]
struct Admin {
    broker: Arc<Broker>,
    token: Option<Arc<str>>,
}

/// Lets a request through to the API only with the right bearer token.
async fn require_token(
    State(a): State<Admin>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match a.authorize(request.headers()) {
        Ok(()) => next.run(request).await,
        Err((status, why)) => error(status, why),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl Admin {
    /// Checks the bearer token in constant time.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
        let Some(token) = &self.token else {
            return Err((
                StatusCode::FORBIDDEN,
                "admin API disabled: no admin.token_file configured",
            ));
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err((StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
        }
    }
}

/// Ready = accepting clients, a member with a leader and quorum, caught up,
/// and not draining (see [`Broker::readiness`]).
async fn readyz(State(a): State<Admin>) -> Response {
    match a.broker.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// The Prometheus text exposition. Open like the probes: it carries no
/// client ids, addresses or topics.
async fn metrics(State(a): State<Admin>) -> Response {
    match a.broker.metrics.encode() {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics not encoded");
            error(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable")
        }
    }
}

/// The policy in force on this node: every node of a healthy cluster
/// reports the same sequence number and hash.
async fn policy_status(State(a): State<Admin>) -> Response {
    let access = &a.broker.access;
    let p = access.policy();
    let stats = &access.stats;
    Json(serde_json::json!({
        "seq": access.seq(),
        "hash": p.hash(),
        "revision": p.revision(),
        "version": p.version(),
        "rules": p.rule_count(),
        "file": a.broker.config.auth.policy_file,
        "reloads": {
            "applied": stats.reload_applied.load(Ordering::Relaxed),
            "rejected": stats.reload_rejected.load(Ordering::Relaxed),
        },
        "security_events": access.events.counts().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    }))
    .into_response()
}

/// Reloads this node's policy file now: 200 with the outcome, 422 when the
/// file is refused (the policy in force stays), 409 without a policy file.
async fn policy_reload(State(a): State<Admin>) -> Response {
    if a.broker.config.auth.policy_file.is_none() {
        return error(
            StatusCode::CONFLICT,
            "this node has no policy file to reload",
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if a.broker.policy_reload.send(tx).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "policy reload unavailable");
    }
    match rx.await {
        Ok(o) if o.result == "rejected" => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(o)).into_response()
        }
        Ok(o) => Json(o).into_response(),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

async fn cluster_status(State(a): State<Admin>) -> Response {
    Json(a.broker.membership.cluster.status()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNode {
    id: u64,
    addr: String,
}

async fn add_node(
    State(a): State<Admin>,
    body: Result<Json<NewNode>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(node) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if node.id == 0 || node.addr.rsplit_once(':').is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "need a non-zero id and addr host:port",
        );
    }
    match a
        .broker
        .membership
        .cluster
        .add_node(node.id, node.addr)
        .await
    {
        Ok(()) => Json(a.broker.membership.cluster.status()).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn remove_node(State(a): State<Admin>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "node id must be a number");
    };
    if let Err(e) = a.broker.membership.cluster.remove_node(id).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
    }
    // The removed node's connections are gone for the cluster's purposes:
    // release its sessions so they can expire or be resumed elsewhere.
    let released = Command::NodeDown {
        node: id,
        now_ms: now_ms(),
    };
    if let Err(e) = a.broker.submit(released).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
    }
    Json(a.broker.membership.cluster.status()).into_response()
}
