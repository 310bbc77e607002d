//! Connecting an account: check the key's shape and the user's policies before any request, prove
//! the key, learn the account, probe every permission without side effects, seal the key, store
//! the connection, and fetch the latest events. Also key rotation, renaming, removal and the
//! dashboard link that pre-fills a minimal key.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sm_stripe::error::ErrorKind;
use sm_stripe::{ApiKey, Client, ClientError, KeyKind, Mode};
use sm_warehouse::{AccountRecord, Batch, Connection, EventRow, SealedField};
use zeroize::Zeroizing;

use crate::catalog::{EVENT_READ, Feature, RESOURCES, Source, WRITE_OPERATIONS};
use crate::error::{EngineError, ErrorCode};
use crate::{Engine, now};

/// Policies a product may impose on the keys its users paste.
#[derive(Debug, Clone, Default)]
pub struct KeyPolicy {
    /// The key must be of this mode.
    pub expect_mode: Option<Mode>,
    /// The key must belong to this account.
    pub expect_account: Option<String>,
    /// Refuse secret keys.
    pub restricted_only: bool,
    /// Refuse test keys.
    pub live_only: bool,
}

impl KeyPolicy {
    /// Checks what can be checked from the key alone, before any request.
    pub fn check_shape(&self, key: &ApiKey) -> Result<(), EngineError> {
        if let Some(mode) = self.expect_mode
            && key.mode() != mode
        {
            return Err(EngineError::invalid(format!(
                "--mode {} was asked, but this is a {} mode key ({})",
                mode.as_str(),
                key.mode().as_str(),
                key.masked()
            ))
            .hint(format!("paste a {} key, or drop --mode", mode.as_str())));
        }
        if self.live_only && key.mode() == Mode::Test {
            return Err(EngineError::invalid(format!(
                "only live keys are accepted (--live-only), and {} is a test key",
                key.masked()
            )));
        }
        if self.restricted_only && key.kind() == KeyKind::Secret {
            return Err(EngineError::invalid(format!("only restricted keys are accepted (--restricted-only), and {} is a secret key", key.masked())).hint("create a restricted key: `stripe-mirror key-link` prints a link that pre-fills one"));
        }
        Ok(())
    }
}

/// Access to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAccess {
    pub table: String,
    pub permission: String,
    pub allowed: bool,
}

/// Access to one write operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAccess {
    pub operation: String,
    pub permission: String,
    pub allowed: bool,
}

/// What a key may do, as the probe found it. Stored with the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PermissionReport {
    pub reads: Vec<ReadAccess>,
    pub events: bool,
    pub writes: Vec<WriteAccess>,
    pub checked_at: i64,
}

impl PermissionReport {
    /// Whether `table` may be read.
    pub fn can_read(&self, table: &str) -> bool {
        self.reads.iter().any(|r| r.table == table && r.allowed)
    }

    /// The permissions a feature needs that the key lacks, sorted, without duplicates.
    pub fn missing(&self, feature: Feature) -> Vec<String> {
        let mut missing: Vec<String> = match feature {
            Feature::Mirror => self
                .reads
                .iter()
                .filter(|r| !r.allowed)
                .map(|r| r.permission.clone())
                .chain((!self.events).then(|| EVENT_READ.to_owned()))
                .collect(),
            Feature::Webhooks => self
                .writes
                .iter()
                .filter(|w| !w.allowed && w.permission == crate::catalog::WEBHOOK_WRITE)
                .map(|w| w.permission.clone())
                .collect(),
            Feature::AgentWrites => self
                .writes
                .iter()
                .filter(|w| !w.allowed)
                .map(|w| w.permission.clone())
                .collect(),
        };
        missing.sort();
        missing.dedup();
        missing
    }

    /// `reads 27/29, events yes, writes 0/9`.
    pub fn summary(&self) -> String {
        let reads = self.reads.iter().filter(|r| r.allowed).count();
        let writes = self.writes.iter().filter(|w| w.allowed).count();
        format!(
            "reads {reads}/{}, events {}, writes {writes}/{}",
            self.reads.len(),
            if self.events { "yes" } else { "no" },
            self.writes.len()
        )
    }

    pub fn from_json(value: &Value) -> PermissionReport {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }
}

/// How the connection should be made.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub policy: KeyPolicy,
    /// A name for the connection (default: Stripe's display name, else the account id).
    pub name: Option<String>,
    /// How far back the mirror goes (unix time); default all history.
    pub start_date: Option<i64>,
    /// The signing secret (`whsec_…`) of a webhook endpoint made by hand for this account.
    pub webhook_secret: Option<String>,
    /// The API version to keep the mirror in (default: the pinned one).
    pub api_version: Option<String>,
}

/// What connecting did.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectOutcome {
    pub account: AccountSummary,
    pub permissions: PermissionReport,
    pub events_fetched: usize,
}

/// A connection as shown to people and scripts: never the key.
#[derive(Debug, Clone, Serialize)]
pub struct AccountSummary {
    pub name: String,
    pub account_id: String,
    pub mode: &'static str,
    pub label: String,
    pub key_kind: String,
    pub key: String,
    pub status: String,
    pub status_message: Option<String>,
    pub permissions: String,
    pub start_date: Option<i64>,
    pub stripe_name: Option<String>,
    /// The logo to show: the one the user chose, else Stripe's icon (none: show initials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    pub last_sync: Option<i64>,
    /// Whether changes arrive by webhooks or by polling, in words (set by `serve`).
    pub realtime: Option<String>,
    /// The status in one sentence, with why, how changes arrive and what to do (set by
    /// [`crate::ops::connections::list`]).
    pub status_words: String,
    /// The status in a few words, for a card: "Up to date", "Syncing 41%", "Delayed", "Not
    /// synced yet", "Action required: API key is invalid", "Sync failed" (set by `list`).
    pub headline: String,
    /// What to do about the status, when something is to be done: "Update API key", "Sync now".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// A limit of the connection in words: "Missing rak_webhook_write: real-time off, polling
    /// every 5 min", or webhook deliveries being refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// When the newest event the mirror holds happened (Unix time).
    pub last_event_at: Option<i64>,
    /// Rows the mirror holds for the connection, as counted at the end of its last sync.
    pub rows: Option<u64>,
    /// A run of webhook deliveries refused for their signature, in words (set by `serve`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks_refused: Option<String>,
    /// The API version the mirror keeps its rows in.
    pub api_version: String,
    /// The account's own default API version, as its newest event shows it (set from the
    /// mirror's state by the caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_api_version: Option<String>,
    /// The API the connection talks to when it is not Stripe's own (an emulator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
}

impl AccountSummary {
    pub fn of(record: &AccountRecord, last_sync: Option<i64>) -> Self {
        AccountSummary {
            name: record.name.clone(),
            account_id: record.connection.account_id.clone(),
            mode: if record.connection.livemode {
                "live"
            } else {
                "test"
            },
            label: record.connection.label(),
            key_kind: record.key_kind.clone(),
            key: record.key_masked.clone(),
            status: record.status.clone(),
            status_message: record.status_message.clone(),
            permissions: PermissionReport::from_json(&record.permissions).summary(),
            start_date: record.start_date,
            stripe_name: record.stripe_name.clone(),
            logo_url: record.logo_url.clone().or_else(|| record.icon_url.clone()),
            last_sync,
            realtime: None,
            status_words: record.status.clone(),
            headline: record.status.clone(),
            fix: None,
            notice: None,
            last_event_at: None,
            rows: None,
            webhooks_refused: None,
            api_version: crate::mirror_api_version(record).to_owned(),
            account_api_version: None,
            api_base: record.api_base.clone(),
        }
    }
}

/// The account behind a key: its id and, when readable, its display name and icon.
struct Identity {
    account_id: String,
    name: Option<String>,
    icon: Option<String>,
}

/// Proves the key and learns its account, whose id must look like one (`acct_` and letters
/// and digits): it goes into paths, labels and the webhook URL.
async fn identify(client: &Client) -> Result<Identity, EngineError> {
    let identity = identify_unchecked(client).await?;
    if !crate::is_account_id(&identity.account_id) {
        return Err(EngineError::new(
            ErrorCode::Upstream,
            "Stripe answered an account id that is not one (acct_ and letters and digits)",
        ));
    }
    Ok(identity)
}

async fn identify_unchecked(client: &Client) -> Result<Identity, EngineError> {
    match client.get("/v1/account", &[]).await {
        Ok(account) => {
            let name = [
                &account["settings"]["dashboard"]["display_name"],
                &account["business_profile"]["name"],
                &account["email"],
            ]
            .into_iter()
            .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
            .map(str::to_owned);
            let icon = account["settings"]["branding"]["icon"]
                .as_str()
                .filter(|s| s.starts_with("https://"))
                .map(str::to_owned);
            let account_id = account["id"]
                .as_str()
                .ok_or_else(|| {
                    EngineError::new(
                        ErrorCode::Upstream,
                        "GET /v1/account answered without an id",
                    )
                })?
                .to_owned();
            Ok(Identity {
                account_id,
                name,
                icon,
            })
        }
        Err(error) => {
            // Restricted keys often may not read the account; Stripe's 403 names it anyway.
            if let Some(account) = error.api_error().and_then(|e| e.account()) {
                return Ok(Identity {
                    account_id: account.to_owned(),
                    name: None,
                    icon: None,
                });
            }
            if matches!(error.kind(), Some(ErrorKind::PermissionDenied { .. })) {
                // No account id in the message (keys that may never read /v1/account): ask a
                // resource restricted keys rarely hold, whose refusal names the account.
                if let Err(other) = client
                    .get("/v1/accounts", &[("limit".into(), "1".into())])
                    .await
                    && let Some(account) = other.api_error().and_then(|e| e.account())
                {
                    return Ok(Identity {
                        account_id: account.to_owned(),
                        name: None,
                        icon: None,
                    });
                }
                return Err(EngineError::new(
                    ErrorCode::PermissionMissing,
                    "could not learn which Stripe account this key belongs to",
                )
                .hint("pass --account acct_… to say it"));
            }
            Err(error.into())
        }
    }
}

/// Whether a probe answer means "allowed": any answer but a permission refusal. Other failures
/// (the key itself invalid, Stripe unreachable) end the probe.
fn allowed(result: Result<Value, ClientError>) -> Result<bool, EngineError> {
    match result {
        Ok(_) => Ok(true),
        Err(error) => match error.kind() {
            Some(ErrorKind::PermissionDenied { .. }) => Ok(false),
            Some(
                ErrorKind::NotFound { .. } | ErrorKind::InvalidRequest | ErrorKind::UnknownEndpoint,
            ) => Ok(true),
            _ => Err(error.into()),
        },
    }
}

/// Probes every read and write permission without side effects: lists with `limit=1`, child
/// lists and writes on made-up ids (Stripe checks permissions before existence).
pub async fn probe(client: &Client) -> Result<PermissionReport, EngineError> {
    if client.key().kind() == KeyKind::Secret {
        return Ok(PermissionReport {
            reads: RESOURCES
                .iter()
                .map(|r| ReadAccess {
                    table: r.table.into(),
                    permission: r.permission.into(),
                    allowed: true,
                })
                .collect(),
            events: true,
            writes: WRITE_OPERATIONS
                .iter()
                .map(|w| WriteAccess {
                    operation: w.name.into(),
                    permission: w.permission.into(),
                    allowed: true,
                })
                .collect(),
            checked_at: now(),
        });
    }
    let limit_one = vec![("limit".to_owned(), "1".to_owned())];
    let reads = RESOURCES.iter().map(|r| {
        let client = client.clone();
        let params = limit_one.clone();
        async move {
            let result = match r.source {
                Source::List => client.get(r.path, &params).await,
                Source::PerParent {
                    parent_path,
                    segment,
                    ..
                } => {
                    client
                        .get(
                            &format!("{parent_path}/stripemirrorprobe/{segment}"),
                            &params,
                        )
                        .await
                }
                Source::Embedded {
                    parent_table: "subscriptions",
                    ..
                } => {
                    client
                        .get(
                            r.path,
                            &[
                                ("subscription".into(), "sub_stripemirrorprobe".into()),
                                ("limit".into(), "1".into()),
                            ],
                        )
                        .await
                }
                Source::Embedded { .. } => {
                    client
                        .get("/v1/invoices/in_stripemirrorprobe/lines", &params)
                        .await
                }
            };
            allowed(result).map(|allowed| ReadAccess {
                table: r.table.into(),
                permission: r.permission.into(),
                allowed,
            })
        }
    });
    let writes = WRITE_OPERATIONS.iter().map(|w| {
        let client = client.clone();
        async move {
            let result = if w.probe_method == "DELETE" {
                client.delete(w.probe_path).await
            } else {
                client.post(w.probe_path, &[]).await
            };
            allowed(result).map(|allowed| WriteAccess {
                operation: w.name.into(),
                permission: w.permission.into(),
                allowed,
            })
        }
    });
    let events = allowed(client.get("/v1/events", &limit_one).await)?;
    let reads = join_all(reads)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let writes = join_all(writes)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PermissionReport {
        reads,
        events,
        writes,
        checked_at: now(),
    })
}

/// Runs futures concurrently on the current task (the client's pacer spaces the requests).
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut results = Vec::with_capacity(handles.len());
    let mut pending: Vec<(usize, std::pin::Pin<Box<F>>)> =
        handles.into_iter().enumerate().collect();
    let mut done: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(index, future)| match future.as_mut().poll(cx) {
            std::task::Poll::Ready(output) => {
                done[*index] = Some(output);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.extend(done.into_iter().map(|o| o.expect("every future finished")));
    results
}

/// The latest events, kept so that there is something to look at at once.
pub async fn fetch_latest_events(
    client: &Client,
    limit: usize,
) -> Result<Vec<EventRow>, EngineError> {
    let page = client
        .get("/v1/events", &[("limit".into(), limit.to_string())])
        .await?;
    Ok(page["data"]
        .as_array()
        .map(|events| events.iter().map(event_row).collect())
        .unwrap_or_default())
}

/// An event as the mirror keeps it.
pub fn event_row(event: &Value) -> EventRow {
    EventRow {
        id: event["id"].as_str().unwrap_or_default().to_owned(),
        event_type: event["type"].as_str().unwrap_or_default().to_owned(),
        created: event["created"].as_i64().unwrap_or(0),
        object_id: event["data"]["object"]["id"].as_str().map(str::to_owned),
        data: serde_json::to_string(event).unwrap_or_default(),
    }
}

/// What changing a mirror's API version did.
#[derive(Debug, Clone, Serialize)]
pub struct VersionChange {
    pub account: String,
    pub previous: String,
    pub version: String,
    /// Whether anything changed (the same version again changes nothing).
    pub changed: bool,
}

/// Keeps a connection's mirror in another API version. Its rows are then in the old one, so
/// the next sync lists every table again in the new one (and says why); nothing is deleted.
pub async fn set_api_version(
    engine: &Engine,
    connection: &Connection,
    version: &str,
) -> Result<VersionChange, EngineError> {
    crate::check_mirror_api_version(version)?;
    let mut record = engine.account(connection).await?;
    let previous = crate::mirror_api_version(&record).to_owned();
    let outcome = VersionChange {
        account: connection.label(),
        previous: previous.clone(),
        version: version.to_owned(),
        changed: previous != version,
    };
    if !outcome.changed {
        return Ok(outcome);
    }
    record.api_version = (version != sm_stripe::API_VERSION).then(|| version.to_owned());
    record.updated_at = crate::now();
    let (connection, version) = (connection.clone(), version.to_owned());
    engine
        .store_call(move |store| {
            // No table is complete in the new version: the next sync lists them all.
            crate::sync::mark_version_change(store, &connection, &version)?;
            store.update_account(&record)
        })
        .await?;
    Ok(outcome)
}

/// A webhook signing secret's shape: `whsec_…`, no whitespace.
fn check_webhook_secret(secret: &str) -> Result<(), EngineError> {
    if !secret.starts_with("whsec_") || secret.len() < 16 || secret.chars().any(char::is_whitespace)
    {
        return Err(EngineError::invalid(
            "the webhook signing secret must look like whsec_… (from the endpoint's page in the Stripe dashboard)",
        ));
    }
    Ok(())
}

/// Sets a connection's webhook signing secret, leaving its data alone. With `keep_old`, the
/// secret in use stays accepted beside the new one (a roll: Stripe signs with both for a
/// while); without, it is replaced. Clears the record of refused deliveries. Returns how many
/// secrets are now accepted.
pub async fn set_webhook_secret(
    engine: &Engine,
    connection: &Connection,
    secret: &str,
    keep_old: bool,
) -> Result<usize, EngineError> {
    check_webhook_secret(secret)?;
    let mut record = engine.account(connection).await?;
    let mut secrets = vec![Zeroizing::new(secret.to_owned())];
    if keep_old && let Some(sealed) = &record.webhook_secret_sealed {
        let old = engine
            .vault
            .open_secret(sealed, connection, SealedField::WebhookSecrets)?;
        // One older secret is kept: the newest of those in use.
        if let Some(previous) = old.lines().next().filter(|s| *s != secret) {
            secrets.push(Zeroizing::new(previous.to_owned()));
        }
    }
    let joined = Zeroizing::new(
        secrets
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    record.webhook_secret_sealed = Some(engine.vault.seal(
        &joined,
        connection,
        SealedField::WebhookSecrets,
    ));
    record.updated_at = crate::now();
    let connection = connection.clone();
    engine
        .store_call(move |store| {
            store.update_account(&record)?;
            store.set_state(&connection, crate::WEBHOOKS_REFUSED, None)
        })
        .await?;
    Ok(secrets.len())
}

/// Connects an account: nothing is written unless every step succeeds.
pub async fn connect(
    engine: &Engine,
    key: ApiKey,
    options: ConnectOptions,
) -> Result<ConnectOutcome, EngineError> {
    options.policy.check_shape(&key)?;
    if let Some(secret) = &options.webhook_secret {
        check_webhook_secret(secret)?;
    }
    if let Some(version) = &options.api_version {
        crate::check_mirror_api_version(version)?;
    }
    // A name is checked before anything is asked of Stripe.
    if let Some(name) = &options.name {
        let accounts = engine.store_call(|store| store.accounts()).await?;
        crate::check_name(name, &accounts, None)?;
    }
    let client = engine.client(&key, None)?;
    let identity = identify(&client).await.map_err(|error| match error.code {
        ErrorCode::InvalidKey | ErrorCode::KeyExpired => error.hint("check the key in the Stripe dashboard (it may have been revoked, rolled or mistyped) and connect with a valid one"),
        _ => error,
    })?;
    if let Some(expected) = &options.policy.expect_account
        && expected != &identity.account_id
    {
        return Err(EngineError::invalid(format!(
            "--account {expected} was asked, but this key belongs to {}",
            identity.account_id
        )));
    }
    let connection = Connection::new(identity.account_id.clone(), key.mode() == Mode::Live);
    if let Some(existing) = engine
        .store_call({
            let connection = connection.clone();
            move |store| store.account(&connection)
        })
        .await?
    {
        return Err(EngineError::new(
            ErrorCode::Conflict,
            format!(
                "{} is already connected as \"{}\"",
                connection.label(),
                existing.name
            ),
        )
        .hint(format!(
            "use `stripe-mirror update-key {}` to change its key",
            connection.label()
        )));
    }
    let client = engine.client(&key, Some(&identity.account_id))?;
    let report = probe(&client).await?;
    let accounts = engine.store_call(|store| store.accounts()).await?;
    let name = match &options.name {
        Some(chosen) => {
            crate::check_name(chosen, &accounts, None)?;
            chosen.trim().to_owned()
        }
        None => default_name(identity.name.as_deref(), &connection, &accounts),
    };
    let events = if report.events {
        fetch_latest_events(&client, 50).await?
    } else {
        Vec::new()
    };
    let missing = report.missing(Feature::Mirror);
    let record = AccountRecord {
        connection: connection.clone(),
        name,
        stripe_name: identity.name,
        icon_url: identity.icon,
        logo_url: None,
        key_kind: match key.kind() {
            KeyKind::Secret => "secret".into(),
            _ => "restricted".into(),
        },
        key_masked: key.masked(),
        key_sealed: engine
            .vault
            .seal(key.expose_secret(), &connection, SealedField::ApiKey),
        permissions: serde_json::to_value(&report).unwrap_or(Value::Null),
        status: "connected".into(),
        status_message: (!missing.is_empty())
            .then(|| format!("the mirror will skip what needs {}", missing.join(", "))),
        start_date: options.start_date,
        webhook_endpoint_id: None,
        api_base: (engine.config.api_base != crate::STRIPE_API_BASE)
            .then(|| engine.config.api_base.clone()),
        api_version: options
            .api_version
            .clone()
            .filter(|v| v != sm_stripe::API_VERSION),
        webhook_secret_sealed: options.webhook_secret.as_deref().map(|secret| {
            engine
                .vault
                .seal(secret, &connection, SealedField::WebhookSecrets)
        }),
        created_at: now(),
        updated_at: now(),
    };
    let events_fetched = events.len();
    engine
        .store_call({
            let record = record.clone();
            move |store| {
                store.insert_account(&record)?;
                if !events.is_empty() {
                    store.apply(
                        &record.connection,
                        &Batch {
                            events,
                            ..Default::default()
                        },
                    )?;
                }
                Ok(())
            }
        })
        .await
        .map_err(|e| match e.code {
            ErrorCode::Conflict => EngineError::new(
                ErrorCode::Conflict,
                format!("{} is already connected", connection.label()),
            ),
            _ => e,
        })?;
    Ok(ConnectOutcome {
        account: AccountSummary::of(&record, None),
        permissions: report,
        events_fetched,
    })
}

/// Rotates a connection's key: the new key must belong to the same account and mode. The
/// permissions are probed again and the status recovers.
pub async fn update_key(
    engine: &Engine,
    connection: &Connection,
    key: ApiKey,
) -> Result<ConnectOutcome, EngineError> {
    let mut record = engine.account(connection).await?;
    let mode = if connection.livemode {
        Mode::Live
    } else {
        Mode::Test
    };
    if key.mode() != mode {
        return Err(EngineError::invalid(format!(
            "{} is a {} mode connection, and {} is a {} mode key",
            connection.label(),
            mode.as_str(),
            key.masked(),
            key.mode().as_str()
        )));
    }
    let client = engine.client_for(&record, &key)?;
    let identity = identify(&client).await?;
    if identity.account_id != connection.account_id {
        return Err(EngineError::invalid(format!(
            "this key belongs to {}, not to {}",
            identity.account_id, connection.account_id
        ))
        .hint("connect that account separately with `stripe-mirror connect`"));
    }
    let report = probe(&client).await?;
    let missing = report.missing(Feature::Mirror);
    record.key_kind = if key.kind() == KeyKind::Secret {
        "secret".into()
    } else {
        "restricted".into()
    };
    record.key_masked = key.masked();
    record.key_sealed =
        engine
            .vault
            .seal(key.expose_secret(), &record.connection, SealedField::ApiKey);
    record.permissions = serde_json::to_value(&report).unwrap_or(Value::Null);
    record.status = "connected".into();
    record.status_message = (!missing.is_empty())
        .then(|| format!("the mirror will skip what needs {}", missing.join(", ")));
    record.stripe_name = identity.name.or(record.stripe_name);
    record.updated_at = now();
    engine
        .store_call({
            let record = record.clone();
            move |store| store.update_account(&record)
        })
        .await?;
    Ok(ConnectOutcome {
        account: AccountSummary::of(&record, None),
        permissions: report,
        events_fetched: 0,
    })
}

/// What `remove` did.
#[derive(Debug, Clone, Serialize)]
pub struct RemoveOutcome {
    pub label: String,
    pub rows_deleted: u64,
    pub webhook_endpoint_deleted: Option<String>,
    /// Why the endpoint could not be deleted, if it could not (the data is removed anyway).
    pub webhook_warning: Option<String>,
}

/// Removes a connection and every row of its data; deletes the webhook endpoint the mirror made.
pub async fn remove(
    engine: &Engine,
    connection: &Connection,
) -> Result<RemoveOutcome, EngineError> {
    let record = engine.account(connection).await?;
    let mut endpoint_deleted = None;
    let mut warning = None;
    if let Some(endpoint) = &record.webhook_endpoint_id {
        let outcome = match engine.open_key(&record) {
            Ok(key) => match engine.client_for(&record, &key) {
                Ok(client) => client
                    .delete(&format!("/v1/webhook_endpoints/{endpoint}"))
                    .await
                    .map_err(EngineError::from),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => endpoint_deleted = Some(endpoint.clone()),
            Err(e) if e.code == ErrorCode::NotFound => endpoint_deleted = Some(endpoint.clone()),
            Err(e) => {
                warning = Some(format!(
                    "the webhook endpoint {endpoint} could not be deleted ({}); delete it in the Stripe dashboard",
                    e.message
                ))
            }
        }
    }
    let rows_deleted = engine
        .store_call({
            let connection = connection.clone();
            move |store| store.remove_account(&connection)
        })
        .await?;
    Ok(RemoveOutcome {
        label: connection.label(),
        rows_deleted,
        webhook_endpoint_deleted: endpoint_deleted,
        webhook_warning: warning,
    })
}

/// The dashboard link that pre-fills a restricted key with the permissions of `features`, and the
/// list spelled out (the link is undocumented and sometimes ignored: always show the list).
pub fn key_link(mode: Mode, features: &[Feature]) -> (String, Vec<&'static str>) {
    let mut permissions: Vec<&'static str> = Vec::new();
    for feature in features {
        for permission in feature.permissions() {
            if !permissions.contains(&permission) {
                permissions.push(permission);
            }
        }
    }
    let base = match mode {
        Mode::Live => "https://dashboard.stripe.com/apikeys/create",
        Mode::Test => "https://dashboard.stripe.com/test/apikeys/create",
    };
    let mut url = format!("{base}?name=stripe-mirror");
    for permission in &permissions {
        url.push_str("&permissions%5B%5D=");
        url.push_str(permission);
    }
    (url, permissions)
}

/// The JSON form of `permissions ACCOUNT`: per resource, per write, per feature.
pub fn permissions_json(record: &AccountRecord) -> Value {
    let report = PermissionReport::from_json(&record.permissions);
    let features: serde_json::Map<String, Value> = Feature::ALL
        .iter()
        .map(|f| {
            (
                f.name().to_owned(),
                json!({"ready": report.missing(*f).is_empty(), "missing": report.missing(*f)}),
            )
        })
        .collect();
    json!({"account": record.connection.label(), "name": record.name, "checked_at": report.checked_at, "reads": report.reads, "events": report.events, "writes": report.writes, "features": features})
}

/// A connection's name when the user gave none: the account's name in Stripe, else "Stripe
/// account" and the id's last characters (never the id itself: names cannot look like ids); the
/// test and live twins of one account, or two accounts of one name, are told apart.
fn default_name(
    stripe_name: Option<&str>,
    connection: &Connection,
    accounts: &[AccountRecord],
) -> String {
    let id = &connection.account_id;
    let tail = &id[id.len().saturating_sub(6)..];
    let base = stripe_name
        .map(str::trim)
        .filter(|n| crate::check_name(n, &[], None).is_ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Stripe account {tail}"));
    let mode = if connection.livemode { "live" } else { "test" };
    [
        base.clone(),
        format!("{base} ({mode})"),
        format!("{base} ({mode}, {tail})"),
    ]
    .into_iter()
    .find(|candidate| crate::check_name(candidate, accounts, None).is_ok())
    .unwrap_or_else(|| format!("{base} ({mode}, {id})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_link_lists_every_permission_once() {
        let (url, permissions) = key_link(Mode::Test, &[Feature::Mirror, Feature::Webhooks]);
        assert!(url.starts_with(
            "https://dashboard.stripe.com/test/apikeys/create?name=stripe-mirror&permissions%5B%5D="
        ));
        assert!(
            permissions.contains(&"rak_plan_read")
                && permissions.contains(&"rak_webhook_write")
                && permissions.contains(&"rak_event_read")
        );
        assert_eq!(
            permissions
                .iter()
                .filter(|p| **p == "rak_customer_read")
                .count(),
            1
        );
        assert_eq!(url.matches("permissions%5B%5D=").count(), permissions.len());
    }
}
