//! API versions, as Stripe has them: an account has a default version (set at creation,
//! upgraded later); each event keeps the version that was the default when it was created and is
//! rendered in it; a webhook endpoint made with `api_version` gets deliveries in that version; a
//! request is answered in its `Stripe-Version`, else in the account's default.
//!
//! Objects are stored in one shape, [`CANONICAL`] (the version of the OpenAPI spec the emulator
//! is checked against), and rendered into another on the way out. The differences modelled, each
//! from Stripe's API changelog, are [`CHANGES`]; everything else renders the same in every
//! version.

use serde_json::{Map, Value, json};

use crate::catalog::Kind;
use crate::store::{ListQuery, ModeStore};

/// The shape objects are stored in.
pub const CANONICAL: &str = crate::API_VERSION;

/// A version whose objects differ from the one before it, and how.
pub struct Change {
    pub version: &'static str,
    pub what: &'static str,
}

/// The differences the emulator models (Stripe's changelog, versions 2022-11-15 and
/// 2025-03-31.basil).
pub const CHANGES: &[Change] = &[
    Change {
        version: "2022-11-15",
        what: "PaymentIntent: `charges` (the list of its charges) is gone; `latest_charge` names the newest",
    },
    Change {
        version: "2022-11-15",
        what: "Charge: `refunds` (the list of its refunds) is no longer included",
    },
    Change {
        version: "2025-03-31.basil",
        what: "Subscription: `current_period_start` and `current_period_end` move to each subscription item",
    },
    Change {
        version: "2025-03-31.basil",
        what: "Invoice: `subscription` moves to `parent.subscription_details.subscription`",
    },
];

/// The date part of a version (`2025-03-31` of `2025-03-31.basil`), which orders versions.
fn date(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// Whether `version` looks like one of Stripe's: `YYYY-MM-DD`, optionally `.name`.
pub fn is_valid(version: &str) -> bool {
    let day = date(version).as_bytes();
    day.len() == 10
        && day[4] == b'-'
        && day[7] == b'-'
        && day
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && date(version) >= "2011-01-01"
}

/// Whether objects of `version` render differently from the stored shape.
pub fn differs(version: &str) -> bool {
    let day = date(version);
    let canonical = date(CANONICAL);
    CHANGES.iter().any(|c| {
        let at = date(c.version);
        (day < at) != (canonical < at)
    })
}

fn before(version: &str, change: &str) -> bool {
    date(version) < date(change)
}

/// Renders `value` (an object, a list, an event, a deleted stub) for `version`, reading related
/// objects from `store`. An event's object is rendered in the event's own version, whatever
/// `version` the request asked for: "the contents of data never change".
pub fn render(value: &mut Value, version: &str, store: &ModeStore) {
    match value["object"].as_str() {
        Some("list") | Some("search_result") => {
            for item in value["data"].as_array_mut().into_iter().flatten() {
                render(item, version, store);
            }
        }
        Some("event") => {
            let own = value["api_version"]
                .as_str()
                .unwrap_or(CANONICAL)
                .to_owned();
            render_object(&mut value["data"]["object"], &own, store);
        }
        _ => render_object(value, version, store),
    }
}

/// Renders an event for a webhook endpoint: in the endpoint's own version when it has one,
/// else in the event's.
pub fn render_delivery(event: &mut Value, endpoint_version: Option<&str>, store: &ModeStore) {
    let version = endpoint_version
        .or(event["api_version"].as_str())
        .unwrap_or(CANONICAL)
        .to_owned();
    if endpoint_version.is_some() {
        event["api_version"] = json!(version);
    }
    render_object(&mut event["data"]["object"], &version, store);
}

fn render_object(object: &mut Value, version: &str, store: &ModeStore) {
    if !differs(version) || object["deleted"] == json!(true) {
        return;
    }
    match object["object"].as_str() {
        Some("payment_intent") if before(version, "2022-11-15") => {
            let id = object["id"].as_str().unwrap_or_default().to_owned();
            let mut charges = related(store, Kind::Charge, "payment_intent", &id);
            for charge in &mut charges {
                render_object(charge, version, store);
            }
            let map = object.as_object_mut().expect("an object");
            map.remove("latest_charge");
            map.insert(
                "charges".into(),
                list(charges, &format!("/v1/charges?payment_intent={id}")),
            );
        }
        Some("charge") if before(version, "2022-11-15") => {
            let id = object["id"].as_str().unwrap_or_default().to_owned();
            let refunds = related(store, Kind::Refund, "charge", &id);
            object["refunds"] = list(refunds, &format!("/v1/charges/{id}/refunds"));
        }
        Some("subscription") if !before(version, "2025-03-31") => {
            let map = object.as_object_mut().expect("an object");
            let start = map.remove("current_period_start").unwrap_or(Value::Null);
            let end = map.remove("current_period_end").unwrap_or(Value::Null);
            for item in map
                .get_mut("items")
                .and_then(|items| items["data"].as_array_mut())
                .into_iter()
                .flatten()
            {
                item["current_period_start"] = start.clone();
                item["current_period_end"] = end.clone();
            }
        }
        Some("subscription_item") if !before(version, "2025-03-31") => {
            let subscription = object["subscription"]
                .as_str()
                .and_then(|id| store.slot_of(id))
                .map(|slot| store.value(slot));
            if let Some(subscription) = subscription {
                object["current_period_start"] = subscription["current_period_start"].clone();
                object["current_period_end"] = subscription["current_period_end"].clone();
            }
        }
        Some("invoice") if !before(version, "2025-03-31") => {
            let map = object.as_object_mut().expect("an object");
            let subscription = map.remove("subscription").unwrap_or(Value::Null);
            let parent = match subscription {
                Value::Null => Value::Null,
                subscription => json!({
                    "type": "subscription_details",
                    "quote_details": null,
                    "subscription_details": {"metadata": {}, "subscription": subscription},
                }),
            };
            map.insert("parent".into(), parent);
        }
        _ => {}
    }
}

/// Live objects of `kind` whose filter field `field` is `id`, newest first.
fn related(store: &ModeStore, kind: Kind, field: &str, id: &str) -> Vec<Value> {
    let Some(position) = kind.info().filters.iter().position(|f| *f == field) else {
        return Vec::new();
    };
    let all = ListQuery {
        limit: usize::MAX,
        ..Default::default()
    };
    let (slots, _) = store.page(kind, &all, |o| {
        o.attrs.get(position).and_then(|a| a.as_deref()) == Some(id)
    });
    slots.into_iter().map(|slot| store.value(slot)).collect()
}

fn list(data: Vec<Value>, url: &str) -> Value {
    let mut map = Map::new();
    map.insert("object".into(), json!("list"));
    map.insert("total_count".into(), json!(data.len()));
    map.insert("data".into(), Value::Array(data));
    map.insert("has_more".into(), json!(false));
    map.insert("url".into(), json!(url));
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_date_and_differ_only_across_a_change() {
        assert!(is_valid("2025-03-31.basil") && is_valid("2020-08-27"));
        assert!(!is_valid("latest") && !is_valid("2025-3-31") && !is_valid("1999-01-01"));
        assert!(!differs(CANONICAL) && !differs("2022-11-15") && !differs("2024-06-20"));
        assert!(
            differs("2022-08-01") && differs("2025-03-31.basil") && differs("2026-01-28.clover")
        );
    }
}
