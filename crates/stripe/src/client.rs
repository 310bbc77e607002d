//! The HTTP client for Stripe's API: authentication, a pinned `Stripe-Version`, pacing to a share of
//! the account's rate limit, retries with jittered back-off (API.md §4), idempotency keys on every
//! POST, and list paging with `starting_after` (API.md §5).
#![warn(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::error::{ApiError, ErrorKind, snippet};
use crate::form;
use crate::key::{ApiKey, Mode};
use crate::pacer::{Pacer, endpoint_of};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("stripe-mirror/", env!("CARGO_PKG_VERSION"));

/// The most a `Retry-After` header may make a retry wait.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Page size of [`ListCursor`] unless the parameters set one.
pub const PAGE_LIMIT: u32 = 100;

/// How a [`Client`] talks to the API.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// Where the API is: `https://api.stripe.com`, or an emulator's `http://127.0.0.1:port`.
    pub api_base: String,
    /// The `Stripe-Version` sent with every request; pinned to [`crate::API_VERSION`] by default.
    pub api_version: String,
    /// Retries after the first attempt (network errors, 409, 429, 5xx, or `Stripe-Should-Retry: true`).
    pub max_retries: u32,
    /// The share of Stripe's per-account and per-endpoint rates this client may use (0 < share; the
    /// merchant's own traffic needs the rest). Infinity turns pacing off.
    pub budget_share: f64,
    /// Time allowed for one attempt, from connecting to the end of the body.
    pub timeout: Duration,
    /// First back-off step: the n-th retry waits `min(retry_base · 2^(n−1), retry_cap)` × jitter in [0.5, 1].
    pub retry_base: Duration,
    /// Longest back-off step.
    pub retry_cap: Duration,
    /// `Stripe-Account` header: act on this connected account (Connect platforms only).
    pub stripe_account: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            api_base: "https://api.stripe.com".to_owned(),
            api_version: crate::API_VERSION.to_owned(),
            max_retries: 5,
            budget_share: 0.5,
            timeout: Duration::from_secs(80),
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(5),
            stripe_account: None,
        }
    }
}

/// Why a call failed after its retries. Never contains the key in clear.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Stripe answered with an error (see [`ApiError::kind`]).
    #[error(transparent)]
    Api(Box<ApiError>),
    /// No connection could be made (refused, unknown host, TLS failure).
    #[error("could not connect to {url}: {detail} — check --api-base / your network{}", attempts_note(*attempts))]
    Connect {
        /// The URL without its query.
        url: String,
        /// What went wrong, in plain words ("connection refused").
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// No complete answer within the timeout.
    #[error(
        "no answer from {url} within {} s{} — Stripe may be slow or unreachable; check your network or \
         raise the timeout",
        after.as_secs_f64(),
        attempts_note(*attempts)
    )]
    Timeout {
        /// The URL without its query.
        url: String,
        /// The timeout of one attempt.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// The connection broke (reset, closed early, truncated body).
    #[error("the connection to {url} failed: {detail}{} — check your network", attempts_note(*attempts))]
    Network {
        /// The URL without its query.
        url: String,
        /// What went wrong.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A success status whose body is not the JSON expected.
    #[error(
        "{url} answered HTTP {status} with {what}: \"{snippet}\" — is --api-base the Stripe API?{}",
        request_note(request_id)
    )]
    InvalidBody {
        /// The URL without its query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What was expected and not found.
        what: String,
        /// The body's first characters, one line, keys masked.
        snippet: String,
        /// The `Request-Id` header, when present.
        request_id: Option<String>,
    },
    /// A redirect, which the API never sends: the base URL is wrong.
    #[error(
        "{url} redirected (HTTP {status}) to {location} — set --api-base to the API's own address \
         (https://api.stripe.com)"
    )]
    Redirect {
        /// The URL without its query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// The configuration cannot work.
    #[error("invalid Stripe client configuration: {0}")]
    Config(String),
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

fn request_note(request_id: &Option<String>) -> String {
    request_id
        .as_ref()
        .map(|id| format!(" (request {id})"))
        .unwrap_or_default()
}

impl ClientError {
    /// Stripe's error answer, when that is what this is.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The classification of Stripe's error answer, when that is what this is.
    pub fn kind(&self) -> Option<&ErrorKind> {
        self.api_error().map(|e| &e.kind)
    }

    /// The `Request-Id` of the failing answer, when there was one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ClientError::Api(e) => e.request_id.as_deref(),
            ClientError::InvalidBody { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The network failed (no answer at all): worth trying again later.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::Timeout { .. } | ClientError::Network { .. }
        )
    }
}

/// A successful answer's status, `Request-Id` and raw body.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// The HTTP status (2xx).
    pub status: u16,
    /// The `Request-Id` header (`req_…`).
    pub request_id: Option<String>,
    /// The body as received.
    pub body: Bytes,
    /// Stripe's clock when it answered (the `Date` header), unix seconds.
    pub server_time: Option<i64>,
}

/// One page of a list (`{"object":"list","data":[…],"has_more":…}`).
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The objects, in Stripe's order (newest first).
    pub data: Vec<Value>,
    /// More objects follow this page.
    pub has_more: bool,
    /// The list's `url` field (`/v1/customers`).
    pub url: Option<String>,
    /// The `Request-Id` of the answer.
    pub request_id: Option<String>,
    /// Stripe's clock when it answered (the `Date` header), unix seconds.
    pub server_time: Option<i64>,
}

/// A list page as [`Client::get_list`] and [`ListCursor::next_raw_page`] give it: each object
/// as the JSON text Stripe sent.
#[derive(Debug)]
pub struct RawPage {
    /// The objects, in Stripe's order (newest first).
    pub data: Vec<Box<RawValue>>,
    /// More objects follow this page.
    pub has_more: bool,
    /// The list's `url` field (`/v1/customers`).
    pub url: Option<String>,
    /// The `Request-Id` of the answer.
    pub request_id: Option<String>,
    /// Stripe's clock when it answered (the `Date` header), unix seconds.
    pub server_time: Option<i64>,
}

/// The body of a list answer, objects unparsed.
#[derive(serde::Deserialize)]
struct RawList {
    data: Vec<Box<RawValue>>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    url: Option<String>,
}

/// Parses a JSON body into a tree.
fn json(body: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice(body)
}

fn raw_list(body: &[u8]) -> serde_json::Result<RawList> {
    serde_json::from_slice(body)
}

/// The `id` of an object given as JSON text.
pub fn raw_id(object: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_str::<Id>(object.get()).ok().map(|o| o.id)
}

impl RawPage {
    fn new(list: RawList, raw: &RawResponse) -> RawPage {
        RawPage {
            data: list.data,
            has_more: list.has_more,
            url: list.url,
            request_id: raw.request_id.clone(),
            server_time: raw.server_time,
        }
    }

    /// The `id` of the page's last object.
    pub fn last_id(&self) -> Option<String> {
        raw_id(self.data.last()?)
    }
}

impl Page {
    /// The `id` of the page's last object.
    pub fn last_id(&self) -> Option<&str> {
        self.data.last()?.get("id")?.as_str()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A Stripe API client for one key (and so one account and mode). Cheap to clone: clones share the
/// connection pool, the pacer and the request counter.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    config: ClientConfig,
    key: ApiKey,
    authorization: HeaderValue,
    pacer: Arc<Pacer>,
    requests: AtomicU64,
    last_request_id: Mutex<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_base", &self.inner.base)
            .field("key", &self.inner.key)
            .field("requests_made", &self.requests_made())
            .finish()
    }
}

fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the program may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP client for calls that are not Stripe's (notification channels): TLS with the same
/// provider, no redirects followed (a redirect could carry a signed body elsewhere), and
/// `timeout` on the whole request.
pub fn plain_http_client(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            ClientError::Config(format!(
                "cannot build the HTTP client: {}",
                source_chain(&e)
            ))
        })
}

impl Client {
    /// A client with a pacer of its own. Clone it to share the budget between tasks, or use
    /// [`Client::with_pacer`] to share a pacer from a [`crate::pacer::PacerRegistry`].
    pub fn new(config: ClientConfig, key: ApiKey) -> Result<Client, ClientError> {
        check_share(config.budget_share)?;
        let pacer = Arc::new(Pacer::new(key.mode(), config.budget_share));
        Client::with_pacer(config, key, pacer)
    }

    /// A client that paces its requests with `pacer` (shared with the account's other clients).
    pub fn with_pacer(
        config: ClientConfig,
        key: ApiKey,
        pacer: Arc<Pacer>,
    ) -> Result<Client, ClientError> {
        check_share(config.budget_share)?;
        let base = config.api_base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ClientError::Config(format!(
                "the API base URL '{base}' must start with https:// (or http:// for a local emulator)"
            )));
        }
        if config.api_version.is_empty() || HeaderValue::from_str(&config.api_version).is_err() {
            return Err(ClientError::Config(format!(
                "the API version '{}' is not valid",
                config.api_version
            )));
        }
        if let Some(account) = &config.stripe_account
            && HeaderValue::from_str(account).is_err()
        {
            return Err(ClientError::Config(format!(
                "the Stripe-Account '{account}' is not valid"
            )));
        }
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ClientError::Config(format!(
                    "cannot build the HTTP client: {}",
                    source_chain(&e)
                ))
            })?;
        let bearer = Zeroizing::new(format!("Bearer {}", key.expose_secret()));
        let mut authorization = HeaderValue::from_str(&bearer).map_err(|_| {
            ClientError::Config("the API key cannot be sent in a header".to_owned())
        })?;
        authorization.set_sensitive(true);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                config,
                key,
                authorization,
                pacer,
                requests: AtomicU64::new(0),
                last_request_id: Mutex::new(None),
            }),
        })
    }

    /// The key (displays masked).
    pub fn key(&self) -> &ApiKey {
        &self.inner.key
    }

    /// The key's mode.
    pub fn mode(&self) -> Mode {
        self.inner.key.mode()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The pacer this client waits on.
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.inner.pacer
    }

    /// HTTP requests sent so far by this client and its clones, retries included.
    pub fn requests_made(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The `Request-Id` of the latest answer (success or error).
    pub fn last_request_id(&self) -> Option<String> {
        self.inner.last_request_id.lock().clone()
    }

    /// `GET path?params` and the JSON answer.
    pub async fn get(&self, path: &str, params: &[(String, String)]) -> Result<Value, ClientError> {
        Ok(self.execute(Method::Get, path, params, None, json).await?.1)
    }

    /// `GET path?params`: the JSON answer and Stripe's clock when it answered (`Date`).
    pub async fn get_timed(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<(Value, Option<i64>), ClientError> {
        let (raw, value) = self.execute(Method::Get, path, params, None, json).await?;
        Ok((value, raw.server_time))
    }

    /// One page of a list (`GET path?params`), its objects left as JSON text: what the mirror
    /// stores, without building a tree of every object.
    pub async fn get_list(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<RawPage, ClientError> {
        let (raw, list) = self
            .execute(Method::Get, path, params, None, raw_list)
            .await?;
        Ok(RawPage::new(list, &raw))
    }

    /// `GET path?params` and the answer's raw body, status and `Request-Id`, unparsed.
    pub async fn get_raw(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<RawResponse, ClientError> {
        Ok(self
            .execute(Method::Get, path, params, None, |_| Ok(()))
            .await?
            .0)
    }

    /// `POST path` with `params` form-encoded, under a fresh `Idempotency-Key` kept across retries.
    pub async fn post(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, ClientError> {
        let key = new_idempotency_key();
        self.post_idempotent(path, params, &key).await
    }

    /// `POST` under a caller's `Idempotency-Key` (≤ 255 characters), to make a higher-level retry of
    /// the same operation safe too.
    pub async fn post_idempotent(
        &self,
        path: &str,
        params: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, ClientError> {
        Ok(self
            .post_idempotent_timed(path, params, idempotency_key)
            .await?
            .0)
    }

    /// `POST` under a caller's `Idempotency-Key`: the JSON answer and Stripe's clock when it
    /// answered (`Date`), the version a copy of the answer is kept at.
    pub async fn post_idempotent_timed(
        &self,
        path: &str,
        params: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<(Value, Option<i64>), ClientError> {
        if idempotency_key.is_empty()
            || idempotency_key.len() > 255
            || HeaderValue::from_str(idempotency_key).is_err()
        {
            return Err(ClientError::Config(
                "an Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned(),
            ));
        }
        let (raw, value) = self
            .execute(Method::Post, path, params, Some(idempotency_key), json)
            .await?;
        Ok((value, raw.server_time))
    }

    /// `DELETE path` and the JSON answer (`{"id":…,"deleted":true}`).
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self.delete_timed(path).await?.0)
    }

    /// `DELETE path`: the JSON answer and Stripe's clock when it answered.
    pub async fn delete_timed(&self, path: &str) -> Result<(Value, Option<i64>), ClientError> {
        let (raw, value) = self.execute(Method::Delete, path, &[], None, json).await?;
        Ok((value, raw.server_time))
    }

    /// Pages through a list endpoint, `limit=100` unless `params` set a limit. A `starting_after` in
    /// `params` resumes after that id; an `ending_before` walks towards newer objects instead.
    pub fn list_pages(&self, path: &str, params: Vec<(String, String)>) -> ListCursor {
        ListCursor::new(self.clone(), path, params)
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.inner.base)
        } else {
            format!("{}/{path}", self.inner.base)
        }
    }

    /// One call with pacing and retries. Returns the raw answer and what `parse` made of a 2xx
    /// body (a truncated body is retried like a network error).
    async fn execute<T>(
        &self,
        method: Method,
        path: &str,
        params: &[(String, String)],
        idempotency_key: Option<&str>,
        parse: impl Fn(&[u8]) -> serde_json::Result<T>,
    ) -> Result<(RawResponse, T), ClientError> {
        let inner = &*self.inner;
        let url = self.url(path);
        let encoded = form::encode(params);
        let full_url = match method {
            Method::Get | Method::Delete if !encoded.is_empty() => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}{encoded}")
            }
            _ => url.clone(),
        };
        let shown_url = url.split('?').next().unwrap_or(&url).to_owned();
        let endpoint = endpoint_of(path);
        let mut retries = 0u32;
        loop {
            inner.pacer.acquire(&endpoint).await;
            inner.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = match method {
                Method::Get => inner.http.get(&full_url),
                Method::Post => inner
                    .http
                    .post(&full_url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(encoded.clone()),
                Method::Delete => inner.http.delete(&full_url),
            };
            request = request
                .header(reqwest::header::AUTHORIZATION, inner.authorization.clone())
                .header("Stripe-Version", &inner.config.api_version);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(account) = &inner.config.stripe_account {
                request = request.header("Stripe-Account", account);
            }
            let attempt = send(request).await;
            let can_retry = retries < inner.config.max_retries;
            let failure = match attempt {
                Err(error) => {
                    if can_retry {
                        tracing::debug!(method = method.as_str(), url = %shown_url, error = %source_chain(&error), "network error; retrying");
                        None
                    } else {
                        return Err(transport_error(
                            &shown_url,
                            &error,
                            inner.config.timeout,
                            retries + 1,
                        ));
                    }
                }
                Ok((status, headers, body)) => {
                    let request_id = header_str(&headers, "request-id").map(str::to_owned);
                    *inner.last_request_id.lock() = request_id.clone();
                    let server_time =
                        header_str(&headers, "date").and_then(crate::http_date::parse);
                    let raw = RawResponse {
                        status,
                        request_id,
                        body,
                        server_time,
                    };
                    if (200..300).contains(&status) {
                        match parse(&raw.body) {
                            Ok(value) => return Ok((raw, value)),
                            // A body cut short, or a 2xx that is no answer of Stripe's at all (a
                            // proxy's HTML page, an empty body): asked again within the budget.
                            // Reads and keyed POSTs may be; a DELETE that took effect would
                            // answer 404 the second time, so it is retried only when cut short.
                            Err(e)
                                if can_retry
                                    && (method != Method::Delete
                                        || (e.is_eof() && !raw.body.is_empty())) =>
                            {
                                tracing::debug!(method = method.as_str(), url = %shown_url, status, "a 2xx answer that is not the JSON expected; retrying");
                                None
                            }
                            Err(e) => {
                                return Err(ClientError::InvalidBody {
                                    url: shown_url,
                                    status,
                                    what: if e.is_data() {
                                        format!("JSON of an unexpected shape ({e})")
                                    } else {
                                        "a body that is not valid JSON".to_owned()
                                    },
                                    snippet: snippet(&raw.body),
                                    request_id: raw.request_id,
                                });
                            }
                        }
                    } else if (300..400).contains(&status) {
                        let location =
                            header_str(&headers, "location").unwrap_or("(no Location header)");
                        return Err(ClientError::Redirect {
                            url: shown_url,
                            status,
                            location: crate::key::redact(location),
                        });
                    } else {
                        let mut error =
                            ApiError::from_response(status, raw.request_id.as_deref(), &raw.body);
                        error.stripe_should_retry = header_str(&headers, "stripe-should-retry")
                            .and_then(|v| v.trim().parse::<bool>().ok());
                        error.retry_after = header_str(&headers, "retry-after")
                            .and_then(|v| v.trim().parse::<f64>().ok())
                            .filter(|s| s.is_finite() && *s >= 0.0)
                            .map(|s| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER));
                        error.rate_limited_reason =
                            header_str(&headers, "stripe-rate-limited-reason").map(str::to_owned);
                        if !(error.is_retryable() && can_retry) {
                            return Err(ClientError::Api(Box::new(error)));
                        }
                        Some(error)
                    }
                }
            };
            retries += 1;
            let mut delay = backoff(
                retries,
                inner.config.retry_base,
                inner.config.retry_cap,
                jitter(),
            );
            if let Some(error) = &failure {
                if let Some(after) = error.retry_after {
                    delay = delay.max(after);
                }
                if error.kind
                    == (ErrorKind::RateLimited {
                        lock_timeout: false,
                    })
                {
                    match error.rate_limited_reason.as_deref() {
                        Some(reason) if reason.starts_with("endpoint") => {
                            inner.pacer.hold_endpoint(&endpoint, delay)
                        }
                        _ => inner.pacer.hold(delay),
                    }
                }
                tracing::debug!(
                    method = method.as_str(),
                    url = %shown_url,
                    status = error.status,
                    request_id = error.request_id.as_deref().unwrap_or(""),
                    retry = retries,
                    delay_ms = delay.as_millis() as u64,
                    "retrying after an error answer"
                );
            }
            tokio::time::sleep(delay).await;
        }
    }
}

fn check_share(share: f64) -> Result<(), ClientError> {
    if share.is_nan() || share <= 0.0 {
        return Err(ClientError::Config(format!(
            "the budget share must be above 0 (0.5 leaves half of Stripe's rate to the merchant), not {share}"
        )));
    }
    Ok(())
}

/// Sends one request and reads the whole body.
async fn send(request: reqwest::RequestBuilder) -> Result<(u16, HeaderMap, Bytes), reqwest::Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok((status, headers, body))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// The n-th retry's wait (n ≥ 1): `min(base · 2^(n−1), cap) × jitter`, jitter in [0.5, 1].
fn backoff(retry: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
    exp.min(cap).mul_f64(jitter.clamp(0.5, 1.0))
}

fn jitter() -> f64 {
    0.5 + 0.5 * ((random_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// 64 unpredictable-enough bits without a dependency: SipHash with the process's random keys over
/// a counter, the clock and the process id.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A new `Idempotency-Key`: `sm_` and 32 random hex digits.
pub fn new_idempotency_key() -> String {
    format!("sm_{:016x}{:016x}", random_u64(), random_u64())
}

/// Every message in an error's source chain, joined, innermost last.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// The plainest words for a transport failure: the I/O error kind when there is one.
fn transport_detail(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let words = match io.kind() {
                K::ConnectionRefused => "connection refused",
                K::ConnectionReset => "connection reset by the server",
                K::ConnectionAborted => "connection aborted",
                K::TimedOut => "timed out",
                K::UnexpectedEof => "the connection closed before the answer was complete",
                K::BrokenPipe => "the connection was closed by the server",
                _ => "",
            };
            if !words.is_empty() {
                return words.to_owned();
            }
        }
        source = e.source();
    }
    let mut innermost: &dyn std::error::Error = error;
    while let Some(e) = innermost.source() {
        innermost = e;
    }
    let text = innermost.to_string();
    if text.is_empty() {
        source_chain(error)
    } else {
        crate::key::redact(&text)
    }
}

fn transport_error(
    url: &str,
    error: &reqwest::Error,
    timeout: Duration,
    attempts: u32,
) -> ClientError {
    let url = url.to_owned();
    if error.is_timeout() {
        ClientError::Timeout {
            url,
            after: timeout,
            attempts,
        }
    } else if error.is_connect() {
        ClientError::Connect {
            url,
            detail: transport_detail(error),
            attempts,
        }
    } else {
        ClientError::Network {
            url,
            detail: transport_detail(error),
            attempts,
        }
    }
}

#[derive(Clone, Debug)]
enum Cursor {
    Start,
    After(String),
    Before(String),
}

/// Pages through a list endpoint with `starting_after` (or `ending_before`), one request per
/// [`ListCursor::next_page`]. After an error the cursor stays where it was, so calling again retries
/// the same page; [`ListCursor::position`] is the checkpoint to resume from.
#[derive(Debug)]
pub struct ListCursor {
    client: Client,
    path: String,
    params: Vec<(String, String)>,
    cursor: Cursor,
    done: bool,
}

impl ListCursor {
    fn new(client: Client, path: &str, params: Vec<(String, String)>) -> ListCursor {
        let mut cursor = Cursor::Start;
        let mut rest = Vec::with_capacity(params.len() + 1);
        for (k, v) in params {
            match k.as_str() {
                "starting_after" => cursor = Cursor::After(v),
                "ending_before" => cursor = Cursor::Before(v),
                _ => rest.push((k, v)),
            }
        }
        if !rest.iter().any(|(k, _)| k == "limit") {
            rest.push(("limit".to_owned(), PAGE_LIMIT.to_string()));
        }
        ListCursor {
            client,
            path: path.to_owned(),
            params: rest,
            cursor,
            done: false,
        }
    }

    /// The next page, or `None` once the list is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ClientError> {
        let Some(page) = self.next_raw_page().await? else {
            return Ok(None);
        };
        let data = page
            .data
            .iter()
            .map(|object| serde_json::from_str(object.get()))
            .collect::<serde_json::Result<Vec<Value>>>()
            .expect("text that parsed as JSON parses again");
        Ok(Some(Page {
            data,
            has_more: page.has_more,
            url: page.url,
            request_id: page.request_id,
            server_time: page.server_time,
        }))
    }

    /// The next page with its objects as JSON text, or `None` once the list is exhausted.
    pub async fn next_raw_page(&mut self) -> Result<Option<RawPage>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let mut params = self.params.clone();
        match &self.cursor {
            Cursor::Start => {}
            Cursor::After(id) => params.push(("starting_after".to_owned(), id.clone())),
            Cursor::Before(id) => params.push(("ending_before".to_owned(), id.clone())),
        }
        let (raw, list) = self
            .client
            .execute(Method::Get, &self.path, &params, None, raw_list)
            .await?;
        let page = RawPage::new(list, &raw);
        let next = match self.cursor {
            Cursor::Before(_) => page.data.first(),
            _ => page.data.last(),
        }
        .and_then(|object| raw_id(object));
        match (page.has_more, next) {
            (true, Some(id)) => {
                self.cursor = match self.cursor {
                    Cursor::Before(_) => Cursor::Before(id),
                    _ => Cursor::After(id),
                }
            }
            (true, None) if !page.data.is_empty() => {
                return Err(ClientError::InvalidBody {
                    url: self.client.url(&self.path),
                    status: raw.status,
                    what: "a list whose objects have no id to page on".to_owned(),
                    snippet: snippet(&raw.body),
                    request_id: raw.request_id.clone(),
                });
            }
            _ => self.done = true,
        }
        Ok(Some(page))
    }

    /// The id the next page starts after (or before), to store as a checkpoint; `None` at the start.
    pub fn position(&self) -> Option<&str> {
        match &self.cursor {
            Cursor::Start => None,
            Cursor::After(id) | Cursor::Before(id) => Some(id),
        }
    }

    /// The list is exhausted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Every remaining object, page after page (for small lists).
    pub async fn collect_all(mut self) -> Result<Vec<Value>, ClientError> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page.data);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests;
