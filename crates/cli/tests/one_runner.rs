//! One runner per SQLite mirror: a second sync beside a running one is told who holds the mirror
//! (exit 10) or, with --wait, starts when it is free; a sync beside `serve` is refused with why;
//! `serve` in a role of its own (worker, intake) is refused on SQLite.

mod support;

use std::time::{Duration, Instant};

use support::{EmuProcess, KeyInput, Mirror};

#[test]
fn a_second_runner_waits_or_is_told_who_holds_the_mirror() {
    let emu = EmuProcess::start(100, 81);
    let mirror = Mirror::new("one-runner", &emu.base);
    mirror.connect(&emu.key("restricted_test"), &[]);

    // A paced backfill (about 14 s) holds the mirror.
    let mut first = mirror.spawn(&["sync", "--budget-share", "0.5"], "first");
    std::thread::sleep(Duration::from_millis(1500));
    let run = mirror.run(&["sync"], &KeyInput::None);
    assert_eq!(run.code, 10, "{}", run.describe());
    assert!(
        run.stderr
            .contains(&format!("is in use by process {}", first.id()))
            && run.stderr.contains("stripe-mirror sync")
            && run.stderr.contains("--wait"),
        "{}",
        run.describe()
    );
    // With --wait, the second starts once the first is done, and only has the rest to do.
    let started = Instant::now();
    let run = mirror.run(
        &["sync", "--wait", "--budget-share", "1.0"],
        &KeyInput::None,
    );
    assert_eq!(run.code, 0, "{}", run.describe());
    assert!(first.try_wait().unwrap().is_some_and(|s| s.success()));
    assert!(
        run.stdout.contains("succeeded incremental"),
        "{}",
        run.describe()
    );
    eprintln!(
        "the waiting sync took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // serve holds the mirror for as long as it runs (once it has taken it: the lock file
    // names it).
    let mut serve = mirror.spawn(
        &["serve", "--listen", "127.0.0.1:0", "--interval", "3600"],
        "serve",
    );
    let lock = format!("{}.lock", mirror.db.display());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("stripe-mirror serve")) {
        assert!(
            serve.try_wait().unwrap().is_none(),
            "{:?}",
            mirror.output_of("serve")
        );
        assert!(Instant::now() < deadline, "serve did not take the mirror");
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = mirror.run(&["sync"], &KeyInput::None);
    assert_eq!(refused.code, 10, "{}", refused.describe());
    assert!(
        refused.stderr.contains("stripe-mirror serve")
            && refused.stderr.contains("serve syncs every account"),
        "{}",
        refused.describe()
    );
    let _ = serve.kill();
    let _ = serve.wait();
    // Once serve is gone, the mirror is free again.
    mirror
        .run(&["sync", "--budget-share", "1.0"], &KeyInput::None)
        .success();
}

/// A SQLite mirror is one process: `serve` in a role of its own is refused before anything
/// starts, with what to do instead; an unknown role is refused by name.
#[test]
fn roles_other_than_all_need_postgres() {
    let mirror = Mirror::new("roles", "http://127.0.0.1:9");
    for role in ["worker", "intake"] {
        let run = mirror.run(
            &["serve", "--role", role, "--listen", "127.0.0.1:0"],
            &KeyInput::None,
        );
        assert_eq!(run.code, 2, "{}", run.describe());
        assert!(
            run.stderr
                .contains(&format!("--role {role} needs a Postgres mirror"))
                && run.stderr.contains("--role all"),
            "{}",
            run.describe()
        );
    }
    let run = mirror.run(&["serve", "--role", "leader"], &KeyInput::None);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(
        run.stderr.contains("leader") && run.stderr.contains("worker"),
        "{}",
        run.describe()
    );
    assert!(
        !mirror.db.exists(),
        "nothing was made: {}",
        mirror.db.display()
    );
}
