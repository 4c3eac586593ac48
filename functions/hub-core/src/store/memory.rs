//! An in-memory store for unit tests. It follows the same contract as the real stores, and it can
//! be switched to "unavailable" to test how handlers answer an outage.

use super::{
    EventLookup, EventWriter, LatestState, Page, PageRequest, PutOutcome, RecentEvents,
    SourceTimeline, StoreError, SubjectHistory, TimeRange,
};
use crate::event::{format_time, Event, Source};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default, Debug)]
pub struct MemoryStore {
    events: Mutex<Vec<Event>>,
    unavailable: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    pub fn all(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("memory store switched off".into()))
        } else {
            Ok(())
        }
    }

    /// Newest first, by the same order key as the real stores.
    fn sorted(&self, keep: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut events: Vec<Event> = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| keep(e))
            .cloned()
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.order_key()));
        events
    }
}

fn paginate(events: Vec<Event>, page: &PageRequest) -> Result<Page, StoreError> {
    let start = match &page.cursor {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| StoreError::BadCursor)?,
    };
    let limit = page.effective_limit() as usize;
    let end = (start + limit).min(events.len());
    let next = (end < events.len()).then(|| end.to_string());
    Ok(Page {
        events: events
            .get(start..end)
            .map(<[Event]>::to_vec)
            .unwrap_or_default(),
        next,
    })
}

impl EventWriter for MemoryStore {
    async fn put_event(&self, event: &Event) -> Result<PutOutcome, StoreError> {
        self.check()?;
        super::check_event_size(event)?;
        let mut events = self.events.lock().unwrap();
        if events
            .iter()
            .any(|e| e.source == event.source && e.event_id == event.event_id)
        {
            return Ok(PutOutcome::Duplicate);
        }
        events.push(event.clone());
        Ok(PutOutcome::Stored)
    }
}

impl EventLookup for MemoryStore {
    async fn get_event(&self, source: Source, event_id: &str) -> Result<Option<Event>, StoreError> {
        self.check()?;
        Ok(self
            .events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.source == source && e.event_id == event_id)
            .cloned())
    }
}

impl SubjectHistory for MemoryStore {
    async fn events_about(
        &self,
        source: Source,
        subject: &str,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.check()?;
        paginate(
            self.sorted(|e| e.source == source && e.subject == subject),
            page,
        )
    }
}

impl LatestState for MemoryStore {
    async fn latest_about(
        &self,
        source: Source,
        subject: &str,
    ) -> Result<Option<Event>, StoreError> {
        self.latest_with_id_prefix(source, subject, "").await
    }

    async fn latest_with_id_prefix(
        &self,
        source: Source,
        subject: &str,
        id_prefix: &str,
    ) -> Result<Option<Event>, StoreError> {
        self.check()?;
        Ok(self
            .sorted(|e| {
                e.source == source
                    && e.subject == subject
                    && e.sets_state
                    && e.event_id.starts_with(id_prefix)
            })
            .into_iter()
            .next())
    }

    async fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> Result<Option<String>, StoreError> {
        self.check()?;
        Ok(self
            .sorted(|e| e.source == source && e.subject_alias.as_deref() == Some(alias))
            .into_iter()
            .next()
            .map(|e| e.subject))
    }
}

impl MemoryStore {
    /// Newest first, in `[from, to)` by order key, as the real stores compare bare times.
    fn in_range(&self, source: Source, range: TimeRange) -> Vec<Event> {
        let (low, high) = (format_time(range.from), format_time(range.to));
        self.sorted(|e| {
            let key = e.order_key();
            e.source == source && key >= low && key <= high
        })
    }
}

impl RecentEvents for MemoryStore {
    async fn events_newest_first(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.check()?;
        paginate(self.in_range(source, range), page)
    }

    async fn count_between(&self, source: Source, range: TimeRange) -> Result<u64, StoreError> {
        self.check()?;
        Ok(self.in_range(source, range).len() as u64)
    }
}

impl SourceTimeline for MemoryStore {
    async fn events_between(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.check()?;
        let (low, high) = (format_time(range.from), format_time(range.to));
        let mut events = self.sorted(|e| {
            let key = e.order_key();
            e.source == source && key >= low && key <= high
        });
        events.reverse();
        paginate(events, page)
    }
}
