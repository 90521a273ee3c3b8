//! The HTTP listener: `/metrics`, `/healthz` and the read-only dashboard at `/`.
//!
//! This module owns the listener, the token check and the response headers; the page itself is
//! drawn by [`dashboard`], the metrics by [`crate::metrics`]. It only reads the store. On a
//! loopback address it is open to local processes; anywhere else it needs the configured bearer
//! token on every request (`Authorization: Bearer …` or `?token=…`), because the dashboard shows
//! subjects and senders. Config validation refuses a non-loopback listener without a token, and
//! [`HttpState::new`] refuses it again in case validation was bypassed.

pub mod dashboard;
pub mod svg;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{Config, HttpConfig};
use crate::metrics::LiveMetrics;
use crate::report::Clocks;
use crate::secret::Secret;
use crate::store::Store;

/// Everything a request handler reads; cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    config: Arc<Config>,
    clocks: Arc<Clocks>,
    store: Store,
    live: LiveMetrics,
    clock: Clock,
    token: Option<Arc<Secret>>,
    refresh_secs: u64,
}

impl HttpState {
    /// Prepares the state for a listener on `addr`: reads the token, checks calendars and
    /// policies once. Fails when `addr` is not loopback and no token is configured.
    pub fn new(
        config: Arc<Config>,
        http: &HttpConfig,
        addr: SocketAddr,
        store: Store,
        live: LiveMetrics,
        clock: Clock,
    ) -> Result<HttpState> {
        let token = match http.token_source() {
            Some(source) => Some(Arc::new(source.resolve().context("read the [http] token")?)),
            None => None,
        };
        if token.is_none() && !addr.ip().is_loopback() {
            bail!("[http] listen = {addr} is not a loopback address and no token is configured");
        }
        Ok(HttpState {
            clocks: Arc::new(Clocks::from_config(&config)?),
            config,
            store,
            live,
            clock,
            token,
            refresh_secs: http.refresh_secs,
        })
    }
}

/// Binds `[http] listen` and spawns the server, which runs until `stop` turns true. Binding
/// happens before this returns, so a busy port or a missing token fails the daemon's start.
/// `None` without an `[http]` section.
pub async fn start(
    config: Arc<Config>,
    store: Store,
    live: LiveMetrics,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<Result<()>>>> {
    let Some(http) = config.http.clone() else {
        return Ok(None);
    };
    let addr: SocketAddr = http.listen.parse().context("parse [http] listen")?;
    let state = HttpState::new(config, &http, addr, store, live, Clock::System)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ([http] listen)"))?;
    let guarded = if state.token.is_some() {
        "token required"
    } else {
        "no token: loopback only"
    };
    info!(%addr, "dashboard and metrics on http://{addr}/ ({guarded})");
    Ok(Some(tokio::spawn(serve_on(listener, state, stop))))
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve_on(
    listener: TcpListener,
    state: HttpState,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP listener failed")
}

/// The routes, with the token check and the security headers on every one.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(dashboard_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuses a request without the token (when one is configured) and sets the headers that keep
/// a browser from running, framing or leaking anything.
async fn guard(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    let expected = state.token.as_deref().map(Secret::expose);
    let mut response = if authorized(expected, request.headers(), query.get("token")) {
        next.run(request).await
    } else {
        let mut refused = (StatusCode::UNAUTHORIZED, "a token is required\n").into_response();
        refused
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        refused
    };
    let headers = response.headers_mut();
    let csp = HeaderValue::from_str(&dashboard::content_security_policy());
    if let Ok(csp) = csp {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The token may sit in the URL; no link may carry it elsewhere.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// True when no token is expected, or the request carries it as a bearer token or a `token`
/// query parameter. Compared in constant time.
pub fn authorized(expected: Option<&str>, headers: &HeaderMap, query: Option<&String>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    [bearer, query.map(String::as_str)]
        .into_iter()
        .flatten()
        .any(|given| same(given.trim().as_bytes(), expected.as_bytes()))
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs a store-reading closure off the async threads; errors become a 500 naming the step.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            warn!(error = %format!("{err:#}"), "{what} failed");
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{what} failed\n"),
            )
                .into_response())
        }
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let work = move || {
        let now = state.clock.now();
        crate::metrics::encode(&state.config, &state.clocks, &state.store, &state.live, now)
    };
    match blocking("metrics", work).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(response) => response,
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let work = move || health(&state.config, &state.store, state.clock.now());
    match blocking("health check", work).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(failing)) => (StatusCode::SERVICE_UNAVAILABLE, failing).into_response(),
        Err(response) => response,
    }
}

/// `Ok` when every mailbox is healthy, else one line per failing mailbox.
pub fn health(
    config: &Config,
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Result<(), String>> {
    let mut failing = String::new();
    for mailbox in &config.mailboxes {
        let sync = store.sync_state(&mailbox.name)?;
        if let Err(why) = crate::metrics::mailbox_health(mailbox, config, &sync, now) {
            failing.push_str(&format!("mailbox {}: {why}\n", mailbox.name));
        }
    }
    Ok(if failing.is_empty() {
        Ok(())
    } else {
        Err(failing)
    })
}

async fn dashboard_page(State(state): State<HttpState>) -> Response {
    let work = move || {
        let now = state.clock.now();
        dashboard::page(
            &state.config,
            &state.clocks,
            &state.store,
            now,
            state.refresh_secs,
        )
    };
    match blocking("dashboard", work).await {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(response) => response,
    }
}
