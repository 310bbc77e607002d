//! What the mirror does: the resource catalog, connecting accounts (validate, probe, vault), and
//! keeping each mirror exact. The CLI and the server are thin edges over [`Engine`].

mod apply;
pub mod catalog;
pub mod connect;
pub mod error;
pub mod intake;
pub mod money;
pub mod notify;
mod object;
pub mod ops;
pub mod run_progress;
pub mod runner_lock;
pub mod sync;
pub mod vault;
mod write_behind;

use std::sync::Arc;

use sm_stripe::{ApiKey, Client, ClientConfig, PacerRegistry};
use sm_warehouse::{AccountRecord, Connection, Store, StoreError};

pub use error::{EngineError, ErrorCode};
pub use vault::Vault;

/// Sync-state key of a connection whose webhook deliveries are being refused for their
/// signature (`{count} {since}`): set by `serve`, cleared by an accepted delivery or a new
/// secret.
pub const WEBHOOKS_REFUSED: &str = "webhooks.refused";

/// Sync-state key: how often `serve` syncs the connection (seconds), so that a sync overdue by
/// twice that is shown as delayed.
pub const SCHEDULE_SECS: &str = "serve.schedule_secs";

/// Sync-state key: when the last sync that succeeded (or partly) ended, Unix time; so that a
/// connection's status needs one run read, not a search through its history.
pub const LAST_SUCCESS_AT: &str = "sync.last_success_at";

/// Sync-state key: the rows the mirror holds for the connection, counted at the end of a sync.
pub const ROWS_MIRRORED: &str = "mirror.rows";

/// Sync-state key: per table, the (live, deleted) rows held, as of the end of the last sync
/// (JSON object).
pub const ROWS_BY_TABLE: &str = "mirror.rows_by_table";

/// Sync-state key: the account's default API version, as its newest event shows it.
pub const ACCOUNT_API_VERSION: &str = "stripe.account_api_version";

/// The API version a connection's rows are kept in: the one chosen, else the pinned one.
pub fn mirror_api_version(record: &AccountRecord) -> &str {
    record
        .api_version
        .as_deref()
        .unwrap_or(sm_stripe::API_VERSION)
}

/// The versions a mirror may be kept in: those whose objects have the fields the typed columns
/// read where they read them (2025-03-31.basil moved subscription periods and
/// `invoice.subscription`), back to 2020-08-27.
pub fn check_mirror_api_version(version: &str) -> Result<(), EngineError> {
    let day = version.split('.').next().unwrap_or(version);
    let shaped = day.len() == 10
        && day.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shaped {
        return Err(EngineError::invalid(format!(
            "`{version}` is not a Stripe API version: they look like 2023-08-16"
        )));
    }
    if !("2020-08-27".."2025-03-31").contains(&day) {
        return Err(EngineError::invalid(format!(
            "the mirror cannot be kept in API version {version}: its typed columns read fields that 2025-03-31.basil moved"
        ))
        .hint("choose a version from 2020-08-27 up to (not including) 2025-03-31; the default is 2023-08-16"));
    }
    Ok(())
}

/// Stripe's own API.
pub const STRIPE_API_BASE: &str = "https://api.stripe.com";

/// Whether `base` is Stripe's own API (or any `stripe.com` host), where pacing is never off.
pub fn is_stripe_host(base: &str) -> bool {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or(base)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    host == "stripe.com" || host.ends_with(".stripe.com")
}

/// How the engine talks to Stripe.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `https://api.stripe.com`, or an emulator's base URL.
    pub api_base: String,
    /// The share of each account's Stripe rate budget the mirror may use (0–1); infinite: no
    /// pacing at all, for a local emulator only (refused for Stripe's own host).
    pub budget_share: f64,
    pub max_retries: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            api_base: STRIPE_API_BASE.into(),
            budget_share: 0.5,
            max_retries: 5,
        }
    }
}

/// The engine: a store, a vault, and the clients it makes for each account.
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    pub config: EngineConfig,
    pacers: PacerRegistry,
}

/// Whether `id` looks like a Stripe account id: `acct_` and 1 to 64 letters and digits.
pub fn is_account_id(id: &str) -> bool {
    id.strip_prefix("acct_").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Checks a Stripe API base URL: `https://` to any host, `http://` only to this machine
/// (an emulator on 127.0.0.1, `localhost` or `[::1]`): a key sent over plain HTTP to another
/// host could be read on the way.
pub fn check_api_base(base: &str) -> Result<(), EngineError> {
    let bad = |why: &str| {
        EngineError::invalid(format!("the API base {base} {why}"))
            .hint("use https://api.stripe.com (the default), or http://127.0.0.1:PORT for a local emulator")
    };
    if let Some(rest) = base.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.contains('@') {
            return Err(bad("has no host (or carries a user name)"));
        }
        return Ok(());
    }
    let Some(rest) = base.strip_prefix("http://") else {
        return Err(bad("is not an http:// or https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']')
            .next()
            .map(|h| format!("[{h}]"))
            .unwrap_or_default()
    } else {
        authority
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    if ["127.0.0.1", "localhost", "[::1]"].contains(&host.as_str()) {
        Ok(())
    } else {
        Err(bad("sends keys over plain http:// to another machine"))
    }
}

/// Checks a connection name: not empty, not like an account id (`acct_…`, which would shadow
/// or be shadowed by an id), and not another connection's name or id. `this` is the connection
/// being named (its own name and id are not a clash).
pub fn check_name(
    name: &str,
    accounts: &[AccountRecord],
    this: Option<&Connection>,
) -> Result<(), EngineError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(EngineError::invalid("a connection name cannot be empty"));
    }
    if trimmed.to_ascii_lowercase().starts_with("acct_") {
        return Err(EngineError::invalid(format!(
            "\"{trimmed}\" looks like an account id: a name that does would make commands act on the wrong account"
        ))
        .hint("choose a name that does not start with acct_, e.g. the company's name"));
    }
    for other in accounts.iter().filter(|a| Some(&a.connection) != this) {
        if other.name == trimmed {
            return Err(EngineError::new(
                ErrorCode::Conflict,
                format!(
                    "the name \"{trimmed}\" is taken by {}",
                    other.connection.label()
                ),
            )
            .hint("choose another name, or rename that connection first"));
        }
    }
    Ok(())
}

/// Unix time now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, vault: Vault, config: EngineConfig) -> Engine {
        Engine {
            store,
            vault: Arc::new(vault),
            config,
            pacers: PacerRegistry::new(),
        }
    }

    /// A client for `key`; with an account, it shares that account's pacer with every other
    /// client of the account, so parallel work never exceeds the budget.
    pub fn client(&self, key: &ApiKey, account: Option<&str>) -> Result<Client, EngineError> {
        self.client_in(&self.config.api_base, sm_stripe::API_VERSION, key, account)
    }

    /// The API a connection talks to: the configured one when it was set (not Stripe's own),
    /// else the one the connection was made against.
    pub fn api_base_for(&self, record: &AccountRecord) -> String {
        match &record.api_base {
            Some(stored) if self.config.api_base == STRIPE_API_BASE => stored.clone(),
            _ => self.config.api_base.clone(),
        }
    }

    /// A client for a connection: its API base, its account's pacer.
    pub fn client_for(&self, record: &AccountRecord, key: &ApiKey) -> Result<Client, EngineError> {
        self.client_in(
            &self.api_base_for(record),
            mirror_api_version(record),
            key,
            Some(&record.connection.account_id),
        )
    }

    fn client_in(
        &self,
        api_base: &str,
        api_version: &str,
        key: &ApiKey,
        account: Option<&str>,
    ) -> Result<Client, EngineError> {
        if !self.config.budget_share.is_finite() && is_stripe_host(api_base) {
            return Err(EngineError::invalid(
                "pacing cannot be turned off for Stripe's own API: it would exceed the account's rate limits",
            )
            .hint("drop --no-pacing, or point --api-base at a local emulator"));
        }
        let config = ClientConfig {
            api_base: api_base.to_owned(),
            api_version: api_version.to_owned(),
            budget_share: self.config.budget_share,
            max_retries: self.config.max_retries,
            ..Default::default()
        };
        let result = match account {
            Some(account) => Client::with_pacer(
                config,
                key.clone(),
                self.pacers
                    .pacer(account, key.mode(), self.config.budget_share),
            ),
            None => Client::new(config, key.clone()),
        };
        result.map_err(EngineError::from)
    }

    /// Runs a store call on a blocking thread.
    pub async fn store_call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|e| {
                EngineError::new(ErrorCode::Internal, format!("a database task failed: {e}"))
            })?
            .map_err(EngineError::from)
    }

    /// A short read (a page, a record, the tokens): on this thread when the database is an
    /// embedded file — it takes a fraction of a millisecond there, less than handing it to a
    /// blocking thread and back — and on a blocking thread for a database over the network.
    /// Never for writes, which may wait for the writer.
    pub async fn store_read<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        if self.store.backend() == sm_warehouse::Backend::Sqlite {
            return call(self.store.as_ref()).map_err(EngineError::from);
        }
        self.store_call(call).await
    }

    /// A connection's record, or a not-found error that says how to list connections.
    pub async fn account(&self, connection: &Connection) -> Result<AccountRecord, EngineError> {
        let label = connection.label();
        self.store_call({
            let connection = connection.clone();
            move |store| store.account(&connection)
        })
        .await?
        .ok_or_else(|| {
            EngineError::new(ErrorCode::NotFound, format!("no connected account {label}"))
                .hint("`stripe-mirror accounts` lists them")
        })
    }

    /// Finds a connection by what a user typed: `acct_…:test|live`, `acct_…` (when only one
    /// mode is connected), or its name. An id always wins over a name (names cannot look like
    /// ids, see [`check_name`]).
    pub async fn resolve(&self, reference: &str) -> Result<AccountRecord, EngineError> {
        let reference = reference.trim();
        // `acct_…:test|live` names one row: read it alone (every API request resolves one).
        if let Some((id, mode)) = reference.split_once(':')
            && id.starts_with("acct_")
            && (mode == "test" || mode == "live")
        {
            let connection = Connection::new(id, mode == "live");
            if let Some(record) = self
                .store_read(move |store| store.account(&connection))
                .await?
            {
                return Ok(record);
            }
        }
        let accounts = self.store_read(|store| store.accounts()).await?;
        let by_id: Vec<&AccountRecord> = accounts
            .iter()
            .filter(|a| a.connection.label() == reference || a.connection.account_id == reference)
            .collect();
        let matches = if by_id.is_empty() {
            accounts.iter().filter(|a| a.name == reference).collect()
        } else {
            by_id
        };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EngineError::new(
                ErrorCode::NotFound,
                format!("no connected account matches \"{reference}\""),
            )
            .hint(if accounts.is_empty() {
                "connect one with `stripe-mirror connect`".to_owned()
            } else {
                format!(
                    "connected: {}",
                    accounts
                        .iter()
                        .map(|a| format!("{} ({})", a.name, a.connection.label()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })),
            many => Err(EngineError::invalid(format!(
                "\"{reference}\" matches {} connections",
                many.len()
            ))
            .hint(format!(
                "name one of: {}",
                many.iter()
                    .map(|a| a.connection.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Binds to their rows the sealed values stored before values were bound (once per
    /// database; then a no-op that reads one row). Returns how many were bound.
    pub fn bind_sealed_values(&self) -> Result<usize, EngineError> {
        let vault = self.vault.clone();
        let mut bind =
            |connection: &Connection, field, sealed: &[u8]| vault.bind(sealed, connection, field);
        match self.store.bind_sealed_values(&mut bind)? {
            Some(bound) => Ok(bound),
            None => Err(EngineError::from(vault.wrong_key()).hint(
                "the stored secrets were sealed with another master key: point --master-key-file (or STRIPE_MIRROR_MASTER_KEY) at it; nothing was changed",
            )),
        }
    }

    /// The API key of a connection, opened from the vault.
    pub fn open_key(&self, record: &AccountRecord) -> Result<ApiKey, EngineError> {
        let secret = self.vault.open_secret(
            &record.key_sealed,
            &record.connection,
            sm_warehouse::SealedField::ApiKey,
        )?;
        ApiKey::parse(&secret).map_err(|_| {
            EngineError::new(
                ErrorCode::Vault,
                "the stored key is not a Stripe key any more; run `update-key`",
            )
        })
    }
}

#[cfg(test)]
mod api_base_tests {
    #[test]
    fn plain_http_only_to_this_machine() {
        for ok in [
            "https://api.stripe.com",
            "http://127.0.0.1:12111",
            "http://localhost:9",
            "http://[::1]:80/x",
        ] {
            assert!(super::check_api_base(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.stripe.com",
            "http://10.0.0.5:12111",
            "ftp://x",
            "https://",
            "http://127.0.0.1.evil.com",
            "https://user@x",
        ] {
            assert!(super::check_api_base(bad).is_err(), "{bad}");
        }
    }
}
