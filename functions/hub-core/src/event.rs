//! The event model: one verified callback, as it is stored.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Who sent the callback. The string forms are the stored `source` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Dingtalk,
    S3,
    Stack,
    Mns,
    Tsuru,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Dingtalk,
        Source::S3,
        Source::Stack,
        Source::Mns,
        Source::Tsuru,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dingtalk => "dingtalk",
            Source::S3 => "s3",
            Source::Stack => "stack",
            Source::Mns => "mns",
            Source::Tsuru => "tsuru",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source {0:?}")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownSource(s.to_owned()))
    }
}

/// One distinct event. `(source, event_id)` is unique: a second put of the same pair is a duplicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub source: Source,
    /// The idempotency key: the sender's own id where it has one, otherwise a hash of the verified content.
    pub event_id: String,
    pub event_type: String,
    /// What the event is about: the key of the subject history.
    pub subject: String,
    /// Another name of the subject that lookups accept (a stack id beside the stack name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_alias: Option<String>,
    /// Whether this event sets the subject's current state. Events that are history only (a
    /// CloudFormation resource event beside its stack) are listed but never the "latest" state.
    pub sets_state: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// The verified, decoded event as a JSON document.
    pub payload: String,
    /// Unix seconds after which the store may delete the event (DynamoDB TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Event {
    pub fn new(
        source: Source,
        event_id: impl Into<String>,
        event_type: impl Into<String>,
        subject: impl Into<String>,
        payload: impl Into<String>,
        received_at: DateTime<Utc>,
    ) -> Self {
        Event {
            source,
            event_id: event_id.into(),
            event_type: event_type.into(),
            subject: subject.into(),
            subject_alias: None,
            sets_state: true,
            occurred_at: None,
            received_at,
            payload: payload.into(),
            expires_at: None,
        }
    }

    pub fn occurred_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.occurred_at = at;
        self
    }

    pub fn alias(mut self, alias: Option<String>) -> Self {
        self.subject_alias = alias.filter(|a| !a.is_empty() && *a != self.subject);
        self
    }

    pub fn history_only(mut self) -> Self {
        self.sets_state = false;
        self
    }

    /// Applies the retention policy: `None` or `Some(0)` keeps the event forever.
    pub fn retained_for_days(mut self, days: Option<u32>) -> Self {
        self.expires_at = days
            .filter(|d| *d > 0)
            .map(|d| self.received_at.timestamp() + i64::from(d) * 86_400);
        self
    }

    /// The time that orders a subject's history: the sender's time where it gives one.
    pub fn event_time(&self) -> DateTime<Utc> {
        self.occurred_at.unwrap_or(self.received_at)
    }

    /// Sort key shared by every index: fixed-width UTC time, then the id to break ties.
    pub fn order_key(&self) -> String {
        format!("{}#{}", format_time(self.event_time()), self.event_id)
    }
}

/// RFC 3339 with millisecond precision and a `Z` suffix: fixed width, so it sorts as text.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(is_writable)
}

/// Time from Unix epoch milliseconds, as some senders give it. Only years 0000 to 9999 are accepted:
/// RFC 3339 cannot write others, and a stored time that cannot be read back would break every
/// later read of the item.
pub fn time_from_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(millis).filter(is_writable)
}

/// Whether a time has a four-digit year, as RFC 3339 (and so every stored time) needs.
pub fn is_writable(at: &DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (0..=9999).contains(&at.year())
}

/// A content-derived idempotency key, for senders that give no id of their own.
pub fn content_id(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefix each part so that ("ab","c") and ("a","bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn source_round_trips_through_its_stored_form() {
        for source in Source::ALL {
            assert_eq!(source.as_str().parse::<Source>().unwrap(), source);
        }
        assert!("sqs".parse::<Source>().is_err());
    }

    #[test]
    fn order_key_sorts_chronologically_as_text() {
        let early = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let late = early + chrono::Duration::milliseconds(7);
        let a = Event::new(Source::Stack, "z", "T", "s", "{}", early);
        let b = Event::new(Source::Stack, "a", "T", "s", "{}", late);
        assert!(a.order_key() < b.order_key());
        assert_eq!(a.order_key(), "2024-01-02T03:04:05.000Z#z");
    }

    #[test]
    fn occurred_at_orders_before_received_at() {
        let received = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
        let occurred = Utc.with_ymd_and_hms(2023, 12, 31, 0, 0, 0).unwrap();
        let e = Event::new(Source::Mns, "id", "T", "s", "{}", received).occurred_at(Some(occurred));
        assert_eq!(e.event_time(), occurred);
    }

    #[test]
    fn retention_sets_expiry_only_for_positive_days() {
        let received = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let base = Event::new(Source::S3, "id", "T", "s", "{}", received);
        assert_eq!(base.clone().retained_for_days(None).expires_at, None);
        assert_eq!(base.clone().retained_for_days(Some(0)).expires_at, None);
        assert_eq!(
            base.retained_for_days(Some(2)).expires_at,
            Some(received.timestamp() + 2 * 86_400)
        );
    }

    #[test]
    fn alias_equal_to_subject_is_dropped() {
        let now = Utc::now();
        let e = Event::new(Source::Stack, "id", "T", "name", "{}", now).alias(Some("name".into()));
        assert_eq!(e.subject_alias, None);
    }

    #[test]
    fn times_past_year_9999_are_refused() {
        assert!(
            time_from_millis(253_402_300_799_999).is_some(),
            "9999-12-31"
        );
        assert_eq!(time_from_millis(253_402_300_800_000), None, "year 10000");
        assert_eq!(time_from_millis(i64::MAX), None);
        assert_eq!(time_from_millis(-62_167_219_200_001), None, "before year 0");
        assert!(time_from_millis(0).is_some());
    }

    #[test]
    fn content_id_separates_parts() {
        assert_ne!(content_id(&[b"ab", b"c"]), content_id(&[b"a", b"bc"]));
        assert_eq!(content_id(&[b"x"]), content_id(&[b"x"]));
        assert_eq!(content_id(&[b"x"]).len(), 64);
    }
}
