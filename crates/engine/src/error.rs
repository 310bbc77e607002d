//! The engine's errors, and the one code table that maps each kind to a CLI exit code and an HTTP
//! status, so that the command line, the API and agent tools answer alike.

use serde::Serialize;
use sm_stripe::error::{AuthFailure, ErrorKind};
use sm_stripe::{ClientError, KeyError};
use sm_warehouse::StoreError;

use crate::vault::VaultError;

/// What kind of failure, in the words every edge maps from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The user's input is wrong (a malformed key, a mode mismatch, a bad date).
    InvalidInput,
    /// No such account or object.
    NotFound,
    /// Stripe refused the key.
    InvalidKey,
    /// Stripe says the key expired.
    KeyExpired,
    /// The key lacks a permission.
    PermissionMissing,
    /// It exists already (a second connection of the same account and mode).
    Conflict,
    /// Stripe could not be reached or answered with something unusable.
    Upstream,
    /// The database failed.
    Database,
    /// A secret could not be sealed or opened.
    Vault,
    /// Another process is running the mirror (a sync, `serve`).
    Busy,
    /// An API request without a valid token.
    Unauthorized,
    /// An API token that may not do this (a read-only token writing).
    Forbidden,
    /// Something of this machine failed: a port taken, a file unreadable.
    LocalIo,
    /// Stopped by Ctrl-C (SIGINT) before it ended.
    Interrupted,
    /// Stopped by SIGTERM before it ended.
    Terminated,
    /// A webhook delivery's signature is missing, malformed, expired or matches no secret.
    InvalidSignature,
    /// A webhook delivery seen before, signed payload for signed payload.
    Replayed,
    /// A webhook delivery whose body is not a Stripe event, or whose mode is not the endpoint's.
    NotAnEvent,
    /// A webhook delivery for a connection that has no signing secret.
    NoSecret,
    /// A bug.
    Internal,
    /// A user's SQL reaches past the boundary: a bookkeeping table, a function or statement
    /// that is not a read of the mirror.
    QueryRefused,
    /// A user's SQL reached a limit: time, memory, rows or bytes.
    QueryLimit,
}

impl ErrorCode {
    /// The one table: (code name, exit code, HTTP status).
    pub fn row(self) -> (&'static str, u8, u16) {
        match self {
            ErrorCode::InvalidInput => ("invalid_input", 2, 400),
            ErrorCode::NotFound => ("not_found", 3, 404),
            ErrorCode::InvalidKey => ("invalid_key", 4, 401),
            ErrorCode::KeyExpired => ("key_expired", 4, 401),
            ErrorCode::PermissionMissing => ("permission_missing", 5, 403),
            ErrorCode::Conflict => ("conflict", 6, 409),
            ErrorCode::Upstream => ("upstream", 7, 502),
            ErrorCode::Database => ("database", 8, 500),
            ErrorCode::Vault => ("vault", 9, 500),
            ErrorCode::Busy => ("busy", 10, 409),
            ErrorCode::Unauthorized => ("unauthorized", 4, 401),
            ErrorCode::Forbidden => ("forbidden", 5, 403),
            ErrorCode::LocalIo => ("io", 74, 500),
            ErrorCode::Interrupted => ("interrupted", 130, 503),
            ErrorCode::Terminated => ("terminated", 143, 503),
            ErrorCode::InvalidSignature => ("invalid_signature", 2, 400),
            ErrorCode::Replayed => ("replayed", 6, 409),
            ErrorCode::NotAnEvent => ("not_an_event", 2, 400),
            ErrorCode::NoSecret => ("no_secret", 2, 400),
            ErrorCode::Internal => ("internal", 70, 500),
            ErrorCode::QueryRefused => ("query_refused", 5, 403),
            ErrorCode::QueryLimit => ("query_limit", 2, 422),
        }
    }
    pub fn name(self) -> &'static str {
        self.row().0
    }
    pub fn exit_code(self) -> u8 {
        self.row().1
    }
    pub fn http_status(self) -> u16 {
        self.row().2
    }
}

/// A failure with what happened and what to do about it.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct EngineError {
    pub code: ErrorCode,
    /// What happened, in words; never a secret.
    pub message: String,
    /// What to do, when there is something to do.
    pub hint: Option<String>,
    /// The missing `rak_…` permission, for permission errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError {
            code,
            message: message.into(),
            hint: None,
            permission: None,
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        EngineError::new(ErrorCode::InvalidInput, message)
    }
}

impl From<ClientError> for EngineError {
    fn from(error: ClientError) -> Self {
        let text = error.to_string();
        match &error {
            ClientError::Api(api) => match &api.kind {
                ErrorKind::Authentication(AuthFailure::ExpiredKey) => {
                    EngineError::new(ErrorCode::KeyExpired, "API key has expired").hint("roll a new key in the Stripe dashboard and run `stripe-mirror update-key ACCOUNT`")
                }
                ErrorKind::Authentication(AuthFailure::PublishableKey) => EngineError::new(ErrorCode::InvalidKey, "a publishable key cannot read data").hint("use a restricted key (rk_…) or a secret key (sk_…)"),
                ErrorKind::Authentication(_) => EngineError::new(ErrorCode::InvalidKey, "API key is invalid").hint("check the key in the Stripe dashboard (it may have been revoked or rolled) and run `stripe-mirror update-key ACCOUNT`"),
                ErrorKind::PermissionDenied { permission, .. } => {
                    let name = permission.clone().unwrap_or_else(|| "a permission this request needs".into());
                    EngineError { code: ErrorCode::PermissionMissing, message: format!("missing {name}"), hint: Some("add it to the restricted key in the Stripe dashboard (`stripe-mirror key-link` prints a link)".into()), permission: permission.clone() }
                }
                ErrorKind::NotFound { .. } => EngineError::new(ErrorCode::NotFound, api.message.clone().unwrap_or_else(|| "Stripe answered 404 Not Found".into())),
                ErrorKind::RateLimited { .. } => EngineError::new(ErrorCode::Upstream, "Stripe kept answering 429 (rate limited) after every retry").hint("lower the budget share or try again later"),
                _ => EngineError::new(ErrorCode::Upstream, format!("Stripe answered HTTP {}: {}", api.status, api.message.as_deref().unwrap_or("(no message)"))),
            },
            _ => EngineError::new(ErrorCode::Upstream, text),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Duplicate(what) => {
                EngineError::new(ErrorCode::Conflict, format!("already exists: {what}"))
            }
            StoreError::BadQuery(message) => EngineError::new(
                ErrorCode::InvalidInput,
                format!("the query failed: {message}"),
            )
            .hint(query_hint(&message)),
            StoreError::QueryRefused(message) => EngineError::new(
                ErrorCode::QueryRefused,
                format!("the query was refused: {message}"),
            )
            .hint("the SQL here reads the mirror's tables (`stripe-mirror tables`), events, runs and accounts, with SELECT only"),
            StoreError::QueryLimit(message) => EngineError::new(ErrorCode::QueryLimit, message),
            StoreError::Fenced(message) => EngineError::new(ErrorCode::Busy, message).hint(
                "another worker took this connection over when this one's lease ran out (it was paused or cut off); the new holder goes on from what was committed",
            ),
            other => EngineError::new(ErrorCode::Database, other.to_string()),
        }
    }
}

/// What to do about a query the database refused: the name it did not know and the nearest
/// known one, and the tables there are.
fn query_hint(message: &str) -> String {
    use sm_warehouse::schema::TABLES;
    const CORE: &[&str] = &[
        "account_id",
        "id",
        "livemode",
        "created",
        "deleted",
        "data",
        "version",
        "synced_at",
        "parent_id",
        "type",
        "object_id",
        "received_at",
    ];
    let quoted = |after: &str| {
        message
            .split_once(after)
            .map(|(_, rest)| rest.trim_start_matches([' ', '"']))
            .and_then(|rest| rest.split(['"', ' ', ')', ',']).next())
            .map(str::to_owned)
    };
    // SQLite: "no such table: X", "no such column: X"; Postgres: relation "X" / column "X" does not exist.
    let table = quoted("no such table:").or_else(|| {
        message
            .contains("does not exist")
            .then(|| quoted("relation"))
            .flatten()
    });
    let column = quoted("no such column:").or_else(|| {
        message
            .contains("does not exist")
            .then(|| quoted("column"))
            .flatten()
    });
    let tables: Vec<&str> = TABLES
        .iter()
        .map(|t| t.name)
        .chain(["events", "runs"])
        .collect();
    let columns: Vec<&str> = CORE
        .iter()
        .copied()
        .chain(TABLES.iter().flat_map(|t| t.columns.iter().map(|c| c.name)))
        .collect();
    let mut hint = String::new();
    let nearest = |unknown: &str, known: &[&str]| {
        let unknown = unknown
            .rsplit('.')
            .next()
            .unwrap_or(unknown)
            .to_ascii_lowercase();
        known
            .iter()
            .map(|k| (edit_distance(&unknown, k), *k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .min()
            .map(|(_, k)| k.to_owned())
    };
    if let Some(suggestion) = table.as_deref().and_then(|t| nearest(t, &tables)) {
        hint.push_str(&format!("did you mean the table `{suggestion}`? "));
    } else if let Some(suggestion) = column.as_deref().and_then(|c| nearest(c, &columns)) {
        hint.push_str(&format!("did you mean the column `{suggestion}`? "));
    }
    hint.push_str(&format!(
        "The tables: {}. `stripe-mirror tables` lists their columns; other fields are in `data` (JSON).",
        tables.join(", ")
    ));
    hint
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

impl From<VaultError> for EngineError {
    fn from(error: VaultError) -> Self {
        EngineError::new(ErrorCode::Vault, error.to_string())
    }
}

impl From<KeyError> for EngineError {
    fn from(error: KeyError) -> Self {
        EngineError::invalid(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_query_says_what_was_meant() {
        let sqlite = EngineError::from(StoreError::BadQuery("no such table: customer".into()));
        assert_eq!(sqlite.code, ErrorCode::InvalidInput);
        let hint = sqlite.hint.unwrap();
        assert!(
            hint.starts_with("did you mean the table `customers`?"),
            "{hint}"
        );
        assert!(hint.contains("subscriptions, subscription_items"), "{hint}");
        let postgres = EngineError::from(StoreError::BadQuery(
            "column \"emial\" does not exist".into(),
        ));
        assert!(
            postgres
                .hint
                .unwrap()
                .starts_with("did you mean the column `email`?"),
            "postgres"
        );
        let syntax = EngineError::from(StoreError::BadQuery("near \"SELEC\": syntax error".into()));
        assert!(syntax.hint.unwrap().starts_with("The tables: "));
    }

    #[test]
    fn every_code_has_a_distinct_name_and_a_nonzero_exit() {
        let all = [
            ErrorCode::InvalidInput,
            ErrorCode::NotFound,
            ErrorCode::InvalidKey,
            ErrorCode::KeyExpired,
            ErrorCode::PermissionMissing,
            ErrorCode::Conflict,
            ErrorCode::Upstream,
            ErrorCode::Database,
            ErrorCode::Vault,
            ErrorCode::Busy,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::LocalIo,
            ErrorCode::Interrupted,
            ErrorCode::Terminated,
            ErrorCode::InvalidSignature,
            ErrorCode::Replayed,
            ErrorCode::NotAnEvent,
            ErrorCode::NoSecret,
            ErrorCode::Internal,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), all.len());
        assert!(
            all.iter()
                .all(|c| c.exit_code() != 0 && c.http_status() >= 400)
        );
    }
}
