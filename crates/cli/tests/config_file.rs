//! `stripe-mirror.toml`: settings below flags and the environment, every README setting
//! accepted, an unknown one refused by name, secrets refused, and `config` saying where each
//! effective value came from.

mod support;

use support::{EmuProcess, KeyInput, Mirror};

#[test]
fn the_configuration_file_sits_below_flags_and_the_environment() {
    let emu = EmuProcess::start(10, 93);
    let mirror = Mirror::new("config-file", &emu.base);
    mirror.connect(&emu.key("restricted_test"), &[]);
    std::fs::write(
        mirror.dir.join("stripe-mirror.toml"),
        "# what this mirror keeps\nsync_only = [\"customers\", \"products\"]\nbudget_share = 0.25\nno_pacing = true\n",
    )
    .unwrap();

    // The file chooses the tables (no flag, no environment).
    let run = mirror.run(&["sync"], &KeyInput::None).success();
    assert!(
        run.stdout.contains("skipped by choice"),
        "{}",
        run.describe()
    );
    let counts = |mirror: &Mirror| {
        let run = mirror
            .run(
                &["--json", "sql", "SELECT (SELECT count(*) FROM customers) AS c, (SELECT count(*) FROM charges) AS ch"],
                &KeyInput::None,
            )
            .success();
        let row = run.json()[0].clone();
        (row["c"].as_i64().unwrap(), row["ch"].as_i64().unwrap())
    };
    let (customers, charges) = counts(&mirror);
    assert!(
        customers > 0 && charges == 0,
        "{customers} customers, {charges} charges"
    );

    // The environment wins over the file; a flag wins over both.
    let run = mirror.run_with(
        &["--json", "config"],
        &KeyInput::None,
        &[("STRIPE_MIRROR_BUDGET_SHARE", "0.75")],
    );
    let config = run.json();
    assert_eq!(
        config["settings"]["sync_only"]["value"],
        "customers,products"
    );
    assert!(
        config["settings"]["sync_only"]["from"]
            .as_str()
            .unwrap()
            .starts_with("file")
    );
    assert_eq!(config["settings"]["budget_share"]["value"], "0.75");
    assert!(
        config["settings"]["budget_share"]["from"]
            .as_str()
            .unwrap()
            .starts_with("environment")
    );
    let run = mirror.run_with(
        &["--json", "--budget-share", "0.5", "config"],
        &KeyInput::None,
        &[("STRIPE_MIRROR_BUDGET_SHARE", "0.75")],
    );
    assert_eq!(run.json()["settings"]["budget_share"]["from"], "flag");
    let run = mirror.run_with(
        &["sync"],
        &KeyInput::None,
        &[("STRIPE_MIRROR_SYNC_ONLY", "charges")],
    );
    assert_eq!(run.code, 0, "{}", run.describe());
    assert!(counts(&mirror).1 > 0, "the environment's choice was used");

    // An unknown setting, or a secret, is refused by name; nothing runs.
    std::fs::write(
        mirror.dir.join("stripe-mirror.toml"),
        "sync_olny = [\"customers\"]\n",
    )
    .unwrap();
    let run = mirror.run(&["accounts"], &KeyInput::None);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(
        run.stderr.contains("unknown setting `sync_olny`") && run.stderr.contains("sync_only"),
        "{}",
        run.describe()
    );
    std::fs::write(
        mirror.dir.join("stripe-mirror.toml"),
        "api_key = \"rk_test_x\"\n",
    )
    .unwrap();
    let run = mirror.run(&["accounts"], &KeyInput::None);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(!run.stderr.contains("rk_test_x"), "{}", run.describe());
}
