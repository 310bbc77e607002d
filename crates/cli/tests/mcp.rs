//! The agent tools as an agent meets them: `stripe-mirror mcp` (the real binary, stdio) driven by
//! the official Python MCP client over a mirror of an emulated account: the read tools
//! (`tests/mcp/client.py`, a key that may only read: no write tool is offered) and the writes
//! through Stripe (`tests/mcp/writes.py`, a key that may write).
//! Needs the `mcp` Python package (`pip install mcp==1.27.0`); without it the test says it was
//! skipped, unless `STRIPE_MIRROR_TEST_MCP=required` (as CI sets).

mod support;

use std::process::Command;

use support::{Emu, KeyInput, Mirror};

/// Whether the Python client is here; without it a test is skipped, unless it is required.
fn python_client() -> bool {
    let has_client = Command::new("python3")
        .args(["-c", "import mcp.client.stdio"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_client {
        assert!(
            std::env::var("STRIPE_MIRROR_TEST_MCP").as_deref() != Ok("required"),
            "STRIPE_MIRROR_TEST_MCP=required, but python3 cannot import mcp (pip install mcp==1.27.0)"
        );
        eprintln!("skipped: the Python mcp package is not installed (pip install mcp==1.27.0)");
    }
    has_client
}

/// Runs one of the client scripts; fails with what it printed.
fn run_script(name: &str, mirror: &Mirror, env: &[(&str, String)]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name);
    let args = serde_json::json!(["--database", mirror.db.to_str().unwrap(), "mcp"]);
    let run = Command::new("python3")
        .arg(script)
        .env("BIN", support::BIN)
        .env("ARGS", args.to_string())
        .env("XDG_CONFIG_HOME", &mirror.dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "the MCP client's checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn the_python_mcp_client_calls_every_read_tool() {
    if !python_client() {
        return;
    }
    let emu = Emu::start();
    let account = emu.account("Agent Co", 5);
    let mirror = Mirror::new("mcp", &emu.base);
    mirror.connect(&account.restricted_test, &[]);
    mirror.run(&["sync"], &KeyInput::None).success();
    run_script(
        "client.py",
        &mirror,
        &[("ACCOUNT", format!("{}:test", account.id))],
    );
}

/// The writes every Stripe toolkit has, through a key that may make them: each answer in the
/// mirror at once; Stripe's refusals; the key edited to lose a permission; `--read-only`.
#[test]
fn the_python_mcp_client_writes_through_stripe() {
    if !python_client() {
        return;
    }
    let emu = Emu::start();
    let account = emu.account("Shop Co", 5);
    let reads = sm_emulator::world::all_read_permissions();
    let writes: Vec<String> = [
        "rak_customer_write",
        "rak_product_write",
        "rak_plan_write",
        "rak_payment_links_write",
        "rak_invoice_write",
        "rak_charge_write",
        "rak_subscription_write",
        "rak_coupon_write",
        "rak_checkout_session_write",
    ]
    .map(str::to_owned)
    .to_vec();
    let all: Vec<String> = reads.iter().chain(&writes).cloned().collect();
    let key = emu.new_key(
        &account.id,
        sm_emulator::Mode::Test,
        sm_emulator::KeyKind::Restricted,
        &all,
        None,
    );
    let mirror = Mirror::new("mcp-writes", &emu.base);
    mirror.connect(&key, &[]);
    mirror.run(&["sync"], &KeyInput::None).success();
    run_script(
        "writes.py",
        &mirror,
        &[
            ("WRITE_KEY", key.clone()),
            ("EMULATOR", emu.base.clone()),
            ("READ_PERMISSIONS", serde_json::json!(reads).to_string()),
            ("WRITE_PERMISSIONS", serde_json::json!(writes).to_string()),
        ],
    );
}
