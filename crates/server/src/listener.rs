//! `serve`'s listener. It accepts connections itself (rather than through `axum::serve`) so that
//! no client can hold the process: a cap on open connections (past it, new ones wait in the
//! kernel's backlog), a deadline for a request's head
//! (which is also how long an idle keep-alive connection may wait for its next request), a
//! deadline for each request's body and answer, a cap on request bodies held in memory at once,
//! and a deadline on shutdown after which whatever is still open is cut.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

/// The bounds every connection and request is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; more wait to be accepted.
    pub connections: usize,
    /// To send a request's head, or, idle between requests, to start the next one.
    pub head: Duration,
    /// To send a request's body and be answered (a stream's events flow on after its head).
    pub request: Duration,
    /// Request body bytes held in memory at once, over every connection.
    pub body_bytes_in_flight: usize,
    /// Once shutdown begins, how long open requests may finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 1_024,
            head: Duration::from_secs(10),
            request: Duration::from_secs(30),
            body_bytes_in_flight: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The largest request body taken: a webhook delivery (Stripe's biggest events, an invoice with
/// its lines embedded, stay far below it; API bodies have their own, smaller limit).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Serves `app` on `listener` until `shutdown`, within `limits`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(BodyBudget {
            bytes: Semaphore::new(limits.body_bytes_in_flight),
            request: limits.request,
        }),
        bounded,
    ));
    let connections = Arc::new(Semaphore::new(limits.connections));
    let (closing, closing_seen) = tokio::sync::watch::channel(false);
    let mut open = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // A free slot first: past the cap, new connections wait in the kernel's backlog (their
        // connect takes longer) instead of being refused.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore stays open"),
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_seen.clone();
        open.spawn(async move {
            let _permit = permit;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
        // Finished connections are reaped as new ones come.
        while open.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    let finished = tokio::time::timeout(limits.shutdown_grace, async {
        while open.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::info!(
            open = open.len(),
            "shutdown: cutting the connections still open"
        );
        open.shutdown().await;
    }
    Ok(())
}

/// What [`bounded`] holds requests to.
struct BodyBudget {
    bytes: Semaphore,
    request: Duration,
}

/// Reads a request's body within the byte budget and the request deadline, and bounds the time
/// to its answer. A body larger than [`MAX_BODY_BYTES`] is refused (413) before it is read;
/// when the budget is spent, 503 with `Retry-After`.
async fn bounded(
    axum::extract::State(budget): axum::extract::State<Arc<BodyBudget>>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = tokio::time::Instant::now() + budget.request;
    // The bytes this body may take, held until it is answered: its length when declared (none
    // for a GET), else the most a body may be.
    let wanted = request
        .body()
        .size_hint()
        .upper()
        .map_or(MAX_BODY_BYTES as u64, |n| n.min(MAX_BODY_BYTES as u64 + 1));
    if wanted > MAX_BODY_BYTES as u64 {
        return too_large();
    }
    let Ok(held) = budget.bytes.try_acquire_many(wanted as u32) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("Retry-After", "1")],
            "busy: too many request bodies in flight",
        )
            .into_response();
    };
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout_at(deadline, axum::body::to_bytes(body, MAX_BODY_BYTES)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            return (StatusCode::REQUEST_TIMEOUT, "the request body was too slow").into_response();
        }
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    let answer = tokio::time::timeout_at(deadline, next.run(request)).await;
    drop(held);
    match answer {
        Ok(response) => response,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long to answer",
        )
            .into_response(),
    }
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
        .into_response()
}
