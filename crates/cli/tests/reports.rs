//! `stripe-mirror report` through the real binary: on a synced mirror each report answers as a
//! table, as CSV and as JSON (minor units and formatted strings, MRR's identity holding in every
//! period); bad input is refused with what to do and exit 2; an unknown account is exit 3.

mod support;

use support::{Emu, KeyInput, Mirror};

#[test]
fn reports_answer_as_tables_csv_and_json_and_refuse_bad_input() {
    let emu = Emu::start();
    let account = emu.account("Reports Co", 60);
    let mirror = Mirror::new("reports", &emu.base);
    mirror.connect(&account.restricted_test, &["--name", "Reports Co"]);
    mirror.run(&["sync"], &KeyInput::None).success();

    let summary = mirror
        .run(
            &["--json", "report", "summary", "Reports Co"],
            &KeyInput::None,
        )
        .success()
        .json();
    let periods = summary["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 12, "twelve months by default: {summary}");
    for period in periods {
        let minor = |field: &str| period[field].as_i64().unwrap();
        // Rounded for display each, so the identity holds to a cent per movement.
        let moved = minor("new")
            + minor("reactivation")
            + minor("expansion")
            + minor("contraction")
            + minor("churn");
        assert!(
            (minor("mrr_end") - minor("mrr_start") - moved).abs() <= 5,
            "{period}"
        );
        assert!(
            period["mrr_end_formatted"]
                .as_str()
                .unwrap()
                .starts_with('$'),
            "{period}"
        );
    }
    let usd = &summary["summary"]["usd"];
    assert!(usd["mrr"].as_i64().unwrap() > 0, "{summary}");
    // ARR is 12 × the exact MRR, rounded once: within 12 cents of 12 × the rounded MRR.
    let arr = usd["arr"].as_i64().unwrap();
    assert!(
        (arr - 12 * usd["mrr"].as_i64().unwrap()).abs() <= 12,
        "{summary}"
    );

    for kind in ["mrr", "movements", "churn", "revenue", "failed-payments"] {
        let table = mirror
            .run(
                &[
                    "report",
                    kind,
                    "Reports Co",
                    "--from",
                    "2026-01-01",
                    "--interval",
                    "month",
                ],
                &KeyInput::None,
            )
            .success();
        let header = table.stdout.lines().next().unwrap_or_default();
        assert!(
            header.starts_with("period") && header.contains("currency"),
            "{}",
            table.describe()
        );
        let csv = mirror
            .run(
                &["report", kind, "Reports Co", "--csv", "--interval", "week"],
                &KeyInput::None,
            )
            .success();
        let columns = csv.stdout.lines().next().unwrap().split(',').count();
        assert!(
            csv.stdout
                .lines()
                .all(|line| line.split(',').count() >= columns),
            "{}",
            csv.describe()
        );
    }

    // Periods cut in a named zone: each day starts at its local midnight, and the answer names
    // the zone.
    let paris = mirror
        .run(
            &[
                "report",
                "mrr",
                "Reports Co",
                "--from",
                "2026-03-28",
                "--to",
                "2026-04-01",
                "--interval",
                "day",
                "--time-zone",
                "Europe/Paris",
                "--json",
            ],
            &KeyInput::None,
        )
        .success()
        .json();
    assert_eq!(paris["time_zone"], "Europe/Paris", "{paris}");
    assert_eq!(paris["from"], "2026-03-28", "{paris}");
    let days: Vec<&str> = paris["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["period"].as_str().unwrap())
        .collect();
    assert!(
        ["2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"]
            .iter()
            .all(|d| days.contains(d)),
        "{days:?}"
    );

    for (args, says) in [
        (
            vec!["report", "mrr", "Reports Co", "--from", "2026-02-30"],
            "from must be a date",
        ),
        (
            vec!["report", "mrr", "Reports Co", "--time-zone", "Mars/Olympus"],
            "time_zone: \"Mars/Olympus\" is not a time zone: use an IANA name",
        ),
        (
            vec!["report", "mrr", "Reports Co", "--week-factor", "0"],
            "week_factor must be a positive number",
        ),
        (
            vec![
                "report",
                "mrr",
                "Reports Co",
                "--from",
                "2026-03-01",
                "--to",
                "2026-02-01",
            ],
            "must come after its start",
        ),
    ] {
        let refused = mirror.run(&args, &KeyInput::None);
        assert_eq!(refused.code, 2, "{}", refused.describe());
        assert!(refused.stderr.contains(says), "{}", refused.describe());
    }
    let unknown = mirror.run(&["report", "summary", "Nobody Inc"], &KeyInput::None);
    assert_eq!(unknown.code, 3, "{}", unknown.describe());
}
