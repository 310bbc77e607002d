//! Properties over random histories (METRICS §6): per currency and period,
//! `MRR(end) − MRR(start) = new + reactivation + expansion − contraction − churn` exactly; MRR
//! never negative; the order in which subscriptions are handed over changes nothing; computing
//! twice gives the same answer. Seeded, so a failure names the seed that shows it.

use serde_json::{Value, json};
use sm_reports::calendar::{Interval, Zone, periods};
use sm_reports::{DiscountMode, Settings, SubscriptionHistory, movements, period_metrics};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.below(options.len() as u64) as usize]
    }
}

const DAY: i64 = 86_400;

fn random_version(rng: &mut Rng, at: i64, currency: &str) -> Value {
    let status = rng.pick(&[
        "active",
        "active",
        "active",
        "past_due",
        "trialing",
        "canceled",
        "unpaid",
        "incomplete",
    ]);
    let interval = rng.pick(&["month", "year", "week", "day"]);
    let mut sub = json!({
        "status": status,
        "currency": currency,
        "cancel_at_period_end": rng.below(5) == 0,
        "items": {"data": (0..1 + rng.below(3)).map(|_| json!({
            "quantity": rng.below(4),
            "price": {"currency": currency, "unit_amount_decimal": format!("{}.{}", rng.below(50_000), rng.below(100)),
                      "recurring": {"interval": interval, "interval_count": 1 + rng.below(3),
                                    "usage_type": if rng.below(8) == 0 { "metered" } else { "licensed" }}}
        })).collect::<Vec<_>>()}
    });
    if rng.below(3) == 0 {
        let duration = rng.pick(&["forever", "repeating", "once"]);
        let coupon = if rng.below(2) == 0 {
            json!({"duration": duration, "percent_off": rng.below(101)})
        } else {
            json!({"duration": duration, "amount_off": rng.below(20_000), "currency": currency})
        };
        let start = at - (rng.below(20) as i64) * DAY;
        sub["discount"] = json!({"coupon": coupon, "start": start,
                                 "end": if duration == "repeating" { json!(start + (rng.below(90) as i64) * DAY) } else { Value::Null }});
    }
    sub
}

fn random_histories(seed: u64) -> Vec<SubscriptionHistory> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let subscriptions = 1 + rng.below(40);
    (0..subscriptions)
        .map(|n| {
            let currency = rng.pick(&["usd", "eur", "jpy"]);
            let mut at = (rng.below(200) as i64) * DAY + rng.below(3) as i64;
            let versions = (0..1 + rng.below(6))
                .map(|_| {
                    // Same-second changes happen: a step of zero now and then.
                    at += (rng.below(60) as i64) * DAY / (1 + rng.below(3) as i64);
                    (at, random_version(&mut rng, at, currency))
                })
                .collect();
            SubscriptionHistory {
                id: format!("sub_{n}"),
                customer: format!("cus_{}", rng.below(subscriptions / 2 + 1)),
                versions,
            }
        })
        .collect()
}

fn no_coupons(_: &str) -> Option<Value> {
    None
}

#[test]
fn movements_add_up_to_the_change_in_mrr_in_every_period() {
    for seed in 0..300 {
        let histories = random_histories(seed);
        for settings in [
            Settings::default(),
            Settings {
                discount_mode: DiscountMode::All,
                delinquency_churn_days: Some(30),
                net_same_period_new_churn: seed % 2 == 0,
                ..Default::default()
            },
        ] {
            let moves = movements(&histories, &settings, &no_coupons, 500 * DAY);
            for interval in [Interval::Day, Interval::Week, Interval::Month] {
                let spans = periods(0, 500 * DAY, interval, &Zone::utc());
                for row in period_metrics(&moves, &spans, &settings) {
                    assert_eq!(
                        row.mrr_end - row.mrr_start,
                        row.new + row.reactivation + row.expansion - row.contraction - row.churn,
                        "seed {seed}, {} period starting {}",
                        row.currency,
                        row.start
                    );
                    assert!(
                        row.mrr_start >= 0 && row.mrr_end >= 0,
                        "seed {seed}: negative MRR"
                    );
                }
            }
            for movement in &moves {
                assert!(
                    movement.amount > 0 && movement.mrr_after >= 0,
                    "seed {seed}: {movement:?}"
                );
            }
            // The order subscriptions are handed over in changes nothing.
            let mut reversed = histories.clone();
            reversed.reverse();
            let again = movements(&reversed, &settings, &no_coupons, 500 * DAY);
            let key = |m: &sm_reports::Movement| {
                (
                    m.at,
                    m.customer.clone(),
                    m.currency.clone(),
                    m.kind,
                    m.amount,
                )
            };
            let mut a: Vec<_> = moves.iter().map(key).collect();
            let mut b: Vec<_> = again.iter().map(key).collect();
            a.sort();
            b.sort();
            assert_eq!(
                a, b,
                "seed {seed}: the order of subscriptions changed the movements"
            );
            assert_eq!(
                moves,
                movements(&histories, &settings, &no_coupons, 500 * DAY)
            );
        }
    }
}
