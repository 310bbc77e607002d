//! Reads from Stripe now, for what the mirror cannot hold: the balance (no list, no events).

use serde_json::{Value, json};
use sm_stripe::ErrorKind;
use sm_warehouse::AccountRecord;

use crate::{Engine, EngineError, ErrorCode};

/// The account's balance as Stripe has it now: available and pending, per currency, in minor
/// units and in words.
pub async fn balance(engine: &Engine, record: &AccountRecord) -> Result<Value, EngineError> {
    let key = engine.open_key(record)?;
    let client = engine.client_for(record, &key)?;
    let balance = client
        .get("/v1/balance", &[])
        .await
        .map_err(|error| match error.kind() {
            Some(ErrorKind::PermissionDenied { .. }) => EngineError {
                code: ErrorCode::PermissionMissing,
                message: format!(
                    "the key of {} lacks rak_balance_read, which the balance needs",
                    record.connection.label()
                ),
                hint: Some(format!(
                    "edit the restricted key in the Stripe dashboard to grant Read on Balance, then update the key (`stripe-mirror update-key {}`)",
                    record.connection.label()
                )),
                permission: Some("rak_balance_read".into()),
            },
            _ => EngineError::from(error),
        })?;
    let side = |name: &str| {
        balance[name]
            .as_array()
            .map(|funds| {
                funds
                    .iter()
                    .map(|f| {
                        let (amount, currency) = (
                            f["amount"].as_i64().unwrap_or_default(),
                            f["currency"].as_str().unwrap_or_default(),
                        );
                        json!({"amount": amount, "currency": currency, "formatted": crate::money::format(amount, currency)})
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    Ok(json!({
        "account": record.connection.label(),
        "livemode": balance["livemode"],
        "available": side("available"),
        "pending": side("pending"),
    }))
}
