//! `POST /stacks`: ROS webhooks (our token) and CloudFormation stack events through SNS. The
//! credential decides the sender before the body is parsed: a request carrying our token is
//! ROS and is authenticated first; anything else must be a verifiable SNS message.

use crate::cfn::{self, CfnError};
use crate::handler::{StackHook, StackStore};
use crate::lifecycle;
use crate::ros::{self, RosError, RosNotification};
use chrono::{DateTime, Utc};
use http::StatusCode;
use hub_core::auth::{presented_callback_token, require_callback_token};
use hub_core::certs::Fetcher;
use hub_core::clock::Clock;
use hub_core::event::{Event, Source};
use hub_core::http::{json_response, raw_body, ApiError};
use hub_core::store::{PageRequest, PutOutcome};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use sns::Received;

impl<S: StackStore, C: Clock, F: Fetcher> StackHook<S, C, F> {
    /// ROS webhooks, or SNS envelopes carrying CloudFormation stack events.
    pub(crate) async fn receive(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = raw_body(request, self.config.edge.max_body_bytes)?;
        if presented_callback_token(request).is_some() {
            self.receive_ros(request, body).await
        } else {
            self.receive_sns(body).await
        }
    }

    /// The signature and the topic allow-list authenticate SNS; no token is involved.
    async fn receive_sns(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        if !self.sns.accepts_any() {
            return Err(ApiError::forbidden(
                "missing callback token (and no SNS topic is allowed)",
            ));
        }
        let message = match self.sns.receive(body).await? {
            Received::Handshake => {
                return Ok(hub_core::metrics::Outcome::Handshake.mark(json_response(
                    StatusCode::OK,
                    &json!({"status": "confirmed"}),
                )))
            }
            Received::Notification(message) => message,
        };
        let bad = |e: CfnError| ApiError::bad_request(e.to_string());
        let event = cfn::parse(&message.message).map_err(bad)?;
        let mut stored = Event::new(
            Source::Stack,
            event.scoped_event_id().map_err(bad)?,
            event.resource_status().map_err(bad)?,
            event.stack_name().map_err(bad)?,
            event.to_json().to_string(),
            self.clock.now(),
        )
        .occurred_at(Some(event.timestamp().map_err(bad)?))
        .alias(event.get("StackId").map(str::to_owned));
        if !event.is_stack_level() {
            stored = stored.history_only();
        }
        let outcome = hub_core::metrics::time_store(self.store.put_event(&stored)).await?;
        Ok(accepted(outcome, &stored))
    }

    async fn receive_ros(
        &self,
        request: &Request,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let Some(token) = &self.config.token else {
            return Err(ApiError::forbidden(
                "ROS webhooks are not enabled (no STACK_HOOK_TOKEN)",
            ));
        };
        require_callback_token(request, token)?;
        let notification =
            ros::parse(body).map_err(|e: RosError| ApiError::bad_request(e.to_string()))?;
        let now = self.clock.now();

        // The rule and why it holds under concurrency: `crate::lifecycle` (docs/protocols.md §3.1).
        let name = notification.stack_name.clone();
        let ttl = self.config.edge.event_ttl_days;
        // A head this instance proved lately (`crate::heads`) means the name has a chain, so its
        // first place is taken: no put into it is tried.
        let remembered = self.heads.get(&name, now);
        let mut from_memory = remembered.is_some();
        let mut latest = match remembered {
            Some(head) => Some(head),
            None => match self.claim_first_slot(&notification, now).await? {
                Some(stored) => {
                    self.heads.remember(&stored, now, ttl);
                    return Ok(accepted(PutOutcome::Stored, &stored));
                }
                None => self.chain_head_by_index(&name).await?,
            },
        };
        // Both the remembered head and the index's answer may lag behind the chain. A new latest
        // status needs no check: its put into the place after `latest` succeeds only while
        // `latest` is the chain's head. A verdict that puts nothing there (a retry, a late
        // delivery) is taken again against the head, followed by consistent reads.
        let mut at_head = latest.is_none();
        for _ in 0..MAX_RACES {
            let placement = self.place(latest.as_ref(), &notification, now).await?;
            if !at_head && !matches!(placement, Placement::Latest) {
                (latest, at_head) = match latest.take() {
                    Some(seen) => self.head_from(seen, &name, now, &mut from_memory).await?,
                    None => (None, true),
                };
                continue;
            }
            match placement {
                Placement::Retry(of) => return Ok(accepted(PutOutcome::Duplicate, &of)),
                Placement::Late => return self.store_late(notification, now).await,
                Placement::Latest => {}
            }
            let event = chain_event(&notification, latest.as_ref(), now);
            let id = event.event_id.clone();
            match hub_core::metrics::time_store(self.store.put_event(&event)).await? {
                PutOutcome::Stored => {
                    self.heads.remember(&event, now, ttl);
                    return Ok(accepted(PutOutcome::Stored, &event));
                }
                // Another delivery took this place first: decide again, against it.
                PutOutcome::Duplicate => {
                    let winner = self
                        .store
                        .get_event(Source::Stack, &id)
                        .await?
                        .ok_or_else(|| busy("the latest event of the stack vanished"))?;
                    (latest, at_head) =
                        self.head_from(winner, &name, now, &mut from_memory).await?;
                }
            }
        }
        Err(busy("too many concurrent deliveries for one stack"))
    }

    /// The chain's head reached from `seen`, and whether it was reached by consistent reads.
    /// A walk that does not reach the head: when the delivery began at a remembered head, other
    /// instances have moved the chain far on since, and the index is nearer the head; otherwise
    /// the chain is moving faster than deliveries can follow (503, ROS retries).
    async fn head_from(
        &self,
        seen: Event,
        name: &str,
        now: DateTime<Utc>,
        from_memory: &mut bool,
    ) -> Result<(Option<Event>, bool), ApiError> {
        if let Some(head) = self.walk(seen, now).await? {
            return Ok((Some(head), true));
        }
        if !std::mem::take(from_memory) {
            return Err(busy("the stack's latest event is moving too fast"));
        }
        self.heads.forget(name);
        let latest = self.chain_head_by_index(name).await?;
        let at_head = latest.is_none();
        Ok((latest, at_head))
    }

    /// The newest event of the name's ROS chain by the "latest" index. The index also holds the
    /// statuses of a CloudFormation stack of the same name, which are never part of the chain
    /// (`crate::lifecycle`): the newest event whose id is a chain id.
    async fn chain_head_by_index(&self, name: &str) -> Result<Option<Event>, ApiError> {
        Ok(match self.store.latest_about(Source::Stack, name).await? {
            Some(latest) if lifecycle::is_chain_id(&latest.event_id) => Some(latest),
            None => None,
            Some(_) => {
                self.store
                    .latest_with_id_prefix(Source::Stack, name, lifecycle::CHAIN_ID_PREFIX)
                    .await?
            }
        })
    }

    /// The creation of a stack under a name that has never had one needs no read: its event
    /// takes the name's first chain place, and the insert-once put of that place is the whole
    /// check (`lifecycle::first_slot_proves_a_new_name`). `Some` is the stored event; `None` means
    /// the place was taken, or the shortcut does not apply, and the delivery is placed against
    /// the chain's head as every other one is.
    async fn claim_first_slot(
        &self,
        notification: &RosNotification,
        now: DateTime<Utc>,
    ) -> Result<Option<Event>, ApiError> {
        if !lifecycle::first_slot_proves_a_new_name(
            &notification.status,
            self.config.edge.event_ttl_days,
        ) {
            return Ok(None);
        }
        let event = chain_event(notification, None, now);
        Ok(
            match hub_core::metrics::time_store(self.store.put_event(&event)).await? {
                PutOutcome::Stored => Some(event),
                PutOutcome::Duplicate => None,
            },
        )
    }

    /// Follows the chain from `latest` to its head with consistent reads; the head is remembered.
    /// `None` when the head is more than [`MAX_WALK`] places on.
    async fn walk(&self, mut latest: Event, now: DateTime<Utc>) -> Result<Option<Event>, ApiError> {
        for _ in 0..MAX_WALK {
            match self
                .store
                .get_event(Source::Stack, &lifecycle::slot_after(&latest))
                .await?
            {
                Some(next) => latest = next,
                None => {
                    self.heads
                        .remember(&latest, now, self.config.edge.event_ttl_days);
                    return Ok(Some(latest));
                }
            }
        }
        Ok(None)
    }

    async fn place(
        &self,
        latest: Option<&Event>,
        notification: &RosNotification,
        now: DateTime<Utc>,
    ) -> Result<Placement, ApiError> {
        let Some(latest) = latest else {
            return Ok(Placement::Latest);
        };
        if lifecycle::is_retry(latest, notification, now, self.config.dedup_window_secs) {
            return Ok(Placement::Retry(latest.clone()));
        }
        let follows = match lifecycle::stack_id_of(latest) {
            Some(id) if id == notification.stack_id => {
                lifecycle::may_follow(&latest.event_type, &notification.status)
            }
            // Another stack id under this name: a new lifecycle (the stack was deleted and created
            // again, even if its DELETE_COMPLETE was lost) unless the name has had this id
            // before, which makes it the older lifecycle.
            _ => {
                self.store
                    .subject_for_alias(Source::Stack, &notification.stack_id)
                    .await?
                    .as_deref()
                    != Some(notification.stack_name.as_str())
            }
        };
        Ok(if follows {
            Placement::Latest
        } else {
            Placement::Late
        })
    }

    /// A delivery that cannot set the status: history only. It cannot hide a status change, so
    /// any event of the same content within two windows makes it a duplicate (ROS retrying an
    /// earlier notification), and its key is content plus window, as before.
    async fn store_late(
        &self,
        notification: RosNotification,
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, ApiError> {
        let window = self.config.dedup_window_secs;
        let horizon = lifecycle::retry_horizon(now, window);
        let recent = self
            .store
            .events_about(
                Source::Stack,
                &notification.stack_name,
                &PageRequest::first(PageRequest::MAX_LIMIT),
            )
            .await?;
        if let Some(prior) = recent
            .events
            .into_iter()
            .find(|e| e.received_at >= horizon && lifecycle::same_content(e, &notification))
        {
            return Ok(accepted(PutOutcome::Duplicate, &prior));
        }
        let key = ros::idempotency_key(&notification, now, window);
        if let Some(prior) = self.store.get_event(Source::Stack, &key.previous).await? {
            return Ok(accepted(PutOutcome::Duplicate, &prior));
        }
        let event = Event::new(
            Source::Stack,
            key.current,
            notification.status,
            notification.stack_name,
            Value::Object(notification.body).to_string(),
            now,
        )
        .alias(Some(notification.stack_id))
        .history_only();
        tracing::info!(
            source = "stack",
            event_id = %event.event_id,
            stack = %event.subject,
            status = %event.event_type,
            "ROS notification older than the stack's latest status: kept as history"
        );
        let outcome = hub_core::metrics::time_store(self.store.put_event(&event)).await?;
        Ok(accepted(outcome, &event))
    }
}

/// The event that takes the chain place after `latest` (the name's first place without one).
fn chain_event(
    notification: &RosNotification,
    latest: Option<&Event>,
    now: DateTime<Utc>,
) -> Event {
    let id = latest.map_or_else(
        || lifecycle::first_slot(&notification.stack_name),
        lifecycle::slot_after,
    );
    Event::new(
        Source::Stack,
        id,
        notification.status.clone(),
        notification.stack_name.clone(),
        Value::Object(notification.body.clone()).to_string(),
        lifecycle::received_after(latest, now),
    )
    .alias(Some(notification.stack_id.clone()))
}

/// How often one delivery may lose the race for the next place in a stack's chain before it
/// gives up with 503 (ROS retries), and how far it follows the chain to its end.
const MAX_RACES: usize = 8;
pub(crate) const MAX_WALK: usize = 32;

fn busy(why: &str) -> ApiError {
    tracing::warn!(why, "stack hook could not place a notification");
    ApiError::Unavailable("concurrent deliveries for this stack, retry later".into())
}

/// What a ROS delivery is, measured against its stack's latest event.
enum Placement {
    /// Equal to the latest, within the dedup windows.
    Retry(Event),
    /// The stack's new latest status.
    Latest,
    /// Older than the latest in the stack's lifecycle: history only.
    Late,
}

/// The reply: `stored` or `duplicate`, the event's id, and whether it sets the stack's status
/// (the stored event's, for a duplicate).
fn accepted(outcome: PutOutcome, event: &Event) -> Response<Body> {
    let status = match outcome {
        PutOutcome::Stored => "stored",
        PutOutcome::Duplicate => "duplicate",
    };
    tracing::info!(
        source = "stack",
        outcome = status,
        event_id = %event.event_id,
        stack = %event.subject,
        sets_status = event.sets_state,
        "stack hook accepted"
    );
    let response = json_response(
        StatusCode::OK,
        &json!({"status": status, "event_id": event.event_id, "sets_status": event.sets_state}),
    );
    match outcome {
        PutOutcome::Stored => response,
        PutOutcome::Duplicate => hub_core::metrics::Outcome::Duplicate.mark(response),
    }
}
