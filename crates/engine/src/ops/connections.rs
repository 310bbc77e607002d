//! Connections: everything a user does to a connected account, and how it is shown.

use serde::Serialize;
use sm_warehouse::Connection;

pub use crate::connect::{
    AccountSummary, ConnectOptions, ConnectOutcome, KeyPolicy, PermissionReport, RemoveOutcome,
    VersionChange, connect, key_link, permissions_json, remove, set_api_version,
    set_webhook_secret, update_key,
};
use crate::{Engine, EngineError, now};

/// Every connection with its summary: last successful sync, real-time state, webhook health,
/// the account's own API version, and its status in words.
pub async fn list(engine: &Engine) -> Result<Vec<AccountSummary>, EngineError> {
    let records = engine.store_call(|store| store.accounts()).await?;
    let mut summaries = Vec::with_capacity(records.len());
    for record in records {
        let connection = record.connection.clone();
        let (last, realtime, refused, account_version) = engine
            .store_call(move |store| {
                let last = store
                    .runs(&connection, 20)?
                    .into_iter()
                    .find(|r| r.status == "succeeded" || r.status == "partial")
                    .and_then(|r| r.ended_at);
                Ok((
                    last,
                    store.state(&connection, "realtime")?,
                    store.state(&connection, crate::WEBHOOKS_REFUSED)?,
                    store.state(&connection, crate::ACCOUNT_API_VERSION)?,
                ))
            })
            .await?;
        let mut summary = AccountSummary::of(&record, last);
        summary.realtime = realtime;
        summary.account_api_version = account_version;
        summary.webhooks_refused = refused.and_then(|value| {
            let (count, since) = value.split_once(' ')?;
            Some(refused_words(count.parse().ok()?, since.parse().ok()?))
        });
        summary.status_words = status_words(&summary);
        summaries.push(summary);
    }
    Ok(summaries)
}

/// The words for a run of webhook deliveries refused for their signature.
pub fn refused_words(count: u64, since: i64) -> String {
    format!(
        "webhooks refused: the signing secret does not match — update it ({count} deliveries refused since {})",
        sm_stripe::http_date::format(since)
    )
}

/// A connection's status in one sentence: its state and why, how changes arrive, webhook
/// health, API versions, and the API it talks to when not Stripe's own.
fn status_words(s: &AccountSummary) -> String {
    let mut words = match &s.status_message {
        Some(message) => format!("{} ({message})", s.status),
        None => s.status.clone(),
    };
    if let Some(realtime) = &s.realtime {
        words.push_str(&format!("; {realtime}"));
    }
    if let Some(refused) = &s.webhooks_refused {
        words.push_str(&format!("; {refused}"));
    }
    if let Some(theirs) = s
        .account_api_version
        .as_ref()
        .filter(|v| **v != s.api_version)
    {
        words.push_str(&format!(
            "; API version {} (the account's default is {theirs}: its events are read again in {})",
            s.api_version, s.api_version
        ));
    }
    if let Some(base) = &s.api_base {
        words.push_str(&format!("; API {base}"));
    }
    words
}

/// What a rename did.
#[derive(Debug, Clone, Serialize)]
pub struct Renamed {
    pub account: String,
    pub old_name: String,
    pub name: String,
}

/// Renames a connection (names are names: see [`crate::check_name`]).
pub async fn rename(
    engine: &Engine,
    connection: &Connection,
    name: &str,
) -> Result<Renamed, EngineError> {
    let name = name.trim().to_owned();
    let mut record = engine.account(connection).await?;
    let others = engine.store_call(|store| store.accounts()).await?;
    crate::check_name(&name, &others, Some(connection))?;
    let old_name = std::mem::replace(&mut record.name, name.clone());
    record.updated_at = now();
    engine
        .store_call(move |store| store.update_account(&record))
        .await?;
    Ok(Renamed {
        account: connection.label(),
        old_name,
        name,
    })
}

/// What a start-date change did, and what the user should do next.
#[derive(Debug, Clone, Serialize)]
pub struct StartDateChange {
    pub account: String,
    pub name: String,
    /// Unix time; `None`: all history.
    pub start_date: Option<i64>,
    /// Whether the mirror now reaches further back than before.
    pub earlier: bool,
    pub advice: &'static str,
}

/// Sets how far back a connection is mirrored (`None`: all history). A date in the future is
/// refused.
pub async fn set_start_date(
    engine: &Engine,
    connection: &Connection,
    start: Option<i64>,
) -> Result<StartDateChange, EngineError> {
    if start.is_some_and(|s| s > now()) {
        return Err(EngineError::invalid("the start date is in the future"));
    }
    let mut record = engine.account(connection).await?;
    let earlier = start.unwrap_or(0) < record.start_date.unwrap_or(0)
        || (start.is_none() && record.start_date.is_some());
    record.start_date = start;
    record.updated_at = now();
    let name = record.name.clone();
    engine
        .store_call(move |store| store.update_account(&record))
        .await?;
    Ok(StartDateChange {
        account: connection.label(),
        name,
        start_date: start,
        earlier,
        advice: if earlier {
            "the next `sync --full` fetches the older history"
        } else {
            "older rows already mirrored stay; `sync --full` re-backfills from the new date"
        },
    })
}
