//! The agent tools as an agent meets them: `stripe-mirror mcp` (the real binary, stdio) driven by
//! the official Python MCP client (`tests/mcp/client.py`) over a mirror of an emulated account.
//! Needs the `mcp` Python package (`pip install mcp==1.27.0`); without it the test says it was
//! skipped, unless `STRIPE_MIRROR_TEST_MCP=required` (as CI sets).

mod support;

use std::process::Command;

use support::{Emu, KeyInput, Mirror};

#[test]
fn the_python_mcp_client_calls_every_read_tool() {
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
        return;
    }
    let emu = Emu::start();
    let account = emu.account("Agent Co", 5);
    let mirror = Mirror::new("mcp", &emu.base);
    mirror.connect(&account.restricted_test, &[]);
    mirror.run(&["sync"], &KeyInput::None).success();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let args = serde_json::json!(["--database", mirror.db.to_str().unwrap(), "mcp"]);
    let run = Command::new("python3")
        .arg(script)
        .env("BIN", support::BIN)
        .env("ARGS", args.to_string())
        .env("ACCOUNT", format!("{}:test", account.id))
        .env("XDG_CONFIG_HOME", &mirror.dir)
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
