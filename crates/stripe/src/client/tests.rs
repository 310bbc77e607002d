//! Client tests against a scripted HTTP/1.1 server on 127.0.0.1 (raw tokio sockets, one request
//! per connection), so that statuses, headers, truncated bodies and stalls are exactly as scripted.

use std::collections::HashMap;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::error::AuthFailure;
use crate::form::params;

const KEY: &str = "rk_test_51HsecretSECRETsecret0123456789wxyz";

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What the server does with a request.
enum Reply {
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Announces more body than it sends, then closes.
    Truncated { body: String },
    /// Answers nothing for this long.
    Stall(Duration),
}

fn json(status: u16, body: &str) -> Reply {
    Reply::Json {
        status,
        headers: vec![("Request-Id", "req_test1".into())],
        body: body.to_owned(),
    }
}

fn json_with(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
    let mut all = vec![("Request-Id", "req_test1".to_owned())];
    all.extend(headers.iter().map(|(k, v)| (*k, v.to_string())));
    Reply::Json {
        status,
        headers: all,
        body: body.to_owned(),
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Starts a server whose `handler` gets the request's index (0-based) and the request.
async fn server(handler: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let handler = Arc::new(handler);
    let server_log = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let log = server_log.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let Some(seen) = read_request(&mut socket).await else {
                    return;
                };
                let index = {
                    let mut log = log.lock();
                    log.push(seen.clone());
                    log.len() - 1
                };
                match handler(index, &seen) {
                    Reply::Json {
                        status,
                        headers,
                        body,
                    } => {
                        let mut head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                             Connection: close\r\n",
                            body.len()
                        );
                        for (k, v) in headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(body.as_bytes()).await;
                    }
                    Reply::Truncated { body } => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n",
                            body.len() + 50
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(body.as_bytes()).await;
                    }
                    Reply::Stall(d) => tokio::time::sleep(d).await,
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    (base, log)
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

fn config(base: &str) -> ClientConfig {
    ClientConfig {
        api_base: base.to_owned(),
        retry_base: Duration::from_millis(10),
        retry_cap: Duration::from_millis(40),
        budget_share: f64::INFINITY,
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

fn client(base: &str) -> Client {
    Client::new(config(base), ApiKey::parse(KEY).unwrap()).unwrap()
}

const SERVER_ERROR: &str =
    r#"{"error":{"message":"An unknown error occurred","type":"api_error"}}"#;

#[test]
fn defaults_follow_api_md() {
    let c = ClientConfig::default();
    assert_eq!(c.api_base, "https://api.stripe.com");
    assert_eq!(c.api_version, "2023-08-16");
    assert_eq!((c.max_retries, c.budget_share), (5, 0.5));
    assert!(USER_AGENT.starts_with("stripe-mirror/"));
}

#[test]
fn backoff_is_capped_exponential_with_jitter() {
    let (base, cap) = (Duration::from_millis(500), Duration::from_secs(5));
    assert_eq!(backoff(1, base, cap, 1.0), Duration::from_millis(500));
    assert_eq!(backoff(2, base, cap, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(4, base, cap, 1.0), Duration::from_secs(4));
    assert_eq!(backoff(5, base, cap, 1.0), Duration::from_secs(5));
    assert_eq!(backoff(40, base, cap, 1.0), Duration::from_secs(5));
    assert_eq!(backoff(1, base, cap, 0.5), Duration::from_millis(250));
    for _ in 0..1000 {
        let j = jitter();
        assert!((0.5..=1.0).contains(&j), "{j}");
    }
    let (a, b) = (new_idempotency_key(), new_idempotency_key());
    assert_ne!(a, b);
    assert_eq!(a.len(), 35);
}

#[test]
fn refuses_configurations_that_cannot_work() {
    let key = || ApiKey::parse(KEY).unwrap();
    let bad_share = ClientConfig {
        budget_share: 0.0,
        ..ClientConfig::default()
    };
    assert!(matches!(
        Client::new(bad_share, key()),
        Err(ClientError::Config(_))
    ));
    let bad_base = ClientConfig {
        api_base: "api.stripe.com".into(),
        ..ClientConfig::default()
    };
    let e = Client::new(bad_base, key()).unwrap_err();
    assert!(e.to_string().contains("must start with https://"), "{e}");
    let c = Client::new(ClientConfig::default(), key()).unwrap();
    assert_eq!(c.mode(), Mode::Test);
    assert!(!format!("{c:?}").contains("SECRET"));
}

#[tokio::test]
async fn get_sends_auth_version_agent_and_query_then_retries_500s() {
    let (base, log) = server(|i, _| {
        if i < 2 {
            json(500, SERVER_ERROR)
        } else {
            json(200, r#"{"id":"cus_1"}"#)
        }
    })
    .await;
    let c = client(&base);
    let value = c
        .get(
            "/v1/customers/cus_1",
            &params([("expand[]", "default_source")]),
        )
        .await
        .unwrap();
    assert_eq!(value["id"], "cus_1");
    assert_eq!(c.requests_made(), 3);
    assert_eq!(c.last_request_id().as_deref(), Some("req_test1"));
    let seen = log.lock().clone();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.method, "GET");
        assert_eq!(s.target, "/v1/customers/cus_1?expand[]=default_source");
        assert_eq!(
            s.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(s.header("stripe-version"), Some("2023-08-16"));
        assert!(
            s.header("user-agent")
                .unwrap()
                .starts_with("stripe-mirror/")
        );
        assert_eq!(s.header("idempotency-key"), None);
        assert_eq!(s.header("stripe-account"), None);
    }
}

#[tokio::test]
async fn gives_up_after_max_retries_with_the_last_error() {
    let (base, log) = server(|_, _| json(503, SERVER_ERROR)).await;
    let c = Client::new(
        ClientConfig {
            max_retries: 2,
            ..config(&base)
        },
        ApiKey::parse(KEY).unwrap(),
    )
    .unwrap();
    let e = c.get("/v1/customers", &[]).await.unwrap_err();
    assert_eq!(e.kind(), Some(&ErrorKind::Api));
    assert_eq!(e.request_id(), Some("req_test1"));
    assert_eq!(log.lock().len(), 3);
}

#[tokio::test]
async fn rate_limit_with_should_retry_false_is_not_retried() {
    let body = r#"{"error":{"code":"rate_limit","doc_url":"https://stripe.com/docs/error-codes/rate-limit","message":"Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.","type":"invalid_request_error"}}"#;
    let (base, log) =
        server(move |_, _| json_with(429, &[("Stripe-Should-Retry", "false")], body)).await;
    let c = client(&base);
    let e = c.get("/v1/customers", &[]).await.unwrap_err();
    assert_eq!(
        e.kind(),
        Some(&ErrorKind::RateLimited {
            lock_timeout: false
        })
    );
    assert_eq!(e.api_error().unwrap().stripe_should_retry, Some(false));
    assert_eq!(log.lock().len(), 1);
    assert_eq!(c.requests_made(), 1);
}

#[tokio::test]
async fn rate_limit_is_retried_and_retry_after_honoured() {
    let body = r#"{"error":{"code":"rate_limit","message":"Request rate limit exceeded.","type":"invalid_request_error"}}"#;
    let (base, log) = server(move |i, _| {
        if i == 0 {
            json_with(
                429,
                &[
                    ("Retry-After", "1"),
                    ("Stripe-Rate-Limited-Reason", "global-rate"),
                ],
                body,
            )
        } else {
            json(200, r#"{"ok":true}"#)
        }
    })
    .await;
    let c = client(&base);
    let start = Instant::now();
    assert_eq!(c.get("/v1/customers", &[]).await.unwrap()["ok"], true);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(log.lock().len(), 2);
}

#[tokio::test]
async fn should_retry_header_is_authoritative_even_on_a_400() {
    let (base, log) = server(|i, _| {
        if i == 0 {
            json_with(
                400,
                &[("Stripe-Should-Retry", "true")],
                r#"{"error":{"message":"x","type":"invalid_request_error"}}"#,
            )
        } else {
            json(200, "{}")
        }
    })
    .await;
    client(&base).get("/v1/customers", &[]).await.unwrap();
    assert_eq!(log.lock().len(), 2);
}

#[tokio::test]
async fn authentication_errors_are_not_retried_and_never_show_the_key() {
    let (base, log) = server(|_, _| {
        json(
            401,
            r#"{"error":{"message":"Invalid API Key provided: rk_test_************wxyz","type":"invalid_request_error"}}"#,
        )
    })
    .await;
    let c = client(&base);
    let e = c.get("/v1/customers", &[]).await.unwrap_err();
    assert_eq!(
        e.kind(),
        Some(&ErrorKind::Authentication(AuthFailure::InvalidKey))
    );
    assert_eq!(e.request_id(), Some("req_test1"));
    assert_eq!(log.lock().len(), 1);
    for text in [e.to_string(), format!("{e:?}"), format!("{c:?}")] {
        assert!(!text.contains("SECRET"), "{text}");
    }
    for status in [400, 402, 403, 404] {
        let (base, log) = server(move |_, _| {
            json(
                status,
                r#"{"error":{"message":"no","type":"invalid_request_error"}}"#,
            )
        })
        .await;
        client(&base)
            .get("/v1/customers/cus_1", &[])
            .await
            .unwrap_err();
        assert_eq!(log.lock().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn post_retries_reuse_one_idempotency_key_and_form_encode() {
    let (base, log) = server(|i, _| {
        if i == 0 {
            json(503, SERVER_ERROR)
        } else {
            json(200, r#"{"id":"cus_1"}"#)
        }
    })
    .await;
    let c = client(&base);
    let p = params([
        ("email", "a+b@example.com"),
        ("metadata[plan id]", "gold"),
        ("expand[]", "tax"),
    ]);
    assert_eq!(c.post("/v1/customers", &p).await.unwrap()["id"], "cus_1");
    c.post("/v1/customers", &p).await.unwrap();
    let seen = log.lock().clone();
    assert_eq!(seen.len(), 3);
    let keys: Vec<&str> = seen
        .iter()
        .map(|s| s.header("idempotency-key").unwrap())
        .collect();
    assert_eq!(keys[0], keys[1], "a retry must reuse its Idempotency-Key");
    assert_ne!(keys[1], keys[2], "each POST has its own Idempotency-Key");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/v1/customers");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        seen[0].body,
        "email=a%2Bb%40example.com&metadata[plan+id]=gold&expand[]=tax"
    );

    c.post_idempotent("/v1/customers", &[], "my-key-1")
        .await
        .unwrap();
    assert_eq!(log.lock()[3].header("idempotency-key"), Some("my-key-1"));
    assert!(c.post_idempotent("/v1/customers", &[], "").await.is_err());
}

#[tokio::test]
async fn delete_has_no_idempotency_key_and_stripe_account_is_sent() {
    let (base, log) = server(|_, _| json(200, r#"{"id":"we_1","deleted":true}"#)).await;
    let config = ClientConfig {
        stripe_account: Some("acct_123".into()),
        ..config(&base)
    };
    let c = Client::new(config, ApiKey::parse(KEY).unwrap()).unwrap();
    assert_eq!(
        c.delete("/v1/webhook_endpoints/we_1").await.unwrap()["deleted"],
        true
    );
    let seen = log.lock()[0].clone();
    assert_eq!(seen.method, "DELETE");
    assert_eq!(seen.header("idempotency-key"), None);
    assert_eq!(seen.header("stripe-account"), Some("acct_123"));
}

#[tokio::test]
async fn truncated_bodies_are_retried() {
    let (base, log) = server(|i, _| {
        if i == 0 {
            Reply::Truncated {
                body: r#"{"id":"cus_1","#.into(),
            }
        } else {
            json(200, r#"{"id":"cus_1"}"#)
        }
    })
    .await;
    assert_eq!(
        client(&base).get("/v1/customers/cus_1", &[]).await.unwrap()["id"],
        "cus_1"
    );
    assert_eq!(log.lock().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_retried_then_explained() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let c = Client::new(
        ClientConfig {
            max_retries: 2,
            ..config(&base)
        },
        ApiKey::parse(KEY).unwrap(),
    )
    .unwrap();
    let e = c
        .get("/v1/customers", &params([("limit", "1")]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Connect { attempts: 3, .. }),
        "{e:?}"
    );
    assert!(e.is_network());
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "could not connect to {base}/v1/customers: connection refused"
        )),
        "{text}"
    );
    assert!(text.contains("check --api-base"), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
    assert_eq!(c.requests_made(), 3);
}

#[tokio::test]
async fn timeouts_are_retried_then_explained() {
    let (base, log) = server(|_, _| Reply::Stall(Duration::from_secs(3))).await;
    let config = ClientConfig {
        max_retries: 1,
        timeout: Duration::from_millis(200),
        ..config(&base)
    };
    let c = Client::new(config, ApiKey::parse(KEY).unwrap()).unwrap();
    let e = c.get("/v1/customers", &[]).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Timeout { attempts: 2, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("no answer from"), "{e}");
    assert_eq!(log.lock().len(), 2);
}

#[tokio::test]
async fn non_json_answers_say_so() {
    let html = "<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>";
    let (base, log) = server(move |_, s| {
        let status = if s.target.starts_with("/ok") {
            200
        } else {
            404
        };
        Reply::Json {
            status,
            headers: vec![],
            body: html.into(),
        }
    })
    .await;
    let c = client(&base);
    let e = c.get("/ok", &[]).await.unwrap_err();
    assert!(
        matches!(e, ClientError::InvalidBody { status: 200, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("Welcome to nginx"), "{e}");
    let attempts = ClientConfig::default().max_retries as usize + 1;
    assert_eq!(log.lock().len(), attempts, "a 2xx page is asked again");
    let e = c.get("/v1/customers", &[]).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("HTTP 404") && text.contains("not JSON") && text.contains("<!DOCTYPE html>"),
        "{text}"
    );
    assert_eq!(log.lock().len(), attempts + 1, "a 404 is not");
}

#[tokio::test]
async fn a_proxy_page_or_an_empty_body_in_a_2xx_is_asked_again() {
    let (base, log) = server(|i, s| match (i, s.method.as_str()) {
        (0, _) => Reply::Json {
            status: 200,
            headers: vec![("Content-Type", "text/html".into())],
            body: "<!DOCTYPE html><html><body>502 Bad Gateway</body></html>".into(),
        },
        (1, _) => json(200, ""),
        (2, _) => json(200, r#"{"unexpected": true}"#),
        _ => json(
            200,
            r#"{"object":"list","data":[{"id":"cus_1"}],"has_more":false}"#,
        ),
    })
    .await;
    let page = client(&base)
        .get_list("/v1/customers", &[])
        .await
        .expect("the fourth answer is Stripe's");
    assert_eq!(page.data.len(), 1);
    assert_eq!(log.lock().len(), 4);
}

#[tokio::test]
async fn a_delete_answered_with_a_page_is_not_sent_again() {
    let (base, log) = server(|_, _| json(200, "<html>ok</html>")).await;
    let e = client(&base)
        .delete("/v1/webhook_endpoints/we_1")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::InvalidBody { .. }), "{e:?}");
    assert_eq!(log.lock().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (base, _log) =
        server(|_, _| json_with(301, &[("Location", "https://example.com/v1/customers")], ""))
            .await;
    let e = client(&base).get("/v1/customers", &[]).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Redirect { status: 301, .. }),
        "{e:?}"
    );
}

/// Serves `/v1/customers` from 250 ids, newest first, honouring limit/starting_after/ending_before.
fn list_server(i: usize, s: &Seen) -> Reply {
    let _ = i;
    let query = s.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let ids: Vec<String> = (0..250).rev().map(|n| format!("cus_{n:03}")).collect();
    let limit: usize = q["limit"].parse().unwrap();
    let (from, to) = if let Some(after) = q.get("starting_after") {
        let at = ids.iter().position(|id| id == after).unwrap() + 1;
        (at, (at + limit).min(ids.len()))
    } else if let Some(before) = q.get("ending_before") {
        let at = ids.iter().position(|id| id == before).unwrap();
        (at.saturating_sub(limit), at)
    } else {
        (0, limit.min(ids.len()))
    };
    let has_more = if q.contains_key("ending_before") {
        from > 0
    } else {
        to < ids.len()
    };
    let data: Vec<Value> = ids[from..to]
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "customer"}))
        .collect();
    let body = serde_json::json!({"object": "list", "url": "/v1/customers", "has_more": has_more, "data": data});
    json(200, &body.to_string())
}

#[tokio::test]
async fn list_pages_walks_starting_after_with_limit_100() {
    let (base, log) = server(list_server).await;
    let c = client(&base);
    let mut cursor = c.list_pages("/v1/customers", params([("created[gte]", "0")]));
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    while let Some(page) = cursor.next_page().await.unwrap() {
        sizes.push((page.data.len(), page.has_more));
        ids.extend(
            page.data
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(sizes, vec![(100, true), (100, true), (50, false)]);
    assert_eq!(ids.len(), 250);
    assert_eq!(ids.first().unwrap(), "cus_249");
    assert_eq!(ids.last().unwrap(), "cus_000");
    assert!(cursor.is_done());
    assert!(cursor.next_page().await.unwrap().is_none());
    let targets: Vec<String> = log.lock().iter().map(|s| s.target.clone()).collect();
    assert_eq!(
        targets,
        vec![
            "/v1/customers?created[gte]=0&limit=100",
            "/v1/customers?created[gte]=0&limit=100&starting_after=cus_150",
            "/v1/customers?created[gte]=0&limit=100&starting_after=cus_050",
        ]
    );

    // Resuming from a checkpoint, and walking towards newer objects.
    let rest = c
        .list_pages("/v1/customers", params([("starting_after", "cus_010")]))
        .collect_all()
        .await
        .unwrap();
    assert_eq!(rest.len(), 10);
    let newer = c
        .list_pages(
            "/v1/customers",
            params([("ending_before", "cus_030"), ("limit", "7")]),
        )
        .collect_all()
        .await
        .unwrap();
    assert_eq!(newer.len(), 219);
    assert!(newer.iter().all(|o| o["id"].as_str().unwrap() > "cus_030"));
}

#[tokio::test]
async fn pacing_spreads_requests_over_the_budget() {
    let (base, log) = server(|_, _| json(200, "{}")).await;
    // Test mode at a share of 0.4: 10 requests/s overall (burst 1); 8 requests need at least 0.7 s.
    let c = Client::new(
        ClientConfig {
            budget_share: 0.4,
            ..config(&base)
        },
        ApiKey::parse(KEY).unwrap(),
    )
    .unwrap();
    assert_eq!(c.pacer().rate(), 10.0);
    let start = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.get(&format!("/v1/customers/cus_{i}A"), &[]).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(log.lock().len(), 8);
    assert_eq!(c.requests_made(), 8);
}
