//! Revenue reports read from a real mirror: golden cases of METRICS §6 built in the emulator
//! through Stripe's API (prices, customers, subscriptions, a trial that converts, cancellations,
//! a customer who comes back), the clock moved between them, synced into SQLite and Postgres
//! (when `STRIPE_MIRROR_TEST_POSTGRES_URL` is set) and reported: the figures to the minor unit,
//! and the same answers on both backends.

mod support;

use std::sync::Arc;

use serde_json::Value;
use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::ops::reports::{Report, ReportOptions, report};
use sm_engine::sync::{Quiet, SyncOptions, sync};
use sm_reports::{Interval, MovementKind};
use sm_stripe::ApiKey;
use support::World;

const DAY: i64 = 86_400;

struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let answer = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(""))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    async fn delete(&self, path: &str) -> Value {
        let answer = self
            .client
            .delete(format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(""))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
        answer.json().await.unwrap()
    }

    async fn price(&self, product: &str, cents: i64, interval: &str) -> String {
        let amount = cents.to_string();
        self.post(
            "/v1/prices",
            &[
                ("product", product),
                ("currency", "usd"),
                ("unit_amount", &amount),
                ("recurring[interval]", interval),
            ],
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn subscribe(&self, name: &str, price: &str, extra: &[(&str, &str)]) -> (String, String) {
        let customer = self
            .post(
                "/v1/customers",
                &[("name", name), ("email", &format!("{name}@example.com"))],
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut form = vec![("customer", customer.as_str()), ("items[0][price]", price)];
        form.extend_from_slice(extra);
        let subscription = self.post("/v1/subscriptions", &form).await;
        (customer, subscription["id"].as_str().unwrap().to_owned())
    }
}

/// The scenario, built once; returns when it began (the emulator's clock).
async fn build(world: &World) -> i64 {
    let api = Api {
        client: reqwest::Client::new(),
        base: world.server.base_url(),
        key: world.key("secret_test"),
    };
    let clock = &world.server.emulator.world;
    let began = clock.now();
    let product = api.post("/v1/products", &[("name", "Plan")]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let monthly = api.price(&product, 10_000, "month").await;
    let yearly = api.price(&product, 60_000, "year").await;
    let small = api.price(&product, 1_000, "month").await;
    let trial_price = api.price(&product, 5_000, "month").await;
    // Case 1, a tenth of it: 10 × $100 a month and 5 × $600 a year = $1,250.
    for n in 0..10 {
        api.subscribe(&format!("monthly{n}"), &monthly, &[]).await;
    }
    for n in 0..5 {
        api.subscribe(&format!("yearly{n}"), &yearly, &[]).await;
    }
    // Case 7: a trial, converted on day 5.
    let (_, trial) = api
        .subscribe("trial", &trial_price, &[("trial_period_days", "14")])
        .await;
    // Cases 14 and 15: two subscriptions, canceled one after the other, then back.
    let (two, first) = api.subscribe("two", &small, &[]).await;
    let second = api
        .post(
            "/v1/subscriptions",
            &[("customer", &two), ("items[0][price]", &small)],
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    clock.advance_clock(5 * DAY);
    api.post(
        &format!("/v1/subscriptions/{trial}"),
        &[("trial_end", "now")],
    )
    .await;
    clock.advance_clock(5 * DAY);
    api.delete(&format!("/v1/subscriptions/{first}")).await;
    clock.advance_clock(5 * DAY);
    api.delete(&format!("/v1/subscriptions/{second}")).await;
    clock.advance_clock(5 * DAY);
    let back = api
        .post(
            "/v1/subscriptions",
            &[("customer", &two), ("items[0][price]", &small)],
        )
        .await;
    assert_eq!(back["status"], "active");
    clock.advance_clock(DAY);
    began
}

async fn mirrored_report(world: &World, database: Option<&str>, began: i64) -> Report {
    let engine = world.engine(database);
    let key = ApiKey::parse(&world.key("restricted_test")).unwrap();
    let outcome = connect(&engine, key, ConnectOptions::default())
        .await
        .unwrap();
    let connection = sm_warehouse::Connection::new(outcome.account.account_id.clone(), false);
    let synced = sync(
        &engine,
        &connection,
        &SyncOptions::default(),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(synced.run.status, "succeeded", "{:?}", synced.notes);
    report(
        &engine,
        &connection.label(),
        ReportOptions {
            from: began - DAY,
            to: began + 25 * DAY,
            interval: Interval::Day,
            currency: None,
            time_zone: sm_reports::calendar::Zone::utc(),
            settings: Default::default(),
            only: None,
        },
    )
    .await
    .unwrap()
}

fn dollars(n: i128) -> i128 {
    n * 100 * 1_000_000
}

fn check(report: &Report, began: i64) {
    // Observed from the first event on: the first sync kept every event of the scenario.
    assert!(
        report.observed_from.is_some_and(|at| at <= began + 60),
        "{:?}",
        report.observed_from
    );
    let mrr_at = |day: i64| {
        report
            .mrr
            .iter()
            .find(|p| p.start <= began + day * DAY && began + day * DAY < p.end)
            .map(|p| p.mrr_end)
            .unwrap()
    };
    // Day 0: 10 × $100 + 5 × $50 + two × $10 = $1,270; the trial counts nothing.
    assert_eq!(mrr_at(0), dollars(1_270));
    // Day 5: the trial converts, new +$50.
    assert_eq!(mrr_at(5), dollars(1_320));
    // Day 10: one of two canceled (contraction); day 15: the other (churn); day 20: back.
    assert_eq!(mrr_at(10), dollars(1_310));
    assert_eq!(mrr_at(15), dollars(1_300));
    assert_eq!(mrr_at(20), dollars(1_310));
    let kinds: Vec<(i64, MovementKind, i128)> = report
        .movements
        .iter()
        .filter(|m| m.at > began + DAY)
        .map(|m| ((m.at - began) / DAY, m.kind, m.amount))
        .collect();
    assert_eq!(
        kinds,
        [
            (5, MovementKind::New, dollars(50)),
            (10, MovementKind::Contraction, dollars(10)),
            (15, MovementKind::Churn, dollars(10)),
            (20, MovementKind::Reactivation, dollars(10)),
        ]
    );
    for p in &report.mrr {
        assert_eq!(
            p.mrr_end - p.mrr_start,
            p.new + p.reactivation + p.expansion - p.contraction - p.churn
        );
    }
    // Every invoice was paid: gross sales are the first invoices, and net revenue is what
    // the balance transactions' `net` says.
    let gross: i64 = report.revenue.iter().map(|r| r.gross_sales).sum();
    assert_eq!(gross, 10 * 10_000 + 5 * 60_000 + 5_000 + 3 * 1_000);
    for r in &report.revenue {
        assert_eq!(
            r.starting_balance + r.activity + r.payouts,
            r.ending_balance
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_cases_from_a_mirror_on_sqlite_and_postgres() {
    let world = World::start(0, 5, "reports").await;
    let began = build(&world).await;
    let on_sqlite = mirrored_report(&world, None, began).await;
    check(&on_sqlite, began);
    let Ok(url) = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped the Postgres half: set STRIPE_MIRROR_TEST_POSTGRES_URL=postgres://… to run it"
        );
        return;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{separator}schema=sm_reports_{}", std::process::id());
    let on_postgres = mirrored_report(&world, Some(&target), began).await;
    check(&on_postgres, began);
    assert_eq!(
        on_sqlite.mrr, on_postgres.mrr,
        "the same figures on both backends"
    );
    assert_eq!(on_sqlite.movements, on_postgres.movements);
    assert_eq!(on_sqlite.revenue, on_postgres.revenue);
}
