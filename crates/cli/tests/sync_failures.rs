//! How `stripe-mirror sync` fails, and recovers, against a separate emulator process:
//! a key revoked mid-run, an events position older than Stripe's 30 days, a key that may not
//! read some resources.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use sm_warehouse::Connection;
use support::{
    EmuProcess, KeyInput, Logged, Mirror, Proxy, compare_export, customers_created, duplicates,
    entry, refetches, table_counts,
};

/// Per table, what the runs of a history inserted.
fn inserted_by_table(runs: &[Value]) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for run in runs {
        for (table, counts) in run["counts"]["tables"].as_object().into_iter().flatten() {
            *totals.entry(table.clone()).or_default() +=
                counts["inserted"].as_u64().unwrap_or(0) + counts["deleted"].as_u64().unwrap_or(0);
        }
    }
    totals
}

/// (B) A key revoked in the middle of a backfill ends the run as failed with "API key is
/// invalid", leaves what was written consistent, and after `update-key` the next run continues
/// where the failed one stopped.
#[test]
fn a_key_revoked_mid_run_fails_the_run_and_update_key_resumes_it() {
    let started = Instant::now();
    let emu = EmuProcess::start(40, 29);
    let proxy = Proxy::start(&emu.base);
    let mirror = Mirror::new("revoked", &proxy.base);
    // A key of its own, so that revoking it touches nothing else.
    let first_key = emu.restricted_key(&sm_emulator::world::all_read_permissions());
    mirror.connect(&first_key, &[]);
    let connection = Connection::new(emu.account.clone(), false);
    let label = format!("{}:test", emu.account);
    let store = mirror.store();

    // A paced backfill (the default share: 12.5 requests a second); the key is revoked once some
    // windows are finished and others are not.
    proxy.set_run(1);
    let mut child = mirror.spawn(&["sync"], "revoked-run");
    let waited = Instant::now();
    let done_at_revoke = loop {
        assert!(
            child.try_wait().expect("waiting").is_none(),
            "the backfill ended before the key was revoked: {:?}",
            mirror.output_of("revoked-run")
        );
        let windows = store.windows(&connection).expect("the cursors");
        let done = windows.iter().filter(|w| w.state == "done").count();
        if done >= 8 {
            emu.revoke(&first_key);
            break done;
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(90),
            "the run goes on with a revoked key"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let failed_seconds = waited.elapsed().as_secs_f64();
    let (out, err) = mirror.output_of("revoked-run");
    assert!(!status.success(), "the run fails:\n{out}\n{err}");
    eprintln!(
        "revoked: the run exited with {:?}; stderr: {:?}",
        status.code(),
        err.trim()
    );
    assert!(
        err.contains("API key is invalid"),
        "stderr says why:\n{err}"
    );
    assert!(err.contains("update-key"), "stderr says what to do:\n{err}");

    let history = mirror.syncs(&label);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["status"], "failed", "{:?}", history[0]);
    assert_eq!(history[0]["kind"], "backfill", "{:?}", history[0]);
    assert_eq!(
        history[0]["error"], "API key is invalid",
        "{:?}",
        history[0]
    );
    assert!(
        history[0]["ended_at"].is_i64(),
        "the failed run is finished"
    );
    let accounts = mirror.accounts();
    let account = entry(&accounts, &emu.account, "test");
    assert_eq!(account["status"], "failing", "{account}");
    assert!(
        account["status_message"]
            .as_str()
            .is_some_and(|m| m.contains("API key is invalid")),
        "{account}"
    );

    // What the failed run wrote is consistent: every row is Stripe's, some are still missing.
    let export = emu.export();
    let partial = compare_export(&export, store.as_ref(), &connection, &[]);
    assert!(
        partial.wrong.is_empty(),
        "after the failed run: {}",
        partial.describe()
    );
    assert!(
        !partial.missing.is_empty(),
        "the run stopped midway: nothing missing?"
    );
    assert!(duplicates(store.as_ref(), &connection).is_empty());
    let windows_after_failure = store.windows(&connection).expect("the cursors");
    let rows_after_failure: u64 = table_counts(store.as_ref(), &connection).values().sum();

    // The revoked key fails every command that uses it, with the same words.
    proxy.set_run(2);
    let again = mirror.run(&["sync"], &KeyInput::None);
    assert_ne!(again.code, 0, "{}", again.describe());
    assert!(
        again.stderr.contains("API key is invalid"),
        "{}",
        again.describe()
    );
    let history = mirror.syncs(&label);
    assert_eq!(history[0]["status"], "failed");

    // A new key, and the next run continues where the first stopped.
    let new_key = emu.restricted_key(&sm_emulator::world::all_read_permissions());
    mirror
        .run(&["update-key", &label], &KeyInput::Env(new_key))
        .success();
    let windows_before = store.windows(&connection).expect("the cursors");
    proxy.set_run(3);
    let resumed = mirror
        .run(
            &["sync", "--budget-share", "1.0", "--json"],
            &KeyInput::None,
        )
        .success();
    let report = resumed.json()[0].clone();
    assert_eq!(report["run"]["kind"], "backfill", "{report}");
    assert_eq!(report["run"]["status"], "succeeded", "{report}");
    let accounts = mirror.accounts();
    let account = entry(&accounts, &emu.account, "test");
    assert_eq!(account["status"], "ok", "{account}");

    // Not fetched again: no request of the resumed run lists a window the failed run finished,
    // or a partial window from its beginning.
    let requests = proxy.requests();
    let resumed_requests: Vec<&Logged> = requests.iter().filter(|r| r.run == 3).collect();
    let customers = customers_created(store.as_ref(), &connection);
    let problems = refetches(&resumed_requests, &windows_before, &customers);
    assert!(
        problems.is_empty(),
        "the resumed run fetched finished work again:\n{}",
        problems.join("\n")
    );
    // Every row was inserted exactly once over the two runs.
    let history = mirror.syncs(&label);
    let counted = inserted_by_table(&history);
    let counts = table_counts(store.as_ref(), &connection);
    for (table, rows) in &counts {
        assert_eq!(
            counted.get(table).copied().unwrap_or(0),
            *rows,
            "{table}: rows inserted over the runs against rows in the table"
        );
    }
    let comparison = compare_export(&emu.export(), store.as_ref(), &connection, &[]);
    assert!(
        comparison.exact(),
        "after update-key and sync: {}",
        comparison.describe()
    );
    assert!(duplicates(store.as_ref(), &connection).is_empty());
    let failed_requests = requests.iter().filter(|r| r.run == 1).count();
    eprintln!(
        "revoked: the key went after {done_at_revoke} done windows; the run failed {failed_seconds:.1} s after it began, \
         with {rows_after_failure} rows and {} of {} windows done, {failed_requests} requests; \
         the resumed run made {} requests and inserted {}; {} objects compared; {:.1} s in all",
        windows_after_failure
            .iter()
            .filter(|w| w.state == "done")
            .count(),
        windows_after_failure.len(),
        resumed_requests.len(),
        support::inserted(&report["run"]),
        comparison.compared,
        started.elapsed().as_secs_f64()
    );
}

/// (C) An events position older than Stripe's 30 days of events triggers a re-backfill, says so,
/// and ends exact.
#[test]
fn an_events_position_past_30_days_re_backfills_and_says_so() {
    let started = Instant::now();
    let emu = EmuProcess::start(20, 31);
    let proxy = Proxy::start(&emu.base);
    let mirror = Mirror::new("stale", &proxy.base);
    mirror.connect(&emu.key("restricted_test"), &[]);
    let connection = Connection::new(emu.account.clone(), false);
    let label = format!("{}:test", emu.account);
    let store = mirror.store();
    proxy.set_run(1);
    mirror
        .run(&["sync", "--budget-share", "1.0"], &KeyInput::None)
        .success();
    emu.activity(40, 3);
    mirror
        .run(&["sync", "--budget-share", "1.0"], &KeyInput::None)
        .success();
    let fresh = compare_export(&emu.export(), store.as_ref(), &connection, &[]);
    assert!(fresh.exact(), "before the gap: {}", fresh.describe());

    // 31 days without a sync: the events the position points into are gone.
    emu.advance_clock(31 * 86_400);
    emu.activity(40, 4);
    // And, to be sure of each kind, a customer deleted and another renamed through the API.
    let (_, live) = store
        .query(&format!(
            "SELECT id FROM customers WHERE account_id = '{}' AND NOT deleted ORDER BY id LIMIT 2",
            emu.account
        ))
        .expect("customers");
    let ids: Vec<String> = live.into_iter().filter_map(|r| r[0].clone()).collect();
    let secret = emu.key("secret_test");
    let (status, answer) = emu.api("DELETE", &format!("/v1/customers/{}", ids[0]), "", &secret);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = emu.api(
        "POST",
        &format!("/v1/customers/{}", ids[1]),
        "name=Renamed+during+the+gap",
        &secret,
    );
    assert_eq!(status, 200, "{answer}");
    proxy.set_run(3);
    let run = mirror
        .run(&["sync", "--budget-share", "1.0"], &KeyInput::None)
        .success();
    let said = format!("{}\n{}", run.stdout, run.stderr);
    assert!(
        said.contains("30 days") && said.contains("re-backfill"),
        "the run says it re-backfills because of Stripe's 30 days:\n{}",
        run.describe()
    );
    eprintln!(
        "30 days: the run said {:?} (a {} run)",
        said.lines()
            .find(|l| l.contains("30 days"))
            .unwrap_or_default()
            .trim(),
        mirror.syncs(&label)[0]["kind"]
    );
    let history = mirror.syncs(&label);
    assert_eq!(history[0]["status"], "succeeded", "{:?}", history[0]);
    // It did list everything again: a customer list from the beginning of history.
    let requests = proxy.requests();
    assert!(
        requests.iter().any(|r| r.run == 3
            && r.path() == "/v1/customers"
            && r.param("starting_after").is_none()),
        "the re-backfill lists customers again"
    );
    let comparison = compare_export(&emu.export(), store.as_ref(), &connection, &[]);
    assert!(
        comparison.exact(),
        "after the re-backfill (a {} run): {}\n\
         Objects deleted after the expired position but before the re-backfill began stay live: \
         lists omit deleted objects, and the re-backfill records the newest event as the new \
         position, so their `*.deleted` events (still within Stripe's 30 days) are never replayed",
        history[0]["kind"],
        comparison.describe()
    );
    assert!(duplicates(store.as_ref(), &connection).is_empty());

    // And from then on, plain incremental runs again.
    emu.activity(20, 5);
    let run = mirror
        .run(&["sync", "--budget-share", "1.0"], &KeyInput::None)
        .success();
    assert!(!run.stdout.contains("re-backfill"), "{}", run.describe());
    let comparison = compare_export(&emu.export(), store.as_ref(), &connection, &[]);
    assert!(
        comparison.exact(),
        "after the next run: {}",
        comparison.describe()
    );
    eprintln!(
        "30 days: {} objects compared; {:.1} s in all",
        comparison.compared,
        started.elapsed().as_secs_f64()
    );
}

/// (D) Resources the key cannot read are skipped and reported by their missing permission; the
/// rest is mirrored exactly and the run is "partial".
#[test]
fn unreadable_resources_are_skipped_by_permission_and_the_rest_is_exact() {
    let started = Instant::now();
    let emu = EmuProcess::start(20, 37);
    let mirror = Mirror::new("partial", &emu.base);
    let lacking = ["rak_dispute_read", "rak_payout_read"];
    let permissions: Vec<String> = sm_emulator::world::all_read_permissions()
        .into_iter()
        .filter(|p| !lacking.contains(&p.as_str()))
        .collect();
    let key = emu.restricted_key(&permissions);
    mirror.connect(&key, &[]);
    let connection = Connection::new(emu.account.clone(), false);
    let label = format!("{}:test", emu.account);
    let store = mirror.store();

    let run = mirror
        .run(&["sync", "--budget-share", "1.0"], &KeyInput::None)
        .success();
    for (table, permission) in [
        ("disputes", "rak_dispute_read"),
        ("payouts", "rak_payout_read"),
    ] {
        let line = format!("skipping {table}: missing {permission}");
        assert!(
            run.stdout.contains(&line) && run.stderr.contains(&line),
            "the run names {permission} (stdout and stderr):\n{}",
            run.describe()
        );
    }
    assert!(run.stdout.starts_with("partial "), "{}", run.describe());
    let history = mirror.syncs(&label);
    assert_eq!(history[0]["status"], "partial", "{:?}", history[0]);
    let accounts = mirror.accounts();
    let account = entry(&accounts, &emu.account, "test");
    let message = account["status_message"].as_str().unwrap_or_default();
    assert!(
        lacking.iter().all(|p| message.contains(p)),
        "the account says what is skipped: {account}"
    );
    let comparison = compare_export(
        &emu.export(),
        store.as_ref(),
        &connection,
        &["disputes", "payouts"],
    );
    assert!(
        comparison.exact(),
        "the rest is exact: {}",
        comparison.describe()
    );

    // Changes later: still partial, still exact for what the key may read.
    emu.activity(60, 9);
    let json = mirror
        .run(
            &["sync", "--budget-share", "1.0", "--json"],
            &KeyInput::None,
        )
        .success()
        .json();
    assert_eq!(json[0]["run"]["status"], "partial", "{json}");
    let skipped: Vec<String> = json[0]["skipped"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} ({})",
                s[0].as_str().unwrap_or("?"),
                s[1].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{json}");
    let comparison = compare_export(
        &emu.export(),
        store.as_ref(),
        &connection,
        &["disputes", "payouts"],
    );
    assert!(
        comparison.exact(),
        "after an incremental run: {}",
        comparison.describe()
    );
    assert!(duplicates(store.as_ref(), &connection).is_empty());
    eprintln!(
        "partial: skipped {skipped:?}; {} objects compared; {:.1} s in all",
        comparison.compared,
        started.elapsed().as_secs_f64()
    );
}
