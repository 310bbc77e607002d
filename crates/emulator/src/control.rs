//! The control API under `/_emulator/`: create accounts and keys with chosen permissions (and change
//! them), revoke or expire keys, move the clock, switch limits, faults and webhook behaviour, roll an endpoint's
//! secret, seed data, simulate activity and month-start renewals, and read the emulator's own copy of any object.
//! JSON in, JSON out; no authentication (the emulator binds 127.0.0.1 by default).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::Emulator;
use crate::catalog::Kind;
use crate::failure::Failure;
use crate::limits::{FaultSettings, LimitSettings};
use crate::seed;
use crate::webhooks::DeliverySettings;
use crate::world::{Account, KeyKind, KeySpec, Mode, all_read_permissions};

/// Answers one control request: `rest` is the path after `/_emulator`.
pub fn handle(
    emulator: &Emulator,
    method: &str,
    rest: &str,
    query: &[u8],
    body: &[u8],
) -> (u16, Value) {
    match dispatch(emulator, method, rest, query, body) {
        Ok(value) => (200, value),
        Err(failure) => (failure.status, failure.body),
    }
}

fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Failure::invalid(format!("The control API takes JSON bodies: {e}"), None))
}

fn mode_of(text: &str) -> Result<Mode, Failure> {
    match text {
        "test" => Ok(Mode::Test),
        "live" => Ok(Mode::Live),
        other => Err(Failure::invalid(
            format!("Mode must be test or live, not {other}."),
            Some("mode"),
        )),
    }
}

fn account(emulator: &Emulator, id: &str) -> Result<std::sync::Arc<Account>, Failure> {
    emulator
        .world
        .account(id)
        .ok_or_else(|| Failure::no_such("account", id))
}

/// What `POST /_emulator/accounts` takes.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewAccount {
    pub id: Option<String>,
    pub name: Option<String>,
    /// Seed of the generated data; defaults to the emulator's.
    pub seed: Option<u64>,
    /// Customers to generate in test mode (0: an empty account).
    pub scale: u64,
    /// Customers to generate in live mode.
    pub live_scale: u64,
    /// The account's default API version (default: the emulator's, 2023-08-16).
    pub api_version: Option<String>,
}

/// The standard keys every new account gets, by role.
pub fn account_json(emulator: &Emulator, account: &std::sync::Arc<Account>) -> Value {
    let keys: Vec<Value> = emulator
        .world
        .keys_of(&account.id)
        .into_iter()
        .map(|k| {
            json!({
                "key": k.secret, "mode": k.mode, "kind": k.kind, "permissions": k.permission_names(),
                "revoked": k.revoked, "expires_at": k.expires_at
            })
        })
        .collect();
    let count = |mode: Mode| account.mode(mode).read().len();
    json!({"id": account.id, "name": account.name, "api_version": *account.api_version.read(), "objects": {"test": count(Mode::Test), "live": count(Mode::Live)}, "keys": keys})
}

/// Creates an account with the standard keys: secret test and live, a restricted test key that may
/// read everything, and a publishable test key. Returns the account's JSON with its keys by role.
pub fn create_account(
    emulator: &Emulator,
    request: &NewAccount,
    default_seed: u64,
) -> Result<Value, Failure> {
    let index = emulator.world.account_count() as u64;
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| format!("Emulated Account {}", index + 1));
    if let Some(version) = &request.api_version
        && !crate::versions::is_valid(version)
    {
        return Err(invalid_version(version));
    }
    let account = emulator.world.create_account(request.id.clone(), &name)?;
    if let Some(version) = &request.api_version {
        *account.api_version.write() = version.clone();
    }
    let key = |mode, kind, permissions: Vec<String>| {
        emulator.world.create_key(
            &account.id,
            &KeySpec {
                mode,
                kind,
                permissions,
                expires_in: None,
            },
        )
    };
    let secret_test = key(Mode::Test, KeyKind::Secret, vec![])?;
    let secret_live = key(Mode::Live, KeyKind::Secret, vec![])?;
    let restricted_test = key(Mode::Test, KeyKind::Restricted, all_read_permissions())?;
    let publishable_test = key(Mode::Test, KeyKind::Publishable, vec![])?;
    let seed = request.seed.unwrap_or(default_seed).wrapping_add(index);
    let mut counts = json!({});
    if request.scale > 0 {
        counts["test"] = serde_json::to_value(seed::seed_account(
            emulator,
            &account,
            Mode::Test,
            seed,
            request.scale,
        ))
        .unwrap_or_default();
    }
    if request.live_scale > 0 {
        counts["live"] = serde_json::to_value(seed::seed_account(
            emulator,
            &account,
            Mode::Live,
            seed ^ 0x11FE,
            request.live_scale,
        ))
        .unwrap_or_default();
    }
    Ok(json!({
        "id": account.id,
        "name": account.name,
        "api_version": *account.api_version.read(),
        "keys": {"secret_test": secret_test, "secret_live": secret_live, "restricted_test": restricted_test, "publishable_test": publishable_test},
        "seeded": counts,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VersionChange {
    api_version: String,
}

fn invalid_version(version: &str) -> Failure {
    Failure::invalid(
        format!(
            "Invalid Stripe API version: {version}. Versions look like 2023-08-16 or 2025-03-31.basil."
        ),
        Some("api_version"),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KeyChange {
    key: String,
    /// Seconds from now until the key expires (expire), default now.
    in_seconds: Option<i64>,
}

/// A restricted key's new permissions (`rak_…` names), replacing its old ones.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PermissionChange {
    key: String,
    permissions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClockChange {
    advance: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Roll {
    mode: Option<String>,
    /// Keep signing with the old secret(s) too, as Stripe does while a rolled secret expires.
    keep_old: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Activity {
    mode: Option<String>,
    changes: u64,
    seed: Option<u64>,
}

/// What `POST /_emulator/accounts/{id}/renewals` takes: how many active subscriptions bill a
/// new period now (a month start).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Renewals {
    mode: Option<String>,
    subscriptions: u64,
}

fn dispatch(
    emulator: &Emulator,
    method: &str,
    rest: &str,
    query: &[u8],
    body: &[u8],
) -> Result<Value, Failure> {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        ("GET", []) => Ok(json!({
            "now": emulator.world.now(),
            "accounts": emulator.world.accounts().iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
            "limits": *emulator.limits.settings.read(),
            "faults": *emulator.limits.faults.read(),
            "webhooks": *emulator.webhooks.settings.read(),
        })),
        ("GET", ["accounts"]) => Ok(Value::Array(
            emulator
                .world
                .accounts()
                .iter()
                .map(|a| account_json(emulator, a))
                .collect(),
        )),
        ("POST", ["accounts"]) => {
            // Draw the seed first: creating the account takes the same lock again.
            let seed = emulator.world.rng.lock().next_u64();
            create_account(emulator, &parse::<NewAccount>(body)?, seed)
        }
        ("GET", ["accounts", id]) => Ok(account_json(emulator, &account(emulator, id)?)),
        ("DELETE", ["accounts", id]) => {
            if emulator.world.remove_account(id) {
                Ok(json!({"id": id, "deleted": true}))
            } else {
                Err(Failure::no_such("account", id))
            }
        }
        ("POST", ["accounts", id, "api_version"]) => {
            // An upgrade of the account's default, as in the dashboard: events from now on are
            // made in it; older events keep theirs.
            let change: VersionChange = parse(body)?;
            if !crate::versions::is_valid(&change.api_version) {
                return Err(invalid_version(&change.api_version));
            }
            let account = account(emulator, id)?;
            let previous = std::mem::replace(
                &mut *account.api_version.write(),
                change.api_version.clone(),
            );
            Ok(json!({"id": id, "api_version": change.api_version, "previous": previous}))
        }
        ("POST", ["accounts", id, "keys"]) => {
            let spec: KeySpec = serde_json::from_slice(body).map_err(|e| Failure::invalid(format!("Key spec: {e}. Example: {{\"mode\":\"test\",\"kind\":\"restricted\",\"permissions\":[\"rak_customer_read\"]}}"), None))?;
            let key = emulator.world.create_key(id, &spec)?;
            Ok(json!({"key": key, "account": id, "mode": spec.mode, "kind": spec.kind}))
        }
        ("POST", ["keys", "revoke"]) => {
            let change: KeyChange = parse(body)?;
            emulator.world.change_key(&change.key, true, None)?;
            Ok(json!({"revoked": true}))
        }
        ("POST", ["keys", "permissions"]) => {
            let change: PermissionChange = parse(body)?;
            emulator
                .world
                .set_key_permissions(&change.key, &change.permissions)?;
            Ok(json!({"permissions": change.permissions}))
        }
        ("POST", ["keys", "expire"]) => {
            let change: KeyChange = parse(body)?;
            emulator
                .world
                .change_key(&change.key, false, Some(change.in_seconds.unwrap_or(0)))?;
            Ok(json!({"expires_in": change.in_seconds.unwrap_or(0)}))
        }
        ("POST", ["clock"]) => {
            let change: ClockChange = parse(body)?;
            Ok(json!({"now": emulator.world.advance_clock(change.advance)}))
        }
        ("GET", ["requests"]) => Ok(json!(*emulator.requests.lock())),
        ("DELETE", ["requests"]) => {
            emulator.requests.lock().clear();
            Ok(json!({"cleared": true}))
        }
        ("GET", ["limits"]) => Ok(json!(*emulator.limits.settings.read())),
        ("PUT", ["limits"]) => {
            let settings: LimitSettings = parse(body)?;
            *emulator.limits.settings.write() = settings.clone();
            Ok(json!(settings))
        }
        ("GET", ["faults"]) => Ok(json!(*emulator.limits.faults.read())),
        ("PUT", ["faults"]) => {
            let settings: FaultSettings = parse(body)?;
            *emulator.limits.faults.write() = settings.clone();
            Ok(json!(settings))
        }
        ("GET", ["webhooks"]) => Ok(
            json!({"settings": *emulator.webhooks.settings.read(), "counts": emulator.webhooks.counts}),
        ),
        ("PUT", ["webhooks"]) => {
            let settings: DeliverySettings = parse(body)?;
            *emulator.webhooks.settings.write() = settings.clone();
            Ok(json!(settings))
        }
        ("POST", ["accounts", id, "webhook_endpoints", endpoint, "roll"]) => {
            let roll: Roll = parse(body)?;
            let account = account(emulator, id)?;
            let mode = mode_of(roll.mode.as_deref().unwrap_or("test"))?;
            let mut store = account.mode(mode).write();
            let secret = format!("whsec_{}", emulator.world.rng.lock().alphanumeric(32));
            let secrets = store
                .webhook_secrets
                .get_mut(*endpoint)
                .ok_or_else(|| Failure::no_such("webhook_endpoint", endpoint))?;
            if !roll.keep_old.unwrap_or(true) {
                secrets.clear();
            }
            secrets.push(secret.clone());
            Ok(json!({"secret": secret, "signing_with": secrets.len()}))
        }
        ("POST", ["accounts", id, "activity"]) => {
            let activity: Activity = parse(body)?;
            let account = account(emulator, id)?;
            let mode = mode_of(activity.mode.as_deref().unwrap_or("test"))?;
            let seed = activity
                .seed
                .unwrap_or_else(|| emulator.world.rng.lock().next_u64());
            Ok(json!(seed::simulate_activity(
                emulator,
                &account,
                mode,
                activity.changes,
                seed
            )))
        }
        ("POST", ["accounts", id, "renewals"]) => {
            let renewals: Renewals = parse(body)?;
            let account = account(emulator, id)?;
            let mode = mode_of(renewals.mode.as_deref().unwrap_or("test"))?;
            Ok(json!(seed::renew_subscriptions(
                emulator,
                &account,
                mode,
                renewals.subscriptions
            )))
        }
        ("GET", ["accounts", id, mode, "objects", object_id]) => {
            let account = account(emulator, id)?;
            let store = account.mode(mode_of(mode)?).read();
            let slot = store
                .slot_of(object_id)
                .ok_or_else(|| Failure::no_such("object", object_id))?;
            let stored = store.get(slot);
            Ok(
                json!({"kind": stored.kind.info().object, "deleted": stored.deleted, "object": store.value(slot)}),
            )
        }
        ("GET", ["accounts", id, mode, "export"]) => {
            // Every object of the mode (or of `?kind=`), deleted ones flagged, for comparisons.
            let account = account(emulator, id)?;
            let store = account.mode(mode_of(mode)?).read();
            let params = crate::form::parse(query).unwrap_or_default();
            let only = params
                .get("kind")
                .and_then(Value::as_str)
                .map(|k| {
                    Kind::from_object(k)
                        .ok_or_else(|| Failure::invalid(format!("No kind {k}"), Some("kind")))
                })
                .transpose()?;
            let objects: Vec<Value> = store
                .slots()
                .filter(|&slot| only.is_none_or(|k| store.get(slot).kind == k))
                .map(|slot| {
                    let stored = store.get(slot);
                    json!({"kind": stored.kind.info().object, "deleted": stored.deleted, "object": store.value(slot)})
                })
                .collect();
            Ok(json!({"count": objects.len(), "objects": objects}))
        }
        _ => Err(Failure::unrecognized_url(
            method,
            &format!("/_emulator{rest}"),
        )),
    }
}
