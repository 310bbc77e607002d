//! The golden cases of METRICS §6 that are arithmetic over subscription states and balance
//! transactions, asserted to the millionth of a minor unit (and the identities they imply).
//! The same cases built in the emulator and read from a mirror are in the engine's tests.

use serde_json::{Value, json};
use sm_reports::revenue::revenue;
use sm_reports::{
    ChurnRecognition, DiscountMode, MovementKind, Ratio, Settings, SubscriptionHistory, movements,
    period_metrics, subscription_mrr,
};

const DAY: i64 = 86_400;

fn price(unit_amount: i64, interval: &str, count: i64) -> Value {
    json!({"id": "price", "currency": "usd", "unit_amount": unit_amount, "unit_amount_decimal": unit_amount.to_string(),
           "billing_scheme": "per_unit", "recurring": {"interval": interval, "interval_count": count, "usage_type": "licensed"}})
}

fn subscription(status: &str, items: Vec<(Value, i64)>) -> Value {
    json!({"object": "subscription", "status": status, "currency": "usd", "customer": "cus",
           "items": {"data": items.into_iter().map(|(price, quantity)| json!({"price": price, "quantity": quantity})).collect::<Vec<_>>()}})
}

fn no_coupons(_: &str) -> Option<Value> {
    None
}

/// MRR in millionths of a cent.
fn mrr(subscription: &Value, settings: &Settings) -> i128 {
    subscription_mrr(subscription, 0, settings, &no_coupons)
        .amount
        .micros()
}

fn dollars(amount: i64) -> i128 {
    i128::from(amount) * 100 * 1_000_000
}

#[test]
fn case_1_monthly_and_yearly_plans_add_to_12500() {
    let settings = Settings::default();
    let monthly = subscription("active", vec![(price(10_000, "month", 1), 1)]);
    let yearly = subscription("active", vec![(price(60_000, "year", 1), 1)]);
    let total = 100 * mrr(&monthly, &settings) + 50 * mrr(&yearly, &settings);
    assert_eq!(total, dollars(12_500));
}

#[test]
fn cases_2_and_3_intervals_are_normalised_to_a_month() {
    let settings = Settings::default();
    let quarterly = subscription("active", vec![(price(9_000, "month", 3), 1)]);
    assert_eq!(mrr(&quarterly, &settings), dollars(30));
    let weekly = subscription("active", vec![(price(1_000, "week", 1), 1)]);
    assert_eq!(mrr(&weekly, &settings), 4_333_333_333); // $43.333333…
    assert_eq!(sm_reports::micros_to_minor(mrr(&weekly, &settings)), 4_333);
    let daily = subscription("active", vec![(price(100, "day", 1), 1)]);
    assert_eq!(mrr(&daily, &settings), 3_041_666_667); // $30.416666…
    assert_eq!(sm_reports::micros_to_minor(mrr(&daily, &settings)), 3_042);
    let paddle = Settings {
        week_factor: Some(Ratio::new(433, 100)),
        days_per_month: Some(Ratio::int(30)),
        ..Default::default()
    };
    assert_eq!(mrr(&weekly, &paddle), dollars(43) + 30_000_000);
    assert_eq!(mrr(&daily, &paddle), dollars(30));
}

#[test]
fn case_4_per_unit_and_packages() {
    let settings = Settings::default();
    let per_unit = subscription("active", vec![(price(1_000, "month", 1), 5)]);
    assert_eq!(mrr(&per_unit, &settings), dollars(50));
    let mut package = price(1_000, "month", 1);
    package["transform_quantity"] = json!({"divide_by": 10, "round": "up"});
    let packages = subscription("active", vec![(package, 11)]);
    assert_eq!(mrr(&packages, &settings), dollars(20)); // 2 packages
}

#[test]
fn case_5_volume_and_graduated_tiers() {
    let tiers = json!([
        {"up_to": 5, "unit_amount_decimal": "700"},
        {"up_to": 10, "unit_amount_decimal": "650"},
        {"up_to": null, "unit_amount_decimal": "600"}
    ]);
    let tiered = |mode: &str| {
        json!({"currency": "usd", "billing_scheme": "tiered", "tiers_mode": mode, "tiers": tiers,
               "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"}})
    };
    let settings = Settings::default();
    let volume = subscription("active", vec![(tiered("volume"), 6)]);
    assert_eq!(mrr(&volume, &settings), dollars(39));
    let graduated = subscription("active", vec![(tiered("graduated"), 6)]);
    assert_eq!(mrr(&graduated, &settings), dollars(41) + 50 * 1_000_000);
}

#[test]
fn case_6_metered_items_count_nothing() {
    let mut metered = price(5, "month", 1);
    metered["recurring"]["usage_type"] = json!("metered");
    let both = subscription("active", vec![(metered, 1), (price(2_000, "month", 1), 1)]);
    let result = subscription_mrr(&both, 0, &Settings::default(), &no_coupons);
    assert_eq!(result.amount.micros(), dollars(20));
    assert_eq!(result.metered_items, 1);
}

fn with_discount(mut sub: Value, coupon: Value, start: i64, end: Option<i64>) -> Value {
    sub["discount"] = json!({"id": "di_1", "coupon": coupon, "start": start, "end": end});
    sub
}

#[test]
fn cases_8_10_11_forever_coupons() {
    let settings = Settings::default();
    let half = with_discount(
        subscription("active", vec![(price(10_000, "month", 1), 1)]),
        json!({"duration": "forever", "percent_off": 50}),
        0,
        None,
    );
    assert_eq!(mrr(&half, &settings), dollars(50));
    let ten_off_yearly = with_discount(
        subscription("active", vec![(price(12_000, "year", 1), 1)]),
        json!({"duration": "forever", "amount_off": 1_000, "currency": "usd"}),
        0,
        None,
    );
    assert_eq!(mrr(&ten_off_yearly, &settings), 916_666_667); // $10 − $0.8333…
    let free = with_discount(
        subscription("active", vec![(price(10_000, "month", 1), 1)]),
        json!({"duration": "forever", "percent_off": 100}),
        0,
        None,
    );
    assert_eq!(mrr(&free, &settings), 0);
}

fn history(id: &str, customer: &str, versions: Vec<(i64, Value)>) -> SubscriptionHistory {
    SubscriptionHistory {
        id: id.into(),
        customer: customer.into(),
        versions,
    }
}

fn kinds(moves: &[sm_reports::Movement]) -> Vec<(i64, MovementKind, i128)> {
    moves.iter().map(|m| (m.at, m.kind, m.amount)).collect()
}

#[test]
fn case_7_trial_conversion_is_new() {
    let plan = vec![(price(5_000, "month", 1), 1)];
    let moves = movements(
        &[history(
            "sub",
            "cus",
            vec![
                (0, subscription("trialing", plan.clone())),
                (14 * DAY, subscription("active", plan)),
            ],
        )],
        &Settings::default(),
        &no_coupons,
        60 * DAY,
    );
    assert_eq!(kinds(&moves), [(14 * DAY, MovementKind::New, dollars(50))]);
}

#[test]
fn case_9_repeating_coupon_by_mode() {
    let sub = with_discount(
        subscription("active", vec![(price(10_000, "month", 1), 1)]),
        json!({"duration": "repeating", "duration_in_months": 3, "percent_off": 20}),
        0,
        Some(90 * DAY),
    );
    let histories = [history("sub", "cus", vec![(0, sub)])];
    let default = movements(&histories, &Settings::default(), &no_coupons, 365 * DAY);
    assert_eq!(kinds(&default), [(0, MovementKind::New, dollars(100))]);
    let recurring = Settings {
        discount_mode: DiscountMode::Recurring,
        ..Default::default()
    };
    let moves = movements(&histories, &recurring, &no_coupons, 365 * DAY);
    assert_eq!(
        kinds(&moves),
        [
            (0, MovementKind::New, dollars(80)),
            (90 * DAY, MovementKind::Expansion, dollars(20))
        ]
    );
}

#[test]
fn case_12_cancellation_at_period_end_or_at_request() {
    let plan = vec![(price(3_000, "month", 1), 1)];
    let mut pending = subscription("active", plan.clone());
    pending["cancel_at_period_end"] = json!(true);
    let histories = [history(
        "sub",
        "cus",
        vec![
            (0, subscription("active", plan.clone())),
            (3 * DAY, pending),
            (30 * DAY, subscription("canceled", plan)),
        ],
    )];
    let default = movements(&histories, &Settings::default(), &no_coupons, 60 * DAY);
    assert_eq!(default[1].at, 30 * DAY);
    assert_eq!(default[1].kind, MovementKind::Churn);
    let at_request = Settings {
        churn_recognition: ChurnRecognition::AtRequest,
        ..Default::default()
    };
    let moves = movements(&histories, &at_request, &no_coupons, 60 * DAY);
    assert_eq!(
        kinds(&moves)[1],
        (3 * DAY, MovementKind::Churn, dollars(30))
    );
}

#[test]
fn case_13_past_due_counts_until_unpaid() {
    let plan = vec![(price(2_000, "month", 1), 1)];
    let histories = [history(
        "sub",
        "cus",
        vec![
            (0, subscription("active", plan.clone())),
            (30 * DAY, subscription("past_due", plan.clone())),
            (45 * DAY, subscription("unpaid", plan)),
        ],
    )];
    let moves = movements(&histories, &Settings::default(), &no_coupons, 90 * DAY);
    assert_eq!(
        kinds(&moves),
        [
            (0, MovementKind::New, dollars(20)),
            (45 * DAY, MovementKind::Churn, dollars(20))
        ]
    );
    // Baremetrics' choice: past due for more than 10 days is churn then.
    let delinquent = Settings {
        delinquency_churn_days: Some(10),
        ..Default::default()
    };
    let moves = movements(&histories, &delinquent, &no_coupons, 90 * DAY);
    assert_eq!(
        kinds(&moves)[1],
        (40 * DAY, MovementKind::Churn, dollars(20))
    );
}

#[test]
fn cases_14_15_contraction_churn_and_reactivation() {
    let plan = vec![(price(1_000, "month", 1), 1)];
    let histories = [
        history(
            "sub_a",
            "cus",
            vec![
                (0, subscription("active", plan.clone())),
                (10 * DAY, subscription("canceled", plan.clone())),
            ],
        ),
        history(
            "sub_b",
            "cus",
            vec![
                (0, subscription("active", plan.clone())),
                (20 * DAY, subscription("canceled", plan.clone())),
            ],
        ),
        history(
            "sub_c",
            "cus",
            vec![
                (40 * DAY, subscription("active", plan.clone())),
                (50 * DAY, subscription("canceled", plan)),
            ],
        ),
    ];
    let moves = movements(&histories, &Settings::default(), &no_coupons, 90 * DAY);
    assert_eq!(
        kinds(&moves),
        [
            (0, MovementKind::New, dollars(20)),
            (10 * DAY, MovementKind::Contraction, dollars(10)),
            (20 * DAY, MovementKind::Churn, dollars(10)),
            (40 * DAY, MovementKind::Reactivation, dollars(10)),
            (50 * DAY, MovementKind::Churn, dollars(10)),
        ]
    );
}

/// Customers each on one plan whose amount changes at given days (0 = not subscribed).
fn customers(plans: &[(&str, Vec<(i64, i64)>)]) -> Vec<SubscriptionHistory> {
    plans
        .iter()
        .map(|(customer, steps)| {
            let versions = steps
                .iter()
                .map(|(day, amount)| {
                    let status = if *amount > 0 { "active" } else { "canceled" };
                    (
                        day * DAY,
                        subscription(status, vec![(price(amount.max(&1) * 100, "month", 1), 1)]),
                    )
                })
                .collect();
            history(&format!("sub_{customer}"), customer, versions)
        })
        .collect()
}

#[test]
fn cases_16_18_movements_add_up_and_churned_revenue() {
    // MRR 1,000 at the start; then new 100, expansion 50, contraction 40, churn 60.
    let histories = customers(&[
        ("a", vec![(0, 600), (40, 650)]),
        ("b", vec![(0, 340), (45, 300)]),
        ("c", vec![(0, 60), (50, 0)]),
        ("d", vec![(35, 100)]),
    ]);
    let moves = movements(&histories, &Settings::default(), &no_coupons, 90 * DAY);
    let month = [(30 * DAY, 60 * DAY)];
    let row = &period_metrics(&moves, &month, &Settings::default())[0];
    assert_eq!(row.mrr_start, dollars(1_000));
    assert_eq!(
        (row.new, row.expansion, row.contraction, row.churn),
        (dollars(100), dollars(50), dollars(40), dollars(60))
    );
    assert_eq!(row.mrr_end, dollars(1_050));
    assert_eq!(
        row.mrr_end - row.mrr_start,
        row.new + row.reactivation + row.expansion - row.contraction - row.churn
    );
    // Case 18: Jane cancels $120/year ($10 a month), John goes from $50 to $25.
    let mut jane = customers(&[("jane", vec![(0, 0)])]);
    jane[0].versions = vec![
        (
            0,
            subscription("active", vec![(price(12_000, "year", 1), 1)]),
        ),
        (
            40 * DAY,
            subscription("canceled", vec![(price(12_000, "year", 1), 1)]),
        ),
    ];
    let mut both = customers(&[("john", vec![(0, 50), (41, 25)])]);
    both.extend(jane);
    let moves = movements(&both, &Settings::default(), &no_coupons, 90 * DAY);
    let row = &period_metrics(&moves, &month, &Settings::default())[0];
    assert_eq!(row.churn + row.contraction, dollars(35));
}

#[test]
fn case_17_subscriber_churn_rate_and_case_19_ltv() {
    let mut plans: Vec<(String, Vec<(i64, i64)>)> = Vec::new();
    for n in 0..1_000 {
        // 100 of the 1,000 churn within the window.
        let steps = if n < 100 {
            vec![(0, 10), (40, 0)]
        } else {
            vec![(0, 10)]
        };
        plans.push((format!("old{n}"), steps));
    }
    for n in 0..100 {
        plans.push((format!("new{n}"), vec![(35, 10)]));
    }
    let plans: Vec<(&str, Vec<(i64, i64)>)> =
        plans.iter().map(|(c, s)| (c.as_str(), s.clone())).collect();
    let moves = movements(
        &customers(&plans),
        &Settings::default(),
        &no_coupons,
        90 * DAY,
    );
    let row = &period_metrics(&moves, &[(30 * DAY, 60 * DAY)], &Settings::default())[0];
    let rate = row.subscriber_churn_rate.unwrap();
    assert!((rate - 100.0 / 1_100.0).abs() < 1e-12, "{rate}");
    // Case 19 is the formula: ARPA ÷ churn. 1,000 subscribers at $10: ARPA $10.
    assert_eq!(row.subscribers_end, 1_000);
    assert!((row.arpa.unwrap() - 1_000.0).abs() < 1e-9); // minor units: $10.00
    assert!((row.ltv.unwrap() - 1_000.0 / rate).abs() < 1e-6);
}

#[test]
fn case_24_same_period_new_and_churn_can_be_netted() {
    let histories = customers(&[
        ("stays", vec![(0, 10)]),
        ("passes", vec![(35, 40), (45, 0)]),
    ]);
    let month = [(30 * DAY, 60 * DAY)];
    let moves = movements(&histories, &Settings::default(), &no_coupons, 90 * DAY);
    let counted = &period_metrics(&moves, &month, &Settings::default())[0];
    let netted = Settings {
        net_same_period_new_churn: true,
        ..Default::default()
    };
    let dropped = &period_metrics(&moves, &month, &netted)[0];
    assert_eq!((counted.new, counted.churn), (dollars(40), dollars(40)));
    assert_eq!((dropped.new, dropped.churn), (0, 0));
    for row in [counted, dropped] {
        assert_eq!(
            row.mrr_end - row.mrr_start,
            row.new + row.reactivation + row.expansion - row.contraction - row.churn
        );
    }
}

#[test]
fn cases_21_22_net_revenue_by_reporting_category() {
    let t = |category: &str, amount: i64, fee: i64, created: i64| {
        serde_json::from_value::<sm_reports::revenue::BalanceTransaction>(json!({
            "object": "balance_transaction", "currency": "usd", "reporting_category": category,
            "amount": amount, "fee": fee, "net": amount - fee, "created": created}))
        .unwrap()
    };
    let rows = vec![
        t("charge", 50_000, 0, 10), // before the period: the starting balance
        t("charge", 10_000, 320, 100),
        t("refund", -4_000, 0, 101),
        t("dispute", -6_000, 1_500, 102),
        t("dispute_reversal", 6_000, 0, 103),
        t("fee", -200, 0, 104),
        t("payout", -20_000, 0, 105),
    ];
    let period = &revenue(&rows, &[(50, 1_000)], false)[0];
    assert_eq!(period.gross_sales, 10_000);
    assert_eq!(period.refunds, -4_000);
    assert_eq!(period.disputes, 0);
    assert_eq!(period.fees, 2_020);
    assert_eq!(period.net_revenue, 3_980);
    let net_sum: i64 = period
        .categories
        .iter()
        .filter(|(c, _)| *c != "payout")
        .map(|(_, v)| v.3)
        .sum();
    assert_eq!(net_sum, 3_980);
    assert_eq!(
        period.starting_balance + period.activity + period.payouts,
        period.ending_balance
    );
    // Case 22: authorised 10,000, captured 7,000.
    let partial = vec![
        t("charge", 10_000, 0, 100),
        t("partial_capture_reversal", -3_000, 0, 100),
    ];
    assert_eq!(
        revenue(&partial, &[(50, 1_000)], false)[0].gross_sales,
        7_000
    );
}

#[test]
fn a_forever_coupon_added_later_lowers_mrr_from_its_start() {
    let sub = with_discount(
        subscription("active", vec![(price(10_000, "month", 1), 1)]),
        json!({"duration": "forever", "percent_off": 50}),
        40 * DAY,
        None,
    );
    let moves = movements(
        &[history("sub", "cus", vec![(0, sub)])],
        &Settings::default(),
        &no_coupons,
        90 * DAY,
    );
    assert_eq!(
        kinds(&moves),
        [
            (0, MovementKind::New, dollars(100)),
            (40 * DAY, MovementKind::Contraction, dollars(50))
        ]
    );
}
