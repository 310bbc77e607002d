//! What a user chooses to mirror (`--only`, `--skip`) and what a quiet account costs: a sync
//! limited to some tables touches no other table's list endpoint, a later full choice fills in
//! the rest, and the mirror then equals Stripe; an account with no activity for weeks stays
//! incremental.

mod support;

use std::sync::Arc;

use sm_engine::catalog::choose_tables;
use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::sync::{Quiet, SyncOptions, SyncReport, sync};
use sm_engine::{Engine, catalog::RESOURCES};
use sm_stripe::ApiKey;
use sm_warehouse::Connection;
use support::{World, compare};

async fn connected(world: &World) -> (Engine, Connection) {
    let engine = world.engine(None);
    let key = ApiKey::parse(&world.key("restricted_test")).unwrap();
    let outcome = connect(&engine, key, ConnectOptions::default())
        .await
        .unwrap();
    let connection = Connection::new(outcome.account.account_id.clone(), false);
    (engine, connection)
}

async fn run(engine: &Engine, connection: &Connection, options: SyncOptions) -> SyncReport {
    let report = sync(engine, connection, &options, Arc::new(Quiet))
        .await
        .unwrap();
    assert_eq!(report.run.status, "succeeded", "{:?}", report.notes);
    report
}

fn only(tables: &[&str]) -> SyncOptions {
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    SyncOptions {
        tables: choose_tables(&names, &[]).unwrap(),
        ..Default::default()
    }
}

/// The `/v1` requests the emulator received since the last call, as `GET /v1/…` → count.
fn requests_since_last(world: &World) -> Vec<(String, u64)> {
    let mut seen: Vec<(String, u64)> = world.server.emulator.requests.lock().drain().collect();
    seen.sort();
    seen
}

fn assert_exact(world: &World, engine: &Engine, connection: &Connection, when: &str) {
    let (differences, compared) = compare(world, engine, connection);
    assert!(
        differences.is_empty(),
        "{when}: {} differences of {compared}:\n{}",
        differences.len(),
        differences
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_some_tables_then_the_rest() {
    let world = World::start(40, 21, "only").await;
    let (engine, connection) = connected(&world).await;
    requests_since_last(&world);

    let report = run(&engine, &connection, only(&["customers", "charges"])).await;
    assert_eq!(report.run.kind, "backfill");
    assert!(report.not_chosen.contains(&"invoices".to_owned()));
    // Only the chosen tables' own endpoints (lists, and retrieves of single objects) and the
    // Events API were asked.
    for (request, _) in requests_since_last(&world) {
        let path = request.trim_start_matches("GET ");
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let allowed = matches!(
            segments.as_slice(),
            ["v1", "events", ..]
                | ["v1", "customers" | "charges"]
                | ["v1", "customers" | "charges", _]
        );
        assert!(allowed, "a sync of customers and charges asked {request}");
    }
    let (differences, _) = compare(&world, &engine, &connection);
    for difference in &differences {
        assert!(
            !difference.starts_with("customers/") && !difference.starts_with("charges/"),
            "{difference}"
        );
    }
    for resource in RESOURCES {
        let (rows, gone) = engine.store.count(&connection, resource.table).unwrap();
        let chosen = matches!(resource.table, "customers" | "charges");
        assert_eq!(
            rows + gone > 0,
            chosen,
            "{}: {rows} rows after a sync of customers and charges",
            resource.table
        );
    }

    // Changes, then a sync of everything: the rest is listed once, customers and charges are
    // only brought up to date from the events.
    world.activity(60, 3);
    let report = run(&engine, &connection, SyncOptions::default()).await;
    assert_eq!(report.run.kind, "backfill", "{:?}", report.notes);
    let asked = requests_since_last(&world);
    assert!(
        !asked
            .iter()
            .any(|(r, _)| r == "GET /v1/customers" || r == "GET /v1/charges"),
        "customers and charges were listed again: {asked:?}"
    );
    assert!(asked.iter().any(|(r, _)| r == "GET /v1/invoices"));
    assert_exact(&world, &engine, &connection, "after the rest was filled in");

    // Leaving a table out stops keeping it; choosing it again lists it again.
    let mut skip_customers = SyncOptions {
        tables: choose_tables(&[], &["invoices".to_owned()]).unwrap(),
        ..Default::default()
    };
    let report = run(&engine, &connection, skip_customers.clone()).await;
    assert_eq!(report.run.kind, "incremental");
    world.activity(60, 4);
    let report = run(&engine, &connection, skip_customers.clone()).await;
    assert_eq!(report.run.kind, "incremental");
    requests_since_last(&world);
    skip_customers.tables = None;
    let report = run(&engine, &connection, skip_customers).await;
    assert_eq!(report.run.kind, "backfill", "{:?}", report.notes);
    let asked = requests_since_last(&world);
    assert!(asked.iter().any(|(r, _)| r == "GET /v1/invoices"));
    assert!(!asked.iter().any(|(r, _)| r == "GET /v1/customers"));
    assert_exact(&world, &engine, &connection, "after invoices came back");

    // A later incremental run stays incremental.
    let report = run(&engine, &connection, SyncOptions::default()).await;
    assert_eq!(report.run.kind, "incremental");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_account_stays_incremental() {
    let world = World::start(20, 22, "quiet").await;
    let (engine, connection) = connected(&world).await;
    run(&engine, &connection, SyncOptions::default()).await;
    let clock = &world.server.emulator.world;
    // Synced weekly (as `serve` would) through 35 days without a single event, then three more
    // syncs: each a handful of requests, none a backfill.
    for week in 1..=5 {
        clock.advance_clock(7 * 86_400);
        let report = run(&engine, &connection, SyncOptions::default()).await;
        assert_eq!(
            report.run.kind, "incremental",
            "week {week}: {:?}",
            report.notes
        );
        assert!(
            report.run.requests <= 20,
            "week {week}: {} requests",
            report.run.requests
        );
    }
    for _ in 0..3 {
        let report = run(&engine, &connection, SyncOptions::default()).await;
        assert_eq!(report.run.kind, "incremental", "{:?}", report.notes);
        let changed: u64 = report
            .run
            .counts
            .tables
            .values()
            .map(|c| c.inserted + c.updated + c.deleted)
            .sum();
        assert_eq!(
            changed, 0,
            "a quiet account's sync changed rows: {:?}",
            report.run.counts
        );
    }
    // Changes after the quiet weeks arrive from the events as usual.
    world.activity(30, 5);
    let report = run(&engine, &connection, SyncOptions::default()).await;
    assert_eq!(report.run.kind, "incremental");
    assert_exact(&world, &engine, &connection, "after the quiet weeks");

    // Not read for 31 days: events may have expired unread, so one re-backfill, said in words
    // with the right figure; then incremental again.
    clock.advance_clock(31 * 86_400);
    let report = run(&engine, &connection, SyncOptions::default()).await;
    assert_eq!(report.run.kind, "full");
    // Nothing changed in Stripe: every row is listed again unchanged, none counted as updated.
    let (updated, unchanged) = report
        .run
        .counts
        .tables
        .values()
        .fold((0, 0), |(u, n), c| (u + c.updated, n + c.unchanged));
    assert_eq!(updated, 0, "{:?}", report.run.counts);
    assert!(unchanged > 100, "{:?}", report.run.counts);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("last read 31 days ago") && n.contains("re-backfills")),
        "{:?}",
        report.notes
    );
    for _ in 0..2 {
        let report = run(&engine, &connection, SyncOptions::default()).await;
        assert_eq!(report.run.kind, "incremental", "{:?}", report.notes);
    }
    assert_exact(&world, &engine, &connection, "after the re-backfill");
}

/// Creates one object of each kind the seed may not make (transfer, top-up, a charge with an
/// application fee, a subscription schedule) through the API.
async fn make_the_rare_kinds(world: &World) {
    let http = reqwest::Client::new();
    let key = world.key("secret_test");
    let first = |path: &'static str| {
        let (http, key) = (http.clone(), key.clone());
        async move {
            let list: serde_json::Value = http
                .get(format!("{}{path}", world.server.base_url()))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            list["data"][0]["id"].as_str().unwrap().to_owned()
        }
    };
    let customer = first("/v1/customers?limit=1").await;
    let price = first("/v1/prices?limit=1&type=recurring").await;
    for (path, form) in [
        (
            "/v1/subscription_schedules",
            vec![
                ("customer", customer.as_str()),
                ("phases[0][items][0][price]", price.as_str()),
                ("phases[0][iterations]", "2"),
            ],
        ),
        (
            "/v1/transfers",
            vec![
                ("amount", "1500"),
                ("currency", "usd"),
                ("destination", "acct_1Destination00"),
            ],
        ),
        ("/v1/topups", vec![("amount", "20000"), ("currency", "usd")]),
        (
            "/v1/charges",
            vec![
                ("amount", "5000"),
                ("currency", "usd"),
                ("source", "tok_visa"),
                ("application_fee_amount", "250"),
            ],
        ),
    ] {
        let answer = http
            .post(format!("{}{path}", world.server.base_url()))
            .bearer_auth(&key)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            200,
            "{path}: {}",
            answer.text().await.unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_filled_and_equals_stripe() {
    let world = World::start(120, 23, "every-table").await;
    make_the_rare_kinds(&world).await;
    let (engine, connection) = connected(&world).await;
    run(&engine, &connection, SyncOptions::default()).await;
    // And again after changes, so each kind also arrives from events.
    make_the_rare_kinds(&world).await;
    world.activity(50, 9);
    run(&engine, &connection, SyncOptions::default()).await;
    assert_exact(&world, &engine, &connection, "every table");
    // Every kind the emulator lists has a table, and no table is empty.
    for kind in sm_emulator::catalog::KINDS.iter() {
        let not_data = matches!(kind.object, "event" | "webhook_endpoint");
        assert!(
            not_data || sm_engine::catalog::by_object(kind.object).is_some(),
            "the emulator lists {} objects but the mirror has no table for them",
            kind.object
        );
    }
    for resource in RESOURCES {
        let (rows, _) = engine.store.count(&connection, resource.table).unwrap();
        assert!(rows > 0, "{} is empty after a sync", resource.table);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_api_version_is_chosen_and_a_change_lists_everything_again() {
    use sm_engine::connect::set_api_version;
    let world = World::start(20, 24, "version-choice").await;
    let engine = world.engine(None);
    let key = ApiKey::parse(&world.key("restricted_test")).unwrap();
    let outcome = connect(
        &engine,
        key,
        ConnectOptions {
            api_version: Some("2024-06-20".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(outcome.account.api_version, "2024-06-20");
    let connection = Connection::new(outcome.account.account_id.clone(), false);
    run(&engine, &connection, SyncOptions::default()).await;
    // The account's events are in 2023-08-16, not the mirror's 2024-06-20: read again.
    world.activity(20, 8);
    let report = run(&engine, &connection, SyncOptions::default()).await;
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("again in API version 2024-06-20")),
        "{:?}",
        report.notes
    );
    assert_exact(&world, &engine, &connection, "in 2024-06-20");

    // A version the typed columns cannot read is refused; another is taken, and the next
    // sync says why it lists everything again.
    let refused = set_api_version(&engine, &connection, "2025-03-31.basil")
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("2025-03-31.basil"),
        "{}",
        refused.message
    );
    let change = set_api_version(&engine, &connection, "2023-08-16")
        .await
        .unwrap();
    assert!(change.changed && change.previous == "2024-06-20");
    requests_since_last(&world);
    let report = run(&engine, &connection, SyncOptions::default()).await;
    assert_eq!(report.run.kind, "backfill");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("re-backfilling every table") && n.contains("2023-08-16")),
        "{:?}",
        report.notes
    );
    assert!(
        requests_since_last(&world)
            .iter()
            .any(|(r, _)| r == "GET /v1/customers")
    );
    assert_exact(&world, &engine, &connection, "back in 2023-08-16");
    let report = run(&engine, &connection, SyncOptions::default()).await;
    assert_eq!(report.run.kind, "incremental");
}

/// A mirror made before the complete tables were recorded: they are found from its done
/// windows, so a table left out later is listed again when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_mirror_learns_its_complete_tables_from_its_windows() {
    let world = World::start(20, 25, "older-mirror").await;
    let (engine, connection) = connected(&world).await;
    run(&engine, &connection, SyncOptions::default()).await;
    engine
        .store
        .set_state(&connection, "backfill.tables", None)
        .unwrap();
    // Only customers for a while: the others' events go by unapplied.
    world.activity(40, 12);
    run(&engine, &connection, only(&["customers"])).await;
    requests_since_last(&world);
    let report = run(&engine, &connection, SyncOptions::default()).await;
    assert_eq!(report.run.kind, "backfill", "{:?}", report.notes);
    let asked = requests_since_last(&world);
    assert!(
        asked.iter().any(|(r, _)| r == "GET /v1/invoices"),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|(r, _)| r == "GET /v1/customers"),
        "{asked:?}"
    );
    assert_exact(&world, &engine, &connection, "after the tables came back");
}
