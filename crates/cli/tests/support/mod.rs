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
        let mut command = Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text == "STRIPE_API_KEY" || text.starts_with("STRIPE_MIRROR_") {
                command.env_remove(&name);
            }
        }
        command
            .env("STRIPE_MIRROR_API_BASE", &self.api_base)
            .env("STRIPE_MIRROR_MAX_RETRIES", "1")
            .env("NO_COLOR", "1")
            .arg("--database")
            .arg(&self.db)
            .args(args)
            .current_dir(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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
            .filter(|t| t != "stripe_mirror_meta" && t != "sqlite_sequence")
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
