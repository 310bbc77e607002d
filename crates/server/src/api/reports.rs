//! `GET /api/v1/connections/{connection}/reports/{report}`: a revenue report
//! (`sm_engine::ops::reports`) as JSON, or as CSV with `format=csv`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sm_engine::EngineError;
use sm_engine::ops::reports::{self, ReportKind, ReportQuery};

use super::ApiResult;
use crate::AppState;

/// The parameters a report takes, as the error for an unknown one lists them.
const PARAMETERS: &str = "from, to, interval, currency, time_zone, discount_mode, churn_recognition, delinquency_churn_days, week_factor, days_per_month, net_same_period_new_churn and format";

/// A report's query string as its question; `format` apart (json or csv).
pub(crate) fn report_query(raw: &str) -> Result<(ReportQuery, bool), EngineError> {
    let mut query = ReportQuery::default();
    let mut csv = false;
    for (name, value) in super::form_pairs(raw) {
        // An empty field (a form left blank) is the default.
        if value.is_empty() {
            continue;
        }
        let number = |value: &str| {
            value.parse::<u32>().map_err(|_| {
                EngineError::invalid(format!(
                    "{name} must be a whole number of days, not `{value}`"
                ))
            })
        };
        match name.as_str() {
            "from" => query.from = Some(value),
            "to" => query.to = Some(value),
            "interval" => query.interval = Some(value),
            "currency" => query.currency = Some(value),
            "time_zone" | "utc_offset" => query.time_zone = Some(value),
            "discount_mode" => query.discount_mode = Some(value),
            "churn_recognition" => query.churn_recognition = Some(value),
            "delinquency_churn_days" => query.delinquency_churn_days = Some(number(&value)?),
            "week_factor" => query.week_factor = Some(value),
            "days_per_month" => query.days_per_month = Some(value),
            "net_same_period_new_churn" => {
                query.net_same_period_new_churn = Some(match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(EngineError::invalid(format!(
                            "net_same_period_new_churn must be true or false, not `{other}`"
                        )));
                    }
                })
            }
            "format" => {
                csv = match value.as_str() {
                    "json" => false,
                    "csv" => true,
                    other => {
                        return Err(EngineError::invalid(format!(
                            "format must be json or csv, not `{other}`"
                        )));
                    }
                }
            }
            other => {
                return Err(EngineError::invalid(format!(
                    "reports take {PARAMETERS}, not `{other}`"
                )));
            }
        }
    }
    Ok((query, csv))
}

pub async fn one(
    State(state): State<Arc<AppState>>,
    Path((reference, kind)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let kind = ReportKind::parse(&kind)?;
    let (query, csv) = report_query(raw.as_deref().unwrap_or_default())?;
    let mut options = query.options(sm_engine::now())?;
    options.only = Some(kind);
    let report = reports::report(&state.engine, &reference, options).await?;
    if csv {
        return Ok(csv_download(&report, kind));
    }
    Ok(Json(report.to_json(kind)).into_response())
}

/// A report as a CSV file to save (`acct_…-test-mrr.csv`), never cached.
pub(crate) fn csv_download(report: &reports::Report, kind: ReportKind) -> Response {
    let filename = format!(
        "{}-{}-{}.csv",
        report.account,
        if report.livemode { "live" } else { "test" },
        kind.name()
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        report.table(kind).csv(),
    )
        .into_response()
}
