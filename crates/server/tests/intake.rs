//! Webhook intake, delivery by delivery: missing, forged, expired, malformed or replayed
//! signatures get a 4xx and change nothing (no event row, no object change); unknown event types
//! are stored and acknowledged; every accepted event goes through the sync's apply path, and an
//! object only moves forward whatever the order (newer applies, older is stale, a same-second tie
//! is settled by Stripe's current state, a deletion is final).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sm_engine::Engine;
use sm_warehouse::Connection;
use support::{Server, World, deliver, event_json, has_event, mirror_event_ids, mirror_row, sign};

const SECRET: &str = "whsec_intake_0123456789abcdef";

struct Setup {
    world: World,
    engine: std::sync::Arc<Engine>,
    connection: Connection,
    server: Server,
    url: String,
}

/// A small account, mirrored exactly, connected with a signing secret of our own; serve running
/// with no endpoint and a long interval (only our deliveries move the mirror). Each test has its
/// own seed, so that no two tests (one process, one replay guard) make the same ids.
async fn setup(name: &str, seed: u64) -> Setup {
    let world = World::start(5, seed, name).await;
    let engine = world.engine();
    let connection = world.connect(&engine, Some(SECRET)).await;
    world.sync(&engine).await;
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    server.wait_for_sync(&world.http, &connection.label()).await;
    let url = server.webhook_url(&connection.account_id);
    Setup {
        world,
        engine,
        connection,
        server,
        url,
    }
}

impl Setup {
    /// A customer of the account.
    async fn customer(&self) -> String {
        let page = self
            .world
            .stripe_ok("GET", "/v1/customers", &[("limit", "1")])
            .await;
        page["data"][0]["id"]
            .as_str()
            .expect("a customer")
            .to_owned()
    }

    /// Changes a customer's metadata through the API; the event it made.
    async fn touch(&self, customer: &str, value: &str) -> Value {
        self.world
            .stripe_ok(
                "POST",
                &format!("/v1/customers/{customer}"),
                &[("metadata[touched]", value)],
            )
            .await;
        let event = self.world.latest_events(1).await.remove(0);
        assert_eq!(event["type"], "customer.updated");
        assert_eq!(event["data"]["object"]["id"], customer);
        event
    }

    /// Two changes to a customer recorded in the same second (tried until they are).
    async fn two_in_one_second(
        &self,
        customer: &str,
        round: usize,
        delete: bool,
    ) -> (Value, Value) {
        for attempt in 0..20 {
            let first = self.touch(customer, &format!("{round}-{attempt}-a")).await;
            let second = if delete {
                self.world
                    .stripe_ok("DELETE", &format!("/v1/customers/{customer}"), &[])
                    .await;
                let event = self.world.latest_events(1).await.remove(0);
                assert_eq!(event["type"], "customer.deleted");
                event
            } else {
                self.touch(customer, &format!("{round}-{attempt}-b")).await
            };
            if first["created"] == second["created"] {
                return (first, second);
            }
            assert!(!delete, "a deleted customer cannot be changed again");
        }
        panic!("no two changes within one second in 20 tries");
    }

    /// Delivers an event signed now with the right secret; status and answer.
    async fn send(&self, event: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(event).expect("JSON");
        let header = sign(SECRET, sm_engine::now(), &body);
        deliver(&self.world.http, &self.url, &body, Some(&header)).await
    }

    fn row(&self, table: &str, id: &str) -> Option<(bool, Value, i64)> {
        mirror_row(&self.engine, &self.connection, table, id)
    }

    fn event_count(&self) -> usize {
        mirror_event_ids(&self.engine, &self.connection).len()
    }

    /// The emulator's own copy of an object: (deleted, value).
    fn stripe_state(&self, id: &str) -> (bool, Value) {
        self.world.emulator_object(id).expect("a known object")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_deliveries_change_nothing() {
    let s = setup("refused", 31).await;
    let customer = s.customer().await;
    // Past the second of the sync that stored the customer: the change is plainly newer.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let event = s.touch(&customer, "forged-target").await;
    let id = event["id"].as_str().unwrap().to_owned();
    let body = serde_json::to_vec(&event).unwrap();
    let before = s.row("customers", &customer);
    let events_before = s.event_count();
    let now = sm_engine::now();
    let good = sign(SECRET, now, &body);
    let signature_of = |header: &str| header.split_once(",v1=").unwrap().1.to_owned();
    let mut tampered = event.clone();
    tampered["data"]["object"]["metadata"]["touched"] = json!("tampered");
    tampered["created"] = json!(now + 1_000);
    let tampered = serde_json::to_vec(&tampered).unwrap();

    let refused: Vec<(&str, Vec<u8>, Option<String>, &str)> = vec![
        (
            "no signature header",
            body.clone(),
            None,
            "invalid_signature",
        ),
        (
            "signed with another secret",
            body.clone(),
            Some(sign("whsec_not_the_right_secret_0000", now, &body)),
            "invalid_signature",
        ),
        (
            "a correct signature made 10 minutes ago",
            body.clone(),
            Some(sign(SECRET, now - 600, &body)),
            "invalid_signature",
        ),
        (
            "a correct signature made 10 minutes ahead",
            body.clone(),
            Some(sign(SECRET, now + 600, &body)),
            "invalid_signature",
        ),
        (
            "a body changed after signing",
            tampered.clone(),
            Some(good.clone()),
            "invalid_signature",
        ),
        (
            "a signature for the right body under another timestamp",
            body.clone(),
            Some(format!("t={},v1={}", now - 1, signature_of(&good))),
            "invalid_signature",
        ),
        (
            "no timestamp",
            body.clone(),
            Some(format!("v1={}", signature_of(&good))),
            "invalid_signature",
        ),
        (
            "only a v0 signature",
            body.clone(),
            Some(format!("t={now},v0={}", signature_of(&good))),
            "invalid_signature",
        ),
        (
            "garbage",
            body.clone(),
            Some("this is not a signature".into()),
            "invalid_signature",
        ),
    ];
    for (what, body, header, code) in &refused {
        let (status, answer) = deliver(&s.world.http, &s.url, body, header.as_deref()).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], *code, "{what}: {answer}");
        assert!(!has_event(&s.engine, &s.connection, &id), "{what}: stored");
        assert_eq!(s.row("customers", &customer), before, "{what}: changed");
        assert_eq!(s.event_count(), events_before, "{what}: an event row");
    }

    // Right signature, wrong place: another account, an unknown mode, a live event on the test
    // endpoint.
    let elsewhere = format!("{}/webhooks/acct_nobody/test", s.server.base);
    let (status, answer) = deliver(&s.world.http, &elsewhere, &body, Some(&good)).await;
    // Answered as a signature that matches nothing: strangers cannot tell connected accounts.
    assert_eq!(status, 400, "an account that is not connected: {answer}");
    assert_eq!(answer["error"]["code"], "invalid_signature");
    let prod = format!(
        "{}/webhooks/{}/prod",
        s.server.base, s.connection.account_id
    );
    let (status, _) = deliver(&s.world.http, &prod, &body, Some(&good)).await;
    assert_eq!(status, 404, "a mode that does not exist");
    let mut live = event.clone();
    live["livemode"] = json!(true);
    live["id"] = json!("evt_live_on_test_endpoint");
    let (status, answer) = s.send(&live).await;
    assert_eq!(status, 400, "a live event on the test endpoint: {answer}");
    assert!(!has_event(
        &s.engine,
        &s.connection,
        "evt_live_on_test_endpoint"
    ));
    let not_an_event = br#"{"hello":"world"}"#;
    let (status, answer) = deliver(
        &s.world.http,
        &s.url,
        not_an_event,
        Some(&sign(SECRET, now, not_an_event)),
    )
    .await;
    assert_eq!(status, 400, "a signed body that is no event: {answer}");
    assert_eq!(s.row("customers", &customer), before);
    assert_eq!(s.event_count(), events_before);

    // The genuine delivery is applied through the apply path…
    let (status, answer) = deliver(&s.world.http, &s.url, &body, Some(&good)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "applied");
    assert!(has_event(&s.engine, &s.connection, &id));
    let (deleted, data, version) = s.row("customers", &customer).expect("the customer");
    assert!(!deleted);
    assert_eq!(
        data, event["data"]["object"],
        "the event's snapshot is stored"
    );
    assert_eq!(version, event["created"].as_i64().unwrap());
    assert_eq!(data, s.stripe_state(&customer).1, "equal to Stripe's");
    let after = s.row("customers", &customer);
    let events_after = s.event_count();

    // …and its replay, byte for byte or with the same signed payload dressed differently, is
    // refused and changes nothing.
    let replays = [
        ("byte for byte", good.clone()),
        ("with a v0 added", format!("{good},v0=00ff")),
        ("with spaces", good.replace(',', ", ")),
        (
            "with the v1 twice",
            format!("{good},v1={}", signature_of(&good)),
        ),
        ("with an unknown scheme first", format!("v9=1,{good}")),
    ];
    for (what, header) in &replays {
        let (status, answer) = deliver(&s.world.http, &s.url, &body, Some(header)).await;
        assert_eq!(status, 409, "replay {what}: {answer}");
        assert_eq!(
            s.row("customers", &customer),
            after,
            "replay {what}: changed"
        );
        assert_eq!(s.event_count(), events_after);
    }

    // Stripe delivering the same event again (a new timestamp) is acknowledged and changes
    // nothing. (A redelivery of the event that set the stored version is a tie with itself, so
    // it is answered `refetched` after a GET to Stripe rather than `duplicate`.)
    let again = sign(SECRET, now - 1, &body);
    let (status, answer) = deliver(&s.world.http, &s.url, &body, Some(&again)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["outcome"] == "duplicate" || answer["outcome"] == "refetched",
        "{answer}"
    );
    assert_eq!(s.row("customers", &customer), after);
    assert_eq!(s.event_count(), events_after);

    let outcomes = s.server.webhook_outcomes(&s.world.http).await;
    for (outcome, at_least) in [
        ("rejected_missing_signature", 1),
        ("rejected_forged_signature", 3),
        ("rejected_expired_signature", 2),
        ("rejected_malformed_signature", 3),
        ("rejected_replay", replays.len() as u64),
        ("rejected_wrong_mode", 1),
        ("rejected_not_an_event", 1),
        ("applied", 1),
    ] {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) >= at_least,
            "{outcome} ≥ {at_least} in /metrics: {outcomes:?}"
        );
    }
    eprintln!("intake outcomes: {outcomes:?}");
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_event_types_are_stored_and_acknowledged() {
    let s = setup("unknown", 32).await;
    let before = support::compare(&s.world, &s.engine, &s.connection, &[]);
    assert!(before.0.is_empty(), "{}", support::describe(&before.0));
    let now = sm_engine::now();
    let cases = [
        (
            "evt_unknown_balance",
            "balance.available",
            json!({"object": "balance", "available": [{"amount": 1200, "currency": "usd"}], "livemode": false, "pending": []}),
        ),
        (
            "evt_unknown_thing",
            "thing.happened",
            json!({"object": "thing", "id": "thing_123", "colour": "teal"}),
        ),
        (
            "evt_unknown_on_customer",
            "customer.discount.created",
            json!({"object": "discount", "id": "di_1", "customer": "cus_x"}),
        ),
    ];
    for (id, event_type, object) in cases {
        let body = event_json(id, event_type, now, object);
        let (status, answer) = deliver(
            &s.world.http,
            &s.url,
            &body,
            Some(&sign(SECRET, now, &body)),
        )
        .await;
        assert_eq!(status, 200, "{event_type}: {answer}");
        assert_eq!(answer["outcome"], "kept", "{event_type}: {answer}");
        assert!(has_event(&s.engine, &s.connection, id), "{event_type} kept");
        let (_, rows) = s
            .engine
            .store
            .query(&format!("SELECT type, data FROM events WHERE id = '{id}'"))
            .unwrap();
        assert_eq!(rows[0][0].as_deref(), Some(event_type));
        let stored: Value = serde_json::from_str(rows[0][1].as_deref().unwrap()).unwrap();
        assert_eq!(stored, serde_json::from_slice::<Value>(&body).unwrap());
    }
    // The mirrored objects did not move.
    let after = support::compare(&s.world, &s.engine, &s.connection, &[]);
    assert!(after.0.is_empty(), "{}", support::describe(&after.0));
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_only_move_forward_whatever_the_order() {
    let s = setup("order", 33).await;
    let customer = s.customer().await;

    // Older after newer: stale.
    let older = s.touch(&customer, "older").await;
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let newer = s.touch(&customer, "newer").await;
    assert!(newer["created"].as_i64() > older["created"].as_i64());
    assert_eq!(s.send(&newer).await.1["outcome"], "applied");
    assert_eq!(s.send(&older).await.1["outcome"], "stale");
    assert_eq!(
        s.row("customers", &customer).unwrap().1,
        s.stripe_state(&customer).1
    );
    assert!(has_event(
        &s.engine,
        &s.connection,
        older["id"].as_str().unwrap()
    ));

    // A same-second tie, either order: settled by Stripe's current state.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let (first, second) = s.two_in_one_second(&customer, 1, false).await;
    assert_eq!(s.send(&second).await.1["outcome"], "applied");
    assert_eq!(s.send(&first).await.1["outcome"], "refetched");
    assert_eq!(
        s.row("customers", &customer).unwrap().1,
        s.stripe_state(&customer).1,
        "later first, then earlier"
    );
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let (first, second) = s.two_in_one_second(&customer, 2, false).await;
    assert_eq!(s.send(&first).await.1["outcome"], "applied");
    assert_eq!(s.send(&second).await.1["outcome"], "refetched");
    assert_eq!(
        s.row("customers", &customer).unwrap().1,
        s.stripe_state(&customer).1,
        "earlier first, then later"
    );

    // A subscription's item changes arrive as its event: the embedded items move with it.
    let subscriptions = s
        .world
        .stripe_ok(
            "GET",
            "/v1/subscriptions",
            &[("status", "active"), ("limit", "1")],
        )
        .await;
    let subscription = &subscriptions["data"][0];
    let (sub_id, item_id) = (
        subscription["id"].as_str().expect("an active subscription"),
        subscription["items"]["data"][0]["id"]
            .as_str()
            .expect("an item"),
    );
    s.world
        .stripe_ok(
            "POST",
            &format!("/v1/subscriptions/{sub_id}"),
            &[("items[0][id]", item_id), ("items[0][quantity]", "7")],
        )
        .await;
    let event = s.world.latest_events(1).await.remove(0);
    assert_eq!(event["type"], "customer.subscription.updated");
    let (status, answer) = s.send(&event).await;
    assert_eq!(status, 200, "{answer}");
    let (_, item, _) = s.row("subscription_items", item_id).expect("the item");
    assert_eq!(item["quantity"], 7, "the item moved with its subscription");
    assert_eq!(item, s.stripe_state(item_id).1);
    assert_eq!(
        s.row("subscriptions", sub_id).unwrap().1,
        s.stripe_state(sub_id).1
    );

    // A deletion made in the same second as the last applied change still deletes.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let (update, deletion) = s.two_in_one_second(&customer, 3, true).await;
    assert_eq!(s.send(&update).await.1["outcome"], "applied");
    let (status, answer) = s.send(&deletion).await;
    assert_eq!(status, 200, "{answer}");
    let (deleted, _, _) = s.row("customers", &customer).unwrap();
    assert!(
        deleted,
        "customer.deleted in the same second as the update it follows must delete ({answer})"
    );
    assert!(s.stripe_state(&customer).0);
    // …and a late update of the deleted customer does not bring it back.
    assert_ne!(s.send(&older).await.1["outcome"], "applied");
    assert!(s.row("customers", &customer).unwrap().0, "still deleted");
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_second_deliveries_in_flight_together_end_at_stripes_state() {
    let s = setup("race", 34).await;
    // Customers the mirror does not hold yet (their creation is not delivered): both changes of
    // a pair find no stored version, so neither is a tie that the intake would refetch.
    let rounds = 24;
    let mut customers = Vec::new();
    for n in 0..rounds {
        let customer = s
            .world
            .stripe_ok(
                "POST",
                "/v1/customers",
                &[("email", &format!("race{n}@example.com"))],
            )
            .await;
        customers.push(customer["id"].as_str().unwrap().to_owned());
    }
    let mut wrong = Vec::new();
    let mut pairs = std::collections::BTreeMap::new();
    for (round, customer) in customers.iter().enumerate() {
        let (first, second) = s.two_in_one_second(customer, round + 10, false).await;
        // Both deliveries in flight at once, the older one sent first half the time.
        let (a, b) = if round % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        let (ra, rb) = tokio::join!(s.send(a), s.send(b));
        assert_eq!((ra.0, rb.0), (200, 200), "{ra:?} {rb:?}");
        *pairs
            .entry(format!("{} + {}", ra.1["outcome"], rb.1["outcome"]))
            .or_insert(0) += 1;
        let mirrored = s.row("customers", customer).unwrap().1;
        if mirrored != s.stripe_state(customer).1 {
            wrong.push(format!(
                "round {round}: mirror has metadata {} but Stripe {} (outcomes {} / {})",
                mirrored["metadata"],
                s.stripe_state(customer).1["metadata"],
                ra.1["outcome"],
                rb.1["outcome"]
            ));
        }
    }
    eprintln!("outcomes of the racing pairs: {pairs:?}");
    assert!(
        wrong.is_empty(),
        "{} of {rounds} same-second pairs left the mirror behind Stripe:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Every other object is as it was: the mirror is exact.
    let (differences, compared) = support::compare(&s.world, &s.engine, &s.connection, &[]);
    assert!(
        differences.is_empty(),
        "of {compared}: {}",
        support::describe(&differences)
    );
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_links_its_pending_item_even_within_the_same_second() {
    let s = setup("link", 35).await;
    let customer = s.customer().await;
    for attempt in 0..10 {
        let item = s
            .world
            .stripe_ok(
                "POST",
                "/v1/invoiceitems",
                &[
                    ("customer", customer.as_str()),
                    ("amount", "500"),
                    ("currency", "usd"),
                ],
            )
            .await;
        let invoice = s
            .world
            .stripe_ok(
                "POST",
                "/v1/invoices",
                &[
                    ("customer", customer.as_str()),
                    ("pending_invoice_items_behavior", "include"),
                ],
            )
            .await;
        let events = s.world.latest_events(10).await;
        let of_type = |t: &str| {
            events
                .iter()
                .find(|e| e["type"] == t)
                .unwrap_or_else(|| panic!("no {t} in {events:?}"))
        };
        let item_created = of_type("invoiceitem.created");
        let invoice_updated = of_type("invoice.updated");
        let item_id = item["id"].as_str().unwrap();
        assert!(item_created["data"]["object"]["invoice"].is_null());
        assert_eq!(
            invoice_updated["data"]["object"]["lines"]["data"][0]["invoice_item"], item_id,
            "invoice.updated names the attached item"
        );
        // The item's own event, then the first invoice event to arrive is the one whose lines
        // name the item (invoice.created is still on its way): the item changed without an
        // event of its own, and the intake reads it from Stripe.
        assert_eq!(s.send(item_created).await.0, 200);
        let (status, answer) = s.send(invoice_updated).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["outcome"], "applied");
        let same_second = sm_engine::now() == item_created["created"].as_i64().unwrap();
        let (_, mirrored, _) = s.row("invoiceitems", item_id).expect("the item");
        assert_eq!(
            mirrored["invoice"], invoice["id"],
            "attempt {attempt}: the item is linked to its invoice"
        );
        assert_eq!(mirrored, s.stripe_state(item_id).1);
        if same_second {
            return;
        }
    }
    panic!("never within one second in 10 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_refetched_past_its_own_events_still_links_its_items() {
    let s = setup("relink", 36).await;
    let customer = s.customer().await;
    let item = s
        .world
        .stripe_ok(
            "POST",
            "/v1/invoiceitems",
            &[
                ("customer", customer.as_str()),
                ("amount", "700"),
                ("currency", "usd"),
            ],
        )
        .await;
    let invoice = s
        .world
        .stripe_ok(
            "POST",
            "/v1/invoices",
            &[
                ("customer", customer.as_str()),
                ("pending_invoice_items_behavior", "include"),
            ],
        )
        .await;
    let item_id = item["id"].as_str().unwrap();
    let events = s.world.latest_events(10).await;
    let of_type = |t: &str| events.iter().find(|e| e["type"] == t).unwrap().clone();
    let (item_created, invoice_created, invoice_updated) = (
        of_type("invoiceitem.created"),
        of_type("invoice.created"),
        of_type("invoice.updated"),
    );
    assert_eq!(invoice_created["created"], invoice_updated["created"]);
    assert_eq!(
        invoice_created["data"]["object"]["lines"]["data"],
        json!([]),
        "invoice.created comes before the pending item is attached"
    );
    assert_eq!(s.send(&item_created).await.1["outcome"], "applied");
    assert_eq!(s.send(&invoice_created).await.1["outcome"], "applied");
    // invoice.created delivered again a second later: already stored, so nothing to do (no
    // request to Stripe)…
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(s.send(&invoice_created).await.1["outcome"], "duplicate");
    // …and invoice.updated, in the same second as what is stored, is a tie settled by reading
    // the invoice; its lines name the item, which the follow-up links.
    assert_eq!(s.send(&invoice_updated).await.1["outcome"], "refetched");
    let (_, mirrored, _) = s.row("invoiceitems", item_id).expect("the item");
    assert_eq!(
        mirrored["invoice"], invoice["id"],
        "the refetched invoice's lines link the item"
    );
    assert_eq!(mirrored, s.stripe_state(item_id).1);
    assert_eq!(
        s.row("invoices", invoice["id"].as_str().unwrap())
            .unwrap()
            .1,
        s.stripe_state(invoice["id"].as_str().unwrap()).1
    );
    s.server.stop().await;
}
