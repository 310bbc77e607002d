//! The real binary with a real pipe and a real signal: output into a pipe whose reader left ends
//! a short command quietly and never fails a sync; Ctrl-C during a sync says what happened,
//! records the run as interrupted at once, and the next sync continues to an exact mirror.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sm_warehouse::Connection;
use support::{EmuProcess, KeyInput, Mirror, compare_export};

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "the process did not end within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_during_a_sync_is_recorded_at_once_and_the_next_sync_continues() {
    let emu = EmuProcess::start(100, 41);
    let mirror = Mirror::new("ctrl-c", &emu.base);
    mirror.connect(&emu.key("restricted_test"), &[]);
    let label = format!("{}:test", emu.account);

    // A paced backfill (about 350 requests at 12.5 a second): interrupted after a few seconds.
    let mut child = mirror.spawn(&["sync", "--budget-share", "0.5"], "interrupted");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync ended before the signal"
    );
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = wait_with_timeout(&mut child, Duration::from_secs(15));
    let (out, err) = mirror.output_of("interrupted");
    assert_eq!(status.code(), Some(130), "{status:?}\n{out}\n{err}");
    assert!(
        err.contains("interrupted — run sync again to continue"),
        "stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Recorded at once, before any later run.
    let runs = mirror.syncs(&label);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "interrupted", "{}", runs[0]);
    assert!(runs[0]["ended_at"].is_i64(), "{}", runs[0]);
    assert!(
        runs[0]["error"].as_str().unwrap().contains("Ctrl-C"),
        "{}",
        runs[0]
    );

    // The next run continues the backfill and ends exact.
    let run = mirror
        .run(&["sync", "--budget-share", "1.0"], &KeyInput::None)
        .success();
    assert!(
        run.stdout.contains("succeeded backfill"),
        "{}",
        run.describe()
    );
    let store = mirror.store();
    let connection = Connection::new(emu.account.clone(), false);
    let comparison = compare_export(&emu.export(), store.as_ref(), &connection, &[]);
    assert!(comparison.exact(), "{}", comparison.describe());
}

#[test]
fn a_closed_pipe_ends_a_short_command_quietly_and_never_fails_a_sync() {
    let emu = EmuProcess::start(30, 42);
    let mirror = Mirror::new("pipes", &emu.base);
    mirror.connect(&emu.key("restricted_test"), &[]);
    let label = format!("{}:test", emu.account);

    // A sync whose output has nobody reading it: both pipes closed at once.
    let mut child = mirror
        .command(&["sync", "--budget-share", "1.0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    let runs = mirror.syncs(&label);
    assert_eq!(runs[0]["status"], "succeeded", "{}", runs[0]);

    // `sql … | head -1` (half a megabyte of rows, more than a pipe holds): the first line
    // arrives, then the command ends by SIGPIPE, quietly, as Unix tools do.
    let mut child = mirror
        .command(&[
            "sql",
            "SELECT customers.id, customers.data FROM customers, prices",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("id"), "{first}");
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {err}");
}
