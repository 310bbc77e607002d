//! Writes to Stripe on a connection's behalf (the agent tools' writes). Each is checked against
//! the permissions the key was probed with before anything is sent; sent under an idempotency
//! key (the caller's, to retry safely, or a fresh one); and Stripe's answer is applied to the
//! mirror at once through the one write path, so that a read right after sees it. When Stripe
//! refuses a permission the probe said the key had (the key was edited since), the key is probed
//! again, the connection's permissions are saved, and the refusal names the `rak_…` missing.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sm_stripe::ClientError;
use sm_stripe::ErrorKind;
use sm_stripe::client::new_idempotency_key;
use sm_warehouse::{AccountRecord, Guard};

use crate::apply::{Applier, Rows};
use crate::catalog::RESOURCES;
use crate::connect::{PermissionReport, probe};
use crate::sync::{Quiet, Run};
use crate::{Engine, EngineError, ErrorCode, now};

/// One kind of write: its name (the agent tool's), the permission it needs and the table of the
/// object Stripe answers with.
#[derive(Debug)]
pub struct Write {
    pub name: &'static str,
    pub permission: &'static str,
    /// The resource as Stripe's restricted-key page names it, to say what to grant.
    pub resource: &'static str,
    pub table: &'static str,
}

/// Every write there is.
pub static WRITES: &[Write] = &[
    write(
        "create_customer",
        "rak_customer_write",
        "Customers",
        "customers",
    ),
    write(
        "create_product",
        "rak_product_write",
        "Products",
        "products",
    ),
    write("create_price", "rak_plan_write", "Prices", "prices"),
    write(
        "create_payment_link",
        "rak_payment_links_write",
        "Payment Links",
        "payment_links",
    ),
    write(
        "create_invoice",
        "rak_invoice_write",
        "Invoices",
        "invoices",
    ),
    write(
        "create_invoice_item",
        "rak_invoice_write",
        "Invoices",
        "invoiceitems",
    ),
    write(
        "finalize_invoice",
        "rak_invoice_write",
        "Invoices",
        "invoices",
    ),
    write("create_refund", "rak_charge_write", "Charges", "refunds"),
    write(
        "cancel_subscription",
        "rak_subscription_write",
        "Subscriptions",
        "subscriptions",
    ),
    write(
        "update_subscription",
        "rak_subscription_write",
        "Subscriptions",
        "subscriptions",
    ),
    write("create_coupon", "rak_coupon_write", "Coupons", "coupons"),
    write(
        "create_checkout_session",
        "rak_checkout_session_write",
        "Checkout Sessions",
        "checkout_sessions",
    ),
];

const fn write(
    name: &'static str,
    permission: &'static str,
    resource: &'static str,
    table: &'static str,
) -> Write {
    Write {
        name,
        permission,
        resource,
        table,
    }
}

/// The write named `name`.
pub fn named(name: &str) -> Option<&'static Write> {
    WRITES.iter().find(|w| w.name == name)
}

/// How the request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Delete,
}

/// One write to make: the Stripe path and form fields a surface built from its arguments.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub write: &'static Write,
    pub method: Method,
    pub path: String,
    pub params: Vec<(String, String)>,
    /// The same key on a retry makes Stripe answer the first attempt's result again.
    pub idempotency_key: Option<String>,
}

/// What a write did.
#[derive(Debug, Clone, Serialize)]
pub struct WriteOutcome {
    /// Stripe's answer.
    pub object: Value,
    pub idempotency_key: String,
    /// Whether the answer is in the mirror now (not when the key may not read its table).
    pub mirrored: bool,
}

/// Whether the connection's key may make `write`, as last probed. A write the probe never
/// checked (a connection probed by an older version) may be tried: Stripe has the last word.
pub fn allowed(record: &AccountRecord, write: &Write) -> bool {
    let report = PermissionReport::from_json(&record.permissions);
    report
        .writes
        .iter()
        .filter(|w| w.permission == write.permission)
        .all(|w| w.allowed)
}

/// The refusal for a write the key may not make.
fn missing(record: &AccountRecord, write: &Write) -> EngineError {
    EngineError {
        code: ErrorCode::PermissionMissing,
        message: format!(
            "the key of {} lacks {}, which {} needs",
            record.connection.label(),
            write.permission,
            write.name
        ),
        hint: Some(format!(
            "edit the restricted key in the Stripe dashboard to grant Write on {}, then update the key (`stripe-mirror update-key {}`, or Update API key on the dashboard)",
            write.resource,
            record.connection.label()
        )),
        permission: Some(write.permission.to_owned()),
    }
}

/// Makes one write through Stripe and applies its answer to the mirror.
pub async fn perform(
    engine: &Engine,
    record: &AccountRecord,
    request: WriteRequest,
) -> Result<WriteOutcome, EngineError> {
    let write = request.write;
    if !allowed(record, write) {
        return Err(missing(record, write));
    }
    let key = engine.open_key(record)?;
    let client = engine.client_for(record, &key)?;
    let idempotency_key = request
        .idempotency_key
        .clone()
        .unwrap_or_else(new_idempotency_key);
    let answer = match request.method {
        Method::Post => {
            client
                .post_idempotent_timed(&request.path, &request.params, &idempotency_key)
                .await
        }
        Method::Delete => client.delete_timed(&request.path).await,
    };
    let (object, server_time) = match answer {
        Ok(answer) => answer,
        Err(error) => return Err(refused(engine, record, write, &client, error).await),
    };
    let mirrored = mirror_answer(engine, record, client, write, &object, server_time).await?;
    Ok(WriteOutcome {
        object,
        idempotency_key,
        mirrored,
    })
}

/// Stripe's refusal in words. A permission refused although the probe allowed it means the key
/// changed: it is probed again and the connection's permissions saved before answering.
async fn refused(
    engine: &Engine,
    record: &AccountRecord,
    write: &Write,
    client: &sm_stripe::Client,
    error: ClientError,
) -> EngineError {
    let request_id = error.request_id().map(str::to_owned);
    match error.kind() {
        Some(ErrorKind::PermissionDenied { .. }) => {
            if let Ok(report) = probe(client).await {
                let connection = record.connection.clone();
                let permissions = serde_json::to_value(&report).unwrap_or(Value::Null);
                // The record is read again and only its permissions changed: a rename or key
                // update made meanwhile is kept.
                let saved = engine
                    .store_call(move |store| {
                        if let Some(mut fresh) = store.account(&connection)? {
                            fresh.permissions = permissions;
                            fresh.updated_at = now();
                            store.update_account(&fresh)?;
                        }
                        Ok(())
                    })
                    .await;
                if let Err(error) = saved {
                    tracing::warn!(error = %error, "could not save the permissions probed again");
                }
            }
            missing(record, write)
        }
        Some(
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound { .. }
            | ErrorKind::Card
            | ErrorKind::Idempotency,
        ) => {
            let api = match &error {
                ClientError::Api(api) => Some(api),
                _ => None,
            };
            let message = api
                .and_then(|a| a.message.clone())
                .unwrap_or_else(|| error.to_string());
            let param = api
                .and_then(|a| a.param.as_deref())
                .map(|p| format!(" (parameter {p})"))
                .unwrap_or_default();
            let mut refusal = EngineError::new(
                ErrorCode::Upstream,
                format!(
                    "Stripe refused {}: {message}{param}{}",
                    write.name,
                    request_id
                        .map(|id| format!("; request {id}"))
                        .unwrap_or_default()
                ),
            );
            refusal.hint = Some("correct the arguments Stripe names and try again".into());
            refusal
        }
        _ => {
            let mut failed = EngineError::from(error);
            if let Some(id) = request_id {
                failed.message = format!("{}; request {id}", failed.message);
            }
            failed
        }
    }
}

/// Writes Stripe's answer into the mirror, versioned by Stripe's clock when it answered, with
/// its embedded lists (a subscription's items, an invoice's lines). Returns false when the key
/// may not read the answer's table (the mirror does not keep it).
async fn mirror_answer(
    engine: &Engine,
    record: &AccountRecord,
    client: sm_stripe::Client,
    write: &Write,
    object: &Value,
    server_time: Option<i64>,
) -> Result<bool, EngineError> {
    let report = PermissionReport::from_json(&record.permissions);
    let readable: HashSet<&'static str> = RESOURCES
        .iter()
        .filter(|r| report.can_read(r.table))
        .map(|r| r.table)
        .collect();
    // The answer's own `object` says its table (a refund answers a refund, not a charge).
    let resource = object["object"]
        .as_str()
        .and_then(crate::catalog::by_object)
        .or_else(|| crate::catalog::resource(write.table));
    let Some(resource) = resource.filter(|r| readable.contains(r.table)) else {
        return Ok(false);
    };
    let run = Run::new(engine, &record.connection, client, Arc::new(Quiet));
    let applier = Applier {
        run: &run,
        readable: &readable,
    };
    let Some(parsed) = applier.object(resource, object) else {
        return Ok(false);
    };
    let objects = vec![parsed];
    let known = applier.known_parents(resource, &objects).await?;
    let mut rows = Rows::default();
    let deleted = object["deleted"] == Value::Bool(true);
    applier
        .collect(
            resource,
            objects,
            server_time.unwrap_or_else(now),
            deleted,
            &mut rows,
            &known,
            None,
        )
        .await?;
    run.apply(rows.into_batch(Guard::AtLeast)).await?;
    Ok(true)
}
