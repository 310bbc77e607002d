//! `stripe-mirror report summary|mrr|movements|churn|revenue|failed-payments ACCOUNT`: revenue
//! reports from the mirror as a table, CSV or JSON (amounts in minor units and formatted).

use serde_json::Value;
use sm_engine::ops::reports::{self, Report, ReportQuery, ReportTable};

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
    /// day, week or month.
    #[arg(long, default_value = "month")]
    interval: String,
    /// Only this currency (e.g. usd).
    #[arg(long)]
    currency: Option<String>,
    /// The reporting time zone: an IANA name (Europe/Paris, days of 23 or 25 hours when its
    /// clocks change) or an offset (+02:00, -0530, UTC).
    #[arg(
        long,
        visible_alias = "utc-offset",
        default_value = "UTC",
        allow_hyphen_values = true
    )]
    time_zone: String,
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
    #[arg(long, allow_hyphen_values = true)]
    week_factor: Option<String>,
    /// Days per month for daily prices (default 365/12; some tools: 30).
    #[arg(long, allow_hyphen_values = true)]
    days_per_month: Option<String>,
    /// A customer who arrives and leaves in the same period counts in neither (ProfitWell).
    #[arg(long)]
    net_same_period_new_churn: bool,
}

impl ReportKind {
    fn engine(self) -> reports::ReportKind {
        match self {
            ReportKind::Summary => reports::ReportKind::Summary,
            ReportKind::Mrr => reports::ReportKind::Mrr,
            ReportKind::Movements => reports::ReportKind::Movements,
            ReportKind::Churn => reports::ReportKind::Churn,
            ReportKind::Revenue => reports::ReportKind::Revenue,
            ReportKind::FailedPayments => reports::ReportKind::FailedPayments,
        }
    }
}

pub async fn run(global: &GlobalArgs, args: ReportArgs) -> Result<(), CliError> {
    let query = ReportQuery {
        from: args.from,
        to: args.to,
        interval: Some(args.interval),
        currency: args.currency,
        time_zone: Some(args.time_zone),
        discount_mode: Some(
            match args.discount_mode {
                DiscountArg::ForeverOnly => "forever_only",
                DiscountArg::Recurring => "recurring",
                DiscountArg::All => "all",
            }
            .to_owned(),
        ),
        churn_recognition: Some(
            match args.churn_recognition {
                ChurnArg::AtPeriodEnd => "at_period_end",
                ChurnArg::AtRequest => "at_request",
            }
            .to_owned(),
        ),
        delinquency_churn_days: args.delinquency_churn_days,
        week_factor: args.week_factor,
        days_per_month: args.days_per_month,
        net_same_period_new_churn: Some(args.net_same_period_new_churn),
    };
    let kind = args.kind.engine();
    let mut options = query.options(sm_engine::now())?;
    options.only = Some(kind);
    let engine = global.engine()?;
    let report = reports::report(&engine, &args.account, options).await?;
    if global.json {
        print_json(&report.to_json(kind));
    } else if args.csv {
        for line in report.table(kind).csv().lines() {
            say!("{line}");
        }
    } else {
        print_table(&report, &report.table(kind));
    }
    Ok(())
}

fn print_table(report: &Report, table: &ReportTable) {
    if table.rows.is_empty() {
        say!("nothing to report for {} in this range", report.account);
    }
    let header: Vec<String> = table.columns.iter().map(|c| (*c).to_owned()).collect();
    let lines: Vec<Vec<String>> = std::iter::once(header)
        .chain(
            table
                .rows
                .iter()
                .map(|row| row.iter().map(|c| c.text.clone()).collect()),
        )
        .collect();
    let widths: Vec<usize> = (0..table.columns.len())
        .map(|i| {
            lines
                .iter()
                .map(|line| line.get(i).map_or(0, |t| t.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (text, width))| {
                if i < 2 {
                    format!("{text:<width$}")
                } else {
                    format!("{text:>width$}")
                }
            })
            .collect();
        say!("{}", cells.join("  ").trim_end());
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
        let top = values.iter().fold(0.0_f64, |a, b| a.max(b.abs()));
        if top > 0.0 {
            say!("");
            say!("{}:", table.columns[column]);
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
