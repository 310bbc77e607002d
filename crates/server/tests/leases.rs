//! Two `serve` schedulers on one Postgres (two engines, each with its own connections, as two
//! processes would have) share the connections through their lease rows: every connection is
//! synced again and again, each run under a claim of its own, and both schedulers take part.
//! Skipped without `STRIPE_MIRROR_TEST_POSTGRES_URL`.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use sm_emulator::control::{NewAccount, create_account};
use sm_engine::connect::{ConnectOptions, connect};
use sm_stripe::ApiKey;
use sm_warehouse::Connection;
use support::{Server, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_one_postgres_share_the_connections() {
    let Ok(url) = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: two schedulers on Postgres — set STRIPE_MIRROR_TEST_POSTGRES_URL=postgres://… to run it"
        );
        return;
    };
    let world = World::start(2, 61, "leases").await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{separator}schema=sm_leases_{}", std::process::id());
    let first = world.engine_on(&target);
    let second = world.engine_on(&target);
    let mut connections = vec![world.connect(&first, None).await];
    for n in 0..5 {
        let account = create_account(
            world.emulator(),
            &NewAccount {
                scale: 1,
                seed: Some(70 + n),
                name: Some(format!("Shop {n}")),
                ..Default::default()
            },
            70 + n,
        )
        .expect("an emulated account");
        let key = ApiKey::parse(account["keys"]["secret_test"].as_str().unwrap()).unwrap();
        let outcome = connect(&first, key, ConnectOptions::default())
            .await
            .expect("it connects");
        connections.push(Connection::new(outcome.account.account_id, false));
    }

    let a = Server::start(first.clone(), None, Duration::from_secs(2), 300).await;
    let b = Server::start(second.clone(), None, Duration::from_secs(2), 300).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let by_a: HashSet<Connection> = a.state.metrics.attempted().into_iter().collect();
    let by_b: HashSet<Connection> = b.state.metrics.attempted().into_iter().collect();
    a.stop().await;
    b.stop().await;

    let leases = first.store.leases().unwrap();
    assert_eq!(leases.len(), connections.len(), "{leases:?}");
    for connection in &connections {
        let runs = first.store.runs(connection, 1_000).unwrap();
        let lease = leases.iter().find(|l| &l.connection == connection).unwrap();
        assert!(
            runs.len() >= 2,
            "{}: {} runs",
            connection.label(),
            runs.len()
        );
        // Every run succeeded, but one the stop cut short (left "running").
        assert!(
            runs.iter()
                .filter(|r| r.status != "succeeded")
                .all(|r| r.status == "running")
                && runs.iter().filter(|r| r.status == "running").count() <= 1,
            "{}: {runs:?}",
            connection.label()
        );
        // Each run began with a claim of its own (a run cut off by the stop may have claimed
        // without recording more).
        assert!(
            lease.epoch == runs.len() as i64 || lease.epoch == runs.len() as i64 + 1,
            "{}: epoch {} after {} runs",
            connection.label(),
            lease.epoch,
            runs.len()
        );
        let mut spans: Vec<(i64, i64)> = runs
            .iter()
            .map(|r| (r.started_at, r.ended_at.unwrap_or(i64::MAX)))
            .collect();
        spans.sort();
        assert!(
            spans.windows(2).all(|w| w[1].0 >= w[0].1),
            "{}: runs overlap {spans:?}",
            connection.label()
        );
    }
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "both schedulers synced: {} and {}",
        by_a.len(),
        by_b.len()
    );
    eprintln!(
        "first synced {} connections, second {}; lease epochs {:?}",
        by_a.len(),
        by_b.len(),
        leases.iter().map(|l| l.epoch).collect::<Vec<_>>()
    );
}
