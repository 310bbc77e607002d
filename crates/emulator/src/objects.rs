//! Object shapes and the one place objects change: [`Tx`], a write transaction on one account's
//! mode that creates, updates and deletes objects and records the events Stripe would send.
//!
//! Shapes come from `templates.json`, generated from Stripe's OpenAPI spec (API 2023-08-16) by
//! `tools/gen_templates.py`: every field Stripe sends by default, with the value it has when unset.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::catalog::{Kind, Lifecycle};
use crate::failure::Failure;
use crate::rng::Rng;
use crate::store::{ModeStore, NO_PARENT, Slot};

struct Templates {
    objects: HashMap<String, Value>,
    types: HashMap<String, Map<String, Value>>,
}

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let parsed: Value =
            serde_json::from_str(include_str!("templates.json")).expect("templates.json is valid");
        let take = |name: &str| parsed[name].as_object().cloned().unwrap_or_default();
        Templates {
            objects: take("templates").into_iter().collect(),
            types: take("types")
                .into_iter()
                .map(|(k, v)| (k, v.as_object().cloned().unwrap_or_default()))
                .collect(),
        }
    })
}

/// The default shape of an `object` (e.g. `"customer"`), every field present.
pub fn template(object: &str) -> Value {
    templates()
        .objects
        .get(object)
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// The JSON type (`string`, `integer`, `boolean`, `object`, `array`, `number`) of a top-level field.
pub fn field_type(object: &str, field: &str) -> Option<&'static str> {
    templates().types.get(object)?.get(field)?.as_str()
}

/// Fields no request may set.
const READ_ONLY: &[&str] = &[
    "id", "object", "created", "livemode", "deleted", "url", "updated",
];

/// Converts a form value (strings, nested maps and arrays of strings) to the field's JSON type.
pub fn coerce(field: &str, value: Value, kind: &str) -> Result<Value, Failure> {
    let invalid = |what: &str| {
        Failure::invalid(
            format!("Invalid {what}: {}", value_text(&value)),
            Some(field),
        )
    };
    match (kind, &value) {
        (_, Value::String(s)) if s.is_empty() => Ok(Value::Null),
        ("integer", Value::String(s)) => s
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| invalid("integer")),
        ("number", Value::String(s)) => s
            .parse::<f64>()
            .map(|n| json!(n))
            .map_err(|_| invalid("number")),
        ("boolean", Value::String(s)) => match s.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(invalid("boolean")),
        },
        ("string", Value::String(_)) => Ok(value),
        ("string", _) => Err(Failure::invalid(
            format!("Invalid string: {}", value_text(&value)),
            Some(field),
        )),
        ("object", Value::Object(_)) | ("array", Value::Array(_)) => Ok(numbers_in(value)),
        _ => Err(invalid(kind)),
    }
}

/// Inside free-form nested values, digits-only strings for known numeric fields become numbers.
fn numbers_in(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let numeric = matches!(
                        k.as_str(),
                        "quantity"
                            | "unit_amount"
                            | "amount"
                            | "interval_count"
                            | "exp_month"
                            | "exp_year"
                            | "trial_period_days"
                    );
                    let v = match v {
                        Value::String(s) if numeric && s.parse::<i64>().is_ok() => {
                            json!(s.parse::<i64>().unwrap())
                        }
                        other => numbers_in(other),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_in).collect()),
        other => other,
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Request parameters being consumed by an operation: what is left at the end is unknown.
#[derive(Debug, Default)]
pub struct Params(pub Map<String, Value>);

impl Params {
    /// Removes and returns a string parameter.
    pub fn take_str(&mut self, name: &str) -> Option<String> {
        match self.0.remove(name)? {
            Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    pub fn require_str(&mut self, name: &str) -> Result<String, Failure> {
        self.take_str(name)
            .ok_or_else(|| Failure::missing_param(name))
    }

    pub fn take_i64(&mut self, name: &str) -> Result<Option<i64>, Failure> {
        match self.take_str(name) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| Failure::invalid(format!("Invalid integer: {s}"), Some(name))),
        }
    }

    pub fn require_i64(&mut self, name: &str) -> Result<i64, Failure> {
        self.take_i64(name)?
            .ok_or_else(|| Failure::missing_param(name))
    }

    pub fn take_bool(&mut self, name: &str) -> Result<Option<bool>, Failure> {
        match self.take_str(name).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(Failure::invalid(
                format!("Invalid boolean: {other}"),
                Some(name),
            )),
        }
    }

    /// Removes an array-of-objects parameter (`items[0][price]=…`).
    pub fn take_list(&mut self, name: &str) -> Vec<Map<String, Value>> {
        match self.0.remove(name) {
            Some(Value::Array(items)) => items
                .into_iter()
                .filter_map(|v| v.as_object().cloned())
                .collect(),
            Some(Value::Object(map)) => vec![map],
            _ => Vec::new(),
        }
    }

    /// Removes an array-of-strings parameter (`enabled_events[]=…`).
    pub fn take_strings(&mut self, name: &str) -> Vec<String> {
        match self.0.remove(name) {
            Some(Value::Array(items)) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => vec![s],
            _ => Vec::new(),
        }
    }

    /// Sets every remaining parameter that is a writable field of `object` on it (metadata merges,
    /// an empty value unsets); anything else is Stripe's "Received unknown parameter".
    pub fn apply_rest(mut self, object: &mut Value) -> Result<(), Failure> {
        self.0.remove("expand");
        let object_name = object["object"].as_str().unwrap_or_default().to_owned();
        for (field, value) in std::mem::take(&mut self.0) {
            if field == "metadata" {
                merge_metadata(object, value)?;
                continue;
            }
            let kind =
                field_type(&object_name, &field).filter(|_| !READ_ONLY.contains(&field.as_str()));
            let Some(kind) = kind else {
                return Err(Failure::unknown_param(&field));
            };
            object[field.as_str()] = coerce(&field, value, kind)?;
        }
        Ok(())
    }
}

fn merge_metadata(object: &mut Value, value: Value) -> Result<(), Failure> {
    let entries = match value {
        Value::Object(map) => map,
        Value::String(s) if s.is_empty() => {
            object["metadata"] = json!({});
            return Ok(());
        }
        _ => return Err(Failure::invalid("Invalid object", Some("metadata"))),
    };
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let metadata = object["metadata"]
        .as_object_mut()
        .expect("just made an object");
    for (key, value) in entries {
        match value {
            Value::String(s) if s.is_empty() => {
                metadata.remove(&key);
            }
            Value::String(s) => {
                metadata.insert(key, Value::String(s));
            }
            _ => {
                return Err(Failure::invalid(
                    format!("Invalid value for metadata[{key}]"),
                    Some("metadata"),
                ));
            }
        }
    }
    Ok(())
}

/// Who caused a change, for `event.request`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A write transaction on one account's mode. Every object change in the emulator goes through
/// here, so that each one records the events Stripe would.
pub struct Tx<'a> {
    pub store: &'a mut ModeStore,
    pub now: i64,
    pub rng: &'a mut Rng,
    pub origin: Origin,
    /// Whether changes record events (seeding history older than 30 days does not).
    pub record_events: bool,
    /// Events recorded by this transaction, for webhook delivery after it commits.
    pub new_events: Vec<Slot>,
    /// How many webhook endpoints listen to each event type (`*` included), for `pending_webhooks`.
    pub listeners: &'a dyn Fn(&str) -> u32,
    /// The account's default API version now: the version of the events this change records.
    pub api_version: String,
}

impl Tx<'_> {
    pub fn livemode(&self) -> bool {
        self.store.livemode
    }

    /// A new object of `kind`: its template with id, `created` and `livemode` filled in.
    pub fn blank(&mut self, kind: Kind, created: i64) -> Value {
        let info = kind.info();
        let mut object = template(info.object);
        let id = match (kind, self.livemode()) {
            (Kind::Coupon, _) => self.rng.alphanumeric(8),
            (Kind::CheckoutSession, true) => self.rng.id("cs_live"),
            (Kind::CheckoutSession, false) => self.rng.id("cs_test"),
            _ => self.rng.id(info.prefix),
        };
        object["id"] = json!(id);
        object["object"] = json!(info.object);
        if object.get("created").is_some() {
            object["created"] = json!(created);
        }
        if object.get("livemode").is_some() {
            object["livemode"] = json!(self.livemode());
        }
        if object.get("metadata").is_some() {
            object["metadata"] = json!({});
        }
        object
    }

    /// Stores a new object and records its `*.created` event.
    pub fn insert(&mut self, kind: Kind, object: &Value, parent: Slot) -> Slot {
        if !object.get("created").is_some_and(Value::is_i64) {
            // Kinds without `created` (payment links) still need a list position.
            let mut with_created = object.clone();
            with_created["created"] = json!(self.now);
            let slot = self.store.insert(kind, &with_created, parent);
            self.store.replace(slot, object);
            self.announce(kind, Lifecycle::Created, object, None);
            return slot;
        }
        let slot = self.store.insert(kind, object, parent);
        self.announce(kind, Lifecycle::Created, object, None);
        slot
    }

    /// Saves a changed object and records `*.updated` with the changed fields' old values.
    pub fn save(&mut self, slot: Slot, object: &Value) {
        self.save_as(slot, object, Some(Lifecycle::Updated));
    }

    /// Saves a changed object, recording the given lifecycle event (or none).
    pub fn save_as(&mut self, slot: Slot, object: &Value, step: Option<Lifecycle>) {
        let before = self.store.value(slot);
        if &before == object {
            return;
        }
        self.store.replace(slot, object);
        if let Some(step) = step {
            let previous = previous_attributes(&before, object);
            let kind = self.store.get(slot).kind;
            self.announce(kind, step, object, Some(previous));
        }
    }

    /// Marks an object deleted and records `*.deleted` with its last state.
    pub fn delete(&mut self, slot: Slot) -> Value {
        let object = self.store.value(slot);
        let kind = self.store.get(slot).kind;
        self.store.mark_deleted(slot);
        self.announce(kind, Lifecycle::Deleted, &object, None);
        json!({"id": object["id"], "object": object["object"], "deleted": true})
    }

    fn announce(&mut self, kind: Kind, step: Lifecycle, object: &Value, previous: Option<Value>) {
        if let Some(event_type) = kind.event_type(step) {
            let previous = if step == Lifecycle::Updated {
                previous
            } else {
                None
            };
            self.event(&event_type, object, previous);
        }
    }

    /// Records an event of `event_type` with a snapshot of `object`.
    pub fn event(&mut self, event_type: &str, object: &Value, previous: Option<Value>) {
        if !self.record_events {
            return;
        }
        let mut data = Map::new();
        data.insert("object".into(), object.clone());
        if let Some(previous) = previous {
            data.insert("previous_attributes".into(), previous);
        }
        let id = self.rng.id("evt");
        let event = json!({
            "id": id,
            "object": "event",
            "api_version": self.api_version,
            "created": self.now,
            "data": data,
            "livemode": self.livemode(),
            "pending_webhooks": (self.listeners)(event_type),
            "request": {"id": self.origin.request_id, "idempotency_key": self.origin.idempotency_key},
            "type": event_type,
        });
        let slot = self.store.insert(Kind::Event, &event, NO_PARENT);
        self.new_events.push(slot);
    }
}

/// The old values of the top-level fields that changed (`null` for fields that were added).
pub fn previous_attributes(before: &Value, after: &Value) -> Value {
    let mut changed = Map::new();
    if let (Some(old), Some(new)) = (before.as_object(), after.as_object()) {
        for (key, old_value) in old {
            if new.get(key) != Some(old_value) {
                changed.insert(key.clone(), old_value.clone());
            }
        }
        for key in new.keys() {
            if !old.contains_key(key) {
                changed.insert(key.clone(), Value::Null);
            }
        }
    }
    Value::Object(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_cover_every_kind_with_its_object_name() {
        for row in crate::catalog::KINDS.iter() {
            let t = template(row.object);
            assert_eq!(
                t["object"],
                json!(row.object),
                "template for {}",
                row.object
            );
        }
    }

    #[test]
    fn unknown_params_are_refused_and_metadata_merges() {
        let mut customer = template("customer");
        customer["metadata"] = json!({"keep": "1", "drop": "2"});
        let mut params = Params(
            serde_json::from_value(
                json!({"email": "a@b.co", "metadata": {"drop": "", "new": "3"}}),
            )
            .unwrap(),
        );
        params.take_str("nothing");
        params.apply_rest(&mut customer).unwrap();
        assert_eq!(customer["metadata"], json!({"keep": "1", "new": "3"}));
        assert_eq!(customer["email"], json!("a@b.co"));
        let params = Params(serde_json::from_value(json!({"colour": "red"})).unwrap());
        let failure = params.apply_rest(&mut customer).unwrap_err();
        assert_eq!(
            failure.body["error"]["message"],
            json!("Received unknown parameter: colour")
        );
    }
}
