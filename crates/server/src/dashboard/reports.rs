//! Revenue reports in the dashboard: `/reports` lists the connections to report on; a
//! connection's Reports tab shows the headline per currency, a chart of the report's main
//! figure (SVG drawn here, no script), the table, and a CSV download of what is shown. The
//! figures come from `sm_engine::ops::reports`, as the CLI's and the API's do.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;
use sm_engine::ops::reports::{self, Report, ReportKind, ReportTable};

use super::data::{base, connection, tabs};
use super::layout::{error_box, shell};
use super::{encode, html as respond, signed_in};
use crate::AppState;

/// `/reports`: every connection, each with a link to its reports.
pub async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers, "/reports").await {
        Ok(session) => session,
        Err(to_signin) => return to_signin,
    };
    let accounts = state.engine.store_read(|store| store.accounts()).await;
    let body = html! {
        h1 { "Reports" }
        p.hint { "MRR and its movements, churn, net revenue and failed payments, computed from each mirror by Stripe's published rules." }
        @match &accounts {
            Err(error) => {
                @let shown = crate::shown_error(error);
                (error_box(&shown.0, shown.1.as_deref()))
            }
            Ok(list) if list.is_empty() => {
                p { "No connection yet. " a href="/accounts/new" { "Connect a Stripe account" } " to see its revenue here." }
            }
            Ok(list) => {
                ul.report-links {
                    @for account in list {
                        li {
                            a href=(format!("/accounts/{}/reports", encode(&account.connection.label()))) { (account.name) }
                            " " span.muted { (account.connection.label()) }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, shell(&session, "Reports", "reports", body))
}

/// `/accounts/{connection}/reports[/{report}]`: one report, as a page or (`format=csv`) a file.
pub async fn page(
    State(state): State<Arc<AppState>>,
    Path(path): Path<Vec<(String, String)>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let value = |name: &str| path.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let reference = value("connection").unwrap_or_default();
    let kind_name = value("report").unwrap_or_else(|| "summary".into());
    let raw = raw.unwrap_or_default();
    let here = format!(
        "/accounts/{}/reports/{}?{raw}",
        encode(&reference),
        encode(&kind_name)
    );
    let (session, record) = match connection(&state, &headers, &reference, &here).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let asked = ReportKind::parse(&kind_name).and_then(|kind| {
        let (query, csv) = crate::api::reports::report_query(&raw)?;
        let mut options = query.options(sm_engine::now())?;
        options.only = Some(kind);
        Ok((kind, query, options, csv))
    });
    let (kind, query, outcome, csv) = match asked {
        Ok((kind, query, options, csv)) => {
            let report = reports::report(&state.engine, &record.connection.label(), options).await;
            (kind, query, report, csv)
        }
        Err(error) => (ReportKind::Summary, Default::default(), Err(error), false),
    };
    if csv && let Ok(report) = &outcome {
        return crate::api::reports::csv_download(report, kind);
    }
    let here_base = format!("{}/reports", base(&record));
    let body = html! {
        (tabs(&record, "reports"))
        h1 { "Revenue of " (record.name) }
        nav.tabs.sub aria-label="Reports" {
            @for other in ReportKind::ALL {
                @let href = format!("{here_base}/{}?{raw}", other.name());
                @if other == kind {
                    a href=(href) aria-current="page" { (title(other)) }
                } @else {
                    a href=(href) { (title(other)) }
                }
            }
        }
        form.filter method="get" action=(format!("{here_base}/{}", kind.name())) {
            div {
                label for="from" { "From" }
                input #from type="date" name="from" value=(query.from.clone().unwrap_or_default());
            }
            div {
                label for="to" { "To " span.muted { "(the day after the last)" } }
                input #to type="date" name="to" value=(query.to.clone().unwrap_or_default());
            }
            div {
                label for="interval" { "By" }
                select #interval name="interval" {
                    @for interval in ["month", "week", "day"] {
                        option value=(interval) selected[query.interval.as_deref().unwrap_or("month") == interval] { (interval) }
                    }
                }
            }
            div {
                label for="currency" { "Currency " span.muted { "(all if empty)" } }
                input #currency type="text" name="currency" size="4" value=(query.currency.clone().unwrap_or_default()) placeholder="usd";
            }
            div {
                label for="discount_mode" { "Coupons that lower MRR" }
                select #discount_mode name="discount_mode" {
                    @for (mode, words) in [("forever_only", "forever only (Stripe)"), ("recurring", "forever and repeating"), ("all", "all")] {
                        option value=(mode) selected[query.discount_mode.as_deref().unwrap_or("forever_only") == mode] { (words) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        @match &outcome {
            Err(error) => {
                @let shown = crate::shown_error(error);
                (error_box(&shown.0, shown.1.as_deref()))
            }
            Ok(report) => {
                @let table = report.table(kind);
                @if kind == ReportKind::Summary { (headline(report)) }
                @if let Some(column) = table.chart_column { (chart(&table, column)) }
                (table_markup(&table))
                p {
                    a.button href=(format!("{here_base}/{}?{}{}format=csv", kind.name(), raw, if raw.is_empty() { "" } else { "&" })) download { "Download CSV" }
                }
                @for note in &report.notes { p.hint { "Note: " (note) "." } }
            }
        }
    };
    respond(
        StatusCode::OK,
        shell(
            &session,
            &format!("Revenue of {}", record.name),
            "reports",
            body,
        ),
    )
}

fn title(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::Summary => "Summary",
        ReportKind::Mrr => "MRR",
        ReportKind::Movements => "Movements",
        ReportKind::Churn => "Churn",
        ReportKind::Revenue => "Net revenue",
        ReportKind::FailedPayments => "Failed payments",
    }
}

/// Cards with the current figures per currency.
fn headline(report: &Report) -> Markup {
    let headline = report.headline();
    html! {
        div.cards.figures {
            @for (currency, figures) in headline.as_object().into_iter().flatten() {
                @for (label, field) in [("MRR", "mrr_formatted"), ("ARR", "arr_formatted"), ("Net revenue in the range", "net_revenue_formatted")] {
                    div.card.figure {
                        p.muted { (label) " · " (currency.to_uppercase()) }
                        p.big { (figures[field].as_str().unwrap_or_default()) }
                    }
                }
                div.card.figure {
                    p.muted { "Subscribers · " (currency.to_uppercase()) }
                    p.big { (figures["subscribers"]) }
                }
            }
        }
    }
}

fn table_markup(table: &ReportTable) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr { @for column in &table.columns { th scope="col" { (column.replace('_', " ")) } } } }
                tbody {
                    @for row in &table.rows {
                        tr { @for (n, cell) in row.iter().enumerate() {
                            @if n < 2 { td { (cell.text) } } @else { td.num { (cell.text) } }
                        } }
                    }
                }
            }
        }
    }
}

/// A bar per period of `column`, drawn as SVG (one chart per currency in the table).
fn chart(table: &ReportTable, column: usize) -> Markup {
    let mut currencies: Vec<&str> = table.rows.iter().map(|r| r[1].text.as_str()).collect();
    currencies.dedup();
    let (width, height, left, bottom) = (720.0_f64, 200.0_f64, 90.0_f64, 24.0_f64);
    html! {
        @for currency in currencies {
            @let rows: Vec<&Vec<reports::Cell>> = table.rows.iter().filter(|r| r[1].text == currency).collect();
            @let values: Vec<f64> = rows.iter().map(|r| r[column].number.as_ref().and_then(Value::as_f64).unwrap_or(0.0)).collect();
            @let top = values.iter().fold(0.0_f64, |a, b| a.max(*b));
            @let low = values.iter().fold(0.0_f64, |a, b| a.min(*b));
            @let span = (top - low).max(1.0);
            @let y = |v: f64| 8.0 + (top - v) / span * (height - bottom - 8.0);
            @let slot = (width - left) / values.len().max(1) as f64;
            // Months read as YYYY-MM; labels are spaced so that they never overlap.
            @let monthly = rows.iter().all(|r| r[0].text.ends_with("-01"));
            @let label_of = |r: &reports::Cell| if monthly { r.text[..7.min(r.text.len())].to_owned() } else { r.text.clone() };
            @let label_width = if monthly { 7.0 } else { 10.0 } * 6.5;
            @let every = ((label_width / slot).ceil() as usize).max(1);
            @let label = format!("{} by period, {}", table.columns[column].replace('_', " "), currency.to_uppercase());
            figure.chart {
                svg viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(label) {
                    title { (label) }
                    line x1=(left) x2=(width) y1=(y(0.0)) y2=(y(0.0)) stroke="#c9c6d6" {}
                    text x=(left - 6.0) y=(y(top) + 4.0) text-anchor="end" font-size="11" fill="#6b6880" {
                        (rows.iter().zip(&values).find(|(_, v)| **v == top).map(|(r, _)| r[column].text.clone()).unwrap_or_default())
                    }
                    text x=(left - 6.0) y=(y(0.0) + 4.0) text-anchor="end" font-size="11" fill="#6b6880" { "0" }
                    @for (n, (row, value)) in rows.iter().zip(&values).enumerate() {
                        @let x = left + n as f64 * slot + slot * 0.15;
                        @let (y0, y1) = (y(value.max(0.0)), y(value.min(0.0)));
                        rect x=(format!("{x:.1}")) y=(format!("{y0:.1}")) width=(format!("{:.1}", slot * 0.7)) height=(format!("{:.1}", (y1 - y0).max(0.5)))
                            fill=(if *value < 0.0 { "#c0392b" } else { "#635bff" }) {
                            title { (row[0].text) ": " (row[column].text) }
                        }
                        @if n % every == 0 {
                            text x=(format!("{:.1}", x + slot * 0.35)) y=(height - 6.0) text-anchor="middle" font-size="10" fill="#6b6880" { (label_of(&row[0])) }
                        }
                    }
                }
            }
        }
    }
}
