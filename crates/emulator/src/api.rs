//! The Stripe API itself (`/v1/…`): authentication, permissions (checked before existence, as
//! Stripe does), routing, lists with Stripe's filters and cursors, retrieves, and writes through
//! [`crate::ops`] with `Idempotency-Key` replay.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::API_VERSION;
use crate::catalog::{AfterDelete, Kind};
use crate::failure::Failure;
use crate::objects::{Origin, Params, Tx};
use crate::ops;
use crate::store::{ListQuery, ModeStore, Slot};
use crate::world::{Access, KeyKind, KeyRecord, Mode};
use crate::{Emulator, form};

/// One HTTP request to `/v1/…`, already read off the wire.
#[derive(Debug)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [u8],
    pub body: &'a [u8],
    pub authorization: Option<&'a str>,
    pub stripe_account: Option<&'a str>,
    pub stripe_version: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

/// The answer: status, JSON body, headers.
#[derive(Debug, Clone)]
pub struct ApiReply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiReply {
    fn ok(body: String) -> Self {
        ApiReply {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }
}

impl From<Failure> for ApiReply {
    fn from(failure: Failure) -> Self {
        ApiReply {
            status: failure.status,
            body: failure.body.to_string(),
            headers: failure.headers,
        }
    }
}

/// Where a request goes, once its path is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Account,
    Balance,
    Collection(Kind),
    Object(Kind, String),
    Action(Kind, String, String),
    Children(Kind, String, Kind),
    Child(Kind, String, Kind, String),
}

impl Target {
    /// The `rak_…` stem this target needs.
    fn permission(&self) -> &'static str {
        match self {
            Target::Account => "connected_account",
            Target::Balance => "balance",
            Target::Collection(kind) | Target::Object(kind, _) | Target::Action(kind, _, _) => {
                kind.info().permission
            }
            Target::Children(_, _, kind) | Target::Child(_, _, kind, _) => kind.info().permission,
        }
    }
}

fn route(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/v1/")?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["account"] => return Some(Target::Account),
        ["balance"] => return Some(Target::Balance),
        _ => {}
    }
    let (kind, used) = if segments.len() >= 2
        && let Some(kind) = Kind::from_collection(&format!("{}/{}", segments[0], segments[1]))
    {
        (kind, 2)
    } else if segments.first() == Some(&"payment_methods") {
        (Kind::PaymentMethod, 1)
    } else {
        (Kind::from_collection(segments.first()?)?, 1)
    };
    let own = |s: &str| s.to_owned();
    match &segments[used..] {
        [] => Some(Target::Collection(kind)),
        [id] => Some(Target::Object(kind, own(id))),
        [id, segment] => match Kind::child_of(kind, segment) {
            Some(child) => Some(Target::Children(kind, own(id), child)),
            None => Some(Target::Action(kind, own(id), own(segment))),
        },
        [id, segment, child_id] => Kind::child_of(kind, segment)
            .map(|child| Target::Child(kind, own(id), child, own(child_id))),
        _ => None,
    }
}

/// Answers by idempotency scope (with the request's fingerprint), and the scopes oldest first.
type SavedAnswers = (HashMap<String, (Vec<u8>, ApiReply)>, VecDeque<String>);

/// Saved answers to POSTs with an `Idempotency-Key`, so that a retry gets the first answer.
#[derive(Debug, Default)]
pub struct IdempotencyStore {
    saved: Mutex<SavedAnswers>,
}

const IDEMPOTENCY_CAPACITY: usize = 200_000;

impl IdempotencyStore {
    fn lookup(&self, scope: &str, fingerprint: &[u8]) -> Option<Result<ApiReply, ()>> {
        let saved = self.saved.lock();
        let (stored_fingerprint, reply) = saved.0.get(scope)?;
        Some(if stored_fingerprint == fingerprint {
            Ok(reply.clone())
        } else {
            Err(())
        })
    }

    fn save(&self, scope: String, fingerprint: Vec<u8>, reply: &ApiReply) {
        let mut saved = self.saved.lock();
        let (map, order) = &mut *saved;
        if map.len() >= IDEMPOTENCY_CAPACITY
            && let Some(oldest) = order.pop_front()
        {
            map.remove(&oldest);
        }
        order.push_back(scope.clone());
        map.insert(scope, (fingerprint, reply.clone()));
    }
}

/// Answers one `/v1/…` request.
pub fn handle(emulator: &Emulator, request: &ApiRequest, request_id: &str) -> ApiReply {
    let mut reply = match answer(emulator, request, request_id) {
        Ok(reply) => reply,
        Err(failure) => failure.into(),
    };
    // The version answered in (set by `answer` once the account is known).
    if !reply
        .headers
        .iter()
        .any(|(name, _)| *name == "Stripe-Version")
    {
        reply.headers.push((
            "Stripe-Version",
            request.stripe_version.unwrap_or(API_VERSION).to_owned(),
        ));
    }
    reply
}

fn answer(
    emulator: &Emulator,
    request: &ApiRequest,
    request_id: &str,
) -> Result<ApiReply, Failure> {
    let key = authenticate(emulator, request)?;
    if let Some(account) = request.stripe_account
        && account != key.account
    {
        return Err(Failure::account_invalid(&key.secret, account));
    }
    let endpoint = endpoint_of(request.method, request.path);
    emulator.limits.admit(&key.account, key.mode, &endpoint)?;
    let target = route(request.path)
        .ok_or_else(|| Failure::unrecognized_url(request.method, request.path))?;
    let access = if request.method == "GET" {
        Access::Read
    } else {
        Access::Write
    };
    if key.kind == KeyKind::Restricted && !key.allows(target.permission(), access) {
        let name = format!(
            "{}_{}",
            target.permission(),
            if access == Access::Read {
                "read"
            } else {
                "write"
            }
        );
        return Err(Failure::missing_permission(
            &key.secret,
            &key.account,
            &name,
        ));
    }
    let account = emulator
        .world
        .account(&key.account)
        .ok_or_else(|| Failure::invalid_key(&key.secret))?;
    if let Some(version) = request.stripe_version
        && !crate::versions::is_valid(version)
    {
        return Err(Failure::invalid(
            format!("Invalid Stripe API version: {version}"),
            None,
        ));
    }
    // A request is answered in its Stripe-Version, else in the account's default.
    let version = request
        .stripe_version
        .map(str::to_owned)
        .unwrap_or_else(|| account.api_version.read().clone());
    let mut reply = answer_in_stored_shape(emulator, request, request_id, &key, &account, &target)?;
    let events = request.path.starts_with("/v1/events");
    let versioned_events = events
        && account
            .versioned_events
            .load(std::sync::atomic::Ordering::Relaxed);
    if reply.status == 200
        && ((!events && crate::versions::differs(&version)) || versioned_events)
        && let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&reply.body)
    {
        crate::versions::render(&mut value, &version, &account.mode(key.mode).read());
        reply.body = value.to_string();
    }
    reply.headers.push(("Stripe-Version", version));
    Ok(reply)
}

/// The answer with objects in the shape they are stored in ([`crate::versions::CANONICAL`]).
fn answer_in_stored_shape(
    emulator: &Emulator,
    request: &ApiRequest,
    request_id: &str,
    key: &KeyRecord,
    account: &std::sync::Arc<crate::world::Account>,
    target: &Target,
) -> Result<ApiReply, Failure> {
    let account = account.clone();
    let target = target.clone();
    match request.method {
        "GET" => {
            let query = Params(
                form::parse(request.query).map_err(|e| Failure::invalid(e.to_string(), None))?,
            );
            let store = account.mode(key.mode).read();
            read(
                emulator,
                &account,
                key.mode,
                &store,
                &target,
                query,
                request.path,
            )
        }
        "POST" | "DELETE" => {
            let mut raw = request.body.to_vec();
            if request.method == "DELETE" && raw.is_empty() {
                raw = request.query.to_vec();
            }
            let params =
                Params(form::parse(&raw).map_err(|e| Failure::invalid(e.to_string(), None))?);
            let idempotency = (request.method == "POST")
                .then_some(request.idempotency_key)
                .flatten();
            let scope = idempotency.map(|k| format!("{}:{}:{k}", key.account, key.mode.as_str()));
            let fingerprint = [
                request.method.as_bytes(),
                request.path.as_bytes(),
                b"?",
                &raw,
            ]
            .concat();
            if let Some(scope) = &scope {
                match emulator.idempotency.lookup(scope, &fingerprint) {
                    Some(Ok(mut replay)) => {
                        replay.headers.push(("Idempotent-Replayed", "true".into()));
                        return Ok(replay);
                    }
                    Some(Err(())) => {
                        return Err(Failure::idempotency_mismatch(
                            idempotency.unwrap_or_default(),
                        ));
                    }
                    None => {}
                }
            }
            let origin = Origin {
                request_id: Some(request_id.to_owned()),
                idempotency_key: idempotency.map(str::to_owned),
            };
            let result = emulator.write(&account, key.mode, origin, |tx| {
                write(tx, &target, request.method, params)
            });
            let mut reply = match result {
                Ok(value) => ApiReply::ok(value.to_string()),
                Err(failure) => failure.into(),
            };
            if let Some(key) = idempotency {
                reply.headers.push(("Idempotency-Key", key.to_owned()));
            }
            // Stripe saves the answer to an idempotent request unless it failed on its own side.
            if let Some(scope) = scope
                && reply.status < 500
            {
                emulator.idempotency.save(scope, fingerprint, &reply);
            }
            Ok(reply)
        }
        other => Err(Failure::unrecognized_url(other, request.path)),
    }
}

/// `Authorization: Bearer <key>` or HTTP Basic with the key as user name.
fn authenticate(emulator: &Emulator, request: &ApiRequest) -> Result<KeyRecord, Failure> {
    let header = request
        .authorization
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(Failure::no_key)?;
    let secret = if let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    {
        token.trim().to_owned()
    } else if let Some(encoded) = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
    {
        let decoded = decode_base64(encoded.trim()).ok_or_else(Failure::no_key)?;
        String::from_utf8_lossy(&decoded)
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned()
    } else {
        return Err(Failure::no_key());
    };
    if secret.is_empty() {
        return Err(Failure::no_key());
    }
    if secret.starts_with("pk_") {
        return Err(Failure::publishable_key());
    }
    let key = emulator
        .world
        .key(&secret)
        .filter(|k| !k.revoked)
        .ok_or_else(|| Failure::invalid_key(&secret))?;
    if key.kind == KeyKind::Publishable {
        return Err(Failure::publishable_key());
    }
    if key.expires_at.is_some_and(|at| emulator.world.now() >= at) {
        return Err(Failure::expired_key(&secret));
    }
    Ok(key)
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        buffer = (buffer << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// The rate-limit endpoint of a request: method and resource, ids left out.
pub fn endpoint_of(method: &str, path: &str) -> String {
    let rest = path.strip_prefix("/v1/").unwrap_or(path);
    let mut segments = rest.split('/');
    let first = segments.next().unwrap_or_default();
    let resource = if first == "checkout" || first == "radar" {
        format!("{first}/{}", segments.next().unwrap_or_default())
    } else {
        first.to_owned()
    };
    format!("{method} /v1/{resource}")
}

fn read(
    emulator: &Emulator,
    account: &crate::world::Account,
    mode: Mode,
    store: &ModeStore,
    target: &Target,
    mut query: Params,
    path: &str,
) -> Result<ApiReply, Failure> {
    match target {
        Target::Account => Ok(ApiReply::ok(account.to_json().to_string())),
        Target::Balance => Ok(ApiReply::ok(balance(store).to_string())),
        Target::Collection(kind) => list(emulator, store, *kind, query, path).map(ApiReply::ok),
        Target::Object(kind, id) => {
            query.0.remove("expand");
            retrieve(
                emulator,
                account,
                mode,
                store,
                *kind,
                id,
                emulator.world.now(),
            )
            .map(ApiReply::ok)
        }
        Target::Children(parent, parent_id, kind) => {
            let parent_slot = live_slot(store, *parent, parent_id)?;
            child_list(store, parent_slot, *kind, query, path).map(ApiReply::ok)
        }
        Target::Child(parent, parent_id, kind, id) => {
            let parent_slot = live_slot(store, *parent, parent_id)?;
            let slot = live_slot(store, *kind, id)?;
            if store.get(slot).parent != parent_slot {
                return Err(Failure::no_such(kind.info().object, id));
            }
            Ok(ApiReply::ok(store.get(slot).json.to_string()))
        }
        Target::Action(kind, id, _) => Err(Failure::unrecognized_url(
            "GET",
            &format!("/v1/{}/{id}", ops::collection_path(*kind)),
        )),
    }
}

fn live_slot(store: &ModeStore, kind: Kind, id: &str) -> Result<Slot, Failure> {
    match store.slot_of(id) {
        Some(slot) if store.get(slot).kind == kind && !store.get(slot).deleted => Ok(slot),
        _ => Err(Failure::no_such(kind.info().object, id)),
    }
}

/// Events older than this are gone from the API, as on Stripe.
pub const EVENT_RETENTION_SECS: i64 = 30 * 86_400;

fn retrieve(
    emulator: &Emulator,
    account: &crate::world::Account,
    mode: Mode,
    store: &ModeStore,
    kind: Kind,
    id: &str,
    now: i64,
) -> Result<String, Failure> {
    let object = kind.info().object;
    let Some(slot) = store.slot_of(id).filter(|&s| store.get(s).kind == kind) else {
        let other = match mode {
            Mode::Test => account.mode(Mode::Live).read().slot_of(id),
            Mode::Live => account.mode(Mode::Test).read().slot_of(id),
        };
        let _ = emulator;
        return Err(match other {
            Some(_) => Failure::other_mode(object, id, mode == Mode::Test),
            None => Failure::no_such(object, id),
        });
    };
    let stored = store.get(slot);
    if stored.deleted {
        return match kind.info().after_delete {
            AfterDelete::Stub => {
                Ok(json!({"id": id, "object": object, "deleted": true}).to_string())
            }
            AfterDelete::Missing => Err(Failure::no_such(object, id)),
        };
    }
    if kind == Kind::Event && stored.created < now - EVENT_RETENTION_SECS {
        return Err(Failure::no_such(object, id));
    }
    Ok(stored.json.to_string())
}

/// Parses `limit`, cursors and `created[…]` into a [`ListQuery`].
fn list_query(
    store: &ModeStore,
    kind: Kind,
    query: &mut Params,
    now: i64,
) -> Result<ListQuery, Failure> {
    let limit = match query.take_str("limit") {
        None => 10,
        Some(text) => {
            let n: i64 = text
                .parse()
                .map_err(|_| Failure::invalid(format!("Invalid integer: {text}"), Some("limit")))?;
            if !(1..=100).contains(&n) {
                return Err(Failure::invalid(
                    format!("Invalid limit: must be between 1 and 100 (you passed {n})"),
                    Some("limit"),
                ));
            }
            n as usize
        }
    };
    let mut list = ListQuery {
        limit,
        ..Default::default()
    };
    let after = query.take_str("starting_after");
    let before = query.take_str("ending_before");
    if after.is_some() && before.is_some() {
        return Err(Failure::invalid(
            "You may only specify one of these parameters: ending_before, starting_after.",
            None,
        ));
    }
    let cursor = |id: &str, param: &str| -> Result<Slot, Failure> {
        match store.slot_of(id) {
            // An event past Stripe's 30 days is gone, as a cursor too.
            Some(slot)
                if kind == Kind::Event
                    && store.get(slot).created < now.saturating_sub(EVENT_RETENTION_SECS) =>
            {
                let mut failure = Failure::no_such("event", id);
                failure.body["error"]["param"] = json!(param);
                Err(failure)
            }
            Some(slot) if store.get(slot).kind == kind => Ok(slot),
            _ => {
                let mut failure = Failure::no_such(kind.info().object, id);
                failure.body["error"]["param"] = json!(param);
                Err(failure)
            }
        }
    };
    list.starting_after = after
        .as_deref()
        .map(|id| cursor(id, "starting_after"))
        .transpose()?;
    list.ending_before = before
        .as_deref()
        .map(|id| cursor(id, "ending_before"))
        .transpose()?;
    match query.0.remove("created") {
        None => {}
        Some(_) if !kind.info().created_filter => return Err(Failure::unknown_param("created")),
        Some(Value::String(exact)) => {
            let at = parse_time(&exact, "created")?;
            list.created_from = Some(at);
            list.created_until = Some(at + 1);
        }
        Some(Value::Object(range)) => {
            for (op, value) in range {
                let param = format!("created[{op}]");
                let at = parse_time(value.as_str().unwrap_or_default(), &param)?;
                match op.as_str() {
                    "gte" => list.created_from = Some(list.created_from.map_or(at, |f| f.max(at))),
                    "gt" => {
                        list.created_from =
                            Some(list.created_from.map_or(at + 1, |f| f.max(at + 1)))
                    }
                    "lt" => list.created_until = Some(list.created_until.map_or(at, |u| u.min(at))),
                    "lte" => {
                        list.created_until =
                            Some(list.created_until.map_or(at + 1, |u| u.min(at + 1)))
                    }
                    _ => return Err(Failure::unknown_param(&param)),
                }
            }
        }
        Some(_) => {
            return Err(Failure::invalid(
                "Invalid created: must be an integer or a hash of gt, gte, lt, lte",
                Some("created"),
            ));
        }
    }
    query.0.remove("expand");
    Ok(list)
}

fn parse_time(text: &str, param: &str) -> Result<i64, Failure> {
    text.parse().map_err(|_| {
        Failure::invalid(
            format!("Invalid timestamp: must be an integer Unix timestamp ({text})"),
            Some(param),
        )
    })
}

/// List parameters Stripe accepts that the emulator takes without filtering on them.
const IGNORED_LIST_PARAMS: &[&str] = &[
    "test_clock",
    "lookup_keys",
    "recurring",
    "delivery_success",
    "due_date",
    "pending",
    "arrival_date",
    "allow_redisplay",
    "price",
    "ids",
    "url",
    "customer_details",
    "customer_account",
];

fn list(
    emulator: &Emulator,
    store: &ModeStore,
    kind: Kind,
    mut query: Params,
    path: &str,
) -> Result<String, Failure> {
    if kind == Kind::SubscriptionItem {
        let sub = query.require_str("subscription")?;
        let parent = live_slot(store, Kind::Subscription, &sub).map_err(|mut f| {
            f.body["error"]["param"] = json!("subscription");
            f
        })?;
        return child_list(store, parent, kind, query, path);
    }
    if kind == Kind::PaymentMethod {
        let customer = query.require_str("customer")?;
        let parent = live_slot(store, Kind::Customer, &customer)?;
        return child_list(store, parent, kind, query, path);
    }
    let window = list_query(store, kind, &mut query, emulator.world.now())?;
    let filters = kind.info().filters;
    let mut wanted: Vec<(usize, String)> = Vec::new();
    let mut status_mode = None;
    let mut event_types: Vec<String> = Vec::new();
    for (position, field) in filters.iter().enumerate() {
        let Some(value) = query.take_str(field) else {
            continue;
        };
        match (kind, *field) {
            (Kind::Subscription, "status") => status_mode = Some(value),
            (Kind::Event, "type") => event_types.push(value),
            _ => wanted.push((position, value)),
        }
    }
    if kind == Kind::Event {
        let types = query.take_strings("types");
        if types.len() > 20 {
            return Err(Failure::invalid(
                "You may pass at most 20 types.",
                Some("types"),
            ));
        }
        event_types.extend(types);
    }
    for name in IGNORED_LIST_PARAMS {
        query.0.remove(*name);
    }
    if let Some(name) = query.0.keys().next() {
        return Err(Failure::unknown_param(name));
    }
    // Stripe's default filters: canceled subscriptions and inactive prices are hidden unless asked for.
    let status_position = filters.iter().position(|f| *f == "status");
    let active_position = filters.iter().position(|f| *f == "active");
    let hide_inactive_prices =
        kind == Kind::Price && !wanted.iter().any(|(p, _)| Some(*p) == active_position);
    let mut window = window;
    if kind == Kind::Event {
        let oldest = emulator.world.now() - EVENT_RETENTION_SECS;
        window.created_from = Some(window.created_from.map_or(oldest, |f| f.max(oldest)));
    }
    let (slots, has_more) = store.page(kind, &window, |object| {
        let attr = |p: usize| object.attrs[p].as_deref();
        if !wanted.iter().all(|(p, v)| attr(*p) == Some(v.as_str())) {
            return false;
        }
        if hide_inactive_prices && attr(active_position.unwrap()) != Some("true") {
            return false;
        }
        if kind == Kind::Subscription {
            let status = attr(status_position.unwrap()).unwrap_or_default();
            let shown = match status_mode.as_deref() {
                None => status != "canceled",
                Some("all") => true,
                Some("ended") => status == "canceled" || status == "incomplete_expired",
                Some(wanted) => status == wanted,
            };
            if !shown {
                return false;
            }
        }
        if !event_types.is_empty() {
            let event_type = attr(0).unwrap_or_default();
            return event_types
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => event_type.starts_with(prefix),
                    None => event_type == pattern,
                });
        }
        true
    });
    Ok(store.render_list(&slots, has_more, path))
}

fn child_list(
    store: &ModeStore,
    parent: Slot,
    kind: Kind,
    mut query: Params,
    path: &str,
) -> Result<String, Failure> {
    let window = list_query(store, kind, &mut query, i64::MIN)?;
    let wanted: Vec<(usize, String)> = kind
        .info()
        .filters
        .iter()
        .enumerate()
        .filter_map(|(p, f)| query.take_str(f).map(|v| (p, v)))
        .collect();
    for name in IGNORED_LIST_PARAMS {
        query.0.remove(*name);
    }
    if let Some(name) = query.0.keys().next() {
        return Err(Failure::unknown_param(name));
    }
    let (slots, has_more) = store.child_page(parent, kind, &window, |object| {
        wanted
            .iter()
            .all(|(p, v)| object.attrs[*p].as_deref() == Some(v.as_str()))
    });
    Ok(store.render_list(&slots, has_more, path))
}

fn write(tx: &mut Tx, target: &Target, method: &str, params: Params) -> Result<Value, Failure> {
    match (method, target) {
        ("POST", Target::Collection(kind)) => ops::create(tx, *kind, params),
        ("POST", Target::Object(kind, id)) => ops::update(tx, *kind, id, params),
        ("DELETE", Target::Object(kind, id)) => {
            let mut params = params;
            // Canceling a subscription may carry options we accept and do not act on.
            for option in ["invoice_now", "prorate", "cancellation_details", "expand"] {
                params.0.remove(option);
            }
            if let Some(name) = params.0.keys().next() {
                return Err(Failure::unknown_param(name));
            }
            ops::delete(tx, *kind, id)
        }
        ("POST", Target::Action(kind, id, action)) => ops::action(tx, *kind, id, action, params),
        ("POST", Target::Children(Kind::Customer, customer, kind)) => {
            ops::create_child(tx, customer, *kind, params)
        }
        ("DELETE", Target::Child(Kind::Customer, customer, Kind::TaxId, id)) => {
            let customer_slot = ops::find(tx, Kind::Customer, customer)?;
            let slot = ops::find(tx, Kind::TaxId, id)?;
            if tx.store.get(slot).parent != customer_slot {
                return Err(Failure::no_such("tax_id", id));
            }
            ops::delete(tx, Kind::TaxId, id)
        }
        _ => Err(Failure::unrecognized_url(method, &target_path(target))),
    }
}

fn target_path(target: &Target) -> String {
    match target {
        Target::Account => "/v1/account".into(),
        Target::Balance => "/v1/balance".into(),
        Target::Collection(kind) => format!("/v1/{}", ops::collection_path(*kind)),
        Target::Object(kind, id) => format!("/v1/{}/{id}", ops::collection_path(*kind)),
        Target::Action(kind, id, action) => {
            format!("/v1/{}/{id}/{action}", ops::collection_path(*kind))
        }
        Target::Children(parent, id, kind) => format!(
            "/v1/{}/{id}/{}",
            ops::collection_path(*parent),
            ops::collection_path(*kind)
        ),
        Target::Child(parent, id, kind, child) => format!(
            "/v1/{}/{id}/{}/{child}",
            ops::collection_path(*parent),
            ops::collection_path(*kind)
        ),
    }
}

/// `GET /v1/balance`, summed from the balance transactions.
fn balance(store: &ModeStore) -> Value {
    let mut by_currency: HashMap<String, (i64, i64)> = HashMap::new();
    let all = ListQuery {
        limit: usize::MAX,
        ..Default::default()
    };
    for slot in store.page(Kind::BalanceTransaction, &all, |_| true).0 {
        let txn = store.value(slot);
        let entry = by_currency
            .entry(txn["currency"].as_str().unwrap_or("usd").to_owned())
            .or_default();
        if txn["status"] == json!("available") {
            entry.0 += txn["net"].as_i64().unwrap_or(0);
        } else {
            entry.1 += txn["net"].as_i64().unwrap_or(0);
        }
    }
    let mut currencies: Vec<_> = by_currency.into_iter().collect();
    currencies.sort();
    let side = |pick: fn(&(i64, i64)) -> i64| -> Vec<Value> {
        currencies.iter().map(|(c, v)| json!({"amount": pick(v), "currency": c, "source_types": {"card": pick(v)}})).collect()
    };
    json!({"object": "balance", "available": side(|v| v.0), "livemode": store.livemode, "pending": side(|v| v.1)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_collections_objects_actions_and_children() {
        assert_eq!(
            route("/v1/customers"),
            Some(Target::Collection(Kind::Customer))
        );
        assert_eq!(
            route("/v1/checkout/sessions/cs_1/expire"),
            Some(Target::Action(
                Kind::CheckoutSession,
                "cs_1".into(),
                "expire".into()
            ))
        );
        assert_eq!(
            route("/v1/invoices/in_1/lines"),
            Some(Target::Children(
                Kind::Invoice,
                "in_1".into(),
                Kind::InvoiceLineItem
            ))
        );
        assert_eq!(
            route("/v1/customers/cus_1/tax_ids/txi_1"),
            Some(Target::Child(
                Kind::Customer,
                "cus_1".into(),
                Kind::TaxId,
                "txi_1".into()
            ))
        );
        assert_eq!(route("/v1/nothing"), None);
        assert_eq!(
            endpoint_of("GET", "/v1/customers/cus_1"),
            "GET /v1/customers"
        );
    }

    #[test]
    fn basic_auth_decodes() {
        assert_eq!(decode_base64("c2tfdGVzdF94Og==").unwrap(), b"sk_test_x:");
    }
}
