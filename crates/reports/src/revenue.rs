//! Net revenue from balance transactions (METRICS §5.6), grouped by Stripe's own
//! `reporting_category`, per settlement currency, bucketed by `created`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One period of one settlement currency, in minor units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RevenuePeriod {
    pub start: i64,
    pub end: i64,
    pub currency: String,
    pub gross_sales: i64,
    pub refunds: i64,
    pub disputes: i64,
    pub failed_settlements: i64,
    pub fees: i64,
    pub platform_revenue: i64,
    pub other: i64,
    pub net_revenue: i64,
    /// Σ net of every category but payouts.
    pub activity: i64,
    pub payouts: i64,
    /// Σ net of every transaction before the period (and before its end).
    pub starting_balance: i64,
    pub ending_balance: i64,
    /// Per reporting category: (count, gross, fee, net).
    pub categories: BTreeMap<String, (u64, i64, i64, i64)>,
}

/// The fields of a balance transaction the figures take (read straight from its JSON: the rest
/// of the object is skipped, not built).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BalanceTransaction {
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub fee: i64,
    pub net: Option<i64>,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub created: i64,
    pub reporting_category: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A balance transaction's reporting category; rows without one are mapped from their `type`
/// as fivetran/dbt_stripe does.
pub fn category(transaction: &BalanceTransaction) -> String {
    if let Some(category) = &transaction.reporting_category {
        return category.clone();
    }
    match transaction.kind.as_str() {
        "charge" | "payment" => "charge",
        "refund" | "payment_refund" => "refund",
        "payment_failure_refund" | "refund_failure" => "refund_failure",
        "payout" | "payout_cancel" | "payout_failure" => "payout",
        "stripe_fee" | "tax_fee" => "fee",
        "application_fee" => "platform_earning",
        "application_fee_refund" => "platform_earning_refund",
        "topup" | "topup_reversal" => "topup",
        "transfer" | "transfer_refund" | "transfer_cancel" | "transfer_failure" => "transfer",
        _ => "other_adjustment",
    }
    .to_owned()
}

/// Net revenue per period and settlement currency. `opt_in_other` adds the `other` categories
/// to net revenue.
pub fn revenue(
    transactions: &[BalanceTransaction],
    periods: &[(i64, i64)],
    opt_in_other: bool,
) -> Vec<RevenuePeriod> {
    let mut by_currency: BTreeMap<String, Vec<&BalanceTransaction>> = BTreeMap::new();
    for transaction in transactions {
        let currency = if transaction.currency.is_empty() {
            "usd".to_owned()
        } else {
            transaction.currency.to_ascii_lowercase()
        };
        by_currency.entry(currency).or_default().push(transaction);
    }
    let mut out = Vec::new();
    for (currency, rows) in by_currency {
        let mut periods_of: Vec<RevenuePeriod> = periods
            .iter()
            .map(|&(start, end)| RevenuePeriod {
                start,
                end,
                currency: currency.clone(),
                ..Default::default()
            })
            .collect();
        // Σ net before the first period; the balances follow period by period.
        let mut before_first = 0;
        for t in rows {
            let (created, amount, fee) = (t.created, t.amount, t.fee);
            let net = t.net.unwrap_or(amount - fee);
            let Some(n) = crate::failed::period_of(periods, created) else {
                if periods.first().is_some_and(|(start, _)| created < *start) {
                    before_first += net;
                }
                continue;
            };
            let period = &mut periods_of[n];
            let category = category(t);
            let entry = period.categories.entry(category.clone()).or_default();
            *entry = (entry.0 + 1, entry.1 + amount, entry.2 + fee, entry.3 + net);
            match category.as_str() {
                "charge" | "partial_capture_reversal" => {
                    period.gross_sales += amount;
                    period.fees += fee;
                }
                "refund" | "refund_failure" => {
                    period.refunds += amount;
                    period.fees += fee;
                }
                "dispute" | "dispute_reversal" => {
                    period.disputes += amount;
                    period.fees += fee;
                }
                "charge_failure" => {
                    period.failed_settlements += amount;
                    period.fees += fee;
                }
                "fee" | "tax" | "network_cost" => period.fees -= amount - fee,
                "platform_earning" | "platform_earning_refund" => period.platform_revenue += net,
                "payout" | "payout_reversal" => period.payouts += net,
                "topup" | "topup_reversal" | "transfer" | "transfer_reversal" => {}
                _ => period.other += net,
            }
            if !matches!(category.as_str(), "payout" | "payout_reversal") {
                period.activity += net;
            }
            // Every row moves the balance: topups and transfers too.
            period.ending_balance += net;
        }
        let mut balance = before_first;
        for period in &mut periods_of {
            period.starting_balance = balance;
            balance += period.ending_balance;
            period.ending_balance = balance;
            period.net_revenue =
                period.gross_sales + period.refunds + period.disputes + period.failed_settlements
                    - period.fees
                    + period.platform_revenue
                    + if opt_in_other { period.other } else { 0 };
        }
        out.extend(periods_of);
    }
    out
}
