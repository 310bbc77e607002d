//! Pacing requests to a share of Stripe's rate limits (API.md §4): one [`Pacer`] per account and
//! mode, shared by every task that talks to that account, with a global and a per-endpoint budget.
//!
//! Each budget is a GCRA ("virtual scheduling") limiter: a request reserves the next free slot and
//! sleeps until it, so waiters are served in order and no lock is held while sleeping. Different
//! accounts have different pacers and never wait for each other.
#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::key::Mode;

/// Stripe's live-mode limit per account, requests per second.
pub const LIVE_RATE: f64 = 100.0;
/// Stripe's test-mode limit per account, requests per second.
pub const TEST_RATE: f64 = 25.0;
/// Stripe's limit for any single endpoint, requests per second.
pub const ENDPOINT_RATE: f64 = 25.0;

/// Endpoint budgets kept before idle ones are forgotten.
const MAX_IDLE_ENDPOINTS: usize = 256;

/// One GCRA budget: `interval` between requests, `tolerance` of burst.
#[derive(Debug)]
struct Gcra {
    interval: Duration,
    tolerance: Duration,
    /// Theoretical arrival time of the next request.
    tat: Option<Instant>,
}

impl Gcra {
    /// A budget of `rate` requests per second with a burst of a tenth of a second's worth (at least
    /// one request). A non-finite rate means no limit.
    fn new(rate: f64) -> Gcra {
        if !rate.is_finite() {
            return Gcra {
                interval: Duration::ZERO,
                tolerance: Duration::ZERO,
                tat: None,
            };
        }
        let rate = rate.max(0.001);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let burst = (rate / 10.0).ceil().max(1.0) as u32;
        Gcra {
            interval,
            tolerance: interval * (burst - 1),
            tat: None,
        }
    }

    /// Reserves the next slot at or after `now` and returns when it may be used.
    fn reserve(&mut self, now: Instant) -> Instant {
        if self.interval.is_zero() {
            return now;
        }
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let at = tat
            .checked_sub(self.tolerance)
            .map_or(now, |at| at.max(now));
        self.tat = Some(tat + self.interval);
        at
    }

    /// Gives back a slot reserved and never used (its request was abandoned while it waited):
    /// the schedule moves back one interval, never before `now`.
    fn release(&mut self, now: Instant) {
        if let Some(tat) = self.tat {
            let back = tat.checked_sub(self.interval).unwrap_or(now).max(now);
            self.tat = Some(back);
        }
    }

    /// No slot before `until`.
    fn hold_until(&mut self, until: Instant) {
        let tat = until + self.tolerance;
        self.tat = Some(self.tat.map_or(tat, |old| old.max(tat)));
    }

    fn idle(&self, now: Instant) -> bool {
        self.tat.is_none_or(|tat| tat <= now)
    }
}

/// The request budget of one account in one mode: a global rate and a per-endpoint rate.
///
/// Share it (`Arc<Pacer>`, or clone the `Client`) between every task of the account.
#[derive(Debug)]
pub struct Pacer {
    global_rate: f64,
    endpoint_rate: f64,
    global: Mutex<Gcra>,
    endpoints: Mutex<HashMap<String, Gcra>>,
}

impl Pacer {
    /// The budget for an account of `mode`: `share` of Stripe's limit (live 100/s, test 25/s), and
    /// `share` of 25/s for each endpoint. `share` must be positive; infinity means no pacing.
    pub fn new(mode: Mode, share: f64) -> Pacer {
        let base = match mode {
            Mode::Live => LIVE_RATE,
            Mode::Test => TEST_RATE,
        };
        Pacer::with_rates(base * share, ENDPOINT_RATE * share)
    }

    /// A budget of explicit rates in requests per second (non-finite: unlimited).
    pub fn with_rates(global_per_sec: f64, endpoint_per_sec: f64) -> Pacer {
        Pacer {
            global_rate: global_per_sec,
            endpoint_rate: endpoint_per_sec,
            global: Mutex::new(Gcra::new(global_per_sec)),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The global rate, requests per second.
    pub fn rate(&self) -> f64 {
        self.global_rate
    }

    /// The per-endpoint rate, requests per second.
    pub fn endpoint_rate(&self) -> f64 {
        self.endpoint_rate
    }

    /// Waits for a slot on `endpoint` (see [`endpoint_of`]) and then for a global slot. A slot
    /// is charged for the request about to be sent: a caller dropped while it waits (a timeout,
    /// a client gone) gives its slots back, so that abandoned waits do not push the schedule of
    /// every later request further out.
    pub async fn acquire(&self, endpoint: &str) {
        let at = {
            let mut endpoints = self.endpoints.lock();
            let now = Instant::now();
            if endpoints.len() > MAX_IDLE_ENDPOINTS {
                endpoints.retain(|_, gcra| !gcra.idle(now));
            }
            endpoints
                .entry(endpoint.to_owned())
                .or_insert_with(|| Gcra::new(self.endpoint_rate))
                .reserve(now)
        };
        let mut unused = Unused {
            pacer: self,
            endpoint: Some(endpoint),
            global: false,
        };
        wait_until(at).await;
        let at = self.global.lock().reserve(Instant::now());
        unused.global = true;
        wait_until(at).await;
        unused.endpoint = None;
        unused.global = false;
    }

    /// Holds every request of the account back for `delay` (after a global rate-limit answer).
    pub fn hold(&self, delay: Duration) {
        self.global.lock().hold_until(Instant::now() + delay);
    }

    /// Holds the requests to `endpoint` back for `delay` (after an endpoint rate-limit answer).
    pub fn hold_endpoint(&self, endpoint: &str, delay: Duration) {
        let until = Instant::now() + delay;
        self.endpoints
            .lock()
            .entry(endpoint.to_owned())
            .or_insert_with(|| Gcra::new(self.endpoint_rate))
            .hold_until(until);
    }
}

/// The slots an [`Pacer::acquire`] holds while it waits; given back if it is dropped then.
struct Unused<'a> {
    pacer: &'a Pacer,
    endpoint: Option<&'a str>,
    global: bool,
}

impl Drop for Unused<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        if let Some(endpoint) = self.endpoint
            && let Some(gcra) = self.pacer.endpoints.lock().get_mut(endpoint)
        {
            gcra.release(now);
        }
        if self.global {
            self.pacer.global.lock().release(now);
        }
    }
}

/// Sleeps until `at`, unless it has come: tokio's timer rounds a deadline up to its next
/// millisecond tick, so sleeping until a moment already past would still cost about a
/// millisecond per request.
async fn wait_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

/// Hands out one [`Pacer`] per (account, mode), so that clients made separately for one account
/// still share its budget. Pacers no longer used by any client are dropped.
#[derive(Debug, Default)]
pub struct PacerRegistry {
    pacers: Mutex<HashMap<(String, Mode), Weak<Pacer>>>,
}

impl PacerRegistry {
    /// An empty registry.
    pub fn new() -> PacerRegistry {
        PacerRegistry::default()
    }

    /// The pacer of `account` (any stable name: an `acct_…` id, or the vault's id before the account
    /// id is known) in `mode`, made with `share` if there is none yet (the first share wins).
    pub fn pacer(&self, account: &str, mode: Mode, share: f64) -> Arc<Pacer> {
        let mut pacers = self.pacers.lock();
        let key = (account.to_owned(), mode);
        if let Some(pacer) = pacers.get(&key).and_then(Weak::upgrade) {
            return pacer;
        }
        pacers.retain(|_, weak| weak.strong_count() > 0);
        let pacer = Arc::new(Pacer::new(mode, share));
        pacers.insert(key, Arc::downgrade(&pacer));
        pacer
    }
}

/// The endpoint a path counts against: its resource, e.g.
/// `/v1/customers/cus_NffrFeUfNV2Hib/balance_transactions?limit=3` → `/v1/customers`.
///
/// Lists under an object count against their parent resource, the conservative reading of
/// Stripe's per-endpoint limit (the emulator counts them so too: pacing them as separate
/// endpoints drew 429s in live mode). Namespaced resources keep their namespace
/// (`/v1/checkout/sessions`); search keeps its own budget (`/v1/customers/search`).
pub fn endpoint_of(path: &str) -> String {
    const NAMESPACES: &[&str] = &[
        "apps",
        "billing",
        "billing_portal",
        "checkout",
        "climate",
        "entitlements",
        "financial_connections",
        "forwarding",
        "identity",
        "issuing",
        "radar",
        "reporting",
        "tax",
        "terminal",
        "test_helpers",
        "treasury",
    ];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (version, rest) = match segments.split_first() {
        Some((first, rest))
            if first.starts_with('v') && first[1..].chars().all(|c| c.is_ascii_digit()) =>
        {
            (Some(*first), rest)
        }
        _ => (None, segments.as_slice()),
    };
    let take = if rest.first().is_some_and(|s| NAMESPACES.contains(s)) {
        2
    } else {
        1
    };
    let mut parts: Vec<&str> = version
        .into_iter()
        .chain(rest.iter().take(take).copied())
        .collect();
    if rest.get(take) == Some(&"search") {
        parts.push("search");
    }
    if parts.is_empty() {
        return "/".to_owned();
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_strip_ids_and_queries() {
        assert_eq!(endpoint_of("/v1/customers"), "/v1/customers");
        assert_eq!(
            endpoint_of("/v1/customers/cus_NffrFeUfNV2Hib"),
            "/v1/customers"
        );
        assert_eq!(
            endpoint_of("/v1/customers?limit=100&starting_after=cus_1"),
            "/v1/customers"
        );
        assert_eq!(
            endpoint_of("/v1/checkout/sessions/cs_test_a1B2/line_items"),
            "/v1/checkout/sessions"
        );
        assert_eq!(
            endpoint_of("/v1/customers/cus_X1/tax_ids?limit=100"),
            "/v1/customers"
        );
        assert_eq!(endpoint_of("/v1/customers/search"), "/v1/customers/search");
        assert_eq!(endpoint_of(""), "/");
    }

    #[test]
    fn gcra_allows_a_small_burst_then_spaces_requests() {
        let mut gcra = Gcra::new(20.0); // interval 50 ms, burst 2
        let t0 = Instant::now();
        assert_eq!(gcra.reserve(t0), t0);
        assert_eq!(gcra.reserve(t0), t0);
        assert_eq!(gcra.reserve(t0), t0 + Duration::from_millis(50));
        assert_eq!(gcra.reserve(t0), t0 + Duration::from_millis(100));
        // After a long idle time the burst is available again.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(gcra.reserve(later), later);
        assert_eq!(gcra.reserve(later), later);
        gcra.hold_until(later + Duration::from_secs(1));
        assert!(gcra.reserve(later) >= later + Duration::from_secs(1));
        let mut unlimited = Gcra::new(f64::INFINITY);
        assert_eq!(unlimited.reserve(t0), t0);
        assert_eq!(unlimited.reserve(t0), t0);
    }

    #[test]
    fn budgets_follow_mode_and_share() {
        let live = Pacer::new(Mode::Live, 0.5);
        assert_eq!((live.rate(), live.endpoint_rate()), (50.0, 12.5));
        let test = Pacer::new(Mode::Test, 0.5);
        assert_eq!((test.rate(), test.endpoint_rate()), (12.5, 12.5));
    }

    #[tokio::test]
    async fn n_requests_take_at_least_their_budget() {
        // 20/s global, burst 2: 12 requests need at least (12 - 2) / 20 = 0.5 s.
        let pacer = Pacer::with_rates(20.0, f64::INFINITY);
        let start = std::time::Instant::now();
        for i in 0..12 {
            pacer.acquire(&format!("/v1/e{i}")).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn one_endpoint_is_capped_apart_from_the_others() {
        // Endpoint 10/s (burst 1): 6 calls to one endpoint need at least 0.5 s ...
        let pacer = Pacer::with_rates(f64::INFINITY, 10.0);
        let start = std::time::Instant::now();
        for _ in 0..6 {
            pacer.acquire("/v1/customers").await;
        }
        let one_endpoint = start.elapsed();
        assert!(
            one_endpoint >= Duration::from_millis(450),
            "{one_endpoint:?}"
        );
        // ... and a call to another endpoint right after does not wait behind them.
        let start = std::time::Instant::now();
        pacer.acquire("/v1/invoices").await;
        assert!(start.elapsed() < one_endpoint, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn an_abandoned_wait_gives_its_slot_back() {
        // 10/s, burst 1: ten callers that give up while waiting (a client's timeout) must not
        // push the next caller's slot a second out.
        let pacer = Pacer::with_rates(10.0, f64::INFINITY);
        pacer.acquire("/v1/customers").await;
        for _ in 0..10 {
            let waited =
                tokio::time::timeout(Duration::from_millis(5), pacer.acquire("/v1/customers"))
                    .await;
            assert!(waited.is_err(), "the wait was cut short");
        }
        let start = std::time::Instant::now();
        pacer.acquire("/v1/customers").await;
        assert!(
            start.elapsed() < Duration::from_millis(150),
            "the next request waited {:?} behind abandoned ones",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn accounts_do_not_block_each_other() {
        let registry = PacerRegistry::new();
        let busy = registry.pacer("acct_A", Mode::Test, 0.4); // 10/s
        assert!(Arc::ptr_eq(
            &busy,
            &registry.pacer("acct_A", Mode::Test, 1.0)
        ));
        let other = registry.pacer("acct_B", Mode::Test, 0.4);
        assert!(!Arc::ptr_eq(&busy, &other));
        assert!(!Arc::ptr_eq(
            &busy,
            &registry.pacer("acct_A", Mode::Live, 0.4)
        ));

        let saturate = {
            let busy = busy.clone();
            tokio::spawn(async move {
                for _ in 0..15 {
                    busy.acquire("/v1/customers").await;
                }
                std::time::Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        other.acquire("/v1/customers").await;
        let other_done = std::time::Instant::now();
        let busy_done = saturate.await.unwrap();
        assert!(other_done < busy_done, "account B waited for account A");
    }

    #[test]
    fn unused_pacers_are_dropped() {
        let registry = PacerRegistry::new();
        let first = registry.pacer("acct_A", Mode::Live, 0.5);
        let weak = Arc::downgrade(&first);
        drop(first);
        assert!(weak.upgrade().is_none());
        let _again = registry.pacer("acct_A", Mode::Live, 0.5);
    }
}
