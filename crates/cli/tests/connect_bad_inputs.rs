//! Connecting accounts through the real `stripe-mirror` binary against the emulator: every bad
//! input gets a clear error, a non-zero exit code from the one code table, and writes nothing;
//! and each account command works once on the happy path.

mod support;

use serde_json::{Value, json};
use sm_emulator::{KeyKind, Mode};
use support::{Emu, KeyInput, Mirror, Run, entry};

/// One bad input and what the user must see.
struct Case {
    name: &'static str,
    args: Vec<String>,
    key: KeyInput,
    env: Vec<(&'static str, String)>,
    /// Fault probabilities set on the emulator for this case only.
    faults: Option<Value>,
    code: i32,
    /// Each must appear in standard error (in standard output for `--json` cases).
    phrases: Vec<String>,
    json_code: Option<&'static str>,
}

fn case(name: &'static str, args: &[&str], key: KeyInput, code: i32, phrases: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        key,
        env: Vec::new(),
        faults: None,
        code,
        phrases: phrases.iter().map(|p| p.to_string()).collect(),
        json_code: None,
    }
}

impl Case {
    fn env(mut self, name: &'static str, value: &str) -> Case {
        self.env.push((name, value.to_owned()));
        self
    }
    fn faults(mut self, faults: Value) -> Case {
        self.faults = Some(faults);
        self
    }
    fn phrase(mut self, phrase: String) -> Case {
        self.phrases.push(phrase);
        self
    }
    /// With `--json`: the error is one JSON line on standard output with this code.
    fn json(mut self, code: &'static str) -> Case {
        self.args.insert(0, "--json".into());
        self.json_code = Some(code);
        self
    }
}

fn env(key: &str) -> KeyInput {
    KeyInput::Env(key.to_owned())
}

/// Checks one case's run; returns what is wrong, if anything.
fn check(case: &Case, run: &Run, before: &Value, after: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if run.code != case.code {
        problems.push(format!("exit code {} (expected {})", run.code, case.code));
    }
    let shown = if case.json_code.is_some() {
        &run.stdout
    } else {
        &run.stderr
    };
    for phrase in &case.phrases {
        if !shown.contains(phrase.as_str()) {
            problems.push(format!("the message lacks {phrase:?}"));
        }
    }
    if let Some(code) = case.json_code {
        match serde_json::from_str::<Value>(run.stdout.trim()) {
            Ok(answer) if answer["error"]["code"] == code => {}
            Ok(answer) => problems.push(format!("JSON error {answer} (expected code {code})")),
            Err(e) => problems.push(format!("standard output is not JSON: {e}")),
        }
    } else if !run.stderr.starts_with("error") {
        problems.push("standard error does not start with `error`".into());
    }
    if case.json_code.is_none() && !run.stdout.trim().is_empty() {
        problems.push("a failed command printed to standard output".into());
    }
    if before != after {
        problems.push(format!(
            "the database changed:\nbefore: {before:#}\nafter:  {after:#}"
        ));
    }
    problems
}

/// Runs every case against one mirror and reports them all, then fails if any case failed.
fn run_cases(emu: &Emu, mirror: &Mirror, cases: Vec<Case>) {
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "two cases named {}", case.name);
        let before = mirror.snapshot();
        if let Some(faults) = &case.faults {
            emu.faults(faults);
        }
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = case.env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let started = std::time::Instant::now();
        let run = mirror.run_with(&args, &case.key, &env);
        let took = started.elapsed();
        if case.faults.is_some() {
            emu.faults(&json!({}));
        }
        let after = mirror.snapshot();
        let problems = check(case, &run, &before, &after);
        let first_line = if case.json_code.is_some() {
            run.stdout.trim().to_owned()
        } else {
            run.stderr.lines().next().unwrap_or_default().to_owned()
        };
        println!(
            "{:<4} {:<44} exit {} {:>5} ms  {first_line}",
            if problems.is_empty() { "ok" } else { "FAIL" },
            case.name,
            run.code,
            took.as_millis()
        );
        if !problems.is_empty() {
            failures.push(format!(
                "case `{}`:\n  - {}\n{}",
                case.name,
                problems.join("\n  - "),
                run.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// A key of the right shape that no account has.
fn unknown_key() -> String {
    format!("sk_test_{}", "Zq8xW2vK9pLm4Tn7Rb3Yc6Hd")
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let emu = Emu::start();
    let a = emu.account("Test Co", 1);
    let b = emu.account("Other Co", 0);
    let mirror = Mirror::new("bad-inputs", &emu.base);
    mirror.connect(&a.secret_test, &[]);
    mirror.connect(&a.secret_live, &["--name", "Test Co live"]);
    let accounts = mirror.accounts();
    assert_eq!(accounts.len(), 2, "{accounts:?}");
    let a_test = format!("{}:test", a.id);
    let a_live = format!("{}:live", a.id);

    let revoked_b = emu.full_read_key(&b.id);
    emu.revoke(&revoked_b);
    let expired_b = emu.full_read_key(&b.id);
    emu.expire(&expired_b);
    let revoked_a = emu.full_read_key(&a.id);
    emu.revoke(&revoked_a);
    let expired_a = emu.full_read_key(&a.id);
    emu.expire(&expired_a);
    let fresh_a = emu.full_read_key(&a.id);
    let key = &b.secret_test;
    let (head, tail) = key.split_at(12);
    let open_master_key = mirror.file(&"ab".repeat(32));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_master_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let missing_file = mirror.dir.join("no-such-key.txt");

    let cases = vec![
        // The key's shape, checked before anything is opened or sent.
        case(
            "empty key",
            &["connect"],
            env(""),
            2,
            &["the API key is empty"],
        ),
        case(
            "only spaces",
            &["connect"],
            env("   "),
            2,
            &["only whitespace"],
        ),
        case(
            "trailing space",
            &["connect"],
            env(&format!("{key} ")),
            2,
            &["a space after the key"],
        ),
        case(
            "leading newline in file",
            &["connect"],
            KeyInput::File(format!("\n{key}\n")),
            2,
            &["a newline before the key"],
        ),
        case(
            "leading space in file",
            &["connect"],
            KeyInput::File(format!(" {key}\n")),
            2,
            &["a space before the key"],
        ),
        case(
            "blank line after key in file",
            &["connect"],
            KeyInput::File(format!("{key}\n\n")),
            2,
            &["a newline after the key"],
        ),
        case(
            "space inside the key",
            &["connect"],
            env(&format!("{head} {tail}")),
            2,
            &["a space inside the key at character 13"],
        ),
        case(
            "tab inside the key on stdin",
            &["connect"],
            KeyInput::Stdin(format!("{head}\t{tail}\n")),
            2,
            &["a tab inside the key"],
        ),
        case(
            "webhook secret",
            &["connect"],
            env("whsec_Qm3kT8vR2nX5cW9bL4pZ7hJ1yF6dG0sA"),
            2,
            &["webhook signing secret (whsec_…)"],
        ),
        case(
            "publishable key",
            &["connect"],
            env(&b.publishable_test),
            2,
            &["publishable key (pk_test_…)", "rk_test_"],
        ),
        case(
            "unknown prefix",
            &["connect"],
            env("xk_test_Zq8xW2vK9pLm4Tn7Rb3Yc6Hd"),
            2,
            &["starts with 'xk_'"],
        ),
        case(
            "no mode in prefix",
            &["connect"],
            env("sk_Zq8xW2vK9pLm4Tn7Rb3Yc6Hd"),
            2,
            &["not sk_live_ or sk_test_"],
        ),
        case(
            "too short",
            &["connect"],
            env("sk_test_abc"),
            2,
            &["too short", "cut off"],
        ),
        case(
            "masked with stars",
            &["connect"],
            env("sk_test_****1234"),
            2,
            &["masked key"],
        ),
        case(
            "masked with an ellipsis",
            &["connect"],
            env("sk_test_…1234"),
            2,
            &["masked key"],
        ),
        case(
            "masked with three dots",
            &["connect"],
            env("rk_live_...a1b2"),
            2,
            &["masked key"],
        ),
        case(
            "double quotes",
            &["connect"],
            env(&format!("\"{key}\"")),
            2,
            &["wrapped in quotes"],
        ),
        case(
            "single quotes in file",
            &["connect"],
            KeyInput::File(format!("'{key}'\n")),
            2,
            &["wrapped in quotes"],
        ),
        case(
            "illegal character",
            &["connect"],
            env(&format!("{head}-{tail}")),
            2,
            &["contains '-' at character 13"],
        ),
        case(
            "no key at all",
            &["connect"],
            KeyInput::None,
            2,
            &["no API key given", "--key-file"],
        ),
        case(
            "empty standard input",
            &["connect"],
            KeyInput::Stdin(String::new()),
            2,
            &["the API key is empty"],
        ),
        case(
            "key file missing",
            &["connect", "--key-file", missing_file.to_str().unwrap()],
            KeyInput::None,
            2,
            &["could not read the key file"],
        ),
        case(
            "key file is a directory",
            &["connect", "--key-file", mirror.dir.to_str().unwrap()],
            KeyInput::None,
            2,
            &["could not read the key file"],
        ),
        case(
            "key as an argument",
            &["connect", "--key", "sk_test_Zq8xW2vK9pLm4Tn7Rb3Yc6Hd"],
            KeyInput::None,
            2,
            &["unexpected argument '--key'"],
        ),
        // Policies, from the key alone.
        case(
            "--mode live with a test key",
            &["connect", "--mode", "live"],
            env(key),
            2,
            &["--mode live was asked", "test mode key"],
        ),
        case(
            "--mode test with a live key",
            &["connect", "--mode", "test"],
            env(&b.secret_live),
            2,
            &["--mode test was asked"],
        ),
        case(
            "--mode staging",
            &["connect", "--mode", "staging"],
            env(key),
            2,
            &["mode must be test or live"],
        ),
        case(
            "--live-only with a test key",
            &["connect", "--live-only"],
            env(key),
            2,
            &["only live keys are accepted"],
        ),
        case(
            "--restricted-only with a secret key",
            &["connect", "--restricted-only"],
            env(key),
            2,
            &["only restricted keys are accepted", "key-link"],
        ),
        case(
            "--start-date 2024-13-45",
            &["connect", "--start-date", "2024-13-45"],
            env(key),
            2,
            &["is not a date"],
        ),
        case(
            "--budget-share 2",
            &["connect", "--budget-share", "2"],
            env(key),
            2,
            &["--budget-share must be above 0 and at most 1"],
        ),
        case(
            "--budget-share 0",
            &["sync", "--budget-share", "0"],
            KeyInput::None,
            2,
            &["--budget-share must be above 0"],
        ),
        // A flag of another command is refused, not ignored.
        case(
            "a Stripe flag on a command that does not call Stripe",
            &["accounts", "--budget-share", "0.5"],
            KeyInput::None,
            2,
            &["unexpected argument '--budget-share'"],
        ),
        // What Stripe (the emulator) says about the key.
        case(
            "unknown key",
            &["connect"],
            env(&unknown_key()),
            4,
            &["API key is invalid"],
        ),
        case(
            "revoked key",
            &["connect"],
            env(&revoked_b),
            4,
            &["API key is invalid", "connect with a valid one"],
        ),
        case(
            "revoked key, --json",
            &["connect"],
            env(&revoked_b),
            4,
            &["API key is invalid"],
        )
        .json("invalid_key"),
        case(
            "expired key",
            &["connect"],
            env(&expired_b),
            4,
            &["API key has expired"],
        ),
        case(
            "--account of another account",
            &["connect", "--account", &a.id],
            env(key),
            2,
            &[],
        )
        .phrase(format!(
            "--account {} was asked, but this key belongs to {}",
            a.id, b.id
        )),
        case(
            "duplicate connection",
            &["connect"],
            env(&a.secret_test),
            6,
            &["already connected"],
        )
        .phrase(format!("{a_test} is already connected"))
        // The hint's command must work as printed: the label, not a name with spaces.
        .phrase(format!("`stripe-mirror update-key {a_test}`")),
        case(
            "duplicate through another key",
            &["connect"],
            env(&a.restricted_test),
            6,
            &["already connected"],
        ),
        case(
            "duplicate live connection",
            &["connect"],
            env(&a.secret_live),
            6,
            &["already connected"],
        ),
        case(
            "duplicate connection, --json",
            &["connect"],
            env(&a.secret_test),
            6,
            &["already connected"],
        )
        .json("conflict"),
        // Stripe unreachable or not answering like Stripe.
        case(
            "connection refused",
            &["connect"],
            env(key),
            7,
            &["could not connect", "--api-base"],
        )
        .env("STRIPE_MIRROR_API_BASE", "http://127.0.0.1:1"),
        case(
            "HTML answers",
            &["connect"],
            env(key),
            7,
            &[
                "not valid JSON",
                "<!DOCTYPE html>",
                "is --api-base the Stripe API",
            ],
        )
        .faults(json!({"html": 1.0})),
        case(
            "truncated JSON",
            &["connect"],
            env(key),
            7,
            &["after 2 attempts"],
        )
        .faults(json!({"truncated": 1.0})),
        case(
            "500s beyond retries",
            &["connect"],
            env(key),
            7,
            &["HTTP 500"],
        )
        .faults(json!({"server_error": 1.0})),
        // The vault.
        case(
            "malformed master key",
            &["connect"],
            env(key),
            9,
            &["STRIPE_MIRROR_MASTER_KEY must be 64 hexadecimal"],
        )
        .env("STRIPE_MIRROR_MASTER_KEY", "not-hex"),
        case(
            "master key file readable by others",
            &[
                "connect",
                "--master-key-file",
                open_master_key.to_str().unwrap(),
            ],
            env(key),
            9,
            &["readable by other users", "chmod 600"],
        ),
        // Key rotation.
        case(
            "update-key to another account's key",
            &["update-key", &a_test],
            env(key),
            2,
            &[],
        )
        .phrase(format!("this key belongs to {}, not to {}", b.id, a.id)),
        case(
            "update-key to a live key",
            &["update-key", &a_test],
            env(&a.secret_live),
            2,
            &["is a test mode connection", "live mode key"],
        ),
        case(
            "update-key to a revoked key",
            &["update-key", &a_test],
            env(&revoked_a),
            4,
            &["API key is invalid"],
        ),
        case(
            "update-key to an expired key",
            &["update-key", &a_test],
            env(&expired_a),
            4,
            &["API key has expired"],
        ),
        case(
            "update-key to a publishable key",
            &["update-key", &a_test],
            KeyInput::Stdin(format!("{}\n", a.publishable_test)),
            2,
            &["publishable"],
        ),
        case(
            "update-key to a malformed key",
            &["update-key", &a_test],
            KeyInput::File("rk_test_abc\n".into()),
            2,
            &["too short"],
        ),
        case(
            "update-key without a key",
            &["update-key", &a_test],
            KeyInput::None,
            2,
            &["no API key given"],
        ),
        case(
            "update-key, Stripe unreachable",
            &["update-key", &a_test],
            env(&fresh_a),
            7,
            &["could not connect"],
        )
        .env("STRIPE_MIRROR_API_BASE", "http://127.0.0.1:1"),
        case(
            "update-key, 500s beyond retries",
            &["update-key", &a_test],
            env(&fresh_a),
            7,
            &["HTTP 500"],
        )
        .faults(json!({"server_error": 1.0})),
        // Unknown or ambiguous accounts in every command.
        case(
            "permissions of an unknown account",
            &["permissions", "acct_nope"],
            KeyInput::None,
            3,
            &["no connected account matches \"acct_nope\"", "Test Co live"],
        ),
        case(
            "update-key of an unknown account",
            &["update-key", "acct_nope"],
            env(&fresh_a),
            3,
            &["no connected account matches"],
        ),
        case(
            "rename an unknown account",
            &["rename", "acct_nope", "New"],
            KeyInput::None,
            3,
            &["no connected account matches"],
        ),
        case(
            "remove an unknown account",
            &["remove", "acct_nope", "--yes"],
            KeyInput::None,
            3,
            &["no connected account matches"],
        ),
        case(
            "unknown account, --json",
            &["permissions", "acct_nope"],
            KeyInput::None,
            3,
            &["no connected account matches"],
        )
        .json("not_found"),
        case(
            "ambiguous account",
            &["permissions", &a.id],
            KeyInput::None,
            2,
            &["matches 2 connections", ":live"],
        ),
        // Other commands' inputs.
        case(
            "remove without --yes, no terminal",
            &["remove", &a_test],
            KeyInput::None,
            2,
            &[
                "not confirmed (no terminal to ask on)",
                "--yes",
                "test mode",
            ],
        ),
        case(
            "rename to an empty name",
            &["rename", &a_test, ""],
            KeyInput::None,
            2,
            &["a connection name cannot be empty"],
        ),
        case(
            "rename to spaces",
            &["rename", &a_test, "   "],
            KeyInput::None,
            2,
            &["a connection name cannot be empty"],
        ),
        case(
            "rename to a taken name",
            &["rename", &a_test, "Test Co live"],
            KeyInput::None,
            6,
            &["is taken by", ":live"],
        ),
        case(
            "rename to another connection's id",
            &["rename", &a_test, &a_live],
            KeyInput::None,
            2,
            &["looks like an account id", "acct_"],
        ),
        case(
            "rename to an account id not connected",
            &["rename", &a_test, &b.id],
            KeyInput::None,
            2,
            &["looks like an account id"],
        ),
        case(
            "an API base over plain http to another machine",
            &["connect", "--api-base", "http://10.1.2.3:12111"],
            env(&fresh_a),
            2,
            &[
                "sends keys over plain http:// to another machine",
                "127.0.0.1",
            ],
        ),
        case(
            "set-logo to a page that is not https",
            &["set-logo", &a_test, "http://example.com/logo.png"],
            KeyInput::None,
            2,
            &["must be an https:// URL or a data:image/", "removes it"],
        ),
        case(
            "set-logo to a script",
            &["set-logo", &a_test, "javascript:alert(1)"],
            KeyInput::None,
            2,
            &["must be an https:// URL"],
        ),
        case(
            "set-logo of an unknown account",
            &["set-logo", "acct_nope", "none"],
            KeyInput::None,
            3,
            &["no connected account matches"],
        ),
        case(
            "connect with a name that is an id",
            &["connect", "--name", "ACCT_123"],
            env(&b.secret_test),
            2,
            &["looks like an account id"],
        ),
        case(
            "key-link --features nonsense",
            &["key-link", "--features", "nonsense"],
            KeyInput::None,
            2,
            &[
                "unknown feature `nonsense`",
                "mirror, webhooks, agent-writes",
            ],
        ),
        case(
            "key-link --mode staging",
            &["key-link", "--mode", "staging"],
            KeyInput::None,
            2,
            &["mode must be test or live"],
        ),
    ];
    assert!(cases.len() >= 25);
    run_cases(&emu, &mirror, cases);

    // Still both connections, with their keys, after all that.
    let after = mirror.accounts();
    assert_eq!(after, accounts);
}

/// Shape errors are caught before anything is opened: no database, no master key file.
#[test]
fn shape_errors_create_nothing() {
    let emu = Emu::start();
    let mirror = Mirror::new("shape-errors", &emu.base);
    for (key, phrase) in [
        ("", "empty"),
        ("pk_test_Zq8xW2vK9pLm4Tn7Rb3Yc6Hd", "publishable"),
        ("whsec_Zq8xW2vK9pLm4Tn7Rb3Yc6Hd", "whsec_"),
        ("sk_test_Zq8xW2vK9pLm4Tn7Rb3Yc6Hd ", "after the key"),
    ] {
        let run = mirror.run(&["connect"], &KeyInput::Env(key.into()));
        assert_eq!(run.code, 2, "{}", run.describe());
        assert!(run.stderr.contains(phrase), "{}", run.describe());
    }
    let run = mirror.run(
        &["connect", "--mode", "live"],
        &KeyInput::Env("sk_test_Zq8xW2vK9pLm4Tn7Rb3Yc6Hd".into()),
    );
    assert_eq!(run.code, 2, "{}", run.describe());
    let left: Vec<_> = std::fs::read_dir(&mirror.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files were made: {left:?}");
}

/// A first connect that fails after opening the mirror takes back the database and the key file
/// it made, and only those: a key file that was there before stays.
#[test]
fn a_failed_first_connect_takes_back_only_what_it_made() {
    let emu = Emu::start();
    let mirror = Mirror::new("failed-first", &emu.base);
    let files = |dir: &std::path::Path| -> Vec<String> {
        walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect()
    };
    let run = mirror.run(&["connect"], &KeyInput::Env(unknown_key()));
    assert_eq!(run.code, 4, "{}", run.describe());
    assert_eq!(
        files(&mirror.dir),
        Vec::<String>::new(),
        "{}",
        run.describe()
    );

    // The key's home already holds a key (another mirror's): it is not this command's to take.
    let home = mirror.dir.join("stripe-mirror");
    std::fs::create_dir_all(&home).unwrap();
    let key_file = home.join("master.key");
    std::fs::write(&key_file, "ab".repeat(32)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let run = mirror.run(&["connect"], &KeyInput::Env(unknown_key()));
    assert_eq!(run.code, 4, "{}", run.describe());
    assert_eq!(files(&mirror.dir), vec!["stripe-mirror/master.key"]);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), "ab".repeat(32));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}

#[test]
fn connect_by_env_key_file_and_stdin() {
    let emu = Emu::start();
    let a = emu.account("Env Co", 1);
    let b = emu.account("File Co", 0);
    let c = emu.account("Stdin Co", 0);
    let mirror = Mirror::new("connect-ways", &emu.base);
    assert!(mirror.accounts().is_empty());

    let run = mirror.run(&["connect"], &KeyInput::Env(a.secret_test.clone()));
    let run = run.success();
    assert!(
        run.stdout.contains("Connected \"Env Co\""),
        "{}",
        run.describe()
    );
    assert!(run.stdout.contains("fetched the"), "{}", run.describe());
    let run = mirror
        .run(
            &["connect", "--budget-share", "1", "--name", "Files"],
            &KeyInput::File(format!("{}\n", b.restricted_test)),
        )
        .success();
    assert!(
        run.stdout.contains("Connected \"Files\""),
        "{}",
        run.describe()
    );
    let run = mirror
        .run(
            &[
                "--json",
                "connect",
                "--mode",
                "test",
                "--account",
                &c.id,
                "--start-date",
                "2024-01-31",
            ],
            &KeyInput::Stdin(format!("{}\r\n", c.secret_test)),
        )
        .success();
    let answer = run.json();
    assert_eq!(answer["account"]["label"], format!("{}:test", c.id));
    assert_eq!(answer["account"]["start_date"], 1_706_659_200);

    let accounts = mirror.accounts();
    assert_eq!(accounts.len(), 3, "{accounts:?}");
    let tail = |k: &str| k[k.len() - 4..].to_owned();
    for (account, kind, key, name) in [
        (&a, "secret", &a.secret_test, "Env Co"),
        (&b, "restricted", &b.restricted_test, "Files"),
        (&c, "secret", &c.secret_test, "Stdin Co"),
    ] {
        let e = entry(&accounts, &account.id, "test");
        assert_eq!(e["name"], name);
        assert_eq!(e["key_kind"], kind);
        let prefix = &key[..8];
        assert_eq!(e["key"], format!("{prefix}…{}", tail(key)));
        assert_eq!(e["status"], "connected");
    }
    // The text table names every connection.
    let table = mirror.run(&["accounts"], &KeyInput::None).success();
    for id in [&a.id, &b.id, &c.id] {
        assert!(table.stdout.contains(id.as_str()), "{}", table.describe());
    }
}

#[test]
fn live_and_test_keys_of_one_account_connect_side_by_side() {
    let emu = Emu::start();
    let a = emu.account("Both Co", 1);
    let mirror = Mirror::new("side-by-side", &emu.base);
    mirror.connect(&a.secret_test, &["--mode", "test"]);
    mirror.connect(
        &a.secret_live,
        &["--mode", "live", "--live-only", "--name", "Both live"],
    );
    let accounts = mirror.accounts();
    assert_eq!(accounts.len(), 2);
    assert_eq!(
        entry(&accounts, &a.id, "test")["label"],
        format!("{}:test", a.id)
    );
    assert_eq!(
        entry(&accounts, &a.id, "live")["label"],
        format!("{}:live", a.id)
    );
    assert_eq!(entry(&accounts, &a.id, "live")["name"], "Both live");
    // Each is reachable by its label and by its name.
    for reference in [format!("{}:live", a.id), "Both live".into()] {
        let run = mirror
            .run(&["--json", "permissions", &reference], &KeyInput::None)
            .success();
        assert_eq!(run.json()["account"], format!("{}:live", a.id));
    }
}

#[test]
fn permissions_name_what_a_key_lacks_and_key_link_prints_a_link() {
    let emu = Emu::start();
    let a = emu.account("Perm Co", 1);
    let without_disputes: Vec<String> = sm_emulator::world::all_read_permissions()
        .into_iter()
        .filter(|p| p != "rak_dispute_read")
        .chain(["rak_event_read".to_owned()])
        .collect();
    let key = emu.new_key(
        &a.id,
        Mode::Test,
        KeyKind::Restricted,
        &without_disputes,
        None,
    );
    let mirror = Mirror::new("permissions", &emu.base);
    let run = mirror.connect(&key, &["--budget-share", "1"]);
    assert!(
        run.stdout.contains("mirror: missing rak_dispute_read"),
        "{}",
        run.describe()
    );
    let label = format!("{}:test", a.id);
    let report = mirror
        .run(&["--json", "permissions", &label], &KeyInput::None)
        .success()
        .json();
    assert_eq!(report["account"], label);
    assert_eq!(
        report["features"]["mirror"],
        json!({"ready": false, "missing": ["rak_dispute_read"]})
    );
    assert_eq!(report["events"], true);
    let disputes = report["reads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "disputes")
        .expect("a disputes row");
    assert_eq!(disputes["allowed"], false);
    assert!(
        report["reads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["permission"] != "rak_dispute_read")
            .all(|r| r["allowed"] == true),
        "{report:#}"
    );
    assert_eq!(report["features"]["agent-writes"]["ready"], false);
    let text = mirror
        .run(&["permissions", &label], &KeyInput::None)
        .success();
    assert!(
        text.stdout.contains("missing rak_dispute_read"),
        "{}",
        text.describe()
    );
    let accounts = mirror.accounts();
    let status = entry(&accounts, &a.id, "test")["status_message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(status.contains("rak_dispute_read"), "{accounts:?}");

    let link = mirror
        .run(
            &["--json", "key-link", "--features", "mirror,webhooks"],
            &KeyInput::None,
        )
        .success()
        .json();
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://dashboard.stripe.com/test/apikeys/create?"),
        "{url}"
    );
    let permissions: Vec<&str> = link["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for needed in [
        "rak_customer_read",
        "rak_dispute_read",
        "rak_event_read",
        "rak_webhook_write",
    ] {
        assert!(permissions.contains(&needed), "{link}");
        assert!(
            url.contains(&format!("permissions%5B%5D={needed}")),
            "{url}"
        );
    }
    assert_eq!(link["mode"], "test");
    let live = mirror
        .run(&["--json", "key-link", "--mode", "live"], &KeyInput::None)
        .success()
        .json();
    assert!(
        live["url"]
            .as_str()
            .unwrap()
            .starts_with("https://dashboard.stripe.com/apikeys/create?"),
        "{live}"
    );
    assert!(
        !live["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("rak_webhook_write"))
    );
}

#[test]
fn update_key_rename_and_remove() {
    let emu = Emu::start();
    let a = emu.account("Rotate Co", 2);
    let without_disputes: Vec<String> = sm_emulator::world::all_read_permissions()
        .into_iter()
        .filter(|p| p != "rak_dispute_read")
        .chain(["rak_event_read".to_owned()])
        .collect();
    let old = emu.new_key(
        &a.id,
        Mode::Test,
        KeyKind::Restricted,
        &without_disputes,
        None,
    );
    let mirror = Mirror::new("rotate", &emu.base);
    mirror.connect(&old, &["--budget-share", "1"]);
    let label = format!("{}:test", a.id);
    let before = entry(&mirror.accounts(), &a.id, "test").clone();
    assert!(
        before["status_message"]
            .as_str()
            .unwrap()
            .contains("rak_dispute_read")
    );
    assert!(
        before["key"]
            .as_str()
            .unwrap()
            .ends_with(&old[old.len() - 4..])
    );

    // The old key is revoked in the dashboard; a new key with every permission replaces it.
    emu.revoke(&old);
    let new = emu.new_key(
        &a.id,
        Mode::Test,
        KeyKind::Restricted,
        &sm_emulator::world::all_read_permissions(),
        None,
    );
    let run = mirror
        .run(
            &["update-key", &label, "--budget-share", "1"],
            &KeyInput::Stdin(format!("{new}\n")),
        )
        .success();
    assert!(
        run.stdout.contains("Updated the key of"),
        "{}",
        run.describe()
    );
    let after = entry(&mirror.accounts(), &a.id, "test").clone();
    assert_eq!(after["status"], "connected");
    assert_eq!(after["status_message"], Value::Null, "{after}");
    assert_eq!(after["key"], format!("rk_test_…{}", &new[new.len() - 4..]));
    assert_ne!(after["key"], before["key"]);
    let report = mirror
        .run(&["--json", "permissions", &label], &KeyInput::None)
        .success()
        .json();
    assert_eq!(report["features"]["mirror"]["ready"], true, "{report}");

    // Rename, then the new name finds it.
    let run = mirror
        .run(&["--json", "rename", &label, "Renamed Co"], &KeyInput::None)
        .success();
    assert_eq!(
        run.json(),
        json!({"account": label, "old_name": "Rotate Co", "name": "Renamed Co"})
    );
    assert_eq!(
        entry(&mirror.accounts(), &a.id, "test")["name"],
        "Renamed Co"
    );
    mirror
        .run(&["permissions", "Renamed Co"], &KeyInput::None)
        .success();

    // Remove deletes every row of the connection.
    let counts = mirror.row_counts();
    assert!(
        counts.iter().any(|(t, n)| t == "events" && *n > 0),
        "connect fetched events: {counts:?}"
    );
    let run = mirror
        .run(&["remove", "Renamed Co", "--yes"], &KeyInput::None)
        .success();
    assert!(
        run.stdout.contains("Removed \"Renamed Co\""),
        "{}",
        run.describe()
    );
    assert!(mirror.accounts().is_empty());
    let counts = mirror.row_counts();
    assert!(counts.iter().all(|(_, n)| *n == 0), "rows left: {counts:?}");
    let run = mirror.run(&["accounts"], &KeyInput::None).success();
    assert!(
        run.stdout.contains("No connected accounts"),
        "{}",
        run.describe()
    );
}
