//! Shared by the CLI tests: an in-process emulator on its own runtime, a private directory per
//! test, and the real `stripe-mirror` binary run with a clean environment, the way a user runs it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::limits::FaultSettings;
use sm_emulator::world::KeySpec;
use sm_emulator::{Emulator, EmulatorServer, KeyKind, Mode};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_stripe-mirror");

/// No command of these tests may take longer than this (faults retry once, with back-off).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A running emulator, on a runtime of its own so that tests stay plain `#[test]` functions
/// that may block on child processes.
pub struct Emu {
    server: Option<EmulatorServer>,
    runtime: tokio::runtime::Runtime,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

/// An emulated account and its standard keys.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub secret_test: String,
    pub secret_live: String,
    /// May read everything (test mode).
    pub restricted_test: String,
    pub publishable_test: String,
}

impl Emu {
    pub fn start() -> Emu {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the emulator");
        let server = runtime.block_on(async {
            let emulator = Emulator::new(7);
            EmulatorServer::start(emulator, "127.0.0.1:0".parse().unwrap())
                .await
                .expect("the emulator listens")
        });
        let base = server.base_url();
        Emu {
            server: Some(server),
            runtime,
            base,
        }
    }

    fn emulator(&self) -> &Emulator {
        &self.server.as_ref().expect("running").emulator
    }

    /// A new account with `scale` test-mode customers (0: empty).
    pub fn account(&self, name: &str, scale: u64) -> Account {
        let _guard = self.runtime.enter();
        let answer = create_account(
            self.emulator(),
            &NewAccount {
                name: Some(name.to_owned()),
                scale,
                seed: Some(11),
                ..Default::default()
            },
            11,
        )
        .expect("an emulated account");
        let key = |role: &str| {
            answer["keys"][role]
                .as_str()
                .unwrap_or_else(|| panic!("no {role} key in {answer}"))
                .to_owned()
        };
        Account {
            id: answer["id"].as_str().expect("an id").to_owned(),
            name: name.to_owned(),
            secret_test: key("secret_test"),
            secret_live: key("secret_live"),
            restricted_test: key("restricted_test"),
            publishable_test: key("publishable_test"),
        }
    }

    /// A key with chosen permissions (`rak_…`), optionally expiring after `expires_in` seconds.
    pub fn new_key(
        &self,
        account: &str,
        mode: Mode,
        kind: KeyKind,
        permissions: &[String],
        expires_in: Option<i64>,
    ) -> String {
        self.emulator()
            .world
            .create_key(
                account,
                &KeySpec {
                    mode,
                    kind,
                    permissions: permissions.to_vec(),
                    expires_in,
                },
            )
            .expect("a new key")
    }

    /// A restricted test key that may read everything (a fresh one, distinct from the standard).
    pub fn full_read_key(&self, account: &str) -> String {
        self.new_key(
            account,
            Mode::Test,
            KeyKind::Restricted,
            &sm_emulator::world::all_read_permissions(),
            None,
        )
    }

    /// From now on the key answers 401 "Invalid API Key provided".
    pub fn revoke(&self, key: &str) {
        self.emulator()
            .world
            .change_key(key, true, None)
            .expect("a known key");
    }

    /// From now on the key answers 401 `api_key_expired`.
    pub fn expire(&self, key: &str) {
        self.emulator()
            .world
            .change_key(key, false, Some(0))
            .expect("a known key");
    }

    /// Fault probabilities on `/v1` requests, as `PUT /_emulator/faults` takes them (`{}`: none).
    pub fn faults(&self, settings: &Value) {
        let settings: FaultSettings =
            serde_json::from_value(settings.clone()).expect("fault settings");
        *self.emulator().limits.faults.write() = settings;
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

/// How the key reaches the command.
#[derive(Debug, Clone)]
pub enum KeyInput {
    /// Neither environment, nor file, nor standard input (which is /dev/null: not a terminal).
    None,
    /// `STRIPE_API_KEY`.
    Env(String),
    /// `--key-file` with exactly these bytes in the file.
    File(String),
    /// `--key-stdin` with exactly these bytes piped in.
    Stdin(String),
}

/// One run of the binary.
#[derive(Debug, Clone)]
pub struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The answer of a `--json` command.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`{}` did not print JSON ({e}):\n{}",
                self.command,
                self.describe()
            )
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "$ {}\nexit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    /// Panics (showing everything) unless the command succeeded.
    pub fn success(self) -> Run {
        assert_eq!(self.code, 0, "expected success:\n{}", self.describe());
        self
    }
}

/// A mirror of its own: a private directory holding the database, its master key and key files.
pub struct Mirror {
    pub dir: PathBuf,
    pub db: PathBuf,
    pub api_base: String,
    files: AtomicU32,
}

impl Mirror {
    /// A fresh directory under the target's temporary directory (removed when dropped).
    pub fn new(name: &str, api_base: &str) -> Mirror {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "cli-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a test directory");
        Mirror {
            db: dir.join("m.db"),
            dir,
            api_base: api_base.to_owned(),
            files: AtomicU32::new(0),
        }
    }

    /// Writes `content` to a new file of the directory and returns its path.
    pub fn file(&self, content: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("input-{n}.txt"));
        std::fs::write(&path, content).expect("a key file");
        path
    }

    /// Runs `stripe-mirror --database DB ARGS…` (plus the key's flag) with `env` on top of a
    /// clean environment: no inherited `STRIPE_API_KEY` or `STRIPE_MIRROR_*`, the emulator as
    /// the API, one retry.
    pub fn run_with(&self, args: &[&str], key: &KeyInput, env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut shown: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        let mut stdin_text = None;
        match key {
            KeyInput::None => {
                command.stdin(Stdio::null());
            }
            KeyInput::Env(text) => {
                command.env("STRIPE_API_KEY", text).stdin(Stdio::null());
                shown.insert(0, "STRIPE_API_KEY=<key>".into());
            }
            KeyInput::File(text) => {
                let path = self.file(text);
                command.arg("--key-file").arg(&path).stdin(Stdio::null());
                shown.push(format!("--key-file {}", path.display()));
            }
            KeyInput::Stdin(text) => {
                command.arg("--key-stdin").stdin(Stdio::piped());
                shown.push("--key-stdin <key".into());
                stdin_text = Some(text.clone());
            }
        }
        for (name, value) in env {
            command.env(name, value);
            if !name.contains("KEY") {
                shown.insert(0, format!("{name}={value}"));
            }
        }
        let description = format!("stripe-mirror {}", shown.join(" "));
        let mut child = command.spawn().expect("the binary starts");
        if let Some(text) = stdin_text {
            let mut stdin = child.stdin.take().expect("a pipe");
            // The command may fail before reading; a broken pipe is then expected.
            let _ = stdin.write_all(text.as_bytes());
        }
        let mut out = child.stdout.take().expect("a pipe");
        let mut err = child.stderr.take().expect("a pipe");
        let out_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = out.read_to_end(&mut text);
            text
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = err.read_to_end(&mut text);
            text
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for the binary") {
                break status;
            }
            if started.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{description}` ran for more than {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
        Run {
            command: description,
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }

    /// `stripe-mirror --database DB ARGS…` with a clean environment: no inherited
    /// `STRIPE_API_KEY` or `STRIPE_MIRROR_*`, the emulator as the API, one retry.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text == "STRIPE_API_KEY" || text.starts_with("STRIPE_MIRROR_") {
                command.env_remove(&name);
            }
        }
        command
            // The master key's home is the test's own directory, not the user's.
            .env("XDG_CONFIG_HOME", &self.dir)
            .env("STRIPE_MIRROR_API_BASE", &self.api_base)
            .env("STRIPE_MIRROR_MAX_RETRIES", "1")
            .env("NO_COLOR", "1")
            .arg("--database")
            .arg(&self.db)
            .args(args)
            .current_dir(&self.dir);
        command
    }

    /// Starts `stripe-mirror ARGS…` without waiting (to be killed, say); its output goes to
    /// `NAME.out` and `NAME.err` in the mirror's directory.
    pub fn spawn(&self, args: &[&str], name: &str) -> std::process::Child {
        let out = std::fs::File::create(self.dir.join(format!("{name}.out"))).expect("a file");
        let err = std::fs::File::create(self.dir.join(format!("{name}.err"))).expect("a file");
        self.command(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the binary starts")
    }

    /// What a [`Mirror::spawn`]ed command printed: (stdout, stderr).
    pub fn output_of(&self, name: &str) -> (String, String) {
        let read = |ext: &str| {
            std::fs::read_to_string(self.dir.join(format!("{name}.{ext}"))).unwrap_or_default()
        };
        (read("out"), read("err"))
    }

    /// Opens the mirror's database in this process (for reads while commands run).
    pub fn store(&self) -> Box<dyn sm_warehouse::Store> {
        sm_warehouse::open(self.db.to_str().expect("a UTF-8 path")).expect("the database")
    }

    /// `syncs ACCOUNT --json`: the run history, newest first.
    pub fn syncs(&self, account: &str) -> Vec<Value> {
        let run = self
            .run(
                &["syncs", account, "--json", "--limit", "1000"],
                &KeyInput::None,
            )
            .success();
        run.json().as_array().expect("a list").clone()
    }

    pub fn run(&self, args: &[&str], key: &KeyInput) -> Run {
        self.run_with(args, key, &[])
    }

    /// `connect` with the key in `STRIPE_API_KEY`; must succeed.
    pub fn connect(&self, key: &str, extra: &[&str]) -> Run {
        let mut args = vec!["connect"];
        args.extend_from_slice(extra);
        self.run(&args, &KeyInput::Env(key.to_owned())).success()
    }

    /// `accounts --json`.
    pub fn accounts(&self) -> Vec<Value> {
        let run = self.run(&["accounts", "--json"], &KeyInput::None).success();
        run.json().as_array().expect("a list").clone()
    }

    /// Everything a failed command must leave alone: what `accounts --json` shows, every stored
    /// column of every connection (the sealed key included), and the row count of every table.
    /// `null` when there is no database file at all.
    pub fn snapshot(&self) -> Value {
        if !self.db.exists() {
            return Value::Null;
        }
        let accounts = self.accounts();
        let store =
            sm_warehouse::open(self.db.to_str().expect("a UTF-8 path")).expect("the database");
        let rows = |sql: &str| -> Value {
            let (names, rows) = store.query(sql).expect("a query");
            json!({"columns": names, "rows": rows})
        };
        let (_, tables) = store
            .query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("the tables");
        let counts: Vec<Value> = tables
            .iter()
            .filter_map(|row| row[0].clone())
            .map(|table| {
                let (_, count) = store
                    .query(&format!("SELECT count(*) FROM \"{table}\""))
                    .expect("a count");
                json!([table, count[0][0]])
            })
            .collect();
        json!({
            "accounts": accounts,
            "stored": rows("SELECT account_id, livemode, name, key_kind, key_masked, hex(key_sealed), \
                permissions, status, status_message, start_date, webhook_endpoint_id, \
                hex(webhook_secret_sealed), created_at, updated_at FROM accounts \
                ORDER BY account_id, livemode"),
            "counts": counts,
        })
    }

    /// `SELECT count(*)` of every table but the schema's own bookkeeping.
    pub fn row_counts(&self) -> Vec<(String, i64)> {
        let store =
            sm_warehouse::open(self.db.to_str().expect("a UTF-8 path")).expect("the database");
        let (_, tables) = store
            .query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("the tables");
        tables
            .iter()
            .filter_map(|row| row[0].clone())
            // The schema's bookkeeping, and the customer index's own structure (its settings
            // and the root of its segments, present however empty it is).
            .filter(|t| {
                ![
                    "stripe_mirror_meta",
                    "sqlite_sequence",
                    "customer_search_config",
                    "customer_search_data",
                ]
                .contains(&t.as_str())
            })
            .map(|table| {
                let (_, count) = store
                    .query(&format!("SELECT count(*) FROM \"{table}\""))
                    .expect("a count");
                let n = count[0][0].as_deref().unwrap_or("0").parse().unwrap_or(-1);
                (table, n)
            })
            .collect()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The mirror's account entry for `account_id` and `mode` in an `accounts --json` answer.
pub fn entry<'a>(accounts: &'a [Value], account_id: &str, mode: &str) -> &'a Value {
    accounts
        .iter()
        .find(|a| a["account_id"] == account_id && a["mode"] == mode)
        .unwrap_or_else(|| panic!("no {account_id}:{mode} in {accounts:?}"))
}

// ---------------------------------------------------------------------------------------------
// A separate emulator process (it outlives the commands killed under it), its control API over
// plain HTTP, a proxy that logs every request the mirror makes, and the exactness comparison.
// ---------------------------------------------------------------------------------------------

/// `stripe-mirror emulator --listen 127.0.0.1:0 --json` running as a process of its own.
pub struct EmuProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The seeded account.
    pub account: String,
    keys: Value,
}

impl EmuProcess {
    /// An emulator with one account of `scale` test customers (about 15–20 objects each).
    pub fn start(scale: u64, seed: u64) -> EmuProcess {
        use std::io::BufRead;
        let mut child = Command::new(BIN)
            .env_remove("STRIPE_MIRROR_EMULATOR_LISTEN")
            .args(["emulator", "--listen", "127.0.0.1:0", "--json"])
            .args(["--scale", &scale.to_string(), "--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the emulator starts");
        let stdout = child.stdout.take().expect("a pipe");
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = send.send(line);
        });
        let line = match receive.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the emulator printed nothing within a minute");
            }
        };
        let answer: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("the emulator's first line is not JSON ({e}): {line}"));
        EmuProcess {
            child,
            base: answer["base_url"].as_str().expect("a base URL").to_owned(),
            account: answer["accounts"][0]["id"]
                .as_str()
                .expect("an account")
                .to_owned(),
            keys: answer["accounts"][0]["keys"].clone(),
        }
    }

    /// One of the standard keys: `secret_test`, `restricted_test`, …
    pub fn key(&self, role: &str) -> String {
        self.keys[role]
            .as_str()
            .unwrap_or_else(|| panic!("no {role} key"))
            .to_owned()
    }

    /// A control API call (`/_emulator…`) that must succeed; its JSON answer.
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) = http(&self.base, method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }

    /// A burst of realistic test-mode changes (events and all); how many were made.
    pub fn activity(&self, changes: u64, seed: u64) -> u64 {
        let answer = self.control(
            "POST",
            &format!("/_emulator/accounts/{}/activity", self.account),
            Some(&json!({"mode": "test", "changes": changes, "seed": seed})),
        );
        answer["changes"].as_u64().unwrap_or(0)
    }

    /// Every test-mode object, deleted ones flagged: `{"objects":[{"kind","deleted","object"}]}`.
    pub fn export(&self) -> Value {
        self.control(
            "GET",
            &format!("/_emulator/accounts/{}/test/export", self.account),
            None,
        )
    }

    /// From now on the key answers 401.
    pub fn revoke(&self, key: &str) {
        self.control("POST", "/_emulator/keys/revoke", Some(&json!({"key": key})));
    }

    /// A new restricted test key with these permissions.
    pub fn restricted_key(&self, permissions: &[String]) -> String {
        let answer = self.control(
            "POST",
            &format!("/_emulator/accounts/{}/keys", self.account),
            Some(&json!({"mode": "test", "kind": "restricted", "permissions": permissions})),
        );
        answer["key"].as_str().expect("a key").to_owned()
    }

    /// A Stripe API call (`/v1/…`, form body) with `key`: status and JSON answer.
    pub fn api(&self, method: &str, path: &str, form: &str, key: &str) -> (u16, Value) {
        let (status, text) = http_raw(
            &self.base,
            method,
            path,
            "application/x-www-form-urlencoded",
            form,
            Some(key),
        );
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Moves the emulator's clock; returns its new now.
    pub fn advance_clock(&self, seconds: i64) -> i64 {
        self.control(
            "POST",
            "/_emulator/clock",
            Some(&json!({"advance": seconds})),
        )["now"]
            .as_i64()
            .expect("a time")
    }
}

impl Drop for EmuProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`): status and body.
pub fn http(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    http_raw(base, method, path, "application/json", &body, None)
}

/// [`http`] with a body of any type and, optionally, a Stripe key as bearer.
pub fn http_raw(
    base: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
    key: Option<&str>,
) -> (u16, String) {
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("the emulator listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("a timeout");
    let authorization = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{authorization}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("a request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("an answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let mut payload = answer[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut decoded = Vec::new();
        let mut rest = &payload[..];
        while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..end])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[end + 2..end + 2 + size]);
            rest = &rest[end + 2 + size + 2..];
        }
        payload = decoded;
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, String::from_utf8_lossy(&payload).into_owned())
}

/// A request the mirror made, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The run tag current when the connection was accepted.
    pub run: u32,
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
}

impl Logged {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Decoded query parameters.
    pub fn params(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP proxy in front of the emulator that logs the request line of every HTTP request, tagged
/// with the run current when its connection opened (each process has its own connections).
pub struct Proxy {
    /// `http://127.0.0.1:PORT`: give this to the mirror as its API.
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<Logged>>>,
    tag: std::sync::Arc<AtomicU32>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tag = std::sync::Arc::new(AtomicU32::new(0));
        let (log_, tag_) = (log.clone(), tag.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let run = tag_.load(Ordering::SeqCst);
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let log = log_.clone();
                let (mut client_read, mut server_write) = (
                    client.try_clone().expect("a socket"),
                    server.try_clone().expect("a socket"),
                );
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let mut pending: Vec<u8> = Vec::new();
                    let mut buffer = [0u8; 16 * 1024];
                    loop {
                        let n = match client_read.read(&mut buffer) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if server_write.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                        pending.extend_from_slice(&buffer[..n]);
                        // Requests are complete once their head (and declared body) arrived.
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                            let length: usize = head
                                .lines()
                                .filter_map(|l| l.split_once(':'))
                                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                                .and_then(|(_, v)| v.trim().parse().ok())
                                .unwrap_or(0);
                            if pending.len() < end + 4 + length {
                                break;
                            }
                            let mut words = head.lines().next().unwrap_or("").split(' ');
                            let method = words.next().unwrap_or("").to_owned();
                            let target = words.next().unwrap_or("").to_owned();
                            log.lock().expect("the log").push(Logged {
                                run,
                                method,
                                target,
                            });
                            pending.drain(..end + 4 + length);
                        }
                    }
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy { base, log, tag }
    }

    /// Tags the connections opened from now on (call between runs).
    pub fn set_run(&self, run: u32) {
        // A killed process's last connections may still be queued for accept: let them land
        // under the old tag.
        std::thread::sleep(Duration::from_millis(30));
        self.tag.store(run, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().expect("the log").clone()
    }
}

pub use sm_test_support::Comparison;

/// Compares every mirrored table with an emulator export, by the rules of `sm_test_support`
/// (shared with the engine's and the server's tests). Tables in `unreadable` must be empty.
pub fn compare_export(
    export: &Value,
    store: &dyn sm_warehouse::Store,
    connection: &sm_warehouse::Connection,
    unreadable: &[&str],
) -> Comparison {
    sm_test_support::compare(
        &sm_test_support::exported_objects(export),
        store,
        connection,
        sm_test_support::Scope {
            unreadable,
            ..Default::default()
        },
    )
}

/// Per table of the catalog (and `events`): rows whose id appears more than once for the
/// connection (`count(*)` against `count(DISTINCT id)`); empty when there are none.
pub fn duplicates(
    store: &dyn sm_warehouse::Store,
    connection: &sm_warehouse::Connection,
) -> Vec<String> {
    let tables = sm_engine::catalog::RESOURCES
        .iter()
        .map(|r| r.table)
        .chain(["events"]);
    let mut found = Vec::new();
    for table in tables {
        let (_, rows) = store
            .query(&format!(
                "SELECT count(*), count(DISTINCT id) FROM {table} WHERE account_id = '{}' AND livemode = {}",
                connection.account_id,
                i32::from(connection.livemode)
            ))
            .expect("a count");
        if rows[0][0] != rows[0][1] {
            found.push(format!(
                "{table}: {:?} rows, {:?} distinct ids",
                rows[0][0], rows[0][1]
            ));
        }
    }
    found
}

/// Live and deleted rows of every table of the catalog, for a connection.
pub fn table_counts(
    store: &dyn sm_warehouse::Store,
    connection: &sm_warehouse::Connection,
) -> std::collections::BTreeMap<String, u64> {
    sm_engine::catalog::RESOURCES
        .iter()
        .map(|r| {
            let (live, deleted) = store.count(connection, r.table).expect("a count");
            (r.table.to_owned(), live + deleted)
        })
        .collect()
}

/// A small reproducible generator (splitmix64): tests choose their random moments with it.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high)`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// What a run fetched again, request by request, against the cursors as the run found them.

/// The cursor scope a top-level list request belongs to (`prices#1`, `customers`), if any.
pub fn list_scope(request: &Logged) -> Option<(&'static sm_engine::catalog::Resource, String)> {
    let path = request.path();
    let params = request.params();
    let resource = sm_engine::catalog::RESOURCES
        .iter()
        .find(|r| r.source == sm_engine::catalog::Source::List && r.path == path)?;
    let pass = resource.passes.iter().position(|pass| {
        pass.iter()
            .all(|(k, v)| params.iter().any(|(pk, pv)| pk == k && pv == v))
    })?;
    let scope = if resource.passes.len() > 1 {
        format!("{}#{pass}", resource.table)
    } else {
        resource.table.to_owned()
    };
    Some((resource, scope))
}

/// The per-customer resource and customer of `/v1/customers/{id}/{segment}`.
pub fn parent_request(request: &Logged) -> Option<(&'static sm_engine::catalog::Resource, String)> {
    let rest = request.path().strip_prefix("/v1/customers/")?;
    let (customer, segment) = rest.split_once('/')?;
    let resource = sm_engine::catalog::RESOURCES
        .iter()
        .find(|r| matches!(r.source, sm_engine::catalog::Source::PerParent { segment: s, .. } if s == segment))?;
    Some((resource, customer.to_owned()))
}

/// Requests of one run that list again what the cursors, as the run found them, mark finished:
/// a page of a done window, a partial window listed from its beginning, a customer's list in a
/// done per-customer window.
pub fn refetches(
    requests: &[&Logged],
    before: &[sm_warehouse::Window],
    customers: &std::collections::HashMap<String, i64>,
) -> Vec<String> {
    let mut found = Vec::new();
    for request in requests.iter().filter(|r| r.method == "GET") {
        if let Some((resource, scope)) = list_scope(request) {
            let gte = request
                .param("created[gte]")
                .and_then(|v| v.parse::<i64>().ok());
            let lt = request
                .param("created[lt]")
                .and_then(|v| v.parse::<i64>().ok());
            let after = request.param("starting_after");
            for window in before.iter().filter(|w| w.scope == scope) {
                let inside = match (gte, lt) {
                    (Some(gte), Some(lt)) => window.start <= gte && lt <= window.end,
                    (None, None) => !resource.created_filter && window.start == window.end,
                    _ => false,
                };
                if !inside {
                    continue;
                }
                if window.state == "done" {
                    found.push(format!(
                        "{} lists the done window {scope} [{}, {})",
                        request.target, window.start, window.end
                    ));
                }
                if window.state == "partial" && after.is_none() {
                    found.push(format!(
                        "{} lists the partial window {scope} [{}, {}) from its beginning (stopped after {:?})",
                        request.target, window.start, window.end, window.after
                    ));
                }
            }
        } else if let Some((resource, customer)) = parent_request(request) {
            let created = customers.get(&customer).copied().unwrap_or(i64::MIN);
            for window in before.iter().filter(|w| {
                w.scope == resource.table
                    && w.state == "done"
                    && w.start <= created
                    && created < w.end
            }) {
                found.push(format!(
                    "{} lists a customer of the done window {} [{}, {})",
                    request.target, window.scope, window.start, window.end
                ));
            }
        }
    }
    found
}

/// `created` of every customer in the mirror, by id.
pub fn customers_created(
    store: &dyn sm_warehouse::Store,
    connection: &sm_warehouse::Connection,
) -> std::collections::HashMap<String, i64> {
    let (_, rows) = store
        .query(&format!(
            "SELECT id, created FROM customers WHERE account_id = '{}' AND livemode = {}",
            connection.account_id,
            i32::from(connection.livemode)
        ))
        .expect("customers");
    rows.into_iter()
        .filter_map(|row| match &row[..] {
            [Some(id), Some(created)] => Some((id.clone(), created.parse().unwrap_or(0))),
            _ => None,
        })
        .collect()
}

/// Objects a run inserted, over every table (`counts` of a `syncs --json` run).
pub fn inserted(run: &Value) -> u64 {
    run["counts"]["tables"]
        .as_object()
        .map(|t| {
            t.values()
                .map(|c| c["inserted"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}
