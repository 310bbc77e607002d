//! Everything the emulator knows: accounts (each with a test and a live [`ModeStore`]), API keys
//! with their permissions, and the clock, which tests may move forward.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::catalog::KINDS;
use crate::failure::Failure;
use crate::rng::Rng;
use crate::store::ModeStore;

/// Test or live: the key decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn livemode(self) -> bool {
        self == Mode::Live
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }
}

/// Secret, restricted or publishable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Secret,
    Restricted,
    Publishable,
}

impl KeyKind {
    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Secret => "sk",
            KeyKind::Restricted => "rk",
            KeyKind::Publishable => "pk",
        }
    }
}

/// What a restricted key may do with one permission stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

/// One API key.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub secret: String,
    pub account: String,
    pub mode: Mode,
    pub kind: KeyKind,
    /// For restricted keys: permission stem (`customer`) → access. Write implies read.
    pub permissions: HashMap<String, Access>,
    pub revoked: bool,
    /// Unix time after which the key answers `api_key_expired`.
    pub expires_at: Option<i64>,
}

impl KeyRecord {
    /// Whether the key grants `access` on `stem` (secret keys grant everything).
    pub fn allows(&self, stem: &str, access: Access) -> bool {
        if self.kind == KeyKind::Secret {
            return true;
        }
        let granted = |s: &str| self.permissions.get(s).is_some_and(|&have| have >= access);
        granted(stem)
            || (stem == "balance"
                && access == Access::Read
                && granted("balance_transaction_source"))
    }

    /// The `rak_…` names this key holds, sorted.
    pub fn permission_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .permissions
            .iter()
            .map(|(stem, access)| {
                format!(
                    "rak_{stem}_{}",
                    if *access == Access::Write {
                        "write"
                    } else {
                        "read"
                    }
                )
            })
            .collect();
        names.sort();
        names
    }
}

/// Parses `rak_customer_read`, `customer_write` or `customer:read` into a stem and an access.
pub fn parse_permission(name: &str) -> Option<(String, Access)> {
    let name = name.trim().strip_prefix("rak_").unwrap_or(name.trim());
    let (stem, access) = name.rsplit_once(['_', ':'])?;
    let access = match access {
        "read" => Access::Read,
        "write" => Access::Write,
        _ => return None,
    };
    (!stem.is_empty()).then(|| (stem.to_owned(), access))
}

/// Permission names (`rak_customer_write`) as stems and the most access each is given.
fn permission_map(names: &[String]) -> Result<HashMap<String, Access>, Failure> {
    let mut permissions = HashMap::new();
    for name in names {
        let (stem, access) = parse_permission(name).ok_or_else(|| {
            Failure::invalid(format!("`{name}` is not a permission; use names like rak_customer_read or rak_customer_write."), Some("permissions"))
        })?;
        let entry = permissions.entry(stem).or_insert(access);
        *entry = (*entry).max(access);
    }
    Ok(permissions)
}

/// Every read permission the catalog uses, plus the few account-level ones: a key that "may read
/// everything".
pub fn all_read_permissions() -> Vec<String> {
    let mut stems: Vec<&str> = KINDS.iter().map(|k| k.permission).collect();
    stems.extend(["balance", "connected_account"]);
    stems.sort();
    stems.dedup();
    stems.into_iter().map(|s| format!("rak_{s}_read")).collect()
}

/// One Stripe account with its two modes.
#[derive(Debug)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub email: String,
    pub created: i64,
    /// The account's default API version: events are rendered in the default of when they were
    /// made, requests without `Stripe-Version` in the current one.
    pub api_version: RwLock<String>,
    /// Whether any event of the account was made in a version that renders differently from the
    /// stored shape (else event pages need no rendering).
    pub versioned_events: std::sync::atomic::AtomicBool,
    pub test: RwLock<ModeStore>,
    pub live: RwLock<ModeStore>,
}

impl Account {
    pub fn mode(&self, mode: Mode) -> &RwLock<ModeStore> {
        match mode {
            Mode::Test => &self.test,
            Mode::Live => &self.live,
        }
    }

    /// The `account` object of `GET /v1/account`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "account",
            "business_profile": {"mcc": null, "name": self.name, "product_description": null, "support_address": null,
                                 "support_email": self.email, "support_phone": null, "support_url": null, "url": null},
            "business_type": "company",
            "capabilities": {"card_payments": "active", "transfers": "active"},
            "charges_enabled": true,
            "country": "US",
            "created": self.created,
            "default_currency": "usd",
            "details_submitted": true,
            "email": self.email,
            "metadata": {},
            "payouts_enabled": true,
            "settings": {
                "branding": {"icon": null, "logo": null, "primary_color": "#635bff", "secondary_color": null},
                "card_payments": {"decline_on": {"avs_failure": false, "cvc_failure": false}, "statement_descriptor_prefix": null,
                                  "statement_descriptor_prefix_kana": null, "statement_descriptor_prefix_kanji": null},
                "dashboard": {"display_name": self.name, "timezone": "Etc/UTC"},
                "payments": {"statement_descriptor": "STRIPE MIRROR", "statement_descriptor_kana": null, "statement_descriptor_kanji": null,
                             "statement_descriptor_prefix_kana": null, "statement_descriptor_prefix_kanji": null}
            },
            "type": "standard"
        })
    }
}

/// Accounts, keys and the clock.
#[derive(Debug)]
pub struct World {
    accounts: RwLock<Vec<Arc<Account>>>,
    accounts_by_id: RwLock<HashMap<String, Arc<Account>>>,
    keys: RwLock<HashMap<String, KeyRecord>>,
    clock_offset: AtomicI64,
    pub rng: Mutex<Rng>,
}

/// What a new key should be.
#[derive(Debug, Clone, Deserialize)]
pub struct KeySpec {
    pub mode: Mode,
    pub kind: KeyKind,
    /// `rak_…_read|write` names, for restricted keys.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Seconds from now until the key expires.
    #[serde(default)]
    pub expires_in: Option<i64>,
}

impl World {
    pub fn new(seed: u64) -> Self {
        World {
            accounts: RwLock::new(Vec::new()),
            accounts_by_id: RwLock::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            clock_offset: AtomicI64::new(0),
            rng: Mutex::new(Rng::new(seed)),
        }
    }

    /// The emulator's "now": the real clock plus however far tests moved it.
    pub fn now(&self) -> i64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        real + self.clock_offset.load(Ordering::Relaxed)
    }

    /// Moves the clock forward (or back) by `seconds`; returns the new now.
    pub fn advance_clock(&self, seconds: i64) -> i64 {
        self.clock_offset.fetch_add(seconds, Ordering::Relaxed);
        self.now()
    }

    /// Creates an account with the given id (or a random one) and name.
    pub fn create_account(&self, id: Option<String>, name: &str) -> Result<Arc<Account>, Failure> {
        let id = id.unwrap_or_else(|| {
            let mut rng = self.rng.lock();
            format!("acct_1{}", rng.alphanumeric(15))
        });
        if !id.starts_with("acct_") {
            return Err(Failure::invalid(
                "Account ids start with acct_.",
                Some("id"),
            ));
        }
        let slug: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        let account = Arc::new(Account {
            email: format!(
                "billing@{}.example",
                if slug.is_empty() { "account" } else { &slug }
            ),
            name: name.to_owned(),
            created: self.now() - 4 * 365 * 86_400,
            api_version: RwLock::new(crate::API_VERSION.to_owned()),
            versioned_events: Default::default(),
            test: RwLock::new(ModeStore::new(false)),
            live: RwLock::new(ModeStore::new(true)),
            id: id.clone(),
        });
        let mut by_id = self.accounts_by_id.write();
        if by_id.contains_key(&id) {
            return Err(Failure::invalid(
                format!("An account with id {id} already exists."),
                Some("id"),
            ));
        }
        by_id.insert(id, account.clone());
        self.accounts.write().push(account.clone());
        Ok(account)
    }

    pub fn account(&self, id: &str) -> Option<Arc<Account>> {
        self.accounts_by_id.read().get(id).cloned()
    }

    /// How many accounts exist, without copying the list.
    pub fn account_count(&self) -> usize {
        self.accounts.read().len()
    }

    pub fn accounts(&self) -> Vec<Arc<Account>> {
        self.accounts.read().clone()
    }

    /// Makes a key for `account`; returns its secret.
    pub fn create_key(&self, account: &str, spec: &KeySpec) -> Result<String, Failure> {
        if self.account(account).is_none() {
            return Err(Failure::invalid(
                format!("No such account: {account}"),
                Some("account"),
            ));
        }
        let permissions = permission_map(&spec.permissions)?;
        let secret = {
            let mut rng = self.rng.lock();
            format!(
                "{}_{}_{}",
                spec.kind.prefix(),
                spec.mode.as_str(),
                rng.alphanumeric(99)
            )
        };
        let record = KeyRecord {
            secret: secret.clone(),
            account: account.to_owned(),
            mode: spec.mode,
            kind: spec.kind,
            permissions,
            revoked: false,
            expires_at: spec.expires_in.map(|s| self.now() + s),
        };
        self.keys.write().insert(secret.clone(), record);
        Ok(secret)
    }

    pub fn key(&self, secret: &str) -> Option<KeyRecord> {
        self.keys.read().get(secret).cloned()
    }

    /// Keys of an account, for the control API.
    pub fn keys_of(&self, account: &str) -> Vec<KeyRecord> {
        let mut keys: Vec<KeyRecord> = self
            .keys
            .read()
            .values()
            .filter(|k| k.account == account)
            .cloned()
            .collect();
        keys.sort_by(|a, b| {
            (a.mode.as_str(), a.secret.as_str()).cmp(&(b.mode.as_str(), b.secret.as_str()))
        });
        keys
    }

    /// Gives a restricted key other permissions, as editing it in Stripe's dashboard does.
    pub fn set_key_permissions(&self, secret: &str, permissions: &[String]) -> Result<(), Failure> {
        let permissions = permission_map(permissions)?;
        let mut keys = self.keys.write();
        let record = keys
            .get_mut(secret)
            .ok_or_else(|| Failure::invalid("No such key.", Some("key")))?;
        record.permissions = permissions;
        Ok(())
    }

    /// Revokes a key now, or makes it expire after `expires_in` seconds.
    pub fn change_key(
        &self,
        secret: &str,
        revoke: bool,
        expires_in: Option<i64>,
    ) -> Result<(), Failure> {
        let now = self.now();
        let mut keys = self.keys.write();
        let record = keys
            .get_mut(secret)
            .ok_or_else(|| Failure::invalid("No such key.", Some("key")))?;
        if revoke {
            record.revoked = true;
        }
        if let Some(seconds) = expires_in {
            record.expires_at = Some(now + seconds);
        }
        Ok(())
    }

    /// Removes an account and its keys.
    pub fn remove_account(&self, id: &str) -> bool {
        let removed = self.accounts_by_id.write().remove(id).is_some();
        self.accounts.write().retain(|a| a.id != id);
        self.keys.write().retain(|_, k| k.account != id);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse_and_write_implies_read() {
        assert_eq!(
            parse_permission("rak_customer_read"),
            Some(("customer".into(), Access::Read))
        );
        assert_eq!(
            parse_permission("plan_write"),
            Some(("plan".into(), Access::Write))
        );
        assert_eq!(parse_permission("nonsense"), None);
        let world = World::new(1);
        world.create_account(Some("acct_1".into()), "Acme").unwrap();
        let spec = KeySpec {
            mode: Mode::Test,
            kind: KeyKind::Restricted,
            permissions: vec![
                "rak_customer_write".into(),
                "rak_balance_transaction_source_read".into(),
            ],
            expires_in: None,
        };
        let key = world
            .key(&world.create_key("acct_1", &spec).unwrap())
            .unwrap();
        assert!(key.allows("customer", Access::Read));
        assert!(key.allows("balance", Access::Read));
        assert!(!key.allows("plan", Access::Read));
        assert!(key.secret.starts_with("rk_test_"));
    }
}
