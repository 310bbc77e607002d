//! Revenue metrics computed from mirrored Stripe objects, exactly as `docs/METRICS.md`
//! defines them: MRR and ARR per currency, its movements per customer, subscribers and churn,
//! ARPA and LTV, net revenue from balance transactions, failed payments. Pure computation over
//! JSON objects: the engine reads the mirror and hands them here, so every backend and every
//! surface gets the same numbers.

pub mod calendar;
pub mod failed;
pub mod movements;
pub mod mrr;
pub mod ratio;
pub mod revenue;
pub mod summary;

pub use calendar::Interval;
pub use movements::{Movement, MovementKind, SubscriptionHistory, movements};
pub use mrr::{ChurnRecognition, DiscountMode, Settings, subscription_mrr};
pub use ratio::{Ratio, micros_to_minor};
pub use summary::{PeriodMetrics, period_metrics};
