//! Mirrored objects as Stripe shows them: a table's page, newest first, with typed-column
//! filters, a `created` range and a cursor; one object by id.

use serde_json::Value;
use sm_warehouse::{Connection, PageQuery};

use crate::{Engine, EngineError, ErrorCode};

/// The table named `table` (a mirrored resource's), or bad input listing them.
fn checked(table: &str) -> Result<&'static str, EngineError> {
    crate::catalog::resource(table)
        .map(|r| r.table)
        .ok_or_else(|| {
            EngineError::new(ErrorCode::NotFound, format!("no table named {table}")).hint(format!(
                "the tables: {}",
                crate::catalog::RESOURCES
                    .iter()
                    .map(|r| r.table)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// A page of objects (as Stripe sent them, each one's JSON text as stored: an answer sends it on
/// without parsing it) and whether more follow.
pub async fn page(
    engine: &Engine,
    connection: &Connection,
    table: &str,
    query: PageQuery,
) -> Result<(Vec<String>, bool), EngineError> {
    let table = checked(table)?;
    if !(1..=100).contains(&query.limit) {
        return Err(EngineError::invalid(format!(
            "limit must be 1 to 100, not {}",
            query.limit
        )));
    }
    let connection = connection.clone();
    let (rows, more) = engine
        .store_read(move |store| store.page_raw(&connection, table, &query))
        .await?;
    Ok((rows.into_iter().map(|r| r.data).collect(), more))
}

/// One object by id (a deleted one too, with `deleted` set as the mirror knows it).
pub async fn get(
    engine: &Engine,
    connection: &Connection,
    table: &str,
    id: &str,
) -> Result<Value, EngineError> {
    let table = checked(table)?;
    let (owned, ids) = (connection.clone(), vec![id.to_owned()]);
    let row = engine
        .store_read(move |store| store.rows_by_id(&owned, table, &ids))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            EngineError::new(
                ErrorCode::NotFound,
                format!("no {table} object {id} in the mirror"),
            )
        })?;
    let mut data = row.data;
    if row.deleted {
        data["deleted"] = Value::Bool(true);
    }
    Ok(data)
}

/// Each mirrored table's rows for a connection: (table, live rows, deleted rows), in the
/// catalog's order, as counted at the end of its last sync (counted now when it has not
/// finished one).
pub async fn counts(
    engine: &Engine,
    connection: &Connection,
) -> Result<Vec<(&'static str, u64, u64)>, EngineError> {
    let connection = connection.clone();
    engine
        // Counting is a scan per table: off the async threads.
        .store_call(move |store| {
            let kept: Option<std::collections::BTreeMap<String, (u64, u64)>> = store
                .state(&connection, crate::ROWS_BY_TABLE)?
                .and_then(|text| serde_json::from_str(&text).ok());
            crate::catalog::RESOURCES
                .iter()
                .map(|r| match kept.as_ref().and_then(|k| k.get(r.table)) {
                    Some((live, deleted)) => Ok((r.table, *live, *deleted)),
                    None => store
                        .count(&connection, r.table)
                        .map(|(live, deleted)| (r.table, live, deleted)),
                })
                .collect()
        })
        .await
}

/// A customer found by [`search_customers`]: who they are, without the rest of the object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FoundCustomer {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub created: i64,
    pub metadata: Value,
}

/// Customers whose email, name or metadata (a key or a value) contains `text`, any case,
/// newest first; at most `limit` (1 to 50). The text is matched literally.
pub async fn search_customers(
    engine: &Engine,
    connection: &Connection,
    text: &str,
    limit: usize,
) -> Result<Vec<FoundCustomer>, EngineError> {
    if !(1..=50).contains(&limit) {
        return Err(EngineError::invalid(format!(
            "limit must be 1 to 50, not {limit}"
        )));
    }
    let text = text.trim().to_lowercase();
    if text.is_empty() || text.chars().count() > 200 {
        return Err(EngineError::invalid(
            "the text must be 1 to 200 characters of an email, a name or a metadata value",
        ));
    }
    let owned = connection.clone();
    let rows = engine
        .store_read(move |store| store.search_customers(&owned, &text, limit))
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let data: Value = serde_json::from_str(row).unwrap_or(Value::Null);
            FoundCustomer {
                id: data["id"].as_str().unwrap_or_default().to_owned(),
                email: data["email"].as_str().map(str::to_owned),
                name: data["name"].as_str().map(str::to_owned),
                created: data["created"].as_i64().unwrap_or_default(),
                metadata: data["metadata"].clone(),
            }
        })
        .collect())
}

/// One customer with what they pay: the customer (by `cus_…` id or exact email), their
/// subscriptions, and their latest invoices and payments (charges), newest first, at most
/// `limit` of each (1 to 50), every amount in minor units and in words.
pub async fn customer_overview(
    engine: &Engine,
    connection: &Connection,
    customer: &str,
    limit: usize,
) -> Result<Value, EngineError> {
    if !(1..=50).contains(&limit) {
        return Err(EngineError::invalid(format!(
            "limit must be 1 to 50, not {limit}"
        )));
    }
    let customer = customer.trim();
    let object = if customer.contains('@') {
        let query = PageQuery {
            limit: 1,
            filters: vec![("email".into(), customer.to_owned())],
            ..Default::default()
        };
        let (rows, _) = page(engine, connection, "customers", query).await?;
        let first = rows.first().ok_or_else(|| {
            EngineError::new(
                ErrorCode::NotFound,
                format!("no customer with the email {customer} in the mirror"),
            )
            .hint("search_customers finds customers by part of an email, name or metadata")
        })?;
        serde_json::from_str(first).unwrap_or(Value::Null)
    } else {
        get(engine, connection, "customers", customer).await?
    };
    let id = object["id"].as_str().unwrap_or(customer).to_owned();
    let of_customer = |table: &'static str| {
        let query = PageQuery {
            limit,
            filters: vec![("customer".into(), id.clone())],
            ..Default::default()
        };
        async move {
            let (rows, more) = page(engine, connection, table, query).await?;
            let parsed: Vec<Value> = rows
                .iter()
                .map(|r| serde_json::from_str(r).unwrap_or(Value::Null))
                .collect();
            Ok::<_, EngineError>((parsed, more))
        }
    };
    let (subscriptions, more_subscriptions) = of_customer("subscriptions").await?;
    let (invoices, more_invoices) = of_customer("invoices").await?;
    let (charges, more_charges) = of_customer("charges").await?;
    let money = |amount: &Value, currency: &Value| {
        let (Some(amount), Some(currency)) = (amount.as_i64(), currency.as_str()) else {
            return Value::Null;
        };
        Value::String(crate::money::format(amount, currency))
    };
    let currency = &object["currency"];
    Ok(serde_json::json!({
        "customer": {
            "id": id,
            "email": object["email"],
            "name": object["name"],
            "created": object["created"],
            "delinquent": object["delinquent"],
            "balance": object["balance"],
            "balance_formatted": money(&object["balance"], if currency.is_null() { &Value::Null } else { currency }),
            "currency": currency,
            "metadata": object["metadata"],
            "deleted": object["deleted"],
        },
        "subscriptions": subscriptions.iter().map(|s| serde_json::json!({
            "id": s["id"],
            "status": s["status"],
            "created": s["created"],
            "current_period_end": s["current_period_end"],
            "cancel_at_period_end": s["cancel_at_period_end"],
            "items": s["items"]["data"].as_array().map(|items| items.iter().map(|item| serde_json::json!({
                "price": item["price"]["id"],
                "product": item["price"]["product"],
                "quantity": item["quantity"],
                "unit_amount": item["price"]["unit_amount"],
                "currency": item["price"]["currency"],
                "interval": item["price"]["recurring"]["interval"],
                "unit_amount_formatted": money(&item["price"]["unit_amount"], &item["price"]["currency"]),
            })).collect::<Vec<_>>()).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "subscriptions_has_more": more_subscriptions,
        "invoices": invoices.iter().map(|i| serde_json::json!({
            "id": i["id"],
            "number": i["number"],
            "status": i["status"],
            "created": i["created"],
            "currency": i["currency"],
            "amount_due": i["amount_due"],
            "amount_paid": i["amount_paid"],
            "amount_due_formatted": money(&i["amount_due"], &i["currency"]),
            "amount_paid_formatted": money(&i["amount_paid"], &i["currency"]),
            "subscription": i["subscription"],
        })).collect::<Vec<_>>(),
        "invoices_has_more": more_invoices,
        "payments": charges.iter().map(|c| serde_json::json!({
            "id": c["id"],
            "payment_intent": c["payment_intent"],
            "status": c["status"],
            "created": c["created"],
            "currency": c["currency"],
            "amount": c["amount"],
            "amount_formatted": money(&c["amount"], &c["currency"]),
            "amount_refunded": c["amount_refunded"],
            "failure_message": c["failure_message"],
            "invoice": c["invoice"],
        })).collect::<Vec<_>>(),
        "payments_has_more": more_charges,
    }))
}
