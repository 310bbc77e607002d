//! Agent tools: an MCP server over the mirror. The read tools answer from the mirror (fast,
//! offline, every connected account) through `sm_engine::ops`, as the CLI and the REST API do;
//! errors come from the one error table: bad arguments as invalid-params errors, anything else
//! as a tool error with its code, message and what to do. No key is ever in an answer.
//! `stripe-mirror mcp` serves these over stdio (its log goes to standard error only).

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use sm_engine::ops::{connections, events, objects, query};
use sm_engine::{Engine, EngineError, ErrorCode};
use sm_warehouse::{AccountRecord, EventQuery, PageQuery};

/// The tools, over one engine.
#[derive(Clone)]
pub struct MirrorTools {
    engine: Arc<Engine>,
    #[allow(dead_code, reason = "read by the tool_handler macro")]
    tool_router: ToolRouter<Self>,
}

/// Serves the tools over standard input and output until the client closes them.
pub async fn serve_stdio(engine: Arc<Engine>) -> Result<(), String> {
    let running = MirrorTools::new(engine)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP session did not start: {e}"))?;
    running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| format!("the MCP session ended badly: {e}"))
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
    /// Part of an email address or name, any case (e.g. "lovelace" or "@example.com").
    pub text: String,
    /// Customers to return, 1 to 50 (default 10), newest first.
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

impl MirrorTools {
    pub fn new(engine: Arc<Engine>) -> MirrorTools {
        MirrorTools {
            engine,
            tool_router: Self::tool_router(),
        }
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
        description = "Customers whose email or name contains `text` (any case), newest first: id, email, name, created and metadata. Reads the mirror, never Stripe; get_object gives a customer's whole object.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn search_customers(
        &self,
        Parameters(args): Parameters<SearchCustomers>,
    ) -> Result<CallToolResult, ErrorData> {
        let record = self.pick(args.account.as_deref()).await?;
        let limit = args.limit.unwrap_or(10);
        if !(1..=50).contains(&limit) {
            return Err(ErrorData::invalid_params(
                format!("limit must be 1 to 50, not {limit}"),
                None,
            ));
        }
        let text = args.text.trim().to_lowercase();
        if text.is_empty() || text.len() > 200 {
            return Err(ErrorData::invalid_params(
                "text must be 1 to 200 characters of an email or name",
                None,
            ));
        }
        // A literal inside the read-only SQL boundary: quotes doubled, LIKE's wildcards escaped.
        let literal = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
            .replace('\'', "''");
        let sql = format!(
            "SELECT id, email, name, created, data FROM customers WHERE account_id = '{}' AND livemode = {} AND NOT deleted AND (lower(email) LIKE '%{literal}%' ESCAPE '\\' OR lower(name) LIKE '%{literal}%' ESCAPE '\\') ORDER BY created DESC, id DESC LIMIT {limit}",
            record.connection.account_id,
            if record.connection.livemode {
                "true"
            } else {
                "false"
            },
        );
        let outcome = query::values(&self.engine, &sql).await.map(|(_, rows)| {
            json!({
                "account": record.connection.label(),
                "data": rows.into_iter().map(|row| {
                    // The object's JSON: text on SQLite, a value on Postgres.
                    let data = match &row[4] {
                        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                        other => other.clone(),
                    };
                    json!({"id": row[0], "email": row[1], "name": row[2], "created": row[3], "metadata": data["metadata"]})
                }).collect::<Vec<_>>(),
            })
        });
        settle(outcome)
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
}

#[tool_handler]
impl ServerHandler for MirrorTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("stripe-mirror", env!("CARGO_PKG_VERSION"))
                    .with_title("stripe-mirror: Stripe accounts as SQL"),
            )
            .with_instructions(
                "Reads of connected Stripe accounts from a local mirror: call list_accounts first, then search_customers, list_objects, get_object, recent_events or query_sql with the account it names. Amounts are in minor units of their currency (cents for usd; zero-decimal currencies such as jpy are whole units).",
            )
    }
}
