//! The Accounts page (a card per connection with its status in words and a ⋮ menu) and what
//! the menu opens: sync now, the syncs, the start date, the key, name and logo, permissions,
//! and removal.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::response::sse::Event;
use maud::{Markup, html};
use sm_engine::ops::{connections, syncs};
use sm_engine::{EngineError, now};
use sm_stripe::ApiKey;
use sm_warehouse::{AccountRecord, RunRecord};

use super::layout::{self, ago, count, csrf, done_box, error_box, shell};
use super::session::Session;
use super::{encode, error_page, html as respond, posted, redirect, signed_in};
use crate::AppState;

/// What a `?done=` after an action says (fixed words: nothing from the URL is shown).
fn done_words(code: &str) -> Option<&'static str> {
    Some(match code {
        "sync" => {
            "A sync was asked for: it starts within seconds, and its card shows its progress."
        }
        "connected" => "Connected. The first sync has started.",
        "renamed" => "Saved the name and logo.",
        "key" => "The API key was updated.",
        "start" => {
            "The start date was saved. Syncs keep to it from now on; rows already mirrored follow it after a full sync (stripe-mirror sync --full)."
        }
        "removed" => "The connection was removed, with all its data and its webhook endpoint.",
        _ => return None,
    })
}

/// The Accounts page's query: what was just done, a filter, and the page of cards.
#[derive(serde::Deserialize, Default)]
pub struct Listing {
    done: Option<String>,
    /// Cards whose name, account id or label contains this, any case.
    #[serde(default)]
    q: String,
    /// From 1.
    page: Option<usize>,
}

/// Cards on one page: 100 connections at about 1.5 KB a card would weigh 150 KB in one page.
const CARDS_PER_PAGE: usize = 30;

impl Listing {
    /// The connections this listing shows, and how many matched in all.
    fn choose(
        &self,
        all: Vec<connections::AccountSummary>,
    ) -> (Vec<connections::AccountSummary>, usize) {
        let wanted = self.q.trim().to_lowercase();
        let matched: Vec<_> = all
            .into_iter()
            .filter(|s| {
                wanted.is_empty()
                    || s.name.to_lowercase().contains(&wanted)
                    || s.label.to_lowercase().contains(&wanted)
            })
            .collect();
        let total = matched.len();
        let skip = (self.page() - 1) * CARDS_PER_PAGE;
        (
            matched
                .into_iter()
                .skip(skip)
                .take(CARDS_PER_PAGE)
                .collect(),
            total,
        )
    }

    fn page(&self) -> usize {
        self.page.unwrap_or(1).max(1)
    }

    /// The query string for page `page` of the same filter.
    fn query(&self, page: usize) -> String {
        let mut query = format!("page={page}");
        if !self.q.trim().is_empty() {
            query.push_str(&format!("&q={}", encode(self.q.trim())));
        }
        query
    }
}

/// The path of a connection's page: `/accounts/acct_…:test/…` (a colon needs no escaping in
/// a path segment; most of a card's weight is these paths).
fn path(summary_label: &str, rest: &str) -> String {
    format!(
        "/accounts/{}/{rest}",
        encode(summary_label).replace("%3A", ":")
    )
}

/// The id of the one form the cards' buttons post with (`form=` on each button), so that a
/// card carries no CSRF field of its own.
const ACTIONS_FORM: &str = "card-actions";

/// Two letters for a connection without a logo.
fn initials(name: &str) -> String {
    let letters: String = name
        .split_whitespace()
        .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()))
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    if letters.is_empty() {
        "?".into()
    } else {
        letters
    }
}

/// How a status looks: bad (a person must act), busy, warn (something to do), ok.
fn tone(s: &connections::AccountSummary) -> &'static str {
    if s.headline.starts_with("Action required") || s.headline.starts_with("Sync failed") {
        "bad"
    } else if s.headline.starts_with("Syncing") {
        "busy"
    } else if s.fix.is_some() {
        "warn"
    } else {
        "ok"
    }
}

fn card(session: &Session, s: &connections::AccountSummary, now: i64) -> Markup {
    let label = &s.label;
    let name_id = format!("n-{}", label.replace(':', "-"));
    html! {
        article.card aria-labelledby=(name_id) data-connection=(label) {
            div.card-head {
                @match &s.logo_url {
                    Some(logo) => img.logo src=(logo) alt="" width="40" height="40";,
                    None => span.logo.initials aria-hidden="true" { (initials(&s.name)) },
                }
                div.title {
                    h2 #(name_id) { (s.name) }
                    p.muted {
                        code { (s.account_id) }
                        " "
                        @if s.mode == "live" { span.badge.live { "Live" } } @else { span.badge.test { "Test" } }
                    }
                }
                details.menu {
                    summary aria-label=(format!("Actions for {}", s.name)) { "⋮" }
                    ul role="list" {
                        @if !session.read_only() {
                            li { button.link type="submit" form=(ACTIONS_FORM) formaction=(path(label, "sync")) { "Sync now" } }
                        }
                        li { a href=(path(label, "syncs")) { "View syncs" } }
                        @if !session.read_only() {
                            li { a href=(path(label, "start-date")) { "Set sync start date" } }
                            li { a href=(path(label, "key")) { "Update API key" } }
                            li { a href=(path(label, "edit")) { "Rename / logo" } }
                        }
                        li { a href=(path(label, "permissions")) { "Permissions" } }
                        @if !session.read_only() {
                            li { a.danger href=(path(label, "remove")) { "Remove connection" } }
                        }
                    }
                }
            }
            p.status.(tone(s)) {
                span.dot aria-hidden="true" {}
                strong { (s.headline) }
                @if let Some(fix) = &s.fix {
                    " — "
                    @if fix == connections::UPDATE_KEY {
                        a href=(path(label, "key")) { (fix) }
                    } @else if !session.read_only() {
                        button.link type="submit" form=(ACTIONS_FORM) formaction=(path(label, "sync")) { (fix) }
                    }
                }
            }
            @if let Some(notice) = &s.notice { p.notice { (notice) } }
            dl.facts {
                div { dt { "Key" } dd { (s.key_kind) " " code { (s.key) } } }
                div { dt { "Last sync" } dd { (ago(s.last_sync, now)) } }
                div { dt { "Last event" } dd { (ago(s.last_event_at, now)) } }
                div { dt { "Rows mirrored" } dd { @match s.rows { Some(n) => (count(n)), None => span.muted { "—" } } } }
            }
            p.links {
                a href=(path(label, "syncs")) { "Syncs" } " · "
                a href=(path(label, "events")) { "Events" } " · "
                a href=(path(label, "data")) { "Data" }
            }
        }
    }
}

/// Every card, or the way to make the first.
fn cards(session: &Session, all: &[connections::AccountSummary]) -> Markup {
    let now = now();
    html! {
        @if all.is_empty() {
            div.empty {
                h2 { "No Stripe account connected yet" }
                p { "Paste a restricted key (rk_…) and the mirror copies the account into SQL, then keeps it up to date." }
                @if !session.read_only() { a.button.primary href="/accounts/new" { "Connect a Stripe account" } }
            }
        } @else {
            @for summary in all { (card(session, summary, now)) }
        }
    }
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(listing): Query<Listing>,
) -> Response {
    let session = match signed_in(&state, &headers, "/accounts").await {
        Ok(session) => session,
        Err(to_signin) => return to_signin,
    };
    let all = match connections::list(&state.engine).await {
        Ok(all) => all,
        Err(error) => return error_page(&session, &error),
    };
    let connected = all.len();
    let (shown, matched) = listing.choose(all);
    let page = listing.page();
    let first = (page - 1) * CARDS_PER_PAGE;
    let body = html! {
        div.heading {
            h1 { "Accounts" }
            @if !session.read_only() { a.button.primary href="/accounts/new" { "New connection" } }
        }
        @if let Some(words) = listing.done.as_deref().and_then(done_words) { (done_box(words)) }
        @if connected > CARDS_PER_PAGE || !listing.q.is_empty() {
            form.filter method="get" action="/accounts" role="search" {
                div {
                    label for="q" { "Find a connection" }
                    input #q type="text" name="q" value=(listing.q) placeholder="Name or acct_…" spellcheck="false";
                }
                button type="submit" { "Find" }
            }
        }
        form #(ACTIONS_FORM) method="post" hidden { (csrf(&session)) }
        @if shown.is_empty() && connected > 0 {
            p { "No connection matches " strong { (listing.q) } ". " a href="/accounts" { "Show all" } }
        } @else {
            div #cards.cards data-live=(format!("/accounts/live?{}", listing.query(page))) { (cards(&session, &shown)) }
        }
        @if matched > CARDS_PER_PAGE {
            nav.pager aria-label="Pages of connections" {
                "Showing " (first + 1) "–" (first + shown.len()) " of " (matched) " "
                @if page > 1 { a href=(format!("/accounts?{}", listing.query(page - 1))) rel="prev" { "‹ Previous" } " " }
                @if first + shown.len() < matched { a href=(format!("/accounts?{}", listing.query(page + 1))) rel="next" { "Next ›" } }
            }
        }
    };
    respond(
        StatusCode::OK,
        shell(&session, "Accounts", "accounts", body),
    )
}

/// The cards again whenever they change (checked every second), as Server-Sent Events:
/// `cards` with the new HTML; the page's script swaps them in.
pub async fn live(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(listing): Query<Listing>,
) -> Response {
    let (cookie, slot) = match super::live_start(&state, &headers).await {
        Ok(start) => start,
        Err(refused) => return refused,
    };
    let listing = Arc::new(listing);
    let start = (state, cookie, String::new(), slot);
    let stream = futures_util::stream::unfold(start, move |(state, cookie, last, slot)| {
        let listing = listing.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // A session that ended (signed out elsewhere, token revoked) ends its stream.
                let session = super::session::check(&state, &cookie).await?;
                let Ok(all) = connections::list(&state.engine).await else {
                    continue;
                };
                let (all, _) = listing.choose(all);
                // Times in words move every second; only a real change is sent.
                let fresh = cards(&session, &all).into_string();
                let key = fingerprint(&all);
                if key != last {
                    let event = Event::default().event("cards").data(fresh);
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (state, cookie, key, slot),
                    ));
                }
            }
        }
    });
    super::live_response(stream)
}

/// What the cards show, without the clock: so that a card is sent again only when it changed.
fn fingerprint(all: &[connections::AccountSummary]) -> String {
    serde_json::to_string(all).unwrap_or_default()
}

/// The connection a path names, or the page that says it is unknown.
async fn resolve(
    state: &AppState,
    session: &Session,
    reference: &str,
) -> Result<AccountRecord, Response> {
    state
        .engine
        .resolve(reference)
        .await
        .map_err(|error| error_page(session, &error))
}

pub async fn sync_now(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, _) = match posted(&state, &headers, &body, "/accounts", true).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let record = match resolve(&state, &session, &reference).await {
        Ok(record) => record,
        Err(page) => return page,
    };
    state.request_sync(&record.connection, sm_engine::sync::Trigger::Dashboard);
    redirect("/accounts?done=sync")
}

fn counts_total(run: &RunRecord) -> (u64, u64, u64) {
    run.counts.tables.values().fold((0, 0, 0), |(i, u, d), c| {
        (i + c.inserted, u + c.updated, d + c.deleted)
    })
}

pub async fn syncs(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match signed_in(
        &state,
        &headers,
        &format!("/accounts/{}/syncs", encode(&reference)),
    )
    .await
    {
        Ok(session) => session,
        Err(to_signin) => return to_signin,
    };
    let record = match resolve(&state, &session, &reference).await {
        Ok(record) => record,
        Err(page) => return page,
    };
    let runs = match syncs::runs(&state.engine, &record.connection, 50).await {
        Ok(runs) => runs,
        Err(error) => return error_page(&session, &error),
    };
    let now = now();
    let body = html! {
        p.crumbs { a href="/accounts" { "Accounts" } " › " (record.name) }
        div.heading {
            h1 { "Syncs of " (record.name) }
            @if !session.read_only() {
                form method="post" action=(path(&record.connection.label(), "sync")) {
                    (csrf(&session))
                    button.primary type="submit" { "Sync now" }
                }
            }
        }
        div data-live=(path(&record.connection.label(), "syncs/live")) {
            (runs_table(&runs, now))
        }
    };
    respond(
        StatusCode::OK,
        shell(
            &session,
            &format!("Syncs of {}", record.name),
            "accounts",
            body,
        ),
    )
}

/// The runs, newest first: a running one with its progress, each with its counts and error.
fn runs_table(runs: &[RunRecord], now: i64) -> Markup {
    html! {
        @if runs.is_empty() {
            p { "No sync has run yet." }
        } @else {
            div.table-wrap {
                table {
                    caption.visually-hidden { "Syncs, newest first" }
                    thead { tr {
                        th scope="col" { "Started" } th scope="col" { "Duration" } th scope="col" { "Kind" }
                        th scope="col" { "Trigger" } th scope="col" { "Status" } th scope="col" { "Inserted" } th scope="col" { "Updated" }
                        th scope="col" { "Deleted" } th scope="col" { "Requests" }
                    } }
                    tbody {
                        @for run in runs {
                            @let (inserted, updated, deleted) = counts_total(run);
                            tr {
                                td { (ago(Some(run.started_at), now)) }
                                td { @match run.ended_at {
                                    Some(end) => (layout::duration((end - run.started_at) as f64)),
                                    None => span.muted { "running" },
                                } }
                                td { (run.kind) }
                                td { @if run.trigger.is_empty() { span.muted { "—" } } @else { (run.trigger) } }
                                td {
                                    @if run.status == "running" {
                                        @let percent = run.progress.as_ref().and_then(|p| p["percent"].as_u64()).unwrap_or(0);
                                        span.run-running { "running " (percent) "%" }
                                        progress max="100" value=(percent) aria-label="Sync progress" {}
                                    } @else {
                                        span.(format!("run-{}", run.status)) { (run.status) }
                                    }
                                    @if let Some(error) = &run.error {
                                        @let fix = connections::failure_words(error).1;
                                        p.error-text { (error) }
                                        p.fix { "What to do: "
                                            @if fix == connections::UPDATE_KEY {
                                                a href=(path(&run.connection.label(), "key")) { (fix) }
                                            } @else { (fix) " (the button above)" }
                                        }
                                    }
                                }
                                td.num { (count(inserted)) } td.num { (count(updated)) }
                                td.num { (count(deleted)) } td.num { (count(run.requests)) }
                            }
                            @if !run.counts.tables.is_empty() {
                                tr.detail { td colspan="9" {
                                    details {
                                        summary { "Per table" }
                                        ul.per-table {
                                            @for (table, c) in &run.counts.tables {
                                                li { code { (table) } ": " (c.inserted) " inserted, " (c.updated) " updated, " (c.deleted) " deleted" }
                                            }
                                        }
                                    }
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The runs table again whenever a run changes (checked every second), as `cards` events:
/// a running sync's progress moves on the page without a reload.
pub async fn syncs_live(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (cookie, slot) = match super::live_start(&state, &headers).await {
        Ok(start) => start,
        Err(refused) => return refused,
    };
    let Ok(record) = state.engine.resolve(&reference).await else {
        return axum::response::IntoResponse::into_response(StatusCode::NOT_FOUND);
    };
    let start = (state, cookie, String::new(), slot);
    let stream = futures_util::stream::unfold(start, move |(state, cookie, last, slot)| {
        let connection = record.connection.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                super::session::check(&state, &cookie).await?;
                let Ok(runs) = syncs::runs(&state.engine, &connection, 50).await else {
                    continue;
                };
                let key = serde_json::to_string(&runs).unwrap_or_default();
                if key != last {
                    let event = Event::default()
                        .event("cards")
                        .data(runs_table(&runs, now()).into_string());
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (state, cookie, key, slot),
                    ));
                }
            }
        }
    });
    super::live_response(stream)
}

/// A small form page about one connection.
fn form_page(
    session: &Session,
    record: &AccountRecord,
    title: &str,
    error: Option<&EngineError>,
    form: Markup,
) -> Markup {
    shell(
        session,
        title,
        "accounts",
        html! {
            p.crumbs { a href="/accounts" { "Accounts" } " › " (record.name) }
            h1 { (title) }
            @if let Some(error) = error {
                @let shown = crate::shown_error(error);
                (error_box(&shown.0, shown.1.as_deref()))
            }
            (form)
        },
    )
}

/// Fetches the connection for a form page, with the session (GET).
async fn for_page(
    state: &AppState,
    headers: &HeaderMap,
    reference: &str,
    rest: &str,
) -> Result<(Session, AccountRecord), Response> {
    let session = signed_in(
        state,
        headers,
        &format!("/accounts/{}/{rest}", encode(reference)),
    )
    .await?;
    let record = resolve(state, &session, reference).await?;
    Ok((session, record))
}

/// Checks a posted form and fetches its connection (POST).
async fn for_post(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    reference: &str,
) -> Result<(Session, super::Form, AccountRecord), Response> {
    let (session, form) = posted(state, headers, body, "/accounts", true).await?;
    let record = resolve(state, &session, reference).await?;
    Ok((session, form, record))
}

fn start_date_form(session: &Session, record: &AccountRecord) -> Markup {
    let current = record
        .start_date
        .map(sm_stripe::http_date::iso_day)
        .unwrap_or_default();
    html! {
        p { "The mirror keeps objects created on or after this day (UTC); leave it empty for all history. Syncs keep to it from now on; a full sync (" code { "stripe-mirror sync --full" } ") fetches older history for an earlier date." }
        form method="post" action=(path(&record.connection.label(), "start-date")) {
            (csrf(session))
            label for="start" { "Start date" }
            input #start type="date" name="start_date" value=(current);
            button.primary type="submit" { "Save" }
            " " a href="/accounts" { "Cancel" }
        }
    }
}

/// A connection's small form (start date, key, name and logo): its page, and after a POST
/// the Accounts page saying `done` (a sync asked for when `sync`), or the form again with the
/// error in words — a page like any other (a 4xx would be a failed load to the browser).
struct FormKind {
    rest: &'static str,
    title: &'static str,
    done: &'static str,
    sync: bool,
    render: fn(&Session, &AccountRecord) -> Markup,
}

const START_DATE: FormKind = FormKind {
    rest: "start-date",
    title: "Set sync start date",
    done: "start",
    sync: true,
    render: start_date_form,
};
const KEY: FormKind = FormKind {
    rest: "key",
    title: "Update API key",
    done: "key",
    sync: true,
    render: key_form,
};
const EDIT: FormKind = FormKind {
    rest: "edit",
    title: "Rename / logo",
    done: "renamed",
    sync: false,
    render: edit_form,
};

async fn show_form(
    state: &AppState,
    headers: &HeaderMap,
    reference: &str,
    kind: &FormKind,
) -> Response {
    match for_page(state, headers, reference, kind.rest).await {
        Ok((session, record)) => respond(
            StatusCode::OK,
            form_page(
                &session,
                &record,
                kind.title,
                None,
                (kind.render)(&session, &record),
            ),
        ),
        Err(response) => response,
    }
}

fn after_post(
    state: &AppState,
    session: &Session,
    record: &AccountRecord,
    kind: &FormKind,
    outcome: Result<(), EngineError>,
) -> Response {
    match outcome {
        Ok(()) => {
            if kind.sync {
                state.request_sync(&record.connection, sm_engine::sync::Trigger::Dashboard);
            }
            redirect(&format!("/accounts?done={}", kind.done))
        }
        Err(error) => respond(
            StatusCode::OK,
            form_page(
                session,
                record,
                kind.title,
                Some(&error),
                (kind.render)(session, record),
            ),
        ),
    }
}

pub async fn start_date_page(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    show_form(&state, &headers, &reference, &START_DATE).await
}

pub async fn key_page(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    show_form(&state, &headers, &reference, &KEY).await
}

pub async fn edit_page(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    show_form(&state, &headers, &reference, &EDIT).await
}

pub async fn start_date(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form, record) = match for_post(&state, &headers, &body, &reference).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let start = match form.text("start_date") {
        None => Ok(None),
        Some(day) => sm_stripe::http_date::parse_day(&day)
            .map(Some)
            .ok_or_else(|| {
                EngineError::invalid(format!(
                    "{day} is not a date: pick one in the calendar (YYYY-MM-DD)"
                ))
            }),
    };
    let outcome = match start {
        Ok(start) => connections::set_start_date(&state.engine, &record.connection, start)
            .await
            .map(|_| ()),
        Err(error) => Err(error),
    };
    after_post(&state, &session, &record, &START_DATE, outcome)
}

fn key_form(session: &Session, record: &AccountRecord) -> Markup {
    let mode = if record.connection.livemode {
        "live"
    } else {
        "test"
    };
    html! {
        p { "Paste a new key of the same account in " strong { (mode) } " mode (now " code { (record.key_masked) } "). It is checked with Stripe before it replaces the old one; the mirror's data stays." }
        form method="post" action=(path(&record.connection.label(), "key")) {
            (csrf(session))
            label for="api_key" { "New API key" }
            input #api_key type="password" name="api_key" required autocomplete="off"
                placeholder=(format!("rk_{mode}_…")) spellcheck="false";
            button.primary type="submit" { "Update API key" }
            " " a href="/accounts" { "Cancel" }
        }
    }
}

pub async fn key(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, mut form, record) = match for_post(&state, &headers, &body, &reference).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let text = form.take_secret("api_key");
    let outcome = match ApiKey::parse(text.trim()) {
        Ok(key) => connections::update_key(&state.engine, &record.connection, key)
            .await
            .map(|_| ()),
        Err(error) => Err(EngineError::from(error)),
    };
    after_post(&state, &session, &record, &KEY, outcome)
}

fn edit_form(session: &Session, record: &AccountRecord) -> Markup {
    html! {
        form method="post" action=(path(&record.connection.label(), "edit")) {
            (csrf(session))
            label for="name" { "Name" }
            input #name type="text" name="name" value=(record.name) required maxlength="200";
            label for="logo" { "Logo URL" }
            p.hint #logo-hint { "An https:// image, or a data:image/… URL under 48 KiB. Leave it empty to use Stripe's icon (or initials)." }
            input #logo type="text" name="logo" value=(record.logo_url.clone().unwrap_or_default())
                aria-describedby="logo-hint" spellcheck="false";
            button.primary type="submit" { "Save" }
            " " a href="/accounts" { "Cancel" }
        }
    }
}

pub async fn edit(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form, record) = match for_post(&state, &headers, &body, &reference).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let name = form.text("name").unwrap_or_default();
    let logo = form.text("logo");
    // Both are checked before either is written.
    let checked = match logo.as_deref() {
        Some(logo) => connections::check_logo(logo),
        None => Ok(()),
    };
    let outcome = match checked {
        Err(error) => Err(error),
        Ok(()) => {
            let renamed = if name != record.name {
                connections::rename(&state.engine, &record.connection, &name)
                    .await
                    .map(|_| ())
            } else {
                Ok(())
            };
            match renamed {
                Ok(()) if logo != record.logo_url => {
                    connections::set_logo(&state.engine, &record.connection, logo)
                        .await
                        .map(|_| ())
                }
                other => other,
            }
        }
    };
    after_post(&state, &session, &record, &EDIT, outcome)
}

pub async fn permissions(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, record) = match for_page(&state, &headers, &reference, "permissions").await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let report = connections::PermissionReport::from_json(&record.permissions);
    let mode = if record.connection.livemode {
        sm_stripe::Mode::Live
    } else {
        sm_stripe::Mode::Test
    };
    let body = html! {
        p.crumbs { a href="/accounts" { "Accounts" } " › " (record.name) }
        h1 { "Permissions of " (record.name) }
        p { "What the key " code { (record.key_masked) } " may do, as checked " (ago(Some(report.checked_at), now())) "." }
        (super::connect::permission_matrix(&report, mode))
    };
    respond(
        StatusCode::OK,
        shell(
            &session,
            &format!("Permissions of {}", record.name),
            "accounts",
            body,
        ),
    )
}

pub async fn remove_page(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, record) = match for_page(&state, &headers, &reference, "remove").await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let form = html! {
        div.warning role="note" {
            p { "Removing " strong { (record.name) } " (" code { (record.connection.label()) } ") deletes every row the mirror holds for it — objects, events, syncs — and its key." }
            @if let Some(endpoint) = &record.webhook_endpoint_id {
                p { "Its webhook endpoint in Stripe (" code { (endpoint) } ") is deleted too." }
            }
            p { "Nothing in Stripe itself changes otherwise. This cannot be undone; connecting again copies the account again." }
        }
        form method="post" action=(path(&record.connection.label(), "remove")) {
            (csrf(&session))
            button.danger type="submit" { "Remove " (record.name) " and all its data" }
            " " a href="/accounts" { "Cancel" }
        }
    };
    respond(
        StatusCode::OK,
        form_page(&session, &record, "Remove connection", None, form),
    )
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, _, record) = match for_post(&state, &headers, &body, &reference).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    match connections::remove(&state.engine, &record.connection).await {
        Ok(_) => redirect("/accounts?done=removed"),
        Err(error) => error_page(&session, &error),
    }
}
