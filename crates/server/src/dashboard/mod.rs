//! The dashboard: server-rendered pages (maud) at `/`, for people who are not at a terminal.
//! Every action is a plain form (post, redirect, get) that works with JavaScript off; a small
//! script of our own, served from the binary, adds the live parts (Server-Sent Events) and
//! nothing else. Pages call `sm_engine::ops` as the REST API does; they never write the
//! database or work out a status themselves.
//!
//! Sign-in is with an API token (`stripe-mirror token create --name NAME`) into a session cookie
//! (`session.rs`); every form carries the session's CSRF value and must come from this origin.

mod accounts;
mod connect;
mod data;
mod layout;
mod notifications;
mod reports;
pub mod session;
mod settings;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use sm_engine::EngineError;

use crate::AppState;
use session::Session;

const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// The dashboard's routes (the API and webhooks have their own).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/static/dashboard.js", get(script))
        .route("/static/dashboard.css", get(style))
        .route("/accounts", get(accounts::page))
        .route("/accounts/live", get(accounts::live))
        .route("/accounts/new", get(connect::page).post(connect::submit))
        .route("/accounts/{connection}/sync", post(accounts::sync_now))
        .route("/accounts/{connection}/syncs", get(accounts::syncs))
        .route(
            "/accounts/{connection}/syncs/live",
            get(accounts::syncs_live),
        )
        .route(
            "/accounts/{connection}/start-date",
            get(accounts::start_date_page).post(accounts::start_date),
        )
        .route(
            "/accounts/{connection}/key",
            get(accounts::key_page).post(accounts::key),
        )
        .route(
            "/accounts/{connection}/edit",
            get(accounts::edit_page).post(accounts::edit),
        )
        .route(
            "/accounts/{connection}/permissions",
            get(accounts::permissions),
        )
        .route("/accounts/{connection}/events", get(data::events_page))
        .route("/accounts/{connection}/events/live", get(data::events_live))
        .route("/accounts/{connection}/data", get(data::tables))
        .route("/accounts/{connection}/data/{table}", get(data::table_page))
        .route(
            "/accounts/{connection}/data/{table}/{id}",
            get(data::object_page),
        )
        .route("/sql", get(data::sql_form).post(data::sql_run))
        .route("/settings", get(settings::page))
        .route("/reports", get(reports::index))
        .route("/accounts/{connection}/reports", get(reports::page))
        .route(
            "/accounts/{connection}/reports/{report}",
            get(reports::page),
        )
        .route("/notifications", get(notifications::page))
        .route("/notifications/channels", post(notifications::add_channel))
        .route(
            "/notifications/channels/test",
            post(notifications::test_channel),
        )
        .route(
            "/notifications/channels/remove",
            post(notifications::remove_channel),
        )
        .route("/notifications/rules", post(notifications::add_rule))
        .route(
            "/notifications/rules/remove",
            post(notifications::remove_rule),
        )
        .route("/settings/tokens", post(settings::create))
        .route("/settings/tokens/revoke", post(settings::revoke))
        .route(
            "/accounts/{connection}/remove",
            get(accounts::remove_page).post(accounts::remove),
        )
}

/// Whether cookies must be `Secure`: the public URL is https.
fn secure(state: &AppState) -> bool {
    state
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

/// A `303 See Other` to `to` (a path of ours).
pub fn redirect(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response()
}

/// An HTML page, never cached (it shows live state and a CSRF value).
fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// The signed-in person, or the way to the sign-in page (coming back to `path` afterwards).
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
) -> Result<Session, Response> {
    if let Some(cookie) = session::cookie_value(headers)
        && let Some(session) = session::check(state, &cookie).await
    {
        return Ok(session);
    }
    Err(redirect(&format!("/signin?next={}", encode(path))))
}

/// The start of a live part (Server-Sent Events) for a signed-in person: the session cookie,
/// which the stream checks again each round, and one of the live streams' slots.
pub(crate) async fn live_start(
    state: &Arc<AppState>,
    headers: &HeaderMap,
) -> Result<(String, crate::api::stream::Slot), Response> {
    let Some(cookie) = session::cookie_value(headers) else {
        return Err(StatusCode::UNAUTHORIZED.into_response());
    };
    if session::check(state, &cookie).await.is_none() {
        return Err(StatusCode::UNAUTHORIZED.into_response());
    }
    let slot = crate::api::stream::take_slot(state)
        .ok_or_else(|| StatusCode::SERVICE_UNAVAILABLE.into_response())?;
    Ok((cookie, slot))
}

/// A live part's events as Server-Sent Events, kept alive every 15 s.
pub(crate) fn live_response(
    stream: impl futures_util::Stream<
        Item = Result<axum::response::sse::Event, std::convert::Infallible>,
    > + Send
    + 'static,
) -> Response {
    axum::response::sse::Sse::new(stream)
        .keep_alive(
            axum::response::sse::KeepAlive::new().interval(std::time::Duration::from_secs(15)),
        )
        .into_response()
}

/// A form posted by the signed-in person: its fields, once the session, the origin, the CSRF
/// value and (for a change) the token's scope are checked.
pub async fn posted(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    path: &str,
    changes: bool,
) -> Result<(Session, Form), Response> {
    if !same_origin(headers) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "This form was sent from another site.",
        ));
    }
    let session = signed_in(state, headers, path).await?;
    let form = Form::parse(body);
    if !session::csrf_ok(&session, form.get("_csrf")) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this page: go back, reload the page and try again.",
        ));
    }
    if changes && session.read_only() {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "You signed in with a read-only token: sign in with a token made without --read-only to change anything.",
        ));
    }
    Ok((session, form))
}

/// A POST must come from a page of ours: `Origin` (or `Sec-Fetch-Site`), when the browser
/// sends it, must say so.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
    }
}

/// A page that says why a request was refused, with the way back.
fn refusal(status: StatusCode, message: &str) -> Response {
    html(
        status,
        layout::bare(
            "Refused",
            maud::html! {
                h1 { "Not done" }
                p role="alert" { (message) }
                p { a href="/accounts" { "Back to Accounts" } }
            },
        ),
    )
}

/// An engine error as a page: its message and what to do, in words.
fn error_page(session: &Session, error: &EngineError) -> Response {
    let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let shown = crate::shown_error(error);
    html(
        status,
        layout::shell(
            session,
            "Not done",
            "accounts",
            maud::html! {
                h1 { "Not done" }
                (layout::error_box(&shown.0, shown.1.as_deref()))
                p { a href="/accounts" { "Back to Accounts" } }
            },
        ),
    )
}

/// A form's fields, as posted (`application/x-www-form-urlencoded`).
pub struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &Bytes) -> Form {
        Form(crate::api::form_pairs(
            std::str::from_utf8(body).unwrap_or_default(),
        ))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field with surrounding space trimmed; `None` when absent or empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v == "on" || v == "true")
    }

    /// Takes a secret field out, so that it is not kept in the form.
    pub fn take_secret(&mut self, name: &str) -> zeroize::Zeroizing<String> {
        let value = self
            .0
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::mem::take(v))
            .unwrap_or_default();
        zeroize::Zeroizing::new(value)
    }
}

/// Percent-encodes `text` for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/accounts").await {
        Ok(_) => redirect("/accounts"),
        Err(to_signin) => to_signin,
    }
}

/// Only our own paths are followed after sign-in (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/accounts".to_owned(),
    }
}

#[derive(serde::Deserialize)]
struct SigninQuery {
    next: Option<String>,
}

async fn signin_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<SigninQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if signed_in(&state, &headers, &next).await.is_ok() {
        return redirect(&next);
    }
    html(StatusCode::OK, layout::signin(&next, None))
}

async fn signin(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers) {
        return refusal(
            StatusCode::FORBIDDEN,
            "This form was sent from another site.",
        );
    }
    let mut form = Form::parse(&body);
    let next = safe_next(form.get("next"));
    let token = form.take_secret("token");
    match session::sign_in(&state, &token).await {
        Some(cookie) => {
            let mut response = redirect(&next);
            if let Ok(value) = HeaderValue::from_str(&session::set_cookie(&cookie, secure(&state)))
            {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None => html(
            StatusCode::OK,
            layout::signin(
                &next,
                Some(
                    "That token is not valid: it may have been revoked or mistyped. Make one with `stripe-mirror token create --name NAME`.",
                ),
            ),
        ),
    }
}

async fn signout(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = posted(&state, &headers, &body, "/accounts", false).await {
        return refused;
    }
    let mut response = redirect("/signin");
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie(secure(&state))) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}
