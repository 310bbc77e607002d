//! The resources the emulator serves: one row per kind with its object name, id prefix, list path,
//! permission, events and list filters. Everything else looks a kind up here instead of
//! spelling these facts again.

/// A kind of Stripe object the emulator stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Customer,
    Product,
    Price,
    Plan,
    Subscription,
    SubscriptionItem,
    Invoice,
    InvoiceLineItem,
    InvoiceItem,
    Charge,
    Refund,
    Dispute,
    PaymentIntent,
    BalanceTransaction,
    Payout,
    Coupon,
    Event,
    SetupIntent,
    PaymentMethod,
    PromotionCode,
    TaxRate,
    TaxId,
    CreditNote,
    SubscriptionSchedule,
    CheckoutSession,
    PaymentLink,
    CustomerBalanceTransaction,
    EarlyFraudWarning,
    Review,
    File,
    WebhookEndpoint,
    Transfer,
    Topup,
    ApplicationFee,
}

/// Where a kind's list lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListPath {
    /// `/v1/{path}`.
    TopLevel(&'static str),
    /// `/v1/{parent collection}/{parent id}/{segment}`; listed in creation order, oldest first.
    Child { parent: Kind, segment: &'static str },
}

/// What a retrieve answers after the object was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDelete {
    /// `{"id":…,"object":…,"deleted":true}` (customers).
    Stub,
    /// 404 `resource_missing`.
    Missing,
}

/// The facts about one kind.
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    /// The `object` field, e.g. `checkout.session`.
    pub object: &'static str,
    /// The id prefix before `_`.
    pub prefix: &'static str,
    pub list: ListPath,
    /// The `rak_{permission}_read|write` stem.
    pub permission: &'static str,
    /// Event type stems: `{stem}.created` etc. are emitted when listed in `events`.
    pub event_stem: Option<&'static str>,
    /// Which of created/updated/deleted events exist for this kind.
    pub events: (bool, bool, bool),
    /// Top-level fields a list may be filtered on with `?field=value`.
    pub filters: &'static [&'static str],
    /// Whether the list accepts `created[…]` windows.
    pub created_filter: bool,
    /// Whether `DELETE` is allowed.
    pub deletable: bool,
    pub after_delete: AfterDelete,
}

// One argument per column of the table below keeps each row readable on its own.
#[allow(clippy::too_many_arguments)]
const fn info(
    kind: Kind,
    object: &'static str,
    prefix: &'static str,
    list: ListPath,
    permission: &'static str,
    event_stem: Option<&'static str>,
    events: (bool, bool, bool),
    filters: &'static [&'static str],
) -> KindInfo {
    KindInfo {
        kind,
        object,
        prefix,
        list,
        permission,
        event_stem,
        events,
        filters,
        created_filter: matches!(list, ListPath::TopLevel(_)),
        deletable: events.2,
        after_delete: AfterDelete::Missing,
    }
}

use Kind::*;
use ListPath::{Child, TopLevel};

/// Every kind, indexed by `Kind as usize`.
pub static KINDS: [KindInfo; 34] = [
    KindInfo {
        after_delete: AfterDelete::Stub,
        ..info(
            Customer,
            "customer",
            "cus",
            TopLevel("customers"),
            "customer",
            Some("customer"),
            (true, true, true),
            &["email"],
        )
    },
    info(
        Product,
        "product",
        "prod",
        TopLevel("products"),
        "product",
        Some("product"),
        (true, true, true),
        &["active", "shippable"],
    ),
    info(
        Price,
        "price",
        "price",
        TopLevel("prices"),
        "plan",
        Some("price"),
        (true, true, false),
        &["active", "currency", "product", "type"],
    ),
    info(
        Plan,
        "plan",
        "plan",
        TopLevel("plans"),
        "plan",
        Some("plan"),
        (true, true, true),
        &["active", "product"],
    ),
    KindInfo {
        deletable: true,
        ..info(
            Subscription,
            "subscription",
            "sub",
            TopLevel("subscriptions"),
            "subscription",
            Some("customer.subscription"),
            (true, true, false),
            &["customer", "status", "collection_method"],
        )
    },
    KindInfo {
        created_filter: false,
        deletable: true,
        ..info(
            SubscriptionItem,
            "subscription_item",
            "si",
            TopLevel("subscription_items"),
            "subscription",
            None,
            (false, false, false),
            &["subscription"],
        )
    },
    KindInfo {
        deletable: true,
        ..info(
            Invoice,
            "invoice",
            "in",
            TopLevel("invoices"),
            "invoice",
            Some("invoice"),
            (true, true, true),
            &["customer", "status", "subscription", "collection_method"],
        )
    },
    info(
        InvoiceLineItem,
        "line_item",
        "il",
        Child {
            parent: Invoice,
            segment: "lines",
        },
        "invoice",
        None,
        (false, false, false),
        &[],
    ),
    info(
        InvoiceItem,
        "invoiceitem",
        "ii",
        TopLevel("invoiceitems"),
        "invoice",
        Some("invoiceitem"),
        (true, false, true),
        &["customer", "invoice"],
    ),
    info(
        Charge,
        "charge",
        "ch",
        TopLevel("charges"),
        "charge",
        Some("charge"),
        (false, true, false),
        &["customer", "payment_intent", "transfer_group"],
    ),
    info(
        Refund,
        "refund",
        "re",
        TopLevel("refunds"),
        "charge",
        Some("refund"),
        (true, true, false),
        &["charge", "payment_intent"],
    ),
    info(
        Dispute,
        "dispute",
        "dp",
        TopLevel("disputes"),
        "dispute",
        Some("charge.dispute"),
        (true, true, false),
        &["charge", "payment_intent"],
    ),
    info(
        PaymentIntent,
        "payment_intent",
        "pi",
        TopLevel("payment_intents"),
        "payment_intent",
        Some("payment_intent"),
        (true, false, false),
        &["customer"],
    ),
    info(
        BalanceTransaction,
        "balance_transaction",
        "txn",
        TopLevel("balance_transactions"),
        "balance_transaction_source",
        None,
        (false, false, false),
        &["currency", "payout", "source", "type"],
    ),
    info(
        Payout,
        "payout",
        "po",
        TopLevel("payouts"),
        "payout",
        Some("payout"),
        (true, true, false),
        &["status", "destination"],
    ),
    info(
        Coupon,
        "coupon",
        "",
        TopLevel("coupons"),
        "coupon",
        Some("coupon"),
        (true, true, true),
        &[],
    ),
    info(
        Event,
        "event",
        "evt",
        TopLevel("events"),
        "event",
        None,
        (false, false, false),
        &["type"],
    ),
    info(
        SetupIntent,
        "setup_intent",
        "seti",
        TopLevel("setup_intents"),
        "setup_intent",
        Some("setup_intent"),
        (true, false, false),
        &["customer", "payment_method"],
    ),
    info(
        PaymentMethod,
        "payment_method",
        "pm",
        Child {
            parent: Customer,
            segment: "payment_methods",
        },
        "payment_method",
        Some("payment_method"),
        (false, true, false),
        &["type"],
    ),
    info(
        PromotionCode,
        "promotion_code",
        "promo",
        TopLevel("promotion_codes"),
        "promotion_code",
        Some("promotion_code"),
        (true, true, false),
        &["active", "code", "coupon", "customer"],
    ),
    info(
        TaxRate,
        "tax_rate",
        "txr",
        TopLevel("tax_rates"),
        "tax_rate",
        Some("tax_rate"),
        (true, true, false),
        &["active", "inclusive"],
    ),
    KindInfo {
        deletable: true,
        ..info(
            TaxId,
            "tax_id",
            "txi",
            Child {
                parent: Customer,
                segment: "tax_ids",
            },
            "customer",
            Some("customer.tax_id"),
            (true, true, true),
            &[],
        )
    },
    info(
        CreditNote,
        "credit_note",
        "cn",
        TopLevel("credit_notes"),
        "credit_note",
        Some("credit_note"),
        (true, true, false),
        &["customer", "invoice"],
    ),
    info(
        SubscriptionSchedule,
        "subscription_schedule",
        "sub_sched",
        TopLevel("subscription_schedules"),
        "subscription",
        Some("subscription_schedule"),
        (true, true, false),
        &["customer"],
    ),
    info(
        CheckoutSession,
        "checkout.session",
        "cs",
        TopLevel("checkout/sessions"),
        "checkout_session",
        Some("checkout.session"),
        (false, false, false),
        &[
            "customer",
            "payment_intent",
            "payment_link",
            "status",
            "subscription",
        ],
    ),
    KindInfo {
        created_filter: false,
        ..info(
            PaymentLink,
            "payment_link",
            "plink",
            TopLevel("payment_links"),
            "payment_links",
            Some("payment_link"),
            (true, true, false),
            &["active"],
        )
    },
    KindInfo {
        created_filter: true,
        ..info(
            CustomerBalanceTransaction,
            "customer_balance_transaction",
            "cbtxn",
            Child {
                parent: Customer,
                segment: "balance_transactions",
            },
            "customer",
            None,
            (false, false, false),
            &["invoice"],
        )
    },
    info(
        EarlyFraudWarning,
        "radar.early_fraud_warning",
        "issfr",
        TopLevel("radar/early_fraud_warnings"),
        "radar_early_fraud_warning",
        Some("radar.early_fraud_warning"),
        (true, true, false),
        &["charge", "payment_intent"],
    ),
    info(
        Review,
        "review",
        "prv",
        TopLevel("reviews"),
        "review",
        None,
        (false, false, false),
        &[],
    ),
    info(
        File,
        "file",
        "file",
        TopLevel("files"),
        "file",
        Some("file"),
        (true, false, false),
        &["purpose"],
    ),
    KindInfo {
        created_filter: false,
        deletable: true,
        ..info(
            WebhookEndpoint,
            "webhook_endpoint",
            "we",
            TopLevel("webhook_endpoints"),
            "webhook",
            None,
            (false, false, false),
            &[],
        )
    },
    info(
        Transfer,
        "transfer",
        "tr",
        TopLevel("transfers"),
        "transfer",
        Some("transfer"),
        (true, true, false),
        &["destination", "transfer_group"],
    ),
    info(
        Topup,
        "topup",
        "tu",
        TopLevel("topups"),
        "top_up",
        Some("topup"),
        (true, false, false),
        &["status"],
    ),
    info(
        ApplicationFee,
        "application_fee",
        "fee",
        TopLevel("application_fees"),
        "application_fee",
        Some("application_fee"),
        (true, false, false),
        &["charge"],
    ),
];

impl Kind {
    /// This kind's row of facts.
    pub fn info(self) -> &'static KindInfo {
        let row = &KINDS[self as usize];
        debug_assert_eq!(row.kind, self);
        row
    }

    /// The kind whose top-level list lives at `/v1/{path}`.
    pub fn from_collection(path: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|row| matches!(row.list, TopLevel(p) if p == path))
            .map(|row| row.kind)
    }

    /// The kind listed at `/v1/{parent collection}/{id}/{segment}`.
    pub fn child_of(parent: Kind, segment: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|row| matches!(row.list, Child { parent: p, segment: s } if p == parent && s == segment))
            .map(|row| row.kind)
    }

    /// The kind whose `object` field is `object`.
    pub fn from_object(object: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|row| row.object == object)
            .map(|row| row.kind)
    }

    /// The event type for a lifecycle step of this kind, if Stripe has one.
    pub fn event_type(self, step: Lifecycle) -> Option<String> {
        let row = self.info();
        let stem = row.event_stem?;
        let (created, updated, deleted) = row.events;
        let (exists, verb) = match step {
            Lifecycle::Created => (created, "created"),
            Lifecycle::Updated => (updated, "updated"),
            Lifecycle::Deleted => (deleted, "deleted"),
        };
        exists.then(|| format!("{stem}.{verb}"))
    }
}

/// The three steps every kind may announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Created,
    Updated,
    Deleted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_kind() {
        for (index, row) in KINDS.iter().enumerate() {
            assert_eq!(row.kind as usize, index, "row {} out of place", row.object);
        }
        assert_eq!(
            Kind::from_collection("checkout/sessions"),
            Some(Kind::CheckoutSession)
        );
        assert_eq!(
            Kind::child_of(Kind::Invoice, "lines"),
            Some(Kind::InvoiceLineItem)
        );
        assert_eq!(Kind::Subscription.event_type(Lifecycle::Deleted), None);
        assert_eq!(
            Kind::Customer.event_type(Lifecycle::Created).as_deref(),
            Some("customer.created")
        );
    }
}
