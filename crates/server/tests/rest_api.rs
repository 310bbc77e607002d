//! The REST API over real HTTP: a token on every request (none, unknown, read-only writing are
//! refused and counted), connections made, read, renamed and removed through it, read-only
//! SQL, bad input answered from the error table with nothing written, and the OpenAPI document
//! naming exactly the routes served.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sm_engine::ops::tokens;
use support::{Server, World};

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn runs(&self, token: &str, label: &str) -> Vec<Value> {
        let (_, list) = self
            .call(
                "GET",
                &format!("/api/v1/connections/{label}/syncs"),
                Some(token),
                None,
            )
            .await;
        list["data"].as_array().cloned().unwrap_or_default()
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.http.get(url),
            "POST" => self.http.post(url),
            "PATCH" => self.http.patch(url),
            "PUT" => self.http.put(url),
            "DELETE" => self.http.delete(url),
            _ => unreachable!(),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("serve answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A sync seen through the API while it runs: each table's phase and objects, and a percent
/// below 100; at its end, 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_shows_its_progress_while_it_runs() {
    let world = World::start(5, 96, "rest-api-progress").await;
    let engine = world.engine();
    let connection = world.connect(&engine, None).await;
    let label = connection.label();
    // Every Stripe request slowed down, so that the first sync runs for seconds.
    let faults = format!("{}/_emulator/faults", world.server.base_url());
    let slow = world
        .http
        .put(&faults)
        .json(&json!({"slow": 1.0, "slow_ms": 400}))
        .send()
        .await
        .unwrap();
    assert!(slow.status().is_success());
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let token = tokens::create(&engine, "reader", true)
        .await
        .unwrap()
        .secret;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let live = loop {
        let runs = api.runs(&token, &label).await;
        if let Some(run) = runs
            .iter()
            .find(|r| r["status"] == "running" && r["progress"].is_object())
        {
            break run.clone();
        }
        assert!(
            runs.iter().all(|r| r["status"] == "running"),
            "the first sync ended before its progress was seen: {runs:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no progress: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let one = format!("/api/v1/connections/{label}/syncs/{}", live["id"]);
    let (status, running) = api.call("GET", &one, Some(&token), None).await;
    assert_eq!(status, 200, "{running}");
    let percent = running["progress"]["percent"].as_u64().unwrap();
    assert!(percent < 100, "{running}");
    assert!(
        running["progress"]["tables"]["customers"].is_object(),
        "{running}"
    );
    eprintln!("the first sync, seen running at {percent}%");
    world
        .http
        .put(&faults)
        .json(&json!({"slow": 0.0}))
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, run) = api.call("GET", &one, Some(&token), None).await;
        if run["status"] != "running" {
            assert_eq!(run["progress"]["percent"], 100, "{run}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sync never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_with_tokens() {
    let world = World::start(5, 95, "rest-api").await;
    let engine = world.engine();
    the_rest_api(&world, engine).await;
}

/// The same on Postgres, in a schema of its own (dropped after, with its SQL reader role).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_on_postgres() {
    let Ok(url) = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: the REST API on Postgres — set STRIPE_MIRROR_TEST_POSTGRES_URL=postgres://… to run it"
        );
        return;
    };
    let world = World::start(5, 95, "rest-api-pg").await;
    let schema = format!("sm_api_{}", std::process::id());
    let separator = if url.contains('?') { '&' } else { '?' };
    let engine = world.engine_on(&format!("{url}{separator}schema={schema}"));
    the_rest_api(&world, engine).await;
    // The driver is synchronous: off the runtime's threads.
    std::thread::spawn(move || {
        let mut admin = url
            .parse::<postgres::Config>()
            .unwrap()
            .connect(postgres::NoTls)
            .unwrap();
        let database: String = admin
            .query_one("SELECT current_database()", &[])
            .unwrap()
            .get(0);
        let role = format!("stripe_mirror_reader_{database}_{schema}");
        admin
            .batch_execute(&format!(
                "DROP SCHEMA \"{schema}\" CASCADE; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";"
            ))
            .unwrap();
    })
    .join()
    .unwrap();
}

async fn the_rest_api(world: &World, engine: std::sync::Arc<sm_engine::Engine>) {
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let admin = tokens::create(&engine, "admin", false)
        .await
        .unwrap()
        .secret;
    let reader = tokens::create(&engine, "reader", true)
        .await
        .unwrap()
        .secret;

    // No token, an unknown one: refused, counted.
    let (status, answer) = api.call("GET", "/api/v1/connections", None, None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{answer}"
    );
    let (status, _) = api
        .call("GET", "/api/v1/connections", Some("smt_0000"), None)
        .await;
    assert_eq!(status, 401);
    let metrics = world
        .http
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stripe_mirror_api_refused_total{reason=\"no_token\"} 1"),
        "{metrics}"
    );

    // Connect through the API; the key never comes back.
    let key = world.key("restricted_test");
    let body = json!({"api_key": key, "environment": "test", "name": "Via API"}).to_string();
    let (status, made) = api
        .call("POST", "/api/v1/connections", Some(&admin), Some(&body))
        .await;
    assert_eq!(status, 201, "{made}");
    assert!(
        !made.to_string().contains(&key),
        "the key came back: {made}"
    );
    let label = made["connection"]["label"].as_str().unwrap().to_owned();
    // The same request again with its Idempotency-Key: the first answer, not a conflict; the
    // key with another body is refused.
    let send = |key: &'static str, body: String| {
        api.http
            .post(format!("{}/api/v1/connections", api.base))
            .bearer_auth(admin.as_str())
            .header("Idempotency-Key", key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let first = send("link-0", body.clone()).await.unwrap();
    assert_eq!(
        first.status().as_u16(),
        409,
        "the request before had no key"
    );
    let keyed =
        json!({"api_key": world.key("secret_live"), "environment": "live", "name": "Live twin"})
            .to_string();
    let first = send("link-1", keyed.clone()).await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send("link-1", keyed.clone()).await.unwrap();
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    let other = send(
        "link-1",
        json!({"api_key": world.key("secret_live"), "environment": "live"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(other.status().as_u16(), 400);
    let live_label = first["connection"]["label"].as_str().unwrap().to_owned();
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/connections/{live_label}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, all) = api
        .call("GET", "/api/v1/connections", Some(&reader), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(all["data"][0]["name"], "Via API");
    assert!(all["data"][0]["status_words"].is_string());
    let (status, one) = api
        .call(
            "GET",
            &format!("/api/v1/connections/{label}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!((status, one["label"].as_str()), (200, Some(label.as_str())));

    // A read-only token reads, and may query, but changes nothing.
    let rename = json!({"name": "Renamed"}).to_string();
    let (status, answer) = api
        .call(
            "PATCH",
            &format!("/api/v1/connections/{label}"),
            Some(&reader),
            Some(&rename),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{answer}"
    );
    let query = json!({"query": "SELECT count(*) AS n, 'x' AS s FROM events"}).to_string();
    let (status, rows) = api
        .call("POST", "/api/v1/sql", Some(&reader), Some(&query))
        .await;
    assert_eq!(status, 200, "{rows}");
    assert!(
        rows["rows"][0]["n"].as_i64().is_some_and(|n| n > 0),
        "{rows}"
    );
    let (status, renamed) = api
        .call(
            "PATCH",
            &format!("/api/v1/connections/{label}"),
            Some(&admin),
            Some(&rename),
        )
        .await;
    assert_eq!(
        (status, renamed["name"].as_str()),
        (200, Some("Renamed")),
        "{renamed}"
    );

    // Bad input: the table's status and code, and nothing written.
    let sqlite = engine.store.backend() == sm_warehouse::Backend::Sqlite;
    // The scheduler's first sync of the new connection changes its record (its status): let it
    // end before the record is compared.
    server.wait_for_sync(&api.http, &label).await;
    let before = engine.store.accounts().unwrap();
    let wrong_mode =
        json!({"api_key": world.key("secret_live"), "environment": "test"}).to_string();
    let this = format!("/api/v1/connections/{label}");
    let its_syncs = format!("/api/v1/connections/{label}/syncs?limit=0");
    let path_0 = format!("{this}/syncs/999999");
    let path_1 = format!("{this}/syncs/latest");
    let path_2 = format!("{this}/events?type=Invoice%20Paid");
    let path_3 = format!("{this}/events?starting_after=evt_nope");
    let path_4 = format!("{this}/events?colour=blue");
    let path_5 = format!("{this}/key");
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/connections",
            Some("{not json".into()),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/api/v1/connections",
            Some(json!({"api_key": key, "environment": "test", "colour": "blue"}).to_string()),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/api/v1/connections",
            Some(json!({"api_key": 42, "environment": "test"}).to_string()),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/api/v1/connections",
            Some(json!({"api_key": key, "environment": "staging"}).to_string()),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/api/v1/connections",
            Some(wrong_mode),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/api/v1/connections",
            Some(json!({"api_key": key, "environment": "test"}).to_string()),
            409,
            "conflict",
        ),
        ("POST", "/api/v1/connections", None, 400, "invalid_input"),
        (
            "GET",
            "/api/v1/connections/acct_nobody",
            None,
            404,
            "not_found",
        ),
        ("PATCH", &this, Some("{}".into()), 400, "invalid_input"),
        (
            "POST",
            "/api/v1/sql",
            Some(json!({"query": "DELETE FROM customers"}).to_string()),
            403,
            "query_refused",
        ),
        (
            "POST",
            "/api/v1/sql",
            Some(json!({"query": "SELECT * FROM custmers"}).to_string()),
            400,
            "invalid_input",
        ),
        ("GET", &its_syncs, None, 400, "invalid_input"),
        ("GET", &path_0, None, 404, "not_found"),
        ("GET", &path_1, None, 404, "not_found"),
        ("GET", &path_2, None, 400, "invalid_input"),
        ("GET", &path_3, None, 400, "invalid_input"),
        ("GET", &path_4, None, 400, "invalid_input"),
        ("GET", "/api/v1/key-link?features=mirror,telepathy", None, 400, "invalid_input"),
        ("GET", "/api/v1/key-link?mode=staging", None, 400, "invalid_input"),
        ("PUT", &path_5, Some(json!({"api_key": world.key("secret_live")}).to_string()), 400, "invalid_input"),
        ("PUT", &path_5, Some(json!({"api_key": key, "name": "x"}).to_string()), 400, "invalid_input"),
        ("PUT", &path_5, Some(json!({"api_key": "rk_test_short"}).to_string()), 400, "invalid_input"),
        ("PATCH", &this, Some(json!({"logo": "javascript:alert(1)"}).to_string()), 400, "invalid_input"),
        ("PATCH", &this, Some(json!({"logo": "data:text/html;base64,PHNjcmlwdD4="}).to_string()), 400, "invalid_input"),
        ("PATCH", &this, Some(json!({"name": "Fine", "logo": "http://insecure.example/x.png"}).to_string()), 400, "invalid_input"),
        ("GET", "/api/v1/nothing-here", None, 404, "not_found"),
        // Keys connect refuses, through the API.
        ("POST", "/api/v1/connections", Some(json!({"api_key": "", "environment": "test"}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": "pk_test_abcdefghijklmnop", "environment": "test"}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": "sk_test_not a key", "environment": "test"}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": world.key("secret_test"), "environment": "test", "restricted_only": true}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": world.key("secret_test"), "environment": "test", "live_only": true}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": world.key("secret_test"), "environment": "test", "account_id": "acct_someoneelse"}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": "sk_test_51Nv0FGQ9RKHgCVdKunknownunknownunknown", "environment": "test"}).to_string()), 401, "invalid_key"),
        ("POST", "/api/v1/connections", Some(json!({"environment": "test"}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": key}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": key, "environment": "test", "name": "acct_lookslikeanid"}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some(json!({"api_key": key, "environment": "test", "start_date": "yesterday"}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/connections", Some("[1, 2, 3]".into()), 400, "invalid_input"),
        // Changes that cannot be made.
        ("PATCH", &this, Some(json!({"name": 5}).to_string()), 400, "invalid_input"),
        ("PATCH", &this, Some(json!({"name": "acct_123"}).to_string()), 400, "invalid_input"),
        ("PATCH", &this, Some(json!({"start_date": 99_999_999_999i64}).to_string()), 400, "invalid_input"),
        ("PATCH", &this, Some(json!({"logo": "x.png"}).to_string()), 400, "invalid_input"),
        ("PATCH", "/api/v1/connections/acct_nobody", Some(json!({"name": "X"}).to_string()), 404, "not_found"),
        ("DELETE", "/api/v1/connections/acct_nobody", None, 404, "not_found"),
        ("GET", "/api/v1/connections/acct_nobody/permissions", None, 404, "not_found"),
        ("GET", "/api/v1/connections/acct_nobody/events", None, 404, "not_found"),
        ("POST", "/api/v1/connections/acct_nobody/syncs", None, 404, "not_found"),
        ("POST", "/api/v1/sql", Some(json!({"query": "SELECT 1; DELETE FROM customers"}).to_string()), 403, "query_refused"),
        ("POST", "/api/v1/sql", Some(json!({"query": "SELECT name, hash FROM api_tokens"}).to_string()), 403, "query_refused"),
        ("POST", "/api/v1/sql", Some(json!({"query": "SELECT key_sealed FROM accounts"}).to_string()), 403, "query_refused"),
        // SQLite refuses ATTACH; Postgres does not know it.
        (
            "POST",
            "/api/v1/sql",
            Some(json!({"query": "ATTACH DATABASE '/tmp/sm-api-escape.db' AS x"}).to_string()),
            if sqlite { 403 } else { 400 },
            if sqlite { "query_refused" } else { "invalid_input" },
        ),
        ("POST", "/api/v1/sql", Some(json!({"query": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n"}).to_string()), 422, "query_limit"),
        ("POST", "/api/v1/sql", Some(json!({"sql": "SELECT 1"}).to_string()), 400, "invalid_input"),
        ("POST", "/api/v1/sql", Some(json!({"query": "SELEC 1"}).to_string()), 400, "invalid_input"),
    ];
    let count = cases.len();
    for (method, path, body, status, code) in cases {
        let (got, answer) = api.call(method, path, Some(&admin), body.as_deref()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {answer}"
        );
        assert!(answer["error"]["message"].is_string());
    }
    // The token problems: none, unknown, revoked, read-only writing.
    let revoked = tokens::create(&engine, "revoked", false)
        .await
        .unwrap()
        .secret;
    tokens::revoke(&engine, "revoked").await.unwrap();
    for (token, method, path, status, code) in [
        (None, "POST", "/api/v1/sql", 401, "unauthorized"),
        (
            Some("smt_0123"),
            "DELETE",
            this.as_str(),
            401,
            "unauthorized",
        ),
        (
            Some(revoked.as_str()),
            "GET",
            "/api/v1/connections",
            401,
            "unauthorized",
        ),
        (
            Some(reader.as_str()),
            "DELETE",
            this.as_str(),
            403,
            "forbidden",
        ),
        (
            Some(reader.as_str()),
            "POST",
            "/api/v1/connections",
            403,
            "forbidden",
        ),
    ] {
        let (got, answer) = api.call(method, path, token, Some("{}")).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {answer}"
        );
    }
    // A token in use, then revoked: refused once the last check of it is a second old.
    let brief = tokens::create(&engine, "brief", true).await.unwrap().secret;
    let (status, _) = api
        .call("GET", "/api/v1/connections", Some(&brief), None)
        .await;
    assert_eq!(status, 200);
    tokens::revoke(&engine, "brief").await.unwrap();
    tokio::time::sleep(tokens::TRUSTED_FOR + Duration::from_millis(100)).await;
    let (status, _) = api
        .call("GET", "/api/v1/connections", Some(&brief), None)
        .await;
    assert_eq!(status, 401, "a revoked token still worked");
    eprintln!("{} bad requests answered from the error table", count + 6);
    let oversized = format!("{{\"query\": \"{}\"}}", "x".repeat(100_000));
    let (status, _) = api
        .call("POST", "/api/v1/sql", Some(&admin), Some(&oversized))
        .await;
    assert_eq!(status, 413);
    assert_eq!(
        engine.store.accounts().unwrap(),
        before,
        "a refused request wrote"
    );

    // Sync now: queued for the scheduler (whose interval here is an hour), and it runs.
    // The new connection's first sync, which the scheduler runs by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !api
        .runs(&admin, &label)
        .await
        .iter()
        .any(|r| r["status"] == "succeeded")
    {
        assert!(std::time::Instant::now() < deadline, "no first sync");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = api.runs(&admin, &label).await.len();
    let (status, queued) = api
        .call(
            "POST",
            &format!("/api/v1/connections/{label}/syncs"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, queued["queued"].as_bool()),
        (202, Some(true)),
        "{queued}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = api.runs(&admin, &label).await;
        if now.len() > before && now[0]["status"] == "succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sync asked for did not run: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A finished run: its counts, and its progress at 100 %.
    let latest = api.runs(&admin, &label).await[0].clone();
    let (status, finished) = api
        .call(
            "GET",
            &format!("/api/v1/connections/{label}/syncs/{}", latest["id"]),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 200, "{finished}");
    assert_eq!(finished["progress"]["percent"], 100, "{finished}");
    assert!(finished["counts"]["tables"].is_object(), "{finished}");

    // A logo of its own, then back to none; the name stays.
    let logo = "https://cdn.example.com/acme.png";
    let (status, changed) = api
        .call(
            "PATCH",
            &format!("/api/v1/connections/{label}"),
            Some(&admin),
            Some(&json!({"logo": logo}).to_string()),
        )
        .await;
    assert_eq!(
        (status, changed["logo_url"].as_str()),
        (200, Some(logo)),
        "{changed}"
    );
    let (_, changed) = api
        .call(
            "PATCH",
            &format!("/api/v1/connections/{label}"),
            Some(&admin),
            Some(&json!({"logo": null}).to_string()),
        )
        .await;
    assert!(changed["logo_url"].is_null(), "{changed}");
    assert_eq!(changed["name"], "Renamed");

    // The key rotated to another of the same account and mode; it never comes back.
    let new_key = world.key("secret_test");
    let (status, rotated) = api
        .call(
            "PUT",
            &format!("/api/v1/connections/{label}/key"),
            Some(&admin),
            Some(&json!({"api_key": new_key}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["connection"]["key_kind"], "secret", "{rotated}");
    assert!(!rotated.to_string().contains(&new_key), "the key came back");
    assert!(rotated["permissions"].is_object(), "{rotated}");

    // The key link, as `key-link` prints it.
    let (status, link) = api
        .call(
            "GET",
            "/api/v1/key-link?mode=live&features=mirror,webhooks",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 200, "{link}");
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with("https://dashboard.stripe.com/apikeys/create?")
    );
    assert!(
        link["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "rak_webhook_write")
    );

    // Events: pages with a cursor, and filtered by type, exactly or by prefix.
    let events_of = |query: String| {
        let (api, reader, label) = (&api, &reader, &label);
        async move {
            let (status, page) = api
                .call(
                    "GET",
                    &format!("/api/v1/connections/{label}/events?{query}"),
                    Some(reader),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            page
        }
    };
    let all = events_of("limit=100".into()).await;
    let all_ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(all_ids.len() >= 4, "{all}");
    let first = events_of("limit=2".into()).await;
    assert_eq!(first["has_more"], true);
    let second = events_of(format!(
        "limit=2&starting_after={}",
        first["data"][1]["id"].as_str().unwrap()
    ))
    .await;
    let paged: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(paged, all_ids[..4], "pages follow one another");
    let some_type = all["data"][0]["type"].as_str().unwrap().to_owned();
    let exact = events_of(format!("type={some_type}&limit=100")).await;
    assert!(!exact["data"].as_array().unwrap().is_empty());
    assert!(
        exact["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] == some_type.as_str())
    );
    let prefix = some_type.split('.').next().unwrap();
    let by_prefix = events_of(format!("type={prefix}.*&type=nothing.happened&limit=100")).await;
    let expected = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{prefix}."))
        })
        .count();
    assert_eq!(
        by_prefix["data"].as_array().unwrap().len(),
        expected.min(100),
        "{by_prefix}"
    );

    // Revenue reports: JSON with numbers and words, a CSV download, bad input in words.
    let (status, summary) = api
        .call(
            "GET",
            &format!("/api/v1/connections/{label}/reports/summary?interval=month"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary["periods"].as_array().unwrap().len(),
        12,
        "{summary}"
    );
    let usd = &summary["summary"]["usd"];
    assert!(usd["mrr"].as_i64().unwrap() > 0, "{summary}");
    assert!(usd["mrr_formatted"].as_str().unwrap().starts_with('$'));
    let csv = api
        .http
        .get(format!(
            "{}/api/v1/connections/{label}/reports/revenue?format=csv&from=2026-01-01",
            api.base
        ))
        .bearer_auth(reader.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".csv")
    );
    assert!(
        csv.text()
            .await
            .unwrap()
            .starts_with("period,currency,gross_sales,")
    );
    for (path, words) in [
        ("reports/arr", "no report \"arr\""),
        ("reports/mrr?interval=year", "day, week or month"),
        ("reports/mrr?from=2026-02-30", "from must be a date"),
        ("reports/mrr?colour=blue", "reports take from, to"),
    ] {
        let (status, refused) = api
            .call(
                "GET",
                &format!("/api/v1/connections/{label}/{path}"),
                Some(&reader),
                None,
            )
            .await;
        assert_eq!(status, 400, "{path}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains(words),
            "{path}: {refused}"
        );
    }

    // Mirrored objects, as Stripe lists them: pages with a cursor, filters, one by id.
    let (status, page) = api
        .call(
            "GET",
            &format!("/api/v1/connections/{label}/objects/customers?limit=2"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (page["object"].as_str(), page["has_more"].as_bool()),
        (Some("list"), Some(true)),
        "{page}"
    );
    let customer = page["data"][0]["id"].as_str().unwrap().to_owned();
    let after = page["data"][1]["id"].as_str().unwrap();
    let (_, next) = api
        .call(
            "GET",
            &format!(
                "/api/v1/connections/{label}/objects/customers?limit=2&starting_after={after}"
            ),
            Some(&reader),
            None,
        )
        .await;
    assert!(
        next["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != customer.as_str())
    );
    let (_, one) = api
        .call(
            "GET",
            &format!("/api/v1/connections/{label}/objects/customers/{customer}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(one["id"], customer.as_str());
    let (status, filtered) = api
        .call(
            "GET",
            &format!("/api/v1/connections/{label}/objects/subscriptions?status=active&limit=100"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        filtered["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "active")
    );
    for (path, code) in [
        (
            format!("/api/v1/connections/{label}/objects/customers?colour=blue"),
            "invalid_input",
        ),
        (
            format!("/api/v1/connections/{label}/objects/customers?starting_after=cus_nope"),
            "invalid_input",
        ),
        (
            format!("/api/v1/connections/{label}/objects/customers?limit=500"),
            "invalid_input",
        ),
        (
            format!("/api/v1/connections/{label}/objects/custmers"),
            "not_found",
        ),
        (
            format!("/api/v1/connections/{label}/objects/customers/cus_nope"),
            "not_found",
        ),
    ] {
        let (_, answer) = api.call("GET", &path, Some(&reader), None).await;
        assert_eq!(answer["error"]["code"], code, "{path}: {answer}");
    }

    // The document names every route served, and each documented read answers.
    let (status, document) = api
        .call("GET", "/api/v1/openapi.json", Some(&reader), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    for route in sm_server::api::ROUTES {
        let operation = &document["paths"][route.path][route.method.to_ascii_lowercase()];
        assert!(
            operation["summary"].is_string(),
            "{} {} is not documented",
            route.method,
            route.path
        );
        if route.path.ends_with("/events/stream") {
            // A stream: its head only (the events test reads one).
            let response = api
                .http
                .get(format!(
                    "{}{}",
                    api.base,
                    route.path.replace("{connection}", &label)
                ))
                .bearer_auth(reader.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            continue;
        }
        if route.method == "GET" {
            let path = route
                .path
                .replace("{connection}", &label)
                .replace("{table}", "customers")
                .replace("{id}", &customer)
                .replace("{run}", &latest["id"].to_string())
                .replace("{report}", "summary");
            let (status, answer) = api.call("GET", &path, Some(&reader), None).await;
            assert_eq!(status, 200, "GET {path}: {answer}");
        }
    }
    let documented: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, sm_server::api::ROUTES.len());

    // Removed with its data; then it is gone.
    let (status, removed) = api
        .call(
            "DELETE",
            &format!("/api/v1/connections/{label}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    let (status, _) = api
        .call(
            "GET",
            &format!("/api/v1/connections/{label}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// Reads Server-Sent Events from `response` until `count` messages came: their `id`s and
/// data (a Stripe event each).
async fn read_messages(response: &mut reqwest::Response, count: usize) -> Vec<(i64, Value)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    loop {
        let messages: Vec<(i64, Value)> = text
            .split("\n\n")
            .filter(|block| block.contains("data:"))
            .filter_map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::trim)
                        .map(str::to_owned)
                };
                Some((
                    field("id:")?.parse().ok()?,
                    serde_json::from_str(&field("data:")?).ok()?,
                ))
            })
            .collect();
        if messages.len() >= count {
            return messages;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{count} messages did not come in 30 s: {text}"))
            .expect("the stream reads")
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// New events arrive on the stream as they are stored, in storage order, each with its
/// position; a client that comes back with `Last-Event-ID` continues after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_as_they_are_stored() {
    let world = World::start(3, 97, "rest-api-stream").await;
    let engine = world.engine();
    let connection = world.connect(&engine, None).await;
    world.sync(&engine).await;
    let start = engine.store.last_event_position(&connection).unwrap();
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    let token = tokens::create(&engine, "reader", true)
        .await
        .unwrap()
        .secret;
    let url = format!(
        "{}/api/v1/connections/{}/events/stream",
        server.base,
        connection.label()
    );
    let http = reqwest::Client::new();
    let mut live = http
        .get(&url)
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    // Changes in Stripe, and a sync that stores their events.
    world.activity(4, 3).await;
    world.sync(&engine).await;
    let stored = engine
        .store
        .events_since(&connection, start, 1_000)
        .unwrap();
    assert!(stored.len() >= 3, "{} events stored", stored.len());
    let messages = read_messages(&mut live, stored.len()).await;
    let expected: Vec<(i64, String)> = stored.iter().map(|(at, e)| (*at, e.id.clone())).collect();
    let got: Vec<(i64, String)> = messages
        .iter()
        .map(|(at, event)| (*at, event["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(got, expected, "the stream is the events as stored");
    assert!(messages.iter().all(|(_, e)| e["object"] == "event"));
    drop(live);
    // Back after the first: the second comes first.
    let mut resumed = http
        .get(&url)
        .bearer_auth(token.as_str())
        .header("Last-Event-ID", expected[0].0.to_string())
        .send()
        .await
        .unwrap();
    let again = read_messages(&mut resumed, 1).await;
    assert_eq!(again[0].0, expected[1].0);
    // A bad Last-Event-ID is bad input.
    let bad = http
        .get(&url)
        .bearer_auth(token.as_str())
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    drop(resumed);
    server.stop().await;
}

/// Notification channels and rules through the REST API: a webhook channel added (its made
/// secret answered once, its URL never), tested against a real receiver, a rule in words, the
/// log, bad input refused in words with nothing written, a read-only token refused, removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_through_the_rest_api() {
    let world = World::start(2, 97, "rest-notify").await;
    let engine = world.engine();
    world.connect(&engine, None).await;
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let admin = tokens::create(&engine, "admin", false)
        .await
        .unwrap()
        .secret;
    let reader = tokens::create(&engine, "reader", true)
        .await
        .unwrap()
        .secret;
    let (receiver_base, bodies) = sm_test_support::receiver::start().await;

    let body = json!({"name": "consumer", "kind": "webhook", "url": format!("{receiver_base}/hooks/s3cret")}).to_string();
    let (status, added) = api
        .call(
            "POST",
            "/api/v1/notifications/channels",
            Some(&admin),
            Some(&body),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert!(
        added["signing_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    assert_eq!(added["channel"]["status"], "untested");
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/notifications/channels",
            Some(&reader),
            Some(&body),
        )
        .await;
    assert_eq!(status, 403, "a read-only token cannot add a channel");
    let (status, again) = api
        .call(
            "POST",
            "/api/v1/notifications/channels",
            Some(&admin),
            Some(&body),
        )
        .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{again}"
    );
    for (bad, words) in [
        (
            json!({"name": "x", "kind": "pager", "url": "https://e.com/"}),
            "not a kind of channel",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "http://example.com/x"}),
            "https://",
        ),
        (
            json!({"name": "x", "kind": "email", "url": "smtp://mail.example.com"}),
            "recipient",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "https://e.com/", "colour": 1}),
            "unknown field",
        ),
    ] {
        let (status, answer) = api
            .call(
                "POST",
                "/api/v1/notifications/channels",
                Some(&admin),
                Some(&bad.to_string()),
            )
            .await;
        assert_eq!(status, 400, "{bad} → {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(words),
            "{answer}"
        );
    }
    let (_, listed) = api
        .call("GET", "/api/v1/notifications/channels", Some(&reader), None)
        .await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "nothing half-written: {listed}"
    );
    assert!(
        !listed.to_string().contains("s3cret"),
        "the URL is masked: {listed}"
    );

    let (status, tested) = api
        .call(
            "POST",
            "/api/v1/notifications/channels/consumer/test",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(
        (
            tested["delivered"].as_bool(),
            tested["channel"]["status"].as_str()
        ),
        (Some(true), Some("ok"))
    );
    let received = bodies.lock().await.clone();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].contains("Test message from stripe-mirror"),
        "{}",
        received[0]
    );

    let rule = json!({"name": "big", "channel": "consumer", "events": "charge.succeeded", "min_amount": "100usd", "include_test": true}).to_string();
    let (status, made) = api
        .call(
            "POST",
            "/api/v1/notifications/rules",
            Some(&admin),
            Some(&rule),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert!(
        made["description"]
            .as_str()
            .unwrap()
            .contains("from $100.00"),
        "{made}"
    );
    let bad_rule = json!({"name": "r", "channel": "nobody"}).to_string();
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/notifications/rules",
            Some(&admin),
            Some(&bad_rule),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{answer}"
    );
    let (_, rules) = api
        .call("GET", "/api/v1/notifications/rules", Some(&reader), None)
        .await;
    assert_eq!(rules["data"][0]["channel"], "consumer");
    let (status, log) = api
        .call(
            "GET",
            "/api/v1/notifications/log?state=failed&limit=5",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(
        (status, log["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{log}"
    );

    let (status, removed) = api
        .call(
            "DELETE",
            "/api/v1/notifications/channels/consumer",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, removed["rules_removed"].as_u64()),
        (200, Some(1)),
        "{removed}"
    );
    let (_, rules) = api
        .call("GET", "/api/v1/notifications/rules", Some(&reader), None)
        .await;
    assert!(rules["data"].as_array().unwrap().is_empty());
    server.stop().await;
}
