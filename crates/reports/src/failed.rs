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

/// Failed payments among `charges` and `invoices` created in `[start, end)`, per currency.
/// `first_attempt_failed(invoice)` says whether an invoice's first attempt failed (from its
/// `invoice.payment_failed` events, or its attempt count where events are gone).
pub fn failed_payments(
    charges: &[Value],
    invoices: &[Value],
    start: i64,
    end: i64,
    first_attempt_failed: &dyn Fn(&Value) -> bool,
) -> Vec<FailedPayments> {
    let mut by: BTreeMap<String, FailedPayments> = BTreeMap::new();
    let within = |v: &Value| {
        let created = v["created"].as_i64().unwrap_or(0);
        created >= start && created < end
    };
    for charge in charges
        .iter()
        .filter(|c| within(c) && c["status"] == "failed")
    {
        let currency = charge["currency"]
            .as_str()
            .unwrap_or("usd")
            .to_ascii_lowercase();
        let entry = by
            .entry(currency.clone())
            .or_insert_with(|| FailedPayments {
                currency,
                ..Default::default()
            });
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
        .filter(|i| within(i) && i["billing_reason"] == "subscription_cycle")
    {
        // The first invoice after a trial is a conversion, not a renewal.
        let period_start = invoice["lines"]["data"][0]["period"]["start"].as_i64();
        let trial_end = invoice["subscription_details"]["trial_end"].as_i64();
        if period_start.is_some() && period_start == trial_end {
            continue;
        }
        let currency = invoice["currency"]
            .as_str()
            .unwrap_or("usd")
            .to_ascii_lowercase();
        let entry = by
            .entry(currency.clone())
            .or_insert_with(|| FailedPayments {
                currency,
                ..Default::default()
            });
        let due = invoice["amount_due"].as_i64().unwrap_or(0);
        entry.renewals += 1;
        entry.renewal_amount_due += due;
        if first_attempt_failed(invoice) {
            entry.renewals_failed += 1;
            entry.renewal_failed_amount += due;
            if invoice["status"] == "paid" {
                entry.renewals_recovered += 1;
                entry.renewal_recovered_amount += due;
            }
        }
    }
    let mut out: Vec<FailedPayments> = by.into_values().collect();
    for entry in &mut out {
        entry.failure_rate = (entry.renewal_amount_due != 0)
            .then(|| entry.renewal_failed_amount as f64 / entry.renewal_amount_due as f64);
        entry.recovery_rate = (entry.renewal_failed_amount != 0)
            .then(|| entry.renewal_recovered_amount as f64 / entry.renewal_failed_amount as f64);
    }
    out
}
