//! Period figures from movements (METRICS §5.2–5.4): MRR at each end, the five movements,
//! subscribers, and the rates derived from them, per currency.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::movements::{Movement, MovementKind};
use crate::mrr::Settings;

/// One period of one currency. Amounts are millionths of a minor unit, exact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodMetrics {
    pub start: i64,
    pub end: i64,
    pub currency: String,
    pub mrr_start: i128,
    pub mrr_end: i128,
    pub new: i128,
    pub reactivation: i128,
    pub expansion: i128,
    pub contraction: i128,
    pub churn: i128,
    pub subscribers_start: u64,
    pub subscribers_end: u64,
    pub new_subscribers: u64,
    pub reactivated_subscribers: u64,
    pub churned_subscribers: u64,
    /// Churned ÷ (active 30 days before the period's end + new since), METRICS §5.3.
    pub subscriber_churn_rate: Option<f64>,
    pub gross_mrr_churn_rate: Option<f64>,
    pub net_mrr_churn_rate: Option<f64>,
    pub quick_ratio: Option<f64>,
    /// MRR ÷ subscribers at the period's end.
    pub arpa: Option<f64>,
    /// ARPA ÷ subscriber churn rate (none when nobody churned).
    pub ltv: Option<f64>,
}

impl PeriodMetrics {
    pub fn movement(&self, kind: MovementKind) -> i128 {
        match kind {
            MovementKind::New => self.new,
            MovementKind::Reactivation => self.reactivation,
            MovementKind::Expansion => self.expansion,
            MovementKind::Contraction => self.contraction,
            MovementKind::Churn => self.churn,
        }
    }
}

/// The rolling window of the subscriber churn rate.
const CHURN_WINDOW_SECS: i64 = 30 * 86_400;

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den != 0.0).then(|| num / den)
}

/// Subscribers (customers with MRR above zero) of `currency` just before `at`.
fn subscribers_before(movements: &[&Movement], at: i64) -> u64 {
    let mut count: i64 = 0;
    for movement in movements.iter().take_while(|m| m.at < at) {
        match movement.kind {
            MovementKind::New | MovementKind::Reactivation => count += 1,
            MovementKind::Churn => count -= 1,
            _ => {}
        }
    }
    count.max(0) as u64
}

/// The figures of each period, for each currency that has any movement before the last end.
/// `movements` must be in time order (as [`crate::movements::movements`] gives them).
pub fn period_metrics(
    movements: &[Movement],
    periods: &[(i64, i64)],
    settings: &Settings,
) -> Vec<PeriodMetrics> {
    let currencies: BTreeSet<&str> = movements.iter().map(|m| m.currency.as_str()).collect();
    let mut out = Vec::new();
    for currency in currencies {
        let of: Vec<&Movement> = movements
            .iter()
            .filter(|m| m.currency == currency)
            .collect();
        let mrr_before = |at: i64| -> i128 {
            of.iter()
                .take_while(|m| m.at < at)
                .map(|m| m.signed())
                .sum()
        };
        for &(start, end) in periods {
            let inside: Vec<&Movement> = of
                .iter()
                .copied()
                .filter(|m| m.at >= start && m.at < end)
                .collect();
            // ProfitWell's choice: a customer who arrives and leaves within the period never
            // appears in it (their movements net to zero, so the identity still holds).
            let passing: HashSet<&str> = if settings.net_same_period_new_churn {
                let mut first: HashMap<&str, &Movement> = HashMap::new();
                let mut last: HashMap<&str, &Movement> = HashMap::new();
                for m in &inside {
                    first.entry(m.customer.as_str()).or_insert(m);
                    last.insert(m.customer.as_str(), m);
                }
                first
                    .iter()
                    .filter(|(customer, m)| {
                        m.kind == MovementKind::New
                            && last.get(*customer).is_some_and(|l| l.mrr_after == 0)
                    })
                    .map(|(customer, _)| *customer)
                    .collect()
            } else {
                HashSet::new()
            };
            let counted: Vec<&Movement> = inside
                .iter()
                .copied()
                .filter(|m| !passing.contains(m.customer.as_str()))
                .collect();
            let sum = |kind: MovementKind| -> i128 {
                counted
                    .iter()
                    .filter(|m| m.kind == kind)
                    .map(|m| m.amount)
                    .sum()
            };
            let customers = |kind: MovementKind| -> u64 {
                counted.iter().filter(|m| m.kind == kind).count() as u64
            };
            let (new, reactivation, expansion, contraction, churn) = (
                sum(MovementKind::New),
                sum(MovementKind::Reactivation),
                sum(MovementKind::Expansion),
                sum(MovementKind::Contraction),
                sum(MovementKind::Churn),
            );
            let mrr_start = mrr_before(start);
            let mrr_end = mrr_before(end);
            let subscribers_end = subscribers_before(&of, end);
            // Rolling window ending at the period's end.
            let window_start = end - CHURN_WINDOW_SECS;
            let window: Vec<&Movement> = of
                .iter()
                .copied()
                .filter(|m| m.at >= window_start && m.at < end)
                .collect();
            let churned = window
                .iter()
                .filter(|m| m.kind == MovementKind::Churn)
                .count();
            // New subscribers only, as METRICS §5.3 (and Stripe) define the denominator.
            let joined = window
                .iter()
                .filter(|m| m.kind == MovementKind::New)
                .count();
            let active_then = subscribers_before(&of, window_start);
            let subscriber_churn_rate = ratio(churned as f64, (active_then + joined as u64) as f64);
            let arpa = ratio(mrr_end as f64 / 1e6, subscribers_end as f64);
            out.push(PeriodMetrics {
                start,
                end,
                currency: currency.to_owned(),
                mrr_start,
                mrr_end,
                new,
                reactivation,
                expansion,
                contraction,
                churn,
                subscribers_start: subscribers_before(&of, start),
                subscribers_end,
                new_subscribers: customers(MovementKind::New),
                reactivated_subscribers: customers(MovementKind::Reactivation),
                churned_subscribers: customers(MovementKind::Churn),
                subscriber_churn_rate,
                gross_mrr_churn_rate: ratio((churn + contraction) as f64, mrr_start as f64),
                net_mrr_churn_rate: ratio(
                    (churn + contraction - expansion - reactivation) as f64,
                    mrr_start as f64,
                ),
                quick_ratio: ratio((new + expansion) as f64, (contraction + churn) as f64),
                arpa,
                ltv: arpa
                    .zip(subscriber_churn_rate.filter(|rate| *rate > 0.0))
                    .map(|(arpa, rate)| arpa / rate),
            });
        }
    }
    out
}
