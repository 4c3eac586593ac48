//! Outbound event webhooks (issue 17): the pieces that the fan-out and deliver functions, the
//! management API and the local server's delivery worker share. Nothing here does I/O except
//! [`net::Sender`].
//!
//! - [`model`]: subscriptions, Tsuru's `Webhook` with the same JSON field names plus ours, and
//!   their validation (`docs/protocols.md` §5.1).
//! - [`view`]: the event view, every stored event with Tsuru's field names (§5.4), and the
//!   per-source mapping table.
//! - [`filter`]: which subscriptions an event goes to, Tsuru's matching rules (§5.2).
//! - [`template`]: subscription bodies as Go templates, bounded against hostile event data
//!   (§5.3).
//! - [`signature`]: Standard Webhooks signing and verification, and the stable `webhook-id`
//!   (§6).
//! - [`schedule`]: the retry schedule, `Retry-After`, what an attempt's outcome means, and
//!   auto-disable.
//! - [`net`]: the SSRF guard and the sender of one attempt.
//! - [`store`]: subscriptions, deliveries and attempts as storage capabilities, an in-memory
//!   store and the contract suite every store passes (feature `test-util`).
//! - [`engine`]: fan-out, one attempt, replay and the test delivery, over those capabilities.
//!
//! Delivery semantics, for the documentation: at least once (a receiver may see a message
//! again after a timeout, a retry or a replay, always with the same `webhook-id`), unordered
//! (retries overtake), signed with every current secret.

#[cfg(feature = "dynamodb")]
pub mod dynamo;
pub mod engine;
pub mod filter;
pub mod model;
pub mod net;
pub mod schedule;
pub mod signature;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod store;
pub mod template;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod view;

pub use filter::{matches, matching};
pub use model::{
    DisabledReason, EventFilter, RedactedSubscription, Subscription, ValidationError,
    ValidationPolicy,
};
pub use net::{is_forbidden, Attempt, Resolve, SendError, Sender, SenderConfig};
pub use schedule::{next_delay, Verdict};
pub use signature::{generate_secret, sign, sign_all, verify, webhook_id, Secret};
pub use template::{render_body, BodyTemplate, RenderedBody, TemplateError};
pub use view::EventView;
