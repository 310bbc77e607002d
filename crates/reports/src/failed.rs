//! Failed payments (METRICS §5.7): failed charges per presentment currency with their decline
//! reasons, and subscription renewals whose first attempt failed, with how many were recovered.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FailedPayments {
    pub currency: String,
    pub failed_charges: u64,
    pub failed_charge_amount: i64,
    /// `failure_code` (or `outcome.reason`) → failed charges.
    pub decline_reasons: BTreeMap<String, u64>,
    /// Renewal invoices (`subscription_cycle`, not the first after a trial) due in the period.
    pub renewals: u64,
    pub renewal_amount_due: i64,
    /// Of those, whose first payment attempt failed.
    pub renewals_failed: u64,
    pub renewal_failed_amount: i64,
    /// Failed ones paid since.
    pub renewals_recovered: u64,
    pub renewal_recovered_amount: i64,
    pub failure_rate: Option<f64>,
    pub recovery_rate: Option<f64>,
}

/// The index of the period `[start, end)` holding `at`, if any (`periods` in order, touching).
pub fn period_of(periods: &[(i64, i64)], at: i64) -> Option<usize> {
    let n = periods.partition_point(|(start, _)| *start <= at);
    (n > 0 && at < periods[n - 1].1).then(|| n - 1)
}

/// How an invoice's payment went, as the mirror knows it.
pub struct InvoiceFacts<'a> {
    /// Whether its first payment attempt failed (its `invoice.payment_failed` events, or its
    /// attempt count where events are gone).
    pub first_attempt_failed: &'a dyn Fn(&Value) -> bool,
    /// When its subscription's trial ended, if it had one.
    pub trial_end: &'a dyn Fn(&Value) -> Option<i64>,
}

/// Failed payments among `charges` and `invoices`, per period (by `created`) and currency.
pub fn failed_payments(
    charges: &[Value],
    invoices: &[Value],
    periods: &[(i64, i64)],
    facts: &InvoiceFacts<'_>,
) -> Vec<(i64, i64, Vec<FailedPayments>)> {
    let mut by: Vec<BTreeMap<String, FailedPayments>> = vec![BTreeMap::new(); periods.len()];
    // The period and currency of `v`, with an entry made for them.
    let slot = |by: &mut Vec<BTreeMap<String, FailedPayments>>, v: &Value| {
        let n = period_of(periods, v["created"].as_i64().unwrap_or(0))?;
        let currency = v["currency"].as_str().unwrap_or("usd").to_ascii_lowercase();
        by[n]
            .entry(currency.clone())
            .or_insert_with(|| FailedPayments {
                currency: currency.clone(),
                ..Default::default()
            });
        Some((n, currency))
    };
    for charge in charges.iter().filter(|c| c["status"] == "failed") {
        let Some((n, currency)) = slot(&mut by, charge) else {
            continue;
        };
        let entry = by[n].get_mut(&currency).expect("made above");
        entry.failed_charges += 1;
        entry.failed_charge_amount += charge["amount"].as_i64().unwrap_or(0);
        let reason = charge["failure_code"]
            .as_str()
            .or_else(|| charge["outcome"]["reason"].as_str())
            .unwrap_or("unknown");
        *entry.decline_reasons.entry(reason.to_owned()).or_default() += 1;
    }
    for invoice in invoices
        .iter()
        .filter(|i| i["billing_reason"] == "subscription_cycle")
    {
        // The first invoice after a trial is a conversion, not a renewal.
        let period_start = invoice["lines"]["data"][0]["period"]["start"].as_i64();
        if period_start.is_some() && period_start == (facts.trial_end)(invoice) {
            continue;
        }
        let Some((n, currency)) = slot(&mut by, invoice) else {
            continue;
        };
        let entry = by[n].get_mut(&currency).expect("made above");
        let due = invoice["amount_due"].as_i64().unwrap_or(0);
        entry.renewals += 1;
        entry.renewal_amount_due += due;
        if (facts.first_attempt_failed)(invoice) {
            entry.renewals_failed += 1;
            entry.renewal_failed_amount += due;
            if invoice["status"] == "paid" {
                entry.renewals_recovered += 1;
                entry.renewal_recovered_amount += due;
            }
        }
    }
    periods
        .iter()
        .zip(by)
        .map(|(&(start, end), found)| {
            let mut rows: Vec<FailedPayments> = found.into_values().collect();
            for entry in &mut rows {
                entry.failure_rate = (entry.renewal_amount_due != 0)
                    .then(|| entry.renewal_failed_amount as f64 / entry.renewal_amount_due as f64);
                entry.recovery_rate = (entry.renewal_failed_amount != 0).then(|| {
                    entry.renewal_recovered_amount as f64 / entry.renewal_failed_amount as f64
                });
            }
            (start, end, rows)
        })
        .collect()
}
