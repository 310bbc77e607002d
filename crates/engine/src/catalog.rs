//! The resources the mirror copies: for each, its table, where Stripe lists it, the permission a
//! restricted key needs, how to list all of it (Stripe's default filters hide data), and which
//! events change it. Also the write operations agent tools use, and how each is probed.

/// Where a resource's objects come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A top-level list, `/v1/{path}`.
    List,
    /// A list under each parent object: `/v1/{parent}/{id}/{segment}`.
    PerParent {
        parent_table: &'static str,
        parent_path: &'static str,
        segment: &'static str,
    },
    /// Embedded in a parent object as a truncated sub-list (`subscription.items`, `invoice.lines`);
    /// paged through `list_path` only when the embedded page has more.
    Embedded {
        parent_table: &'static str,
        field: &'static str,
    },
}

/// One mirrored resource.
#[derive(Debug)]
pub struct Resource {
    pub table: &'static str,
    /// Stripe's `object` value.
    pub object: &'static str,
    /// `/v1/customers` (top-level lists), or the child list's path pattern for people.
    pub path: &'static str,
    pub source: Source,
    /// The permission a restricted key needs to read it.
    pub permission: &'static str,
    /// Whether the list takes `created[…]` windows.
    pub created_filter: bool,
    /// Each pass lists these extra parameters; several passes where Stripe hides data by
    /// default (prices: active and inactive; subscriptions: `status=all`).
    pub passes: &'static [&'static [(&'static str, &'static str)]],
    /// Whether events announce its changes (else it is refreshed by re-listing).
    pub has_events: bool,
    pub tier: u8,
}

const ONE_PASS: &[&[(&str, &str)]] = &[&[]];

const fn list(
    table: &'static str,
    object: &'static str,
    path: &'static str,
    permission: &'static str,
    tier: u8,
) -> Resource {
    Resource {
        table,
        object,
        path,
        source: Source::List,
        permission,
        created_filter: true,
        passes: ONE_PASS,
        has_events: true,
        tier,
    }
}

/// Every resource the mirror copies, parents before children.
pub static RESOURCES: &[Resource] = &[
    list(
        "customers",
        "customer",
        "/v1/customers",
        "rak_customer_read",
        1,
    ),
    list("products", "product", "/v1/products", "rak_product_read", 1),
    Resource {
        passes: &[&[("active", "true")], &[("active", "false")]],
        ..list("prices", "price", "/v1/prices", "rak_plan_read", 1)
    },
    list("plans", "plan", "/v1/plans", "rak_plan_read", 1),
    Resource {
        passes: &[&[("status", "all")]],
        ..list(
            "subscriptions",
            "subscription",
            "/v1/subscriptions",
            "rak_subscription_read",
            1,
        )
    },
    Resource {
        source: Source::Embedded {
            parent_table: "subscriptions",
            field: "items",
        },
        created_filter: false,
        has_events: false,
        ..list(
            "subscription_items",
            "subscription_item",
            "/v1/subscription_items",
            "rak_subscription_read",
            1,
        )
    },
    list("invoices", "invoice", "/v1/invoices", "rak_invoice_read", 1),
    Resource {
        source: Source::Embedded {
            parent_table: "invoices",
            field: "lines",
        },
        created_filter: false,
        has_events: false,
        ..list(
            "invoice_line_items",
            "line_item",
            "/v1/invoices/{id}/lines",
            "rak_invoice_read",
            1,
        )
    },
    list(
        "invoiceitems",
        "invoiceitem",
        "/v1/invoiceitems",
        "rak_invoice_read",
        1,
    ),
    list("charges", "charge", "/v1/charges", "rak_charge_read", 1),
    list("refunds", "refund", "/v1/refunds", "rak_charge_read", 1),
    list("disputes", "dispute", "/v1/disputes", "rak_dispute_read", 1),
    list(
        "payment_intents",
        "payment_intent",
        "/v1/payment_intents",
        "rak_payment_intent_read",
        1,
    ),
    Resource {
        has_events: false,
        ..list(
            "balance_transactions",
            "balance_transaction",
            "/v1/balance_transactions",
            "rak_balance_transaction_source_read",
            1,
        )
    },
    list("payouts", "payout", "/v1/payouts", "rak_payout_read", 1),
    list("coupons", "coupon", "/v1/coupons", "rak_coupon_read", 1),
    list(
        "setup_intents",
        "setup_intent",
        "/v1/setup_intents",
        "rak_setup_intent_read",
        2,
    ),
    Resource {
        source: Source::PerParent {
            parent_table: "customers",
            parent_path: "/v1/customers",
            segment: "payment_methods",
        },
        created_filter: false,
        ..list(
            "payment_methods",
            "payment_method",
            "/v1/customers/{id}/payment_methods",
            "rak_payment_method_read",
            2,
        )
    },
    list(
        "promotion_codes",
        "promotion_code",
        "/v1/promotion_codes",
        "rak_promotion_code_read",
        2,
    ),
    list(
        "tax_rates",
        "tax_rate",
        "/v1/tax_rates",
        "rak_tax_rate_read",
        2,
    ),
    Resource {
        source: Source::PerParent {
            parent_table: "customers",
            parent_path: "/v1/customers",
            segment: "tax_ids",
        },
        created_filter: false,
        ..list(
            "tax_ids",
            "tax_id",
            "/v1/customers/{id}/tax_ids",
            "rak_customer_read",
            2,
        )
    },
    list(
        "credit_notes",
        "credit_note",
        "/v1/credit_notes",
        "rak_credit_note_read",
        2,
    ),
    list(
        "subscription_schedules",
        "subscription_schedule",
        "/v1/subscription_schedules",
        "rak_subscription_read",
        2,
    ),
    list(
        "checkout_sessions",
        "checkout.session",
        "/v1/checkout/sessions",
        "rak_checkout_session_read",
        2,
    ),
    Resource {
        created_filter: false,
        ..list(
            "payment_links",
            "payment_link",
            "/v1/payment_links",
            "rak_payment_links_read",
            2,
        )
    },
    Resource {
        source: Source::PerParent {
            parent_table: "customers",
            parent_path: "/v1/customers",
            segment: "balance_transactions",
        },
        has_events: false,
        ..list(
            "customer_balance_transactions",
            "customer_balance_transaction",
            "/v1/customers/{id}/balance_transactions",
            "rak_customer_read",
            2,
        )
    },
    list(
        "early_fraud_warnings",
        "radar.early_fraud_warning",
        "/v1/radar/early_fraud_warnings",
        "rak_radar_early_fraud_warning_read",
        2,
    ),
    list("reviews", "review", "/v1/reviews", "rak_review_read", 2),
    list("files", "file", "/v1/files", "rak_file_read", 2),
    list(
        "transfers",
        "transfer",
        "/v1/transfers",
        "rak_transfer_read",
        3,
    ),
    list("topups", "topup", "/v1/topups", "rak_top_up_read", 3),
    list(
        "application_fees",
        "application_fee",
        "/v1/application_fees",
        "rak_application_fee_read",
        3,
    ),
];

/// The table a child resource hangs from (embedded in it, or listed under each of its objects).
pub fn parent_of(resource: &Resource) -> Option<&'static str> {
    match resource.source {
        Source::List => None,
        Source::PerParent { parent_table, .. } | Source::Embedded { parent_table, .. } => {
            Some(parent_table)
        }
    }
}

/// The tables a sync keeps, from `--only` and `--skip` (table names, e.g. `customers,charges`):
/// `None` means every table. A table listed under or embedded in another needs that parent, which
/// `--only` brings along (unless skipped); embedded children come with their parent for free
/// (unless skipped); a child whose parent is skipped is skipped too. An unknown name is an error
/// that lists the known ones.
pub fn choose_tables(
    only: &[String],
    skip: &[String],
) -> Result<Option<std::collections::BTreeSet<&'static str>>, String> {
    let known = |name: &String| -> Result<&'static str, String> {
        resource(name.trim()).map(|r| r.table).ok_or_else(|| {
            format!(
                "unknown table \"{}\"; the tables are: {}",
                name.trim(),
                RESOURCES
                    .iter()
                    .map(|r| r.table)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    };
    let named: Vec<&'static str> = only.iter().map(known).collect::<Result<_, _>>()?;
    let skipped: std::collections::BTreeSet<&'static str> =
        skip.iter().map(known).collect::<Result<_, _>>()?;
    if named.is_empty() && skipped.is_empty() {
        return Ok(None);
    }
    let mut chosen: std::collections::BTreeSet<&'static str> = if named.is_empty() {
        RESOURCES.iter().map(|r| r.table).collect()
    } else {
        named.iter().copied().collect()
    };
    // Parents first, then embedded children, in catalog order (parents come before children).
    for r in RESOURCES.iter().rev() {
        if let Some(parent) = parent_of(r).filter(|_| chosen.contains(r.table)) {
            chosen.insert(parent);
        }
    }
    for r in RESOURCES {
        if matches!(r.source, Source::Embedded { parent_table, .. } if chosen.contains(parent_table))
        {
            chosen.insert(r.table);
        }
    }
    chosen.retain(|t| !skipped.contains(t));
    for r in RESOURCES {
        if parent_of(r).is_some_and(|parent| !chosen.contains(parent)) {
            chosen.remove(r.table);
        }
    }
    if chosen.is_empty() {
        return Err("--only and --skip leave no table to mirror".into());
    }
    Ok(Some(chosen))
}

/// The resource stored in `table`.
pub fn resource(table: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.table == table)
}

/// The table of an id by its prefix (`cus_` → customers), for ids the mirror keeps.
pub fn table_of_id(id: &str) -> Option<&'static str> {
    let (prefix, body) = id.split_once('_')?;
    // Checkout sessions say their mode: `cs_test_a1…`, `cs_live_a1…`.
    let body = body
        .strip_prefix("test_")
        .or_else(|| body.strip_prefix("live_"))
        .unwrap_or(body);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(match prefix {
        "cus" => "customers",
        "sub" => "subscriptions",
        "in" => "invoices",
        "pi" => "payment_intents",
        "ch" | "py" => "charges",
        "prod" => "products",
        "price" => "prices",
        "re" => "refunds",
        "dp" | "du" => "disputes",
        "po" => "payouts",
        "txn" => "balance_transactions",
        "pm" => "payment_methods",
        "si" => "subscription_items",
        "ii" => "invoiceitems",
        "cs" => "checkout_sessions",
        "plink" => "payment_links",
        _ => return None,
    })
    .filter(|table| sm_warehouse::schema::table(table).is_some())
}

/// The resource whose objects have `object` as their `object` field.
pub fn by_object(object: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.object == object)
}

/// The event types whose objects the mirror holds: what a managed webhook endpoint enables.
/// (Stripe's list for API 2026-07-29 less types newer than the pinned 2023-08-16 version.)
pub static MIRRORED_EVENT_TYPES: &[&str] = &[
    "charge.captured",
    "charge.dispute.closed",
    "charge.dispute.created",
    "charge.dispute.funds_reinstated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.updated",
    "charge.expired",
    "charge.failed",
    "charge.pending",
    "charge.refund.updated",
    "charge.refunded",
    "charge.succeeded",
    "charge.updated",
    "checkout.session.async_payment_failed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.completed",
    "checkout.session.expired",
    "coupon.created",
    "coupon.deleted",
    "coupon.updated",
    "credit_note.created",
    "credit_note.updated",
    "credit_note.voided",
    "customer.created",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.updated",
    "customer.tax_id.created",
    "customer.tax_id.deleted",
    "customer.tax_id.updated",
    "customer.updated",
    "file.created",
    "invoice.created",
    "invoice.deleted",
    "invoice.finalization_failed",
    "invoice.finalized",
    "invoice.marked_uncollectible",
    "invoice.paid",
    "invoice.payment_action_required",
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "invoice.sent",
    "invoice.upcoming",
    "invoice.updated",
    "invoice.voided",
    "invoiceitem.created",
    "invoiceitem.deleted",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "payment_intent.created",
    "payment_intent.partially_funded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
    "payment_link.created",
    "payment_link.updated",
    "payment_method.attached",
    "payment_method.automatically_updated",
    "payment_method.detached",
    "payment_method.updated",
    "payout.canceled",
    "payout.created",
    "payout.failed",
    "payout.paid",
    "payout.reconciliation_completed",
    "payout.updated",
    "plan.created",
    "plan.deleted",
    "plan.updated",
    "price.created",
    "price.deleted",
    "price.updated",
    "product.created",
    "product.deleted",
    "product.updated",
    "promotion_code.created",
    "promotion_code.updated",
    "radar.early_fraud_warning.created",
    "radar.early_fraud_warning.updated",
    "refund.created",
    "refund.failed",
    "refund.updated",
    "review.closed",
    "review.opened",
    "setup_intent.canceled",
    "setup_intent.created",
    "setup_intent.requires_action",
    "setup_intent.setup_failed",
    "setup_intent.succeeded",
    "subscription_schedule.aborted",
    "subscription_schedule.canceled",
    "subscription_schedule.completed",
    "subscription_schedule.created",
    "subscription_schedule.expiring",
    "subscription_schedule.released",
    "subscription_schedule.updated",
    "tax_rate.created",
    "tax_rate.updated",
];

/// The permission to list events.
pub const EVENT_READ: &str = "rak_event_read";
/// Reading the account itself (`GET /v1/account`): its name and icon for the connection.
pub const ACCOUNT_READ: &str = "rak_connected_account_read";
/// The permission to manage webhook endpoints (real-time updates).
pub const WEBHOOK_WRITE: &str = "rak_webhook_write";

/// A write operation users ask for, and a side-effect-free probe of its permission: a request to a
/// made-up id, which Stripe answers 403 without the permission and 404 with it.
#[derive(Debug)]
pub struct WriteOperation {
    pub name: &'static str,
    pub permission: &'static str,
    pub probe_method: &'static str,
    pub probe_path: &'static str,
}

pub static WRITE_OPERATIONS: &[WriteOperation] = &[
    WriteOperation {
        name: "create or update customers",
        permission: "rak_customer_write",
        probe_method: "POST",
        probe_path: "/v1/customers/cus_stripemirrorprobe",
    },
    WriteOperation {
        name: "create products",
        permission: "rak_product_write",
        probe_method: "POST",
        probe_path: "/v1/products/prod_stripemirrorprobe",
    },
    WriteOperation {
        name: "create prices",
        permission: "rak_plan_write",
        probe_method: "POST",
        probe_path: "/v1/prices/price_stripemirrorprobe",
    },
    WriteOperation {
        name: "create checkout sessions",
        permission: "rak_checkout_session_write",
        probe_method: "POST",
        probe_path: "/v1/checkout/sessions/cs_test_stripemirrorprobe/expire",
    },
    WriteOperation {
        name: "create payment links",
        permission: "rak_payment_links_write",
        probe_method: "POST",
        probe_path: "/v1/payment_links/plink_stripemirrorprobe",
    },
    WriteOperation {
        name: "create, finalize and send invoices",
        permission: "rak_invoice_write",
        probe_method: "POST",
        probe_path: "/v1/invoices/in_stripemirrorprobe",
    },
    WriteOperation {
        name: "cancel subscriptions",
        permission: "rak_subscription_write",
        probe_method: "DELETE",
        probe_path: "/v1/subscriptions/sub_stripemirrorprobe",
    },
    WriteOperation {
        name: "refund charges",
        permission: "rak_charge_write",
        probe_method: "POST",
        probe_path: "/v1/refunds/re_stripemirrorprobe",
    },
    WriteOperation {
        name: "create coupons",
        permission: "rak_coupon_write",
        probe_method: "POST",
        probe_path: "/v1/coupons/stripemirrorprobe",
    },
    WriteOperation {
        name: "manage webhook endpoints",
        permission: "rak_webhook_write",
        probe_method: "POST",
        probe_path: "/v1/webhook_endpoints/we_stripemirrorprobe",
    },
];

/// What a user turns on, and the permissions each feature needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Copy every resource and follow changes through events.
    Mirror,
    /// Real-time updates through a managed webhook endpoint.
    Webhooks,
    /// Agent tools that write to Stripe.
    AgentWrites,
}

impl Feature {
    pub const ALL: [Feature; 3] = [Feature::Mirror, Feature::Webhooks, Feature::AgentWrites];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Mirror => "mirror",
            Feature::Webhooks => "webhooks",
            Feature::AgentWrites => "agent-writes",
        }
    }

    pub fn parse(text: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == text.trim())
    }

    /// The `rak_…` permissions this feature needs, without duplicates, in a stable order.
    pub fn permissions(self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = match self {
            // Reading the account itself gives the connection its name in Stripe.
            Feature::Mirror => RESOURCES
                .iter()
                .map(|r| r.permission)
                .chain([EVENT_READ, ACCOUNT_READ])
                .collect(),
            Feature::Webhooks => vec![WEBHOOK_WRITE],
            Feature::AgentWrites => WRITE_OPERATIONS.iter().map(|w| w.permission).collect(),
        };
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(*n));
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_says_its_table() {
        assert_eq!(table_of_id("cus_9sdfQ"), Some("customers"));
        assert_eq!(table_of_id("cs_test_a1B2"), Some("checkout_sessions"));
        assert_eq!(table_of_id("cs_live_a1B2"), Some("checkout_sessions"));
        assert_eq!(table_of_id("in_../../x"), None);
        assert_eq!(table_of_id("mystery"), None);
    }

    #[test]
    fn every_resource_has_a_table_and_parents_come_first() {
        for (index, r) in RESOURCES.iter().enumerate() {
            assert!(
                sm_warehouse::schema::table(r.table).is_some(),
                "{} has no table",
                r.table
            );
            if let Some(parent) = parent_of(r) {
                assert!(
                    RESOURCES[..index].iter().any(|p| p.table == parent),
                    "{}'s parent {parent} is listed before it",
                    r.table
                );
            }
        }
        assert!(Feature::Mirror.permissions().contains(&"rak_event_read"));
        assert_eq!(Feature::parse("agent-writes"), Some(Feature::AgentWrites));
    }

    #[test]
    fn choosing_tables_brings_parents_and_embedded_children() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(choose_tables(&[], &[]), Ok(None));
        let only = choose_tables(&names(&["charges", "subscriptions"]), &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            only.into_iter().collect::<Vec<_>>(),
            ["charges", "subscription_items", "subscriptions"]
        );
        let tax_ids = choose_tables(&names(&["tax_ids"]), &[]).unwrap().unwrap();
        assert!(tax_ids.contains("customers"), "{tax_ids:?}");
        let skip = choose_tables(&[], &names(&["customers", "subscription_items"]))
            .unwrap()
            .unwrap();
        assert!(!skip.contains("customers") && !skip.contains("tax_ids"));
        assert!(!skip.contains("subscription_items") && skip.contains("subscriptions"));
        let error = choose_tables(&names(&["custmers"]), &[]).unwrap_err();
        assert!(
            error.contains("\"custmers\"") && error.contains("customers, products"),
            "{error}"
        );
        assert!(choose_tables(&names(&["charges"]), &names(&["charges"])).is_err());
    }
}
