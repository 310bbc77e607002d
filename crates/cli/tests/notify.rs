//! Notifications end to end, with the real binary: an emulator process changing an account,
//! `serve` receiving its webhooks, and receivers on 127.0.0.1 standing in for Slack, Discord,
//! Teams, a Standard Webhooks consumer and a channel that is gone — answering 200, 429 with
//! `Retry-After`, 500 and 410. Every message is counted by event id: each chosen event reaches
//! each channel whose rule chose it, once; nothing from the backfill; nothing to the channel
//! after its 410; `serve` SIGKILLed while a channel's backlog drains and restarted loses
//! nothing. The webhook signatures are checked by the `standardwebhooks` Python package
//! (installed by `.ci/run`; without it that part says it was skipped unless
//! `STRIPE_MIRROR_TEST_SDK=required`).

mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{EmuProcess, KeyInput, Mirror};

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    headers: HashMap<String, String>,
    body: String,
}

/// An HTTP receiver: records each request and answers with the next scripted answer (status,
/// extra headers, body), then 200 once the script is used up.
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(script: Vec<(u16, &'static str, &'static str)>, always: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let record = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (record, script) = (record.clone(), script.clone());
                std::thread::spawn(move || {
                    let _ = answer(stream, &record, &script, always);
                });
            }
        });
        Receiver { base, got }
    }

    fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn answer(
    stream: std::net::TcpStream,
    record: &Mutex<Vec<Received>>,
    script: &Mutex<VecDeque<(u16, &'static str, &'static str)>>,
    always: u16,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (status, extra, text) = script.lock().unwrap().pop_front().unwrap_or((
            always,
            "",
            if always == 200 { "ok" } else { "gone" },
        ));
        record.lock().unwrap().push(Received {
            at: Instant::now(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let mut writer = stream.try_clone()?;
        write!(
            writer,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}Connection: keep-alive\r\n\r\n{text}",
            text.len()
        )?;
        writer.flush()?;
    }
}

/// The event id a message names, per channel format.
fn event_id_of(kind: &str, body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let text = match kind {
        "slack" => value["blocks"].as_array()?.last()?["elements"][0]["text"]
            .as_str()?
            .to_owned(),
        "discord" => value["embeds"][0]["footer"]["text"].as_str()?.to_owned(),
        "teams" => value["attachments"][0]["content"]["body"]
            .as_array()?
            .last()?["text"]
            .as_str()?
            .to_owned(),
        _ => value["event_id"].as_str()?.to_owned(),
    };
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| w.starts_with("evt_"))
        .map(str::to_owned)
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_serve(mirror: &Mirror, port: u16, name: &str) -> Reaped {
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let child = Reaped(mirror.spawn(
        &[
            "serve",
            "--listen",
            &listen,
            "--public-url",
            &base,
            "--interval",
            "3600",
            "--notify-rollup-after",
            "10000",
        ],
        name,
    ));
    let started = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn json_of(mirror: &Mirror, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    mirror.run(&all, &KeyInput::None).success().json()
}

/// Event ids of the mirror with their types.
fn mirrored(mirror: &Mirror, account: &str) -> HashMap<String, String> {
    let (_, rows) = mirror
        .store()
        .query(&format!(
            "SELECT id, type FROM events WHERE account_id = '{account}'"
        ))
        .expect("a query");
    rows.into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
}

fn chosen(types: &[&str], event_type: &str) -> bool {
    types.iter().any(|t| match t.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => *t == event_type,
    })
}

#[test]
fn chosen_events_reach_each_channel_once_through_limits_failures_and_a_kill() {
    let emu = EmuProcess::start(20, 73);
    let mirror = Mirror::new("notify", &emu.base);
    mirror.connect(&emu.key("secret_test"), &[]);
    mirror
        .run(&["sync", &emu.account], &KeyInput::None)
        .success();
    let before: HashSet<String> = mirrored(&mirror, &emu.account).into_keys().collect();

    let slack = Receiver::start(vec![(429, "Retry-After: 1\r\n", "rate_limited")], 200);
    let discord = Receiver::start(vec![(500, "", "oops")], 200);
    let teams = Receiver::start(Vec::new(), 200);
    let hook = Receiver::start(Vec::new(), 200);
    let gone = Receiver::start(Vec::new(), 410);
    let add = |name: &str, kind: &str, url: String| {
        json_of(
            &mirror,
            &[
                "notify", "channel", "add", name, "--kind", kind, "--url", &url,
            ],
        )
    };
    add(
        "ops",
        "slack",
        format!("{}/services/T0/B0/s3cret", slack.base),
    );
    add(
        "team",
        "discord",
        format!("{}/api/webhooks/1/t0ken", discord.base),
    );
    add("finance", "teams", format!("{}/workflows/abc", teams.base));
    let added = add("consumer", "webhook", format!("{}/in", hook.base));
    let secret = added["signing_secret"]
        .as_str()
        .expect("a secret, shown once")
        .to_owned();
    add(
        "archived",
        "slack",
        format!("{}/services/T1/B1/x", gone.base),
    );
    let phone = Receiver::start(Vec::new(), 200);
    json_of(
        &mirror,
        &[
            "notify",
            "channel",
            "add",
            "phone",
            "--kind",
            "ntfy",
            "--url",
            &format!("{}/acme-payments", phone.base),
            "--token",
            "tk_n7fy",
        ],
    );
    let listed = mirror
        .run(&["notify", "channel", "list", "--json"], &KeyInput::None)
        .success();
    assert!(
        !listed.stdout.contains("s3cret") && !listed.stdout.contains("t0ken"),
        "URLs are shown masked: {}",
        listed.stdout
    );

    // A test message: taken by the consumer, refused by the archived channel (exit 7: an
    // like upstream refusal), which is then marked failing with the receiver's words.
    json_of(&mirror, &["notify", "channel", "test", "consumer"]);
    let refused = mirror.run(&["notify", "channel", "test", "archived"], &KeyInput::None);
    assert_eq!(refused.code, 7, "{}", refused.describe());
    assert!(
        refused.stderr.contains("HTTP 410"),
        "{}",
        refused.describe()
    );
    let channels = json_of(&mirror, &["notify", "channel", "list"]);
    let archived = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "archived")
        .unwrap();
    assert_eq!(archived["status"], "failing");
    assert_eq!(gone.requests().len(), 1);

    let slack_types = [
        "charge.succeeded",
        "charge.failed",
        "charge.refunded",
        "charge.dispute.created",
        "customer.subscription.created",
        "customer.subscription.deleted",
        "payout.failed",
        "radar.early_fraud_warning.created",
        "customer.created",
    ];
    let rule = |name: &str, channel: &str, events: &str, test: bool| {
        let mut args = vec![
            "notify",
            "rule",
            "add",
            name,
            "--channel",
            channel,
            "--events",
            events,
        ];
        if test {
            args.push("--test");
        }
        json_of(&mirror, &args)
    };
    rule("payments", "ops", "default,customer.created", true);
    rule("live-only", "ops", "*", false);
    rule("charges", "team", "charge.*", true);
    rule("subscriptions", "finance", "customer.subscription.*", true);
    rule("everything", "consumer", "*", true);
    rule("archive", "archived", "*", true);
    rule("phone-customers", "phone", "customer.created", true);
    let rules = mirror
        .run(&["notify", "rule", "list"], &KeyInput::None)
        .success();
    assert!(rules.stdout.contains("live only"), "{}", rules.stdout);

    let token = mirror
        .run(
            &["token", "create", "--name", "monitor", "--read-only"],
            &KeyInput::None,
        )
        .success()
        .stdout
        .trim()
        .to_owned();
    let port = free_port();
    let mut serve = start_serve(&mirror, port, "serve-0");
    // Changes while serve runs: a customer whose name tries to ping a whole Slack channel, then
    // bursts of activity.
    let (status, _) = emu.api(
        "POST",
        "/v1/customers",
        "name=%3C!channel%3E%20Eve&email=eve%40example.com",
        &emu.key("secret_test"),
    );
    assert_eq!(status, 200);
    for seed in 0..3 {
        emu.activity(15, 900 + seed);
        std::thread::sleep(Duration::from_millis(300));
    }
    // Killed while Slack's backlog drains at one message a second, then started again.
    std::thread::sleep(Duration::from_secs(4));
    assert!(slack.requests().len() > 1, "Slack has begun to receive");
    serve.0.kill().expect("SIGKILL");
    serve.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    serve = start_serve(&mirror, port, "serve-1");

    // Everything settles: webhooks in the mirror, and nothing left to send.
    let started = Instant::now();
    loop {
        let pending = json_of(&mirror, &["notify", "log", "--state", "pending,digest"]);
        let queued = mirror
            .store()
            .query("SELECT count(*) FROM notify_queue")
            .unwrap()
            .1[0][0]
            .clone();
        let webhooks = emu.control("GET", "/_emulator/webhooks", None)["counts"].clone();
        if pending.as_array().unwrap().is_empty()
            && queued.as_deref() == Some("0")
            && webhooks["pending"] == 0
            && started.elapsed() > Duration::from_secs(3)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "not settled in 180 s: {} pending, queue {queued:?}, webhooks {webhooks}",
            pending.as_array().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // /metrics counts what this serve (started after the kill) sent.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut metrics = String::new();
    stream.read_to_string(&mut metrics).unwrap();
    let sent: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stripe_mirror_notifications_total{outcome=\"sent\"} "))
        .expect("the notifications counter")
        .parse()
        .unwrap();
    assert!(sent > 0.0, "{metrics}");
    drop(serve);

    let events = mirrored(&mirror, &emu.account);
    let new: HashMap<&String, &String> = events
        .iter()
        .filter(|(id, _)| !before.contains(*id))
        .collect();
    assert!(new.len() > 20, "activity made events: {}", new.len());
    let mut duplicates = 0;
    // The scripted refusals (Slack's 429, Discord's 500) make one request each beyond the
    // events.
    for (kind, receiver, types, refusals) in [
        ("slack", &slack, &slack_types[..], 1),
        ("discord", &discord, &["charge.*"][..], 1),
        ("teams", &teams, &["customer.subscription.*"][..], 0),
        ("webhook", &hook, &["*"][..], 0),
    ] {
        let expected: HashSet<&str> = new
            .iter()
            .filter(|(_, t)| chosen(types, t))
            .map(|(id, _)| id.as_str())
            .collect();
        let mut counts: HashMap<String, u32> = HashMap::new();
        for request in receiver.requests() {
            if request
                .headers
                .get("webhook-id")
                .is_some_and(|id| id.starts_with("msg_test"))
            {
                continue;
            }
            let id = event_id_of(kind, &request.body)
                .unwrap_or_else(|| panic!("{kind}: no event id in {}", request.body));
            *counts.entry(id).or_default() += 1;
        }
        let received: HashSet<&str> = counts.keys().map(String::as_str).collect();
        assert!(
            received.iter().all(|id| !before.contains(*id)),
            "{kind}: nothing from the backfill"
        );
        assert_eq!(
            received, expected,
            "{kind}: every chosen event, and nothing else"
        );
        let repeated = counts.values().map(|n| n - 1).sum::<u32>() - refusals;
        // A message in flight when serve was killed (sent, its answer not yet recorded) is
        // sent again after the restart: for a person's channel (one message at a time, each
        // recorded) at most one; a webhook's outcomes are recorded every 250 ms, and a repeat
        // carries the same webhook-id (checked below), which its consumer uses to drop it.
        if kind != "webhook" {
            assert!(repeated <= 1, "{kind}: {repeated} events sent twice");
        }
        duplicates += repeated;
        eprintln!(
            "{kind}: {} events, {} requests",
            expected.len(),
            receiver.requests().len()
        );
    }
    eprintln!("sent twice after the kill: {duplicates}");
    check_teams_cards(&teams);
    let mut ids_by_event: HashMap<String, HashSet<String>> = HashMap::new();
    for request in hook.requests() {
        let id = request.headers["webhook-id"].clone();
        if let Some(event) = event_id_of("webhook", &request.body) {
            ids_by_event.entry(event).or_default().insert(id);
        }
    }
    assert!(
        ids_by_event.values().all(|ids| ids.len() == 1),
        "a repeat carries the same webhook-id"
    );

    // 429 with Retry-After: the same message again, at least a second later.
    let slack_requests = slack.requests();
    assert!(
        slack_requests[1].at.duration_since(slack_requests[0].at) >= Duration::from_millis(950)
    );
    assert_eq!(
        event_id_of("slack", &slack_requests[0].body),
        event_id_of("slack", &slack_requests[1].body),
        "the same message again"
    );
    let discord_requests = discord.requests();
    assert_eq!(
        event_id_of("discord", &discord_requests[0].body),
        event_id_of("discord", &discord_requests[1].body),
        "retried after the 500"
    );
    // Slack's pace: about one a second (Retry-After aside).
    let span = slack_requests
        .last()
        .unwrap()
        .at
        .duration_since(slack_requests[1].at);
    assert!(
        span.as_secs_f64() >= (slack_requests.len() - 3) as f64 * 0.9,
        "{} messages in {span:?}",
        slack_requests.len()
    );
    // Customer text pings nobody.
    let eve = slack_requests
        .iter()
        .find(|r| r.body.contains("Eve"))
        .expect("the customer.created message");
    assert!(
        !eve.body.contains("<!channel>") && eve.body.contains("&lt;!channel&gt; Eve"),
        "{}",
        eve.body
    );
    assert!(
        discord_requests
            .iter()
            .all(|r| r.body.contains(r#""allowed_mentions":{"parse":[]}"#))
    );
    // ntfy: a push per new customer, its title and link in headers, the token as bearer.
    let pushes = phone.requests();
    let new_customers = new
        .values()
        .filter(|t| t.as_str() == "customer.created")
        .count();
    assert_eq!(pushes.len(), new_customers);
    let eve = pushes
        .iter()
        .find(|p| p.body.contains("Eve"))
        .expect("Eve's push");
    assert_eq!(eve.headers["title"], "[test] New customer");
    assert_eq!(eve.headers["authorization"], "Bearer tk_n7fy");
    assert!(
        eve.headers["click"].contains("/data/customers/cus_"),
        "{:?}",
        eve.headers
    );
    assert!(
        eve.body.contains("<!channel> Eve (eve@example.com)"),
        "{}",
        eve.body
    );
    // The archived channel got nothing after its 410; its messages are failed, with the reason.
    assert_eq!(gone.requests().len(), 1);
    let failed = json_of(
        &mirror,
        &[
            "notify",
            "log",
            "--channel",
            "archived",
            "--state",
            "failed",
            "--limit",
            "1000",
        ],
    );
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), new.len(), "one failed delivery per event");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("410"),
        "{}",
        failed[0]
    );
    let sent = json_of(
        &mirror,
        &["notify", "log", "--channel", "consumer", "--limit", "1000"],
    );
    assert!(
        sent.as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "sent")
    );

    // Signatures: checked by the Standard Webhooks reference package, not our code.
    let checker = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output();
    if !checker.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("STRIPE_MIRROR_TEST_SDK").as_deref() != Ok("required"),
            "the standardwebhooks package is required: python3 -m pip install standardwebhooks"
        );
        eprintln!("skipped the signature check: python3 -m pip install standardwebhooks");
        return;
    }
    let messages: Vec<Value> = hook
        .requests()
        .iter()
        .map(|r| json!({"headers": r.headers, "body": r.body}))
        .collect();
    let file = mirror.file(&serde_json::to_string(&messages).unwrap());
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, path = sys.argv[1], sys.argv[2]
hook = Webhook(secret)
messages = json.load(open(path))
for m in messages:
    hook.verify(m["body"], m["headers"])
tampered = dict(messages[0]["headers"])
try:
    hook.verify(messages[0]["body"] + " ", tampered)
    sys.exit("a changed body verified")
except Exception:
    pass
print(len(messages))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, &secret, file.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "signatures: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        messages.len().to_string()
    );
}

/// Email through a real SMTP server (aiosmtpd, started here) that requires STARTTLS before a
/// password: `notify channel test` and `serve` deliver over TLS, signed by a CA given with
/// `--ca-file`; a recipient refused with 550 marks its channel failing with the server's words;
/// `smtps://` (TLS from the first byte) goes through too. Beside it, a rule in its quiet hours
/// holds its messages until they end.
#[test]
fn email_goes_over_tls_refusals_fail_the_channel_and_quiet_hours_hold_messages() {
    let present = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success())
        && sm_test_support::certificates::openssl_present();
    if !present {
        assert!(
            std::env::var("STRIPE_MIRROR_TEST_SDK").as_deref() != Ok("required"),
            "aiosmtpd and openssl are required: python3 -m pip install aiosmtpd"
        );
        eprintln!("skipped: python3 -m pip install aiosmtpd (and openssl) to run it");
        return;
    }
    let emu = EmuProcess::start(5, 74);
    let mirror = Mirror::new("notify-email", &emu.base);
    mirror.connect(&emu.key("secret_test"), &[]);
    mirror
        .run(&["sync", &emu.account], &KeyInput::None)
        .success();
    let dir = mirror.file("").parent().unwrap().to_path_buf();
    sm_test_support::certificates::make_ca(&dir, "ca");
    sm_test_support::certificates::make_server_cert(&dir, "ca");
    let out = dir.join("mail.jsonl");
    let (server, port) = smtp_server(&dir, &out, "starttls");
    let ca = dir.join("ca.crt");
    let url = format!("smtp://alerts%40acme.test:pa55%20word@localhost:{port}");
    let add = |name: &str, to: &str| {
        json_of(
            &mirror,
            &[
                "notify",
                "channel",
                "add",
                name,
                "--kind",
                "email",
                "--url",
                &url,
                "--to",
                to,
                "--from",
                "alerts@acme.test",
                "--ca-file",
                ca.to_str().unwrap(),
            ],
        )
    };
    let added = add("finance", "finance@acme.test,owner@acme.test");
    assert_eq!(
        added["channel"]["target"],
        format!("smtp://alerts@acme.test@localhost:{port} → finance@acme.test, owner@acme.test")
    );
    add("nobody", "nobody@acme.test");
    json_of(&mirror, &["notify", "channel", "test", "finance"]);
    let refused = mirror.run(&["notify", "channel", "test", "nobody"], &KeyInput::None);
    assert_eq!(refused.code, 7, "{}", refused.describe());
    assert!(refused.stderr.contains("550"), "{}", refused.describe());
    let listed = mirror
        .run(&["notify", "channel", "list"], &KeyInput::None)
        .success();
    assert!(listed.stdout.contains("failing: SMTP"), "{}", listed.stdout);
    assert!(!listed.stdout.contains("pa55"), "{}", listed.stdout);

    json_of(
        &mirror,
        &[
            "notify",
            "rule",
            "add",
            "customers",
            "--channel",
            "finance",
            "--events",
            "customer.created",
            "--test",
        ],
    );
    // Quiet hours from an hour ago to an hour from now (UTC): what they choose waits, in the
    // log, until they end.
    let quiet = Receiver::start(Vec::new(), 200);
    json_of(
        &mirror,
        &[
            "notify",
            "channel",
            "add",
            "night",
            "--kind",
            "slack",
            "--url",
            &format!("{}/services/T2/B2/q", quiet.base),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let minute = now.rem_euclid(86_400) / 60;
    let clock = |m: i64| format!("{:02}:{:02}", m.rem_euclid(1440) / 60, m.rem_euclid(60));
    let quiet_hours = format!("{}-{}", clock(minute - 60), clock(minute + 60));
    let quiet_until = now - now.rem_euclid(60) + 3600;
    json_of(
        &mirror,
        &[
            "notify",
            "rule",
            "add",
            "overnight",
            "--channel",
            "night",
            "--events",
            "customer.created",
            "--test",
            "--quiet-hours",
            &quiet_hours,
        ],
    );
    let serve_port = free_port();
    let serve = start_serve(&mirror, serve_port, "serve-email");
    for name in ["Ada", "Grace"] {
        let (status, _) = emu.api(
            "POST",
            "/v1/customers",
            &format!("name={name}&email={}%40example.com", name.to_lowercase()),
            &emu.key("secret_test"),
        );
        assert_eq!(status, 200);
    }
    let started = Instant::now();
    // Two mails (one per new customer) beside the test; then a moment in which no third may
    // come.
    let count = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
    };
    while count() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} mails",
            count()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    drop(serve);
    let mails: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        mails.len(),
        3,
        "the test and one per new customer: {mails:?}"
    );
    assert!(mails.iter().all(|m| m["tls"] == true), "over TLS");
    assert!(quiet.requests().is_empty(), "nothing in quiet hours");
    let held = json_of(&mirror, &["notify", "log", "--channel", "night"]);
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(
        held.iter()
            .all(|d| d["state"] == "pending" && d["due_at"] == quiet_until),
        "held until the quiet hours end ({quiet_until}): {held:?}"
    );
    assert_eq!(
        mails[0]["to"],
        json!(["finance@acme.test", "owner@acme.test"])
    );
    assert!(
        mails[0]["data"]
            .as_str()
            .unwrap()
            .contains("Subject: Test message from stripe-mirror")
    );
    let customers: Vec<&str> = mails[1..]
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert!(
        customers
            .iter()
            .any(|d| d.contains("Ada (ada@example.com)")),
        "{customers:?}"
    );
    assert!(
        customers
            .iter()
            .all(|d| d.contains("Subject: [test] New customer") && d.contains("Message-ID: <msg_"))
    );
    drop(server);

    // Implicit TLS (`smtps://`, as on port 465): the test message goes through, encrypted.
    let implicit_out = dir.join("mail-implicit.jsonl");
    let (_implicit, implicit_port) = smtp_server(&dir, &implicit_out, "implicit");
    json_of(
        &mirror,
        &[
            "notify",
            "channel",
            "add",
            "implicit",
            "--kind",
            "email",
            "--url",
            &format!("smtps://alerts%40acme.test:pa55%20word@localhost:{implicit_port}"),
            "--to",
            "finance@acme.test",
            "--from",
            "alerts@acme.test",
            "--ca-file",
            ca.to_str().unwrap(),
        ],
    );
    json_of(&mirror, &["notify", "channel", "test", "implicit"]);
    let mails: Vec<Value> = std::fs::read_to_string(&implicit_out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["tls"], true);
}

/// Every card sent to Teams, checked by Microsoft's Adaptive Cards library
/// (`tests/notify/teams_card.mjs`; `npm ci --prefix crates/cli/tests/notify` installs it).
fn check_teams_cards(teams: &Receiver) {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/notify");
    let present = std::path::Path::new(folder)
        .join("node_modules/adaptivecards")
        .exists();
    if !present {
        assert!(
            std::env::var("STRIPE_MIRROR_TEST_SDK").as_deref() != Ok("required"),
            "the Adaptive Cards library is required: npm ci --prefix crates/cli/tests/notify"
        );
        eprintln!("Teams cards not checked: npm ci --prefix crates/cli/tests/notify to check them");
        return;
    }
    let cards: String = teams
        .requests()
        .iter()
        .map(|r| format!("{}\n", r.body))
        .collect();
    let mut node = std::process::Command::new("node")
        .arg(format!("{folder}/teams_card.mjs"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    node.stdin
        .take()
        .unwrap()
        .write_all(cards.as_bytes())
        .unwrap();
    let output = node.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "Teams cards: {said}");
    eprintln!("{}", said.trim());
}

/// The test's SMTP server (`tests/notify/smtp_server.py`) in `mode` (`starttls` or `implicit`),
/// writing what it accepts to `out`, once it listens; and its port.
fn smtp_server(dir: &std::path::Path, out: &std::path::Path, mode: &str) -> (Reaped, u16) {
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/notify/smtp_server.py");
    let mut server = Reaped(
        std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.join("server.crt"))
            .arg(dir.join("server.key"))
            .arg(out)
            .args(["alerts@acme.test", "pa55 word", "nobody@acme.test", mode])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    let mut ready = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    (server, port)
}
