//! Connections: everything a user does to a connected account, and how it is shown.

use serde::Serialize;
use std::collections::HashMap;

use sm_warehouse::{Connection, RunRecord};

pub use crate::connect::{
    AccountSummary, ConnectOptions, ConnectOutcome, KeyPolicy, PermissionReport, RemoveOutcome,
    VersionChange, connect, key_link, permissions_json, remove, set_api_version,
    set_webhook_secret, update_key,
};
use crate::{Engine, EngineError, now};

/// Every connection with its summary: last successful sync, real-time state, webhook health,
/// the account's own API version, and its status in words.
pub async fn list(engine: &Engine) -> Result<Vec<AccountSummary>, EngineError> {
    // Every connection's facts in one trip to the store's thread (a hundred trips cost more
    // than the reads).
    let gathered = engine
        .store_call(|store| {
            let records = store.accounts()?;
            // Each connection's newest run and state, for all of them in one read each; the
            // newest event's time is one index probe per connection.
            let mut latest: HashMap<Connection, RunRecord> = store
                .latest_runs()?
                .into_iter()
                .map(|run| (run.connection.clone(), run))
                .collect();
            let mut states: HashMap<(Connection, String), String> = store
                .states_of_all(&[
                    "realtime",
                    crate::WEBHOOKS_REFUSED,
                    crate::ACCOUNT_API_VERSION,
                    crate::SCHEDULE_SECS,
                    crate::ROWS_MIRRORED,
                    crate::LAST_SUCCESS_AT,
                ])?
                .into_iter()
                .map(|(connection, key, value)| ((connection, key), value))
                .collect();
            let mut gathered = Vec::with_capacity(records.len());
            for record in records {
                let connection = &record.connection;
                let mut state = |key: &str| states.remove(&(connection.clone(), key.to_owned()));
                let latest = latest.remove(connection);
                // The last success is kept as state at each sync's end; a mirror from before
                // that has it only in its history.
                let last_success = match state(crate::LAST_SUCCESS_AT).and_then(|s| s.parse().ok())
                {
                    Some(at) => Some(at),
                    None if latest.is_some() => store
                        .runs(connection, 20)?
                        .iter()
                        .find(|r| r.status == "succeeded" || r.status == "partial")
                        .and_then(|r| r.ended_at),
                    None => None,
                };
                let facts = Facts {
                    last_success,
                    running_percent: latest.as_ref().filter(|r| r.status == "running").map(|r| {
                        r.progress
                            .as_ref()
                            .and_then(|p| p["percent"].as_u64())
                            .unwrap_or(0)
                    }),
                    realtime: state("realtime"),
                    refused: state(crate::WEBHOOKS_REFUSED),
                    account_version: state(crate::ACCOUNT_API_VERSION),
                    schedule_secs: state(crate::SCHEDULE_SECS).and_then(|s| s.parse().ok()),
                    rows: state(crate::ROWS_MIRRORED).and_then(|s| s.parse().ok()),
                    last_event_at: store.latest_event_at(connection)?,
                };
                gathered.push((record, facts));
            }
            Ok(gathered)
        })
        .await?;
    let mut summaries = Vec::with_capacity(gathered.len());
    for (record, facts) in gathered {
        let mut summary = AccountSummary::of(&record, facts.last_success);
        summary.realtime = facts.realtime;
        summary.account_api_version = facts.account_version;
        summary.webhooks_refused = facts.refused.and_then(|value| {
            let (count, since) = value.split_once(' ')?;
            Some(refused_words(count.parse().ok()?, since.parse().ok()?))
        });
        summary.last_event_at = facts.last_event_at;
        summary.rows = facts.rows;
        summary.status_words = status_words(&summary);
        let (headline, fix) = headline(&summary, facts.running_percent, facts.schedule_secs, now());
        summary.headline = headline;
        summary.fix = fix;
        summary.notice = notice(&summary, facts.schedule_secs);
        summaries.push(summary);
    }
    Ok(summaries)
}

/// What `list` reads about a connection besides its record.
struct Facts {
    last_success: Option<i64>,
    running_percent: Option<u64>,
    realtime: Option<String>,
    refused: Option<String>,
    account_version: Option<String>,
    schedule_secs: Option<i64>,
    rows: Option<u64>,
    last_event_at: Option<i64>,
}

/// The status in a few words and what to do about it. A failing connection comes first (it
/// needs a person), then a sync under way, then freshness against `serve`'s schedule.
fn headline(
    s: &AccountSummary,
    running_percent: Option<u64>,
    schedule_secs: Option<i64>,
    now: i64,
) -> (String, Option<String>) {
    if s.status == "failing" {
        let message = s
            .status_message
            .as_deref()
            .unwrap_or("the last sync failed");
        let (words, fix) = failure_words(message);
        if fix == SYNC_NOW
            && let Some(percent) = running_percent
        {
            return (format!("Syncing {percent}%"), None);
        }
        return (words.into(), Some(fix.into()));
    }
    if let Some(percent) = running_percent {
        return (format!("Syncing {percent}%"), None);
    }
    match s.last_sync {
        None => ("Not synced yet".into(), Some(SYNC_NOW.into())),
        Some(last) if schedule_secs.is_some_and(|every| now - last > 2 * every + 60) => {
            ("Delayed".into(), Some(SYNC_NOW.into()))
        }
        Some(_) => ("Up to date".into(), None),
    }
}

/// The fix that updates the key, and the one that syncs again.
pub const UPDATE_KEY: &str = "Update API key";
pub const SYNC_NOW: &str = "Sync now";

/// A failed sync's message as a status in words, and what to do: a key Stripe refuses or one
/// lacking a permission needs a person to update the key; anything else, another sync.
pub fn failure_words(message: &str) -> (&'static str, &'static str) {
    let lower = message.to_ascii_lowercase();
    if lower.contains("api key is invalid")
        || lower.contains("expired")
        || lower.contains("revoked")
    {
        ("Action required: API key is invalid", UPDATE_KEY)
    } else if lower.contains("rak_") || lower.contains("permission") {
        ("Action required: the key lacks a permission", UPDATE_KEY)
    } else {
        ("Sync failed", SYNC_NOW)
    }
}

/// A limit worth a line on the card: real time off (and why), refused deliveries.
fn notice(s: &AccountSummary, schedule_secs: Option<i64>) -> Option<String> {
    let every = schedule_secs.map(|secs| match secs {
        secs if secs % 60 == 0 => format!("polling every {} min", secs / 60),
        secs => format!("polling every {secs} s"),
    });
    let mut parts = Vec::new();
    if let Some(realtime) = s
        .realtime
        .as_deref()
        .filter(|r| r.starts_with("real-time off"))
    {
        parts.push(if realtime.contains("needs rak_webhook_write") {
            format!(
                "Missing rak_webhook_write: real-time off, {}",
                every.as_deref().unwrap_or("polling")
            )
        } else {
            realtime.to_owned()
        });
    }
    if let Some(refused) = &s.webhooks_refused {
        parts.push(refused.clone());
    }
    (!parts.is_empty()).then(|| parts.join("; "))
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

/// The dashboard link that pre-fills a restricted key for some features, and the permissions
/// it asks for spelled out.
#[derive(Debug, Clone, Serialize)]
pub struct KeyLink {
    pub url: String,
    pub permissions: Vec<&'static str>,
    pub mode: &'static str,
    pub features: Vec<String>,
}

/// The key link for `features` by name (`mirror`, `webhooks`, `agent-writes`) in `mode`.
pub fn key_link_for(mode: sm_stripe::Mode, features: &[String]) -> Result<KeyLink, EngineError> {
    let mut chosen = Vec::new();
    for name in features {
        chosen.push(crate::catalog::Feature::parse(name.trim()).ok_or_else(|| {
            EngineError::invalid(format!(
                "unknown feature `{name}`: choose from mirror, webhooks, agent-writes"
            ))
        })?);
    }
    if chosen.is_empty() {
        return Err(EngineError::invalid(
            "name at least one feature: mirror, webhooks, agent-writes",
        ));
    }
    let (url, permissions) = key_link(mode, &chosen);
    Ok(KeyLink {
        url,
        permissions,
        mode: mode.as_str(),
        features: features.iter().map(|f| f.trim().to_owned()).collect(),
    })
}

/// The longest logo URL accepted; a data URL's image is at most about 36 KiB.
pub const LOGO_MAX_CHARS: usize = 48 * 1024;

/// Checks a logo: an `https://` URL, or a `data:image/…;base64,` URL of a small PNG, JPEG,
/// GIF, WebP or SVG image (shown in an `<img>`, where an SVG's scripts do not run).
pub fn check_logo(logo: &str) -> Result<(), EngineError> {
    let bad = |why: &str| {
        EngineError::invalid(format!("the logo {why}")).hint(
            "give an https:// URL of an image, or a data:image/png;base64,… URL under 48 KiB; null in the API, `none` on the command line, removes it",
        )
    };
    if logo.len() > LOGO_MAX_CHARS {
        return Err(bad(&format!(
            "is {} characters long, more than {LOGO_MAX_CHARS}",
            logo.len()
        )));
    }
    if logo
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
    {
        return Err(bad("contains spaces, quotes or angle brackets"));
    }
    if let Some(rest) = logo.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.contains('@') {
            return Err(bad("has no host (or carries a user name)"));
        }
        return Ok(());
    }
    if let Some(rest) = logo.strip_prefix("data:image/") {
        let (kind, data) = rest
            .split_once(";base64,")
            .ok_or_else(|| bad("is a data URL that is not base64"))?;
        if !["png", "jpeg", "gif", "webp", "svg+xml"].contains(&kind) {
            return Err(bad(&format!(
                "is an image/{kind}, not PNG, JPEG, GIF, WebP or SVG"
            )));
        }
        if data.is_empty()
            || !data
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Err(bad("is a data URL whose base64 is not valid"));
        }
        return Ok(());
    }
    Err(bad("must be an https:// URL or a data:image/… URL"))
}

/// What a logo change did.
#[derive(Debug, Clone, Serialize)]
pub struct LogoChange {
    pub account: String,
    pub name: String,
    /// What is shown now: the chosen logo, else Stripe's icon, else none (initials).
    pub logo_url: Option<String>,
}

/// Sets the logo shown for a connection (`None`: back to Stripe's icon, or initials).
pub async fn set_logo(
    engine: &Engine,
    connection: &Connection,
    logo: Option<String>,
) -> Result<LogoChange, EngineError> {
    let logo = logo.map(|l| l.trim().to_owned());
    if let Some(logo) = &logo {
        check_logo(logo)?;
    }
    let mut record = engine.account(connection).await?;
    record.logo_url = logo;
    record.updated_at = now();
    let shown = record.logo_url.clone().or_else(|| record.icon_url.clone());
    let name = record.name.clone();
    engine
        .store_call(move |store| store.update_account(&record))
        .await?;
    Ok(LogoChange {
        account: connection.label(),
        name,
        logo_url: shown,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(status: &str, message: Option<&str>, last_sync: Option<i64>) -> AccountSummary {
        let record = sm_warehouse::AccountRecord {
            connection: Connection::new("acct_1Words", false),
            name: "Words".into(),
            stripe_name: None,
            icon_url: None,
            logo_url: None,
            key_kind: "restricted".into(),
            key_masked: "rk_test_…a1b2".into(),
            key_sealed: Vec::new(),
            permissions: serde_json::Value::Null,
            status: status.into(),
            status_message: message.map(str::to_owned),
            start_date: None,
            webhook_endpoint_id: None,
            webhook_secret_sealed: None,
            api_base: None,
            api_version: None,
            created_at: 0,
            updated_at: 0,
        };
        AccountSummary::of(&record, last_sync)
    }

    #[test]
    fn the_status_in_a_few_words() {
        let now = 1_000_000;
        let ok = summary("ok", None, Some(now - 60));
        assert_eq!(
            headline(&ok, None, Some(300), now),
            ("Up to date".into(), None)
        );
        assert_eq!(headline(&ok, Some(41), Some(300), now).0, "Syncing 41%");
        let late = summary("ok", None, Some(now - 700));
        assert_eq!(
            headline(&late, None, Some(300), now),
            ("Delayed".into(), Some("Sync now".into()))
        );
        // Without serve's schedule there is nothing to be late against.
        assert_eq!(headline(&late, None, None, now).0, "Up to date");
        let never = summary("connected", None, None);
        assert_eq!(headline(&never, None, None, now).0, "Not synced yet");
        let invalid = summary("failing", Some("API key is invalid"), Some(now - 60));
        assert_eq!(
            headline(&invalid, None, Some(300), now),
            (
                "Action required: API key is invalid".into(),
                Some("Update API key".into())
            )
        );
        let failed = summary("failing", Some("Stripe answered 500"), Some(now - 60));
        assert_eq!(headline(&failed, None, None, now).0, "Sync failed");

        let mut polling = summary("ok", None, Some(now));
        polling.realtime =
            Some("real-time off: needs rak_webhook_write — polling every 300 s".into());
        assert_eq!(
            notice(&polling, Some(300)).as_deref(),
            Some("Missing rak_webhook_write: real-time off, polling every 5 min")
        );
        polling.realtime = Some("real-time on (endpoint we_1)".into());
        assert_eq!(notice(&polling, Some(300)), None);
    }
}
