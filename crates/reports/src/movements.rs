//! MRR over time (METRICS §5.2): each subscription's versions give its MRR at every instant
//! it may change; per customer and currency those changes become movements (new, expansion,
//! contraction, churn, reactivation). MRR at any instant is the sum of the movements before
//! it, so `MRR(end) − MRR(start) = Σ movements in [start, end)` holds exactly, by construction.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::mrr::{Settings, subscription_mrr, time_breaks};

/// One subscription's history: its versions in time order, each holding from its instant until
/// the next. Before the first version it did not exist (or is unknown).
#[derive(Debug, Clone)]
pub struct SubscriptionHistory {
    pub id: String,
    pub customer: String,
    pub versions: Vec<(i64, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    New,
    Reactivation,
    Expansion,
    Contraction,
    Churn,
}

impl MovementKind {
    pub const ALL: [MovementKind; 5] = [
        MovementKind::New,
        MovementKind::Reactivation,
        MovementKind::Expansion,
        MovementKind::Contraction,
        MovementKind::Churn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MovementKind::New => "new",
            MovementKind::Reactivation => "reactivation",
            MovementKind::Expansion => "expansion",
            MovementKind::Contraction => "contraction",
            MovementKind::Churn => "churn",
        }
    }

    /// +1 for what adds MRR, −1 for what takes it away.
    pub fn sign(self) -> i128 {
        match self {
            MovementKind::Contraction | MovementKind::Churn => -1,
            _ => 1,
        }
    }
}

/// A change of one customer's MRR in one currency. `amount` is positive, in millionths of a
/// minor unit; `mrr_before`/`mrr_after` are the customer's MRR around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Movement {
    pub at: i64,
    pub customer: String,
    pub currency: String,
    pub kind: MovementKind,
    pub amount: i128,
    pub mrr_before: i128,
    pub mrr_after: i128,
}

impl Movement {
    pub fn signed(&self) -> i128 {
        self.kind.sign() * self.amount
    }
}

/// A subscription's MRR (micros) from an instant on.
struct Point {
    at: i64,
    subscription: usize,
    currency: String,
    micros: i128,
}

/// The instants at which `history`'s MRR is evaluated, and its value there.
fn points(
    index: usize,
    history: &SubscriptionHistory,
    settings: &Settings,
    coupons: &dyn Fn(&str) -> Option<Value>,
    until: i64,
    out: &mut Vec<Point>,
) {
    let mut past_due_since: Option<i64> = None;
    for (n, (from, version)) in history.versions.iter().enumerate() {
        let next = history
            .versions
            .get(n + 1)
            .map_or(until.max(*from), |(at, _)| *at);
        let past_due = version["status"] == "past_due";
        past_due_since = if past_due {
            past_due_since.or(Some(*from))
        } else {
            None
        };
        let mut instants = vec![*from];
        instants.extend(
            time_breaks(version, settings)
                .into_iter()
                .filter(|at| at > from && *at < next),
        );
        let deadline = settings
            .delinquency_churn_days
            .zip(past_due_since)
            .map(|(days, since)| since.saturating_add(i64::from(days) * 86_400));
        if let Some(deadline) = deadline
            && deadline > *from
            && deadline < next
        {
            instants.push(deadline);
        }
        instants.sort_unstable();
        instants.dedup();
        for at in instants {
            let mut mrr = subscription_mrr(version, at, settings, coupons);
            if deadline.is_some_and(|deadline| at >= deadline) {
                mrr.amount = crate::ratio::Ratio::ZERO;
            }
            out.push(Point {
                at,
                subscription: index,
                currency: mrr.currency,
                micros: mrr.amount.micros(),
            });
        }
    }
}

/// Every movement of the histories, in time order (then customer, currency). Subscriptions'
/// changes in the same second are merged before a customer's movement is judged. `until`
/// bounds the instants looked at (discount ends, delinquency deadlines) for the last versions.
pub fn movements(
    histories: &[SubscriptionHistory],
    settings: &Settings,
    coupons: &dyn Fn(&str) -> Option<Value>,
    until: i64,
) -> Vec<Movement> {
    let mut all = Vec::new();
    for (index, history) in histories.iter().enumerate() {
        points(index, history, settings, coupons, until, &mut all);
    }
    all.sort_by(|a, b| a.at.cmp(&b.at).then(a.subscription.cmp(&b.subscription)));
    // Each subscription's current (currency, MRR); each customer's MRR per currency.
    let mut current: HashMap<usize, (String, i128)> = HashMap::new();
    let mut customer_mrr: HashMap<(&str, String), i128> = HashMap::new();
    // Whether a customer had MRR in a currency before: per customer and currency, as movements are.
    let mut ever_paid: HashSet<(&str, String)> = HashSet::new();
    let mut out = Vec::new();
    let mut at_second = 0;
    while at_second < all.len() {
        let at = all[at_second].at;
        let end = all[at_second..]
            .iter()
            .position(|p| p.at != at)
            .map_or(all.len(), |n| at_second + n);
        // The customers and currencies touched this second, with their MRR before it.
        let mut before: BTreeMap<(&str, String), i128> = BTreeMap::new();
        for point in &all[at_second..end] {
            let customer = histories[point.subscription].customer.as_str();
            let old = current.get(&point.subscription).cloned();
            for currency in old
                .iter()
                .map(|(c, _)| c.clone())
                .chain([point.currency.clone()])
            {
                let key = (customer, currency);
                let value = customer_mrr.get(&key).copied().unwrap_or(0);
                before.entry(key).or_insert(value);
            }
            if let Some((old_currency, old_micros)) = old {
                *customer_mrr.entry((customer, old_currency)).or_default() -= old_micros;
            }
            *customer_mrr
                .entry((customer, point.currency.clone()))
                .or_default() += point.micros;
            current.insert(point.subscription, (point.currency.clone(), point.micros));
        }
        for ((customer, currency), m0) in before {
            let m1 = customer_mrr
                .get(&(customer, currency.clone()))
                .copied()
                .unwrap_or(0);
            let kind = if m0 == m1 {
                continue;
            } else if m0 == 0 {
                if ever_paid.contains(&(customer, currency.clone())) {
                    MovementKind::Reactivation
                } else {
                    MovementKind::New
                }
            } else if m1 == 0 {
                MovementKind::Churn
            } else if m1 > m0 {
                MovementKind::Expansion
            } else {
                MovementKind::Contraction
            };
            if m1 > 0 {
                ever_paid.insert((customer, currency.clone()));
            }
            out.push(Movement {
                at,
                customer: customer.to_owned(),
                currency,
                kind,
                amount: (m1 - m0).abs(),
                mrr_before: m0,
                mrr_after: m1,
            });
        }
        at_second = end;
    }
    out
}
