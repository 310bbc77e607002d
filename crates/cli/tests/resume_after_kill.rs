//! The real `stripe-mirror sync` process, killed with SIGKILL at many random moments of a backfill
//! and of incremental runs, then run again, ends with the exact mirror: no duplicate rows, no
//! finished window fetched again, events replayed from where the killed run stopped.
//!
//! The emulator runs as a process of its own (it outlives every kill); a proxy in front of it logs
//! every request each run makes, so that "not fetched again" is checked request by request against
//! the `cursors` table as the killed run left it.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use sm_engine::catalog::{RESOURCES, Source};
use sm_warehouse::{Connection, Store, Window};
use support::{
    EmuProcess, KeyInput, Logged, Mirror, Prng, Proxy, compare_export, customers_created,
    duplicates, inserted, parent_request, refetches, table_counts,
};

/// Customers of the emulated account: a paced backfill takes about 14 s (about 350 requests at
/// 25 requests a second, 300 of them the per-customer lists).
const SCALE: u64 = 100;
/// Kills wanted in each phase (at least 10 must land).
const KILLS: usize = 12;
/// The backfill's pace: half of test mode's 25 requests a second, so that per-customer windows
/// (checkpointed after each customer) last long enough for every kill to land mid-backfill.
const BACKFILL_SHARE: &str = "0.5";
/// Concurrency of backfill runs while top-level lists remain (windows side by side, splitting).
const TOP_CONCURRENCY: usize = 8;

/// How a run ended.
#[derive(Debug)]
struct Attempt {
    tag: u32,
    delay: f64,
    killed: bool,
    ran: f64,
    /// What the mirror held after it.
    left: String,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  run {:>2}: {} after {:.2} s (aimed at {:.2} s): {}",
            self.tag,
            if self.killed { "killed" } else { "ended " },
            self.ran,
            self.delay,
            self.left
        )
    }
}

/// Runs `sync` and SIGKILLs it after `delay` seconds unless it ended first.
fn run_and_kill(mirror: &Mirror, args: &[&str], name: &str, tag: u32, delay: f64) -> Attempt {
    let started = Instant::now();
    let mut child = mirror.spawn(args, name);
    let deadline = Duration::from_secs_f64(delay);
    loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            let (out, err) = mirror.output_of(name);
            assert!(
                status.success(),
                "run {tag} ({args:?}) failed on its own: {status:?}\n{out}\n{err}"
            );
            return Attempt {
                tag,
                delay,
                killed: false,
                ran: started.elapsed().as_secs_f64(),
                left: String::new(),
            };
        }
        if started.elapsed() >= deadline {
            // std's kill is SIGKILL on unix: no handler, no cleanup, no last write.
            child.kill().expect("the kill");
            let status = child.wait().expect("the killed process");
            if status.signal() == Some(libc::SIGKILL) {
                return Attempt {
                    tag,
                    delay,
                    killed: true,
                    ran: started.elapsed().as_secs_f64(),
                    left: String::new(),
                };
            }
            // It ended between the check and the kill.
            assert!(status.success(), "run {tag} failed: {status:?}");
            return Attempt {
                tag,
                delay,
                killed: false,
                ran: started.elapsed().as_secs_f64(),
                left: String::new(),
            };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_per_parent(scope: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.table == scope && matches!(r.source, Source::PerParent { .. }))
}

fn state(store: &dyn Store, connection: &Connection, key: &str) -> Option<String> {
    store.state(connection, key).expect("sync state")
}

#[test]
fn killed_syncs_resume_to_the_exact_mirror() {
    let started = Instant::now();
    let emu = EmuProcess::start(SCALE, 17);
    let restricted = emu.key("restricted_test");
    let connection = Connection::new(emu.account.clone(), false);
    let label = format!("{}:test", emu.account);
    let mut rng = Prng::new(0x6b69_6c6c);

    // The baseline: one clean backfill of the same data into a database of its own, side by side
    // with the killed runs below (the emulator enforces no limits; each process paces itself).
    let baseline_proxy = Proxy::start(&emu.base);
    let baseline = Mirror::new("kill-baseline", &baseline_proxy.base);
    baseline.connect(&restricted, &[]);
    baseline_proxy.set_run(1);

    let proxy = Proxy::start(&emu.base);
    let mirror = Mirror::new("kill", &proxy.base);
    mirror.connect(&restricted, &[]);

    let (baseline_run, backfill_attempts, backfill_tags, final_backfill) = std::thread::scope(
        |s| {
            let baseline_thread = s.spawn(|| {
                let t = Instant::now();
                baseline
                    .run(
                        &["sync", "--budget-share", BACKFILL_SHARE, "--json"],
                        &KeyInput::None,
                    )
                    .success();
                t.elapsed().as_secs_f64()
            });

            // ---- Phase 1: the backfill, killed at random moments ----
            let store = mirror.store();
            let mut attempts: Vec<Attempt> = Vec::new();
            let mut tag = 0u32;
            let mut previous_windows: Vec<Window> = Vec::new();
            let mut previous_counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut snapshots: HashMap<u32, Vec<Window>> = HashMap::new();
            while attempts.iter().filter(|a| a.killed).count() < KILLS {
                assert!(attempts.len() < 40, "too many attempts: {attempts:?}");
                tag += 1;
                let windows = store.windows(&connection).expect("the cursors");
                snapshots.insert(tag, windows.clone());
                // Per-customer windows are planned once the top-level lists are in; from then on one
                // window at a time (about 4 s each), so that kills land between windows too.
                let parent_pending = windows
                    .iter()
                    .filter(|w| is_per_parent(&w.scope) && w.state != "done")
                    .count();
                let parents_planned = windows.iter().any(|w| is_per_parent(&w.scope));
                let (concurrency, delay) = if !parents_planned {
                    (TOP_CONCURRENCY, rng.between(0.08, 0.5))
                } else {
                    // Leave work undone: the backfill must not finish here (a window of 100
                    // customers takes about 8 s at this pace; resumed ones less).
                    let cap = ((parent_pending as f64 - 1.0) * 8.0 + 1.0).min(3.0);
                    (1, rng.between(0.3, cap.max(0.6)))
                };
                let concurrency = concurrency.to_string();
                proxy.set_run(tag);
                let attempt = run_and_kill(
                    &mirror,
                    &[
                        "sync",
                        "--budget-share",
                        BACKFILL_SHARE,
                        "--concurrency",
                        &concurrency,
                    ],
                    &format!("backfill-{tag}"),
                    tag,
                    delay,
                );
                assert!(
                    attempt.killed,
                    "the backfill finished before {KILLS} kills (attempt {attempt:?}); kills so far: {}",
                    attempts.iter().filter(|a| a.killed).count()
                );
                let mut attempt = attempt;
                // What a kill leaves: rows never lost, finished windows still finished.
                let counts = table_counts(store.as_ref(), &connection);
                for (table, n) in &previous_counts {
                    assert!(
                        counts[table] >= *n,
                        "{table} lost rows at kill {tag}: {n} → {}",
                        counts[table]
                    );
                }
                let now_windows = store.windows(&connection).expect("the cursors");
                for done in previous_windows.iter().filter(|w| w.state == "done") {
                    let same = now_windows
                        .iter()
                        .find(|w| w.scope == done.scope && w.start == done.start);
                    assert!(
                        same.is_some_and(|w| w.state == "done" && w.end == done.end),
                        "the done window {done:?} changed at kill {tag}: {same:?}"
                    );
                }
                let count = |parents: bool, done: bool| {
                    now_windows
                        .iter()
                        .filter(|w| {
                            is_per_parent(&w.scope) == parents && (!done || w.state == "done")
                        })
                        .count()
                };
                attempt.left = format!(
                    "{} rows; top-level windows {}/{} done ({} partial); per-customer windows {}/{} done",
                    counts.values().sum::<u64>(),
                    count(false, true),
                    count(false, false),
                    now_windows.iter().filter(|w| w.state == "partial").count(),
                    count(true, true),
                    count(true, false),
                );
                attempts.push(attempt);
                let dupes = duplicates(store.as_ref(), &connection);
                assert!(dupes.is_empty(), "duplicates after kill {tag}: {dupes:?}");
                assert!(
                    state(store.as_ref(), &connection, "backfill.done").is_none(),
                    "the backfill is not finished"
                );
                previous_counts = counts;
                previous_windows = now_windows;
            }
            // The run that finishes.
            tag += 1;
            snapshots.insert(tag, store.windows(&connection).expect("the cursors"));
            let before_final = table_counts(store.as_ref(), &connection);
            proxy.set_run(tag);
            let t = Instant::now();
            let final_run = mirror
                .run(
                    &["sync", "--budget-share", BACKFILL_SHARE, "--json"],
                    &KeyInput::None,
                )
                .success();
            let final_seconds = t.elapsed().as_secs_f64();
            let report = final_run.json()[0].clone();
            assert_eq!(report["run"]["kind"], "backfill", "{report}");
            assert_eq!(report["run"]["status"], "succeeded", "{report}");
            let after_final = table_counts(store.as_ref(), &connection);
            // A resumed run inserts only what was not there: rows written before the kills stay.
            let final_inserted = inserted(&report["run"]);
            let grew: u64 = after_final
                .iter()
                .map(|(t, n)| n - before_final.get(t).copied().unwrap_or(0))
                .sum();
            assert_eq!(
                final_inserted, grew,
                "the final run's inserted count is what the tables grew by"
            );
            let total: u64 = after_final.values().sum();
            assert!(
                grew < total,
                "the killed runs' rows were kept: {grew} of {total} inserted by the final run"
            );
            let customers = customers_created(store.as_ref(), &connection);
            // Request by request: nothing a killed run finished was listed again.
            let requests = proxy.requests();
            let mut problems = Vec::new();
            for run in 1..=tag {
                let of_run: Vec<&Logged> = requests.iter().filter(|r| r.run == run).collect();
                for problem in refetches(&of_run, &snapshots[&run], &customers) {
                    problems.push(format!("run {run}: {problem}"));
                }
            }
            assert!(
                problems.is_empty(),
                "{} requests fetched finished work again:\n{}",
                problems.len(),
                problems
                    .iter()
                    .take(30)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let baseline_seconds = baseline_thread.join().expect("the baseline");
            (
                baseline_seconds,
                attempts,
                tag,
                (final_seconds, final_inserted, total, grew),
            )
        },
    );
    let store = mirror.store();
    let baseline_requests = baseline_proxy.requests();
    let baseline_history = baseline.syncs(&label);
    assert_eq!(
        baseline_history[0]["requests"].as_u64(),
        Some(baseline_requests.iter().filter(|r| r.run == 1).count() as u64),
        "the proxy saw every request the baseline counted"
    );
    let requests = proxy.requests();
    let backfill_requests: Vec<&Logged> = requests
        .iter()
        .filter(|r| (1..=backfill_tags).contains(&r.run))
        .collect();
    let per_parent = |list: &[&Logged]| list.iter().filter(|r| parent_request(r).is_some()).count();
    let baseline_list: Vec<&Logged> = baseline_requests.iter().filter(|r| r.run == 1).collect();
    let (base_total, base_parent) = (baseline_list.len(), per_parent(&baseline_list));
    let (resumed_total, resumed_parent) = (backfill_requests.len(), per_parent(&backfill_requests));
    let kills = backfill_attempts.iter().filter(|a| a.killed).count();
    for attempt in &backfill_attempts {
        eprintln!("{attempt}");
    }
    eprintln!(
        "backfill: {kills} kills; baseline {base_total} requests ({base_parent} per-customer) in {baseline_run:.1} s; \
         killed + final runs {resumed_total} requests ({resumed_parent} per-customer); final run {:.1} s inserted {} of {} rows",
        final_backfill.0, final_backfill.1, final_backfill.2,
    );
    assert!(kills >= 10, "{kills} kills during the backfill");
    // Top-level lists are checkpointed page by page: a kill loses at most the pages in flight
    // (one per worker, plus a split's first page).
    let top_allowance = backfill_attempts.len() * (TOP_CONCURRENCY + 2);
    assert!(
        resumed_total - resumed_parent <= base_total - base_parent + top_allowance,
        "top-level list requests: {} resumed against {} in one clean run (+{top_allowance} allowed)",
        resumed_total - resumed_parent,
        base_total - base_parent
    );
    let comparison = compare_export(&emu.export(), store.as_ref(), &connection, &[]);
    assert!(
        comparison.exact(),
        "after the killed backfill: {}",
        comparison.describe()
    );

    // ---- Phase 2: incremental runs, killed while they replay events ----
    emu.activity(300, 1);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut tag = backfill_tags;
    let mut cap = 3.0f64;
    let mut resumed_positions = 0;
    let mut made = 0;
    while attempts.iter().filter(|a| a.killed).count() < KILLS {
        assert!(attempts.len() < 40, "too many attempts: {attempts:?}");
        made += emu.activity(50, 100 + tag as u64);
        tag += 1;
        let position = state(store.as_ref(), &connection, "events.position");
        proxy.set_run(tag);
        let delay = rng.between(0.2, cap);
        // Default pacing (half of test mode's 25 requests a second).
        let attempt = run_and_kill(
            &mirror,
            &["sync"],
            &format!("incremental-{tag}"),
            tag,
            delay,
        );
        // Bisecting toward the runs' length: below a run that ended on its own, back up after
        // a kill (runs that are always killed before their first events page make no progress).
        cap = if attempt.killed {
            (cap * 1.3).min(3.0)
        } else {
            (attempt.ran * 0.8).max(0.4)
        };
        // The run replayed events from the position the last (killed) run left.
        let first_replay = proxy.requests().into_iter().find(|r| {
            r.run == tag && r.path() == "/v1/events" && r.param("limit").as_deref() != Some("1")
        });
        let replayed = first_replay.is_some();
        if let Some(first) = first_replay {
            assert_eq!(
                first.param("ending_before"),
                position,
                "run {tag} replays from the stored position"
            );
            resumed_positions += 1;
        }
        let dupes = duplicates(store.as_ref(), &connection);
        assert!(dupes.is_empty(), "duplicates after run {tag}: {dupes:?}");
        let mut attempt = attempt;
        let moved = state(store.as_ref(), &connection, "events.position") != position;
        attempt.left = format!(
            "{} requests; {}; events position {}; {} events kept",
            proxy.requests().iter().filter(|r| r.run == tag).count(),
            if replayed {
                "replay began at the stored position"
            } else {
                "stopped before the replay"
            },
            if moved { "moved" } else { "unchanged" },
            store.event_count(&connection).expect("events")
        );
        attempts.push(attempt);
    }
    let incremental_kills = attempts.iter().filter(|a| a.killed).count();
    let t = Instant::now();
    let last = mirror
        .run(
            &["sync", "--budget-share", "1.0", "--json"],
            &KeyInput::None,
        )
        .success();
    let last_seconds = t.elapsed().as_secs_f64();
    let report = last.json()[0].clone();
    assert_eq!(report["run"]["kind"], "incremental", "{report}");
    assert_eq!(report["run"]["status"], "succeeded", "{report}");
    for attempt in &attempts {
        eprintln!("{attempt}");
    }
    eprintln!(
        "incremental: {incremental_kills} kills in {} runs ({} ended on their own), \
         {resumed_positions} runs replayed from the stored position, {made} changes made meanwhile; last run {last_seconds:.1} s",
        attempts.len(),
        attempts.iter().filter(|a| !a.killed).count(),
    );
    assert!(
        incremental_kills >= 10,
        "{incremental_kills} kills during incremental runs"
    );
    let comparison = compare_export(&emu.export(), store.as_ref(), &connection, &[]);
    assert!(
        comparison.exact(),
        "after the killed incremental runs: {}",
        comparison.describe()
    );
    let dupes = duplicates(store.as_ref(), &connection);
    assert!(dupes.is_empty(), "duplicates: {dupes:?}");

    // The history: killed runs never got to finish, so they stay "running".
    let history = mirror.syncs(&label);
    let running = history.iter().filter(|r| r["status"] == "running").count();
    let all_kills = kills + incremental_kills;
    assert!(
        running <= all_kills,
        "only killed runs stay running in the history: {running} running, {all_kills} kills"
    );
    eprintln!(
        "compared {} objects ({} rows); {} runs in the history, {running} left running by kills; {:.1} s in all",
        comparison.compared,
        comparison.rows,
        history.len(),
        started.elapsed().as_secs_f64()
    );
}
