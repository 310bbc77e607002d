//! Test harness: an in-process emulator on 127.0.0.1:0 with one seeded account, and raw HTTP
//! helpers that show a test exactly what a Stripe client would see (status, headers, body).
#![allow(dead_code)]

use std::net::SocketAddr;

use serde_json::{Value, json};
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::{Emulator, EmulatorServer};

/// One answer as the wire carried it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// `error.message` of an error answer.
    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or_default()
    }
}

/// A running emulator with one account (`scale` customers in test mode).
pub struct Harness {
    pub server: EmulatorServer,
    pub http: reqwest::Client,
    pub base: String,
    /// The account as `POST /_emulator/accounts` answers it: `id`, `keys.{secret_test, secret_live,
    /// restricted_test, publishable_test}`, `seeded`.
    pub account: Value,
}

impl Harness {
    pub async fn start(scale: u64) -> Harness {
        Harness::start_with_seed(scale, 42).await
    }

    pub async fn start_with_seed(scale: u64, seed: u64) -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let emulator = Emulator::new(seed);
        let account = create_account(
            &emulator,
            &NewAccount {
                scale,
                seed: Some(seed),
                name: Some("Test Co".into()),
                ..Default::default()
            },
            seed,
        )
        .expect("an account");
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = EmulatorServer::start(emulator, addr)
            .await
            .expect("the emulator listens");
        let base = server.base_url();
        Harness {
            server,
            http: reqwest::Client::new(),
            base,
            account,
        }
    }

    pub fn account_id(&self) -> &str {
        self.account["id"].as_str().unwrap()
    }

    /// A key of the account by role: `secret_test`, `secret_live`, `restricted_test`, `publishable_test`.
    pub fn key(&self, role: &str) -> String {
        self.account["keys"][role]
            .as_str()
            .unwrap_or_else(|| panic!("no key {role}"))
            .to_owned()
    }

    /// Makes a key with the given permissions (`rak_…_read|write`).
    pub async fn restricted_key(&self, mode: &str, permissions: &[&str]) -> String {
        let answer = self
            .control(
                "POST",
                &format!("/accounts/{}/keys", self.account_id()),
                json!({"mode": mode, "kind": "restricted", "permissions": permissions}),
            )
            .await;
        answer["key"].as_str().expect("a key").to_owned()
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the emulator answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, key: &str, path_and_query: &str) -> Reply {
        self.send(
            self.http
                .get(format!("{}{path_and_query}", self.base))
                .bearer_auth(key),
        )
        .await
    }

    pub async fn post(&self, key: &str, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(key)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(encode(form)),
        )
        .await
    }

    pub async fn delete(&self, key: &str, path: &str) -> Reply {
        self.send(
            self.http
                .delete(format!("{}{path}", self.base))
                .bearer_auth(key),
        )
        .await
    }

    /// A control-API call; panics unless it answers 200.
    pub async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/_emulator{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url),
        };
        let reply = self
            .send(
                request
                    .header("Content-Type", "application/json")
                    .body(body.to_string()),
            )
            .await;
        assert_eq!(reply.status, 200, "control {method} {path}: {}", reply.text);
        reply.json
    }

    /// Every object of a list, walking `starting_after` pages of 100.
    pub async fn list_all(&self, key: &str, path: &str, extra: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let reply = self
                .get(key, &format!("{path}?limit=100{extra}{cursor}"))
                .await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text);
            let data = reply.json["data"].as_array().cloned().unwrap_or_default();
            let more = reply.json["has_more"] == json!(true);
            if let Some(last) = data.last() {
                cursor = format!("&starting_after={}", last["id"].as_str().unwrap());
            }
            all.extend(data);
            if !more {
                return all;
            }
        }
    }
}

/// Form-encodes pairs the way Stripe clients do.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}
