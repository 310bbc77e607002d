//! A connection's events (the latest 50, older pages, a type filter, a live tail) and data (the
//! tables with their rows, a table's pages, one object with links to what it refers to), and
//! the read-only SQL box with a CSV download.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};
use serde_json::Value;
use sm_engine::ops::{events, objects, query};
use sm_engine::{EngineError, now};
use sm_warehouse::{AccountRecord, EventQuery, EventRow, PageQuery};

use super::layout::{ago, count, csrf, error_box, shell};
use super::session::Session;
use super::{encode, error_page, html as respond, posted, signed_in};
use crate::AppState;

const PAGE: usize = 50;

/// The signed-in person and the connection a path names.
pub(super) async fn connection(
    state: &AppState,
    headers: &HeaderMap,
    reference: &str,
    here: &str,
) -> Result<(Session, AccountRecord), Response> {
    let session = signed_in(state, headers, here).await?;
    let record = state
        .engine
        .resolve(reference)
        .await
        .map_err(|error| error_page(&session, &error))?;
    Ok((session, record))
}

pub(super) fn base(record: &AccountRecord) -> String {
    format!("/accounts/{}", encode(&record.connection.label()))
}

/// The tabs of a connection's pages.
pub(super) fn tabs(record: &AccountRecord, current: &str) -> Markup {
    let base = base(record);
    html! {
        p.crumbs { a href="/accounts" { "Accounts" } " › " (record.name) }
        nav.tabs aria-label="This connection" {
            @for (key, label, path) in [("syncs", "Syncs", "syncs"), ("events", "Events", "events"), ("data", "Data", "data"), ("reports", "Reports", "reports")] {
                @if key == current {
                    a href=(format!("{base}/{path}")) aria-current="page" { (label) }
                } @else {
                    a href=(format!("{base}/{path}")) { (label) }
                }
            }
        }
    }
}

/// The mirror's page of an object, when its type is mirrored.
fn object_path(record: &AccountRecord, object: &str, id: &str) -> Option<String> {
    sm_engine::catalog::by_object(object)
        .map(|r| format!("{}/data/{}/{}", base(record), r.table, encode(id)))
}

fn event_row(record: &AccountRecord, event: &EventRow, now: i64) -> Markup {
    let object: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    let kind = object["data"]["object"]["object"]
        .as_str()
        .unwrap_or_default();
    html! {
        tr {
            td { (ago(Some(event.created), now)) }
            td { code { (event.event_type) } }
            td {
                @if let Some(id) = &event.object_id {
                    @match object_path(record, kind, id) {
                        Some(path) => a href=(path) { code { (id) } },
                        None => code { (id) },
                    }
                }
            }
            td { code { (event.id) } }
        }
    }
}

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    after: Option<String>,
}

pub async fn events_page(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    Query(params): Query<EventsQuery>,
) -> Response {
    let here = format!("/accounts/{}/events", encode(&reference));
    let (session, record) = match connection(&state, &headers, &reference, &here).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let wanted = params.event_type.clone().filter(|t| !t.trim().is_empty());
    let query = EventQuery {
        types: wanted.iter().map(|t| t.trim().to_owned()).collect(),
        starting_after: params.after.clone().filter(|a| !a.is_empty()),
        limit: PAGE,
    };
    let outcome = events::page(&state.engine, &record.connection, query).await;
    let now = now();
    let base = base(&record);
    let body = html! {
        (tabs(&record, "events"))
        h1 { "Events of " (record.name) }
        form.filter method="get" action=(format!("{base}/events")) {
            div {
                label for="type" { "Type " span.muted { "(exact, or a prefix like invoice.*)" } }
                input #type type="text" name="type" value=(wanted.clone().unwrap_or_default()) placeholder="invoice.*" spellcheck="false";
            }
            button type="submit" { "Filter" }
        }
        @match &outcome {
            Err(error) => {
                @let shown = crate::shown_error(error);
                (error_box(&shown.0, shown.1.as_deref()))
            }
            Ok((rows, more)) => {
                @if rows.is_empty() && params.after.is_none() {
                    p { "No events kept yet" @if wanted.is_some() { " of this type" } "." }
                }
                div.table-wrap {
                    table {
                        caption.visually-hidden { "Events, newest first" }
                        thead { tr { th scope="col" { "When" } th scope="col" { "Type" } th scope="col" { "Object" } th scope="col" { "Event" } } }
                        // New events arrive at the top while this is the first page.
                        @if params.after.is_none() && wanted.is_none() {
                            tbody data-live-rows=(format!("{base}/events/live")) {
                                @for event in rows { (event_row(&record, event, now)) }
                            }
                        } @else {
                            tbody { @for event in rows { (event_row(&record, event, now)) } }
                        }
                    }
                }
                @if *more && let Some(last) = rows.last() {
                    p { a href=(format!("{base}/events?after={}{}", encode(&last.id), wanted.as_deref().map(|t| format!("&type={}", encode(t))).unwrap_or_default())) { "Older events" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        shell(
            &session,
            &format!("Events of {}", record.name),
            "accounts",
            body,
        ),
    )
}

/// New events of a connection as they are stored: `rows` events with table rows to put on top.
pub async fn events_live(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (cookie, slot) = match super::live_start(&state, &headers).await {
        Ok(start) => start,
        Err(refused) => return refused,
    };
    let Ok(record) = state.engine.resolve(&reference).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(position) = events::position_now(&state.engine, &record.connection).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let start = (state, cookie, record, position, slot);
    let stream = futures_util::stream::unfold(
        start,
        |(state, cookie, record, position, slot)| async move {
            let mut position = position;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                super::session::check(&state, &cookie).await?;
                let Ok(newer) =
                    events::stored_after(&state.engine, &record.connection, position, 100).await
                else {
                    continue;
                };
                if let Some((last, _)) = newer.last() {
                    position = *last;
                    let now = now();
                    // Newest first, as the table shows them.
                    let rows = html! { @for (_, event) in newer.iter().rev() { (event_row(&record, event, now)) } };
                    let event = Event::default().event("rows").data(rows.into_string());
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (state, cookie, record, position, slot),
                    ));
                }
            }
        },
    );
    super::live_response(stream)
}

pub async fn tables(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    let here = format!("/accounts/{}/data", encode(&reference));
    let (session, record) = match connection(&state, &headers, &reference, &here).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let counts = match objects::counts(&state.engine, &record.connection).await {
        Ok(counts) => counts,
        Err(error) => return error_page(&session, &error),
    };
    let base = base(&record);
    let body = html! {
        (tabs(&record, "data"))
        h1 { "Data of " (record.name) }
        p { "Every mirrored table, with the rows this connection has in it as of its last sync. Query across them in " a href="/sql" { "SQL" } "." }
        div.table-wrap {
            table {
                caption.visually-hidden { "Tables" }
                thead { tr { th scope="col" { "Table" } th.num scope="col" { "Rows" } th.num scope="col" { "Deleted in Stripe" } } }
                tbody {
                    @for (table, live, deleted) in &counts {
                        tr {
                            td { a href=(format!("{base}/data/{table}")) { code { (table) } } }
                            td.num { (count(*live)) }
                            td.num { (count(*deleted)) }
                        }
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        shell(
            &session,
            &format!("Data of {}", record.name),
            "accounts",
            body,
        ),
    )
}

pub async fn table_page(
    State(state): State<Arc<AppState>>,
    Path((reference, table)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let here = format!("/accounts/{}/data/{}", encode(&reference), encode(&table));
    let (session, record) = match connection(&state, &headers, &reference, &here).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let Some(schema) = sm_warehouse::schema::table(&table) else {
        return error_page(
            &session,
            &EngineError::new(
                sm_engine::ErrorCode::NotFound,
                format!("no table named {table}"),
            ),
        );
    };
    let columns: Vec<&str> = schema.columns.iter().map(|c| c.name).take(5).collect();
    let mut query = PageQuery {
        limit: PAGE,
        ..Default::default()
    };
    let mut filters = Vec::new();
    for (name, value) in &params {
        if value.is_empty() {
            continue;
        }
        if name == "after" {
            query.starting_after = Some(value.clone());
        } else if schema.columns.iter().any(|c| c.name == name) {
            query.filters.push((name.clone(), value.clone()));
            filters.push((name.clone(), value.clone()));
        }
    }
    let outcome = objects::page(&state.engine, &record.connection, &table, query).await;
    let base = base(&record);
    let now = now();
    let body = html! {
        (tabs(&record, "data"))
        h1 { code { (table) } " of " (record.name) }
        form.filter method="get" action=(format!("{base}/data/{table}")) {
            @for column in &columns {
                div {
                    label for=(format!("f-{column}")) { (column) }
                    input id=(format!("f-{column}")) type="text" name=(column)
                        value=(filters.iter().find(|(n, _)| n == column).map(|(_, v)| v.as_str()).unwrap_or_default());
                }
            }
            button type="submit" { "Filter" }
        }
        @match &outcome {
            Err(error) => {
                @let shown = crate::shown_error(error);
                (error_box(&shown.0, shown.1.as_deref()))
            }
            Ok((rows, more)) => {
                @let parsed: Vec<Value> = rows.iter().map(|r| serde_json::from_str(r).unwrap_or(Value::Null)).collect();
                @if parsed.is_empty() { p { "No rows" @if !filters.is_empty() { " match" } "." } }
                div.table-wrap {
                    table {
                        caption.visually-hidden { (table) ", newest first" }
                        thead { tr {
                            th scope="col" { "id" } th scope="col" { "created" }
                            @for column in &columns { th scope="col" { (column) } }
                        } }
                        tbody {
                            @for object in &parsed {
                                @let id = object["id"].as_str().unwrap_or_default();
                                tr {
                                    td { a href=(format!("{base}/data/{table}/{}", encode(id))) { code { (id) } } }
                                    td { (ago(object["created"].as_i64(), now)) }
                                    @for column in &columns {
                                        td { (cell(schema, column, object)) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if *more && let Some(last) = parsed.last() {
                    @let next: Vec<String> = filters.iter().map(|(n, v)| format!("{}={}", encode(n), encode(v)))
                        .chain([format!("after={}", encode(last["id"].as_str().unwrap_or_default()))]).collect();
                    p { a href=(format!("{base}/data/{table}?{}", next.join("&"))) { "Older rows" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        shell(
            &session,
            &format!("{table} of {}", record.name),
            "accounts",
            body,
        ),
    )
}

/// A typed column's value in an object, as text.
fn cell(schema: &sm_warehouse::schema::Table, column: &str, object: &Value) -> String {
    let Some(path) = schema
        .columns
        .iter()
        .find(|c| c.name == column)
        .map(|c| c.path)
    else {
        return String::new();
    };
    let value = path.split('.').fold(object, |v, key| &v[key]);
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn object_page(
    State(state): State<Arc<AppState>>,
    Path((reference, table, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let here = format!(
        "/accounts/{}/data/{}/{}",
        encode(&reference),
        encode(&table),
        encode(&id)
    );
    let (session, record) = match connection(&state, &headers, &reference, &here).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let object = match objects::get(&state.engine, &record.connection, &table, &id).await {
        Ok(object) => object,
        Err(error) => return error_page(&session, &error),
    };
    let stripe = stripe_link(&record, &object);
    let body = html! {
        (tabs(&record, "data"))
        h1 { code { (id) } }
        p {
            a href=(format!("{}/data/{table}", base(&record))) { "All " (table) }
            @if let Some(link) = &stripe { " · " a href=(link) target="_blank" rel="noopener noreferrer" { "Open in Stripe's dashboard" } }
        }
        pre.json { code { (linked_json(&record, &object, &id)) } }
    };
    respond(StatusCode::OK, shell(&session, &id, "accounts", body))
}

/// The object in Stripe's dashboard (`/test/` for test mode), where Stripe has a page for it.
fn stripe_link(record: &AccountRecord, object: &Value) -> Option<String> {
    let id = object["id"].as_str()?;
    let section = match object["object"].as_str()? {
        "customer" => "customers",
        "subscription" => "subscriptions",
        "invoice" => "invoices",
        "payment_intent" | "charge" => "payments",
        "product" => "products",
        "price" => "prices",
        "coupon" => "coupons",
        "payout" => "payouts",
        "dispute" => "disputes",
        "refund" => "refunds",
        "balance_transaction" => "balance/history",
        _ => return None,
    };
    let mode = if record.connection.livemode {
        ""
    } else {
        "test/"
    };
    Some(format!("https://dashboard.stripe.com/{mode}{section}/{id}"))
}

/// The object as indented JSON, with every id of a mirrored object a link to its page here.
fn linked_json(record: &AccountRecord, object: &Value, own_id: &str) -> Markup {
    let text = serde_json::to_string_pretty(object).unwrap_or_default();
    let mut out = String::with_capacity(text.len() * 2);
    let mut rest = text.as_str();
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let inner = &after[..end];
        out.push_str(&maud::html! { (rest[..start]) }.into_string());
        let target = (inner != own_id)
            .then(|| sm_engine::catalog::table_of_id(inner))
            .flatten()
            .map(|table| format!("{}/data/{table}/{}", base(record), encode(inner)));
        match target {
            Some(href) => {
                out.push_str(&html! { "\"" a href=(href) { (inner) } "\"" }.into_string())
            }
            None => out.push_str(&html! { "\"" (inner) "\"" }.into_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(&html! { (rest) }.into_string());
    PreEscaped(out)
}

/// The SQL box: a query, its answer as a table, and the same answer as CSV.
fn sql_page(
    session: &Session,
    sql: &str,
    answer: Option<Result<sm_warehouse::QueryResult, EngineError>>,
) -> Markup {
    shell(
        session,
        "SQL",
        "sql",
        html! {
            h1 { "SQL" }
            p { "One read-only statement over the mirror's tables, events, runs and accounts (at most 10,000 rows and 10 s). Each row has " code { "account_id" } " and " code { "livemode" } "." }
            form method="post" action="/sql" {
                (csrf(session))
                label for="sql" { "Query" }
                textarea #sql name="sql" rows="5" spellcheck="false" { (sql) }
                button.primary type="submit" { "Run" }
                " "
                button type="submit" name="format" value="csv" { "Download CSV" }
            }
            @match answer {
                None => {}
                Some(Err(error)) => {
                    @let shown = crate::shown_error(&error);
                    (error_box(&shown.0, shown.1.as_deref()))
                }
                Some(Ok((columns, rows))) => {
                    p.muted { (count(rows.len() as u64)) " rows" }
                    div.table-wrap {
                        table {
                            caption.visually-hidden { "The query's answer" }
                            thead { tr { @for column in &columns { th scope="col" { (column) } } } }
                            tbody {
                                @for row in rows.iter().take(1000) {
                                    tr { @for value in row { td { @match value { Some(v) => (v), None => span.muted { "NULL" } } } } }
                                }
                            }
                        }
                    }
                    @if rows.len() > 1000 { p.muted { "The first 1,000 rows are shown; Download CSV has them all." } }
                }
            }
        },
    )
}

const EXAMPLE_SQL: &str = "SELECT status, count(*) FROM subscriptions GROUP BY status";

pub async fn sql_form(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/sql").await {
        Ok(session) => respond(StatusCode::OK, sql_page(&session, EXAMPLE_SQL, None)),
        Err(to_signin) => to_signin,
    }
}

pub async fn sql_run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match posted(&state, &headers, &body, "/sql", false).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let sql = form.get("sql").unwrap_or_default().to_owned();
    let answer = query::text(&state.engine, &sql).await;
    if form.get("format") == Some("csv")
        && let Ok((columns, rows)) = &answer
    {
        let mut csv = String::new();
        let line = |values: Vec<&str>| {
            values
                .iter()
                .map(|v| {
                    if v.contains([',', '"', '\n', '\r']) {
                        format!("\"{}\"", v.replace('"', "\"\""))
                    } else {
                        (*v).to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
                + "\r\n"
        };
        csv.push_str(&line(columns.iter().map(String::as_str).collect()));
        for row in rows {
            csv.push_str(&line(
                row.iter().map(|v| v.as_deref().unwrap_or("")).collect(),
            ));
        }
        return (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"stripe-mirror-query.csv\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            csv,
        )
            .into_response();
    }
    respond(StatusCode::OK, sql_page(&session, &sql, Some(answer)))
}
