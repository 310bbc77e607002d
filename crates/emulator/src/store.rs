//! The emulator's own copy of an account in one mode: every object as compact JSON, a list index
//! per kind ordered as Stripe lists (newest first), child lists (invoice lines, customer payment
//! methods…) in creation order, and the events.
//!
//! Objects are kept serialized because lists are by far the hottest path: a page is 100 stored
//! byte strings joined, with no JSON work at all. Mutations parse, change and re-serialize.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::catalog::{KINDS, Kind};

/// Position of an object in [`ModeStore::objects`].
pub type Slot = u32;

/// One stored object.
#[derive(Debug)]
pub struct StoredObject {
    pub kind: Kind,
    pub created: i64,
    pub deleted: bool,
    /// The parent's slot for child kinds (invoice lines, subscription items…), else `NO_PARENT`.
    pub parent: Slot,
    /// The object as Stripe would send it, compact JSON.
    pub json: Box<str>,
    /// Values of the kind's list filters (`KindInfo::filters`), in the same order.
    pub attrs: Box<[Option<Box<str>>]>,
}

pub const NO_PARENT: Slot = Slot::MAX;

/// A `created` window and cursors for a list request.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    /// Inclusive lower bound on `created`.
    pub created_from: Option<i64>,
    /// Exclusive upper bound on `created`.
    pub created_until: Option<i64>,
    pub starting_after: Option<Slot>,
    pub ending_before: Option<Slot>,
    pub limit: usize,
}

/// One account's objects in one mode.
#[derive(Debug)]
pub struct ModeStore {
    pub livemode: bool,
    objects: Vec<StoredObject>,
    by_id: HashMap<Box<str>, Slot>,
    /// Per kind: `(created, slot)` of every live object; listed in reverse (newest first).
    lists: Vec<BTreeSet<(i64, Slot)>>,
    /// Per `(parent slot, child kind)`: live children in creation order.
    children: HashMap<(Slot, Kind), Vec<Slot>>,
    /// Signing secrets of this mode's webhook endpoints, by endpoint id; the last one is current,
    /// earlier ones are still signed with while a secret rolls.
    pub webhook_secrets: HashMap<String, Vec<String>>,
}

impl ModeStore {
    pub fn new(livemode: bool) -> Self {
        ModeStore {
            livemode,
            objects: Vec::new(),
            by_id: HashMap::new(),
            lists: KINDS.iter().map(|_| BTreeSet::new()).collect(),
            children: HashMap::new(),
            webhook_secrets: HashMap::new(),
        }
    }

    /// How many objects (deleted ones included) this mode holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Bytes of JSON held, for memory figures.
    pub fn json_bytes(&self) -> usize {
        self.objects.iter().map(|o| o.json.len()).sum()
    }

    pub fn slot_of(&self, id: &str) -> Option<Slot> {
        self.by_id.get(id).copied()
    }

    pub fn get(&self, slot: Slot) -> &StoredObject {
        &self.objects[slot as usize]
    }

    /// The object at `slot` as a JSON value, for changing it.
    pub fn value(&self, slot: Slot) -> Value {
        serde_json::from_str(&self.objects[slot as usize].json).expect("stored JSON is valid")
    }

    /// Every slot ever stored, in insertion order (deleted ones included).
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        0..self.objects.len() as Slot
    }

    /// Stores a new object; its `id`, `created` and list filters are read from `value`.
    pub fn insert(&mut self, kind: Kind, value: &Value, parent: Slot) -> Slot {
        let id = value["id"].as_str().expect("objects have ids").to_owned();
        let created = value["created"].as_i64().unwrap_or(0);
        let slot = self.objects.len() as Slot;
        self.objects.push(StoredObject {
            kind,
            created,
            deleted: false,
            parent,
            json: value.to_string().into_boxed_str(),
            attrs: extract_attrs(kind, value),
        });
        self.by_id.insert(id.into_boxed_str(), slot);
        if is_top_level(kind) {
            self.lists[kind as usize].insert((created, slot));
        }
        if parent != NO_PARENT {
            self.children.entry((parent, kind)).or_default().push(slot);
        }
        slot
    }

    /// Replaces the stored body of an existing object (its id and `created` never change).
    pub fn replace(&mut self, slot: Slot, value: &Value) {
        let object = &mut self.objects[slot as usize];
        object.json = value.to_string().into_boxed_str();
        object.attrs = extract_attrs(object.kind, value);
    }

    /// Marks an object deleted: it leaves its lists but can still be found by id.
    pub fn mark_deleted(&mut self, slot: Slot) {
        let object = &mut self.objects[slot as usize];
        if object.deleted {
            return;
        }
        object.deleted = true;
        let (kind, created, parent) = (object.kind, object.created, object.parent);
        self.lists[kind as usize].remove(&(created, slot));
        if parent != NO_PARENT
            && let Some(siblings) = self.children.get_mut(&(parent, kind))
        {
            siblings.retain(|&s| s != slot);
        }
    }

    /// Moves a child object under another parent (a payment method attached to a customer).
    pub fn set_parent(&mut self, slot: Slot, parent: Slot) {
        let object = &mut self.objects[slot as usize];
        let (kind, old) = (object.kind, object.parent);
        object.parent = parent;
        if old != NO_PARENT
            && let Some(siblings) = self.children.get_mut(&(old, kind))
        {
            siblings.retain(|&s| s != slot);
        }
        if parent != NO_PARENT {
            self.children.entry((parent, kind)).or_default().push(slot);
        }
    }

    /// Live children of `parent` of `kind`, oldest first.
    pub fn children(&self, parent: Slot, kind: Kind) -> &[Slot] {
        self.children
            .get(&(parent, kind))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// A page of a top-level list, newest first, keeping only objects `keep` accepts.
    /// Returns the slots and whether more match beyond the page.
    pub fn page(
        &self,
        kind: Kind,
        query: &ListQuery,
        mut keep: impl FnMut(&StoredObject) -> bool,
    ) -> (Vec<Slot>, bool) {
        let index = &self.lists[kind as usize];
        let low = (query.created_from.unwrap_or(i64::MIN), 0);
        let high = (query.created_until.unwrap_or(i64::MAX), 0);
        if low >= high {
            return (Vec::new(), false);
        }
        let limit = query.limit.max(1);
        let mut found = Vec::with_capacity(limit.min(128));
        if let Some(cursor) = query.ending_before {
            // The page just newer than the cursor, still answered newest first.
            let cursor_key = (self.get(cursor).created, cursor);
            let start = std::ops::Bound::Excluded(cursor_key.max(low));
            let start = if cursor_key < low {
                std::ops::Bound::Included(low)
            } else {
                start
            };
            let mut more = false;
            for &(_, slot) in index.range((start, std::ops::Bound::Excluded(high))) {
                if keep(self.get(slot)) {
                    if found.len() == limit {
                        more = true;
                        break;
                    }
                    found.push(slot);
                }
            }
            found.reverse();
            return (found, more);
        }
        let end = match query.starting_after {
            Some(cursor) => (self.get(cursor).created, cursor).min(high),
            None => high,
        };
        if low >= end {
            return (Vec::new(), false);
        }
        for &(_, slot) in index.range(low..end).rev() {
            if keep(self.get(slot)) {
                if found.len() == limit {
                    return (found, true);
                }
                found.push(slot);
            }
        }
        (found, false)
    }

    /// A page of a child list (oldest first) with the same cursor rules.
    pub fn child_page(
        &self,
        parent: Slot,
        kind: Kind,
        query: &ListQuery,
        mut keep: impl FnMut(&StoredObject) -> bool,
    ) -> (Vec<Slot>, bool) {
        let all = self.children(parent, kind);
        let in_window = |slot: &Slot| {
            let created = self.get(*slot).created;
            query.created_from.is_none_or(|from| created >= from)
                && query.created_until.is_none_or(|until| created < until)
        };
        let limit = query.limit.max(1);
        let candidates: Vec<Slot> = match (query.starting_after, query.ending_before) {
            (Some(after), _) => all
                .iter()
                .skip_while(|&&s| s != after)
                .skip(1)
                .copied()
                .collect(),
            (None, Some(before)) => {
                let mut earlier: Vec<Slot> =
                    all.iter().take_while(|&&s| s != before).copied().collect();
                let keep_from = earlier.len().saturating_sub(limit);
                let more = keep_from > 0;
                earlier.drain(..keep_from);
                let page: Vec<Slot> = earlier
                    .into_iter()
                    .filter(in_window)
                    .filter(|s| keep(self.get(*s)))
                    .collect();
                return (page, more);
            }
            (None, None) => all.to_vec(),
        };
        let mut page = Vec::with_capacity(limit.min(128));
        for slot in candidates.into_iter().filter(in_window) {
            if keep(self.get(slot)) {
                if page.len() == limit {
                    return (page, true);
                }
                page.push(slot);
            }
        }
        (page, false)
    }

    /// `{"object":"list","data":[…],"has_more":…,"url":…}` built from stored bytes.
    pub fn render_list(&self, slots: &[Slot], has_more: bool, url: &str) -> String {
        let body_len: usize = slots.iter().map(|&s| self.get(s).json.len() + 1).sum();
        let mut out = String::with_capacity(body_len + url.len() + 64);
        out.push_str(r#"{"object":"list","data":["#);
        for (n, &slot) in slots.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&self.get(slot).json);
        }
        out.push_str(r#"],"has_more":"#);
        out.push_str(if has_more { "true" } else { "false" });
        out.push_str(r#","url":""#);
        out.push_str(url);
        out.push_str("\"}");
        out
    }
}

/// Kinds listed at a top-level path (child kinds only under their parent, except subscription items,
/// which Stripe lists at `/v1/subscription_items?subscription=…` and are indexed as children).
fn is_top_level(kind: Kind) -> bool {
    matches!(kind.info().list, crate::catalog::ListPath::TopLevel(_))
        && kind != Kind::SubscriptionItem
}

fn extract_attrs(kind: Kind, value: &Value) -> Box<[Option<Box<str>>]> {
    kind.info()
        .filters
        .iter()
        .map(|field| match &value[*field] {
            Value::String(s) => Some(s.as_str().into()),
            Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
            Value::Number(n) => Some(n.to_string().into()),
            Value::Object(map) => map.get("id").and_then(Value::as_str).map(Into::into),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store_with(n: i64) -> ModeStore {
        let mut store = ModeStore::new(false);
        for i in 0..n {
            // Two objects per second: ties on `created` are common in Stripe too.
            store.insert(
                Kind::Customer,
                &json!({"id": format!("cus_{i}"), "created": 1000 + i / 2, "email": null}),
                NO_PARENT,
            );
        }
        store
    }

    fn ids(store: &ModeStore, slots: &[Slot]) -> Vec<String> {
        slots
            .iter()
            .map(|&s| store.value(s)["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn pages_newest_first_and_cursors_walk_without_gaps() {
        let store = store_with(7);
        let query = ListQuery {
            limit: 3,
            ..Default::default()
        };
        let (first, more) = store.page(Kind::Customer, &query, |_| true);
        assert_eq!(ids(&store, &first), ["cus_6", "cus_5", "cus_4"]);
        assert!(more);
        let next = ListQuery {
            starting_after: Some(first[2]),
            ..query.clone()
        };
        let (second, _) = store.page(Kind::Customer, &next, |_| true);
        assert_eq!(ids(&store, &second), ["cus_3", "cus_2", "cus_1"]);
        let back = ListQuery {
            ending_before: Some(second[0]),
            ..query.clone()
        };
        let (newer, more) = store.page(Kind::Customer, &back, |_| true);
        assert_eq!(ids(&store, &newer), ["cus_6", "cus_5", "cus_4"]);
        assert!(!more);
        let window = ListQuery {
            created_from: Some(1001),
            created_until: Some(1003),
            limit: 10,
            ..Default::default()
        };
        let (in_window, _) = store.page(Kind::Customer, &window, |_| true);
        assert_eq!(
            ids(&store, &in_window),
            ["cus_5", "cus_4", "cus_3", "cus_2"]
        );
    }

    #[test]
    fn deleted_objects_leave_lists() {
        let mut store = store_with(3);
        store.mark_deleted(1);
        let (all, _) = store.page(
            Kind::Customer,
            &ListQuery {
                limit: 10,
                ..Default::default()
            },
            |_| true,
        );
        assert_eq!(ids(&store, &all), ["cus_2", "cus_0"]);
        assert!(store.get(store.slot_of("cus_1").unwrap()).deleted);
    }
}
