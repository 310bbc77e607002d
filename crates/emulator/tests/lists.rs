//! Lists as Stripe serves them: newest first, cursors without gaps or repeats, half-open `created`
//! windows, the default filters that hide data, embedded sub-lists and their own endpoints.

mod support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::harness::Harness;

fn ids(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn cursors_walk_every_object_once_newest_first() {
    let h = Harness::start(250).await;
    let key = h.key("restricted_test");
    let customers = h.list_all(&key, "/v1/customers", "").await;
    assert_eq!(customers.len(), 250);
    assert_eq!(
        ids(&customers).into_iter().collect::<HashSet<_>>().len(),
        250,
        "no duplicates"
    );
    let created: Vec<i64> = customers
        .iter()
        .map(|c| c["created"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // ending_before gives the page just newer than the cursor, still newest first.
    let page = h
        .get(
            &key,
            &format!(
                "/v1/customers?limit=3&ending_before={}",
                customers[10]["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(
        ids(page.json["data"].as_array().unwrap()),
        ids(&customers[7..10])
    );
    assert_eq!(page.json["has_more"], json!(true));
    assert_eq!(page.json["url"], json!("/v1/customers"));
    assert_eq!(page.json["object"], json!("list"));

    // Default limit is 10; limit 1 and 100 are the bounds.
    assert_eq!(
        h.get(&key, "/v1/customers").await.json["data"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(
        h.get(&key, "/v1/customers?limit=1").await.json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.get(&key, "/v1/customers?limit=0").await.status, 400);
}

#[tokio::test]
async fn created_windows_are_half_open_and_partition_the_list() {
    let h = Harness::start(200).await;
    let key = h.key("secret_test");
    let all = h.list_all(&key, "/v1/charges", "").await;
    let newest = all.first().unwrap()["created"].as_i64().unwrap();
    let oldest = all.last().unwrap()["created"].as_i64().unwrap();
    let step = (newest - oldest) / 7 + 1;
    let mut seen = Vec::new();
    let mut start = oldest;
    while start <= newest {
        let window = h
            .list_all(
                &key,
                "/v1/charges",
                &format!("&created[gte]={start}&created[lt]={}", start + step),
            )
            .await;
        assert!(
            window
                .iter()
                .all(|c| (start..start + step).contains(&c["created"].as_i64().unwrap()))
        );
        seen.extend(ids(&window));
        start += step;
    }
    assert_eq!(
        seen.len(),
        all.len(),
        "windows cover each charge exactly once"
    );
    assert_eq!(
        seen.into_iter().collect::<HashSet<_>>(),
        ids(&all).into_iter().collect::<HashSet<_>>()
    );

    // A bare integer means equality; gt/lte work too.
    let first = &all[0];
    let at = first["created"].as_i64().unwrap();
    let exact = h
        .list_all(&key, "/v1/charges", &format!("&created={at}"))
        .await;
    assert!(ids(&exact).contains(&first["id"].as_str().unwrap().to_owned()));
    let after = h
        .list_all(&key, "/v1/charges", &format!("&created[gt]={at}"))
        .await;
    assert!(after.is_empty());
}

#[tokio::test]
async fn default_filters_hide_canceled_subscriptions_and_archived_prices() {
    let h = Harness::start(300).await;
    let key = h.key("restricted_test");
    let all = h.list_all(&key, "/v1/subscriptions", "&status=all").await;
    let default = h.list_all(&key, "/v1/subscriptions", "").await;
    let statuses: HashSet<&str> = all.iter().map(|s| s["status"].as_str().unwrap()).collect();
    for status in [
        "active",
        "canceled",
        "past_due",
        "trialing",
        "unpaid",
        "incomplete",
        "incomplete_expired",
        "paused",
    ] {
        assert!(
            statuses.contains(status),
            "seeded data has a {status} subscription: {statuses:?}"
        );
    }
    let canceled = all
        .iter()
        .filter(|s| s["status"] == json!("canceled"))
        .count();
    assert_eq!(default.len(), all.len() - canceled);
    assert!(default.iter().all(|s| s["status"] != json!("canceled")));
    let only_canceled = h
        .list_all(&key, "/v1/subscriptions", "&status=canceled")
        .await;
    assert_eq!(only_canceled.len(), canceled);

    let active_prices = h.list_all(&key, "/v1/prices", "").await;
    let archived = h.list_all(&key, "/v1/prices", "&active=false").await;
    assert!(!archived.is_empty());
    assert!(active_prices.iter().all(|p| p["active"] == json!(true)));
    assert!(archived.iter().all(|p| p["active"] == json!(false)));

    // The customer filter.
    let customer = all[0]["customer"].as_str().unwrap();
    let theirs = h
        .list_all(&key, "/v1/invoices", &format!("&customer={customer}"))
        .await;
    assert!(!theirs.is_empty());
    assert!(theirs.iter().all(|i| i["customer"] == json!(customer)));
}

#[tokio::test]
async fn embedded_sub_lists_are_truncated_and_paged_through_their_own_endpoints() {
    let h = Harness::start(5).await;
    let key = h.key("secret_test");
    let product = h
        .post(&key, "/v1/products", &[("name", "Seats")])
        .await
        .json;
    let mut prices = Vec::new();
    for n in 0..12 {
        let amount = (100 + n).to_string();
        let price = h
            .post(
                &key,
                "/v1/prices",
                &[
                    ("product", product["id"].as_str().unwrap()),
                    ("currency", "usd"),
                    ("unit_amount", &amount),
                    ("recurring[interval]", "month"),
                ],
            )
            .await;
        assert_eq!(price.status, 200, "{}", price.text);
        prices.push(price.json["id"].as_str().unwrap().to_owned());
    }
    let customer = h
        .post(&key, "/v1/customers", &[("email", "big@example.com")])
        .await
        .json;
    let mut form: Vec<(String, String)> =
        vec![("customer".into(), customer["id"].as_str().unwrap().into())];
    for (n, price) in prices.iter().enumerate() {
        form.push((format!("items[{n}][price]"), price.clone()));
        form.push((format!("items[{n}][quantity]"), "2".into()));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sub = h.post(&key, "/v1/subscriptions", &pairs).await;
    assert_eq!(sub.status, 200, "{}", sub.text);
    let sub = sub.json;
    assert_eq!(sub["items"]["data"].as_array().unwrap().len(), 10);
    assert_eq!(sub["items"]["has_more"], json!(true));
    let items_url = sub["items"]["url"].as_str().unwrap();
    assert_eq!(
        items_url,
        format!(
            "/v1/subscription_items?subscription={}",
            sub["id"].as_str().unwrap()
        )
    );
    let (path, query) = items_url.split_once('?').unwrap();
    let items = h.list_all(&key, path, &format!("&{query}")).await;
    assert_eq!(items.len(), 12);
    assert!(items.iter().all(|i| i["quantity"] == json!(2)));

    let invoice_id = sub["latest_invoice"].as_str().unwrap();
    let invoice = h
        .get(&key, &format!("/v1/invoices/{invoice_id}"))
        .await
        .json;
    assert_eq!(invoice["status"], json!("paid"));
    assert_eq!(invoice["lines"]["has_more"], json!(true));
    let lines = h
        .list_all(&key, &format!("/v1/invoices/{invoice_id}/lines"), "")
        .await;
    assert_eq!(lines.len(), 12);
    let total: i64 = lines.iter().map(|l| l["amount"].as_i64().unwrap()).sum();
    assert_eq!(invoice["amount_paid"].as_i64().unwrap(), total);
    assert_eq!(total, (0..12).map(|n| (100 + n) * 2).sum::<i64>());
    // The subscription_items list requires its subscription.
    assert_eq!(h.get(&key, "/v1/subscription_items").await.status, 400);
}

#[tokio::test]
async fn deleted_objects_leave_lists_and_only_customers_retrieve_as_deleted() {
    let h = Harness::start(3).await;
    let key = h.key("secret_test");
    let customer = h
        .post(&key, "/v1/customers", &[("email", "gone@example.com")])
        .await
        .json;
    let id = customer["id"].as_str().unwrap();
    let deleted = h.delete(&key, &format!("/v1/customers/{id}")).await;
    assert_eq!(
        deleted.json,
        json!({"id": id, "object": "customer", "deleted": true})
    );
    assert_eq!(
        h.get(&key, &format!("/v1/customers/{id}")).await.json,
        json!({"id": id, "object": "customer", "deleted": true})
    );
    assert!(!ids(&h.list_all(&key, "/v1/customers", "").await).contains(&id.to_owned()));

    let coupon = h
        .post(&key, "/v1/coupons", &[("percent_off", "10"), ("id", "TEN")])
        .await;
    assert_eq!(coupon.json["id"], json!("TEN"));
    assert_eq!(
        h.delete(&key, "/v1/coupons/TEN").await.json["deleted"],
        json!(true)
    );
    let after = h.get(&key, "/v1/coupons/TEN").await;
    assert_eq!(after.status, 404);
    assert_eq!(after.json["error"]["code"], json!("resource_missing"));

    // A deleted object still works as a cursor, so a client paging during deletions never breaks.
    let page = h
        .get(&key, &format!("/v1/customers?starting_after={id}"))
        .await;
    assert_eq!(page.status, 200);
}

async fn invoice_ids(h: &Harness) -> Vec<String> {
    ids(&h.list_all(&h.key("secret_test"), "/v1/invoices", "").await)
}

#[tokio::test]
async fn the_same_seed_gives_the_same_account() {
    let a = Harness::start_with_seed(40, 9).await;
    let b = Harness::start_with_seed(40, 9).await;
    let c = Harness::start_with_seed(40, 10).await;
    let (ia, ib, ic) = (
        invoice_ids(&a).await,
        invoice_ids(&b).await,
        invoice_ids(&c).await,
    );
    assert_eq!(ia, ib);
    assert_ne!(ia, ic);
    assert_eq!(a.account["seeded"], b.account["seeded"]);
}
