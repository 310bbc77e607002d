//! Stripe-compatible reads, checked with Stripe's own Python SDK (not our client): lists with
//! `auto_paging_iter` (cursors), retrieve, Stripe's default filter on subscriptions, `status`,
//! a missing object and a wrong key raising the SDK's own exceptions. The SDK is installed by
//! `.ci/run` (`pip install stripe`); without it this test says it was skipped, unless
//! `STRIPE_MIRROR_TEST_SDK=required`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Server, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_stripe_sdk_reads_the_mirror() {
    let python = std::process::Command::new("python3")
        .args(["-c", "import stripe"])
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("STRIPE_MIRROR_TEST_SDK").as_deref() != Ok("required"),
            "the Stripe Python SDK is required: python3 -m pip install stripe"
        );
        eprintln!("skipped: Stripe's Python SDK is not installed (python3 -m pip install stripe)");
        return;
    }
    let world = World::start(40, 96, "stripe-sdk").await;
    let engine = world.engine();
    let connection = world.connect(&engine, None).await;
    world.sync(&engine).await;
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    let token = sm_engine::ops::tokens::create(&engine, "sdk", true)
        .await
        .unwrap()
        .secret;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/stripe_reads.py");
    let base = server.base.clone();
    let account = connection.label();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .env("MIRROR_TOKEN", token.as_str())
            .env("MIRROR_BASE", base)
            .env("MIRROR_ACCOUNT", account)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("Stripe Python SDK {}", seen["sdk_version"]);

    // What the mirror holds, newest first, as Stripe lists it.
    let (_, rows) = engine
        .store
        .query("SELECT id FROM customers WHERE NOT deleted ORDER BY created DESC, id DESC")
        .unwrap();
    let expected: Vec<String> = rows.into_iter().filter_map(|r| r[0].clone()).collect();
    let listed: Vec<String> = serde_json::from_value(seen["customers"].clone()).unwrap();
    assert_eq!(
        listed, expected,
        "every customer, in Stripe's order, across pages"
    );
    assert_eq!(seen["first_ids"].as_array().unwrap().len(), 3);
    assert_eq!(seen["has_more"], true);
    assert_eq!(seen["retrieved"], expected.last().unwrap().as_str());
    let statuses: Vec<String> =
        serde_json::from_value(seen["subscription_statuses"].clone()).unwrap();
    assert!(!statuses.contains(&"canceled".to_owned()), "{statuses:?}");
    assert!(statuses.len() >= 3, "{statuses:?}");
    assert_eq!(seen["active_only"], serde_json::json!(["active"]));
    assert_eq!(seen["missing"], "resource_missing");
    assert_eq!(seen["wrong_token"], "refused");
    server.stop().await;
}
