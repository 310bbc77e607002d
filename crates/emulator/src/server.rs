//! The emulator's HTTP server: one Tokio task per connection (HTTP/1.1 keep-alive), `/v1/…` to the
//! Stripe API with faults injected on the way, `/_emulator/…` to the control API. Written on
//! hyper directly so that a fault can reset the TCP connection or cut a body short.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::api::{ApiReply, ApiRequest};
use crate::limits::Fault;
use crate::{Emulator, api, control};

type Body = BoxBody<Bytes, std::io::Error>;

/// Request bodies larger than this are refused (Stripe's own limit is far below).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A running emulator: its address, its state, and a way to stop it.
pub struct EmulatorServer {
    pub emulator: Arc<Emulator>,
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl EmulatorServer {
    /// Binds `addr` (port 0 picks a free one) and serves until [`EmulatorServer::stop`].
    pub async fn start(
        emulator: Arc<Emulator>,
        addr: SocketAddr,
    ) -> std::io::Result<EmulatorServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, emulator.clone(), stopped));
        Ok(EmulatorServer {
            emulator,
            addr,
            stop,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`: what a client uses as its API base.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn serve(listener: TcpListener, emulator: Arc<Emulator>, mut stopped: watch::Receiver<bool>) {
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors or similar: back off a moment instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        #[cfg(unix)]
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let reset = Arc::new(Notify::new());
        let emulator = emulator.clone();
        let counter = counter.clone();
        let reset_for_service = reset.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let emulator = emulator.clone();
                let reset = reset_for_service.clone();
                let number = counter.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, Infallible>(respond(emulator, reset, number, request).await) }
            });
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = reset.notified() => {
                    // Zero linger turns the close into a TCP reset, as a dropped connection looks.
                    #[cfg(unix)]
                    set_zero_linger(fd);
                }
                _ = stopped.changed() => {}
            }
        });
    }
}

#[cfg(unix)]
fn set_zero_linger(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the connection's socket, still open: the connection future owning it is
    // dropped only after this call returns.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn full(
    status: u16,
    content_type: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, String)],
) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", content_type);
    for (name, value) in headers {
        response = response.header(*name, value.as_str());
    }
    response
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a valid response")
}

/// Whether an `Authorization` header carries a live key, as Bearer or as HTTP Basic user name
/// (base64, so the key's `_live_` is not visible before decoding).
fn is_live_authorization(header: &str) -> bool {
    let header = header.trim();
    let Some(encoded) = header
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("basic "))
        .map(|_| header[6..].trim())
    else {
        return header.contains("_live_");
    };
    let (mut decoded, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in encoded.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        acc = ((acc << 6) | u32::from(value)) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            decoded.push((acc >> bits) as u8);
        }
    }
    let user = decoded.split(|&b| b == b':').next().unwrap_or_default();
    user.windows(6).any(|w| w == b"_live_")
}

fn request_id(number: u64) -> String {
    // Stripe's request ids are `req_` and 14 characters.
    let mut rng = crate::rng::Rng::new(number.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC0FFEE);
    format!("req_{}", rng.alphanumeric(14))
}

async fn respond(
    emulator: Arc<Emulator>,
    reset: Arc<Notify>,
    number: u64,
    request: Request<Incoming>,
) -> Response<Body> {
    let request_id = request_id(number);
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return full(
                413,
                "application/json",
                r#"{"error":{"message":"Request body too large or unreadable.","type":"invalid_request_error"}}"#,
                &[("Request-Id", request_id)],
            );
        }
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().as_bytes().to_vec();
    if let Some(rest) = path.strip_prefix("/_emulator") {
        let (status, json) = control::handle(&emulator, parts.method.as_str(), rest, &query, &body);
        return full(
            status,
            "application/json",
            json.to_string(),
            &[("Request-Id", request_id)],
        );
    }
    *emulator
        .requests
        .lock()
        .entry(format!("{} {path}", parts.method))
        .or_default() += 1;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let livemode = authorization.as_deref().is_some_and(is_live_authorization);
    let (fault, delay) = emulator.limits.roll(livemode);
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    // Stripe's answers carry its clock in `Date`; the emulator's clock may have been moved.
    let common = [
        ("Request-Id", request_id.clone()),
        ("Date", sm_stripe::http_date::format(emulator.world.now())),
    ];
    match fault {
        Some(Fault::Reset) => {
            reset.notify_one();
            std::future::pending::<()>().await;
            unreachable!("the connection is dropped");
        }
        Some(Fault::Html) => {
            return full(
                200,
                "text/html; charset=utf-8",
                "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1><p>The proxy received an invalid response.</p></body></html>",
                &common,
            );
        }
        Some(Fault::Fail(failure)) => {
            let reply: ApiReply = (*failure).into();
            let mut headers = common.to_vec();
            headers.extend(reply.headers.iter().map(|(n, v)| (*n, v.clone())));
            return full(reply.status, "application/json", reply.body, &headers);
        }
        Some(Fault::Truncated) | None => {}
    }
    let stripe_account = header("stripe-account");
    let stripe_version = header("stripe-version");
    let idempotency_key = header("idempotency-key");
    let api_request = ApiRequest {
        method: parts.method.as_str(),
        path: &path,
        query: &query,
        body: &body,
        authorization: authorization.as_deref(),
        stripe_account: stripe_account.as_deref(),
        stripe_version: stripe_version.as_deref(),
        idempotency_key: idempotency_key.as_deref(),
    };
    let reply = api::handle(&emulator, &api_request, &request_id);
    let mut headers = common.to_vec();
    headers.extend(reply.headers.iter().map(|(n, v)| (*n, v.clone())));
    if fault == Some(Fault::Truncated) {
        return truncated(reply, &headers);
    }
    full(reply.status, "application/json", reply.body, &headers)
}

/// Announces the whole body's length, sends half of it, then fails the connection.
fn truncated(reply: ApiReply, headers: &[(&str, String)]) -> Response<Body> {
    let bytes = Bytes::from(reply.body);
    let half = bytes.slice(..bytes.len() / 2);
    let frames = futures_frames(half);
    let mut response = Response::builder()
        .status(reply.status)
        .header("Content-Type", "application/json")
        .header("Content-Length", bytes.len().to_string());
    for (name, value) in headers {
        response = response.header(*name, value.as_str());
    }
    response
        .body(BodyExt::boxed(frames))
        .expect("a valid response")
}

fn futures_frames(
    half: Bytes,
) -> impl hyper::body::Body<Data = Bytes, Error = std::io::Error> + Send + Sync + 'static {
    // Half the body, then one `Pending` so that hyper flushes the head and that half to the
    // socket (an error straight after the data would abort the connection before anything is
    // written, and the client would see no answer at all), then the error that cuts it.
    struct Cut(Option<Bytes>, u8);
    impl futures_core::Stream for Cut {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if let Some(bytes) = self.0.take() {
                return std::task::Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            self.1 = self.1.saturating_add(1);
            match self.1 {
                1 => {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
                2 => std::task::Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "injected truncation",
                )))),
                _ => std::task::Poll::Ready(None),
            }
        }
    }
    StreamBody::new(Cut(Some(half), 0))
}
