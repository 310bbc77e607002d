//! The dashboard as a person uses it: the real `stripe-mirror serve` against the emulator, driven
//! in Debian's Chromium by `tests/browser/dashboard.mjs` (playwright-core; axe-core on each
//! page): sign in, connect with bad keys and a good one, watch syncs, set the start date, a
//! revoked key and its repair, rename, a form without its CSRF value, remove. Screenshots go to
//! `target/screenshots/dashboard/`.
//!
//! Needs node, `/usr/bin/chromium` (or `CHROMIUM`) and `npm ci` in tests/browser; without them
//! it says it was skipped, unless `STRIPE_MIRROR_TEST_BROWSER=required` (as CI sets).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sm_emulator::{KeyKind, Mode};
use support::{Emu, KeyInput, Mirror};

fn browser_ready(scripts: &Path) -> Result<(), String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("no node".into());
    }
    if !scripts.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "no node_modules: run npm ci in {}",
            scripts.display()
        ));
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_seed_flow_in_a_real_browser() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if let Err(missing) = browser_ready(&scripts) {
        assert!(
            std::env::var("STRIPE_MIRROR_TEST_BROWSER").as_deref() != Ok("required"),
            "STRIPE_MIRROR_TEST_BROWSER=required, but {missing}"
        );
        eprintln!("skipped: {missing}");
        return;
    }
    let emu = Emu::start();
    let account = emu.account("Browser Co", 3);
    // Every read, but not rak_webhook_write: real time is off, and the page says why.
    let key = emu.full_read_key(&account.id);
    let replacement = emu.full_read_key(&account.id);
    let live_key = emu.new_key(
        &account.id,
        Mode::Live,
        KeyKind::Restricted,
        &sm_emulator::world::all_read_permissions(),
        None,
    );
    let mirror = Mirror::new("dashboard", &emu.base);
    let token = mirror
        .run(&["token", "create", "--name", "browser"], &KeyInput::None)
        .success()
        .stdout
        .trim()
        .to_owned();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = mirror.spawn(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--public-url",
            &base,
            "--interval",
            "300",
        ],
        "serve",
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start: {:?}",
            mirror.output_of("serve")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join("screenshots")
        .join("dashboard");
    let run = Command::new("node")
        .arg(scripts.join("dashboard.mjs"))
        .env("DASHBOARD", &base)
        .env("EMULATOR", &emu.base)
        .env("SCREENSHOTS", &shots)
        .env("TOKEN", &token)
        .env("KEY_NO_WEBHOOK", &key)
        .env("KEY_REPLACEMENT", &replacement)
        .env("KEY_LIVE", &live_key)
        .env("KEY_PUBLISHABLE", &account.publishable_test)
        .env("ACCOUNT_ID", &account.id)
        .output()
        .expect("node runs");
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "the browser flow failed:\n{stdout}\n{}\nserve: {:?}\nscreenshots in {}",
        String::from_utf8_lossy(&run.stderr),
        mirror.output_of("serve"),
        shots.display()
    );
    // Removed in the browser: the connection and every row of it are gone.
    let store = mirror.store();
    assert!(store.accounts().unwrap().is_empty());
    let left: i64 = mirror
        .row_counts()
        .iter()
        // Tokens and notification channels and rules belong to no connection: they stay.
        .filter(|(table, _)| {
            !["api_tokens", "notify_channels", "notify_rules"].contains(&table.as_str())
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(left, 0, "{:?}", mirror.row_counts());
    // No key in the serve log, at any point of the flow.
    let (out, err) = mirror.output_of("serve");
    for secret in [&key, &replacement, &token] {
        assert!(!out.contains(secret.as_str()) && !err.contains(secret.as_str()));
    }
}

/// One raw HTTP/1.1 exchange on a fresh connection: the whole answer as text.
fn exchange(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("serve listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// `demo --serve` ends the demo by serving the dashboard on its mirror, with a token to sign in
/// with: the Accounts page shows the demo's account.
#[test]
fn the_demo_offers_the_dashboard() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut demo = Command::new(support::BIN)
        .args(["demo", "--scale", "10", "--changes", "5", "--file"])
        .arg(dir.join("demo.db"))
        .args(["--serve", &format!("127.0.0.1:{port}")])
        .env("XDG_CONFIG_HOME", &dir)
        .env("NO_COLOR", "1")
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let stderr = demo.stderr.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = send.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let token = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the demo offers the dashboard within 3 minutes");
        if let Some(at) = line.find("smt_") {
            break line[at..at + 68].to_owned();
        }
    };
    let signed_in = exchange(
        port,
        &format!(
            "POST /signin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\ntoken={token}",
            token.len() + 6
        ),
    );
    let cookie = signed_in
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {signed_in}"))
        .to_owned();
    let accounts = exchange(
        port,
        &format!(
            "GET /accounts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
        ),
    );
    let _ = demo.kill();
    let _ = demo.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(accounts.starts_with("HTTP/1.1 200"), "{accounts}");
    assert!(
        accounts.contains("Up to date") && accounts.contains(":test"),
        "{accounts}"
    );
}
