//! Retention applied by the store, not by each handler: every event written through
//! [`Retained`] gets `expires_at` from `EVENT_TTL_DAYS` (DynamoDB's TTL attribute; the SQLite
//! store purges on it).

use super::{
    EventLookup, EventWriter, LatestState, Page, PageRequest, PutOutcome, RecentEvents,
    SourceTimeline, StoreError, SubjectHistory, TimeRange,
};
use crate::event::{Event, Source};

#[derive(Clone, Debug)]
pub struct Retained<S> {
    inner: S,
    ttl_days: Option<u32>,
}

impl<S> Retained<S> {
    /// `ttl_days` of `None` or `Some(0)` keeps events forever.
    pub fn new(inner: S, ttl_days: Option<u32>) -> Self {
        Retained {
            inner,
            ttl_days: ttl_days.filter(|d| *d > 0),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: EventWriter> EventWriter for Retained<S> {
    async fn put_event(&self, event: &Event) -> Result<PutOutcome, StoreError> {
        match self.ttl_days {
            Some(days) if event.expires_at.is_none() => {
                let retained = event.clone().retained_for_days(Some(days));
                self.inner.put_event(&retained).await
            }
            _ => self.inner.put_event(event).await,
        }
    }
}

impl<S: EventLookup> EventLookup for Retained<S> {
    async fn get_event(&self, source: Source, event_id: &str) -> Result<Option<Event>, StoreError> {
        self.inner.get_event(source, event_id).await
    }
}

impl<S: SubjectHistory> SubjectHistory for Retained<S> {
    async fn events_about(
        &self,
        source: Source,
        subject: &str,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.inner.events_about(source, subject, page).await
    }
}

impl<S: LatestState> LatestState for Retained<S> {
    async fn latest_about(
        &self,
        source: Source,
        subject: &str,
    ) -> Result<Option<Event>, StoreError> {
        self.inner.latest_about(source, subject).await
    }

    async fn latest_with_id_prefix(
        &self,
        source: Source,
        subject: &str,
        id_prefix: &str,
    ) -> Result<Option<Event>, StoreError> {
        self.inner
            .latest_with_id_prefix(source, subject, id_prefix)
            .await
    }

    async fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.subject_for_alias(source, alias).await
    }
}

impl<S: SourceTimeline> SourceTimeline for Retained<S> {
    async fn events_between(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.inner.events_between(source, range, page).await
    }
}

impl<S: RecentEvents> RecentEvents for Retained<S> {
    async fn events_newest_first(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.inner.events_newest_first(source, range, page).await
    }

    async fn count_between(&self, source: Source, range: TimeRange) -> Result<u64, StoreError> {
        self.inner.count_between(source, range).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use chrono::{TimeZone, Utc};

    fn event() -> Event {
        let at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        Event::new(Source::Stack, "id", "T", "s", "{}", at)
    }

    #[tokio::test]
    async fn every_write_gets_the_expiry_and_none_without_retention() {
        let kept = Retained::new(MemoryStore::new(), Some(2));
        kept.put_event(&event()).await.unwrap();
        let stored = &kept.inner().all()[0];
        assert_eq!(
            stored.expires_at,
            Some(event().received_at.timestamp() + 2 * 86_400)
        );
        for days in [None, Some(0)] {
            let forever = Retained::new(MemoryStore::new(), days);
            forever.put_event(&event()).await.unwrap();
            assert_eq!(forever.inner().all()[0].expires_at, None);
        }
    }
}
