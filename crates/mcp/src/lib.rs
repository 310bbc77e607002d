//! Agent tools: an MCP server over the mirror. The read tools answer from the mirror (fast,
//! offline, every connected account) through `sm_engine::ops`, as the CLI and the REST API do;
//! errors come from the one error table: bad arguments as invalid-params errors, anything else
//! as a tool error with its code, message and what to do. No key is ever in an answer.
//! The write tools go through Stripe (`sm_engine::ops::writes`): offered only where a connected
//! key's probed permissions allow them (none with `--read-only`), each under an idempotency key,
//! and Stripe's answer is in the mirror before the tool answers.
//! `stripe-mirror mcp` serves these over stdio (its log goes to standard error only).

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use sm_engine::ops::writes::{self, Method, WriteRequest};
use sm_engine::ops::{connections, events, live, objects, query};
use sm_engine::{Engine, EngineError, ErrorCode};
use sm_warehouse::{AccountRecord, EventQuery, PageQuery};

/// The tools, over one engine.
#[derive(Clone)]
pub struct MirrorTools {
    engine: Arc<Engine>,
    tool_router: ToolRouter<Self>,
}

/// Serves the tools over standard input and output until the client closes them; with
/// `read_only`, no write tool.
pub async fn serve_stdio(engine: Arc<Engine>, read_only: bool) -> Result<(), String> {
    let running = MirrorTools::new(engine, read_only)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP session did not start: {e}"))?;
    running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| format!("the MCP session ended badly: {e}"))
}

/// The tools over streamable HTTP for `serve`'s `/mcp`: stateless (each POST is answered on
/// its own, as JSON, so nothing is kept between requests and every request is authenticated by
/// the caller), bodies up to 64 KiB, and only `allowed_hosts` accepted in `Host` (DNS rebinding).
pub type HttpTools = rmcp::transport::StreamableHttpService<
    MirrorTools,
    rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
>;

/// Makes the `/mcp` service; with `read_only`, no write tool.
pub fn http_service(engine: Arc<Engine>, read_only: bool, allowed_hosts: Vec<String>) -> HttpTools {
    let mut config = rmcp::transport::StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(allowed_hosts);
    config.max_request_body_bytes = 64 * 1024;
    // One set of tools made once (their schemas are built then), cloned per request.
    let tools = MirrorTools::new(engine, read_only);
    rmcp::transport::StreamableHttpService::new(
        move || Ok(tools.clone()),
        Default::default(),
        config,
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AccountOnly {
    /// The connection: its name, `acct_…` id, or `acct_…:test|live`. May be left out when only
    /// one account is connected.
    pub account: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListObjects {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The table: customers, subscriptions, invoices, payment_intents, charges, refunds,
    /// disputes, payouts, products, prices, coupons, balance_transactions, … (list_accounts
    /// and the mirror's SQL show every one).
    pub table: String,
    /// Objects per page, 1 to 100 (default 10).
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub starting_after: Option<String>,
    /// Exact matches on the table's typed columns, e.g. {"status": "active"} for
    /// subscriptions, {"customer": "cus_…"} for invoices, {"email": "a@b.com"} for customers.
    pub filters: Option<BTreeMap<String, String>>,
    /// Only objects created at or after this Unix time.
    pub created_gte: Option<i64>,
    /// Only objects created before this Unix time.
    pub created_lt: Option<i64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SearchCustomers {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// Part of an email address, a name or a metadata key or value, any case (e.g. "lovelace",
    /// "@example.com" or "gold").
    pub text: String,
    /// Customers to return, 1 to 50 (default 10), newest first.
    #[schemars(range(min = 1, max = 50))]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RevenueSummary {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// First day, YYYY-MM-DD (default: the start of the month eleven months ago).
    pub from: Option<String>,
    /// The day after the last, YYYY-MM-DD (default: tomorrow).
    pub to: Option<String>,
    /// "day", "week" or "month" (default "month").
    pub interval: Option<String>,
    /// Only this currency, e.g. "usd".
    pub currency: Option<String>,
    /// The zone periods are cut in: an IANA name ("Europe/Paris") or an offset ("+02:00");
    /// default "UTC".
    pub time_zone: Option<String>,
    /// Which coupons lower MRR: "forever_only" (default, Stripe's rule), "recurring" or "all".
    pub discount_mode: Option<String>,
    /// When a cancellation lowers MRR: "at_period_end" (default) or "at_request".
    pub churn_recognition: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GetCustomer {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The customer's id (cus_…) or exact email address.
    pub customer: String,
    /// Subscriptions, invoices and payments to show of each, newest first, 1 to 50 (default 10).
    #[schemars(range(min = 1, max = 50))]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GetObject {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The object's id, e.g. cus_…, sub_…, in_…, pi_…, ch_….
    pub id: String,
    /// Its table, when the id's prefix does not say it.
    pub table: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RecentEvents {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// Event types, exact (`invoice.paid`) or a prefix (`invoice.*`); none: every type.
    pub types: Option<Vec<String>>,
    /// Events per page, 1 to 100 (default 20).
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page (an event id).
    pub starting_after: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Sql {
    /// One read-only SQL statement over the mirror's tables (each row has account_id and
    /// livemode), events, runs and accounts. At most 10,000 rows and 10 s.
    pub sql: String,
}

/// Key–value pairs Stripe keeps on an object (up to 50, keys up to 40 characters).
type Metadata = Option<BTreeMap<String, String>>;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateCustomer {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Metadata,
    /// Give the same key when retrying this call, so that Stripe makes the customer once.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateProduct {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The product's name, as customers see it.
    pub name: String,
    pub description: Option<String>,
    pub metadata: Metadata,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreatePrice {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The product it prices (prod_…).
    pub product: String,
    /// In minor units: 1250 is $12.50 in usd; in whole units for zero-decimal currencies (jpy).
    #[schemars(range(min = 0, max = 99_999_999))]
    pub unit_amount: i64,
    /// Three-letter ISO code, lowercase (usd, eur, jpy).
    pub currency: String,
    /// Bill every day, week, month or year; left out: a one-time price.
    pub recurring_interval: Option<Interval>,
    /// An internal name for the price.
    pub nickname: Option<String>,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreatePaymentLink {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The price sold (price_…).
    pub price: String,
    /// 1 to 999 (default 1).
    #[schemars(range(min = 1, max = 999))]
    pub quantity: Option<u32>,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectionMethod {
    /// Charge the customer's default payment method.
    ChargeAutomatically,
    /// Email the invoice; the customer pays within `days_until_due`.
    SendInvoice,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateInvoice {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The customer billed (cus_…).
    pub customer: String,
    pub description: Option<String>,
    /// Default: charge automatically.
    pub collection_method: Option<CollectionMethod>,
    /// With send_invoice: days to pay, 1 to 365.
    #[schemars(range(min = 1, max = 365))]
    pub days_until_due: Option<u32>,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateInvoiceItem {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The customer it is for (cus_…).
    pub customer: String,
    /// In minor units (1250 is $12.50 in usd); negative for a credit.
    #[schemars(range(min = -99_999_999, max = 99_999_999))]
    pub amount: i64,
    /// Three-letter ISO code, lowercase.
    pub currency: String,
    pub description: Option<String>,
    /// A draft invoice (in_…) to put it on; left out: the customer's next invoice.
    pub invoice: Option<String>,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FinalizeInvoice {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The draft invoice (in_…).
    pub invoice: String,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateRefund {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The payment to refund (pi_…); or give `charge`.
    pub payment_intent: Option<String>,
    /// The charge to refund (ch_…); or give `payment_intent`.
    pub charge: Option<String>,
    /// In minor units; left out: all that is left to refund.
    #[schemars(range(min = 1, max = 99_999_999))]
    pub amount: Option<i64>,
    pub reason: Option<RefundReason>,
    /// Give the same key when retrying this call, so that the money goes back once.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CancelSubscription {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The subscription (sub_…).
    pub subscription: String,
    /// true: it ends when the period paid for ends; false (default): it ends now.
    pub at_period_end: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateSubscription {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The subscription (sub_…); it must be in the mirror when `price` or `quantity` is given.
    pub subscription: String,
    /// A new price (price_…) for its first item.
    pub price: Option<String>,
    /// A new quantity for its first item, 1 to 9999.
    #[schemars(range(min = 1, max = 9999))]
    pub quantity: Option<u32>,
    /// true: end at the end of the period; false: undo that.
    pub cancel_at_period_end: Option<bool>,
    pub metadata: Metadata,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Duration {
    Once,
    Repeating,
    Forever,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateCoupon {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// A percentage off, 0.01 to 100; or give amount_off and currency.
    #[schemars(range(min = 0.01, max = 100.0))]
    pub percent_off: Option<f64>,
    /// An amount off in minor units, with `currency`.
    #[schemars(range(min = 1, max = 99_999_999))]
    pub amount_off: Option<i64>,
    pub currency: Option<String>,
    pub duration: Duration,
    /// With duration repeating: how many months, 1 to 120.
    #[schemars(range(min = 1, max = 120))]
    pub duration_in_months: Option<u32>,
    /// The name customers see.
    pub name: Option<String>,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutMode {
    /// One payment.
    Payment,
    /// A subscription to a recurring price.
    Subscription,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateCheckoutSession {
    /// The connection (name, `acct_…` or `acct_…:test|live`); optional with one connection.
    pub account: Option<String>,
    /// The price sold (price_…).
    pub price: String,
    /// 1 to 999 (default 1).
    #[schemars(range(min = 1, max = 999))]
    pub quantity: Option<u32>,
    /// payment for a one-time price, subscription for a recurring one.
    pub mode: CheckoutMode,
    /// Where the customer lands after paying (https://…).
    pub success_url: String,
    /// Where the customer lands on going back.
    pub cancel_url: Option<String>,
    /// An existing customer (cus_…).
    pub customer: Option<String>,
    /// Give the same key when retrying this call.
    pub idempotency_key: Option<String>,
}

/// Form fields for Stripe: the given ones, in order, without the absent.
struct Form(Vec<(String, String)>);

impl Form {
    fn new() -> Form {
        Form(Vec::new())
    }

    fn set(mut self, name: &str, value: Option<impl ToString>) -> Form {
        if let Some(value) = value {
            self.0.push((name.to_owned(), value.to_string()));
        }
        self
    }

    fn metadata(mut self, metadata: Metadata) -> Form {
        for (key, value) in metadata.unwrap_or_default() {
            self.0.push((format!("metadata[{key}]"), value));
        }
        self
    }
}

/// A currency as Stripe wants it, or an invalid-params error.
fn currency(code: &str) -> Result<String, ErrorData> {
    let code = code.trim().to_ascii_lowercase();
    if code.len() == 3 && code.chars().all(|c| c.is_ascii_lowercase()) {
        Ok(code)
    } else {
        Err(ErrorData::invalid_params(
            format!("currency must be a three-letter ISO code such as usd, not {code:?}"),
            None,
        ))
    }
}

/// An id argument, or an invalid-params error naming it (it goes into a Stripe path).
fn id_arg(name: &str, value: &str, prefix: &str) -> Result<String, ErrorData> {
    let value = value.trim();
    if value.starts_with(prefix)
        && value.len() <= 255
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Ok(value.to_owned())
    } else {
        Err(ErrorData::invalid_params(
            format!("{name} must be an id starting with {prefix}, not {value:?}"),
            None,
        ))
    }
}

/// A write's result in one line: what was made, with its amount formatted.
/// A quantity, 1 to `most` (default 1).
fn quantity(given: Option<u32>, most: u32) -> Result<u32, ErrorData> {
    match given.unwrap_or(1) {
        q if (1..=most).contains(&q) => Ok(q),
        q => Err(ErrorData::invalid_params(
            format!("quantity must be 1 to {most}, not {q}"),
            None,
        )),
    }
}

fn in_words(name: &str, object: &Value) -> String {
    let id = object["id"].as_str().unwrap_or("?");
    let money = |amount: &Value| {
        amount.as_i64().map(|minor| {
            sm_engine::money::format(minor, object["currency"].as_str().unwrap_or("usd"))
        })
    };
    match name {
        "create_price" => format!(
            "Created price {id}: {}{}",
            money(&object["unit_amount"]).unwrap_or_else(|| "custom amount".into()),
            object["recurring"]["interval"]
                .as_str()
                .map(|i| format!(" per {i}"))
                .unwrap_or_default()
        ),
        "create_invoice_item" => format!(
            "Added invoice item {id}: {}",
            money(&object["amount"]).unwrap_or_default()
        ),
        "finalize_invoice" => format!(
            "Finalized invoice {id}: {} due, status {}",
            money(&object["amount_due"]).unwrap_or_default(),
            object["status"].as_str().unwrap_or("?")
        ),
        "create_refund" => format!(
            "Refund {id}: {}, status {}",
            money(&object["amount"]).unwrap_or_default(),
            object["status"].as_str().unwrap_or("?")
        ),
        "cancel_subscription" | "update_subscription" => format!(
            "Subscription {id}: status {}{}",
            object["status"].as_str().unwrap_or("?"),
            if object["cancel_at_period_end"] == Value::Bool(true) && object["status"] != "canceled"
            {
                ", ends at the period's end"
            } else {
                ""
            }
        ),
        "create_payment_link" | "create_checkout_session" => format!(
            "Made {id}: {}",
            object["url"].as_str().unwrap_or("(no url)")
        ),
        _ => format!(
            "Created {} {id}",
            object["object"].as_str().unwrap_or("object")
        ),
    }
}

impl MirrorTools {
    pub fn new(engine: Arc<Engine>, read_only: bool) -> MirrorTools {
        let mut tool_router = Self::tool_router();
        if read_only {
            for write in writes::WRITES {
                tool_router.remove_route(write.name);
            }
        }
        MirrorTools {
            engine,
            tool_router,
        }
    }

    /// The write tools some connected key may use now (by its last probe).
    async fn offered_writes(&self) -> Result<Vec<&'static str>, ErrorData> {
        let all = self
            .engine
            .store_call(|store| store.accounts())
            .await
            .map_err(internal)?;
        Ok(writes::WRITES
            .iter()
            .filter(|w| all.iter().any(|record| writes::allowed(record, w)))
            .map(|w| w.name)
            .collect())
    }

    /// Makes one write through Stripe; the answer is Stripe's object, compact, with the
    /// idempotency key to retry with and a line in words.
    async fn write(
        &self,
        account: Option<&str>,
        name: &str,
        method: Method,
        path: String,
        params: Vec<(String, String)>,
        idempotency_key: Option<String>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(account).await?;
        let write = writes::named(name)
            .ok_or_else(|| ErrorData::internal_error(format!("no write named {name}"), None))?;
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(ErrorData::invalid_params(
                "idempotency_key must be 1 to 255 visible ASCII characters",
                None,
            ));
        }
        let request = WriteRequest {
            write,
            method,
            path,
            params,
            idempotency_key,
        };
        let outcome = writes::perform(&self.engine, &record, request).await;
        settle(outcome.map(|done| {
            json!({
                "account": record.connection.label(),
                "done": in_words(name, &done.object),
                "object": done.object,
                "idempotency_key": done.idempotency_key,
                "in_mirror": done.mirrored,
            })
        }))
    }

    /// The connection an argument names, or the only one.
    async fn pick(&self, account: Option<&str>) -> Result<AccountRecord, ErrorData> {
        match account.map(str::trim).filter(|a| !a.is_empty()) {
            Some(reference) => self.engine.resolve(reference).await.map_err(invalid),
            None => {
                let all = self
                    .engine
                    .store_call(|store| store.accounts())
                    .await
                    .map_err(internal)?;
                match all.len() {
                    1 => Ok(all.into_iter().next().expect("one")),
                    0 => Err(ErrorData::invalid_params(
                        "no Stripe account is connected: connect one with `stripe-mirror connect`",
                        None,
                    )),
                    _ => Err(ErrorData::invalid_params(
                        format!(
                            "several accounts are connected: name one in `account` ({})",
                            all.iter()
                                .map(|a| format!("{} = {}", a.name, a.connection.label()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None,
                    )),
                }
            }
        }
    }
}

/// Bad arguments: an invalid-params error with the engine's words and hint.
fn invalid(error: EngineError) -> ErrorData {
    match error.code {
        ErrorCode::InvalidInput | ErrorCode::NotFound => ErrorData::invalid_params(
            match &error.hint {
                Some(hint) => format!("{} ({hint})", error.message),
                None => error.message.clone(),
            },
            Some(json!({"code": error.code.name()})),
        ),
        _ => internal(error),
    }
}

/// What went wrong inside stays inside: the code, and the log's words.
fn internal(error: EngineError) -> ErrorData {
    ErrorData::internal_error(
        format!("{} ({})", error.code.name(), error.message),
        Some(json!({"code": error.code.name()})),
    )
}

/// A tool's answer: compact JSON as text.
fn answer(value: Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value.to_string())])
}

/// A refusal the agent can act on: code, message and what to do.
fn refusal(error: &EngineError) -> CallToolResult {
    let mut body = json!({"code": error.code.name(), "message": error.message});
    if let Some(hint) = &error.hint {
        body["what_to_do"] = json!(hint);
    }
    CallToolResult::error(vec![ContentBlock::text(body.to_string())])
}

/// Engine errors from a tool's work: bad input → invalid params; the rest → tool errors.
fn settle(outcome: Result<Value, EngineError>) -> Result<CallToolResult, ErrorData> {
    match outcome {
        Ok(value) => Ok(answer(value)),
        Err(error) if error.code == ErrorCode::InvalidInput => Err(invalid(error)),
        Err(error) => Ok(refusal(&error)),
    }
}

#[tool_router]
impl MirrorTools {
    #[tool(
        description = "Every connected Stripe account: its name, id and mode, status in words (\"Up to date\", \"Action required: …\"), last sync and rows mirrored. Start here to choose `account` for the other tools.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn list_accounts(&self) -> Result<CallToolResult, ErrorData> {
        settle(connections::list(&self.engine).await.map(|all| {
            json!(
                all.iter()
                    .map(|s| json!({
                        "name": s.name,
                        "account": s.label,
                        "mode": s.mode,
                        "status": s.headline,
                        "what_to_do": s.fix,
                        "notice": s.notice,
                        "last_sync": s.last_sync,
                        "rows": s.rows,
                        "key": s.key,
                    }))
                    .collect::<Vec<_>>()
            )
        }))
    }

    #[tool(
        description = "A page of one table's mirrored objects, newest first, as Stripe returns them (amounts in minor units, with their currency). Filter on typed columns exactly (e.g. subscriptions by status, invoices by customer) and by created time; page on with `starting_after` = the answer's `next_cursor`. Reads the mirror, never Stripe.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn list_objects(
        &self,
        Parameters(args): Parameters<ListObjects>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(args.account.as_deref()).await?;
        let query = PageQuery {
            limit: args.limit.unwrap_or(10),
            starting_after: args.starting_after,
            filters: args.filters.unwrap_or_default().into_iter().collect(),
            created_gte: args.created_gte,
            created_lt: args.created_lt,
            ..Default::default()
        };
        let outcome = objects::page(&self.engine, &record.connection, &args.table, query)
            .await
            .map(|(rows, has_more)| {
                let data: Vec<Value> = rows
                    .iter()
                    .map(|r| serde_json::from_str(r).unwrap_or(Value::Null))
                    .collect();
                let next = has_more
                    .then(|| data.last().and_then(|o| o["id"].as_str()).map(str::to_owned))
                    .flatten();
                json!({"account": record.connection.label(), "table": args.table, "data": data, "has_more": has_more, "next_cursor": next})
            });
        settle(outcome.map_err(|e| match e.code {
            ErrorCode::NotFound => EngineError::invalid(e.message).hint(e.hint.unwrap_or_default()),
            _ => e,
        }))
    }

    #[tool(
        description = "Customers whose email, name or metadata contains `text` (any case), newest first: id, email, name, created and metadata. Reads the mirror, never Stripe; get_customer gives one customer with their subscriptions, invoices and payments.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn search_customers(
        &self,
        Parameters(args): Parameters<SearchCustomers>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(args.account.as_deref()).await?;
        let limit = args.limit.unwrap_or(10);
        let outcome =
            objects::search_customers(&self.engine, &record.connection, &args.text, limit)
                .await
                .map(|found| json!({"account": record.connection.label(), "data": found}));
        settle(outcome)
    }

    #[tool(
        description = "Revenue figures computed from the mirror by Stripe's published rules: per currency the current MRR, ARR, subscribers, 30-day subscriber churn and net revenue, and per period (month by default) MRR at the start and end with its movements (new, reactivation, expansion, contraction, churn) and subscribers; amounts in minor units with `…_formatted` text. `notes` says what is rebuilt rather than observed. Reads the mirror, never Stripe.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn revenue_summary(
        &self,
        Parameters(args): Parameters<RevenueSummary>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(args.account.as_deref()).await?;
        let query = sm_engine::ops::reports::ReportQuery {
            from: args.from,
            to: args.to,
            interval: args.interval,
            currency: args.currency,
            time_zone: args.time_zone,
            discount_mode: args.discount_mode,
            churn_recognition: args.churn_recognition,
            ..Default::default()
        };
        let mut options = query.options(sm_engine::now()).map_err(invalid)?;
        options.only = Some(sm_engine::ops::reports::ReportKind::Summary);
        let outcome =
            sm_engine::ops::reports::report(&self.engine, &record.connection.label(), options)
                .await
                .map(|report| report.to_json(sm_engine::ops::reports::ReportKind::Summary));
        settle(outcome)
    }

    #[tool(
        description = "One customer with what they pay: who they are (by cus_… id or exact email), their subscriptions with prices, their latest invoices and payments, newest first; every amount in minor units and in words (\"$12.50\"). Reads the mirror, never Stripe.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn get_customer(
        &self,
        Parameters(args): Parameters<GetCustomer>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(args.account.as_deref()).await?;
        let outcome = objects::customer_overview(
            &self.engine,
            &record.connection,
            &args.customer,
            args.limit.unwrap_or(10),
        )
        .await;
        // An unknown customer is a bad argument the agent can correct.
        settle(outcome.map_err(|e| match e.code {
            ErrorCode::NotFound => EngineError::invalid(e.message).hint(e.hint.unwrap_or_default()),
            _ => e,
        }))
    }

    #[tool(
        description = "The account's balance now, from Stripe (the one tool that reads Stripe, not the mirror; needs rak_balance_read): available and pending funds per currency, in minor units and in words.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn get_balance(
        &self,
        Parameters(args): Parameters<AccountOnly>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(args.account.as_deref()).await?;
        settle(live::balance(&self.engine, &record).await)
    }

    #[tool(
        description = "One mirrored object by id (cus_…, sub_…, in_…, pi_…, ch_…, re_…, po_…, prod_…, price_…): the whole object as Stripe returns it, `deleted: true` if Stripe deleted it. Reads the mirror, never Stripe.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn get_object(
        &self,
        Parameters(args): Parameters<GetObject>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(args.account.as_deref()).await?;
        let Some(table) = args
            .table
            .clone()
            .or_else(|| sm_engine::catalog::table_of_id(&args.id).map(str::to_owned))
        else {
            return Err(ErrorData::invalid_params(
                format!(
                    "the id {} does not say its table: give `table` too",
                    args.id
                ),
                None,
            ));
        };
        settle(objects::get(&self.engine, &record.connection, &table, &args.id).await)
    }

    #[tool(
        description = "The account's events, newest first (the mirror keeps them past Stripe's 30 days): id, type, when (Unix time) and the object it is about. Filter by type (`invoice.paid`, or `invoice.*`); page on with `starting_after` = the answer's `next_cursor`.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn recent_events(
        &self,
        Parameters(args): Parameters<RecentEvents>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(args.account.as_deref()).await?;
        let query = EventQuery {
            types: args.types.unwrap_or_default(),
            starting_after: args.starting_after,
            limit: args.limit.unwrap_or(20),
        };
        settle(
            events::page(&self.engine, &record.connection, query)
                .await
                .map(|(rows, has_more)| {
                    let next = has_more.then(|| rows.last().map(|e| e.id.clone())).flatten();
                    json!({
                        "account": record.connection.label(),
                        "data": rows.iter().map(|e| json!({"id": e.id, "type": e.event_type, "created": e.created, "object": e.object_id})).collect::<Vec<_>>(),
                        "has_more": has_more,
                        "next_cursor": next,
                    })
                }),
        )
    }

    #[tool(
        description = "One read-only SQL statement over the mirror (SQLite or Postgres, as configured): every resource table (with account_id and livemode on each row, the object's JSON in `data` and typed columns such as status, customer, amount, currency, created), events, runs and accounts. At most 10,000 rows and 10 s; writes, files and settings are refused.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn query_sql(
        &self,
        Parameters(args): Parameters<Sql>,
    ) -> Result<CallToolResult, ErrorData> {
        let outcome = query::values(&self.engine, &args.sql).await;
        match outcome {
            Ok((columns, rows)) => Ok(answer(
                json!({"columns": columns, "rows": rows, "row_count": rows.len()}),
            )),
            Err(error)
                if matches!(
                    error.code,
                    ErrorCode::InvalidInput | ErrorCode::QueryRefused | ErrorCode::QueryLimit
                ) =>
            {
                Ok(refusal(&error))
            }
            Err(error) => settle(Err(error)),
        }
    }
    #[tool(
        description = "Create a customer in Stripe (needs rak_customer_write). The new customer is in the mirror when this answers.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_customer(
        &self,
        Parameters(args): Parameters<CreateCustomer>,
    ) -> Result<CallToolResult, ErrorData> {
        let form = Form::new()
            .set("email", args.email)
            .set("name", args.name)
            .set("description", args.description)
            .metadata(args.metadata);
        self.write(
            args.account.as_deref(),
            "create_customer",
            Method::Post,
            "/v1/customers".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Create a product in Stripe (needs rak_product_write); price it with create_price.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_product(
        &self,
        Parameters(args): Parameters<CreateProduct>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.name.trim().is_empty() {
            return Err(ErrorData::invalid_params("name must not be empty", None));
        }
        let form = Form::new()
            .set("name", Some(args.name))
            .set("description", args.description)
            .metadata(args.metadata);
        self.write(
            args.account.as_deref(),
            "create_product",
            Method::Post,
            "/v1/products".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Create a price for a product in Stripe (needs rak_plan_write): one-time, or recurring per day, week, month or year. unit_amount is in minor units (1250 = $12.50).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_price(
        &self,
        Parameters(args): Parameters<CreatePrice>,
    ) -> Result<CallToolResult, ErrorData> {
        let product = id_arg("product", &args.product, "prod_")?;
        if !(0..=99_999_999).contains(&args.unit_amount) {
            return Err(ErrorData::invalid_params(
                "unit_amount must be 0 to 99,999,999 minor units",
                None,
            ));
        }
        let interval = args.recurring_interval.map(|i| match i {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Year => "year",
        });
        let form = Form::new()
            .set("product", Some(product))
            .set("unit_amount", Some(args.unit_amount))
            .set("currency", Some(currency(&args.currency)?))
            .set("recurring[interval]", interval)
            .set("nickname", args.nickname);
        self.write(
            args.account.as_deref(),
            "create_price",
            Method::Post,
            "/v1/prices".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Create a payment link that sells a price (needs rak_payment_links_write): answers its URL to share.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_payment_link(
        &self,
        Parameters(args): Parameters<CreatePaymentLink>,
    ) -> Result<CallToolResult, ErrorData> {
        let price = id_arg("price", &args.price, "price_")?;
        let form = Form::new().set("line_items[0][price]", Some(price)).set(
            "line_items[0][quantity]",
            Some(quantity(args.quantity, 999)?),
        );
        self.write(
            args.account.as_deref(),
            "create_payment_link",
            Method::Post,
            "/v1/payment_links".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Create a draft invoice for a customer (needs rak_invoice_write). Add lines with create_invoice_item (its `invoice` argument), then finalize_invoice.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_invoice(
        &self,
        Parameters(args): Parameters<CreateInvoice>,
    ) -> Result<CallToolResult, ErrorData> {
        let customer = id_arg("customer", &args.customer, "cus_")?;
        let method = args.collection_method.map(|m| match m {
            CollectionMethod::ChargeAutomatically => "charge_automatically",
            CollectionMethod::SendInvoice => "send_invoice",
        });
        if matches!(args.collection_method, Some(CollectionMethod::SendInvoice))
            && args.days_until_due.is_none()
        {
            return Err(ErrorData::invalid_params(
                "send_invoice needs days_until_due (1 to 365)",
                None,
            ));
        }
        let form = Form::new()
            .set("customer", Some(customer))
            .set("description", args.description)
            .set("collection_method", method)
            .set("days_until_due", args.days_until_due)
            .set("auto_advance", Some(false));
        self.write(
            args.account.as_deref(),
            "create_invoice",
            Method::Post,
            "/v1/invoices".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Add an invoice item (a line) for a customer (needs rak_invoice_write): on a draft invoice given as `invoice`, or pending for their next invoice. amount is in minor units.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_invoice_item(
        &self,
        Parameters(args): Parameters<CreateInvoiceItem>,
    ) -> Result<CallToolResult, ErrorData> {
        let customer = id_arg("customer", &args.customer, "cus_")?;
        let invoice = args
            .invoice
            .as_deref()
            .map(|i| id_arg("invoice", i, "in_"))
            .transpose()?;
        if args.amount.abs() > 99_999_999 {
            return Err(ErrorData::invalid_params(
                "amount must be within ±99,999,999 minor units",
                None,
            ));
        }
        let form = Form::new()
            .set("customer", Some(customer))
            .set("amount", Some(args.amount))
            .set("currency", Some(currency(&args.currency)?))
            .set("description", args.description)
            .set("invoice", invoice);
        self.write(
            args.account.as_deref(),
            "create_invoice_item",
            Method::Post,
            "/v1/invoiceitems".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Finalize a draft invoice (needs rak_invoice_write): it gets its number and becomes open, to be paid or sent.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn finalize_invoice(
        &self,
        Parameters(args): Parameters<FinalizeInvoice>,
    ) -> Result<CallToolResult, ErrorData> {
        let invoice = id_arg("invoice", &args.invoice, "in_")?;
        self.write(
            args.account.as_deref(),
            "finalize_invoice",
            Method::Post,
            format!("/v1/invoices/{invoice}/finalize"),
            Vec::new(),
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Refund a payment, wholly or in part (needs rak_charge_write): money goes back to the customer. Give payment_intent or charge; amount in minor units, left out for all that remains.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_refund(
        &self,
        Parameters(args): Parameters<CreateRefund>,
    ) -> Result<CallToolResult, ErrorData> {
        let (payment_intent, charge) = match (&args.payment_intent, &args.charge) {
            (Some(pi), None) => (Some(id_arg("payment_intent", pi, "pi_")?), None),
            (None, Some(ch)) => (None, Some(id_arg("charge", ch, "ch_")?)),
            _ => {
                return Err(ErrorData::invalid_params(
                    "give payment_intent or charge, one of them",
                    None,
                ));
            }
        };
        if args.amount.is_some_and(|a| !(1..=99_999_999).contains(&a)) {
            return Err(ErrorData::invalid_params(
                "amount must be 1 to 99,999,999 minor units",
                None,
            ));
        }
        let reason = args.reason.map(|r| match r {
            RefundReason::Duplicate => "duplicate",
            RefundReason::Fraudulent => "fraudulent",
            RefundReason::RequestedByCustomer => "requested_by_customer",
        });
        let form = Form::new()
            .set("payment_intent", payment_intent)
            .set("charge", charge)
            .set("amount", args.amount)
            .set("reason", reason);
        self.write(
            args.account.as_deref(),
            "create_refund",
            Method::Post,
            "/v1/refunds".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Cancel a subscription (needs rak_subscription_write): now (default), or at the end of the period paid for with at_period_end.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn cancel_subscription(
        &self,
        Parameters(args): Parameters<CancelSubscription>,
    ) -> Result<CallToolResult, ErrorData> {
        let subscription = id_arg("subscription", &args.subscription, "sub_")?;
        let path = format!("/v1/subscriptions/{subscription}");
        if args.at_period_end.unwrap_or(false) {
            let form = Form::new().set("cancel_at_period_end", Some(true));
            self.write(
                args.account.as_deref(),
                "cancel_subscription",
                Method::Post,
                path,
                form.0,
                None,
            )
            .await
        } else {
            self.write(
                args.account.as_deref(),
                "cancel_subscription",
                Method::Delete,
                path,
                Vec::new(),
                None,
            )
            .await
        }
    }

    #[tool(
        description = "Change a subscription (needs rak_subscription_write): its first item's price or quantity, whether it ends at the period's end, its metadata.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn update_subscription(
        &self,
        Parameters(args): Parameters<UpdateSubscription>,
    ) -> Result<CallToolResult, ErrorData> {
        let subscription = id_arg("subscription", &args.subscription, "sub_")?;
        let price = args
            .price
            .as_deref()
            .map(|p| id_arg("price", p, "price_"))
            .transpose()?;
        let mut form = Form::new();
        if price.is_some() || args.quantity.is_some() {
            // Stripe changes an item by its id: the mirror knows the subscription's items.
            let record = self.pick(args.account.as_deref()).await?;
            let stored = objects::get(&self.engine, &record.connection, "subscriptions", &subscription)
                .await
                .map_err(|e| match e.code {
                    ErrorCode::NotFound => ErrorData::invalid_params(format!("{subscription} is not in the mirror: sync the account first, or check the id"), None),
                    _ => internal(e),
                })?;
            let Some(item) = stored["items"]["data"][0]["id"].as_str() else {
                return Err(ErrorData::invalid_params(
                    format!("{subscription} has no item to change"),
                    None,
                ));
            };
            form = form
                .set("items[0][id]", Some(item))
                .set("items[0][price]", price)
                .set(
                    "items[0][quantity]",
                    args.quantity.map(|q| quantity(Some(q), 9999)).transpose()?,
                );
        }
        form = form
            .set("cancel_at_period_end", args.cancel_at_period_end)
            .metadata(args.metadata);
        if form.0.is_empty() {
            return Err(ErrorData::invalid_params(
                "nothing to change: give price, quantity, cancel_at_period_end or metadata",
                None,
            ));
        }
        self.write(
            args.account.as_deref(),
            "update_subscription",
            Method::Post,
            format!("/v1/subscriptions/{subscription}"),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Create a coupon (needs rak_coupon_write): percent_off, or amount_off with currency (minor units); once, repeating for duration_in_months, or forever.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_coupon(
        &self,
        Parameters(args): Parameters<CreateCoupon>,
    ) -> Result<CallToolResult, ErrorData> {
        let form = match (args.percent_off, args.amount_off, &args.currency) {
            (Some(percent), None, None) if percent > 0.0 && percent <= 100.0 => {
                Form::new().set("percent_off", Some(percent))
            }
            (None, Some(amount), Some(code)) if (1..=99_999_999).contains(&amount) => Form::new()
                .set("amount_off", Some(amount))
                .set("currency", Some(currency(code)?)),
            _ => {
                return Err(ErrorData::invalid_params(
                    "give percent_off (0.01 to 100), or amount_off (minor units) with currency",
                    None,
                ));
            }
        };
        let duration = match args.duration {
            Duration::Once => "once",
            Duration::Repeating => "repeating",
            Duration::Forever => "forever",
        };
        if matches!(args.duration, Duration::Repeating) != args.duration_in_months.is_some() {
            return Err(ErrorData::invalid_params(
                "duration_in_months goes with duration repeating, and only with it",
                None,
            ));
        }
        let form = form
            .set("duration", Some(duration))
            .set("duration_in_months", args.duration_in_months)
            .set("name", args.name);
        self.write(
            args.account.as_deref(),
            "create_coupon",
            Method::Post,
            "/v1/coupons".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }

    #[tool(
        description = "Create a Checkout session for a price (needs rak_checkout_session_write): answers the URL where the customer pays (mode payment) or subscribes (mode subscription).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_checkout_session(
        &self,
        Parameters(args): Parameters<CreateCheckoutSession>,
    ) -> Result<CallToolResult, ErrorData> {
        let price = id_arg("price", &args.price, "price_")?;
        let customer = args
            .customer
            .as_deref()
            .map(|c| id_arg("customer", c, "cus_"))
            .transpose()?;
        for (name, url) in [
            ("success_url", Some(&args.success_url)),
            ("cancel_url", args.cancel_url.as_ref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(ErrorData::invalid_params(
                    format!("{name} must be an http(s) URL"),
                    None,
                ));
            }
        }
        let mode = match args.mode {
            CheckoutMode::Payment => "payment",
            CheckoutMode::Subscription => "subscription",
        };
        let form = Form::new()
            .set("mode", Some(mode))
            .set("line_items[0][price]", Some(price))
            .set(
                "line_items[0][quantity]",
                Some(quantity(args.quantity, 999)?),
            )
            .set("success_url", Some(args.success_url))
            .set("cancel_url", args.cancel_url)
            .set("customer", customer);
        self.write(
            args.account.as_deref(),
            "create_checkout_session",
            Method::Post,
            "/v1/checkout/sessions".into(),
            form.0,
            args.idempotency_key,
        )
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for MirrorTools {
    /// The read tools, and the write tools some connected key may use (by its last probe).
    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        let offered = self.offered_writes().await?;
        let tools = self
            .tool_router
            .list_all()
            .into_iter()
            .filter(|tool| {
                writes::named(&tool.name).is_none() || offered.contains(&tool.name.as_ref())
            })
            .collect();
        Ok(rmcp::model::ListToolsResult {
            tools,
            ..Default::default()
        })
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("stripe-mirror", env!("CARGO_PKG_VERSION"))
                    .with_title("stripe-mirror: Stripe accounts as SQL"),
            )
            .with_instructions(
                "Connected Stripe accounts, read from a local mirror: call list_accounts first, then search_customers, list_objects, get_object, recent_events, revenue_summary or query_sql with the account it names. Write tools (create_customer, create_refund, …) go through Stripe and are listed only where the account's key allows them; give idempotency_key to retry one safely. Amounts are in minor units of their currency (cents for usd; zero-decimal currencies such as jpy are whole units).",
            )
    }
}
