//! Admin API resources beyond the cluster: clients, retained messages,
//! bans and top publishers. The bearer token is checked before any of these
//! run (`admin.rs`); every handler validates its input and answers JSON;
//! nothing here can panic on what a caller sends.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Admin, error};
use crate::broker::ADMINISTRATIVE_ACTION;
use crate::message::{ClientId, now_ms};
use crate::state::{BanKey, Command, Response as StateResponse};
use crate::topic::{TopicLimits, TopicName};

/// Largest page.
const MAX_LIMIT: usize = 1000;
/// Longest ban.
const MAX_BAN_SECS: u64 = 365 * 86_400;

/// `?limit=&after=` paging plus filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    limit: Option<usize>,
    after: Option<String>,
    class: Option<String>,
    prefix: Option<String>,
}

fn limit(p: &Page) -> Result<usize, String> {
    match p.limit {
        None => Ok(100),
        Some(0) => Err("limit must be at least 1".into()),
        Some(n) if n > MAX_LIMIT => Err("limit must be at most 1000".into()),
        Some(n) => Ok(n),
    }
}

/// Parses the query string; a bad one is a 400 with this message.
fn query<T: serde::de::DeserializeOwned>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, String> {
    q.map(|Query(v)| v).map_err(|e| e.body_text())
}

fn bad(msg: &str) -> Response {
    error(StatusCode::BAD_REQUEST, msg)
}

/// `GET /api/v1/clients?class=&prefix=&limit=&after=`: connected clients of
/// this node, by client id.
pub(super) async fn list_clients(
    State(a): State<Admin>,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = match query(q) {
        Ok(p) => p,
        Err(e) => return bad(&e),
    };
    let limit = match limit(&page) {
        Ok(l) => l,
        Err(e) => return bad(&e),
    };
    let mut rows: Vec<(String, serde_json::Value)> = a
        .broker
        .clients
        .iter()
        .filter_map(|c| {
            let id = c.key().as_str();
            let info = &c.value().info;
            let keep = page.prefix.as_deref().is_none_or(|p| id.starts_with(p))
                && page
                    .class
                    .as_deref()
                    .is_none_or(|k| &*info.auth.principal.class == k)
                && page.after.as_deref().is_none_or(|after| id > after);
            keep.then(|| (id.to_owned(), summary(id, info)))
        })
        .collect();
    rows.sort_by(|x, y| x.0.cmp(&y.0));
    let next = if rows.len() > limit {
        rows.get(limit - 1).map(|r| r.0.clone())
    } else {
        None
    };
    rows.truncate(limit);
    Json(serde_json::json!({
        "clients": rows.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "next": next,
    }))
    .into_response()
}

fn summary(id: &str, info: &crate::registry::ClientInfo) -> serde_json::Value {
    let p = &info.auth.principal;
    serde_json::json!({
        "client_id": id,
        "identity": &*p.name,
        "class": &*p.class,
        "source": info.auth.source.to_string(),
        "listener": &*info.auth.listener,
        "tls": info.auth.tls,
        "protocol": info.protocol,
        "persistent": info.persistent,
        "connected_at_ms": info.connected_at_ms,
        "publish_rate": info.rate(),
    })
}

/// `GET /api/v1/clients/{id}`.
pub(super) async fn show_client(State(a): State<Admin>, Path(id): Path<String>) -> Response {
    let Some(c) = a.broker.clients.get(&ClientId::new(&id)) else {
        return error(
            StatusCode::NOT_FOUND,
            "no such client connected to this node",
        );
    };
    let mut v = summary(&id, &c.info);
    let (inflight, queued) = c.control.depths();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("inflight".into(), inflight.into());
        obj.insert("queued".into(), queued.into());
        obj.insert(
            "subscriptions".into(),
            c.info.subscriptions.lock().clone().into(),
        );
        obj.insert(
            "roles".into(),
            c.info
                .auth
                .principal
                .roles
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .into(),
        );
    }
    Json(v).into_response()
}

/// `DELETE /api/v1/clients/{id}`: disconnects it (v5: 0x98).
pub(super) async fn disconnect_client(State(a): State<Admin>, Path(id): Path<String>) -> Response {
    match a.broker.clients.get(&ClientId::new(&id)) {
        Some(c) => {
            c.control.kick(ADMINISTRATIVE_ACTION);
            tracing::info!(client_id = %id, "disconnected by the admin API");
            Json(serde_json::json!({ "disconnected": id })).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "no such client connected to this node",
        ),
    }
}

/// `GET /api/v1/retained?prefix=&limit=&after=`: retained topics.
pub(super) async fn list_retained(
    State(a): State<Admin>,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = match query(q) {
        Ok(p) => p,
        Err(e) => return bad(&e),
    };
    if page.class.is_some() {
        return error(StatusCode::BAD_REQUEST, "retained messages have no class");
    }
    let limit = match limit(&page) {
        Ok(l) => l,
        Err(e) => return bad(&e),
    };
    let all = a.broker.state.lock().retained().iter_all();
    let mut rows: Vec<_> = all
        .into_iter()
        .filter(|m| {
            let t = m.topic.as_str();
            page.prefix.as_deref().is_none_or(|p| t.starts_with(p))
                && page.after.as_deref().is_none_or(|after| t > after)
        })
        .collect();
    rows.sort_by(|x, y| x.topic.cmp(&y.topic));
    let next = if rows.len() > limit {
        rows.get(limit - 1).map(|m| m.topic.as_str().to_owned())
    } else {
        None
    };
    rows.truncate(limit);
    let items: Vec<_> = rows
        .iter()
        .map(|m| {
            serde_json::json!({
                "topic": m.topic.as_str(),
                "bytes": m.payload.len(),
                "qos": m.qos as u8,
                "publisher": m.publisher.as_ref().map(|p| p.as_str().to_owned()),
            })
        })
        .collect();
    Json(serde_json::json!({ "retained": items, "next": next })).into_response()
}

/// `DELETE /api/v1/retained/{topic}` (the topic may contain `/`).
pub(super) async fn delete_retained(State(a): State<Admin>, Path(topic): Path<String>) -> Response {
    let limits = TopicLimits {
        max_len: a.broker.config.limits.max_topic_length,
        max_levels: a.broker.config.limits.max_topic_levels,
    };
    let Ok(topic) = TopicName::parse(topic.into(), &limits) else {
        return error(StatusCode::BAD_REQUEST, "not a valid topic name");
    };
    if a.broker.state.lock().retained_message(&topic).is_none() {
        return error(StatusCode::NOT_FOUND, "no retained message on this topic");
    }
    match a
        .broker
        .submit(Command::ClearRetained {
            topic: topic.clone(),
        })
        .await
    {
        Ok(_) => Json(serde_json::json!({ "deleted": topic.as_str() })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `GET /api/v1/bans`: bans in force, cluster-wide.
pub(super) async fn list_bans(State(a): State<Admin>) -> Response {
    let now = now_ms();
    let bans: Vec<_> = a
        .broker
        .state
        .lock()
        .bans()
        .filter(|(_, b)| b.until_ms > now)
        .map(|(k, b)| {
            let (kind, value) = k.parts();
            serde_json::json!({
                "kind": kind,
                "value": value,
                "until_ms": b.until_ms,
                "remaining_secs": (b.until_ms - now) / 1000,
                "reason": b.reason,
            })
        })
        .collect();
    Json(serde_json::json!({ "bans": bans })).into_response()
}

/// A new ban.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBan {
    kind: String,
    value: String,
    duration_secs: u64,
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/bans {kind, value, duration_secs, reason}`; connected
/// clients it matches on this node are disconnected (other nodes refuse
/// them at their next CONNECT).
pub(super) async fn add_ban(
    State(a): State<Admin>,
    body: Result<Json<NewBan>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if b.duration_secs == 0 || b.duration_secs > MAX_BAN_SECS {
        return error(
            StatusCode::BAD_REQUEST,
            "duration_secs must be between 1 and 31536000",
        );
    }
    if b.reason.len() > 1024 {
        return error(StatusCode::BAD_REQUEST, "reason is at most 1024 bytes");
    }
    let key = match BanKey::from_parts(&b.kind, &b.value) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let reason = if b.reason.is_empty() {
        "admin".to_owned()
    } else {
        b.reason
    };
    let until_ms = now_ms().saturating_add(b.duration_secs * 1000);
    match a.broker.ban(key.clone(), until_ms, &reason).await {
        Ok(()) => {
            let (kind, value) = key.parts();
            (
                StatusCode::CREATED,
                Json(serde_json::json!({
                    "kind": kind, "value": value, "until_ms": until_ms, "reason": reason
                })),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

/// `DELETE /api/v1/bans/{kind}/{value}` (a network's `/` is part of the value).
pub(super) async fn remove_ban(
    State(a): State<Admin>,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    let (Some(kind), Some(value)) = (params.get("kind"), params.get("value")) else {
        return error(StatusCode::BAD_REQUEST, "need /api/v1/bans/{kind}/{value}");
    };
    let key = match BanKey::from_parts(kind, value) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match a.broker.submit(Command::Unban { key }).await {
        Ok(StateResponse::NotFound) => error(StatusCode::NOT_FOUND, "no such ban"),
        Ok(_) => Json(serde_json::json!({ "removed": true })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `?limit=` for top publishers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Top {
    limit: Option<usize>,
}

/// `GET /api/v1/publishers/top?limit=`: this node's clients by publish
/// rate over the last telemetry window.
pub(super) async fn top_publishers(
    State(a): State<Admin>,
    q: Result<Query<Top>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let top = match query(q) {
        Ok(t) => t,
        Err(e) => return bad(&e),
    };
    let limit = top.limit.unwrap_or(10).clamp(1, MAX_LIMIT);
    let mut rows: Vec<(f64, serde_json::Value)> = a
        .broker
        .clients
        .iter()
        .map(|c| {
            (
                c.value().info.rate(),
                summary(c.key().as_str(), &c.value().info),
            )
        })
        .filter(|(r, _)| *r > 0.0)
        .collect();
    rows.sort_by(|x, y| y.0.total_cmp(&x.0));
    rows.truncate(limit);
    Json(serde_json::json!({
        "publishers": rows.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "window_secs": a.broker.config.telemetry.window.as_secs_f64(),
    }))
    .into_response()
}
