//! API tokens: printed once when made, kept only as a hash, listed without secrets, a taken
//! name refused, revoked by name.

mod support;

use support::{KeyInput, Mirror};

#[test]
fn a_token_is_shown_once_and_kept_only_as_its_hash() {
    let mirror = Mirror::new("tokens", "http://127.0.0.1:1");
    let run = mirror
        .run(
            &["token", "create", "--name", "ci", "--read-only"],
            &KeyInput::None,
        )
        .success();
    let secret = run.stdout.trim().to_owned();
    assert!(
        secret.starts_with("smt_") && secret.len() == 68,
        "{}",
        run.describe()
    );
    assert!(run.stderr.contains("shown this once"), "{}", run.describe());

    let listed = mirror
        .run(&["--json", "token", "list"], &KeyInput::None)
        .success();
    assert_eq!(
        listed.json(),
        serde_json::json!([{"name": "ci", "read_only": true, "created_at": listed.json()[0]["created_at"]}])
    );
    assert!(!listed.stdout.contains(&secret));
    let db = std::fs::read(&mirror.db).unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the token is in the database in clear"
    );

    let taken = mirror.run(&["token", "create", "--name", "ci"], &KeyInput::None);
    assert_eq!(taken.code, 6, "{}", taken.describe());
    let bad = mirror.run(&["token", "create", "--name", "two words"], &KeyInput::None);
    assert_eq!(bad.code, 2, "{}", bad.describe());

    mirror
        .run(&["token", "revoke", "ci"], &KeyInput::None)
        .success();
    let gone = mirror.run(&["token", "revoke", "ci"], &KeyInput::None);
    assert_eq!(gone.code, 3, "{}", gone.describe());
    let run = mirror.run(&["token", "list"], &KeyInput::None).success();
    assert!(run.stdout.contains("No tokens"), "{}", run.describe());
}
