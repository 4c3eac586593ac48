//! The chain heads this instance has proved, so that a ROS delivery for a stack it has just seen
//! decides against that head instead of asking the "latest" index first (bench/changes.md,
//! item 13).
//!
//! A remembered head is only ever a starting point, exactly as the index's answer is
//! (`crate::lifecycle`): a new latest status is proved by its insert-once put into the place after
//! the head (the place is taken if another instance has moved the chain on), and a retry or late
//! verdict is taken again after consistent reads along the chain. A stale head therefore costs
//! requests, never a wrong verdict. A head that other instances have moved far on from (the walk
//! from it does not reach the end) is forgotten, and the index asked instead. CloudFormation
//! statuses of the same name are outside the ROS chain and take no part in its decisions
//! (`crate::lifecycle`), so one stored by another instance leaves a remembered head as current
//! as before. The bounds:
//!
//! - Age: a head is forgotten after [`MAX_AGE`], and with `EVENT_TTL_DAYS` one whose event expires
//!   within that time is never remembered, so a head never outlives its place in the table.
//! - Size: only events of at most [`MAX_EVENT_BYTES`] (id, type, name twice, stack id and
//!   payload; a ROS notification is a few hundred bytes), for at most [`MAX_HEADS`] names: all
//!   heads together hold a little over 4 MiB.

use chrono::{DateTime, Duration, Utc};
use hub_core::event::Event;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a proved head is used without asking the index again: ROS sends a stack's
/// notifications of one operation within minutes.
pub const MAX_AGE: Duration = Duration::minutes(5);
/// How many stack names are remembered at once; the oldest is dropped first.
pub const MAX_HEADS: usize = 256;
/// Larger events are not remembered.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

#[derive(Default)]
pub struct ChainHeads {
    heads: Mutex<HashMap<String, Remembered>>,
}

struct Remembered {
    head: Event,
    proved_at: DateTime<Utc>,
}

impl ChainHeads {
    /// The head proved for `stack_name` within [`MAX_AGE`] of `now`.
    pub fn get(&self, stack_name: &str, now: DateTime<Utc>) -> Option<Event> {
        let mut heads = self.lock();
        match heads.get(stack_name) {
            Some(r) if now >= r.proved_at && now - r.proved_at < MAX_AGE => Some(r.head.clone()),
            Some(_) => {
                heads.remove(stack_name);
                None
            }
            None => None,
        }
    }

    /// Remembers `head`, proved at `now` to be the latest event of its name's chain.
    pub fn remember(&self, head: &Event, now: DateTime<Utc>, event_ttl_days: Option<u32>) {
        if remembered_size(head) > MAX_EVENT_BYTES
            || expires_within_max_age(head, now, event_ttl_days)
        {
            self.forget(&head.subject);
            return;
        }
        let mut heads = self.lock();
        if heads.len() >= MAX_HEADS && !heads.contains_key(&head.subject) {
            let oldest = heads
                .iter()
                .min_by_key(|(_, r)| r.proved_at)
                .map(|(name, _)| name.clone());
            if let Some(name) = oldest {
                heads.remove(&name);
            }
        }
        heads.insert(
            head.subject.clone(),
            Remembered {
                head: head.clone(),
                proved_at: now,
            },
        );
    }

    pub fn forget(&self, stack_name: &str) {
        self.lock().remove(stack_name);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        // The map is valid after any panic (every change is one insert or remove).
        self.heads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What an entry holds besides fixed-size fields (the name twice: key and event).
fn remembered_size(head: &Event) -> usize {
    head.payload.len()
        + head.event_id.len()
        + head.event_type.len()
        + 2 * head.subject.len()
        + head.subject_alias.as_ref().map_or(0, String::len)
}

/// Whether the store may delete `head` (DynamoDB TTL, `hub_core::store::Retained`) while it is
/// remembered.
fn expires_within_max_age(head: &Event, now: DateTime<Utc>, event_ttl_days: Option<u32>) -> bool {
    let expires_at = head.expires_at.or_else(|| {
        event_ttl_days.map(|days| (head.received_at + Duration::days(i64::from(days))).timestamp())
    });
    expires_at.is_some_and(|at| at <= (now + MAX_AGE).timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use hub_core::event::Source;

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap()
    }

    fn head(name: &str, received_at: DateTime<Utc>) -> Event {
        Event::new(
            Source::Stack,
            format!("ros-{name}"),
            "UPDATE_COMPLETE",
            name,
            "{}",
            received_at,
        )
    }

    #[test]
    fn a_head_is_used_for_five_minutes_then_forgotten() {
        let heads = ChainHeads::default();
        heads.remember(&head("web", noon()), noon(), None);
        let later = noon() + Duration::seconds(299);
        assert_eq!(heads.get("web", later).unwrap().event_id, "ros-web");
        assert!(heads.get("web", noon() + MAX_AGE).is_none());
        assert!(heads.is_empty(), "an aged head is dropped, not kept");
        // A clock that went backwards does not make a head younger.
        heads.remember(&head("web", noon()), noon(), None);
        assert!(heads.get("web", noon() - Duration::seconds(1)).is_none());
    }

    #[test]
    fn large_events_and_events_about_to_expire_are_not_remembered() {
        let heads = ChainHeads::default();
        let mut large = head("big", noon());
        large.payload = format!("\"{}\"", "x".repeat(MAX_EVENT_BYTES));
        heads.remember(&large, noon(), None);
        assert!(heads.get("big", noon()).is_none());

        // Kept one day: a day-old event would leave the table while remembered.
        let day_old = head("old", noon() - Duration::days(1) + Duration::minutes(4));
        heads.remember(&day_old, noon(), Some(1));
        assert!(heads.get("old", noon()).is_none());
        let fresh = head("fresh", noon());
        heads.remember(&fresh, noon(), Some(1));
        assert!(heads.get("fresh", noon()).is_some());
        // The stored expiry, when the event carries one, is the one that counts.
        let mut expiring = head("expiring", noon());
        expiring.expires_at = Some((noon() + Duration::minutes(1)).timestamp());
        heads.remember(&expiring, noon(), None);
        assert!(heads.get("expiring", noon()).is_none());
    }

    #[test]
    fn at_most_max_heads_names_the_oldest_dropped_first() {
        let heads = ChainHeads::default();
        for n in 0..MAX_HEADS {
            let at = noon() + Duration::milliseconds(n as i64);
            heads.remember(&head(&format!("s{n}"), at), at, None);
        }
        let at = noon() + Duration::seconds(1);
        heads.remember(&head("one-more", at), at, None);
        assert_eq!(heads.len(), MAX_HEADS);
        assert!(heads.get("s0", at).is_none());
        assert!(heads.get("s1", at).is_some());
        assert!(heads.get("one-more", at).is_some());
        // A name already remembered is replaced, never counted twice.
        heads.remember(&head("s1", at), at, None);
        assert_eq!(heads.len(), MAX_HEADS);
    }

    #[test]
    fn a_forgotten_or_replaced_head_is_gone() {
        let heads = ChainHeads::default();
        heads.remember(&head("web", noon()), noon(), None);
        heads.forget("web");
        assert!(heads.get("web", noon()).is_none());
        heads.remember(&head("web", noon()), noon(), None);
        let mut newer = head("web", noon());
        newer.event_id = "ros-next".into();
        heads.remember(&newer, noon(), None);
        assert_eq!(heads.get("web", noon()).unwrap().event_id, "ros-next");
    }
}
