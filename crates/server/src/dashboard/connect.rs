//! New connection: the environment, the key in a password field (never echoed back, never in a
//! URL), an optional account id, "restricted keys only"; links that open Stripe's
//! restricted-key page pre-filled with the permissions the chosen features need; and on submit
//! either what the key may do (the permission matrix, and what each feature still lacks by
//! `rak_` name) or the error in words beside the form.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use sm_engine::catalog::Feature;
use sm_engine::ops::connections::{self, ConnectOptions, KeyPolicy, PermissionReport};
use sm_engine::{EngineError, ErrorCode};
use sm_stripe::{ApiKey, Mode};

use super::layout::{csrf, error_box, shell};
use super::session::Session;
use super::{Form, html as respond, posted, signed_in};
use crate::AppState;

/// What the form was filled with (never the key), to show it again after an error.
#[derive(Default)]
struct Filled {
    live: bool,
    account_id: String,
    name: String,
    restricted_only: bool,
}

fn form(session: &Session, filled: &Filled, error: Option<&EngineError>) -> Markup {
    let test_link = connections::key_link(Mode::Test, &[Feature::Mirror, Feature::Webhooks]).0;
    let live_link = connections::key_link(Mode::Live, &[Feature::Mirror, Feature::Webhooks]).0;
    html! {
        p.crumbs { a href="/accounts" { "Accounts" } " › New connection" }
        h1 { "Connect a Stripe account" }
        p { "Paste a restricted key (" code { "rk_…" } "). The mirror checks what it may read, copies the account, and keeps it up to date. Add as many live or test keys as you need." }
        div.keylinks {
            p { "No key yet? Create one in Stripe with exactly the permissions the mirror and real-time updates need:" }
            ul {
                li { a href=(test_link) target="_blank" rel="noopener noreferrer" { "Create a test-mode restricted key" } }
                li { a href=(live_link) target="_blank" rel="noopener noreferrer" { "Create a live restricted key" } }
            }
        }
        @if let Some(error) = error {
            @let shown = crate::shown_error(error);
            (error_box(&shown.0, shown.1.as_deref()))
        }
        form.connect method="post" action="/accounts/new" autocomplete="off" {
            (csrf(session))
            fieldset {
                legend { "Environment" }
                label.choice { input type="radio" name="environment" value="test" checked[!filled.live]; " Test mode" }
                label.choice { input type="radio" name="environment" value="live" checked[filled.live]; " Production (live)" }
            }
            label for="api_key" { "API key" }
            input #api_key type="password" name="api_key" required autocomplete="off"
                spellcheck="false" placeholder="rk_test_… or rk_live_…";
            label for="account_id" { "Account id " span.muted { "(optional: refuse a key of any other account)" } }
            input #account_id type="text" name="account_id" value=(filled.account_id)
                placeholder="acct_…" spellcheck="false";
            label for="name" { "Name " span.muted { "(optional: Stripe's account name otherwise)" } }
            input #name type="text" name="name" value=(filled.name) maxlength="200";
            label.choice {
                input type="checkbox" name="restricted_only" checked[filled.restricted_only];
                " Restricted keys only (refuse a secret key sk_…)"
            }
            button.primary type="submit" { "Connect" }
        }
    }
}

pub async fn page_for(session: &Session) -> Markup {
    shell(
        session,
        "New connection",
        "new",
        form(
            session,
            &Filled {
                restricted_only: true,
                ..Default::default()
            },
            None,
        ),
    )
}

pub async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/accounts/new").await {
        Ok(session) => respond(StatusCode::OK, page_for(&session).await),
        Err(to_signin) => to_signin,
    }
}

pub async fn submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, mut fields) = match posted(&state, &headers, &body, "/accounts/new", true).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let key_text = fields.take_secret("api_key");
    let filled = Filled {
        live: fields.get("environment") == Some("live"),
        account_id: fields.text("account_id").unwrap_or_default(),
        name: fields.text("name").unwrap_or_default(),
        restricted_only: fields.checked("restricted_only"),
    };
    match connect(&state, &fields, &filled, &key_text).await {
        Ok(outcome) => {
            // The scheduler picks the new connection up: its first sync starts at once.
            state.request_sync(
                &sm_warehouse::Connection::new(
                    outcome.account.account_id.clone(),
                    outcome.account.mode == "live",
                ),
                sm_engine::sync::Trigger::Connected,
            );
            let mode = if filled.live { Mode::Live } else { Mode::Test };
            respond(
                StatusCode::CREATED,
                shell(&session, "Connected", "new", connected(&outcome, mode)),
            )
        }
        Err(error) => respond(
            // The form again with the error in words: a page like any other (a 4xx would be
            // a failed load to the browser).
            StatusCode::OK,
            shell(
                &session,
                "New connection",
                "new",
                form(&session, &filled, Some(&error)),
            ),
        ),
    }
}

async fn connect(
    state: &AppState,
    fields: &Form,
    filled: &Filled,
    key_text: &str,
) -> Result<connections::ConnectOutcome, EngineError> {
    let key = ApiKey::parse(key_text.trim()).map_err(EngineError::from)?;
    if fields.get("environment").is_none() {
        return Err(EngineError::invalid("choose Test mode or Production"));
    }
    let options = ConnectOptions {
        policy: KeyPolicy {
            expect_mode: Some(if filled.live { Mode::Live } else { Mode::Test }),
            expect_account: (!filled.account_id.is_empty()).then(|| filled.account_id.clone()),
            restricted_only: filled.restricted_only,
            live_only: false,
        },
        name: (!filled.name.is_empty()).then(|| filled.name.clone()),
        ..Default::default()
    };
    connections::connect(&state.engine, key, options).await.map_err(|error| {
        if error.code == ErrorCode::Conflict {
            error.hint("it is on the Accounts page already; to give it a new key, use its ⋮ menu › Update API key")
        } else {
            error
        }
    })
}

fn connected(outcome: &connections::ConnectOutcome, mode: Mode) -> Markup {
    let account = &outcome.account;
    html! {
        p.crumbs { a href="/accounts" { "Accounts" } " › New connection" }
        h1 { "Connected " (account.name) }
        div.done role="status" {
            p { code { (account.account_id) } " in " (account.mode) " mode, with the " (account.key_kind) " key " code { (account.key) } ". The first sync has started; " (outcome.events_fetched) " recent events were read." }
        }
        (permission_matrix(&outcome.permissions, mode))
        p { a.button.primary href="/accounts" { "Go to Accounts" } }
    }
}

/// What a key may do: each feature ready or what it lacks (by `rak_` name, with the fix), and
/// every resource it may or may not read.
pub fn permission_matrix(report: &PermissionReport, mode: Mode) -> Markup {
    html! {
        h2 { "What this key may do" }
        ul.features {
            @for feature in Feature::ALL {
                @let missing = report.missing(feature);
                li {
                    @if missing.is_empty() {
                        span.yes { "✓ " } strong { (feature_words(feature)) } ": ready"
                    } @else {
                        span.no { "✗ " } strong { (feature_words(feature)) } ": missing "
                        @for (i, permission) in missing.iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (permission) }
                        }
                        ". "
                        a href=(connections::key_link(mode, &[feature]).0) target="_blank" rel="noopener noreferrer" {
                            "Edit the key in Stripe to grant it"
                        }
                        ", then Update API key."
                    }
                }
            }
        }
        details {
            summary { "Every resource (" (report.reads.iter().filter(|r| r.allowed).count()) " of " (report.reads.len()) " readable)" }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Table" } th scope="col" { "Permission" } th scope="col" { "Read" } } }
                    tbody {
                        @for read in &report.reads {
                            tr {
                                td { code { (read.table) } }
                                td { code { (read.permission) } }
                                td { @if read.allowed { span.yes { "yes" } } @else { span.no { "no" } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn feature_words(feature: Feature) -> &'static str {
    match feature {
        Feature::Mirror => "Mirror every resource",
        Feature::Webhooks => "Real-time updates (webhook endpoint)",
        Feature::AgentWrites => "Agent tools that write to Stripe",
    }
}
