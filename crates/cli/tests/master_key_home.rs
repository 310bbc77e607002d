//! The master key has one home (the user's configuration directory): commands run from any
//! working directory find it, an older key beside the database keeps working with a warning on
//! how to move it, and a key that does not open the mirror's secrets is named with when it was
//! made.

mod support;

use std::process::Stdio;

use support::{EmuProcess, KeyInput, Mirror};

fn run_in(mirror: &Mirror, dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = mirror
        .command(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn one_home_for_the_master_key_from_any_directory() {
    let emu = EmuProcess::start(10, 61);
    let mirror = Mirror::new("key-home", &emu.base);
    mirror.connect(&emu.key("restricted_test"), &[]);
    let home = mirror.dir.join("stripe-mirror").join("master.key");
    assert!(home.exists(), "the master key is made in its home");
    assert!(!mirror.dir.join("stripe-mirror.key").exists());

    // From another working directory: the same key, and no new file there.
    let elsewhere = mirror.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (code, out, err) = run_in(&mirror, &elsewhere, &["sync", "--no-pacing"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A key an older version left beside the database is used, with a warning.
    let beside = mirror.dir.join("stripe-mirror.key");
    std::fs::rename(&home, &beside).unwrap();
    let (code, out, err) = run_in(
        &mirror,
        &elsewhere,
        &["permissions", &format!("{}:test", emu.account)],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("warning: the master key is")
            && err.contains(&format!("mv {}", beside.display())),
        "{err}"
    );

    // Another key in the home than the one that sealed the API key: the error names it.
    std::fs::remove_file(&beside).unwrap();
    let run = mirror.run(&["sync"], &KeyInput::None);
    assert_eq!(run.code, 9, "{}", run.describe());
    assert!(
        run.stderr.contains(&home.display().to_string()) && run.stderr.contains(", made "),
        "{}",
        run.describe()
    );
}
