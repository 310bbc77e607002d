//! The emulator as a playground: a connection keeps the API base it was made against, so later
//! commands need not repeat it; pacing can be turned off for a local emulator and never for
//! Stripe's own API.

mod support;

use support::{EmuProcess, KeyInput, Mirror};

const STRIPE: (&str, &str) = ("STRIPE_MIRROR_API_BASE", "https://api.stripe.com");

#[test]
fn a_connection_keeps_its_api_base_and_pacing_is_off_only_for_an_emulator() {
    let emu = EmuProcess::start(20, 51);
    let mirror = Mirror::new("playground", &emu.base);
    let connected = mirror.connect(&emu.key("restricted_test"), &[]);
    // Only mirroring was asked for: what agent writes or webhooks would need is not listed.
    assert!(
        !connected.stdout.contains("agent-writes") && !connected.stdout.contains("webhooks:"),
        "{}",
        connected.describe()
    );
    let accounts = mirror.accounts();
    assert_eq!(accounts[0]["api_base"], emu.base.as_str(), "{accounts:?}");

    // No API base given (Stripe's default in effect): the connection's own is used, unpaced.
    let run = mirror.run_with(&["sync", "--no-pacing"], &KeyInput::None, &[STRIPE]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert!(
        run.stdout.contains("succeeded backfill"),
        "{}",
        run.describe()
    );
    assert!(run.stdout.contains("unpaced"), "{}", run.describe());
    // SQL answers in JSON keep numbers as numbers; a misspelt table gets a suggestion, exit 2.
    let run = mirror
        .run(
            &[
                "--json",
                "sql",
                "SELECT count(*) AS n, 'x' AS s, NULL AS z FROM customers",
            ],
            &KeyInput::None,
        )
        .success();
    let answer = run.json();
    assert!(answer[0]["n"].as_i64().is_some_and(|n| n > 0), "{answer}");
    assert_eq!(answer[0]["s"], "x");
    assert!(answer[0]["z"].is_null());
    let run = mirror.run(&["sql", "SELECT * FROM customer"], &KeyInput::None);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(
        run.stderr.contains("did you mean the table `customers`?"),
        "{}",
        run.describe()
    );
    let run = mirror.run_with(&["accounts"], &KeyInput::None, &[STRIPE]);
    assert!(
        run.stdout.contains(&format!("API {}", emu.base)),
        "{}",
        run.describe()
    );

    // Against Stripe's own API, --no-pacing is refused before any request.
    let run = mirror.run_with(
        &["connect", "--no-pacing"],
        &KeyInput::Env(emu.key("secret_test")),
        &[STRIPE],
    );
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(
        run.stderr
            .contains("pacing cannot be turned off for Stripe's own API"),
        "{}",
        run.describe()
    );
    // A share above Stripe's limit says what to use instead.
    let run = mirror.run(&["sync", "--budget-share", "4"], &KeyInput::None);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(run.stderr.contains("--no-pacing"), "{}", run.describe());
}
