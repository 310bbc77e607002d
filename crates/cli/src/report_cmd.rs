//! `stripe-mirror report summary|mrr|movements|churn|revenue|failed-payments ACCOUNT`: revenue
//! reports from the mirror as a table, CSV or JSON (amounts in minor units and formatted).

use serde_json::{Value, json};
use sm_engine::money::format as money;
use sm_engine::ops::reports::{Report, ReportOptions, report};
use sm_reports::calendar::{Interval, date_label, parse_date, parse_offset, period_start};
use sm_reports::{ChurnRecognition, DiscountMode, PeriodMetrics, Ratio, Settings, micros_to_minor};

use crate::CliError;
use crate::context::{GlobalArgs, print_json};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportKind {
    /// MRR, ARR, subscribers, ARPA, the last period's movements and churn, net revenue.
    Summary,
    /// MRR and ARR at each period's end, with subscribers and ARPA.
    Mrr,
    /// Each period's MRR movements: new, reactivation, expansion, contraction, churn.
    Movements,
    /// Churn rates per period: subscribers, gross and net MRR, quick ratio, LTV.
    Churn,
    /// Net revenue from balance transactions by reporting category.
    Revenue,
    /// Failed charges and renewal invoices whose first attempt failed, with recovery.
    FailedPayments,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DiscountArg {
    /// Only forever coupons lower MRR (Stripe's default).
    ForeverOnly,
    /// Forever and repeating coupons while they last.
    Recurring,
    /// Every coupon, once-coupons for their one period.
    All,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ChurnArg {
    /// When the subscription actually ends.
    AtPeriodEnd,
    /// As soon as a cancellation is asked for.
    AtRequest,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// Which report.
    #[arg(value_enum)]
    kind: ReportKind,
    /// The connection (name, acct_…, or acct_…:test|live).
    account: String,
    /// First day (YYYY-MM-DD; default: the start of the month eleven months ago).
    #[arg(long)]
    from: Option<String>,
    /// Day after the last (YYYY-MM-DD; default: tomorrow, so today is included).
    #[arg(long)]
    to: Option<String>,
    #[arg(long, default_value = "month")]
    interval: Interval,
    /// Only this currency (e.g. usd).
    #[arg(long)]
    currency: Option<String>,
    /// The reporting time zone as a UTC offset (+02:00, -0530, UTC).
    #[arg(long, default_value = "UTC")]
    utc_offset: String,
    /// Comma-separated values instead of a table.
    #[arg(long)]
    csv: bool,
    /// Which coupons lower MRR.
    #[arg(long, value_enum, default_value = "forever-only")]
    discount_mode: DiscountArg,
    /// When a cancellation lowers MRR.
    #[arg(long, value_enum, default_value = "at-period-end")]
    churn_recognition: ChurnArg,
    /// Count a subscription past due for more than this many days as churned (Baremetrics: 30).
    #[arg(long)]
    delinquency_churn_days: Option<u32>,
    /// Months per week for weekly prices (default 52/12; Paddle: 4.33).
    #[arg(long)]
    week_factor: Option<String>,
    /// Days per month for daily prices (default 365/12; some tools: 30).
    #[arg(long)]
    days_per_month: Option<String>,
    /// A customer who arrives and leaves in the same period counts in neither (ProfitWell).
    #[arg(long)]
    net_same_period_new_churn: bool,
}

fn bad(message: String) -> CliError {
    sm_engine::EngineError::invalid(message).into()
}

fn decimal_arg(name: &str, text: &Option<String>) -> Result<Option<Ratio>, CliError> {
    text.as_deref()
        .map(|t| {
            Ratio::parse_decimal(t)
                .filter(|r| r.is_positive())
                .ok_or_else(|| {
                    bad(format!(
                        "--{name} must be a positive number such as 4.33, not {t:?}"
                    ))
                })
        })
        .transpose()
}

pub async fn run(global: &GlobalArgs, args: ReportArgs) -> Result<(), CliError> {
    let offset = parse_offset(&args.utc_offset).ok_or_else(|| {
        bad(format!(
            "--utc-offset must look like +02:00, -0530 or UTC, not {:?}",
            args.utc_offset
        ))
    })?;
    let date = |name: &str, text: &str| {
        parse_date(text, offset).ok_or_else(|| {
            bad(format!(
                "--{name} must be a date as YYYY-MM-DD, not {text:?}"
            ))
        })
    };
    let now = sm_engine::now();
    let to = match &args.to {
        Some(text) => date("to", text)?,
        None => period_start(now, Interval::Day, offset) + 86_400,
    };
    let from = match &args.from {
        Some(text) => date("from", text)?,
        None => {
            let mut start = period_start(now, Interval::Month, offset);
            for _ in 0..11 {
                start = period_start(start - 1, Interval::Month, offset);
            }
            start
        }
    };
    let settings = Settings {
        discount_mode: match args.discount_mode {
            DiscountArg::ForeverOnly => DiscountMode::ForeverOnly,
            DiscountArg::Recurring => DiscountMode::Recurring,
            DiscountArg::All => DiscountMode::All,
        },
        churn_recognition: match args.churn_recognition {
            ChurnArg::AtPeriodEnd => ChurnRecognition::AtPeriodEnd,
            ChurnArg::AtRequest => ChurnRecognition::AtRequest,
        },
        delinquency_churn_days: args.delinquency_churn_days,
        week_factor: decimal_arg("week-factor", &args.week_factor)?,
        days_per_month: decimal_arg("days-per-month", &args.days_per_month)?,
        net_same_period_new_churn: args.net_same_period_new_churn,
    };
    let engine = global.engine()?;
    let report = report(
        &engine,
        &args.account,
        ReportOptions {
            from,
            to,
            interval: args.interval,
            currency: args.currency.as_deref().map(str::to_ascii_lowercase),
            utc_offset: offset,
            settings,
        },
    )
    .await?;
    let table = table(&report, args.kind);
    if global.json {
        print_json(&as_json(&report, args.kind, &table));
    } else if args.csv {
        for row in std::iter::once(&table.header).chain(&table.rows) {
            let cells: Vec<String> = row.iter().map(|c| csv_cell(&c.text)).collect();
            say!("{}", cells.join(","));
        }
    } else {
        print_table(&report, &table);
    }
    Ok(())
}

/// A cell: its text, and for amounts the number in minor units (for JSON).
#[derive(Clone)]
struct Cell {
    text: String,
    number: Option<Value>,
}

fn text(t: impl Into<String>) -> Cell {
    Cell {
        text: t.into(),
        number: None,
    }
}

fn amount(micros: i128, currency: &str) -> Cell {
    let minor = micros_to_minor(micros);
    Cell {
        text: money(minor, currency),
        number: Some(json!(minor)),
    }
}

fn minor(value: i64, currency: &str) -> Cell {
    Cell {
        text: money(value, currency),
        number: Some(json!(value)),
    }
}

fn count(n: u64) -> Cell {
    Cell {
        text: n.to_string(),
        number: Some(json!(n)),
    }
}

fn rate(value: Option<f64>) -> Cell {
    Cell {
        text: value.map_or_else(|| "—".to_owned(), |v| format!("{:.2}%", v * 100.0)),
        number: Some(value.map_or(Value::Null, |v| json!(v))),
    }
}

fn plain(value: Option<f64>, currency: Option<&str>) -> Cell {
    match (value, currency) {
        (Some(v), Some(currency)) => minor(v.round() as i64, currency),
        (Some(v), None) => Cell {
            text: format!("{v:.2}"),
            number: Some(json!(v)),
        },
        (None, _) => Cell {
            text: "—".into(),
            number: Some(Value::Null),
        },
    }
}

struct Table {
    header: Vec<Cell>,
    rows: Vec<Vec<Cell>>,
    /// Which column holds the figure a chart shows.
    chart_column: Option<usize>,
}

fn period_label(report: &Report, start: i64) -> String {
    date_label(start, report.utc_offset)
}

fn metric_rows(report: &Report, f: impl Fn(&PeriodMetrics) -> Vec<Cell>) -> Vec<Vec<Cell>> {
    report
        .mrr
        .iter()
        .map(|p| {
            let mut row = vec![
                text(period_label(report, p.start)),
                text(p.currency.clone()),
            ];
            row.extend(f(p));
            row
        })
        .collect()
}

fn headers(names: &[&str]) -> Vec<Cell> {
    names.iter().map(|n| text(*n)).collect()
}

fn table(report: &Report, kind: ReportKind) -> Table {
    match kind {
        ReportKind::Mrr => Table {
            header: headers(&["period", "currency", "mrr", "arr", "subscribers", "arpa"]),
            rows: metric_rows(report, |p| {
                vec![
                    amount(p.mrr_end, &p.currency),
                    amount(p.mrr_end * 12, &p.currency),
                    count(p.subscribers_end),
                    plain(p.arpa, Some(&p.currency)),
                ]
            }),
            chart_column: Some(2),
        },
        ReportKind::Movements | ReportKind::Summary => Table {
            header: headers(&[
                "period",
                "currency",
                "mrr_start",
                "new",
                "reactivation",
                "expansion",
                "contraction",
                "churn",
                "mrr_end",
                "subscribers",
            ]),
            rows: metric_rows(report, |p| {
                vec![
                    amount(p.mrr_start, &p.currency),
                    amount(p.new, &p.currency),
                    amount(p.reactivation, &p.currency),
                    amount(p.expansion, &p.currency),
                    amount(-p.contraction, &p.currency),
                    amount(-p.churn, &p.currency),
                    amount(p.mrr_end, &p.currency),
                    count(p.subscribers_end),
                ]
            }),
            chart_column: Some(8),
        },
        ReportKind::Churn => Table {
            header: headers(&[
                "period",
                "currency",
                "churned",
                "subscriber_churn_30d",
                "gross_mrr_churn",
                "net_mrr_churn",
                "quick_ratio",
                "ltv",
            ]),
            rows: metric_rows(report, |p| {
                vec![
                    count(p.churned_subscribers),
                    rate(p.subscriber_churn_rate),
                    rate(p.gross_mrr_churn_rate),
                    rate(p.net_mrr_churn_rate),
                    plain(p.quick_ratio, None),
                    plain(p.ltv, Some(&p.currency)),
                ]
            }),
            chart_column: None,
        },
        ReportKind::Revenue => Table {
            header: headers(&[
                "period",
                "currency",
                "gross_sales",
                "refunds",
                "disputes",
                "fees",
                "net_revenue",
                "payouts",
                "ending_balance",
            ]),
            rows: report
                .revenue
                .iter()
                .map(|r| {
                    vec![
                        text(period_label(report, r.start)),
                        text(r.currency.clone()),
                        minor(r.gross_sales, &r.currency),
                        minor(r.refunds, &r.currency),
                        minor(r.disputes, &r.currency),
                        minor(-r.fees, &r.currency),
                        minor(r.net_revenue, &r.currency),
                        minor(r.payouts, &r.currency),
                        minor(r.ending_balance, &r.currency),
                    ]
                })
                .collect(),
            chart_column: Some(6),
        },
        ReportKind::FailedPayments => Table {
            header: headers(&[
                "period",
                "currency",
                "failed_charges",
                "failed_amount",
                "renewals",
                "renewals_failed",
                "recovered",
                "failure_rate",
                "recovery_rate",
                "top_decline",
            ]),
            rows: report
                .failed_payments
                .iter()
                .flat_map(|(start, _, rows)| {
                    rows.iter().map(move |f| {
                        let top = f
                            .decline_reasons
                            .iter()
                            .max_by_key(|(_, n)| **n)
                            .map_or_else(String::new, |(reason, n)| format!("{reason} ({n})"));
                        vec![
                            text(period_label(report, *start)),
                            text(f.currency.clone()),
                            count(f.failed_charges),
                            minor(f.failed_charge_amount, &f.currency),
                            count(f.renewals),
                            count(f.renewals_failed),
                            count(f.renewals_recovered),
                            rate(f.failure_rate),
                            rate(f.recovery_rate),
                            text(top),
                        ]
                    })
                })
                .collect(),
            chart_column: Some(2),
        },
    }
}

fn as_json(report: &Report, kind: ReportKind, table: &Table) -> Value {
    let rows: Vec<Value> = table
        .rows
        .iter()
        .map(|row| {
            let mut object = serde_json::Map::new();
            for (name, cell) in table.header.iter().zip(row) {
                match &cell.number {
                    Some(number) => {
                        object.insert(name.text.clone(), number.clone());
                        object.insert(format!("{}_formatted", name.text), json!(cell.text));
                    }
                    None => {
                        object.insert(name.text.clone(), json!(cell.text));
                    }
                }
            }
            Value::Object(object)
        })
        .collect();
    let mut answer = json!({
        "account": report.account,
        "livemode": report.livemode,
        "from": date_label(report.from, report.utc_offset),
        "to": date_label(report.to, report.utc_offset),
        "interval": report.interval,
        "utc_offset": report.utc_offset,
        "settings": report.settings,
        "observed_from": report.observed_from,
        "periods": rows,
        "notes": report.notes,
    });
    if matches!(kind, ReportKind::Summary) {
        answer["summary"] = summary_json(report);
    }
    answer
}

/// The summary's headline per currency: the last period's figures and the range's revenue.
fn summary_json(report: &Report) -> Value {
    let mut by_currency = serde_json::Map::new();
    for p in report
        .mrr
        .iter()
        .filter(|p| report.mrr.iter().rfind(|q| q.currency == p.currency) == Some(p))
    {
        let net: i64 = report
            .revenue
            .iter()
            .filter(|r| r.currency == p.currency)
            .map(|r| r.net_revenue)
            .sum();
        by_currency.insert(
            p.currency.clone(),
            json!({
                "mrr": micros_to_minor(p.mrr_end),
                "mrr_formatted": money(micros_to_minor(p.mrr_end), &p.currency),
                "arr": micros_to_minor(p.mrr_end * 12),
                "arr_formatted": money(micros_to_minor(p.mrr_end * 12), &p.currency),
                "subscribers": p.subscribers_end,
                "subscriber_churn_30d": p.subscriber_churn_rate,
                "net_revenue": net,
                "net_revenue_formatted": money(net, &p.currency),
            }),
        );
    }
    Value::Object(by_currency)
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn print_table(report: &Report, table: &Table) {
    if table.rows.is_empty() {
        say!("nothing to report for {} in this range", report.account);
    }
    let widths: Vec<usize> = (0..table.header.len())
        .map(|i| {
            std::iter::once(&table.header)
                .chain(&table.rows)
                .map(|row| row.get(i).map_or(0, |c| c.text.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&table.header).chain(&table.rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i < 2 {
                    format!("{:<width$}", cell.text)
                } else {
                    format!("{:>width$}", cell.text)
                }
            })
            .collect();
        say!("{}", line.join("  ").trim_end());
    }
    // On a terminal, a bar per period for the headline figure.
    if let Some(column) = table.chart_column
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && !table.rows.is_empty()
    {
        let values: Vec<f64> = table
            .rows
            .iter()
            .map(|row| {
                row[column]
                    .number
                    .as_ref()
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            })
            .collect();
        let top = values.iter().cloned().fold(0.0_f64, |a, b| a.max(b.abs()));
        if top > 0.0 {
            say!("");
            say!("{}:", table.header[column].text);
            for (row, value) in table.rows.iter().zip(&values) {
                let bar = "█".repeat(((value.abs() / top) * 40.0).round() as usize);
                say!(
                    "{} {:<4} {bar} {}",
                    row[0].text,
                    row[1].text,
                    row[column].text
                );
            }
        }
    }
    for note in &report.notes {
        say!("note: {note}");
    }
}
