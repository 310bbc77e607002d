//! Settings: API tokens (made here and shown once, or revoked) and the configuration `serve`
//! runs with, read-only.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use sm_engine::EngineError;
use sm_engine::ops::tokens;

use super::layout::{ago, csrf, done_box, error_box, shell};
use super::session::Session;
use super::{html as respond, posted, signed_in};
use crate::AppState;

async fn page_with(
    state: &AppState,
    session: &Session,
    made: Option<(&str, &str)>,
    error: Option<&EngineError>,
    done: Option<&str>,
) -> Markup {
    let all = tokens::list(&state.engine).await.unwrap_or_default();
    let now = sm_engine::now();
    let config = &state.config;
    let engine = &state.engine;
    shell(
        session,
        "Settings",
        "settings",
        html! {
            h1 { "Settings" }
            @if let Some(error) = error {
                @let shown = crate::shown_error(error);
                (error_box(&shown.0, shown.1.as_deref()))
            }
            @if let Some(done) = done { (done_box(done)) }
            @if let Some((name, secret)) = made {
                div.done role="status" {
                    p { "The token " strong { (name) } " — copy it now, it is not shown again:" }
                    pre { code #new-token { (secret) } }
                }
            }
            h2 { "API tokens" }
            p { "A token signs in here and calls the REST API (" code { "Authorization: Bearer smt_…" } "). A read-only one sees everything and changes nothing." }
            div.table-wrap {
                table {
                    caption.visually-hidden { "API tokens" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Scope" } th scope="col" { "Made" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for token in &all {
                            tr {
                                td { code { (token.name) } @if token.name == session.token.name { " (this session's)" } }
                                td { @if token.read_only { "read-only" } @else { "full" } }
                                td { (ago(Some(token.created_at), now)) }
                                td {
                                    @if !session.read_only() {
                                        form.inline method="post" action="/settings/tokens/revoke" {
                                            (csrf(session))
                                            input type="hidden" name="name" value=(token.name);
                                            button.link type="submit" aria-label=(format!("Revoke {}", token.name)) { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !session.read_only() {
                form method="post" action="/settings/tokens" {
                    (csrf(session))
                    label for="token-name" { "New token's name " span.muted { "(letters, digits, - _ .)" } }
                    input #token-name type="text" name="name" required maxlength="64" placeholder="ci";
                    label.choice { input type="checkbox" name="read_only"; " Read-only" }
                    button.primary type="submit" { "Make a token" }
                }
            }
            h2 { "Configuration" }
            p { "As " code { "serve" } " runs now; change it with flags, environment variables or stripe-mirror.toml, and restart." }
            dl.config {
                dt { "Listening on" } dd { code { (config.listen) } }
                dt { "Public URL (webhook endpoints)" } dd { @match &config.public_url { Some(u) => code { (u) }, None => span.muted { "none: real time off, polling" } } }
                dt { "Sync every" } dd { (config.interval.as_secs()) " s" }
                dt { "Signature tolerance" } dd { (config.tolerance_secs) " s" }
                dt { "Database" } dd { code { (engine.store.describe()) } }
                dt { "Master key" } dd { code { (engine.vault.source) } }
                dt { "Stripe API" } dd { code { (engine.config.api_base) } }
                dt { "Share of each account's rate limit" } dd {
                    @if engine.config.budget_share.is_finite() { (format!("{:.0}%", engine.config.budget_share * 100.0)) } @else { "no pacing" }
                }
            }
        },
    )
}

pub async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/settings").await {
        Ok(session) => respond(
            StatusCode::OK,
            page_with(&state, &session, None, None, None).await,
        ),
        Err(to_signin) => to_signin,
    }
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match posted(&state, &headers, &body, "/settings", true).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let name = form.text("name").unwrap_or_default();
    let markup = match tokens::create(&state.engine, &name, form.checked("read_only")).await {
        Ok(made) => {
            page_with(
                &state,
                &session,
                Some((&made.record.name, &made.secret)),
                None,
                None,
            )
            .await
        }
        Err(error) => page_with(&state, &session, None, Some(&error), None).await,
    };
    respond(StatusCode::OK, markup)
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match posted(&state, &headers, &body, "/settings", true).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let name = form.text("name").unwrap_or_default();
    if name == session.token.name {
        // Revoking one's own token signs one out: done, then the sign-in page.
        return match tokens::revoke(&state.engine, &name).await {
            Ok(()) => {
                let mut response = super::redirect("/signin");
                if let Ok(value) = axum::http::HeaderValue::from_str(&super::session::clear_cookie(
                    super::secure(&state),
                )) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::SET_COOKIE, value);
                }
                response
            }
            Err(error) => respond(
                StatusCode::OK,
                page_with(&state, &session, None, Some(&error), None).await,
            ),
        };
    }
    let markup = match tokens::revoke(&state.engine, &name).await {
        Ok(()) => {
            page_with(
                &state,
                &session,
                None,
                None,
                Some(&format!("Revoked {name}.")),
            )
            .await
        }
        Err(error) => page_with(&state, &session, None, Some(&error), None).await,
    };
    respond(StatusCode::OK, markup)
}
