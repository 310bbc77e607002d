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
