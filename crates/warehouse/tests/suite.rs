//! One test suite for every backend (`warehouse_test_suite!`): SQLite on a temporary file, and
//! Postgres when `STRIPE_MIRROR_TEST_POSTGRES_URL` names a server (each test in a schema of its
//! own); without it the Postgres tests say they were skipped.

use serde_json::json;
use sm_warehouse::{
    AccountRecord, Batch, Connection, EventRow, Guard, ObjectRow, RunRecord, SealedField, Store,
    StoreError, Window,
};

fn account(id: &str, livemode: bool) -> AccountRecord {
    AccountRecord {
        connection: Connection::new(id, livemode),
        name: "Acme".into(),
        stripe_name: Some("Acme Inc".into()),
        icon_url: None,
        logo_url: None,
        key_kind: "restricted".into(),
        key_masked: "rk_test_…a1b2".into(),
        key_sealed: vec![1, 2, 3, 4],
        permissions: json!({"customers": {"read": true}}),
        status: "ok".into(),
        status_message: None,
        start_date: None,
        webhook_endpoint_id: None,
        webhook_secret_sealed: None,
        api_base: None,
        api_version: None,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

fn row(id: &str, version: i64, data: serde_json::Value) -> ObjectRow {
    ObjectRow {
        id: id.into(),
        created: data["created"].as_i64(),
        deleted: false,
        data: data.to_string(),
        version,
        parent_id: None,
    }
}

pub fn accounts_insert_update_duplicate(store: &dyn Store) {
    let a = account("acct_1", false);
    store.insert_account(&a).unwrap();
    store.insert_account(&account("acct_1", true)).unwrap();
    assert!(matches!(
        store.insert_account(&a),
        Err(StoreError::Duplicate(_))
    ));
    let mut changed = store.account(&a.connection).unwrap().unwrap();
    assert_eq!(changed, a);
    changed.name = "Renamed".into();
    changed.status = "failing".into();
    changed.status_message = Some("API key is invalid".into());
    changed.api_base = Some("http://127.0.0.1:12111".into());
    changed.api_version = Some("2024-06-20".into());
    store.update_account(&changed).unwrap();
    assert_eq!(store.account(&a.connection).unwrap().unwrap(), changed);
    assert_eq!(
        store.account(&a.connection).unwrap().unwrap().name,
        "Renamed"
    );
    assert_eq!(store.accounts().unwrap().len(), 2);
    assert!(
        store
            .account(&Connection::new("acct_none", false))
            .unwrap()
            .is_none()
    );
}

/// `bind_sealed_values` hands every sealed value over once, writes all or nothing, and then
/// never again.
pub fn sealed_values_are_bound_once(store: &dyn Store) {
    let mut with_secret = account("acct_1", true);
    with_secret.webhook_secret_sealed = Some(vec![9, 9]);
    store.insert_account(&account("acct_1", false)).unwrap();
    store.insert_account(&with_secret).unwrap();
    let sealed = |store: &dyn Store| {
        store
            .accounts()
            .unwrap()
            .into_iter()
            .map(|a| (a.key_sealed, a.webhook_secret_sealed))
            .collect::<Vec<_>>()
    };
    let before = sealed(store);
    // A refusal half-way: nothing written, and not marked done.
    let mut seen = 0;
    let mut refuse_second = |_: &Connection, _: SealedField, value: &[u8]| {
        seen += 1;
        (seen < 2).then(|| [b"bound:".as_slice(), value].concat())
    };
    assert_eq!(store.bind_sealed_values(&mut refuse_second).unwrap(), None);
    assert_eq!(sealed(store), before);
    let mut handed = Vec::new();
    let mut bind = |c: &Connection, field: SealedField, value: &[u8]| {
        handed.push((c.label(), field));
        Some([b"bound:".as_slice(), value].concat())
    };
    assert_eq!(store.bind_sealed_values(&mut bind).unwrap(), Some(3));
    assert_eq!(handed.len(), 3, "{handed:?}");
    assert!(handed.contains(&(
        Connection::new("acct_1", true).label(),
        SealedField::WebhookSecrets
    )));
    assert_eq!(
        sealed(store),
        vec![
            (b"bound:\x01\x02\x03\x04".to_vec(), None),
            (
                b"bound:\x01\x02\x03\x04".to_vec(),
                Some(b"bound:\x09\x09".to_vec())
            ),
        ]
    );
    // Done once: the next call hands nothing over and changes nothing.
    let mut never =
        |_: &Connection, _: SealedField, _: &[u8]| -> Option<Vec<u8>> { panic!("bound twice") };
    assert_eq!(store.bind_sealed_values(&mut never).unwrap(), Some(0));
}

pub fn apply_counts_guard_and_typed_columns(store: &dyn Store) {
    let c = Connection::new("acct_1", false);
    let first = Batch {
        rows: vec![(
            "subscriptions",
            vec![
                row(
                    "sub_1",
                    100,
                    json!({"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active", "created": 50, "items": {"data": [{"price": {"id": "price_1"}}]}}),
                ),
                row(
                    "sub_2",
                    100,
                    json!({"id": "sub_2", "object": "subscription", "customer": "cus_2", "status": "canceled", "created": 60}),
                ),
            ],
            Guard::AtLeast,
        )],
        events: vec![EventRow {
            id: "evt_1".into(),
            event_type: "customer.subscription.created".into(),
            created: 100,
            object_id: Some("sub_1".into()),
            data: json!({"id": "evt_1"}).to_string(),
        }],
        windows: vec![Window {
            scope: "subscriptions".into(),
            start: 0,
            end: 1000,
            state: "partial".into(),
            after: Some("sub_2".into()),
        }],
        state: vec![("events.position".into(), "evt_1".into())],
        ..Default::default()
    };
    let counts = store.apply(&c, &first).unwrap();
    assert_eq!(counts.tables["subscriptions"].inserted, 2);
    assert_eq!(counts.new_events, 1);
    assert_eq!(store.windows(&c).unwrap(), first.windows);
    assert_eq!(
        store.state(&c, "events.position").unwrap().as_deref(),
        Some("evt_1")
    );

    // Older versions are refused; a tie passes AtLeast but not Newer; deletion counts.
    let older = Batch {
        rows: vec![(
            "subscriptions",
            vec![row(
                "sub_1",
                99,
                json!({"id": "sub_1", "status": "past_due"}),
            )],
            Guard::AtLeast,
        )],
        ..Default::default()
    };
    assert_eq!(
        store.apply(&c, &older).unwrap().tables["subscriptions"].skipped,
        1
    );
    let tie = Batch {
        rows: vec![(
            "subscriptions",
            vec![row(
                "sub_1",
                100,
                json!({"id": "sub_1", "status": "past_due", "customer": "cus_1"}),
            )],
            Guard::Newer,
        )],
        ..Default::default()
    };
    assert_eq!(
        store.apply(&c, &tie).unwrap().tables["subscriptions"].skipped,
        1
    );
    let mut gone = row(
        "sub_2",
        101,
        json!({"id": "sub_2", "status": "canceled", "customer": "cus_2"}),
    );
    gone.deleted = true;
    let newer = Batch {
        rows: vec![(
            "subscriptions",
            vec![
                row(
                    "sub_1",
                    100,
                    json!({"id": "sub_1", "status": "past_due", "customer": "cus_1"}),
                ),
                gone,
            ],
            Guard::AtLeast,
        )],
        events: first.events.clone(),
        ..Default::default()
    };
    let counts = store.apply(&c, &newer).unwrap();
    assert_eq!(
        (
            counts.tables["subscriptions"].updated,
            counts.tables["subscriptions"].deleted
        ),
        (1, 1)
    );
    assert_eq!(counts.new_events, 0, "events are kept once");
    assert_eq!(store.count(&c, "subscriptions").unwrap(), (1, 1));

    let versions = store
        .versions(&c, "subscriptions", &["sub_1".into(), "sub_9".into()])
        .unwrap();
    assert_eq!(versions["sub_1"].version, 100);
    assert!(!versions.contains_key("sub_9"));
    assert_eq!(
        store
            .ids_where(&c, "subscriptions", "customer", "cus_1")
            .unwrap(),
        vec!["sub_1".to_owned()]
    );

    // The typed columns come from the JSON and are plain SQL.
    let (names, rows) = store
        .query("SELECT id, customer, status, deleted FROM subscriptions ORDER BY id")
        .unwrap();
    assert_eq!(names, ["id", "customer", "status", "deleted"]);
    assert_eq!(
        rows[0][..3],
        [
            Some("sub_1".into()),
            Some("cus_1".into()),
            Some("past_due".into())
        ]
    );
    let stored = store.rows(&c, "subscriptions").unwrap();
    assert_eq!(
        stored[0].data,
        json!({"id": "sub_1", "status": "past_due", "customer": "cus_1"})
    );
    assert!(stored[1].deleted);
    assert!(matches!(
        store.apply(
            &c,
            &Batch {
                rows: vec![("nonsense", vec![], Guard::AtLeast)],
                ..Default::default()
            }
        ),
        Err(StoreError::UnknownTable(_))
    ));
    assert!(
        store.query("DELETE FROM subscriptions").is_err(),
        "queries are read-only"
    );
    assert_eq!(store.events(&c, 10).unwrap()[0].id, "evt_1");

    // Children gone from their parent are marked deleted, their data kept; older marks are refused.
    let stale = Batch {
        deletions: vec![sm_warehouse::Deletion {
            table: "subscriptions",
            ids: vec!["sub_1".into()],
            version: 99,
        }],
        ..Default::default()
    };
    assert_eq!(
        store.apply(&c, &stale).unwrap().tables["subscriptions"].deleted,
        0
    );
    let gone = Batch {
        deletions: vec![sm_warehouse::Deletion {
            table: "subscriptions",
            ids: vec!["sub_1".into(), "sub_404".into()],
            version: 102,
        }],
        ..Default::default()
    };
    assert_eq!(
        store.apply(&c, &gone).unwrap().tables["subscriptions"].deleted,
        1
    );
    assert_eq!(store.count(&c, "subscriptions").unwrap(), (0, 2));
    assert_eq!(
        store.rows(&c, "subscriptions").unwrap()[0].data["status"],
        json!("past_due")
    );
}

pub fn remove_account_takes_every_row_of_that_connection_only(store: &dyn Store) {
    let test = Connection::new("acct_1", false);
    let live = Connection::new("acct_1", true);
    store.insert_account(&account("acct_1", false)).unwrap();
    store.insert_account(&account("acct_1", true)).unwrap();
    for (c, id) in [(&test, "cus_test"), (&live, "cus_live")] {
        let batch = Batch {
            rows: vec![(
                "customers",
                vec![row(id, 1, json!({"id": id, "email": "a@b.co"}))],
                Guard::AtLeast,
            )],
            events: vec![EventRow {
                id: format!("evt_{id}"),
                event_type: "customer.created".into(),
                created: 1,
                object_id: Some(id.into()),
                data: "{}".into(),
            }],
            windows: vec![Window {
                scope: "customers".into(),
                start: 0,
                end: 10,
                state: "done".into(),
                after: None,
            }],
            state: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        store.apply(c, &batch).unwrap();
        let run = store.start_run(c, "backfill", "command", 5).unwrap();
        store
            .finish_run(&RunRecord {
                id: run,
                connection: c.clone(),
                kind: "backfill".into(),
                trigger: "command".into(),
                started_at: 5,
                ended_at: Some(6),
                status: "succeeded".into(),
                counts: Default::default(),
                requests: 3,
                error: None,
                progress: None,
            })
            .unwrap();
    }
    // A sweep marks deleted what was not written since a time, within a `created` range only.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 1;
    assert_eq!(
        store.sweep(&live, "customers", before, 10).unwrap(),
        0,
        "cus_live has no created: outside the range"
    );
    assert_eq!(
        store.sweep(&live, "customers", before - 3600, 0).unwrap(),
        0,
        "written since"
    );
    assert_eq!(store.count(&live, "customers").unwrap(), (1, 0));
    assert_eq!(store.remove_account(&test).unwrap(), 2);
    assert!(store.account(&test).unwrap().is_none());
    assert_eq!(store.count(&test, "customers").unwrap(), (0, 0));
    assert_eq!(store.event_count(&test).unwrap(), 0);
    assert!(store.runs(&test, 10).unwrap().is_empty());
    assert!(store.windows(&test).unwrap().is_empty());
    assert!(store.state(&test, "k").unwrap().is_none());
    assert_eq!(
        store.count(&live, "customers").unwrap(),
        (1, 0),
        "the other mode stays"
    );
    assert_eq!(store.runs(&live, 10).unwrap()[0].requests, 3);
}

pub fn runs_and_windows(store: &dyn Store) {
    let c = Connection::new("acct_2", false);
    let first = store.start_run(&c, "backfill", "schedule", 10).unwrap();
    let second = store.start_run(&c, "incremental", "dashboard", 20).unwrap();
    let mut counts = sm_warehouse::Counts::default();
    counts.tables.insert(
        "customers".into(),
        sm_warehouse::TableCounts {
            inserted: 5,
            updated: 1,
            deleted: 0,
            skipped: 0,
            unchanged: 2,
        },
    );
    store
        .finish_run(&RunRecord {
            id: second,
            connection: c.clone(),
            kind: "incremental".into(),
            trigger: "dashboard".into(),
            started_at: 20,
            ended_at: Some(25),
            status: "failed".into(),
            counts: counts.clone(),
            requests: 9,
            error: Some("API key is invalid".into()),
            progress: None,
        })
        .unwrap();
    let runs = store.runs(&c, 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].id, second);
    assert_eq!(runs[0].trigger, "dashboard");
    assert_eq!(runs[1].trigger, "schedule");
    let other = Connection::new("acct_3", true);
    let third = store.start_run(&other, "backfill", "api", 30).unwrap();
    let mut latest: Vec<(String, i64)> = store
        .latest_runs()
        .unwrap()
        .into_iter()
        .map(|r| (r.connection.label(), r.id))
        .collect();
    latest.sort();
    assert_eq!(
        latest,
        [
            ("acct_2:test".to_owned(), second),
            ("acct_3:live".to_owned(), third)
        ],
        "each connection's newest run"
    );
    store.set_state(&c, "k1", Some("v1")).unwrap();
    store.set_state(&other, "k1", Some("w1")).unwrap();
    store.set_state(&other, "k2", Some("w2")).unwrap();
    store.set_state(&other, "k3", Some("not asked")).unwrap();
    let mut states = store.states_of_all(&["k1", "k2"]).unwrap();
    states.sort();
    assert_eq!(
        states,
        [
            (c.clone(), "k1".to_owned(), "v1".to_owned()),
            (other.clone(), "k1".to_owned(), "w1".to_owned()),
            (other.clone(), "k2".to_owned(), "w2".to_owned()),
        ]
    );
    assert_eq!(store.latest_event_at(&other).unwrap(), None);
    assert_eq!(runs[0].counts, counts);
    assert_eq!(runs[0].error.as_deref(), Some("API key is invalid"));
    assert_eq!(runs[1].id, first);
    assert_eq!(runs[1].status, "running");
    let plan = vec![
        Window {
            scope: "charges".into(),
            start: 0,
            end: 100,
            state: "pending".into(),
            after: None,
        },
        Window {
            scope: "charges".into(),
            start: 100,
            end: 200,
            state: "done".into(),
            after: None,
        },
    ];
    store.reset_windows(&c, &plan).unwrap();
    assert_eq!(store.windows(&c).unwrap(), plan);
    store.reset_windows(&c, &[]).unwrap();
    assert!(store.windows(&c).unwrap().is_empty());

    // A new plan replaces every window, with sync state set and removed, in one batch.
    store.reset_windows(&c, &plan).unwrap();
    store.set_state(&c, "backfill.done", Some("1")).unwrap();
    let fresh = vec![Window {
        scope: "customers".into(),
        start: 5,
        end: 50,
        state: "pending".into(),
        after: None,
    }];
    store
        .apply(
            &c,
            &Batch {
                windows: fresh.clone(),
                replace_windows: true,
                state: vec![("backfill.at".into(), "9".into())],
                remove_state: vec!["backfill.done".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(store.windows(&c).unwrap(), fresh);
    assert!(store.state(&c, "backfill.done").unwrap().is_none());
    assert_eq!(
        store.state(&c, "backfill.at").unwrap().as_deref(),
        Some("9")
    );

    // The sweep after a re-backfill: a row not written again is marked deleted.
    store
        .apply(
            &c,
            &Batch {
                rows: vec![(
                    "customers",
                    vec![row("cus_gone", 1, json!({"id": "cus_gone", "created": 20}))],
                    Guard::AtLeast,
                )],
                ..Default::default()
            },
        )
        .unwrap();
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 2;
    assert_eq!(
        store.sweep(&c, "customers", after, 21).unwrap(),
        0,
        "created before the start date: kept"
    );
    assert_eq!(store.sweep(&c, "customers", after, 10).unwrap(), 1);
    assert_eq!(store.count(&c, "customers").unwrap(), (0, 1));
    store.set_state(&c, "x", Some("1")).unwrap();
    store.set_state(&c, "x", None).unwrap();
    assert!(store.state(&c, "x").unwrap().is_none());
}

/// Batches written side by side from many threads (SQLite commits them in groups): each one
/// that succeeds is stored whole with its cursor, each one that fails left nothing behind, and
/// `rows_by_id` reads back what was written.
pub fn concurrent_batches_land_whole(store: &dyn Store) {
    let c = Connection::new("acct_1", false);
    let threads = 8;
    let batches = 30;
    let outcomes: Vec<Vec<(usize, bool)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let c = &c;
                scope.spawn(move || {
                    (0..batches)
                        .map(|b| {
                            // Every seventh batch of thread 3 names no table: it must fail.
                            let table = if t == 3 && b % 7 == 3 {
                                "nonsense"
                            } else {
                                "customers"
                            };
                            let rows = (0..10)
                                .map(|i| {
                                    let id = format!("cus_{t}_{b}_{i}");
                                    row(
                                        &id,
                                        100 + b as i64,
                                        json!({"id": id, "object": "customer", "created": 10}),
                                    )
                                })
                                .collect();
                            let batch = Batch {
                                rows: vec![(table, rows, Guard::AtLeast)],
                                windows: vec![Window {
                                    scope: format!("customers#{t}_{b}"),
                                    start: 0,
                                    end: 1,
                                    state: "done".into(),
                                    after: None,
                                }],
                                ..Default::default()
                            };
                            match store.apply(c, &batch) {
                                Ok(counts) => {
                                    assert_eq!(counts.tables["customers"].inserted, 10);
                                    (b, true)
                                }
                                Err(_) => (b, false),
                            }
                        })
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let windows = store.windows(&c).unwrap();
    let mut landed = 0;
    for (t, outcome) in outcomes.iter().enumerate() {
        for &(b, ok) in outcome {
            if t == 3 && b % 7 == 3 {
                assert!(!ok, "a batch naming no table failed");
            } else {
                assert!(
                    ok,
                    "batch {t}/{b} failed with a bad batch written beside it"
                );
            }
            let ids: Vec<String> = (0..10).map(|i| format!("cus_{t}_{b}_{i}")).collect();
            let found = store.rows_by_id(&c, "customers", &ids).unwrap();
            let window = windows
                .iter()
                .any(|w| w.scope == format!("customers#{t}_{b}"));
            if ok {
                landed += 1;
                assert_eq!(found.len(), 10, "batch {t}/{b} acknowledged but not stored");
                assert!(
                    found
                        .iter()
                        .all(|r| r.version == 100 + b as i64 && r.data["object"] == "customer")
                );
                assert!(window, "batch {t}/{b} stored without its cursor");
            } else {
                assert!(
                    found.is_empty() && !window,
                    "batch {t}/{b} failed but left rows behind"
                );
            }
        }
    }
    assert_eq!(store.count(&c, "customers").unwrap().0, landed * 10);
    // Every batch but thread 3's four bad ones (b = 3, 10, 17, 24).
    assert_eq!(landed, (threads * batches - 4) as u64);
    assert!(
        store
            .rows_by_id(&c, "customers", &["cus_none".into()])
            .unwrap()
            .is_empty()
    );
}

/// Customers found by part of an email, name or metadata, newest first, whether among the
/// newest few hundred or far older (the index on SQLite); changes, deletions and other
/// accounts followed; the text taken literally.
pub fn customers_are_searched_by_text(store: &dyn Store) {
    let c = Connection::new("acct_search", false);
    let other = Connection::new("acct_other", false);
    let customers = |from: usize, to: usize| -> Vec<ObjectRow> {
        (from..to)
            .map(|n| {
                let (email, name, metadata) = match n {
                    3 => ("ada.lovelace@example.com", "Ada Lovelace", json!({"plan": "Gold_10%"})),
                    4 => ("grace@navy.example", "Grace O'Hopper", json!({})),
                    _ => ("someone@example.com", "Some One", json!({"n": n.to_string()})),
                };
                row(
                    &format!("cus_{n:04}"),
                    1,
                    json!({"id": format!("cus_{n:04}"), "object": "customer", "created": 1_000 + n, "email": email, "name": name, "metadata": metadata}),
                )
            })
            .collect()
    };
    let apply = |connection: &Connection, rows: Vec<ObjectRow>| {
        store
            .apply(
                connection,
                &Batch {
                    rows: vec![("customers", rows, Guard::Newer)],
                    ..Default::default()
                },
            )
            .unwrap();
    };
    // Older than the newest SEARCH_NEWEST_FIRST by far.
    apply(&c, customers(0, sm_warehouse::SEARCH_NEWEST_FIRST + 300));
    apply(&other, customers(0, 10));
    let ids = |text: &str, limit: usize| -> Vec<String> {
        store
            .search_customers(&c, text, limit)
            .unwrap()
            .iter()
            .map(|data| {
                serde_json::from_str::<serde_json::Value>(data).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ids("lovelace", 10), ["cus_0003"]);
    assert_eq!(ids("ada.lovelace@", 10), ["cus_0003"]);
    assert_eq!(ids("gold_10%", 10), ["cus_0003"], "a metadata value");
    assert_eq!(ids("\"plan\"", 10), ["cus_0003"], "a metadata key");
    assert_eq!(ids("o'hop", 10), ["cus_0004"]);
    assert!(ids("gold_1_%", 10).is_empty(), "wildcards are literal");
    assert!(ids("gold_10%x", 10).is_empty());
    assert!(
        ids("lovelace@example.com\nada", 10).is_empty(),
        "no match across fields"
    );
    // A common word: the newest first.
    let newest = sm_warehouse::SEARCH_NEWEST_FIRST + 299;
    assert_eq!(
        ids("example.com", 3),
        [newest, newest - 1, newest - 2].map(|n| format!("cus_{n:04}"))
    );
    assert_eq!(ids("on", 2).len(), 2, "two characters");
    // Two characters, literal, found far from the newest.
    assert_eq!(ids("0%", 10), ["cus_0003"]);
    assert_eq!(ids("d_", 10), ["cus_0003"]);
    assert!(ids("d%", 10).is_empty());
    // A change is followed: found by the new email, not the old one.
    apply(
        &c,
        vec![row(
            "cus_0003",
            2,
            json!({"id": "cus_0003", "object": "customer", "created": 1_003, "email": "ada@analytical.example", "name": "Ada King", "metadata": {}}),
        )],
    );
    assert!(ids("lovelace", 10).is_empty());
    assert_eq!(ids("analytical", 10), ["cus_0003"]);
    // Deleted: not found.
    let mut gone = row(
        "cus_0004",
        2,
        json!({"id": "cus_0004", "object": "customer", "deleted": true}),
    );
    gone.deleted = true;
    gone.created = None;
    apply(&c, vec![gone]);
    assert!(ids("o'hop", 10).is_empty());
    // Another account's customers are its own; removing it leaves these.
    assert_eq!(
        store
            .search_customers(&other, "lovelace", 10)
            .unwrap()
            .len(),
        1
    );
    store.remove_account(&other).unwrap();
    assert!(
        store
            .search_customers(&other, "lovelace", 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(ids("analytical", 10), ["cus_0003"]);
}

macro_rules! warehouse_test_suite {
    ($backend:ident, $open:path) => {
        mod $backend {
            use super::*;

            fn store(test: &str) -> Option<Box<dyn Store>> {
                $open(test)
            }

            #[test]
            fn customers_are_searched_by_text() {
                if let Some(store) = store("search") {
                    super::customers_are_searched_by_text(store.as_ref());
                }
            }
            #[test]
            fn accounts_insert_update_duplicate() {
                if let Some(store) = store("accounts") {
                    super::accounts_insert_update_duplicate(store.as_ref());
                }
            }
            #[test]
            fn sealed_values_are_bound_once() {
                if let Some(store) = store("bind") {
                    super::sealed_values_are_bound_once(store.as_ref());
                }
            }
            #[test]
            fn apply_counts_guard_and_typed_columns() {
                if let Some(store) = store("apply") {
                    super::apply_counts_guard_and_typed_columns(store.as_ref());
                }
            }
            #[test]
            fn remove_account_takes_every_row_of_that_connection_only() {
                if let Some(store) = store("remove") {
                    super::remove_account_takes_every_row_of_that_connection_only(store.as_ref());
                }
            }
            #[test]
            fn concurrent_batches_land_whole() {
                if let Some(store) = store("concurrent") {
                    super::concurrent_batches_land_whole(store.as_ref());
                }
            }
            #[test]
            fn the_same_object_again_is_unchanged_not_updated() {
                if let Some(store) = store("unchanged") {
                    super::the_same_object_again_is_unchanged_not_updated(store.as_ref());
                }
            }
            #[test]
            fn tokens_are_kept_by_name_and_hash() {
                if let Some(store) = store("tokens") {
                    super::tokens_are_kept_by_name_and_hash(store.as_ref());
                }
            }
            #[test]
            fn a_query_that_never_ends_is_stopped() {
                if let Some(store) = store("endless") {
                    super::a_query_that_never_ends_is_stopped(store.as_ref());
                }
            }
            #[test]
            fn users_sql_cannot_escape() {
                if let Some(store) = store("sandbox") {
                    super::users_sql_cannot_escape(store.as_ref(), stringify!($backend));
                }
            }
            #[test]
            fn pages_newest_first_with_filters_and_cursors() {
                if let Some(store) = store("pages") {
                    super::pages_newest_first_with_filters_and_cursors(store.as_ref());
                }
            }
            #[test]
            fn the_inbox_keeps_deliveries_in_order_until_applied() {
                if let Some(store) = store("inbox") {
                    super::the_inbox_keeps_deliveries_in_order_until_applied(store.as_ref());
                }
            }
            #[test]
            fn live_events_queue_for_rules_and_deliver_once() {
                if let Some(store) = store("notify") {
                    super::live_events_queue_for_rules_and_deliver_once(store.as_ref());
                }
            }
            #[test]
            fn leases_are_claimed_once_and_fence_their_stale_holders() {
                if let Some(store) = store("leases") {
                    super::leases_are_claimed_once_and_fence_their_stale_holders(store.as_ref());
                }
            }
            #[test]
            fn deliveries_make_a_connection_claimable_without_a_sync() {
                if let Some(store) = store("stamps") {
                    super::deliveries_make_a_connection_claimable_without_a_sync(store.as_ref());
                }
            }
            #[test]
            fn runs_and_windows() {
                if let Some(store) = store("runs") {
                    super::runs_and_windows(store.as_ref());
                }
            }
        }
    };
}

/// Live events new to the mirror are queued for the notification rules in the same transaction
/// (not those of a backfill, not those seen before, not while no rule exists); planning makes
/// one delivery per (event, rule, channel) however often it is planned; removing a channel takes
/// its rules and cancels what it had not sent; no user's SQL reads any of it.
pub fn live_events_queue_for_rules_and_deliver_once(store: &dyn Store) {
    use sm_warehouse::{ChannelRecord, DeliveryQuery, DeliveryUpdate, NewDelivery, RuleRecord};
    let c = Connection::new("acct_nt1", false);
    let event = |id: &str, created: i64| EventRow {
        id: id.into(),
        event_type: "charge.succeeded".into(),
        created,
        object_id: Some("ch_1".into()),
        data: format!(r#"{{"id":"{id}","type":"charge.succeeded"}}"#),
    };
    let live = |events: Vec<EventRow>| Batch {
        events,
        notify: true,
        ..Default::default()
    };
    // No rule yet: nothing is queued.
    store.apply(&c, &live(vec![event("evt_0", 5)])).unwrap();
    assert!(store.notify_queued(10).unwrap().is_empty());
    let channel = ChannelRecord {
        id: "ch_slack".into(),
        name: "ops".into(),
        kind: "slack".into(),
        target_masked: "hooks.slack.com/services/T0…".into(),
        config_sealed: vec![9, 9, 9],
        status: "untested".into(),
        status_message: None,
        created_at: 100,
        updated_at: 100,
    };
    store.insert_channel(&channel).unwrap();
    assert!(matches!(
        store.insert_channel(&ChannelRecord {
            id: "ch_other".into(),
            ..channel.clone()
        }),
        Err(StoreError::Duplicate(_))
    ));
    let rule = RuleRecord {
        id: "rule_1".into(),
        name: "payments".into(),
        channel_id: "ch_slack".into(),
        spec: "{}".into(),
        created_at: 100,
    };
    store.insert_rule(&rule).unwrap();
    store
        .apply(&c, &live(vec![event("evt_1", 10), event("evt_2", 11)]))
        .unwrap();
    // Seen before, or brought by a backfill: not queued.
    store
        .apply(&c, &live(vec![event("evt_1", 10), event("evt_0", 5)]))
        .unwrap();
    store
        .apply(
            &c,
            &Batch {
                events: vec![event("evt_3", 12)],
                ..Default::default()
            },
        )
        .unwrap();
    let queued = store.notify_queued(10).unwrap();
    let ids: Vec<&str> = queued.iter().map(|q| q.event.id.as_str()).collect();
    assert_eq!(ids, ["evt_1", "evt_2"]);
    assert_eq!(queued[0].event.created, 10);
    assert!(queued[0].event.data.contains("charge.succeeded"));
    let plan: Vec<NewDelivery> = queued
        .iter()
        .map(|q| NewDelivery {
            connection: c.clone(),
            event_id: q.event.id.clone(),
            rule_id: "rule_1".into(),
            channel_id: "ch_slack".into(),
            state: "pending".into(),
            due_at: 50,
            created_at: 50,
        })
        .collect();
    let matched: Vec<(Connection, String)> = queued
        .iter()
        .map(|q| (c.clone(), q.event.id.clone()))
        .collect();
    assert_eq!(store.notify_plan(&matched, &plan).unwrap(), 2);
    assert!(store.notify_queued(10).unwrap().is_empty());
    assert_eq!(
        store.notify_plan(&matched, &plan).unwrap(),
        0,
        "once per event, rule, channel"
    );
    assert_eq!(store.next_delivery_due().unwrap(), Some(50));
    assert!(store.deliveries_due(49, 10).unwrap().is_empty());
    let due = store.deliveries_due(50, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(
        (due[0].event_type.as_str(), due[0].event_created),
        ("charge.succeeded", 10)
    );
    assert!(due[0].event_data.contains("evt_1"));
    store
        .update_deliveries(&[DeliveryUpdate {
            id: due[0].id,
            state: "sent".into(),
            attempts: 1,
            due_at: 50,
            finished_at: Some(51),
            last_error: None,
        }])
        .unwrap();
    let log = store
        .deliveries(&DeliveryQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[1].state.as_str(), log[1].attempts),
        ("sent", 1),
        "newest first"
    );
    let sent = store
        .deliveries(&DeliveryQuery {
            limit: 10,
            states: vec!["sent".into()],
            channel_id: Some("ch_slack".into()),
            since: Some(0),
        })
        .unwrap();
    assert_eq!(sent.len(), 1);
    assert!(store.delete_channel("ch_slack").unwrap());
    assert!(store.rules().unwrap().is_empty(), "its rules go with it");
    let log = store
        .deliveries(&DeliveryQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let states: Vec<&str> = log.iter().map(|d| d.state.as_str()).collect();
    assert_eq!(states, ["canceled", "sent"]);
    assert_eq!(store.next_delivery_due().unwrap(), None);
    for table in ["notify_channels", "notify_deliveries"] {
        assert!(
            store
                .sandboxed_query(&format!("SELECT * FROM {table}"), "x")
                .is_err()
        );
    }
}

/// Webhook deliveries wait in the inbox in arrival order, once per event, per connection, until
/// removed; a connection's removal takes its waiting ones too; no user's SQL reads them.
pub fn the_inbox_keeps_deliveries_in_order_until_applied(store: &dyn Store) {
    let (a, b) = (
        Connection::new("acct_in1", false),
        Connection::new("acct_in2", true),
    );
    assert!(
        store
            .inbox_add(&a, "evt_3", 30, r#"{"id":"evt_3"}"#)
            .unwrap()
    );
    assert!(
        store
            .inbox_add(&a, "evt_1", 10, r#"{"id":"evt_1"}"#)
            .unwrap()
    );
    assert!(
        !store.inbox_add(&a, "evt_3", 31, "again").unwrap(),
        "kept once"
    );
    assert!(
        store
            .inbox_add(&b, "evt_3", 40, r#"{"id":"evt_3"}"#)
            .unwrap()
    );
    let pending = store.inbox_pending(&a, 0, 10).unwrap();
    let ids: Vec<&str> = pending.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["evt_3", "evt_1"], "in arrival order");
    assert_eq!(pending[0].body, r#"{"id":"evt_3"}"#);
    assert_eq!(store.inbox_pending(&a, 0, 1).unwrap().len(), 1);
    let later: Vec<String> = store
        .inbox_pending(&a, pending[0].seq, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(later, ["evt_1"], "those after a seq");
    let depths = store.inbox_depths().unwrap();
    assert_eq!(depths.len(), 2);
    assert_eq!((depths[0].waiting, depths[0].oldest_received_at), (2, 10));
    store.inbox_remove(&a, &[pending[0].seq]).unwrap();
    let left: Vec<String> = store
        .inbox_pending(&a, 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(left, ["evt_1"]);
    assert!(
        store.inbox_add(&a, "evt_3", 50, "later").unwrap(),
        "a removed one may come again"
    );
    store.remove_account(&a).unwrap();
    assert!(store.inbox_pending(&a, 0, 10).unwrap().is_empty());
    assert_eq!(
        store.inbox_pending(&b, 0, 10).unwrap().len(),
        1,
        "the other connection's stay"
    );
}

/// A row sent again with the same data (a re-listing) moves its version and sync time, and is
/// counted as unchanged, not updated; a real change is updated; in a batch of several rows as in
/// one of one row (the stores take different paths for each).
pub fn the_same_object_again_is_unchanged_not_updated(store: &dyn Store) {
    let c = Connection::new("acct_1", false);
    let customer = |n: u32, name: &str| {
        row(
            &format!("cus_{n}"),
            0,
            json!({"id": format!("cus_{n}"), "object": "customer", "name": name, "created": 1_700_000_000}),
        )
    };
    let batch = |version: i64, names: &[&str]| Batch {
        rows: vec![(
            "customers",
            names
                .iter()
                .enumerate()
                .map(|(n, name)| ObjectRow {
                    version,
                    ..customer(n as u32, name)
                })
                .collect(),
            Guard::AtLeast,
        )],
        ..Default::default()
    };
    for names in [
        &["Ada"][..],
        &["Ada", "Grace", "Linus", "Barbara", "Edsger", "Ken"][..],
    ] {
        let first = store.apply(&c, &batch(10, names)).unwrap();
        assert_eq!(first.tables["customers"].inserted as usize, names.len());
        let again = store.apply(&c, &batch(20, names)).unwrap();
        let t = again.tables["customers"];
        assert_eq!(
            (t.updated, t.unchanged),
            (0, names.len() as u64),
            "{names:?}"
        );
        let versions = store.versions(&c, "customers", &["cus_0".into()]).unwrap();
        assert_eq!(
            versions.get("cus_0").map(|v| v.version),
            Some(20),
            "the version moved"
        );
        let mut changed: Vec<&str> = names.to_vec();
        changed[0] = "Ada Lovelace";
        let t = store.apply(&c, &batch(30, &changed)).unwrap().tables["customers"];
        assert_eq!(
            (t.updated, t.unchanged),
            (1, names.len() as u64 - 1),
            "{names:?}"
        );
        store.remove_account(&c).unwrap();
    }
}

/// API tokens: stored by name with their hash, a taken name refused, deleted once.
pub fn tokens_are_kept_by_name_and_hash(store: &dyn Store) {
    let token = |name: &str, read_only| sm_warehouse::TokenRecord {
        name: name.into(),
        hash: vec![7; 32],
        read_only,
        created_at: 1_700_000_000,
    };
    store.insert_token(&token("ci", true)).unwrap();
    store.insert_token(&token("admin", false)).unwrap();
    assert!(matches!(
        store.insert_token(&token("ci", false)),
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        store.tokens().unwrap(),
        [token("admin", false), token("ci", true)]
    );
    assert!(store.delete_token("ci").unwrap());
    assert!(!store.delete_token("ci").unwrap());
    assert_eq!(store.tokens().unwrap().len(), 1);
}

/// A user's query that would never end is stopped at the time limit, with words saying so,
/// and the store answers the next query.
/// The password the tests give the Postgres reader role (the engine derives it from the master
/// key; SQLite ignores it).
const READER_SECRET: &str = "test-reader-secret";

pub fn a_query_that_never_ends_is_stopped(store: &dyn Store) {
    let started = std::time::Instant::now();
    let error = store
        .sandboxed_query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n", READER_SECRET)
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&error, StoreError::QueryLimit(m) if m.contains("longer than")),
        "{error:?}"
    );
    assert!(
        took < sm_warehouse::QUERY_TIME_LIMIT + std::time::Duration::from_secs(5),
        "stopped after {took:?}"
    );
    let (_, rows) = store.sandboxed_query("SELECT 1", READER_SECRET).unwrap();
    assert_eq!(rows.len(), 1);
    if store.backend() == sm_warehouse::Backend::Postgres {
        drop_reader_role(store);
    }
}

/// Everything a user's SQL can see of the mirror, read by the program itself: compared before
/// and after the escape attempts.
fn everything(store: &dyn Store) -> Vec<Vec<Option<String>>> {
    let mut all = Vec::new();
    for sql in [
        "SELECT account_id, name, key_masked, status, updated_at FROM accounts ORDER BY account_id, livemode",
        "SELECT id, deleted, version FROM customers ORDER BY id",
        "SELECT id, type FROM events ORDER BY id",
        "SELECT name, read_only FROM api_tokens ORDER BY name",
        "SELECT count(*) FROM sync_state",
    ] {
        all.extend(store.query(sql).unwrap().1);
    }
    all
}

/// A user's SQL is a boundary: reads of the mirror work; bookkeeping tables, sealed columns,
/// writes, files, settings, locks, sleeps, other databases and runaway queries are refused
/// with a code of the error table, and nothing changed or appeared.
pub fn users_sql_cannot_escape(store: &dyn Store, backend: &str) {
    let c = Connection::new("acct_1", false);
    store.insert_account(&account("acct_1", false)).unwrap();
    store
        .apply(
            &c,
            &Batch {
                rows: vec![(
                    "customers",
                    vec![row("cus_1", 1, json!({"id": "cus_1", "object": "customer", "created": 1, "email": "a@example.com"}))],
                    Guard::AtLeast,
                )],
                ..Default::default()
            },
        )
        .unwrap();
    store
        .insert_token(&sm_warehouse::TokenRecord {
            name: "admin".into(),
            hash: vec![9; 32],
            read_only: false,
            created_at: 1,
        })
        .unwrap();
    let before = everything(store);
    let dir = std::env::temp_dir().join(format!("sm-escape-{}-{backend}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();

    // What a user may do.
    let (names, rows) = store
        .sandboxed_query("SELECT id, email FROM customers", READER_SECRET)
        .unwrap();
    assert_eq!(names, ["id", "email"]);
    assert_eq!(rows, [[json!("cus_1"), json!("a@example.com")]]);
    let (_, rows) = store
        .sandboxed_query(
            "SELECT account_id, name, key_masked FROM accounts",
            READER_SECRET,
        )
        .unwrap();
    assert_eq!(rows.len(), 1);

    let refused = |e: &StoreError| matches!(e, StoreError::QueryRefused(_));
    let limited = |e: &StoreError| matches!(e, StoreError::QueryLimit(_));
    // A statement the database does not understand is the user's mistake, and refused too.
    let not_run = |e: &StoreError| {
        matches!(
            e,
            StoreError::QueryRefused(_) | StoreError::BadQuery(_) | StoreError::QueryLimit(_)
        )
    };
    type Check = fn(&StoreError) -> bool;
    let mut attempts: Vec<(String, Check)> = vec![
        ("SELECT * FROM api_tokens".into(), refused),
        ("SELECT hash FROM api_tokens".into(), refused),
        ("SELECT key_sealed FROM accounts".into(), refused),
        ("SELECT webhook_secret_sealed FROM accounts".into(), refused),
        ("SELECT * FROM accounts".into(), refused),
        ("SELECT * FROM sync_state".into(), refused),
        ("SELECT body FROM inbox".into(), refused),
        ("SELECT * FROM cursors".into(), refused),
        ("SELECT * FROM stripe_mirror_meta".into(), refused),
        ("DELETE FROM customers".into(), not_run),
        ("UPDATE accounts SET name = 'x'".into(), not_run),
        ("INSERT INTO customers (account_id, id, livemode, data, version, synced_at) VALUES ('a', 'b', false, '{}', 1, 1)".into(), not_run),
        ("DROP TABLE customers".into(), not_run),
        ("CREATE TABLE escape (a int)".into(), not_run),
        ("SELECT 1; DELETE FROM customers".into(), not_run),
        ("WITH d AS (DELETE FROM customers RETURNING id) SELECT * FROM d".into(), not_run),
        ("BEGIN".into(), not_run),
        // A recursive query that answers without end stops at the row limit.
        ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n".into(), limited),
    ];
    if backend == "sqlite" {
        attempts.extend::<Vec<(String, Check)>>(vec![
            (format!("ATTACH DATABASE '{}' AS other", file("attached.db")), not_run),
            (format!("VACUUM INTO '{}'", file("copy.db")), not_run),
            ("PRAGMA query_only = OFF".into(), refused),
            ("PRAGMA writable_schema = ON".into(), refused),
            ("PRAGMA journal_mode = DELETE".into(), refused),
            ("SELECT * FROM pragma_table_info('api_tokens')".into(), refused),
            ("SELECT load_extension('/tmp/evil.so')".into(), refused),
            ("SELECT fts3_tokenizer('simple')".into(), refused),
            ("SELECT sqlite_compileoption_get(0)".into(), refused),
            ("SELECT * FROM dbstat".into(), not_run),
            (format!("SELECT writefile('{}', 'x')", file("written")), not_run),
            ("CREATE TEMP TABLE t (a)".into(), not_run),
            ("SAVEPOINT a".into(), not_run),
            ("ANALYZE".into(), not_run),
            // Values that grow past the limit.
            ("WITH RECURSIVE s(x) AS (SELECT 'x' UNION ALL SELECT x || x FROM s) SELECT length(x) FROM s".into(), limited),
            ("SELECT length(zeroblob(2000000000))".into(), limited),
        ]);
    } else {
        attempts.extend::<Vec<(String, Check)>>(vec![
            ("SELECT pg_read_file('/etc/passwd')".into(), refused),
            ("SELECT pg_read_binary_file('/etc/passwd')".into(), refused),
            ("SELECT pg_ls_dir('/')".into(), refused),
            ("SELECT lo_import('/etc/passwd')".into(), refused),
            ("SELECT pg_reload_conf()".into(), refused),
            ("SELECT pg_sleep(60)".into(), refused),
            ("SELECT pg_advisory_lock(1)".into(), refused),
            ("SELECT \"pg_advisory_lock\"(2)".into(), refused),
            (
                "SELECT set_config('role', 'postgres', false)".into(),
                refused,
            ),
            (
                "SELECT set_config('session_authorization', 'postgres', false)".into(),
                refused,
            ),
            (
                "SELECT query_to_xml('SELECT * FROM api_tokens', true, true, '')".into(),
                refused,
            ),
            (
                "SELECT dblink('dbname=postgres', 'SELECT 1')".into(),
                refused,
            ),
            (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity".into(),
                refused,
            ),
            ("SELECT txid_current()".into(), refused),
            ("SELECT * FROM pg_authid".into(), refused),
            ("SELECT current_setting('data_directory')".into(), refused),
            ("SELECT * FROM customers FOR UPDATE".into(), refused),
            ("SELECT nextval('runs_id_seq')".into(), refused),
            (format!("COPY customers TO '{}'", file("copied")), not_run),
            (
                format!("COPY (SELECT 1) TO PROGRAM 'touch {}'", file("program")),
                not_run,
            ),
            ("SET ROLE postgres".into(), not_run),
            ("LOCK TABLE customers".into(), not_run),
        ]);
    }
    assert!(attempts.len() >= 25, "{} attempts", attempts.len());
    for (sql, expected) in &attempts {
        match store.sandboxed_query(sql, READER_SECRET) {
            Ok(answer) => panic!("{backend}: `{sql}` ran: {answer:?}"),
            Err(error) => assert!(expected(&error), "{backend}: `{sql}` answered {error:?}"),
        }
    }
    // Nothing changed, nothing appeared, and reads still work.
    assert_eq!(everything(store), before, "{backend}: the mirror changed");
    let appeared: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        appeared.is_empty(),
        "{backend}: files appeared: {appeared:?}"
    );
    let (_, rows) = store
        .sandboxed_query("SELECT count(*) FROM customers", READER_SECRET)
        .unwrap();
    assert_eq!(rows, [[json!(1)]]);
    if backend == "postgres" {
        let (_, locks) = store
            .query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            .unwrap();
        assert_eq!(
            locks,
            [[Some("0".to_owned())]],
            "an advisory lock outlived a query"
        );
        the_reader_role_is_the_boundary(store);
    }
}

/// The functions the sandbox refuses by name are refused by the reader role itself too: logged
/// in as it, a superuser's rights cannot be taken back. Then the test's schema and role go.
fn the_reader_role_is_the_boundary(store: &dyn Store) {
    let (_, rows) = store
        .query("SELECT current_database(), current_schema()")
        .unwrap();
    let (database, schema) = (rows[0][0].clone().unwrap(), rows[0][1].clone().unwrap());
    let role = format!("stripe_mirror_reader_{database}_{schema}");
    let url = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL").unwrap();
    let mut config: ::postgres::Config = url.parse().unwrap();
    config.user(&role).password(READER_SECRET).dbname(&database);
    let mut reader = config.connect(::postgres::NoTls).unwrap();
    for sql in [
        "SELECT pg_read_file('/etc/hostname')",
        "SELECT pg_ls_dir('/')",
        "SELECT lo_import('/etc/hostname')",
        "SELECT pg_reload_conf()",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT set_config('session_authorization', 'postgres', false)",
        "SELECT * FROM api_tokens",
        "SELECT key_sealed FROM accounts",
    ] {
        let error = reader
            .simple_query(&format!("SET search_path TO {schema}; {sql}"))
            .unwrap_err();
        assert_eq!(
            error.code(),
            Some(&::postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error}"
        );
    }
    drop(reader);
    drop_reader_role(store);
}

/// Takes a Postgres test's schema and its reader role away (roles are the cluster's, and would
/// pile up run after run).
fn drop_reader_role(store: &dyn Store) {
    let (_, rows) = store
        .query("SELECT current_database(), current_schema()")
        .unwrap();
    let (database, schema) = (rows[0][0].clone().unwrap(), rows[0][1].clone().unwrap());
    let role = format!("stripe_mirror_reader_{database}_{schema}");
    let url = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL").unwrap();
    let config: ::postgres::Config = url.parse().unwrap();
    let mut admin = config.connect(::postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";"
        ))
        .unwrap();
}

/// Pages as Stripe lists: newest first (id breaks ties), a cursor, typed filters read as their
/// column's type, a created range, deleted rows left out; an unknown filter or cursor refused.
pub fn pages_newest_first_with_filters_and_cursors(store: &dyn Store) {
    use sm_warehouse::PageQuery;
    let c = Connection::new("acct_1", false);
    let rows: Vec<ObjectRow> = (0..7)
        .map(|n| {
            row(
                &format!("sub_{n}"),
                1,
                json!({"id": format!("sub_{n}"), "object": "subscription", "created": 1_000 + n / 2,
                       "customer": if n % 2 == 0 { "cus_even" } else { "cus_odd" }, "status": "active",
                       "cancel_at_period_end": n == 3}),
            )
        })
        .collect();
    store
        .apply(
            &c,
            &Batch {
                rows: vec![("subscriptions", rows, Guard::AtLeast)],
                ..Default::default()
            },
        )
        .unwrap();
    let ids = |q: &PageQuery| -> (Vec<String>, bool) {
        let (rows, more) = store.page(&c, "subscriptions", q).unwrap();
        (rows.into_iter().map(|r| r.id).collect(), more)
    };
    let first = PageQuery {
        limit: 3,
        ..Default::default()
    };
    assert_eq!(
        ids(&first),
        (vec!["sub_6".into(), "sub_5".into(), "sub_4".into()], true)
    );
    let next = PageQuery {
        starting_after: Some("sub_4".into()),
        ..first.clone()
    };
    assert_eq!(
        ids(&next),
        (vec!["sub_3".into(), "sub_2".into(), "sub_1".into()], true)
    );
    let last = PageQuery {
        starting_after: Some("sub_1".into()),
        ..first.clone()
    };
    assert_eq!(ids(&last), (vec!["sub_0".into()], false));
    // Toward newer objects: the page just newer than the cursor, still newest first.
    let back = PageQuery {
        ending_before: Some("sub_1".into()),
        ..first.clone()
    };
    assert_eq!(
        ids(&back),
        (vec!["sub_4".into(), "sub_3".into(), "sub_2".into()], true)
    );
    let not_odd = PageQuery {
        exclude: Some(("customer".into(), "cus_odd".into())),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(ids(&not_odd).0, ["sub_6", "sub_4", "sub_2", "sub_0"]);
    let even = PageQuery {
        filters: vec![("customer".into(), "cus_even".into())],
        limit: 10,
        ..Default::default()
    };
    assert_eq!(ids(&even).0, ["sub_6", "sub_4", "sub_2", "sub_0"]);
    let flagged = PageQuery {
        filters: vec![("cancel_at_period_end".into(), "true".into())],
        limit: 10,
        ..Default::default()
    };
    assert_eq!(ids(&flagged).0, ["sub_3"]);
    let range = PageQuery {
        created_gte: Some(1_001),
        created_lt: Some(1_003),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(ids(&range).0, ["sub_5", "sub_4", "sub_3", "sub_2"]);
    // Objects without `created` (payment links) come last, and paging passes through them
    // both ways, each once.
    let links: Vec<ObjectRow> = (0..5)
        .map(|n| {
            let mut data =
                json!({"id": format!("plink_{n}"), "object": "payment_link", "active": true});
            if n < 2 {
                data["created"] = json!(2_000 + n);
            }
            row(&format!("plink_{n}"), 1, data)
        })
        .collect();
    store
        .apply(
            &c,
            &Batch {
                rows: vec![("payment_links", links, Guard::AtLeast)],
                ..Default::default()
            },
        )
        .unwrap();
    let mut forward = Vec::new();
    let mut query = PageQuery {
        limit: 2,
        ..Default::default()
    };
    loop {
        let (rows, more) = store.page(&c, "payment_links", &query).unwrap();
        forward.extend(rows.iter().map(|r| r.id.clone()));
        if !more {
            break;
        }
        query.starting_after = rows.last().map(|r| r.id.clone());
    }
    assert_eq!(
        forward,
        ["plink_1", "plink_0", "plink_4", "plink_3", "plink_2"]
    );
    let mut backward = Vec::new();
    let mut query = PageQuery {
        limit: 2,
        ending_before: Some("plink_2".into()),
        ..Default::default()
    };
    loop {
        let (rows, more) = store.page(&c, "payment_links", &query).unwrap();
        backward.splice(0..0, rows.iter().map(|r| r.id.clone()));
        if !more {
            break;
        }
        query.ending_before = rows.first().map(|r| r.id.clone());
    }
    assert_eq!(backward, ["plink_1", "plink_0", "plink_4", "plink_3"]);
    for bad in [
        PageQuery {
            filters: vec![("colour".into(), "x".into())],
            limit: 10,
            ..Default::default()
        },
        PageQuery {
            filters: vec![("canceled_at".into(), "soon".into())],
            limit: 10,
            ..Default::default()
        },
        PageQuery {
            starting_after: Some("sub_nope".into()),
            limit: 10,
            ..Default::default()
        },
    ] {
        assert!(
            matches!(
                store.page(&c, "subscriptions", &bad),
                Err(StoreError::BadQuery(_))
            ),
            "{bad:?}"
        );
    }
}

/// Leases: four workers claiming at once never get the same connection; a lease run out is
/// claimed again with a higher epoch, and the old holder's writes, renewals and release are then
/// refused (nothing of its batch lands); a request to sync made while a lease is held survives
/// its release; removing a connection removes its row.
pub fn leases_are_claimed_once_and_fence_their_stale_holders(store: &dyn Store) {
    use sm_warehouse::Lease;
    let now = 1_800_000_000;
    let connections: Vec<Connection> = (0..40)
        .map(|i| Connection::new(format!("acct_lease{i:02}"), i % 2 == 0))
        .collect();
    for (i, c) in connections.iter().enumerate() {
        store.lease_due(c, now - 100 + i as i64).unwrap();
    }
    // Asked again for later: the earlier time stands.
    store.lease_due(&connections[0], now + 1_000).unwrap();
    store
        .lease_due(&Connection::new("acct_later", false), now + 1_000)
        .unwrap();

    let claimed = std::sync::Mutex::new(Vec::<Lease>::new());
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let claimed = &claimed;
            scope.spawn(move || {
                loop {
                    let got = store
                        .lease_claim(&format!("worker-{worker}"), now, 60, 3)
                        .unwrap();
                    if got.is_empty() {
                        break;
                    }
                    claimed.lock().unwrap().extend(got);
                }
            });
        }
    });
    let claimed = claimed.into_inner().unwrap();
    let mut held: Vec<&Connection> = claimed.iter().map(|l| &l.connection).collect();
    held.sort_by_key(|c| c.label());
    held.dedup();
    assert_eq!(claimed.len(), 40, "every due connection, once");
    assert_eq!(held.len(), 40, "no connection claimed twice");
    assert!(claimed.iter().all(|l| l.epoch == 1 && l.until == now + 60));
    assert!(
        store
            .lease_claim("late", now + 30, 60, 100)
            .unwrap()
            .is_empty(),
        "all held, and acct_later not yet due"
    );

    // The first holder writes under its lease.
    let first = claimed
        .iter()
        .find(|l| l.connection == connections[3])
        .unwrap()
        .clone();
    let customer = |id: &str, fence: &Lease| Batch {
        rows: vec![(
            "customers",
            vec![row(
                id,
                100,
                json!({"id": id, "object": "customer", "created": 1}),
            )],
            Guard::AtLeast,
        )],
        fence: Some(fence.fence()),
        ..Default::default()
    };
    store
        .apply(&first.connection, &customer("cus_l1", &first))
        .unwrap();
    assert!(store.lease_renew(&first, now + 60).unwrap());

    // It stalls past its lease; another worker takes the connection over.
    let later = now + 61;
    let taken = store.lease_claim("worker-9", later, 60, 100).unwrap();
    let second = taken
        .iter()
        .find(|l| l.connection == first.connection)
        .expect("an expired lease is claimed again")
        .clone();
    assert_eq!(second.epoch, first.epoch + 1);
    assert!(
        taken
            .iter()
            .all(|l| l.connection.account_id != "acct_later")
    );
    let refused = store.apply(&first.connection, &customer("cus_l2", &first));
    match refused {
        Err(StoreError::Fenced(words)) => {
            assert!(
                words.contains("worker-9") && words.contains("not committed"),
                "{words}"
            )
        }
        other => panic!("a stale holder's write must be fenced: {other:?}"),
    }
    assert_eq!(store.count(&first.connection, "customers").unwrap(), (1, 0));
    assert!(!store.lease_renew(&first, later + 60).unwrap());
    assert!(!store.lease_release(&first, later).unwrap());
    // Fenced in a batch of several too: nothing of any of them lands.
    let both = store.apply_all(
        &first.connection,
        &[customer("cus_l3", &second), customer("cus_l4", &first)],
    );
    assert!(matches!(both, Err(StoreError::Fenced(_))), "{both:?}");
    assert_eq!(store.count(&first.connection, "customers").unwrap(), (1, 0));

    // The new holder writes; a webhook asks for a sync meanwhile; the release keeps it.
    assert!(store.lease_renew(&second, later + 60).unwrap());
    store
        .apply(&second.connection, &customer("cus_l5", &second))
        .unwrap();
    store.lease_due(&second.connection, later + 10).unwrap();
    assert!(store.lease_release(&second, later + 3_600).unwrap());
    let rows = store.leases().unwrap();
    assert_eq!(rows.len(), 41);
    let row_of = |c: &Connection| rows.iter().find(|r| &r.connection == c).unwrap().clone();
    let released = row_of(&second.connection);
    assert_eq!(
        (
            released.owner,
            released.until,
            released.due_at,
            released.epoch
        ),
        (None, None, later + 10, second.epoch)
    );
    assert_eq!(
        row_of(&connections[5])
            .owner
            .as_deref()
            .map(|o| o.starts_with("worker-")),
        Some(true)
    );

    store.remove_account(&second.connection).unwrap();
    assert_eq!(store.leases().unwrap().len(), 40);
    assert_eq!(
        store.lease_next_due().unwrap(),
        Some(now + 1_000),
        "acct_later, unheld"
    );
    // A runner that knows no other holder is alive frees them all, due at once.
    assert_eq!(store.lease_release_all(later + 100).unwrap(), 39);
    for row in store.leases().unwrap() {
        assert!(row.owner.is_none(), "{row:?}");
        let held = row.connection.account_id != "acct_later";
        assert_eq!(row.due_at <= later + 100, held, "{row:?}");
    }
}

/// A delivery kept in the inbox stamps its connection's lease row in the same transaction: a
/// worker claims it though no sync is due (and is told so), the due time survives the claim,
/// and a holder that clears the stamp and finds the inbox empty gives the row up unstamped —
/// while a delivery kept after the clear stamps it again.
pub fn deliveries_make_a_connection_claimable_without_a_sync(store: &dyn Store) {
    let now = 1_800_000_000;
    let quiet = Connection::new("acct_stamp_quiet", false);
    let busy = Connection::new("acct_stamp_busy", true);
    store.lease_due(&quiet, now + 300).unwrap();
    store.lease_due(&busy, now + 300).unwrap();
    assert!(store.lease_claim("w1", now, 60, 10).unwrap().is_empty());
    assert_eq!(store.lease_next_due().unwrap(), Some(now + 300));

    let body = |id: &str| json!({"id": id, "object": "event"}).to_string();
    assert!(
        store
            .inbox_add(&busy, "evt_s1", now - 5, &body("evt_s1"))
            .unwrap()
    );
    assert!(
        store
            .inbox_add(&busy, "evt_s2", now - 4, &body("evt_s2"))
            .unwrap()
    );
    // Kept already: nothing new, no stamp of its own.
    assert!(
        !store
            .inbox_add(&busy, "evt_s1", now - 3, &body("evt_s1"))
            .unwrap()
    );
    let stamped = |c: &Connection| {
        store
            .leases()
            .unwrap()
            .into_iter()
            .find(|r| &r.connection == c)
            .unwrap()
    };
    assert_eq!(
        stamped(&busy).inbox_since,
        Some(now - 5),
        "the first delivery's time"
    );
    assert_eq!(stamped(&quiet).inbox_since, None);
    assert_eq!(store.lease_next_due().unwrap(), Some(now - 5));
    // A connection without a row (connected by a process that has not scheduled it yet) gets
    // one, due at once.
    let unknown = Connection::new("acct_stamp_new", false);
    assert!(
        store
            .inbox_add(&unknown, "evt_s9", now - 1, &body("evt_s9"))
            .unwrap()
    );
    assert_eq!(stamped(&unknown).due_at, now - 1);

    let claimed = store.lease_claim("w1", now, 60, 10).unwrap();
    let held: Vec<(&Connection, bool)> = claimed
        .iter()
        .map(|l| (&l.connection, l.sync_due))
        .collect();
    assert_eq!(
        held,
        vec![(&busy, false), (&unknown, true)],
        "longest waiting first"
    );
    let lease = claimed[0].clone();
    assert_eq!(
        stamped(&busy).due_at,
        now + 300,
        "an inbox claim keeps the due time"
    );

    // The holder applies both, clears the stamp and looks again: empty, so it releases.
    let pending = store.inbox_pending(&busy, 0, 10).unwrap();
    store
        .inbox_remove(&busy, &pending.iter().map(|e| e.seq).collect::<Vec<_>>())
        .unwrap();
    assert!(store.lease_inbox_mark(&lease, None).unwrap());
    assert!(store.inbox_pending(&busy, 0, 10).unwrap().is_empty());
    // A delivery kept while it is still held stamps the row again…
    assert!(
        store
            .inbox_add(&busy, "evt_s3", now + 1, &body("evt_s3"))
            .unwrap()
    );
    assert!(store.lease_release(&lease, sm_warehouse::NEVER).unwrap());
    let row = stamped(&busy);
    assert_eq!(
        (row.owner, row.due_at, row.inbox_since),
        (None, now + 300, Some(now + 1))
    );
    // …so the next claim (anyone's) takes it at once.
    let again = store.lease_claim("w2", now + 2, 60, 1).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((&again[0].connection, again[0].sync_due), (&busy, false));
    // Not held: the clear is refused.
    assert!(!store.lease_inbox_mark(&lease, None).unwrap());
}

fn open_sqlite(test: &str) -> Option<Box<dyn Store>> {
    let dir = std::env::temp_dir().join(format!("sm-warehouse-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Some(sm_warehouse::open(dir.join("mirror.sqlite").to_str().unwrap()).unwrap())
}

fn open_postgres(test: &str) -> Option<Box<dyn Store>> {
    let Ok(url) = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: Postgres test `{test}` — set STRIPE_MIRROR_TEST_POSTGRES_URL=postgres://… to run it"
        );
        return None;
    };
    let schema = format!("sm_test_{}_{test}", std::process::id());
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(sm_warehouse::open(&format!("{url}{separator}schema={schema}")).unwrap())
}

warehouse_test_suite!(sqlite, open_sqlite);
warehouse_test_suite!(postgres, open_postgres);

/// A database made before the customer index (schema 6) gets it, filled, when opened.
#[test]
fn an_older_sqlite_database_gets_the_customer_index_filled() {
    let dir = std::env::temp_dir().join(format!("sm-warehouse-{}-reindex", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mirror.sqlite");
    let c = Connection::new("acct_old", false);
    {
        let store = sm_warehouse::open(path.to_str().unwrap()).unwrap();
        let rows = (0..sm_warehouse::SEARCH_NEWEST_FIRST + 10)
            .map(|n| {
                row(
                    &format!("cus_{n:04}"),
                    1,
                    json!({"id": format!("cus_{n:04}"), "created": n, "email": format!("person{n:04}@example.com")}),
                )
            })
            .collect();
        store
            .apply(
                &c,
                &Batch {
                    rows: vec![("customers", rows, Guard::Newer)],
                    ..Default::default()
                },
            )
            .unwrap();
    }
    // As schema 6 left it: no index.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "DROP TRIGGER customer_search_insert; DROP TRIGGER customer_search_update; DROP TRIGGER customer_search_delete;
         DROP TABLE customer_search; DROP TABLE customer_search_keys;
         UPDATE stripe_mirror_meta SET value = '6' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(db);
    let store = sm_warehouse::open(path.to_str().unwrap()).unwrap();
    let found = store.search_customers(&c, "person0002@", 10).unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("cus_0002"));
}
