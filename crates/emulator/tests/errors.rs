//! Every error answer of API.md §2, status and body as Stripe sends them, over real HTTP.

mod support;

use serde_json::json;
use support::harness::Harness;

#[tokio::test]
async fn authentication_failures_have_stripes_status_and_words() {
    let h = Harness::start(5).await;
    let url = format!("{}/v1/customers", h.base);

    let none = h.send(h.http.get(&url)).await;
    assert_eq!(none.status, 401);
    assert!(
        none.message()
            .starts_with("You did not provide an API key."),
        "{}",
        none.text
    );
    assert_eq!(none.json["error"]["type"], json!("invalid_request_error"));
    assert!(none.header("request-id").unwrap().starts_with("req_"));

    let made_up = "sk_test_madeUpKeyThatNobodyIssued1234S8wL";
    let invalid = h.get(made_up, "/v1/customers").await;
    assert_eq!(invalid.status, 401);
    assert!(
        invalid
            .message()
            .starts_with("Invalid API Key provided: sk_test_"),
        "{}",
        invalid.text
    );
    assert!(invalid.message().ends_with("S8wL"));
    assert!(!invalid.text.contains("madeUpKey"), "the key is masked");

    let secret = h.key("secret_test");
    h.control("POST", "/keys/revoke", json!({"key": secret}))
        .await;
    let revoked = h.get(&secret, "/v1/customers").await;
    assert_eq!(revoked.status, 401);
    assert!(revoked.message().starts_with("Invalid API Key provided"));

    let restricted = h.key("restricted_test");
    h.control("POST", "/keys/expire", json!({"key": restricted}))
        .await;
    let expired = h.get(&restricted, "/v1/customers").await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json["error"]["code"], json!("api_key_expired"));
    assert!(
        expired
            .message()
            .starts_with("Expired API Key provided: rk_test_")
    );

    let publishable = h.get(&h.key("publishable_test"), "/v1/customers").await;
    assert_eq!(publishable.status, 401);
    assert!(
        publishable
            .message()
            .starts_with("This API call cannot be made with a publishable API key.")
    );

    // HTTP Basic with the key as the user name works like Bearer.
    let basic = h
        .send(h.http.get(&url).basic_auth(h.key("secret_live"), Some("")))
        .await;
    assert_eq!(basic.status, 200, "{}", basic.text);
}

#[tokio::test]
async fn permissions_are_checked_before_existence_and_name_account_and_permission() {
    let h = Harness::start(5).await;
    let only_customers = h.restricted_key("test", &["rak_customer_read"]).await;

    let denied = h
        .get(&only_customers, "/v1/subscriptions/sub_doesNotExist")
        .await;
    assert_eq!(denied.status, 403);
    let message = denied.message();
    assert!(
        message.contains(&format!("on account '{}'", h.account_id())),
        "{message}"
    );
    assert!(
        message.ends_with(
            "Having the 'rak_subscription_read' permission would allow this request to continue."
        ),
        "{message}"
    );
    assert!(
        message.starts_with("The provided key 'rk_test_*"),
        "{message}"
    );

    let missing = h
        .get(&only_customers, "/v1/customers/cus_doesNotExist")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json["error"]["code"], json!("resource_missing"));
    assert_eq!(missing.message(), "No such customer: 'cus_doesNotExist'");
    assert_eq!(missing.json["error"]["param"], json!("id"));

    // A POST to a made-up id probes the write permission without changing anything.
    let write_denied = h
        .post(
            &only_customers,
            "/v1/customers/cus_doesNotExist",
            &[("name", "x")],
        )
        .await;
    assert_eq!(write_denied.status, 403);
    assert!(write_denied.message().contains("'rak_customer_write'"));
    let writer = h.restricted_key("test", &["rak_customer_write"]).await;
    let write_probe = h
        .post(&writer, "/v1/customers/cus_doesNotExist", &[("name", "x")])
        .await;
    assert_eq!(write_probe.status, 404);
    // Write implies read.
    assert_eq!(h.get(&writer, "/v1/customers?limit=1").await.status, 200);
    // Prices live under the plan permission.
    assert!(
        h.get(&writer, "/v1/prices")
            .await
            .message()
            .contains("'rak_plan_read'")
    );
    // The account endpoint is not for keys without connected-account permission.
    assert_eq!(h.get(&writer, "/v1/account").await.status, 403);
    assert_eq!(
        h.get(&h.key("secret_test"), "/v1/account").await.json["id"],
        json!(h.account_id())
    );
}

#[tokio::test]
async fn other_mode_unknown_object_bad_account_and_unknown_url() {
    let h = Harness::start(5).await;
    let live = h.key("secret_live");
    let test = h.key("secret_test");
    let created = h
        .post(&live, "/v1/customers", &[("email", "live@example.com")])
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["livemode"], json!(true));
    let id = created.json["id"].as_str().unwrap();

    let other_mode = h.get(&test, &format!("/v1/customers/{id}")).await;
    assert_eq!(other_mode.status, 404);
    assert_eq!(
        other_mode.message(),
        format!(
            "No such customer: '{id}'; a similar object exists in live mode, but a test mode key was used to make this request."
        )
    );

    let bad_account = h
        .send(
            h.http
                .get(format!("{}/v1/customers", h.base))
                .bearer_auth(&test)
                .header("Stripe-Account", "acct_1NotMine"),
        )
        .await;
    assert_eq!(bad_account.status, 403);
    assert_eq!(bad_account.json["error"]["code"], json!("account_invalid"));
    assert!(bad_account.message().contains("'acct_1NotMine'"));

    let unknown = h.get(&test, "/v1/no_such_things").await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown
            .message()
            .starts_with("Unrecognized request URL (GET: /v1/no_such_things).")
    );
}

#[tokio::test]
async fn bad_parameters_are_named() {
    let h = Harness::start(5).await;
    let key = h.key("secret_test");
    let unknown = h.post(&key, "/v1/customers", &[("colour", "red")]).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.message(), "Received unknown parameter: colour");
    assert_eq!(unknown.json["error"]["param"], json!("colour"));

    let missing = h.post(&key, "/v1/prices", &[("unit_amount", "100")]).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json["error"]["code"], json!("parameter_missing"));

    let limit = h.get(&key, "/v1/customers?limit=101").await;
    assert_eq!(limit.status, 400);
    assert_eq!(limit.json["error"]["param"], json!("limit"));

    let both = h
        .get(
            &key,
            "/v1/customers?starting_after=cus_a&ending_before=cus_b",
        )
        .await;
    assert_eq!(both.status, 400);

    let bad_integer = h
        .post(
            &key,
            "/v1/payment_intents",
            &[("amount", "ten"), ("currency", "usd")],
        )
        .await;
    assert_eq!(bad_integer.status, 400);
    assert_eq!(bad_integer.message(), "Invalid integer: ten");
}
