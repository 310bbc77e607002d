//! Notifications: channels (add, send a test, remove; targets masked, status with the
//! receiver's words), rules (add, remove; each in words) and the latest deliveries. Every
//! action calls `sm_engine::ops::notify`; `serve` sends.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use sm_engine::EngineError;
use sm_engine::ops::notify::{self, ChannelInput, RuleInput};

use super::layout::{ago, csrf, done_box, error_box, shell};
use super::session::Session;
use super::{Form, html as respond, posted, signed_in};
use crate::AppState;

/// What the page says above its sections after an action.
#[derive(Default)]
struct Outcome {
    error: Option<EngineError>,
    done: Option<String>,
    /// A webhook channel's signing secret, shown once.
    secret: Option<(String, String)>,
}

const KINDS: [(&str, &str); 6] = [
    ("slack", "Slack (incoming webhook)"),
    ("discord", "Discord (webhook)"),
    ("teams", "Microsoft Teams (workflow)"),
    ("webhook", "Webhook (signed, Standard Webhooks)"),
    ("ntfy", "ntfy (push)"),
    ("email", "Email (SMTP)"),
];

async fn page_with(state: &AppState, session: &Session, outcome: Outcome) -> Markup {
    let engine = &state.engine;
    let channels = notify::channels(engine).await.unwrap_or_default();
    let rules = notify::rules(engine).await.unwrap_or_default();
    let log = notify::log(engine, None, Vec::new(), 50)
        .await
        .unwrap_or_default();
    let accounts = engine
        .store_call(|store| store.accounts())
        .await
        .unwrap_or_default();
    let now = sm_engine::now();
    let writer = !session.read_only();
    shell(
        session,
        "Notifications",
        "notifications",
        html! {
            h1 { "Notifications" }
            p { "Chosen events from your accounts, sent as they arrive to Slack, Discord, Teams, ntfy, email or a signed webhook — once per event, rule and channel; never for a backfill, or for events older than an hour when they arrive. " code { "serve" } " sends them." }
            @if let Some(error) = &outcome.error {
                @let shown = crate::shown_error(error);
                (error_box(&shown.0, shown.1.as_deref()))
            }
            @if let Some(done) = &outcome.done { (done_box(done)) }
            @if let Some((name, secret)) = &outcome.secret {
                div.done role="status" {
                    p { "The signing secret of " strong { (name) } " — give it to the receiver now, it is not shown again:" }
                    pre { code #signing-secret { (secret) } }
                }
            }
            h2 #channels { "Channels" }
            @if channels.is_empty() {
                p.muted { "No channels yet." }
            } @else {
                div.table-wrap {
                    table {
                        caption.visually-hidden { "Notification channels" }
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Sends to" }
                            th scope="col" { "Status" } th scope="col" { "Rules" } th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody {
                            @for channel in &channels {
                                tr {
                                    td { strong { (channel.name) } }
                                    td { (channel.kind) }
                                    td { code { (channel.target) } }
                                    td {
                                        @match channel.status.as_str() {
                                            "ok" => span.status.ok { span.dot aria-hidden="true" {} "Working" },
                                            "failing" => span.status.bad { span.dot aria-hidden="true" {} "Failing: " (channel.status_message.as_deref().unwrap_or("refused")) },
                                            _ => span.status.warn { span.dot aria-hidden="true" {} "Not tested yet" },
                                        }
                                    }
                                    td { (channel.rules) }
                                    td {
                                        @if writer {
                                            form.inline method="post" action="/notifications/channels/test" {
                                                (csrf(session))
                                                input type="hidden" name="name" value=(channel.name);
                                                button.link type="submit" aria-label=(format!("Send test to {}", channel.name)) { "Send test" }
                                            }
                                            " · "
                                            form.inline method="post" action="/notifications/channels/remove" {
                                                (csrf(session))
                                                input type="hidden" name="name" value=(channel.name);
                                                button.link type="submit" aria-label=(format!("Remove {}", channel.name)) { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if writer {
                details open[channels.is_empty()] {
                    summary { "Add a channel" }
                    form method="post" action="/notifications/channels" {
                        (csrf(session))
                        label for="channel-name" { "Name" }
                        input #channel-name type="text" name="name" required maxlength="64" placeholder="ops";
                        label for="channel-kind" { "Kind" }
                        select #channel-kind name="kind" {
                            @for (value, label) in KINDS { option value=(value) { (label) } }
                        }
                        label for="channel-url" { "URL " span.muted { "(kept sealed, shown masked; for email smtp://user:password@host:587 or smtps://…:465)" } }
                        input #channel-url type="password" name="url" required autocomplete="off" placeholder="https://hooks.slack.com/services/…";
                        label for="channel-to" { "Email recipients " span.muted { "(email only; comma-separated)" } }
                        input #channel-to type="text" name="to" placeholder="finance@example.com";
                        label for="channel-from" { "Email sender " span.muted { "(email only)" } }
                        input #channel-from type="text" name="from" placeholder="alerts@example.com";
                        label for="channel-token" { "ntfy token " span.muted { "(ntfy only, optional)" } }
                        input #channel-token type="password" name="token" autocomplete="off";
                        label for="channel-secret" { "Signing secret " span.muted { "(webhook only, optional: a whsec_… secret your receiver already has; one is made and shown once when empty)" } }
                        input #channel-secret type="password" name="secret" autocomplete="off";
                        label for="channel-ca" { "CA certificates " span.muted { "(email only, optional: PEM text of the CA that signed your mail server's certificate, when it is not a public one)" } }
                        textarea #channel-ca name="ca_pem" rows="3" spellcheck="false" placeholder="-----BEGIN CERTIFICATE-----" {}
                        button.primary type="submit" { "Add the channel" }
                    }
                }
            }
            h2 #rules { "Rules" }
            @if rules.is_empty() {
                p.muted { "No rules yet: a channel sends nothing until a rule chooses events for it." }
            } @else {
                div.table-wrap {
                    table {
                        caption.visually-hidden { "Notification rules" }
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Channel" } th scope="col" { "Sends" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for rule in &rules {
                                tr {
                                    td { strong { (rule.name) } }
                                    td { (rule.channel) }
                                    td { (rule.description) }
                                    td {
                                        @if writer {
                                            form.inline method="post" action="/notifications/rules/remove" {
                                                (csrf(session))
                                                input type="hidden" name="name" value=(rule.name);
                                                button.link type="submit" aria-label=(format!("Remove the rule {}", rule.name)) { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if writer && !channels.is_empty() {
                details open[rules.is_empty()] {
                    summary { "Add a rule" }
                    form method="post" action="/notifications/rules" {
                        (csrf(session))
                        label for="rule-name" { "Name" }
                        input #rule-name type="text" name="name" required maxlength="64" placeholder="payments";
                        label for="rule-channel" { "Channel" }
                        select #rule-channel name="channel" {
                            @for channel in &channels { option value=(channel.name) { (channel.name) } }
                        }
                        label for="rule-events" { "Events " span.muted { "(default: payments succeeded and failed, refunds, disputes, subscriptions created and canceled, failed payouts, fraud warnings; or types like charge.*, comma-separated)" } }
                        input #rule-events type="text" name="events" value="default";
                        label for="rule-account" { "Account" }
                        select #rule-account name="account" {
                            option value="" { "Every account" }
                            @for account in &accounts {
                                option value=(account.connection.account_id) { (account.name) " (" (account.connection.account_id) ")" }
                            }
                        }
                        label.choice { input type="checkbox" name="include_test"; " Test-mode events too (marked [test])" }
                        label for="rule-min" { "Minimum amount " span.muted { "(optional: 50 in each currency, or 49.99usd)" } }
                        input #rule-min type="text" name="min_amount";
                        label for="rule-quiet" { "Quiet hours " span.muted { "(optional: 22:00-07:00)" } }
                        input #rule-quiet type="text" name="quiet_hours";
                        label for="rule-digest" { "Digest instead " span.muted { "(optional: daily@09:00 or weekly@mon09:00)" } }
                        input #rule-digest type="text" name="digest";
                        label for="rule-zone" { "Time zone " span.muted { "(of quiet hours and digests: Europe/Paris or +01:00; UTC when empty)" } }
                        input #rule-zone type="text" name="time_zone";
                        button.primary type="submit" { "Add the rule" }
                    }
                }
            }
            h2 #log { "Latest messages" }
            @if log.is_empty() {
                p.muted { "Nothing sent yet." }
            } @else {
                div.table-wrap {
                    table {
                        caption.visually-hidden { "Latest notification deliveries" }
                        thead { tr {
                            th scope="col" { "When" } th scope="col" { "Channel" } th scope="col" { "Event" }
                            th scope="col" { "Account" } th scope="col" { "State" } th scope="col" { "Why" }
                        } }
                        tbody {
                            @for entry in &log {
                                tr {
                                    td { (ago(Some(entry.finished_at.unwrap_or(entry.created_at)), now)) }
                                    td { (entry.channel) }
                                    td { code { (entry.event_type) } br; span.muted { (entry.event_id) } }
                                    td { code { (entry.connection) } }
                                    td { (entry.state.replace('_', " ")) @if entry.attempts > 1 { span.muted { " (" (entry.attempts) " tries)" } } }
                                    td { (entry.error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/notifications").await {
        Ok(session) => respond(
            StatusCode::OK,
            page_with(&state, &session, Outcome::default()).await,
        ),
        Err(to_signin) => to_signin,
    }
}

/// Runs a posted action and shows the page with its outcome.
async fn act<F, Fut>(state: Arc<AppState>, headers: HeaderMap, body: Bytes, action: F) -> Response
where
    F: FnOnce(Arc<AppState>, Form) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let (session, form) = match posted(&state, &headers, &body, "/notifications", true).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let outcome = action(state.clone(), form).await;
    respond(StatusCode::OK, page_with(&state, &session, outcome).await)
}

fn failed(error: EngineError) -> Outcome {
    Outcome {
        error: Some(error),
        ..Default::default()
    }
}

fn done(text: String) -> Outcome {
    Outcome {
        done: Some(text),
        ..Default::default()
    }
}

pub async fn add_channel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(state, headers, body, |state, mut form| async move {
        let url = form.take_secret("url");
        let token = form.take_secret("token");
        let secret = form.take_secret("secret");
        let input = ChannelInput {
            name: form.text("name").unwrap_or_default(),
            kind: form.text("kind").unwrap_or_default(),
            url: url.trim().to_owned(),
            secret: Some(secret.trim().to_owned()).filter(|s| !s.is_empty()),
            token: Some(token.trim().to_owned()).filter(|t| !t.is_empty()),
            to: form
                .text("to")
                .map(|to| {
                    to.split(',')
                        .map(|a| a.trim().to_owned())
                        .filter(|a| !a.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            from: form.text("from"),
            ca_pem: form.text("ca_pem"),
        };
        match notify::add_channel(&state.engine, input).await {
            Ok(added) => Outcome {
                done: Some(format!(
                    "Added {}. Send it a test, then add a rule for it.",
                    added.channel.name
                )),
                secret: added
                    .signing_secret
                    .map(|s| (added.channel.name.clone(), s)),
                error: None,
            },
            Err(error) => failed(error),
        }
    })
    .await
}

pub async fn test_channel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(state, headers, body, |state, form| async move {
        let name = form.text("name").unwrap_or_default();
        match notify::test_channel(&state.engine, &name).await {
            Ok(outcome) => match outcome.refusal() {
                None => done(format!("{name} took the test message.")),
                Some(refusal) => failed(refusal),
            },
            Err(error) => failed(error),
        }
    })
    .await
}

pub async fn remove_channel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(state, headers, body, |state, form| async move {
        let name = form.text("name").unwrap_or_default();
        match notify::remove_channel(&state.engine, &name).await {
            Ok(rules) => done(format!("Removed {name} and its {rules} rule(s).")),
            Err(error) => failed(error),
        }
    })
    .await
}

pub async fn add_rule(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(state, headers, body, |state, form| async move {
        let input = RuleInput {
            name: form.text("name").unwrap_or_default(),
            channel: form.text("channel").unwrap_or_default(),
            events: form.text("events"),
            account: form.text("account"),
            include_test: form.checked("include_test"),
            min_amount: form.text("min_amount"),
            quiet_hours: form.text("quiet_hours"),
            digest: form.text("digest"),
            time_zone: form.text("time_zone"),
        };
        match notify::add_rule(&state.engine, input).await {
            Ok(rule) => done(format!(
                "Added the rule {}: {}.",
                rule.name, rule.description
            )),
            Err(error) => failed(error),
        }
    })
    .await
}

pub async fn remove_rule(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(state, headers, body, |state, form| async move {
        let name = form.text("name").unwrap_or_default();
        match notify::remove_rule(&state.engine, &name).await {
            Ok(()) => done(format!("Removed the rule {name}.")),
            Err(error) => failed(error),
        }
    })
    .await
}
