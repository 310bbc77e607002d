//! For tests only: whether a mirror equals Stripe's objects, by one set of rules, whether
//! Stripe's side is the emulator's own state (in-process tests) or its export (tests of the real
//! binary against `stripe-mirror emulator`).
//!
//! The rules: every object Stripe lists is in the mirror with the same fields; a deleted object
//! is absent or marked deleted; a payment method attached to no customer is in no list Stripe
//! offers, so it is not expected; children listed under a deleted customer are gone from Stripe's
//! lists, so the mirror may or may not hold them; the mirror holds nothing Stripe does not know.

pub mod certificates;
pub mod receiver;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use sm_engine::catalog::{RESOURCES, Source, by_object};
use sm_warehouse::{Connection, Store};

/// One of Stripe's objects: its kind (`customer`, `invoice`…), whether it is deleted, and its
/// fields.
pub struct StripeObject {
    pub kind: String,
    pub deleted: bool,
    pub value: Value,
}

/// The test-mode objects of an emulated account, as the emulator holds them.
pub fn emulator_objects(account: &sm_emulator::world::Account) -> Vec<StripeObject> {
    let store = account.mode(sm_emulator::Mode::Test).read();
    store
        .slots()
        .map(|slot| {
            let stored = store.get(slot);
            StripeObject {
                kind: stored.kind.info().object.to_owned(),
                deleted: stored.deleted,
                value: store.value(slot),
            }
        })
        .collect()
}

/// The objects of an emulator's export (`GET /_emulator/accounts/{id}/export`).
pub fn exported_objects(export: &Value) -> Vec<StripeObject> {
    export["objects"]
        .as_array()
        .expect("exported objects")
        .iter()
        .map(|entry| StripeObject {
            kind: entry["kind"].as_str().unwrap_or_default().to_owned(),
            deleted: entry["deleted"] == true,
            value: entry["object"].clone(),
        })
        .collect()
}

/// How a mirror compares with Stripe.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Objects Stripe has (live) that the mirror lacks.
    pub missing: Vec<String>,
    /// Everything else: wrong fields, live rows for deleted objects, rows unknown to Stripe,
    /// rows of tables the key may not read.
    pub wrong: Vec<String>,
    /// Objects of Stripe compared.
    pub compared: usize,
    /// Rows of the mirror read.
    pub rows: usize,
}

impl Comparison {
    pub fn exact(&self) -> bool {
        self.missing.is_empty() && self.wrong.is_empty()
    }

    /// Every difference, wrong ones first.
    pub fn differences(&self) -> Vec<String> {
        self.wrong.iter().chain(&self.missing).cloned().collect()
    }

    /// The counts, then the first differences, for an assertion message.
    pub fn describe(&self) -> String {
        let mut lines = vec![format!(
            "{} missing, {} wrong, of {} objects ({} mirrored rows)",
            self.missing.len(),
            self.wrong.len(),
            self.compared,
            self.rows
        )];
        lines.push(describe(&self.differences()));
        lines.join("\n")
    }
}

/// Which tables to leave out.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scope<'a> {
    /// Tables not compared at all (filled only by a later sync, say).
    pub excluded: &'a [&'a str],
    /// Tables the key may not read: they must be empty.
    pub unreadable: &'a [&'a str],
}

/// Compares every mirrored table of `connection` with Stripe's `objects`.
pub fn compare(
    objects: &[StripeObject],
    store: &dyn Store,
    connection: &Connection,
    scope: Scope<'_>,
) -> Comparison {
    let deleted_customers: HashSet<&str> = objects
        .iter()
        .filter(|o| o.kind == "customer" && o.deleted)
        .filter_map(|o| o.value["id"].as_str())
        .collect();
    let under_deleted_customer = |source: &Source, value: &Value| {
        matches!(source, Source::PerParent { .. })
            && value["customer"]
                .as_str()
                .is_some_and(|c| deleted_customers.contains(c))
    };
    let mut expected: HashMap<&str, HashMap<&str, (bool, &Value)>> = HashMap::new();
    for object in objects {
        let Some(resource) = by_object(&object.kind) else {
            continue;
        };
        if resource.table == "payment_methods" && object.value["customer"].is_null() {
            continue;
        }
        if under_deleted_customer(&resource.source, &object.value) {
            continue;
        }
        expected.entry(resource.table).or_default().insert(
            object.value["id"].as_str().expect("an id"),
            (object.deleted, &object.value),
        );
    }
    let mut comparison = Comparison::default();
    for resource in RESOURCES {
        if scope.excluded.contains(&resource.table) {
            continue;
        }
        let table = resource.table;
        let rows = store.rows(connection, table).expect("the rows");
        comparison.rows += rows.len();
        if scope.unreadable.contains(&table) {
            if !rows.is_empty() {
                comparison.wrong.push(format!(
                    "{table}: {} rows, though the key may not read it",
                    rows.len()
                ));
            }
            continue;
        }
        let mirrored: HashMap<String, (bool, Value)> = rows
            .into_iter()
            .map(|r| (r.id, (r.deleted, r.data)))
            .collect();
        let wanted = expected.remove(table).unwrap_or_default();
        for (id, (deleted, value)) in &wanted {
            comparison.compared += 1;
            match (mirrored.get(*id), deleted) {
                (None, true) | (Some((true, _)), true) => {}
                (Some((false, _)), true) => comparison.wrong.push(format!(
                    "{table}/{id}: deleted in Stripe, live in the mirror"
                )),
                (None, false) => comparison
                    .missing
                    .push(format!("{table}/{id}: missing from the mirror")),
                (Some((true, _)), false) => comparison
                    .wrong
                    .push(format!("{table}/{id}: marked deleted but exists")),
                (Some((false, data)), false) => {
                    if data != *value {
                        comparison.wrong.push(format!(
                            "{table}/{id}: fields differ: {}",
                            first_difference(value, data)
                        ));
                    }
                }
            }
        }
        for (id, (_, data)) in &mirrored {
            if !wanted.contains_key(id.as_str()) && !under_deleted_customer(&resource.source, data)
            {
                comparison
                    .wrong
                    .push(format!("{table}/{id}: in the mirror, unknown to Stripe"));
            }
        }
    }
    comparison
}

/// The number of differences per table, then the first 30.
pub fn describe(differences: &[String]) -> String {
    let mut by_table: BTreeMap<&str, usize> = BTreeMap::new();
    for d in differences {
        *by_table
            .entry(d.split(['/', ':']).next().unwrap_or(""))
            .or_default() += 1;
    }
    format!(
        "{} differences ({by_table:?}):\n{}",
        differences.len(),
        differences
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The first field that differs, in words.
fn first_difference(expected: &Value, actual: &Value) -> String {
    let short = |value: &Value| {
        let text = value.to_string();
        match text.char_indices().nth(80) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text,
        }
    };
    if let (Some(e), Some(a)) = (expected.as_object(), actual.as_object()) {
        for (key, value) in e {
            if a.get(key) != Some(value) {
                return format!(
                    "{key}: Stripe {} / mirror {}",
                    short(value),
                    a.get(key).map(short).unwrap_or_else(|| "(absent)".into())
                );
            }
        }
        for key in a.keys() {
            if !e.contains_key(key) {
                return format!("{key}: only in the mirror");
            }
        }
    }
    "values differ".into()
}
