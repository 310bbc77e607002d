//! `stripe-mirror serve` as a real process. Killed (SIGKILL, and once SIGTERM) and restarted on
//! the same port several times while changes and their webhook deliveries keep coming from an
//! emulator process of its own (whose retries continue while serve is down): nothing is lost —
//! every event reaches the mirror and, once deliveries settle, the mirror equals the emulator
//! without any sync beyond the ones serve runs itself at each start (balance transactions, which
//! have no events, are left out of that comparison; one final `sync` then brings them too and
//! the whole mirror is compared again). SIGTERM exits 0 promptly. And `events --follow` prints
//! the latest events, then new ones as they arrive.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sm_warehouse::Connection;
use support::{EmuProcess, KeyInput, Mirror, Prng, compare_export, http};

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a port")
        .local_addr()
        .expect("an address")
        .port()
}

/// `GET path` on `base`, or `None` while nothing listens there.
fn try_get(base: &str, path: &str) -> Option<(u16, String)> {
    try_get_as(base, path, None)
}

/// [`try_get`] with an API token (for `/healthz`'s detail).
fn try_get_as(base: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A child process that is killed (if still running) and reaped when dropped, so that a failed
/// assertion leaves no serve behind.
struct Reaped(Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve` on `port`, with webhooks at its own address and an hour between syncs.
fn start_serve(mirror: &Mirror, port: u16, name: &str) -> Reaped {
    start_serve_with(mirror, port, name, &[])
}

/// [`start_serve`] with more options.
fn start_serve_with(mirror: &Mirror, port: u16, name: &str, more: &[&str]) -> Reaped {
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--listen",
        &listen,
        "--public-url",
        &base,
        "--interval",
        "3600",
    ];
    args.extend(more);
    let child = Reaped(mirror.spawn(&args, name));
    let started = Instant::now();
    while try_get(&base, "/healthz").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not answer within 30 s: {:?}",
            mirror.output_of(name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // No core dumps (serve answers, so it has started): one would hold the keys in clear.
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap_or_default();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .map(|l| l.split_whitespace().skip(4).take(2).collect::<Vec<_>>());
    assert_eq!(core, Some(vec!["0", "0"]), "{limits}");
    child
}

/// A read-only API token of `mirror`, for `/healthz`'s detail.
fn monitor_token(mirror: &Mirror) -> String {
    let run = mirror
        .run(
            &["token", "create", "--name", "monitor", "--read-only"],
            &KeyInput::None,
        )
        .success();
    run.stdout.trim().to_owned()
}

/// Waits until serve's scheduler has synced `label` once (it does at start).
fn wait_for_first_sync(base: &str, label: &str, token: &str) {
    let started = Instant::now();
    loop {
        if let Some((200, body)) = try_get_as(base, "/healthz", Some(token)) {
            let health: Value = serde_json::from_str(&body).expect("JSON");
            if !health["accounts"][label]["last_success"].is_null() {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no sync within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    // SAFETY: sends a signal to our own child process, by its id.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM sent");
}

/// Ids of the events in an emulator export.
fn exported_events(export: &Value) -> Vec<String> {
    export["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["kind"] == "event")
        .filter_map(|o| o["object"]["id"].as_str().map(str::to_owned))
        .collect()
}

fn mirrored_events(mirror: &Mirror, connection: &Connection) -> HashSet<String> {
    let (_, rows) = mirror
        .store()
        .query(&format!(
            "SELECT id FROM events WHERE account_id = '{}' AND livemode = 0",
            connection.account_id
        ))
        .expect("a query");
    rows.into_iter().filter_map(|r| r[0].clone()).collect()
}

/// Waits until deliveries settle — every event made since `before` is in the mirror, nothing is
/// on the wire, and the counts stand still for 3 s — within `limit`: how many new events, and
/// the emulator's delivery counts.
fn settle(
    emu: &EmuProcess,
    mirror: &Mirror,
    connection: &Connection,
    before: &HashSet<String>,
    limit: Duration,
) -> (usize, Value) {
    let started = Instant::now();
    loop {
        let new: Vec<String> = exported_events(&emu.export())
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        let first = emu.control("GET", "/_emulator/webhooks", None)["counts"].clone();
        std::thread::sleep(Duration::from_secs(3));
        let counts = emu.control("GET", "/_emulator/webhooks", None)["counts"].clone();
        let quiet = counts == first
            && counts["pending"].as_u64() == Some(0)
            && counts["attempted"].as_u64()
                == Some(
                    counts["succeeded"].as_u64().unwrap()
                        + counts["failed_attempts"].as_u64().unwrap(),
                );
        let mirrored = mirrored_events(mirror, connection);
        let missing = new.iter().filter(|id| !mirrored.contains(*id)).count();
        if quiet && missing == 0 {
            return (new.len(), counts);
        }
        assert!(
            started.elapsed() < limit,
            "not settled after {limit:?}: {missing} events missing, {counts}"
        );
    }
}

/// Changes through the emulator's control API until `stop`, from a thread of their own.
fn keep_changing(
    base: String,
    account: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut changes = 0;
        let mut seed = 5_000;
        while !stop.load(Ordering::Relaxed) {
            let (status, text) = http(
                &base,
                "POST",
                &format!("/_emulator/accounts/{account}/activity"),
                Some(&json!({"mode": "test", "changes": 1, "seed": seed})),
            );
            assert_eq!(status, 200, "{text}");
            changes += serde_json::from_str::<Value>(&text).unwrap()["changes"]
                .as_u64()
                .unwrap_or(0);
            seed += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        changes
    })
}

#[test]
fn killing_and_restarting_serve_while_deliveries_continue_loses_nothing() {
    let started = Instant::now();
    let emu = EmuProcess::start(20, 61);
    let mirror = Mirror::new("serve-restart", &emu.base);
    mirror.connect(&emu.key("secret_test"), &[]);
    mirror
        .run(&["sync", &emu.account], &KeyInput::None)
        .success();
    let connection = Connection::new(emu.account.clone(), false);
    let label = connection.label();
    // Out of order, twice, late; failed deliveries retried quickly and long enough to outlast
    // a restart.
    emu.control(
        "PUT",
        "/_emulator/webhooks",
        Some(
            &json!({"shuffle": true, "shuffle_window": 100, "duplicate": 0.3, "late": 0.1,
            "late_ms": 500, "retry_base_ms": 200, "max_attempts": 10}),
        ),
    );
    let before: HashSet<String> = exported_events(&emu.export()).into_iter().collect();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let token = monitor_token(&mirror);
    let mut serve = start_serve(&mirror, port, "serve-0");
    wait_for_first_sync(&base, &label, &token);

    let stop = Arc::new(AtomicBool::new(false));
    let activity = keep_changing(emu.base.clone(), emu.account.clone(), stop.clone());
    let mut prng = Prng::new(61);
    let mut stopped_by = Vec::new();
    let mut term_exit = None;
    let kinds = ["KILL", "KILL", "TERM", "KILL", "KILL"];
    for (round, kind) in kinds.iter().enumerate() {
        // SIGTERM comes soon after a start, while serve's start-up sync is likely running.
        let up = if *kind == "TERM" {
            prng.between(0.2, 0.5)
        } else {
            prng.between(1.0, 2.5)
        };
        std::thread::sleep(Duration::from_secs_f64(up));
        if *kind == "TERM" {
            let asked = Instant::now();
            sigterm(&serve);
            let status = loop {
                if let Some(status) = serve.try_wait().expect("waiting for serve") {
                    break status;
                }
                assert!(
                    asked.elapsed() < Duration::from_secs(10),
                    "serve did not stop within 10 s of SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            assert!(
                status.success(),
                "SIGTERM exits 0: {status:?} {:?}",
                mirror.output_of(&format!("serve-{round}"))
            );
            term_exit = Some(asked.elapsed());
        } else {
            serve.kill().expect("SIGKILL");
            serve.wait().expect("the end of serve");
        }
        stopped_by.push(*kind);
        // Down for a moment: deliveries fail and are retried.
        std::thread::sleep(Duration::from_secs_f64(prng.between(0.2, 1.0)));
        serve = start_serve(&mirror, port, &format!("serve-{}", round + 1));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let changes = activity.join().expect("the activity thread");

    // Deliveries settle: every new event is in the mirror, nothing is on the wire, and the
    // counts stand still.
    let settle_started = Instant::now();
    let (events, counts) = settle(&emu, &mirror, &connection, &before, Duration::from_secs(40));
    let runs = mirror.syncs(&emu.account);
    let statuses: Vec<&str> = runs
        .iter()
        .rev()
        .filter_map(|r| r["status"].as_str())
        .collect();
    let export = emu.export();
    let comparison = compare_export(&export, mirror.store().as_ref(), &connection, &[]);
    let (sync_only, rest): (Vec<String>, Vec<String>) = comparison
        .missing
        .iter()
        .chain(&comparison.wrong)
        .cloned()
        .partition(|d| d.starts_with("balance_transactions/"));
    eprintln!(
        "serve restart: {changes} changes, {events} events; stopped by {stopped_by:?}, SIGTERM exit in {term_exit:?}; \
         deliveries {counts}; sync runs {statuses:?} (the first backfill, then one per serve start); \
         {} differences in balance_transactions before a final sync; settled in {:?}; total {:?}",
        sync_only.len(),
        settle_started.elapsed(),
        started.elapsed()
    );
    assert!(
        rest.is_empty(),
        "after {} restarts, by webhooks and serve's own start-up syncs: {} differences:\n{}",
        kinds.len(),
        rest.len(),
        rest.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(counts["given_up"], 0, "no delivery was given up: {counts}");
    assert!(events > 150, "{events} events");
    assert!(
        term_exit.unwrap() < Duration::from_secs(5),
        "SIGTERM stopped serve promptly: {term_exit:?}"
    );
    // Stopping the last serve with SIGTERM, then one final sync: exact in every table.
    sigterm(&serve);
    assert!(serve.wait().expect("the end of serve").success());
    mirror
        .run(&["sync", &emu.account], &KeyInput::None)
        .success();
    let comparison = compare_export(&emu.export(), mirror.store().as_ref(), &connection, &[]);
    assert!(
        comparison.exact(),
        "after a final sync: {}",
        comparison.describe()
    );
}

/// Bursts as a month start brings them (300 changes at once, six times, a few seconds apart),
/// delivered as Stripe does (shuffled, 30% twice, 10% late, a 10 s timeout, retries), while
/// serve is SIGKILLed once in each burst and started again. Deliveries fail only while serve is
/// down (refused, never timed out), none is given up, and once they settle the mirror equals the
/// emulator in every table — balance transactions too, listed by serve soon after the payment
/// events that made them, with no sync but the ones serve runs at each start.
#[test]
fn bursts_while_serve_is_killed_lose_nothing_and_never_time_out() {
    let started = Instant::now();
    let emu = EmuProcess::start(20, 67);
    let mirror = Mirror::new("serve-bursts", &emu.base);
    mirror.connect(&emu.key("secret_test"), &[]);
    mirror
        .run(&["sync", &emu.account], &KeyInput::None)
        .success();
    let connection = Connection::new(emu.account.clone(), false);
    let label = connection.label();
    emu.control(
        "PUT",
        "/_emulator/webhooks",
        Some(
            &json!({"shuffle": true, "shuffle_window": 300, "duplicate": 0.3, "late": 0.1,
            "late_ms": 1500, "retry_base_ms": 200, "max_attempts": 10, "timeout_ms": 10000}),
        ),
    );
    let before: HashSet<String> = exported_events(&emu.export()).into_iter().collect();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let token = monitor_token(&mirror);
    let refresh = ["--balance-refresh-after", "2"];
    let mut serve = start_serve_with(&mirror, port, "serve-0", &refresh);
    wait_for_first_sync(&base, &label, &token);
    let mut prng = Prng::new(67);
    let mut changes = 0;
    for burst in 0..6u64 {
        let (status, text) = http(
            &emu.base,
            "POST",
            &format!("/_emulator/accounts/{}/activity", emu.account),
            Some(&json!({"mode": "test", "changes": 300, "seed": 9_000 + burst})),
        );
        assert_eq!(status, 200, "{text}");
        changes += serde_json::from_str::<Value>(&text).unwrap()["changes"]
            .as_u64()
            .unwrap_or(0);
        // Killed while the burst's deliveries arrive, down a moment, started again.
        std::thread::sleep(Duration::from_secs_f64(prng.between(0.3, 1.5)));
        serve.kill().expect("SIGKILL");
        serve.wait().expect("the end of serve");
        std::thread::sleep(Duration::from_secs_f64(prng.between(0.2, 1.0)));
        serve = start_serve_with(&mirror, port, &format!("serve-{}", burst + 1), &refresh);
        std::thread::sleep(Duration::from_secs_f64(prng.between(2.0, 3.5)));
    }
    let settle_started = Instant::now();
    let (events, counts) = settle(&emu, &mirror, &connection, &before, Duration::from_secs(90));
    // Every table, balance transactions included (their listing follows the last payment
    // events by a couple of seconds).
    let comparison = loop {
        let comparison = compare_export(&emu.export(), mirror.store().as_ref(), &connection, &[]);
        if comparison.exact() || settle_started.elapsed() > Duration::from_secs(120) {
            break comparison;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let statuses: Vec<String> = mirror
        .syncs(&emu.account)
        .iter()
        .rev()
        .filter_map(|r| r["trigger"].as_str().map(str::to_owned))
        .collect();
    eprintln!(
        "bursts with kills: {changes} changes, {events} events; deliveries {counts}; sync runs by {statuses:?}; settled in {:?}; total {:?}",
        settle_started.elapsed(),
        started.elapsed()
    );
    assert_eq!(counts["given_up"], 0, "no delivery was given up: {counts}");
    assert_eq!(counts["timed_out"], 0, "no delivery timed out: {counts}");
    assert!(events > 1_000, "{events} events");
    assert!(comparison.exact(), "{}", comparison.describe());
    sigterm(&serve);
    assert!(serve.wait().expect("the end of serve").success());
}

#[test]
fn events_follow_prints_the_latest_then_new_ones_as_they_arrive() {
    follow_events(
        "events-follow",
        &[(3, 1, "webhooks"), (100, 2, "webhooks"), (300, 4, "a sync")],
    );
}

/// Late deliveries are the rule with webhooks (API.md §7), and they must be printed too.
#[test]
fn events_follow_prints_late_deliveries_too() {
    follow_events("events-follow-late", &[(400, 3, "webhooks, some late")]);
}

/// `events ACCOUNT --follow --json --limit 5` against serve with webhooks: the 5 latest events
/// first, then every new event of each phase `(changes, seed, how they arrive)`, once.
fn follow_events(name: &str, phases: &[(u64, u64, &str)]) {
    let emu = EmuProcess::start(5, 62);
    let mirror = Mirror::new(name, &emu.base);
    mirror.connect(&emu.key("secret_test"), &[]);
    mirror
        .run(&["sync", &emu.account], &KeyInput::None)
        .success();
    let connection = Connection::new(emu.account.clone(), false);
    let port = free_port();
    let token = monitor_token(&mirror);
    let mut serve = Some(start_serve(&mirror, port, "serve"));
    wait_for_first_sync(
        &format!("http://127.0.0.1:{port}"),
        &connection.label(),
        &token,
    );

    let mut follow = Reaped(
        mirror
            .command(&["events", &emu.account, "--follow", "--json", "--limit", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("events --follow starts"),
    );
    let (send, lines) = std::sync::mpsc::channel::<String>();
    let stdout = follow.stdout.take().expect("a pipe");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let next = |limit: Duration| -> Option<Value> {
        lines
            .recv_timeout(limit)
            .ok()
            .map(|line| serde_json::from_str(&line).expect("a JSON line"))
    };

    // First the 5 latest, oldest first.
    let latest: Vec<String> = mirror
        .store()
        .events(&connection, 5)
        .expect("events")
        .into_iter()
        .rev()
        .map(|e| e.id)
        .collect();
    let printed: Vec<String> = (0..5)
        .map(|_| {
            next(Duration::from_secs(10)).expect("a latest event")["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(printed, latest);

    // Then what arrives.
    let before: HashSet<String> = exported_events(&emu.export()).into_iter().collect();
    let mut seen: Vec<Value> = Vec::new();
    for &(changes, seed, by) in phases {
        if by == "webhooks, some late" {
            // A few deliveries held back 9 s: they arrive after hundreds of newer events.
            emu.control(
                "PUT",
                "/_emulator/webhooks",
                Some(&json!({"late": 0.05, "late_ms": 9000})),
            );
        }
        if by == "a sync" {
            // serve stops; changes pile up; one sync brings them all at once.
            let mut stopped = serve.take().expect("serve runs");
            sigterm(&stopped);
            assert!(stopped.wait().expect("the end of serve").success());
        }
        let changed = Instant::now();
        if by == "webhooks, some late" {
            // Spread over 10 s, so that later events are newer by the clock too.
            for k in 0..10 {
                emu.activity(changes / 10, seed * 100 + k);
                std::thread::sleep(Duration::from_secs(1));
            }
        } else {
            emu.activity(changes, seed);
        }
        if by == "a sync" {
            mirror
                .run_with(
                    &["sync", &emu.account],
                    &KeyInput::None,
                    &[("STRIPE_MIRROR_BUDGET_SHARE", "1")],
                )
                .success();
        }
        let made: HashSet<String> = exported_events(&emu.export())
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while made
            .iter()
            .any(|id| !seen.iter().any(|e| e["id"] == id.as_str()))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match next(left) {
                Some(line) => seen.push(line),
                None => {
                    let printed: HashSet<&str> =
                        seen.iter().filter_map(|e| e["id"].as_str()).collect();
                    let mirrored = mirrored_events(&mirror, &connection);
                    let lost: Vec<&String> = made
                        .iter()
                        .filter(|id| !printed.contains(id.as_str()))
                        .collect();
                    panic!(
                        "after {changes} changes by {by}, {} of {} new events never printed within 20 s ({} of them in the mirror): {:?}",
                        lost.len(),
                        made.len(),
                        lost.iter()
                            .filter(|id| mirrored.contains(id.as_str()))
                            .count(),
                        lost.iter().take(5).collect::<Vec<_>>()
                    );
                }
            }
        }
        eprintln!(
            "events --follow: {changes} changes by {by}, {} new events printed in {:?}",
            made.len(),
            changed.elapsed()
        );
    }
    let ids: Vec<&str> = seen.iter().filter_map(|e| e["id"].as_str()).collect();
    let distinct: HashSet<&&str> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "no event printed twice");
    for line in &seen {
        assert_eq!(line["event"]["id"], line["id"], "the whole event: {line}");
        assert!(line["type"].is_string() && line["created"].is_i64());
    }
    drop(follow);
    if let Some(mut serve) = serve {
        sigterm(&serve);
        assert!(serve.wait().expect("the end of serve").success());
    }
}
