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
        .filter(|(table, _)| table != "api_tokens")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(left, 0, "{:?}", mirror.row_counts());
    // No key in the serve log, at any point of the flow.
    let (out, err) = mirror.output_of("serve");
    for secret in [&key, &replacement, &token] {
        assert!(!out.contains(secret.as_str()) && !err.contains(secret.as_str()));
    }
}
