//! The mirror's tables: one per Stripe resource, each with the same core columns and a few typed
//! columns users filter on, derived from the stored JSON by the database itself (generated
//! columns), so that the JSON stays the single source and nothing is dropped.

/// SQL type of a typed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Integer,
    Boolean,
    Real,
}

/// A typed column: its name, the JSON path it comes from (`customer`, `recurring.interval`), its type.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub path: &'static str,
    pub sql_type: ColumnType,
}

const fn text(name: &'static str, path: &'static str) -> Column {
    Column {
        name,
        path,
        sql_type: ColumnType::Text,
    }
}
const fn int(name: &'static str, path: &'static str) -> Column {
    Column {
        name,
        path,
        sql_type: ColumnType::Integer,
    }
}
const fn boolean(name: &'static str, path: &'static str) -> Column {
    Column {
        name,
        path,
        sql_type: ColumnType::Boolean,
    }
}
const fn real(name: &'static str, path: &'static str) -> Column {
    Column {
        name,
        path,
        sql_type: ColumnType::Real,
    }
}

/// One mirrored resource's table.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// Typed columns worth an index (lookups by customer, subscription…).
    pub indexed: &'static [&'static str],
}

/// Every resource table. Core columns of each: `account_id, id, livemode, created, deleted, data,
/// version, synced_at, parent_id` (the parent object of child objects), primary key
/// `(account_id, id)`.
pub static TABLES: &[Table] = &[
    Table {
        name: "customers",
        columns: &[
            text("email", "email"),
            text("name", "name"),
            text("currency", "currency"),
            int("balance", "balance"),
            boolean("delinquent", "delinquent"),
        ],
        indexed: &["email"],
    },
    Table {
        name: "products",
        columns: &[text("name", "name"), boolean("active", "active")],
        indexed: &[],
    },
    Table {
        name: "prices",
        columns: &[
            text("product", "product"),
            boolean("active", "active"),
            text("currency", "currency"),
            int("unit_amount", "unit_amount"),
            text("type", "type"),
            text("recurring_interval", "recurring.interval"),
            text("nickname", "nickname"),
        ],
        indexed: &["product"],
    },
    Table {
        name: "plans",
        columns: &[
            text("product", "product"),
            boolean("active", "active"),
            text("currency", "currency"),
            int("amount", "amount"),
            text("interval", "interval"),
        ],
        indexed: &[],
    },
    Table {
        name: "subscriptions",
        columns: &[
            text("customer", "customer"),
            text("status", "status"),
            text("currency", "currency"),
            int("current_period_start", "current_period_start"),
            int("current_period_end", "current_period_end"),
            boolean("cancel_at_period_end", "cancel_at_period_end"),
            int("canceled_at", "canceled_at"),
            int("ended_at", "ended_at"),
        ],
        indexed: &["customer", "status"],
    },
    Table {
        name: "subscription_items",
        columns: &[
            text("subscription", "subscription"),
            text("price", "price.id"),
            int("quantity", "quantity"),
        ],
        indexed: &["subscription"],
    },
    Table {
        name: "invoices",
        columns: &[
            text("customer", "customer"),
            text("subscription", "subscription"),
            text("status", "status"),
            text("currency", "currency"),
            int("amount_due", "amount_due"),
            int("amount_paid", "amount_paid"),
            int("total", "total"),
            text("number", "number"),
        ],
        indexed: &["customer", "subscription"],
    },
    Table {
        name: "invoice_line_items",
        columns: &[
            text("invoice", "invoice"),
            text("subscription", "subscription"),
            text("price", "price.id"),
            int("amount", "amount"),
            text("currency", "currency"),
            int("quantity", "quantity"),
        ],
        indexed: &["invoice"],
    },
    Table {
        name: "invoiceitems",
        columns: &[
            text("customer", "customer"),
            text("invoice", "invoice"),
            int("amount", "amount"),
            text("currency", "currency"),
        ],
        indexed: &["customer"],
    },
    Table {
        name: "charges",
        columns: &[
            text("customer", "customer"),
            text("payment_intent", "payment_intent"),
            text("invoice", "invoice"),
            int("amount", "amount"),
            int("amount_refunded", "amount_refunded"),
            text("currency", "currency"),
            text("status", "status"),
            boolean("paid", "paid"),
            boolean("refunded", "refunded"),
        ],
        indexed: &["customer"],
    },
    Table {
        name: "refunds",
        columns: &[
            text("charge", "charge"),
            text("payment_intent", "payment_intent"),
            int("amount", "amount"),
            text("currency", "currency"),
            text("status", "status"),
        ],
        indexed: &["charge"],
    },
    Table {
        name: "disputes",
        columns: &[
            text("charge", "charge"),
            int("amount", "amount"),
            text("currency", "currency"),
            text("status", "status"),
            text("reason", "reason"),
        ],
        indexed: &[],
    },
    Table {
        name: "payment_intents",
        columns: &[
            text("customer", "customer"),
            text("invoice", "invoice"),
            int("amount", "amount"),
            text("currency", "currency"),
            text("status", "status"),
        ],
        indexed: &["customer"],
    },
    Table {
        name: "balance_transactions",
        columns: &[
            text("source", "source"),
            text("type", "type"),
            int("amount", "amount"),
            int("fee", "fee"),
            int("net", "net"),
            text("currency", "currency"),
            text("status", "status"),
            int("available_on", "available_on"),
        ],
        indexed: &["source"],
    },
    Table {
        name: "payouts",
        columns: &[
            int("amount", "amount"),
            text("currency", "currency"),
            text("status", "status"),
            int("arrival_date", "arrival_date"),
        ],
        indexed: &[],
    },
    Table {
        name: "coupons",
        columns: &[
            text("name", "name"),
            real("percent_off", "percent_off"),
            int("amount_off", "amount_off"),
            text("duration", "duration"),
            boolean("valid", "valid"),
        ],
        indexed: &[],
    },
    Table {
        name: "setup_intents",
        columns: &[text("customer", "customer"), text("status", "status")],
        indexed: &[],
    },
    Table {
        name: "payment_methods",
        columns: &[text("customer", "customer"), text("type", "type")],
        indexed: &["customer"],
    },
    Table {
        name: "promotion_codes",
        columns: &[
            text("code", "code"),
            text("coupon", "coupon.id"),
            boolean("active", "active"),
        ],
        indexed: &[],
    },
    Table {
        name: "tax_rates",
        columns: &[
            text("display_name", "display_name"),
            real("percentage", "percentage"),
            boolean("active", "active"),
        ],
        indexed: &[],
    },
    Table {
        name: "tax_ids",
        columns: &[
            text("customer", "customer"),
            text("type", "type"),
            text("value", "value"),
        ],
        indexed: &["customer"],
    },
    Table {
        name: "credit_notes",
        columns: &[
            text("customer", "customer"),
            text("invoice", "invoice"),
            int("amount", "amount"),
            text("status", "status"),
        ],
        indexed: &[],
    },
    Table {
        name: "subscription_schedules",
        columns: &[
            text("customer", "customer"),
            text("subscription", "subscription"),
            text("status", "status"),
        ],
        indexed: &[],
    },
    Table {
        name: "checkout_sessions",
        columns: &[
            text("customer", "customer"),
            text("subscription", "subscription"),
            text("payment_intent", "payment_intent"),
            text("status", "status"),
            int("amount_total", "amount_total"),
            text("currency", "currency"),
        ],
        indexed: &[],
    },
    Table {
        name: "payment_links",
        columns: &[boolean("active", "active"), text("url", "url")],
        indexed: &[],
    },
    Table {
        name: "customer_balance_transactions",
        columns: &[
            text("customer", "customer"),
            int("amount", "amount"),
            text("currency", "currency"),
            text("type", "type"),
        ],
        indexed: &["customer"],
    },
    Table {
        name: "early_fraud_warnings",
        columns: &[text("charge", "charge"), text("fraud_type", "fraud_type")],
        indexed: &[],
    },
    Table {
        name: "reviews",
        columns: &[
            text("charge", "charge"),
            text("reason", "reason"),
            boolean("open", "open"),
        ],
        indexed: &[],
    },
    Table {
        name: "files",
        columns: &[text("purpose", "purpose"), int("size", "size")],
        indexed: &[],
    },
    Table {
        name: "transfers",
        columns: &[
            int("amount", "amount"),
            text("currency", "currency"),
            text("destination", "destination"),
        ],
        indexed: &[],
    },
    Table {
        name: "topups",
        columns: &[
            int("amount", "amount"),
            text("currency", "currency"),
            text("status", "status"),
        ],
        indexed: &[],
    },
    Table {
        name: "application_fees",
        columns: &[
            int("amount", "amount"),
            text("currency", "currency"),
            text("charge", "charge"),
        ],
        indexed: &[],
    },
];

/// The table named `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}
