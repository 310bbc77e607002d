//! The monthly recurring revenue of one subscription as it stood at one instant (METRICS §5.1):
//! Stripe's published rules by default, the other tools' choices as [`Settings`].

use serde::Serialize;
use serde_json::Value;

use crate::ratio::Ratio;

/// Which coupons lower MRR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiscountMode {
    /// Only `forever` coupons (Stripe's default).
    #[default]
    ForeverOnly,
    /// Forever, and `repeating` while the discount lasts (Stripe's "recurring" toggle).
    Recurring,
    /// All of them, `once` for the one billing period it applies to (ChartMogul, Baremetrics,
    /// ProfitWell).
    All,
}

/// When a cancellation lowers MRR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChurnRecognition {
    /// When the subscription actually ends (the period the customer paid for runs out).
    #[default]
    AtPeriodEnd,
    /// As soon as the cancellation is asked for (`cancel_at_period_end` or `cancel_at` set).
    AtRequest,
}

/// The documented choices (METRICS §5.5); `Default` is Stripe's rules.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Settings {
    pub discount_mode: DiscountMode,
    pub churn_recognition: ChurnRecognition,
    /// A subscription past due for longer than this many days counts as churned (Baremetrics:
    /// 30); none by default.
    pub delinquency_churn_days: Option<u32>,
    /// Months per week (default 52/12; Paddle uses 4.33).
    pub week_factor: Option<Ratio>,
    /// Months per day, inverted: days per month (default 365/12; some tools use 30).
    pub days_per_month: Option<Ratio>,
    /// New and churn of one customer in the same period cancel out (ProfitWell).
    pub net_same_period_new_churn: bool,
}

/// One subscription's MRR at an instant, with what was left out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionMrr {
    pub currency: String,
    /// Exact, before rounding; zero when the subscription does not count.
    pub amount: Ratio,
    /// Items on metered prices (counted as 0, as Stripe does).
    pub metered_items: u32,
    /// Items on tax-inclusive prices (counted with their tax: the invoice share is not taken).
    pub tax_inclusive_items: u32,
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A price's amount field as an exact number: `…_decimal` (a string) first, then the integer.
fn amount_field(value: &Value, name: &str) -> Option<Ratio> {
    value
        .get(format!("{name}_decimal"))
        .and_then(Value::as_str)
        .and_then(Ratio::parse_decimal)
        .or_else(|| {
            value
                .get(name)
                .and_then(Value::as_i64)
                .map(|n| Ratio::int(n as i128))
        })
}

/// What a price charges for `quantity` per billing period, before discounts and tax.
pub fn period_amount(price: &Value, quantity: i128) -> Ratio {
    if price["recurring"]["usage_type"] == "metered" {
        return Ratio::ZERO;
    }
    if price["billing_scheme"] == "tiered" {
        let tiers = price["tiers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let up_to = |tier: &Value| tier["up_to"].as_i64().map(i128::from);
        let unit = |tier: &Value| amount_field(tier, "unit_amount").unwrap_or(Ratio::ZERO);
        let flat = |tier: &Value| amount_field(tier, "flat_amount").unwrap_or(Ratio::ZERO);
        let q = Ratio::int(quantity);
        return if price["tiers_mode"] == "graduated" {
            let mut total = Ratio::ZERO;
            let mut below = 0i128;
            for tier in tiers {
                if quantity <= below {
                    break;
                }
                let top = up_to(tier).unwrap_or(i128::MAX).min(quantity);
                total = total + Ratio::int(top - below) * unit(tier) + flat(tier);
                below = up_to(tier).unwrap_or(i128::MAX);
            }
            total
        } else {
            tiers
                .iter()
                .find(|tier| up_to(tier).is_none_or(|top| top >= quantity))
                .map_or(Ratio::ZERO, |tier| q * unit(tier) + flat(tier))
        };
    }
    let unit = amount_field(price, "unit_amount").unwrap_or(Ratio::ZERO);
    let transform = &price["transform_quantity"];
    let quantity = match transform["divide_by"].as_i64() {
        Some(divide_by) if divide_by > 0 => {
            let parts = Ratio::new(quantity, i128::from(divide_by));
            if transform["round"] == "down" {
                parts.floor()
            } else {
                parts.ceil()
            }
        }
        _ => quantity,
    };
    unit * Ratio::int(quantity)
}

/// Months per billing period's worth: `f(interval, n)` of METRICS §5.1.
pub fn monthly_factor(recurring: &Value, settings: &Settings) -> Ratio {
    let n = recurring["interval_count"].as_i64().unwrap_or(1).max(1) as i128;
    let per_one = match recurring["interval"].as_str() {
        Some("year") => Ratio::new(1, 12),
        Some("week") => settings.week_factor.unwrap_or(Ratio::new(52, 12)),
        Some("day") => settings.days_per_month.unwrap_or(Ratio::new(365, 12)),
        _ => Ratio::ONE,
    };
    per_one * Ratio::new(1, n)
}

/// The length of one billing period in seconds (for a `once` coupon's single period).
fn period_seconds(recurring: &Value) -> i64 {
    let n = recurring["interval_count"].as_i64().unwrap_or(1).max(1);
    let one = match recurring["interval"].as_str() {
        Some("year") => 365 * 86_400,
        Some("week") => 7 * 86_400,
        Some("day") => 86_400,
        _ => 30 * 86_400,
    };
    one * n
}

/// The coupon of a discount, as the mirror's API version renders it (`coupon`) or as 2025+
/// versions do (`source.coupon`); an id alone is looked up in `coupons`.
fn coupon_of<'a>(discount: &'a Value, coupons: &'a dyn Fn(&str) -> Option<Value>) -> Option<Value> {
    let coupon = if discount["coupon"].is_null() {
        &discount["source"]["coupon"]
    } else {
        &discount["coupon"]
    };
    match coupon {
        Value::Object(_) => Some(coupon.clone()),
        Value::String(id) => coupons(id),
        _ => None,
    }
}

/// Whether a discount lowers MRR at `at` under the discount mode.
fn discount_counts(
    discount: &Value,
    coupon: &Value,
    at: i64,
    period: i64,
    mode: DiscountMode,
) -> bool {
    let start = discount["start"].as_i64().unwrap_or(i64::MIN);
    let end = discount["end"].as_i64();
    if at < start || end.is_some_and(|end| at >= end) {
        return false;
    }
    match coupon["duration"].as_str() {
        Some("forever") => true,
        Some("repeating") => mode != DiscountMode::ForeverOnly,
        Some("once") => mode == DiscountMode::All && at < start.saturating_add(period),
        _ => false,
    }
}

/// Applies the discounts that count to `amount` (monthly), in order, never below zero.
/// How a subscription bills: its currency, months per billing period, and a period's length.
struct Billing<'a> {
    currency: &'a str,
    factor: Ratio,
    period: i64,
}

fn apply_discounts(
    mut amount: Ratio,
    discounts: &[&Value],
    billing: &Billing<'_>,
    at: i64,
    settings: &Settings,
    coupons: &dyn Fn(&str) -> Option<Value>,
) -> Ratio {
    let Billing {
        currency,
        factor,
        period,
    } = *billing;
    for discount in discounts {
        let Some(coupon) = coupon_of(discount, coupons) else {
            continue;
        };
        if !discount_counts(discount, &coupon, at, period, settings.discount_mode) {
            continue;
        }
        if let Some(percent) = coupon["percent_off"].as_f64().and_then(|_| {
            // percent_off is a JSON number such as 20 or 12.5: read from its text, exactly.
            Ratio::parse_decimal(&coupon["percent_off"].to_string())
        }) {
            amount = amount * (Ratio::ONE - percent * Ratio::new(1, 100));
        } else if let Some(off) = amount_off(&coupon, currency) {
            amount = amount - Ratio::int(off) * factor;
        }
        amount = amount.max(Ratio::ZERO);
    }
    amount
}

/// A coupon's fixed amount in `currency` (its own currency, or its `currency_options`).
fn amount_off(coupon: &Value, currency: &str) -> Option<i128> {
    if coupon["currency"].as_str() == Some(currency) {
        return coupon["amount_off"].as_i64().map(i128::from);
    }
    coupon["currency_options"][currency]["amount_off"]
        .as_i64()
        .map(i128::from)
}

/// The discount objects a subscription or item carries: the single `discount`, and any
/// expanded entries of `discounts` (ids alone name the same discounts and are skipped).
fn discounts_of(holder: &Value) -> Vec<&Value> {
    let mut found: Vec<&Value> = Vec::new();
    if holder["discount"].is_object() {
        found.push(&holder["discount"]);
    }
    for discount in holder["discounts"].as_array().into_iter().flatten() {
        if discount.is_object() && !found.iter().any(|d| d["id"] == discount["id"]) {
            found.push(discount);
        }
    }
    found
}

/// Whether the subscription counts at all at `at`: its status, and, when cancellations are
/// recognised at request, no cancellation pending. (Delinquency is judged over its history.)
pub fn eligible(subscription: &Value, settings: &Settings) -> bool {
    let status = text(subscription, "status").unwrap_or_default();
    if !matches!(status, "active" | "past_due") {
        return false;
    }
    if settings.churn_recognition == ChurnRecognition::AtRequest
        && (subscription["cancel_at_period_end"] == true || !subscription["cancel_at"].is_null())
    {
        return false;
    }
    true
}

/// The MRR of `subscription` (a Stripe subscription object as it stood) at `at`. `coupons`
/// resolves a coupon named by id only.
pub fn subscription_mrr(
    subscription: &Value,
    at: i64,
    settings: &Settings,
    coupons: &dyn Fn(&str) -> Option<Value>,
) -> SubscriptionMrr {
    let items = subscription["items"]["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let currency = text(subscription, "currency")
        .or_else(|| {
            items
                .first()
                .and_then(|item| text(&item["price"], "currency"))
        })
        .unwrap_or("usd")
        .to_ascii_lowercase();
    let mut result = SubscriptionMrr {
        currency: currency.clone(),
        amount: Ratio::ZERO,
        metered_items: 0,
        tax_inclusive_items: 0,
    };
    // The subscription's own billing period, for shares of a fixed discount.
    let mut subscription_factor = Ratio::ONE;
    let mut subscription_period = 30 * 86_400;
    let mut total = Ratio::ZERO;
    for item in items {
        let price = if item["price"].is_object() {
            &item["price"]
        } else {
            &item["plan"]
        };
        if price["recurring"].is_null() && price["interval"].is_null() {
            continue; // a one-time price never counts
        }
        // Plans (the older object) keep `interval` at the top level.
        let plan_recurring;
        let recurring = if price["recurring"].is_object() {
            &price["recurring"]
        } else {
            plan_recurring = serde_json::json!({
                "interval": price["interval"],
                "interval_count": price["interval_count"],
                "usage_type": price["usage_type"],
            });
            &plan_recurring
        };
        if recurring["usage_type"] == "metered" {
            result.metered_items += 1;
            continue;
        }
        if price["tax_behavior"] == "inclusive" {
            result.tax_inclusive_items += 1;
        }
        let quantity = item["quantity"].as_i64().unwrap_or(1) as i128;
        let factor = monthly_factor(recurring, settings);
        subscription_factor = factor;
        subscription_period = period_seconds(recurring);
        let monthly = period_amount(price, quantity) * factor;
        let billing = Billing {
            currency: &currency,
            factor,
            period: subscription_period,
        };
        let monthly = apply_discounts(
            monthly,
            &discounts_of(item),
            &billing,
            at,
            settings,
            coupons,
        );
        total = total + monthly;
    }
    if !eligible(subscription, settings) {
        return result;
    }
    let billing = Billing {
        currency: &currency,
        factor: subscription_factor,
        period: subscription_period,
    };
    result.amount = apply_discounts(
        total,
        &discounts_of(subscription),
        &billing,
        at,
        settings,
        coupons,
    )
    .max(Ratio::ZERO);
    result
}

/// Instants at which the same subscription's MRR may change without any event: a discount
/// starting or ending (or a `once` coupon's period passing).
pub fn time_breaks(subscription: &Value, settings: &Settings) -> Vec<i64> {
    let items = subscription["items"]["data"].as_array();
    let period = items
        .and_then(|items| items.first())
        .map(|item| {
            let price = if item["price"].is_object() {
                &item["price"]
            } else {
                &item["plan"]
            };
            period_seconds(&price["recurring"])
        })
        .unwrap_or(30 * 86_400);
    let mut holders = vec![subscription];
    holders.extend(items.into_iter().flatten());
    let mut breaks = Vec::new();
    for holder in holders {
        for discount in discounts_of(holder) {
            if let Some(end) = discount["end"].as_i64() {
                breaks.push(end);
            }
            if let Some(start) = discount["start"].as_i64() {
                breaks.push(start);
                if settings.discount_mode == DiscountMode::All {
                    breaks.push(start.saturating_add(period));
                }
            }
        }
    }
    breaks
}
