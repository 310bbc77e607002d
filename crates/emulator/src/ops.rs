//! What each write request does: the create, update, delete and action operations a billing account
//! lives by, each changing objects through [`Tx`] so that it records the events Stripe would.
//! The seeded-data generator calls these same operations with the clock set in the past.

use serde_json::{Map, Value, json};

use crate::catalog::Kind;
use crate::failure::Failure;
use crate::objects::{Params, Tx};
use crate::store::{NO_PARENT, Slot};

/// How many entries an embedded sub-list (`subscription.items`, `invoice.lines`) shows.
pub const EMBEDDED_PAGE: usize = 10;

/// The slot of a live object of `kind` with `id`, or Stripe's 404.
pub fn find(tx: &Tx, kind: Kind, id: &str) -> Result<Slot, Failure> {
    match tx.store.slot_of(id) {
        Some(slot) if tx.store.get(slot).kind == kind && !tx.store.get(slot).deleted => Ok(slot),
        _ => Err(Failure::no_such(kind.info().object, id)),
    }
}

/// Like [`find`], naming the parameter that carried the id.
fn find_param(tx: &Tx, kind: Kind, id: &str, param: &str) -> Result<Slot, Failure> {
    find(tx, kind, id).map_err(|mut failure| {
        failure.body["error"]["param"] = json!(param);
        failure
    })
}

/// `POST /v1/{collection}`.
pub fn create(tx: &mut Tx, kind: Kind, mut params: Params) -> Result<Value, Failure> {
    let slot = match kind {
        Kind::Customer => create_generic(tx, kind, params, |tx, o| {
            o["invoice_prefix"] = json!(tx.rng.alphanumeric(8).to_uppercase());
            o["next_invoice_sequence"] = json!(1);
            o["delinquent"] = json!(false);
            o["tax_exempt"] = json!("none");
            o["preferred_locales"] = json!([]);
        })?,
        Kind::Product => {
            params
                .0
                .get("name")
                .ok_or_else(|| Failure::missing_param("name"))?;
            create_generic(tx, kind, params, |tx, o| {
                o["active"] = json!(true);
                o["updated"] = json!(tx.now);
            })?
        }
        Kind::Price => create_price(tx, params)?,
        Kind::Plan => create_plan(tx, params)?,
        Kind::Coupon => create_coupon(tx, params)?,
        Kind::PromotionCode => {
            let coupon_id = params.require_str("coupon")?;
            let coupon = tx
                .store
                .value(find_param(tx, Kind::Coupon, &coupon_id, "coupon")?);
            let code = params
                .take_str("code")
                .unwrap_or_else(|| tx.rng.alphanumeric(8).to_uppercase());
            create_generic(tx, kind, params, |_, o| {
                o["coupon"] = coupon;
                o["code"] = json!(code);
                o["active"] = json!(true);
                o["restrictions"] = json!({"first_time_transaction": false, "minimum_amount": null, "minimum_amount_currency": null});
            })?
        }
        Kind::TaxRate => {
            for required in ["display_name", "percentage", "inclusive"] {
                params
                    .0
                    .get(required)
                    .ok_or_else(|| Failure::missing_param(required))?;
            }
            create_generic(tx, kind, params, |_, o| o["active"] = json!(true))?
        }
        Kind::Subscription => create_subscription(tx, params)?,
        Kind::SubscriptionItem => {
            let subscription = params.require_str("subscription")?;
            let sub_slot = find_param(tx, Kind::Subscription, &subscription, "subscription")?;
            let item = json!({"price": params.require_str("price")?, "quantity": params.take_str("quantity").unwrap_or_else(|| "1".into())});
            params.apply_rest(&mut json!({"object": "subscription_item"}))?;
            let mut sub = tx.store.value(sub_slot);
            let slot = add_subscription_item(tx, sub_slot, &mut sub, item.as_object().unwrap())?;
            refresh_subscription_items(tx, sub_slot, &mut sub);
            tx.save(sub_slot, &sub);
            slot
        }
        Kind::Invoice => create_invoice(tx, params)?,
        Kind::InvoiceItem => create_invoice_item(tx, params)?,
        Kind::PaymentIntent => create_payment_intent(tx, params)?,
        Kind::Charge => {
            let amount = params.require_i64("amount")?;
            let currency = params.require_str("currency")?;
            let customer = params.take_str("customer");
            if let Some(customer) = &customer {
                find_param(tx, Kind::Customer, customer, "customer")?;
            }
            params.take_str("source");
            let description = params.take_str("description");
            let fee_amount = params.take_i64("application_fee_amount")?;
            if fee_amount.is_some_and(|fee| fee < 0 || fee > amount) {
                return Err(Failure::invalid(
                    "application_fee_amount must be between 0 and the charge's amount.",
                    Some("application_fee_amount"),
                ));
            }
            let charge = charge_payment(
                tx,
                customer.as_deref(),
                amount,
                &currency,
                description.as_deref(),
                None,
                None,
            );
            let mut object = tx.store.value(charge);
            params.apply_rest(&mut object)?;
            if let Some(fee_amount) = fee_amount {
                // The fee the application collected on this charge (a Connect platform's fee,
                // kept in the same account here for simplicity).
                let mut fee = tx.blank(Kind::ApplicationFee, tx.now);
                fee["amount"] = json!(fee_amount);
                fee["charge"] = object["id"].clone();
                fee["currency"] = json!(currency);
                fee["originating_transaction"] = object["id"].clone();
                fee["refunds"]["url"] = json!(format!(
                    "/v1/application_fees/{}/refunds",
                    fee["id"].as_str().unwrap_or_default()
                ));
                tx.insert(Kind::ApplicationFee, &fee, NO_PARENT);
                tx.event("application_fee.created", &fee, None);
                object["application_fee"] = fee["id"].clone();
                object["application_fee_amount"] = json!(fee_amount);
            }
            // What the parameters set after `charge.succeeded` was recorded is announced too.
            let before = tx.store.value(charge);
            if before != object {
                let previous: serde_json::Map<String, Value> = object
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| before.get(k.as_str()) != Some(*v))
                    .map(|(k, _)| {
                        (
                            k.clone(),
                            before.get(k.as_str()).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect();
                tx.save_as(charge, &object, None);
                tx.event("charge.updated", &object, Some(Value::Object(previous)));
            }
            charge
        }
        Kind::Refund => create_refund(tx, params)?,
        Kind::Payout => {
            let amount = params.require_i64("amount")?;
            let currency = params.require_str("currency")?;

            payout(tx, amount, &currency, "pending", Some(params))?
        }
        Kind::CheckoutSession => create_checkout_session(tx, params)?,
        Kind::PaymentLink => create_payment_link(tx, params)?,
        Kind::WebhookEndpoint => return create_webhook_endpoint(tx, params),
        Kind::PaymentMethod => {
            let kind_of_method = params.take_str("type").unwrap_or_else(|| "card".into());
            let card = params.0.remove("card");
            let last4 = card
                .as_ref()
                .and_then(|c| c["number"].as_str())
                .map(|n| n[n.len().saturating_sub(4)..].to_owned())
                .unwrap_or_else(|| "4242".into());
            create_generic(tx, kind, params, |_, o| {
                o["type"] = json!(kind_of_method);
                o["card"] = card_details(&last4);
            })?
        }
        Kind::SetupIntent => {
            let customer = params.take_str("customer");
            create_generic(tx, kind, params, |tx, o| {
                o["customer"] = json!(customer);
                o["status"] = json!("requires_payment_method");
                o["usage"] = json!("off_session");
                o["payment_method_types"] = json!(["card"]);
                o["client_secret"] = json!(format!(
                    "{}_secret_{}",
                    o["id"].as_str().unwrap(),
                    tx.rng.alphanumeric(24)
                ));
            })?
        }
        Kind::CreditNote => create_credit_note(tx, params)?,
        Kind::SubscriptionSchedule => {
            let customer = params.require_str("customer")?;
            find_param(tx, Kind::Customer, &customer, "customer")?;
            let phases = params.take_list("phases");
            let phases = schedule_phases(tx, &phases)?;
            create_generic(tx, kind, params, |_, o| {
                o["customer"] = json!(customer);
                o["status"] = json!("not_started");
                o["end_behavior"] = json!("release");
                o["phases"] = json!(phases);
            })?
        }
        Kind::Transfer | Kind::Topup => {
            let amount = params.require_i64("amount")?;
            let currency = params.require_str("currency")?;
            if kind == Kind::Transfer && !params.0.contains_key("destination") {
                return Err(Failure::missing_param("destination"));
            }
            // The other parameters are checked before the balance transaction is stored.
            let mut probe = crate::objects::template(kind.info().object);
            Params(params.0.clone()).apply_rest(&mut probe)?;
            let description = probe["description"].as_str().map(str::to_owned);
            create_generic(tx, kind, params, |tx, o| {
                let id = o["id"].as_str().unwrap_or_default().to_owned();
                // The money leaves (transfer) or enters (top-up) the balance.
                let (signed, txn_type) = match kind {
                    Kind::Transfer => (-amount, "transfer"),
                    _ => (amount, "topup"),
                };
                let txn = balance_transaction(
                    tx,
                    signed,
                    &currency,
                    txn_type,
                    &id,
                    description.as_deref(),
                );
                o["amount"] = json!(amount);
                o["balance_transaction"] = json!(txn);
                o["currency"] = json!(currency);
                if kind == Kind::Transfer {
                    o["destination_payment"] = json!(tx.rng.id("py"));
                    o["source_type"] = json!("card");
                    o["reversals"]["url"] = json!(format!("/v1/transfers/{id}/reversals"));
                } else {
                    o["status"] = json!("succeeded");
                    o["expected_availability_date"] = json!(tx.now + 86_400);
                }
            })?
        }
        _ => {
            return Err(Failure::unrecognized_url(
                "POST",
                &format!("/v1/{}", collection_path(kind)),
            ));
        }
    };
    Ok(tx.store.value(slot))
}

/// `POST /v1/{collection}/{id}`.
pub fn update(tx: &mut Tx, kind: Kind, id: &str, mut params: Params) -> Result<Value, Failure> {
    let slot = find(tx, kind, id)?;
    let mut object = tx.store.value(slot);
    match kind {
        Kind::Subscription => return update_subscription(tx, slot, object, params),
        Kind::SubscriptionItem => {
            let sub_slot = tx.store.get(slot).parent;
            let mut item = object;
            if let Some(price) = params.take_str("price") {
                item["price"] = tx
                    .store
                    .value(find_param(tx, Kind::Price, &price, "price")?);
            }
            if let Some(quantity) = params.take_i64("quantity")? {
                item["quantity"] = json!(quantity);
            }
            params.apply_rest(&mut item)?;
            tx.save_as(slot, &item, None);
            let mut sub = tx.store.value(sub_slot);
            refresh_subscription_items(tx, sub_slot, &mut sub);
            tx.save(sub_slot, &sub);
            return Ok(item);
        }
        Kind::Product => object["updated"] = json!(tx.now),
        Kind::Price => {
            // Prices are immutable but for these.
            for field in params.0.keys() {
                if ![
                    "active",
                    "metadata",
                    "nickname",
                    "lookup_key",
                    "tax_behavior",
                    "expand",
                    "transfer_lookup_key",
                ]
                .contains(&field.as_str())
                {
                    return Err(Failure::unknown_param(field));
                }
            }
            params.0.remove("transfer_lookup_key");
        }
        Kind::WebhookEndpoint => {
            if let Some(disabled) = params.take_bool("disabled")? {
                object["status"] = json!(if disabled { "disabled" } else { "enabled" });
            }
            let events = params.take_strings("enabled_events");
            if !events.is_empty() {
                object["enabled_events"] = json!(events);
            }
        }
        Kind::Invoice => {
            let status = object["status"].as_str().unwrap_or_default();
            if status != "draft"
                && params
                    .0
                    .keys()
                    .any(|k| k != "metadata" && k != "expand" && k != "description")
            {
                return Err(Failure::state(format!(
                    "You can only update metadata and description of a finalized invoice (status {status})."
                )));
            }
        }
        _ => {}
    }
    params.apply_rest(&mut object)?;
    tx.save(slot, &object);
    Ok(object)
}

/// `DELETE /v1/{collection}/{id}`.
pub fn delete(tx: &mut Tx, kind: Kind, id: &str) -> Result<Value, Failure> {
    let slot = find(tx, kind, id)?;
    match kind {
        Kind::Subscription => return cancel_subscription(tx, slot),
        Kind::Customer => {
            // Deleting a customer cancels its subscriptions first, as Stripe does.
            let subs: Vec<Slot> = tx
                .store
                .page(
                    Kind::Subscription,
                    &crate::store::ListQuery {
                        limit: usize::MAX,
                        ..Default::default()
                    },
                    |o| {
                        o.attrs[0].as_deref() == Some(id)
                            && o.attrs[1].as_deref() != Some("canceled")
                    },
                )
                .0;
            for sub in subs {
                cancel_subscription(tx, sub)?;
            }
        }
        Kind::Product => {
            let has_prices = !tx
                .store
                .page(
                    Kind::Price,
                    &crate::store::ListQuery {
                        limit: 1,
                        ..Default::default()
                    },
                    |o| o.attrs[2].as_deref() == Some(id),
                )
                .0
                .is_empty();
            if has_prices {
                return Err(Failure::invalid(
                    "This product cannot be deleted because it has one or more user-created prices.",
                    None,
                ));
            }
        }
        Kind::Invoice if tx.store.value(slot)["status"] != json!("draft") => {
            return Err(Failure::state("You can only delete draft invoices."));
        }
        Kind::SubscriptionItem => {
            let sub_slot = tx.store.get(slot).parent;
            if tx.store.children(sub_slot, Kind::SubscriptionItem).len() <= 1 {
                return Err(Failure::invalid(
                    "A subscription must have at least one active plan. To cancel a subscription, please use the cancel API endpoint on /v1/subscriptions.",
                    None,
                ));
            }
            let stub = tx.delete(slot);
            let mut sub = tx.store.value(sub_slot);
            refresh_subscription_items(tx, sub_slot, &mut sub);
            tx.save(sub_slot, &sub);
            return Ok(stub);
        }
        Kind::WebhookEndpoint => {
            tx.store.webhook_secrets.remove(id);
        }
        _ => {}
    }
    if !kind.info().deletable {
        return Err(Failure::unrecognized_url(
            "DELETE",
            &format!("/v1/{}/{id}", collection_path(kind)),
        ));
    }
    Ok(tx.delete(slot))
}

/// `POST /v1/{collection}/{id}/{action}`.
pub fn action(
    tx: &mut Tx,
    kind: Kind,
    id: &str,
    action: &str,
    mut params: Params,
) -> Result<Value, Failure> {
    let slot = find(tx, kind, id)?;
    let mut object = tx.store.value(slot);
    let status = object["status"].as_str().unwrap_or_default().to_owned();
    let unknown = || {
        Failure::unrecognized_url(
            "POST",
            &format!("/v1/{}/{id}/{action}", collection_path(kind)),
        )
    };
    match (kind, action) {
        (Kind::Invoice, "finalize") => {
            if status != "draft" {
                return Err(Failure::state(format!(
                    "This invoice is already finalized (status {status})."
                )));
            }
            params.take_bool("auto_advance")?;
            finalize_invoice(tx, slot, &mut object);
        }
        (Kind::Invoice, "pay") => {
            if status == "draft" {
                finalize_invoice(tx, slot, &mut object);
            } else if status != "open" && status != "uncollectible" {
                return Err(Failure::state(format!("Invoice is already {status}.")));
            }
            params.take_bool("paid_out_of_band")?;
            params.take_str("payment_method");
            params.take_str("source");
            pay_invoice(tx, slot, &mut object);
        }
        (Kind::Invoice, "void") => {
            if status != "open" && status != "uncollectible" {
                return Err(Failure::state(format!(
                    "You can only void open or uncollectible invoices (status {status})."
                )));
            }
            object["status"] = json!("void");
            object["status_transitions"]["voided_at"] = json!(tx.now);
            object["amount_remaining"] = json!(0);
            tx.save_as(slot, &object, None);
            tx.event("invoice.voided", &object, None);
        }
        (Kind::Invoice, "mark_uncollectible") => {
            if status != "open" {
                return Err(Failure::state(format!(
                    "You can only mark open invoices uncollectible (status {status})."
                )));
            }
            object["status"] = json!("uncollectible");
            object["status_transitions"]["marked_uncollectible_at"] = json!(tx.now);
            tx.save_as(slot, &object, None);
            tx.event("invoice.marked_uncollectible", &object, None);
        }
        (Kind::Invoice, "send") => {
            tx.event("invoice.sent", &object, None);
        }
        (Kind::PaymentIntent, "confirm") => {
            if ![
                "requires_payment_method",
                "requires_confirmation",
                "requires_action",
            ]
            .contains(&status.as_str())
            {
                return Err(Failure::state(format!(
                    "This PaymentIntent's status is {status}; it cannot be confirmed."
                )));
            }
            params.take_str("payment_method");
            succeed_payment_intent(tx, slot, &mut object);
        }
        (Kind::PaymentIntent, "capture") => {
            if status != "requires_capture" {
                return Err(Failure::state(format!(
                    "This PaymentIntent could not be captured because it has a status of {status}."
                )));
            }
            object["capture_method"] = json!("automatic");
            succeed_payment_intent(tx, slot, &mut object);
        }
        (Kind::PaymentIntent, "cancel") => {
            if status == "succeeded" || status == "canceled" {
                return Err(Failure::state(format!(
                    "You cannot cancel this PaymentIntent because it has a status of {status}."
                )));
            }
            object["status"] = json!("canceled");
            object["canceled_at"] = json!(tx.now);
            object["cancellation_reason"] = json!(
                params
                    .take_str("cancellation_reason")
                    .unwrap_or_else(|| "requested_by_customer".into())
            );
            tx.save_as(slot, &object, None);
            tx.event("payment_intent.canceled", &object, None);
        }
        (Kind::Payout, "cancel") => {
            if status != "pending" {
                return Err(Failure::state(format!(
                    "Payouts can only be canceled while pending (status {status})."
                )));
            }
            object["status"] = json!("canceled");
            tx.save_as(slot, &object, None);
            tx.event("payout.canceled", &object, None);
        }
        (Kind::CheckoutSession, "expire") => {
            if status != "open" {
                return Err(Failure::state(format!(
                    "Only Checkout Sessions with a status of open can be expired (status {status})."
                )));
            }
            object["status"] = json!("expired");
            object["url"] = Value::Null;
            tx.save_as(slot, &object, None);
            tx.event("checkout.session.expired", &object, None);
        }
        (Kind::Dispute, "close") => {
            object["status"] = json!("lost");
            tx.save_as(slot, &object, None);
            tx.event("charge.dispute.closed", &object, None);
        }
        (Kind::CreditNote, "void") => {
            object["status"] = json!("void");
            object["voided_at"] = json!(tx.now);
            tx.save_as(slot, &object, None);
            tx.event("credit_note.voided", &object, None);
        }
        (Kind::PaymentMethod, "attach") => {
            let customer = params.require_str("customer")?;
            let parent = find_param(tx, Kind::Customer, &customer, "customer")?;
            object["customer"] = json!(customer);
            tx.store.set_parent(slot, parent);
            tx.save_as(slot, &object, None);
            tx.event("payment_method.attached", &object, None);
        }
        (Kind::PaymentMethod, "detach") => {
            object["customer"] = Value::Null;
            tx.store.set_parent(slot, NO_PARENT);
            tx.save_as(slot, &object, None);
            tx.event("payment_method.detached", &object, None);
        }
        (Kind::SetupIntent, "confirm") => {
            object["status"] = json!("succeeded");
            tx.save_as(slot, &object, None);
            tx.event("setup_intent.succeeded", &object, None);
        }
        (Kind::SetupIntent, "cancel") => {
            object["status"] = json!("canceled");
            tx.save_as(slot, &object, None);
            tx.event("setup_intent.canceled", &object, None);
        }
        _ => return Err(unknown()),
    }
    params.0.remove("expand");
    if let Some(name) = params.0.keys().next() {
        return Err(Failure::unknown_param(name));
    }
    Ok(tx.store.value(slot))
}

/// `POST /v1/customers/{id}/{segment}`: tax ids and balance transactions.
pub fn create_child(
    tx: &mut Tx,
    customer_id: &str,
    kind: Kind,
    mut params: Params,
) -> Result<Value, Failure> {
    let customer_slot = find(tx, Kind::Customer, customer_id)?;
    let slot = match kind {
        Kind::TaxId => {
            let tax_type = params.require_str("type")?;
            let value = params.require_str("value")?;
            let mut object = tx.blank(Kind::TaxId, tx.now);
            object["customer"] = json!(customer_id);
            object["type"] = json!(tax_type);
            object["value"] = json!(value);
            object["country"] = json!(tax_id_country(&tax_type, &value));
            object["verification"] =
                json!({"status": "pending", "verified_address": null, "verified_name": null});
            params.apply_rest(&mut object)?;
            tx.insert(Kind::TaxId, &object, customer_slot)
        }
        Kind::CustomerBalanceTransaction => {
            let amount = params.require_i64("amount")?;
            let currency = params.require_str("currency")?;
            customer_balance_transaction(
                tx,
                customer_slot,
                amount,
                &currency,
                "adjustment",
                Some(params),
            )?
        }
        _ => {
            return Err(Failure::unrecognized_url(
                "POST",
                &format!("/v1/customers/{customer_id}/…"),
            ));
        }
    };
    Ok(tx.store.value(slot))
}

/// The country of a tax id: an EU VAT number's own prefix (Greece writes `EL`), else the
/// type's (`gb_vat` → `GB`).
fn tax_id_country(tax_type: &str, value: &str) -> String {
    let prefix = tax_type.split('_').next().unwrap_or("us");
    if prefix == "eu" {
        let own: String = value.chars().take(2).collect::<String>().to_uppercase();
        if own.len() == 2 && own.chars().all(|c| c.is_ascii_alphabetic()) {
            return if own == "EL" { "GR".into() } else { own };
        }
    }
    prefix.to_uppercase()
}

/// A balance adjustment on a customer, which also moves `customer.balance`.
pub fn customer_balance_transaction(
    tx: &mut Tx,
    customer_slot: Slot,
    amount: i64,
    currency: &str,
    kind_of_transaction: &str,
    params: Option<Params>,
) -> Result<Slot, Failure> {
    let mut customer = tx.store.value(customer_slot);
    let ending = customer["balance"].as_i64().unwrap_or(0) + amount;
    let mut object = tx.blank(Kind::CustomerBalanceTransaction, tx.now);
    object["amount"] = json!(amount);
    object["currency"] = json!(currency);
    object["customer"] = customer["id"].clone();
    object["ending_balance"] = json!(ending);
    object["type"] = json!(kind_of_transaction);
    if let Some(params) = params {
        params.apply_rest(&mut object)?;
    }
    let slot = tx.insert(Kind::CustomerBalanceTransaction, &object, customer_slot);
    customer["balance"] = json!(ending);
    if customer["currency"].is_null() {
        customer["currency"] = json!(currency);
    }
    tx.save(customer_slot, &customer);
    Ok(slot)
}

/// Creates a top-level object from its template, a kind-specific setup and the remaining params.
fn create_generic(
    tx: &mut Tx,
    kind: Kind,
    params: Params,
    setup: impl FnOnce(&mut Tx, &mut Value),
) -> Result<Slot, Failure> {
    let mut object = tx.blank(kind, tx.now);
    setup(tx, &mut object);
    if kind == Kind::Coupon
        && let Some(Value::String(id)) = params.0.get("id")
    {
        object["id"] = json!(id);
    }
    let mut params = params;
    if matches!(kind, Kind::Coupon | Kind::Plan) {
        params.0.remove("id");
    }
    params.apply_rest(&mut object)?;
    if tx
        .store
        .slot_of(object["id"].as_str().unwrap_or_default())
        .is_some()
    {
        return Err(Failure::invalid(
            format!("{} already exists.", object["id"]),
            Some("id"),
        ));
    }
    Ok(tx.insert(kind, &object, NO_PARENT))
}

pub fn collection_path(kind: Kind) -> String {
    match kind.info().list {
        crate::catalog::ListPath::TopLevel(path) => path.to_owned(),
        crate::catalog::ListPath::Child { segment, .. } => segment.to_owned(),
    }
}

fn create_price(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let currency = params.require_str("currency")?;
    let product = match (params.take_str("product"), params.0.remove("product_data")) {
        (Some(id), _) => {
            find_param(tx, Kind::Product, &id, "product")?;
            id
        }
        (None, Some(Value::Object(data))) => {
            let product = create(tx, Kind::Product, Params(data))?;
            product["id"].as_str().unwrap().to_owned()
        }
        _ => return Err(Failure::missing_param("product")),
    };
    let unit_amount = params.take_i64("unit_amount")?;
    let recurring = match params.0.remove("recurring") {
        Some(Value::Object(r)) => {
            let interval = r
                .get("interval")
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::missing_param("recurring[interval]"))?;
            if !["day", "week", "month", "year"].contains(&interval) {
                return Err(Failure::invalid(
                    "Invalid recurring[interval]: must be one of day, month, week, or year"
                        .to_string(),
                    Some("recurring[interval]"),
                ));
            }
            let count = r
                .get("interval_count")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(1);
            Some(
                json!({"aggregate_usage": null, "interval": interval, "interval_count": count, "usage_type": "licensed"}),
            )
        }
        _ => None,
    };
    let slot = create_generic(tx, Kind::Price, params, |_, o| {
        o["active"] = json!(true);
        o["billing_scheme"] = json!("per_unit");
        o["currency"] = json!(currency);
        o["product"] = json!(product);
        o["unit_amount"] = json!(unit_amount);
        o["unit_amount_decimal"] = json!(unit_amount.map(|a| a.to_string()));
        o["type"] = json!(if recurring.is_some() {
            "recurring"
        } else {
            "one_time"
        });
        o["recurring"] = recurring.clone().unwrap_or(Value::Null);
        o["tax_behavior"] = json!("unspecified");
    })?;
    Ok(slot)
}

fn create_plan(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let currency = params.require_str("currency")?;
    let interval = params.require_str("interval")?;
    let amount = params.take_i64("amount")?;
    let product = match params.0.remove("product") {
        Some(Value::String(id)) => {
            find_param(tx, Kind::Product, &id, "product")?;
            id
        }
        Some(Value::Object(data)) => create(tx, Kind::Product, Params(data))?["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        _ => return Err(Failure::missing_param("product")),
    };
    let custom_id = params.take_str("id");
    let slot = create_generic(tx, Kind::Plan, params, |_, o| {
        if let Some(id) = &custom_id {
            o["id"] = json!(id);
        }
        o["active"] = json!(true);
        o["amount"] = json!(amount);
        o["amount_decimal"] = json!(amount.map(|a| a.to_string()));
        o["billing_scheme"] = json!("per_unit");
        o["currency"] = json!(currency);
        o["interval"] = json!(interval);
        o["interval_count"] = json!(1);
        o["product"] = json!(product);
        o["usage_type"] = json!("licensed");
    })?;
    Ok(slot)
}

/// The phases of a new subscription schedule, as Stripe shows them: each phase with every field of
/// `subscription_schedule_phase_configuration`, its items with price ids and integer quantities,
/// one after the other from now (a phase lasts `iterations` billing intervals, 1 by default, unless
/// it has an `end_date`).
fn schedule_phases(tx: &Tx, phases: &[Map<String, Value>]) -> Result<Vec<Value>, Failure> {
    let mut start = tx.now;
    let mut out = Vec::new();
    for (n, phase) in phases.iter().enumerate() {
        let param = |field: &str| format!("phases[{n}][{field}]");
        let integer = |field: &str| -> Result<Option<i64>, Failure> {
            match phase.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(v)) => Ok(v.as_i64()),
                Some(Value::String(v)) => v.parse().map(Some).map_err(|_| {
                    Failure::invalid(format!("Invalid integer: {v}"), Some(&param(field)))
                }),
                Some(other) => Err(Failure::invalid(
                    format!("Invalid integer: {other}"),
                    Some(&param(field)),
                )),
            }
        };
        let raw_items: Vec<Value> = match phase.get("items") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Object(item)) => vec![Value::Object(item.clone())],
            _ => return Err(Failure::missing_param(&param("items"))),
        };
        let mut items = Vec::new();
        let mut first_price: Option<Value> = None;
        for (k, item) in raw_items.iter().enumerate() {
            let item_param = |field: &str| format!("phases[{n}][items][{k}][{field}]");
            let price_id = item["price"]
                .as_str()
                .ok_or_else(|| Failure::missing_param(&item_param("price")))?;
            let price =
                tx.store
                    .value(find_param(tx, Kind::Price, price_id, &item_param("price"))?);
            let quantity = match &item["quantity"] {
                Value::Null => 1,
                Value::Number(q) => q.as_i64().unwrap_or(1),
                Value::String(q) => q.parse::<i64>().map_err(|_| {
                    Failure::invalid(
                        format!("Invalid integer: {q}"),
                        Some(&item_param("quantity")),
                    )
                })?,
                other => {
                    return Err(Failure::invalid(
                        format!("Invalid integer: {other}"),
                        Some(&item_param("quantity")),
                    ));
                }
            };
            let metadata = match &item["metadata"] {
                Value::Object(m) => Value::Object(m.clone()),
                _ => json!({}),
            };
            items.push(json!({"billing_thresholds": null, "metadata": metadata, "price": price_id, "quantity": quantity, "tax_rates": []}));
            first_price.get_or_insert(price);
        }
        let price = first_price.ok_or_else(|| Failure::missing_param(&param("items")))?;
        let end = match integer("end_date")? {
            Some(end) => end,
            None => start + integer("iterations")?.unwrap_or(1).max(1) * interval_seconds(&price),
        };
        let metadata = match phase.get("metadata") {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            _ => json!({}),
        };
        let proration = phase
            .get("proration_behavior")
            .and_then(Value::as_str)
            .unwrap_or("create_prorations");
        out.push(json!({
            "add_invoice_items": [],
            "application_fee_percent": null,
            "billing_cycle_anchor": null,
            "billing_thresholds": null,
            "collection_method": null,
            "coupon": null,
            "currency": price["currency"],
            "default_payment_method": null,
            "default_tax_rates": [],
            "description": phase.get("description").cloned().unwrap_or(Value::Null),
            "end_date": end,
            "invoice_settings": null,
            "items": items,
            "metadata": metadata,
            "on_behalf_of": null,
            "proration_behavior": proration,
            "start_date": start,
            "transfer_data": null,
            "trial_end": integer("trial_end")?,
        }));
        start = end;
    }
    Ok(out)
}

fn create_coupon(tx: &mut Tx, params: Params) -> Result<Slot, Failure> {
    let has_discount = params.0.contains_key("percent_off") || params.0.contains_key("amount_off");
    if !has_discount {
        return Err(Failure::invalid(
            "You must pass either amount_off or percent_off.",
            None,
        ));
    }
    if params.0.contains_key("amount_off") && !params.0.contains_key("currency") {
        return Err(Failure::missing_param("currency"));
    }
    create_generic(tx, Kind::Coupon, params, |_, o| {
        o["duration"] = json!("once");
        o["valid"] = json!(true);
    })
}

fn card_details(last4: &str) -> Value {
    json!({
        "brand": "visa", "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
        "country": "US", "exp_month": 12, "exp_year": 2034, "fingerprint": "Xt5EWLLDS7FJjR1c", "funding": "credit",
        "generated_from": null, "last4": last4, "networks": {"available": ["visa"], "preferred": null},
        "three_d_secure_usage": {"supported": true}, "wallet": null
    })
}

/// The amount one period of a price at a quantity costs.
fn line_amount(price: &Value, quantity: i64) -> i64 {
    price["unit_amount"].as_i64().unwrap_or(0) * quantity
}

/// Seconds in one billing interval of a recurring price.
pub fn interval_seconds(price: &Value) -> i64 {
    let count = price["recurring"]["interval_count"].as_i64().unwrap_or(1);
    let unit = match price["recurring"]["interval"].as_str().unwrap_or("month") {
        "day" => 86_400,
        "week" => 7 * 86_400,
        "year" => 365 * 86_400,
        _ => 30 * 86_400,
    };
    count * unit
}

fn create_subscription(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let customer = params.require_str("customer")?;
    find_param(tx, Kind::Customer, &customer, "customer")?;
    let items = params.take_list("items");
    if items.is_empty() {
        return Err(Failure::missing_param("items"));
    }
    let trial_days = params.take_i64("trial_period_days")?;
    let trial_end = params.take_i64("trial_end")?;
    params.take_str("payment_behavior");
    params.take_str("proration_behavior");
    let mut sub = tx.blank(Kind::Subscription, tx.now);
    sub["customer"] = json!(customer);
    sub["billing_cycle_anchor"] = json!(tx.now);
    sub["start_date"] = json!(tx.now);
    sub["current_period_start"] = json!(tx.now);
    sub["automatic_tax"] = json!({"enabled": false});
    sub["payment_settings"] = json!({"payment_method_options": null, "payment_method_types": null, "save_default_payment_method": "off"});
    let trial_end = trial_end.or(trial_days.map(|d| tx.now + d * 86_400));
    if let Some(end) = trial_end {
        sub["status"] = json!("trialing");
        sub["trial_start"] = json!(tx.now);
        sub["trial_end"] = json!(end);
    }
    params.apply_rest(&mut sub)?;
    // Items are made before the subscription is stored so that its `created` event shows them.
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let mut built = Vec::new();
    for (n, item) in items.iter().enumerate() {
        built.push(build_subscription_item(tx, &sub_id, item).map_err(|mut f| {
            if let Some(param) = f.body["error"]["param"].as_str() {
                f.body["error"]["param"] = json!(format!("items[{n}][{param}]"));
            }
            f
        })?);
    }
    let first_price = &built[0]["price"];
    sub["currency"] = first_price["currency"].clone();
    let period_end = trial_end.unwrap_or(tx.now + interval_seconds(first_price));
    sub["current_period_end"] = json!(period_end);
    sub["items"] = embedded_list(
        &built,
        &format!("/v1/subscription_items?subscription={sub_id}"),
    );
    // Stored quietly first: Stripe's `customer.subscription.created` already shows the first
    // invoice, which needs the stored subscription to exist.
    let slot = tx.store.insert(Kind::Subscription, &sub, NO_PARENT);
    for item in &built {
        tx.store.insert(Kind::SubscriptionItem, item, slot);
    }
    let invoice = invoice_subscription_period(tx, slot, "subscription_create", true)?;
    let mut sub = tx.store.value(slot);
    sub["latest_invoice"] = tx.store.value(invoice)["id"].clone();
    tx.save_as(slot, &sub, None);
    tx.event("customer.subscription.created", &sub, None);
    Ok(slot)
}

fn build_subscription_item(
    tx: &mut Tx,
    sub_id: &str,
    item: &Map<String, Value>,
) -> Result<Value, Failure> {
    let price_id = item
        .get("price")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::missing_param("price"))?;
    let price = tx
        .store
        .value(find_param(tx, Kind::Price, price_id, "price")?);
    if price["type"] != json!("recurring") {
        return Err(Failure::invalid(
            "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.".to_string(),
            Some("price"),
        ));
    }
    let quantity = match item.get("quantity") {
        None => 1,
        Some(Value::String(q)) => q
            .parse::<i64>()
            .map_err(|_| Failure::invalid(format!("Invalid integer: {q}"), Some("quantity")))?,
        Some(Value::Number(q)) => q.as_i64().unwrap_or(1),
        Some(_) => return Err(Failure::invalid("Invalid integer", Some("quantity"))),
    };
    let mut object = tx.blank(Kind::SubscriptionItem, tx.now);
    object["price"] = price;
    object["quantity"] = json!(quantity);
    object["subscription"] = json!(sub_id);
    object["tax_rates"] = json!([]);
    if let Some(Value::Object(metadata)) = item.get("metadata") {
        object["metadata"] = Value::Object(metadata.clone());
    }
    Ok(object)
}

fn add_subscription_item(
    tx: &mut Tx,
    sub_slot: Slot,
    sub: &mut Value,
    item: &Map<String, Value>,
) -> Result<Slot, Failure> {
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let object = build_subscription_item(tx, &sub_id, item)?;
    Ok(tx.store.insert(Kind::SubscriptionItem, &object, sub_slot))
}

/// Rewrites `subscription.items` from the stored items.
pub fn refresh_subscription_items(tx: &mut Tx, sub_slot: Slot, sub: &mut Value) {
    let items: Vec<Value> = tx
        .store
        .children(sub_slot, Kind::SubscriptionItem)
        .iter()
        .map(|&s| tx.store.value(s))
        .collect();
    let url = format!(
        "/v1/subscription_items?subscription={}",
        sub["id"].as_str().unwrap_or_default()
    );
    sub["items"] = embedded_list(&items, &url);
}

/// A truncated sub-list as Stripe embeds it: the first page, `has_more`, and where the rest lives.
pub fn embedded_list(items: &[Value], url: &str) -> Value {
    json!({
        "object": "list",
        "data": items.iter().take(EMBEDDED_PAGE).cloned().collect::<Vec<_>>(),
        "has_more": items.len() > EMBEDDED_PAGE,
        "url": url,
    })
}

fn update_subscription(
    tx: &mut Tx,
    slot: Slot,
    mut sub: Value,
    mut params: Params,
) -> Result<Value, Failure> {
    if sub["status"] == json!("canceled") {
        return Err(Failure::state(
            "A canceled subscription can only update its cancellation_details and metadata.",
        ));
    }
    for (n, item) in params.take_list("items").into_iter().enumerate() {
        match item.get("id").and_then(Value::as_str) {
            Some(item_id) => {
                let item_slot = find_param(
                    tx,
                    Kind::SubscriptionItem,
                    item_id,
                    &format!("items[{n}][id]"),
                )?;
                if tx.store.get(item_slot).parent != slot {
                    return Err(Failure::invalid(
                        format!(
                            "Subscription item {item_id} does not belong to this subscription."
                        ),
                        Some("items"),
                    ));
                }
                if item.get("deleted").and_then(Value::as_str) == Some("true") {
                    tx.store.mark_deleted(item_slot);
                    continue;
                }
                let mut object = tx.store.value(item_slot);
                if let Some(price) = item.get("price").and_then(Value::as_str) {
                    object["price"] = tx.store.value(find_param(
                        tx,
                        Kind::Price,
                        price,
                        &format!("items[{n}][price]"),
                    )?);
                }
                if let Some(quantity) = item.get("quantity").and_then(Value::as_str) {
                    let quantity = quantity.parse::<i64>().map_err(|_| {
                        Failure::invalid(format!("Invalid integer: {quantity}"), Some("quantity"))
                    })?;
                    object["quantity"] = json!(quantity);
                }
                tx.save_as(item_slot, &object, None);
            }
            None => {
                add_subscription_item(tx, slot, &mut sub, &item)?;
            }
        }
    }
    if tx.store.children(slot, Kind::SubscriptionItem).is_empty() {
        return Err(Failure::invalid(
            "A subscription must have at least one active plan.",
            Some("items"),
        ));
    }
    refresh_subscription_items(tx, slot, &mut sub);
    if let Some(at_end) = params.take_bool("cancel_at_period_end")? {
        sub["cancel_at_period_end"] = json!(at_end);
        sub["cancel_at"] = if at_end {
            sub["current_period_end"].clone()
        } else {
            Value::Null
        };
        sub["canceled_at"] = if at_end { json!(tx.now) } else { Value::Null };
    }
    // Ending a trial now starts the first paid period and bills it, as Stripe does.
    let trial_ended = params.take_str("trial_end").as_deref() == Some("now")
        && sub["status"] == json!("trialing");
    if trial_ended {
        sub["status"] = json!("active");
        sub["trial_end"] = json!(tx.now);
        let first_price = tx
            .store
            .children(slot, Kind::SubscriptionItem)
            .first()
            .map(|&item| tx.store.value(item)["price"].clone())
            .unwrap_or_default();
        sub["current_period_start"] = json!(tx.now);
        sub["current_period_end"] = json!(tx.now + interval_seconds(&first_price));
    }
    params.take_str("proration_behavior");
    params.take_str("payment_behavior");
    params.apply_rest(&mut sub)?;
    tx.save(slot, &sub);
    if trial_ended {
        let invoice = invoice_subscription_period(tx, slot, "subscription_cycle", true)?;
        sub = tx.store.value(slot);
        sub["latest_invoice"] = tx.store.value(invoice)["id"].clone();
        tx.save(slot, &sub);
    }
    Ok(sub)
}

/// Cancels a subscription now: it stays listable (with `status=all`) and announces
/// `customer.subscription.deleted`, as Stripe does.
pub fn cancel_subscription(tx: &mut Tx, slot: Slot) -> Result<Value, Failure> {
    let mut sub = tx.store.value(slot);
    if sub["status"] == json!("canceled") {
        return Err(Failure::state("This subscription is already canceled."));
    }
    sub["status"] = json!("canceled");
    sub["canceled_at"] = json!(tx.now);
    sub["ended_at"] = json!(tx.now);
    sub["cancellation_details"] =
        json!({"comment": null, "feedback": null, "reason": "cancellation_requested"});
    tx.save_as(slot, &sub, None);
    tx.event("customer.subscription.deleted", &sub, None);
    Ok(sub)
}

/// Invoices one period of a subscription and, when it is charged automatically, pays it.
pub fn invoice_subscription_period(
    tx: &mut Tx,
    sub_slot: Slot,
    reason: &str,
    pay: bool,
) -> Result<Slot, Failure> {
    let sub = tx.store.value(sub_slot);
    let customer = sub["customer"].as_str().unwrap_or_default().to_owned();
    let trialing = sub["status"] == json!("trialing");
    let mut invoice = new_invoice(
        tx,
        &customer,
        &sub["currency"],
        sub["collection_method"]
            .as_str()
            .unwrap_or("charge_automatically"),
    )?;
    invoice["subscription"] = sub["id"].clone();
    invoice["billing_reason"] = json!(reason);
    invoice["period_start"] = sub["current_period_start"].clone();
    invoice["period_end"] = sub["current_period_start"].clone();
    let items: Vec<Value> = tx
        .store
        .children(sub_slot, Kind::SubscriptionItem)
        .iter()
        .map(|&s| tx.store.value(s))
        .collect();
    let lines: Vec<Value> = items
        .iter()
        .map(|item| {
            let quantity = item["quantity"].as_i64().unwrap_or(1);
            let amount = if trialing {
                0
            } else {
                line_amount(&item["price"], quantity)
            };
            let mut line = invoice_line(tx, &item["price"], quantity, amount, "subscription");
            line["subscription"] = sub["id"].clone();
            line["subscription_item"] = item["id"].clone();
            line["period"] =
                json!({"start": sub["current_period_start"], "end": sub["current_period_end"]});
            line["description"] = json!(format!(
                "{quantity} × {} (at ${:.2} / {})",
                item["price"]["nickname"].as_str().unwrap_or("Plan"),
                item["price"]["unit_amount"].as_i64().unwrap_or(0) as f64 / 100.0,
                item["price"]["recurring"]["interval"]
                    .as_str()
                    .unwrap_or("month")
            ));
            line
        })
        .collect();
    let slot = store_invoice(tx, invoice, lines);
    let mut invoice = tx.store.value(slot);
    finalize_invoice(tx, slot, &mut invoice);
    if pay && invoice["collection_method"] == json!("charge_automatically") {
        pay_invoice(tx, slot, &mut invoice);
    }
    Ok(slot)
}

fn new_invoice(
    tx: &mut Tx,
    customer_id: &str,
    currency: &Value,
    collection: &str,
) -> Result<Value, Failure> {
    let customer_slot = find_param(tx, Kind::Customer, customer_id, "customer")?;
    let customer = tx.store.value(customer_slot);
    let mut invoice = tx.blank(Kind::Invoice, tx.now);
    invoice["customer"] = json!(customer_id);
    invoice["customer_email"] = customer["email"].clone();
    invoice["customer_name"] = customer["name"].clone();
    invoice["customer_tax_exempt"] = json!("none");
    invoice["customer_tax_ids"] = json!([]);
    invoice["account_country"] = json!("US");
    invoice["currency"] = if currency.is_string() {
        currency.clone()
    } else {
        json!("usd")
    };
    invoice["collection_method"] = json!(collection);
    invoice["status"] = json!("draft");
    invoice["auto_advance"] = json!(true);
    invoice["metadata"] = json!({});
    invoice["discounts"] = json!([]);
    invoice["total_discount_amounts"] = json!([]);
    invoice["period_start"] = json!(tx.now);
    invoice["period_end"] = json!(tx.now);
    invoice["billing_reason"] = json!("manual");
    if collection == "send_invoice" {
        invoice["due_date"] = json!(tx.now + 30 * 86_400);
    }
    Ok(invoice)
}

fn invoice_line(tx: &mut Tx, price: &Value, quantity: i64, amount: i64, line_type: &str) -> Value {
    let mut line = crate::objects::template("line_item");
    line["id"] = json!(tx.rng.id("il"));
    line["object"] = json!("line_item");
    line["livemode"] = json!(tx.livemode());
    line["metadata"] = json!({});
    line["amount"] = json!(amount);
    line["amount_excluding_tax"] = json!(amount);
    line["currency"] = price["currency"].clone();
    line["discountable"] = json!(true);
    line["discount_amounts"] = json!([]);
    line["discounts"] = json!([]);
    line["price"] = if price.is_object() {
        price.clone()
    } else {
        Value::Null
    };
    line["quantity"] = json!(quantity);
    line["type"] = json!(line_type);
    line["unit_amount_excluding_tax"] = json!(if quantity > 0 {
        (amount / quantity).to_string()
    } else {
        "0".into()
    });
    line["period"] = json!({"start": tx.now, "end": tx.now});
    line["proration_details"] = json!({"credited_items": null});
    line
}

/// Stores an invoice with its lines (as children) and totals computed from them.
fn store_invoice(tx: &mut Tx, mut invoice: Value, lines: Vec<Value>) -> Slot {
    let id = invoice["id"].as_str().unwrap().to_owned();
    set_invoice_totals(&mut invoice, &lines);
    invoice["lines"] = embedded_list(&lines, &format!("/v1/invoices/{id}/lines"));
    let slot = tx.insert(Kind::Invoice, &invoice, NO_PARENT);
    for line in &lines {
        tx.store.insert(Kind::InvoiceLineItem, line, slot);
    }
    slot
}

fn set_invoice_totals(invoice: &mut Value, lines: &[Value]) {
    let total: i64 = lines
        .iter()
        .map(|l| l["amount"].as_i64().unwrap_or(0))
        .sum();
    for field in [
        "subtotal",
        "subtotal_excluding_tax",
        "total",
        "total_excluding_tax",
        "amount_due",
        "amount_remaining",
    ] {
        invoice[field] = json!(total);
    }
}

/// Adds a line to a draft invoice and recomputes it.
fn add_invoice_line(tx: &mut Tx, invoice_slot: Slot, line: Value) {
    let mut invoice = tx.store.value(invoice_slot);
    tx.store.insert(Kind::InvoiceLineItem, &line, invoice_slot);
    let lines: Vec<Value> = tx
        .store
        .children(invoice_slot, Kind::InvoiceLineItem)
        .iter()
        .map(|&s| tx.store.value(s))
        .collect();
    set_invoice_totals(&mut invoice, &lines);
    let url = format!(
        "/v1/invoices/{}/lines",
        invoice["id"].as_str().unwrap_or_default()
    );
    invoice["lines"] = embedded_list(&lines, &url);
    tx.save(invoice_slot, &invoice);
}

fn create_invoice(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let customer = params.require_str("customer")?;
    let collection = params
        .take_str("collection_method")
        .unwrap_or_else(|| "charge_automatically".into());
    let days_until_due = params.take_i64("days_until_due")?;
    let behavior = params
        .take_str("pending_invoice_items_behavior")
        .unwrap_or_else(|| "exclude".into());
    let currency = params.take_str("currency");
    let mut invoice = new_invoice(
        tx,
        &customer,
        &json!(currency.unwrap_or_else(|| "usd".into())),
        &collection,
    )?;
    if let Some(days) = days_until_due {
        invoice["due_date"] = json!(tx.now + days * 86_400);
    }
    params.apply_rest(&mut invoice)?;
    // Pending invoice items of the customer join the new invoice when asked.
    let pending: Vec<Slot> = if behavior == "include" {
        tx.store
            .page(
                Kind::InvoiceItem,
                &crate::store::ListQuery {
                    limit: usize::MAX,
                    ..Default::default()
                },
                |o| o.attrs[0].as_deref() == Some(customer.as_str()) && o.attrs[1].is_none(),
            )
            .0
    } else {
        Vec::new()
    };
    let slot = store_invoice(tx, invoice, Vec::new());
    for item_slot in pending {
        attach_invoice_item(tx, item_slot, slot);
    }
    Ok(slot)
}

fn attach_invoice_item(tx: &mut Tx, item_slot: Slot, invoice_slot: Slot) {
    let mut item = tx.store.value(item_slot);
    let invoice_id = tx.store.value(invoice_slot)["id"].clone();
    item["invoice"] = invoice_id;
    tx.save_as(item_slot, &item, None);
    let quantity = item["quantity"].as_i64().unwrap_or(1);
    let price = if item["price"].is_object() {
        item["price"].clone()
    } else {
        json!({"currency": item["currency"], "unit_amount": item["unit_amount"]})
    };
    let mut line = invoice_line(
        tx,
        &price,
        quantity,
        item["amount"].as_i64().unwrap_or(0),
        "invoiceitem",
    );
    if !item["price"].is_object() {
        line["price"] = Value::Null;
    }
    line["currency"] = item["currency"].clone();
    line["invoice_item"] = item["id"].clone();
    line["description"] = item["description"].clone();
    add_invoice_line(tx, invoice_slot, line);
}

fn create_invoice_item(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let customer = params.require_str("customer")?;
    find_param(tx, Kind::Customer, &customer, "customer")?;
    let invoice = params.take_str("invoice");
    let quantity = params.take_i64("quantity")?.unwrap_or(1);
    let (amount, currency, price) = match params.take_str("price") {
        Some(price_id) => {
            let price = tx
                .store
                .value(find_param(tx, Kind::Price, &price_id, "price")?);
            (
                line_amount(&price, quantity),
                price["currency"].as_str().unwrap_or("usd").to_owned(),
                price,
            )
        }
        None => {
            let amount = params.require_i64("amount")?;
            (amount, params.require_str("currency")?, Value::Null)
        }
    };
    let invoice_slot = match &invoice {
        Some(id) => {
            let slot = find_param(tx, Kind::Invoice, id, "invoice")?;
            if tx.store.value(slot)["status"] != json!("draft") {
                return Err(Failure::state(
                    "Invoice items can only be added to draft invoices.",
                ));
            }
            Some(slot)
        }
        None => None,
    };
    let slot = create_generic(tx, Kind::InvoiceItem, params, |tx, o| {
        o["customer"] = json!(customer);
        o["amount"] = json!(amount);
        o["currency"] = json!(currency);
        o["quantity"] = json!(quantity);
        o["date"] = json!(tx.now);
        o["discountable"] = json!(true);
        o["discounts"] = json!([]);
        o["tax_rates"] = json!([]);
        o["period"] = json!({"start": tx.now, "end": tx.now});
        o["unit_amount"] = json!(if quantity > 0 { amount / quantity } else { 0 });
        o["unit_amount_decimal"] =
            json!((if quantity > 0 { amount / quantity } else { 0 }).to_string());
        o["price"] = price;
    })?;
    if let Some(invoice_slot) = invoice_slot {
        attach_invoice_item(tx, slot, invoice_slot);
    }
    Ok(slot)
}

/// Draft → open: number, hosted URL, `invoice.finalized`.
pub fn finalize_invoice(tx: &mut Tx, slot: Slot, invoice: &mut Value) {
    let number_base: String = invoice["id"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .skip(3)
        .take(8)
        .collect::<String>()
        .to_uppercase();
    invoice["status"] = json!("open");
    invoice["number"] = json!(format!("{number_base}-0001"));
    invoice["status_transitions"]["finalized_at"] = json!(tx.now);
    invoice["effective_at"] = json!(tx.now);
    let token = tx.rng.alphanumeric(24);
    invoice["hosted_invoice_url"] = json!(format!("https://invoice.stripe.com/i/acct/{token}"));
    invoice["invoice_pdf"] = json!(format!("https://pay.stripe.com/invoice/acct/{token}/pdf"));
    invoice["ending_balance"] = json!(0);
    if invoice["collection_method"] == json!("charge_automatically") {
        invoice["next_payment_attempt"] = json!(tx.now + 3600);
    }
    tx.save_as(slot, invoice, None);
    tx.event("invoice.finalized", invoice, None);
}

/// Open → paid, with a payment intent, a charge and a balance transaction when money is due.
pub fn pay_invoice(tx: &mut Tx, slot: Slot, invoice: &mut Value) {
    let amount = invoice["amount_due"].as_i64().unwrap_or(0);
    if amount > 0 {
        let customer = invoice["customer"].as_str().map(str::to_owned);
        let currency = invoice["currency"].as_str().unwrap_or("usd").to_owned();
        let invoice_id = invoice["id"].as_str().unwrap_or_default().to_owned();
        let pi = new_payment_intent(
            tx,
            amount,
            &currency,
            customer.as_deref(),
            Some(&invoice_id),
        );
        let pi_slot = tx.insert(Kind::PaymentIntent, &pi, NO_PARENT);
        let mut pi = tx.store.value(pi_slot);
        let charge = succeed_payment_intent(tx, pi_slot, &mut pi);
        invoice["charge"] = tx.store.value(charge)["id"].clone();
        invoice["payment_intent"] = pi["id"].clone();
    }
    invoice["status"] = json!("paid");
    invoice["paid"] = json!(true);
    invoice["attempted"] = json!(true);
    invoice["attempt_count"] = json!(1);
    invoice["amount_paid"] = json!(amount);
    invoice["amount_remaining"] = json!(0);
    invoice["next_payment_attempt"] = Value::Null;
    invoice["status_transitions"]["paid_at"] = json!(tx.now);
    tx.save_as(slot, invoice, None);
    tx.event("invoice.paid", invoice, None);
    tx.event("invoice.payment_succeeded", invoice, None);
}

fn new_payment_intent(
    tx: &mut Tx,
    amount: i64,
    currency: &str,
    customer: Option<&str>,
    invoice: Option<&str>,
) -> Value {
    let mut pi = tx.blank(Kind::PaymentIntent, tx.now);
    pi["amount"] = json!(amount);
    pi["amount_capturable"] = json!(0);
    pi["amount_received"] = json!(0);
    pi["currency"] = json!(currency);
    pi["customer"] = json!(customer);
    pi["invoice"] = json!(invoice);
    pi["capture_method"] = json!("automatic");
    pi["confirmation_method"] = json!("automatic");
    pi["payment_method_types"] = json!(["card"]);
    pi["status"] = json!("requires_payment_method");
    let secret = tx.rng.alphanumeric(24);
    pi["client_secret"] = json!(format!("{}_secret_{secret}", pi["id"].as_str().unwrap()));
    pi["amount_details"] = json!({"tip": {}});
    pi
}

fn create_payment_intent(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let amount = params.require_i64("amount")?;
    if amount < 1 {
        return Err(Failure::invalid(
            "This value must be greater than or equal to 1.",
            Some("amount"),
        ));
    }
    let currency = params.require_str("currency")?;
    let customer = params.take_str("customer");
    if let Some(customer) = &customer {
        find_param(tx, Kind::Customer, customer, "customer")?;
    }
    let confirm = params.take_bool("confirm")?.unwrap_or(false);
    let payment_method = params.take_str("payment_method");
    params.take_strings("payment_method_types");
    params.0.remove("automatic_payment_methods");
    let mut pi = new_payment_intent(tx, amount, &currency, customer.as_deref(), None);
    if payment_method.is_some() {
        pi["status"] = json!("requires_confirmation");
    }
    params.apply_rest(&mut pi)?;
    let slot = tx.insert(Kind::PaymentIntent, &pi, NO_PARENT);
    if confirm {
        let mut pi = tx.store.value(slot);
        succeed_payment_intent(tx, slot, &mut pi);
    }
    Ok(slot)
}

/// Charges a payment intent (or holds it for capture) and records what Stripe records.
fn succeed_payment_intent(tx: &mut Tx, slot: Slot, pi: &mut Value) -> Slot {
    let amount = pi["amount"].as_i64().unwrap_or(0);
    let currency = pi["currency"].as_str().unwrap_or("usd").to_owned();
    let customer = pi["customer"].as_str().map(str::to_owned);
    let description = pi["description"].as_str().map(str::to_owned);
    let invoice = pi["invoice"].as_str().map(str::to_owned);
    let pi_id = pi["id"].as_str().unwrap_or_default().to_owned();
    let charge = charge_payment(
        tx,
        customer.as_deref(),
        amount,
        &currency,
        description.as_deref(),
        Some(&pi_id),
        invoice.as_deref(),
    );
    let charge_json = tx.store.value(charge);
    pi["latest_charge"] = charge_json["id"].clone();
    pi["payment_method"] = charge_json["payment_method"].clone();
    if pi["capture_method"] == json!("manual") {
        pi["status"] = json!("requires_capture");
        pi["amount_capturable"] = json!(amount);
        tx.save_as(slot, pi, None);
        tx.event("payment_intent.amount_capturable_updated", pi, None);
    } else {
        pi["status"] = json!("succeeded");
        pi["amount_received"] = json!(amount);
        tx.save_as(slot, pi, None);
        tx.event("payment_intent.succeeded", pi, None);
    }
    charge
}

/// A succeeded charge with its balance transaction; announces `charge.succeeded`.
pub fn charge_payment(
    tx: &mut Tx,
    customer: Option<&str>,
    amount: i64,
    currency: &str,
    description: Option<&str>,
    payment_intent: Option<&str>,
    invoice: Option<&str>,
) -> Slot {
    let mut charge = tx.blank(Kind::Charge, tx.now);
    let charge_id = charge["id"].as_str().unwrap().to_owned();
    let txn = balance_transaction(tx, amount, currency, "charge", &charge_id, description);
    let pm = tx.rng.id("pm");
    charge["amount"] = json!(amount);
    charge["amount_captured"] = json!(amount);
    charge["amount_refunded"] = json!(0);
    charge["balance_transaction"] = json!(txn);
    charge["calculated_statement_descriptor"] = json!("STRIPE MIRROR");
    charge["captured"] = json!(true);
    charge["currency"] = json!(currency);
    charge["customer"] = json!(customer);
    charge["description"] = json!(description);
    charge["invoice"] = json!(invoice);
    charge["payment_intent"] = json!(payment_intent);
    charge["payment_method"] = json!(pm);
    charge["paid"] = json!(true);
    charge["status"] = json!("succeeded");
    charge["outcome"] = json!({"network_status": "approved_by_network", "reason": null, "risk_level": "normal", "risk_score": 32, "seller_message": "Payment complete.", "type": "authorized"});
    charge["payment_method_details"] = json!({"card": card_details("4242"), "type": "card"});
    if let Some(c) = charge["payment_method_details"]["card"].as_object_mut() {
        c.remove("generated_from");
        c.remove("networks");
        c.remove("three_d_secure_usage");
        c.insert("installments".into(), Value::Null);
        c.insert("mandate".into(), Value::Null);
        c.insert("network".into(), json!("visa"));
        c.insert("three_d_secure".into(), Value::Null);
    }
    charge["receipt_url"] = json!(format!("https://pay.stripe.com/receipts/{}", charge_id));
    charge["refunds"] = json!({"object": "list", "data": [], "has_more": false, "url": format!("/v1/charges/{charge_id}/refunds")});
    let slot = tx.store.insert(Kind::Charge, &charge, NO_PARENT);
    tx.event("charge.succeeded", &charge, None);
    slot
}

/// A balance transaction for money moving through the account; returns its id.
pub fn balance_transaction(
    tx: &mut Tx,
    amount: i64,
    currency: &str,
    kind: &str,
    source: &str,
    description: Option<&str>,
) -> String {
    let mut txn = tx.blank(Kind::BalanceTransaction, tx.now);
    let fee = if kind == "charge" {
        (amount as f64 * 0.029).round() as i64 + 30
    } else {
        0
    };
    txn["amount"] = json!(amount);
    txn["available_on"] = json!(tx.now + 2 * 86_400);
    txn["currency"] = json!(currency);
    txn["description"] = json!(description);
    txn["fee"] = json!(fee);
    txn["fee_details"] = if fee > 0 {
        json!([{"amount": fee, "application": null, "currency": currency, "description": "Stripe processing fees", "type": "stripe_fee"}])
    } else {
        json!([])
    };
    txn["net"] = json!(amount - fee);
    txn["reporting_category"] = json!(kind);
    txn["source"] = json!(source);
    txn["status"] = json!("pending");
    txn["type"] = json!(kind);
    let id = txn["id"].as_str().unwrap().to_owned();
    tx.store.insert(Kind::BalanceTransaction, &txn, NO_PARENT);
    id
}

fn create_refund(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let charge_id = match (params.take_str("charge"), params.take_str("payment_intent")) {
        (Some(charge), _) => charge,
        (None, Some(pi)) => {
            let pi = tx
                .store
                .value(find_param(tx, Kind::PaymentIntent, &pi, "payment_intent")?);
            pi["latest_charge"]
                .as_str()
                .ok_or_else(|| Failure::state("This PaymentIntent has no charge to refund."))?
                .to_owned()
        }
        (None, None) => {
            return Err(Failure::invalid(
                "One of the following params should be provided for this request: payment_intent or charge.",
                None,
            ));
        }
    };
    let charge_slot = find_param(tx, Kind::Charge, &charge_id, "charge")?;
    let amount = params.take_i64("amount")?;
    let reason = params.take_str("reason");
    let refund = refund_charge(tx, charge_slot, amount, reason.as_deref())?;
    let mut object = tx.store.value(refund);
    params.apply_rest(&mut object)?;
    tx.save_as(refund, &object, None);
    Ok(refund)
}

/// Refunds part or all of a charge: the refund, its balance transaction, and the charge's new totals.
pub fn refund_charge(
    tx: &mut Tx,
    charge_slot: Slot,
    amount: Option<i64>,
    reason: Option<&str>,
) -> Result<Slot, Failure> {
    let mut charge = tx.store.value(charge_slot);
    let refundable =
        charge["amount"].as_i64().unwrap_or(0) - charge["amount_refunded"].as_i64().unwrap_or(0);
    let amount = amount.unwrap_or(refundable);
    if amount <= 0 || amount > refundable {
        return Err(Failure::invalid(
            format!(
                "Refund amount ({amount}) is greater than unrefunded amount on charge ({refundable})"
            ),
            Some("amount"),
        ));
    }
    let currency = charge["currency"].as_str().unwrap_or("usd").to_owned();
    let mut refund = tx.blank(Kind::Refund, tx.now);
    let refund_id = refund["id"].as_str().unwrap().to_owned();
    let txn = balance_transaction(tx, -amount, &currency, "refund", &refund_id, None);
    refund["amount"] = json!(amount);
    refund["balance_transaction"] = json!(txn);
    refund["charge"] = charge["id"].clone();
    refund["currency"] = json!(currency);
    refund["payment_intent"] = charge["payment_intent"].clone();
    refund["reason"] = json!(reason);
    refund["status"] = json!("succeeded");
    let slot = tx.insert(Kind::Refund, &refund, NO_PARENT);
    charge["amount_refunded"] = json!(charge["amount_refunded"].as_i64().unwrap_or(0) + amount);
    charge["refunded"] = json!(charge["amount_refunded"] == charge["amount"]);
    tx.save_as(charge_slot, &charge, None);
    tx.event("charge.refunded", &charge, None);
    Ok(slot)
}

/// A payout of `amount` to the default bank account, with its balance transaction.
pub fn payout(
    tx: &mut Tx,
    amount: i64,
    currency: &str,
    status: &str,
    params: Option<Params>,
) -> Result<Slot, Failure> {
    let mut object = tx.blank(Kind::Payout, tx.now);
    let id = object["id"].as_str().unwrap().to_owned();
    let txn = balance_transaction(tx, -amount, currency, "payout", &id, Some("STRIPE PAYOUT"));
    object["amount"] = json!(amount);
    object["arrival_date"] = json!(tx.now + 2 * 86_400);
    object["automatic"] = json!(params.is_none());
    object["balance_transaction"] = json!(txn);
    object["currency"] = json!(currency);
    object["destination"] = json!("ba_1MirrorBankAcct0001");
    object["method"] = json!("standard");
    object["reconciliation_status"] = json!(if status == "paid" {
        "completed"
    } else {
        "not_applicable"
    });
    object["source_type"] = json!("card");
    object["status"] = json!(status);
    object["type"] = json!("bank_account");
    if let Some(params) = params {
        params.apply_rest(&mut object)?;
    }
    Ok(tx.insert(Kind::Payout, &object, NO_PARENT))
}

fn priced_line_items(
    tx: &mut Tx,
    items: &[Map<String, Value>],
    param: &str,
) -> Result<(Vec<Value>, i64, Option<String>), Failure> {
    let mut prices = Vec::new();
    let mut total = 0;
    let mut currency = None;
    for (n, item) in items.iter().enumerate() {
        let price_id = item
            .get("price")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::missing_param(&format!("{param}[{n}][price]")))?;
        let price = tx.store.value(find_param(
            tx,
            Kind::Price,
            price_id,
            &format!("{param}[{n}][price]"),
        )?);
        let quantity = item
            .get("quantity")
            .and_then(Value::as_str)
            .and_then(|q| q.parse::<i64>().ok())
            .unwrap_or(1);
        total += line_amount(&price, quantity);
        currency.get_or_insert_with(|| price["currency"].as_str().unwrap_or("usd").to_owned());
        prices.push(json!({"price": price, "quantity": quantity}));
    }
    Ok((prices, total, currency))
}

fn create_checkout_session(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let mode = params.require_str("mode")?;
    if !["payment", "subscription", "setup"].contains(&mode.as_str()) {
        return Err(Failure::invalid(
            "Invalid mode: must be one of payment, setup, or subscription".to_string(),
            Some("mode"),
        ));
    }
    let items = params.take_list("line_items");
    if mode != "setup" && items.is_empty() {
        return Err(Failure::missing_param("line_items"));
    }
    let (_, total, currency) = priced_line_items(tx, &items, "line_items")?;
    let customer = params.take_str("customer");
    if let Some(customer) = &customer {
        find_param(tx, Kind::Customer, customer, "customer")?;
    }
    let success_url = params.take_str("success_url");
    let cancel_url = params.take_str("cancel_url");
    let customer_email = params.take_str("customer_email");
    params.take_strings("payment_method_types");
    let slot = create_generic(tx, Kind::CheckoutSession, params, |tx, o| {
        let id = o["id"].as_str().unwrap().to_owned();
        o["mode"] = json!(mode);
        o["status"] = json!("open");
        o["payment_status"] = json!(if mode == "setup" {
            "no_payment_required"
        } else {
            "unpaid"
        });
        o["amount_subtotal"] = json!(total);
        o["amount_total"] = json!(total);
        o["currency"] = json!(currency);
        o["customer"] = json!(customer);
        o["customer_email"] = json!(customer_email);
        o["success_url"] = json!(success_url);
        o["cancel_url"] = json!(cancel_url);
        o["expires_at"] = json!(tx.now + 86_400);
        o["payment_method_options"] = json!({});
        o["payment_method_types"] = json!(["card"]);
        o["total_details"] = json!({"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0});
        o["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
        o["automatic_tax"] = json!({"enabled": false, "status": null});
        o["custom_fields"] = json!([]);
        o["custom_text"] = json!({"shipping_address": null, "submit": null});
        o["shipping_options"] = json!([]);
    })?;
    Ok(slot)
}

fn create_payment_link(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let items = params.take_list("line_items");
    if items.is_empty() {
        return Err(Failure::missing_param("line_items"));
    }
    let (_, _, currency) = priced_line_items(tx, &items, "line_items")?;
    create_generic(tx, Kind::PaymentLink, params, |tx, o| {
        let test = if tx.livemode() { "" } else { "test_" };
        o["active"] = json!(true);
        o["currency"] = json!(currency);
        o["url"] = json!(format!(
            "https://buy.stripe.com/{test}{}",
            tx.rng.alphanumeric(14)
        ));
        o["after_completion"] =
            json!({"hosted_confirmation": {"custom_message": null}, "type": "hosted_confirmation"});
        o["billing_address_collection"] = json!("auto");
        o["customer_creation"] = json!("if_required");
        o["payment_method_collection"] = json!("always");
        o["submit_type"] = json!("auto");
        o["allow_promotion_codes"] = json!(false);
        o["automatic_tax"] = json!({"enabled": false});
        o["custom_fields"] = json!([]);
        o["custom_text"] = json!({"shipping_address": null, "submit": null});
        o["phone_number_collection"] = json!({"enabled": false});
        o["shipping_options"] = json!([]);
        o["tax_id_collection"] = json!({"enabled": false});
    })
}

/// At most this many webhook endpoints per account and mode, as Stripe allows.
pub const MAX_WEBHOOK_ENDPOINTS: usize = 16;

fn create_webhook_endpoint(tx: &mut Tx, mut params: Params) -> Result<Value, Failure> {
    let url = params.require_str("url")?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Failure::invalid(
            format!("Invalid URL: {url}. URLs must begin with http:// or https://"),
            Some("url"),
        ));
    }
    let events = params.take_strings("enabled_events");
    if events.is_empty() {
        return Err(Failure::missing_param("enabled_events"));
    }
    let existing = tx
        .store
        .page(
            Kind::WebhookEndpoint,
            &crate::store::ListQuery {
                limit: MAX_WEBHOOK_ENDPOINTS + 1,
                ..Default::default()
            },
            |_| true,
        )
        .0;
    if existing.len() >= MAX_WEBHOOK_ENDPOINTS {
        return Err(Failure::invalid(
            format!(
                "You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} {} webhook endpoints.",
                if tx.livemode() { "live" } else { "test" }
            ),
            Some("url"),
        ));
    }
    let api_version = params.take_str("api_version");
    if let Some(version) = &api_version
        && !crate::versions::is_valid(version)
    {
        return Err(Failure::invalid(
            format!("Invalid Stripe API version: {version}"),
            Some("api_version"),
        ));
    }
    params.take_bool("connect")?;
    let slot = create_generic(tx, Kind::WebhookEndpoint, params, |_, o| {
        o["url"] = json!(url);
        o["enabled_events"] = json!(events);
        o["api_version"] = json!(api_version);
        o["status"] = json!("enabled");
    })?;
    let mut object = tx.store.value(slot);
    let secret = format!("whsec_{}", tx.rng.alphanumeric(32));
    tx.store.webhook_secrets.insert(
        object["id"].as_str().unwrap().to_owned(),
        vec![secret.clone()],
    );
    // The secret is part of the answer to this request only.
    object["secret"] = json!(secret);
    Ok(object)
}

fn create_credit_note(tx: &mut Tx, mut params: Params) -> Result<Slot, Failure> {
    let invoice_id = params.require_str("invoice")?;
    let invoice = tx
        .store
        .value(find_param(tx, Kind::Invoice, &invoice_id, "invoice")?);
    if !["open", "paid"].contains(&invoice["status"].as_str().unwrap_or_default()) {
        return Err(Failure::state(
            "Credit notes can only be issued for open or paid invoices.",
        ));
    }
    let amount = params
        .take_i64("amount")?
        .unwrap_or_else(|| invoice["total"].as_i64().unwrap_or(0));
    params.take_list("lines");
    create_generic(tx, Kind::CreditNote, params, |tx, o| {
        let id = o["id"].as_str().unwrap().to_owned();
        o["amount"] = json!(amount);
        o["subtotal"] = json!(amount);
        o["subtotal_excluding_tax"] = json!(amount);
        o["total"] = json!(amount);
        o["total_excluding_tax"] = json!(amount);
        o["currency"] = invoice["currency"].clone();
        o["customer"] = invoice["customer"].clone();
        o["invoice"] = json!(invoice_id);
        o["number"] = json!(format!(
            "{}-CN-01",
            invoice["number"].as_str().unwrap_or("DRAFT")
        ));
        o["pdf"] = json!(format!(
            "https://pay.stripe.com/credit_notes/acct/{}/pdf",
            tx.rng.alphanumeric(16)
        ));
        o["status"] = json!("issued");
        o["effective_at"] = json!(tx.now);
        o["type"] = json!(if invoice["status"] == json!("paid") {
            "post_payment"
        } else {
            "pre_payment"
        });
        o["lines"] = json!({"object": "list", "data": [], "has_more": false, "url": format!("/v1/credit_notes/{id}/lines")});
        o["discount_amounts"] = json!([]);
        o["tax_amounts"] = json!([]);
    })
}

/// `previous_attributes` helper re-exported for the seeder's updates.
pub fn announce_update(tx: &mut Tx, slot: Slot, object: &Value, event_type: &str) {
    let before = tx.store.value(slot);
    tx.store.replace(slot, object);
    tx.event(
        event_type,
        object,
        Some(crate::objects::previous_attributes(&before, object)),
    );
}
