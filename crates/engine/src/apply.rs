//! The one apply path: objects from any source — list pages, events replayed, webhooks,
//! refetches — become rows of a [`Batch`] here, with their embedded children (subscription
//! items, invoice lines; completed from their own lists when the embedded page is truncated),
//! deletions of children gone from a known parent, and the changes events imply without saying.
//! The batch is then written in one transaction by [`Run::apply`].

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sm_stripe::RawPage;
use sm_stripe::error::ErrorKind;
use sm_warehouse::{Batch, Deletion, Guard, ObjectRow};

use crate::catalog::{RESOURCES, Resource, Source, by_object};
use crate::error::{EngineError, ErrorCode};
use crate::now;
use crate::object::Object;
use crate::sync::Run;

/// Turns objects into rows for one run (or one intake).
pub(crate) struct Applier<'a> {
    pub(crate) run: &'a Run,
    pub(crate) readable: &'a HashSet<&'static str>,
}

/// The rows and deletions of one batch, in the order their sources happened: a deletion decided
/// from an earlier event never undoes a row a later event wrote.
#[derive(Default)]
pub(crate) struct Rows {
    /// Per table, each row with its place in the batch.
    rows: HashMap<&'static str, Vec<(u64, ObjectRow)>>,
    /// `(table, id, version, sequence)` of children gone from their parent.
    deletions: Vec<(&'static str, String, i64, u64)>,
    sequence: u64,
    /// Children written in this batch per `(table, parent id)`.
    children: HashMap<(&'static str, String), HashSet<String>>,
}

impl Rows {
    /// Adds one object's row (its embedded lists are the caller's to add).
    pub(crate) fn push(
        &mut self,
        table: &'static str,
        object: Object,
        version: i64,
        deleted: bool,
        parent_id: Option<&str>,
    ) {
        self.sequence += 1;
        let parent_id = parent_id.map(str::to_owned);
        if let Some(parent) = &parent_id {
            self.children
                .entry((table, parent.clone()))
                .or_default()
                .insert(object.id.clone());
        }
        self.rows.entry(table).or_default().push((
            self.sequence,
            ObjectRow {
                id: object.id,
                created: object.created,
                deleted,
                data: object.json,
                version,
                parent_id,
            },
        ));
    }

    /// Marks children of a parent deleted at `version`.
    fn delete(&mut self, table: &'static str, ids: impl IntoIterator<Item = String>, version: i64) {
        for id in ids {
            self.sequence += 1;
            self.deletions.push((table, id, version, self.sequence));
        }
    }

    /// Rows collected so far.
    pub(crate) fn len(&self) -> usize {
        self.rows.values().map(Vec::len).sum()
    }

    /// The latest row of `(table, id)` written in this batch.
    pub(crate) fn latest(&self, table: &'static str, id: &str) -> Option<&ObjectRow> {
        self.rows
            .get(table)?
            .iter()
            .rev()
            .find(|(_, row)| row.id == id)
            .map(|(_, row)| row)
    }

    pub(crate) fn into_batch(mut self, guard: Guard) -> Batch {
        let mut deletions: Vec<Deletion> = Vec::new();
        for (table, id, version, sequence) in std::mem::take(&mut self.deletions) {
            // A later row of the same object in this batch stands.
            let written_later = self.rows.get(table).is_some_and(|rows| {
                rows.iter()
                    .any(|(written, row)| *written > sequence && row.id == id)
            });
            if written_later {
                continue;
            }
            match deletions
                .iter_mut()
                .find(|d| d.table == table && d.version == version)
            {
                Some(deletion) => deletion.ids.push(id),
                None => deletions.push(Deletion {
                    table,
                    ids: vec![id],
                    version,
                }),
            }
        }
        let mut batch = Batch {
            deletions,
            ..Default::default()
        };
        // Parents before children, so a reader never sees an item without its subscription.
        for resource in RESOURCES {
            if let Some(rows) = self.rows.remove(resource.table) {
                batch.rows.push((
                    resource.table,
                    rows.into_iter().map(|(_, row)| row).collect(),
                    guard,
                ));
            }
        }
        batch
    }
}

/// The fields of `resource`'s objects that embed child lists the mirror keeps (and may read).
pub(crate) fn embedded_fields(
    resource: &Resource,
    readable: &HashSet<&'static str>,
) -> Vec<&'static str> {
    RESOURCES
        .iter()
        .filter_map(|child| match child.source {
            Source::Embedded {
                parent_table,
                field,
            } if parent_table == resource.table && readable.contains(child.table) => Some(field),
            _ => None,
        })
        .collect()
}

/// A Stripe answer that does not hold the objects it should.
fn malformed(what: impl std::fmt::Display) -> EngineError {
    EngineError::new(
        ErrorCode::Upstream,
        format!("Stripe sent a list whose objects could not be read ({what})"),
    )
}

impl Applier<'_> {
    /// The objects of a list page of `resource`, with the embedded lists the mirror keeps.
    pub(crate) fn objects(
        &self,
        resource: &Resource,
        page: &RawPage,
    ) -> Result<Vec<Object>, EngineError> {
        let fields = embedded_fields(resource, self.readable);
        page.data
            .iter()
            .map(|raw| Object::from_raw(raw, &fields).map_err(malformed))
            .collect()
    }

    /// One object of `resource` given as a tree (an event's object, a single read).
    pub(crate) fn object(&self, resource: &Resource, value: &Value) -> Option<Object> {
        Object::from_value(value, &embedded_fields(resource, self.readable))
    }

    /// Adds `objects` of `resource` to `rows`, with their embedded children, fetching truncated
    /// child lists. `known_parents` are ids already in the mirror (their vanished children are
    /// marked deleted).
    // The arguments are what one object's write needs; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn collect(
        &self,
        resource: &'static Resource,
        objects: Vec<Object>,
        version: i64,
        deleted: bool,
        rows: &mut Rows,
        known_parents: &HashSet<String>,
        parent_id: Option<&str>,
    ) -> Result<(), EngineError> {
        for mut object in objects {
            let mut embedded = std::mem::take(&mut object.embedded);
            let id = object.id.clone();
            rows.push(resource.table, object, version, deleted, parent_id);
            if deleted {
                continue;
            }
            for child in RESOURCES.iter() {
                let Source::Embedded {
                    parent_table,
                    field,
                } = child.source
                else {
                    continue;
                };
                if parent_table != resource.table || !self.readable.contains(child.table) {
                    continue;
                }
                // An object without the list has none: its known children are gone.
                let (mut items, more) = match embedded.iter_mut().find(|(name, _)| *name == field) {
                    Some((_, list)) => (
                        std::mem::take(&mut list.items),
                        list.url.clone().filter(|_| list.has_more),
                    ),
                    None => (Vec::new(), None),
                };
                if let Some(url) = more {
                    let after = items.last().map(|item| item.id.clone());
                    self.fetch_all(&url, after, &mut items).await?;
                }
                // Children this batch already wrote for the parent (from an earlier event).
                let written = rows
                    .children
                    .get(&(child.table, id.clone()))
                    .cloned()
                    .unwrap_or_default();
                let keep: HashSet<String> = items.iter().map(|item| item.id.clone()).collect();
                for item in items {
                    rows.push(child.table, item, version, false, Some(&id));
                }
                if known_parents.contains(&id) || !written.is_empty() {
                    let connection = self.run.connection.clone();
                    let (table, parent) = (child.table, id.clone());
                    let stored = self
                        .run
                        .store(move |store| {
                            store.ids_where(&connection, table, "parent_id", &parent)
                        })
                        .await
                        .unwrap_or_default();
                    // Children stored, or written earlier in this batch, that the parent no longer has.
                    let gone: HashSet<String> = stored
                        .into_iter()
                        .chain(written)
                        .filter(|id| !keep.contains(id))
                        .collect();
                    rows.delete(child.table, gone, version);
                }
            }
        }
        Ok(())
    }

    /// Pages a child list's URL (`/v1/subscription_items?subscription=…`) to the end.
    async fn fetch_all(
        &self,
        url: &str,
        after: Option<String>,
        items: &mut Vec<Object>,
    ) -> Result<(), EngineError> {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let mut params: Vec<(String, String)> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if let Some(after) = after {
            params.push(("starting_after".into(), after));
        }
        let mut cursor = self.run.client.list_pages(path, params);
        while let Some(page) = cursor.next_raw_page().await? {
            for raw in &page.data {
                items.push(Object::from_raw(raw, &[]).map_err(malformed)?);
            }
        }
        Ok(())
    }

    /// Ids among `objects` already in the mirror, when `resource` embeds children (whose
    /// vanished members are marked deleted for known parents); empty otherwise, without a read.
    pub(crate) async fn known_parents(
        &self,
        resource: &'static Resource,
        objects: &[Object],
    ) -> Result<HashSet<String>, EngineError> {
        if objects.is_empty() || embedded_fields(resource, self.readable).is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
        let (connection, table) = (self.run.connection.clone(), resource.table);
        Ok(self
            .run
            .store(move |store| store.versions(&connection, table, &ids))
            .await?
            .into_keys()
            .collect())
    }
}

/// The path that retrieves an object, for a refetch.
pub(crate) fn object_path(resource: &Resource, object: &Value) -> Option<String> {
    let id = object["id"].as_str()?;
    match resource.source {
        Source::List => Some(format!("{}/{id}", resource.path)),
        Source::PerParent {
            segment: "payment_methods",
            ..
        } => Some(format!("/v1/payment_methods/{id}")),
        Source::PerParent {
            parent_path,
            segment,
            ..
        } => Some(format!(
            "{parent_path}/{}/{segment}/{id}",
            object["customer"].as_str()?
        )),
        Source::Embedded { .. } => None,
    }
}

/// Whether an event was rendered in another API version than the mirror keeps (the client's
/// `Stripe-Version`): its object is then a signal to read the object again, not a copy to write.
pub(crate) fn foreign_version(event: &Value, pinned: &str) -> bool {
    event["api_version"].as_str().is_some_and(|v| v != pinned)
}

/// Reads `object` again from Stripe, in the mirror's version, and adds what Stripe answers to
/// `rows` (versioned by Stripe's clock, never below `at_least`, the event's own time); a 404
/// marks it deleted. Returns Stripe's answer and the version written, if any. A permission the
/// key has lost ends only that table's part of the run (as for lists), not the run.
pub(crate) async fn refetch(
    applier: &Applier<'_>,
    resource: &'static Resource,
    object: &Value,
    parent: Option<&str>,
    known: &HashSet<String>,
    at_least: i64,
    rows: &mut Rows,
) -> Result<Option<(Value, i64)>, EngineError> {
    let Some(path) = object_path(resource, object) else {
        return Ok(None);
    };
    match applier.run.client.get_timed(&path, &[]).await {
        Ok((current, server_time)) => {
            let gone = current["deleted"] == Value::Bool(true);
            let version = server_time.unwrap_or_else(now).max(at_least);
            applier
                .collect(
                    resource,
                    applier.object(resource, &current).into_iter().collect(),
                    version,
                    gone,
                    rows,
                    known,
                    parent,
                )
                .await?;
            Ok(Some((current, version)))
        }
        Err(error) if matches!(error.kind(), Some(ErrorKind::NotFound { .. })) => {
            applier
                .collect(
                    resource,
                    applier.object(resource, object).into_iter().collect(),
                    now().max(at_least),
                    true,
                    rows,
                    known,
                    parent,
                )
                .await?;
            Ok(None)
        }
        Err(error) => {
            let error = EngineError::from(error);
            if error.code == ErrorCode::PermissionMissing {
                applier.run.fail(resource.table, error);
                return Ok(None);
            }
            Err(error)
        }
    }
}

/// What an event changes: its object's resource, version, whether it deletes it, and the parent
/// of a per-customer object. `None` when the mirror does not hold that kind of object.
pub(crate) fn event_change<'e>(
    event: &'e Value,
    readable: &HashSet<&'static str>,
) -> Option<(&'static Resource, i64, bool, Option<&'e str>)> {
    let event_type = event["type"].as_str().unwrap_or_default();
    let object = &event["data"]["object"];
    let resource = object["object"].as_str().and_then(by_object)?;
    if !readable.contains(resource.table) {
        return None;
    }
    let version = event["created"].as_i64().unwrap_or(0);
    // `*.deleted` marks deletion — except a subscription's, which means canceled.
    let deleted = event_type.ends_with(".deleted") && event_type != "customer.subscription.deleted";
    let parent = match resource.source {
        Source::PerParent { .. } => object["customer"].as_str(),
        _ => None,
    };
    Some((resource, version, deleted, parent))
}

/// Changes events imply without saying, added to `rows`:
/// - a customer's balance moved: its balance transactions (which have no events) are listed;
/// - an invoice names pending invoice items in its lines: Stripe changes only the item's
///   `invoice` and sends no event for it, so the mirror's copy gets that field set (read from
///   Stripe only when the mirror lacks the item).
pub(crate) async fn follow_ups(
    run: &Run,
    applier: &Applier<'_>,
    events: &[Value],
    rows: &mut Rows,
) -> Result<(), EngineError> {
    if applier.readable.contains("customer_balance_transactions") {
        let resource =
            crate::catalog::resource("customer_balance_transactions").expect("catalogued");
        let Source::PerParent {
            parent_path,
            segment,
            ..
        } = resource.source
        else {
            unreachable!("a per-customer list")
        };
        let moved: HashSet<&str> = events
            .iter()
            .filter(|e| {
                e["type"] == "customer.updated"
                    && e["data"]["previous_attributes"].get("balance").is_some()
            })
            .filter_map(|e| e["data"]["object"]["id"].as_str())
            .collect();
        for customer in moved {
            let mut cursor = run
                .client
                .list_pages(&format!("{parent_path}/{customer}/{segment}"), vec![]);
            while let Some(page) = cursor.next_raw_page().await? {
                let version = page.server_time.unwrap_or_else(now);
                let objects = applier.objects(resource, &page)?;
                applier
                    .collect(
                        resource,
                        objects,
                        version,
                        false,
                        rows,
                        &HashSet::new(),
                        Some(customer),
                    )
                    .await?;
            }
        }
    }
    if applier.readable.contains("invoiceitems") {
        link_invoice_items(run, applier, events, rows).await?;
    }
    Ok(())
}

/// The invoice items that invoices of `events` name and the mirror does not yet show as theirs.
async fn link_invoice_items(
    run: &Run,
    applier: &Applier<'_>,
    events: &[Value],
    rows: &mut Rows,
) -> Result<(), EngineError> {
    let resource = crate::catalog::resource("invoiceitems").expect("catalogued");
    // (item, invoice, when) in the order the events happened.
    let mut links: Vec<(String, String, i64)> = Vec::new();
    for event in events {
        let invoice = &event["data"]["object"];
        if invoice["object"] != "invoice" {
            continue;
        }
        let Some(invoice_id) = invoice["id"].as_str() else {
            continue;
        };
        let at = event["created"].as_i64().unwrap_or_else(now);
        for line in invoice["lines"]["data"].as_array().into_iter().flatten() {
            if let Some(item) = line["invoice_item"].as_str() {
                links.push((item.to_owned(), invoice_id.to_owned(), at));
            }
        }
    }
    if links.is_empty() {
        return Ok(());
    }
    // The mirror's copies of the items this batch has not written.
    let wanted: Vec<String> = links
        .iter()
        .map(|(item, ..)| item.clone())
        .filter(|item| rows.latest(resource.table, item).is_none())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let connection = run.connection.clone();
    let mut stored: HashMap<String, (Value, i64)> = run
        .store(move |store| store.rows_by_id(&connection, "invoiceitems", &wanted))
        .await?
        .into_iter()
        .filter(|row| !row.deleted)
        .map(|row| (row.id, (row.data, row.version)))
        .collect();
    for (item, invoice_id, at) in links {
        // The latest word on the item: this batch's own row, else the mirror's.
        let current = match rows.latest(resource.table, &item) {
            Some(row) if row.deleted => continue,
            Some(row) => serde_json::from_str::<Value>(&row.data)
                .ok()
                .map(|data| (data, row.version)),
            None => stored.remove(&item),
        };
        match current {
            Some((data, _)) if data["invoice"] == invoice_id.as_str() => {}
            Some((mut data, version)) => {
                data["invoice"] = Value::String(invoice_id);
                if let Some(object) = Object::from_value(&data, &[]) {
                    rows.push(resource.table, object, at.max(version), false, None);
                }
            }
            None => {
                // Not in the mirror (older than the start date, say): Stripe's own copy.
                match run
                    .client
                    .get_timed(&format!("/v1/invoiceitems/{item}"), &[])
                    .await
                {
                    Ok((value, server_time)) => {
                        if let Some(object) = applier.object(resource, &value) {
                            rows.push(
                                resource.table,
                                object,
                                server_time.unwrap_or_else(now),
                                false,
                                None,
                            );
                        }
                    }
                    Err(error) if matches!(error.kind(), Some(ErrorKind::NotFound { .. })) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok(())
}
