//! Stripe's rate limits and injected faults, both off by default and switchable at runtime
//! through the control API.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::rng::Rng;
use crate::world::Mode;

/// Rate limits as Stripe applies them (API.md §4).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LimitSettings {
    /// Whether requests are limited at all.
    pub enabled: bool,
    /// Requests per second per account in live mode.
    pub live_per_second: f64,
    /// Requests per second per account in test mode.
    pub test_per_second: f64,
    /// Requests per second per account, mode and endpoint.
    pub endpoint_per_second: f64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            enabled: false,
            live_per_second: 100.0,
            test_per_second: 25.0,
            endpoint_per_second: 25.0,
        }
    }
}

/// Fault probabilities (0–1) applied to `/v1` requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct FaultSettings {
    /// 429 `rate_limit` with `Stripe-Should-Retry: true`.
    pub rate_limit: f64,
    /// 429 `lock_timeout` with `Stripe-Should-Retry: true`.
    pub lock_timeout: f64,
    /// 500 `api_error`.
    pub server_error: f64,
    /// 503 `api_error`.
    pub unavailable: f64,
    /// Answer after `slow_ms`.
    pub slow: f64,
    pub slow_ms: u64,
    /// Close the connection with a reset before answering.
    pub reset: f64,
    /// Send the headers and half of the body, then close.
    pub truncated: f64,
    /// A 200 with an HTML page instead of JSON.
    pub html: f64,
}

/// What the dice decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Reset,
    Truncated,
    Html,
    Fail(Box<Failure>),
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Token buckets per account/mode and per account/mode/endpoint, plus the fault dice.
#[derive(Debug)]
pub struct Limits {
    pub settings: RwLock<LimitSettings>,
    pub faults: RwLock<FaultSettings>,
    buckets: Mutex<HashMap<String, Bucket>>,
    dice: Mutex<Rng>,
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status && self.body == other.body
    }
}

impl Limits {
    pub fn new(seed: u64) -> Self {
        Limits {
            settings: RwLock::new(LimitSettings::default()),
            faults: RwLock::new(FaultSettings::default()),
            buckets: Mutex::new(HashMap::new()),
            dice: Mutex::new(Rng::new(seed ^ 0xFA17)),
        }
    }

    /// Takes one token from the account's and the endpoint's buckets, or answers 429.
    pub fn admit(&self, account: &str, mode: Mode, endpoint: &str) -> Result<(), Failure> {
        let settings = self.settings.read().clone();
        if !settings.enabled {
            return Ok(());
        }
        let global_rate = if mode == Mode::Live {
            settings.live_per_second
        } else {
            settings.test_per_second
        };
        let global = format!("{account}:{}", mode.as_str());
        let per_endpoint = format!("{global}:{endpoint}");
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let mut available = |key: &str, rate: f64| -> bool {
            let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
                tokens: rate,
                refilled: now,
            });
            let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(rate.max(1.0));
            bucket.refilled = now;
            bucket.tokens >= 1.0
        };
        if !available(&global, global_rate) {
            return Err(Failure::rate_limited(mode.livemode(), "global-rate"));
        }
        if !available(&per_endpoint, settings.endpoint_per_second) {
            return Err(Failure::rate_limited(mode.livemode(), "endpoint-rate"));
        }
        for key in [&global, &per_endpoint] {
            if let Some(bucket) = buckets.get_mut(key.as_str()) {
                bucket.tokens -= 1.0;
            }
        }
        Ok(())
    }

    /// Rolls the fault dice for one request: a fault to inject, and a delay to add first.
    pub fn roll(&self, livemode: bool) -> (Option<Fault>, Option<u64>) {
        let faults = self.faults.read().clone();
        if faults == FaultSettings::default() {
            return (None, None);
        }
        let mut dice = self.dice.lock();
        let delay = dice.chance(faults.slow).then_some(faults.slow_ms);
        let fault = if dice.chance(faults.reset) {
            Some(Fault::Reset)
        } else if dice.chance(faults.truncated) {
            Some(Fault::Truncated)
        } else if dice.chance(faults.html) {
            Some(Fault::Html)
        } else if dice.chance(faults.server_error) {
            Some(Fault::Fail(Box::new(Failure::api_error(500))))
        } else if dice.chance(faults.unavailable) {
            Some(Fault::Fail(Box::new(Failure::api_error(503))))
        } else if dice.chance(faults.rate_limit) {
            Some(Fault::Fail(Box::new(Failure::rate_limited(
                livemode,
                "global-rate",
            ))))
        } else if dice.chance(faults.lock_timeout) {
            Some(Fault::Fail(Box::new(Failure::lock_timeout())))
        } else {
            None
        };
        (fault, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refuse_beyond_the_rate_and_name_the_reason() {
        let limits = Limits::new(1);
        limits.settings.write().enabled = true;
        let admitted = (0..40)
            .filter(|_| {
                limits
                    .admit("acct_1", Mode::Test, "GET /v1/customers")
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 25);
        let refusal = limits
            .admit("acct_1", Mode::Test, "GET /v1/customers")
            .unwrap_err();
        assert_eq!(refusal.status, 429);
        assert!(
            limits
                .admit("acct_2", Mode::Test, "GET /v1/customers")
                .is_ok(),
            "one account never slows another"
        );
    }
}
