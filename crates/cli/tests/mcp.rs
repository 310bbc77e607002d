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

/// A restricted test key that may read everything and make every write the tools offer; with
/// the read and the write permissions it was given.
fn write_key(emu: &Emu, account: &str) -> (String, Vec<String>, Vec<String>) {
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
        account,
        sm_emulator::Mode::Test,
        sm_emulator::KeyKind::Restricted,
        &all,
        None,
    );
    (key, reads, writes)
}

/// The MCP Inspector's command line (1.0.3, npm: `npm ci --prefix crates/cli/tests/mcp`), or
/// `None` when it is not installed (the test is then skipped, unless it is required).
fn inspector() -> Option<std::path::PathBuf> {
    let build = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp/node_modules/@modelcontextprotocol/inspector-cli/build");
    if build.join("index.js").exists() {
        return Some(build);
    }
    assert!(
        std::env::var("STRIPE_MIRROR_TEST_MCP").as_deref() != Ok("required"),
        "STRIPE_MIRROR_TEST_MCP=required, but the MCP Inspector is not installed (npm ci --prefix crates/cli/tests/mcp)"
    );
    eprintln!("skipped: the MCP Inspector is not installed (npm ci --prefix crates/cli/tests/mcp)");
    None
}

/// Runs the Inspector's CLI; its standard output, or what failed. It reads its own
/// package.json relative to the working directory, hence the directory it runs in.
fn inspect<A: AsRef<std::ffi::OsStr>>(
    build: &std::path::Path,
    args: &[A],
) -> Result<String, String> {
    let run = Command::new("node")
        .arg("index.js")
        .args(args)
        .current_dir(build)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    if run.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&run.stderr)))
    }
}

fn tool_names(listed: &str) -> Vec<String> {
    let listed: serde_json::Value = serde_json::from_str(listed).expect("tools/list is JSON");
    listed["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
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
    let (key, reads, writes) = write_key(&emu, &account.id);
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

/// `/mcp` on `serve` (streamable HTTP) with the Python client, and the MCP Inspector's CLI (a
/// second client no one here wrote) over stdio and over HTTP: the tools a token may see, a write
/// then a read, a wrong token.
#[test]
fn agent_tools_over_http_and_with_the_inspector() {
    if !python_client() {
        return;
    }
    let Some(inspector) = inspector() else {
        return;
    };
    let emu = Emu::start();
    let account = emu.account("Http Co", 5);
    let (key, _, _) = write_key(&emu, &account.id);
    let mirror = Mirror::new("mcp-http", &emu.base);
    mirror.connect(&key, &[]);
    mirror.run(&["sync"], &KeyInput::None).success();
    let token = |extra: &[&str]| {
        let mut args = vec!["token", "create", "--name"];
        args.extend_from_slice(extra);
        mirror
            .run(&args, &KeyInput::None)
            .success()
            .stdout
            .trim()
            .to_owned()
    };
    let full = token(&["agent"]);
    let read_only = token(&["reader", "--read-only"]);

    // Over stdio: every tool listed, one called.
    let db = mirror.db.to_str().unwrap().to_owned();
    let stdio = |more: &[&str]| {
        let mut args = vec![support::BIN, "--database", &db, "mcp"];
        args.extend_from_slice(more);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let listed = inspect(&inspector, &stdio(&["--method", "tools/list"]))
        .expect("the Inspector lists the tools over stdio");
    let names = tool_names(&listed);
    assert_eq!(names.len(), 21, "nine reads and twelve writes: {names:?}");
    let called = inspect(
        &inspector,
        &stdio(&["--method", "tools/call", "--tool-name", "list_accounts"]),
    )
    .expect("the Inspector calls list_accounts over stdio");
    assert!(called.contains("Http Co"), "{called}");

    // Over HTTP.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = mirror.spawn(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "300",
        ],
        "serve",
    );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 30, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{port}/mcp");
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    let over_http = |token: &str, more: &[&str]| {
        let header = bearer(token);
        let mut args = vec![
            url.as_str(),
            "--transport",
            "http",
            "--header",
            header.as_str(),
        ];
        args.extend_from_slice(more);
        inspect(&inspector, &args)
    };
    let listed = over_http(&full, &["--method", "tools/list"]).expect("tools/list over HTTP");
    assert_eq!(tool_names(&listed).len(), 21);
    let listed = over_http(&read_only, &["--method", "tools/list"]).expect("tools/list, read-only");
    assert_eq!(
        tool_names(&listed).len(),
        9,
        "a read-only token sees the reads: {listed}"
    );
    let made = over_http(
        &full,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "create_customer",
            "--tool-arg",
            "email=inspector@example.com",
        ],
    )
    .expect("create_customer over HTTP");
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let made: serde_json::Value =
        serde_json::from_str(made["content"][0]["text"].as_str().unwrap()).unwrap();
    let id = made["object"]["id"].as_str().unwrap().to_owned();
    let seen = over_http(
        &full,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get_object",
            "--tool-arg",
            &format!("id={id}"),
        ],
    )
    .expect("get_object over HTTP");
    assert!(
        seen.contains("inspector@example.com"),
        "the read sees the write: {seen}"
    );
    let refused = over_http("smt_wrong", &["--method", "tools/list"]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("unauthorized") && e.contains("not valid")),
        "a wrong token is refused: {refused:?}"
    );

    run_script(
        "over_http.py",
        &mirror,
        &[
            ("MCP_URL", url.clone()),
            ("TOKEN", full.clone()),
            ("READ_TOKEN", read_only.clone()),
        ],
    );
    let _ = serve.kill();
    let _ = serve.wait();
    let (out, err) = mirror.output_of("serve");
    assert!(
        !out.contains(&key) && !err.contains(&key) && !err.contains(&full),
        "no key or token in serve's log"
    );
}
