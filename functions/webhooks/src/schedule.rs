//! When to try a delivery again, and what an attempt's outcome means.
//!
//! Eight attempts in all: the first, then retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
//! 10 h (about 27.6 hours end to end), each delay with ±20% jitter so that a receiver coming
//! back up is not hit by every pending delivery at once. A longer `Retry-After` is honoured, up
//! to [`MAX_RETRY_AFTER`]. After the last attempt the delivery is failed and dead-lettered.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The delay before each retry: entry `n` follows attempt `n + 1`.
pub const RETRY_DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// The first attempt and one per retry delay.
pub const MAX_ATTEMPTS: u32 = RETRY_DELAYS.len() as u32 + 1;
/// Each delay is scaled by a factor drawn from `1 ± JITTER`.
pub const JITTER: f64 = 0.2;
/// A receiver asking for more than a day is not planning to come back soon; the schedule's own
/// delays take over again at that point rather than parking the delivery indefinitely.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// A subscription whose deliveries have failed without a single success for this long is
/// disabled.
pub const AUTO_DISABLE_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(5);

/// How long to wait before the next attempt, given the number of attempts already made; `None`
/// once the schedule is exhausted (dead-letter). With no attempt made yet, the answer is now.
pub fn next_delay(
    attempts_made: u32,
    retry_after: Option<Duration>,
    rng: &mut impl RngCore,
) -> Option<Duration> {
    if attempts_made == 0 {
        return Some(Duration::ZERO);
    }
    let base = *RETRY_DELAYS.get(usize::try_from(attempts_made - 1).ok()?)?;
    // A uniform draw in [0, 1) from the top 53 bits, as rand's own f64 sampling does.
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit;
    let jittered = base.mul_f64(factor);
    let asked = retry_after.map(|d| d.min(MAX_RETRY_AFTER));
    Some(asked.map_or(jittered, |asked| asked.max(jittered)))
}

/// `Retry-After`: either delay-seconds or an HTTP-date (IMF-fixdate, or the obsolete RFC 850
/// and asctime forms), as a delay from `now`. A date in the past is no delay; anything else
/// unreadable is ignored.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate rather than fail: they mean "much later".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = DateTime::parse_from_rfc2822(value)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
                .iter()
                .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())
                .map(|naive| naive.and_utc())
        })?;
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

/// What an attempt means for its delivery and its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A 2xx: delivered.
    Delivered,
    /// Any other status, a timeout, a refused or failed connection: try again on schedule.
    Retry,
    /// `410 Gone`: the receiver wants no more; the subscription is disabled.
    Gone,
    /// Failed for a reason a retry cannot change (the body template failed on this event, the
    /// request could not be built): failed now, without retries.
    Failed,
}

/// The verdict on a response status. Redirects are not followed, so a 3xx is a failure.
pub fn classify_status(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        410 => Verdict::Gone,
        _ => Verdict::Retry,
    }
}

/// Whether a subscription failing since `failing_since` has failed long enough to be disabled.
pub fn failing_too_long(failing_since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - failing_since >= AUTO_DISABLE_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Always the same raw value: 0 gives the low end of the jitter range, u64::MAX the high.
    struct Fixed(u64);

    impl RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(self.0 as u8);
        }
    }

    #[test]
    fn eight_attempts_then_exhausted() {
        assert_eq!(MAX_ATTEMPTS, 8);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(next_delay(0, None, &mut rng), Some(Duration::ZERO));
        for made in 1..=7 {
            assert!(next_delay(made, None, &mut rng).is_some(), "after {made}");
        }
        assert_eq!(next_delay(8, None, &mut rng), None);
        assert_eq!(next_delay(9, Some(Duration::from_secs(1)), &mut rng), None);
        assert_eq!(next_delay(u32::MAX, None, &mut rng), None);
    }

    #[test]
    fn jitter_spans_plus_minus_twenty_percent_of_each_delay() {
        let expected_secs = [5, 300, 1800, 7200, 18000, 36000, 36000];
        for (index, secs) in expected_secs.into_iter().enumerate() {
            let made = index as u32 + 1;
            let low = next_delay(made, None, &mut Fixed(0)).unwrap();
            let high = next_delay(made, None, &mut Fixed(u64::MAX)).unwrap();
            let mid = next_delay(made, None, &mut Fixed(1 << 63)).unwrap();
            let base = Duration::from_secs(secs);
            assert_eq!(low, base.mul_f64(0.8), "after attempt {made}");
            assert!(high <= base.mul_f64(1.2) && high > base.mul_f64(1.1999));
            assert_eq!(mid, base);
        }
    }

    #[test]
    fn random_jitter_stays_in_range_and_varies() {
        let mut rng = StdRng::seed_from_u64(42);
        let delays: Vec<Duration> = (0..200)
            .map(|_| next_delay(2, None, &mut rng).unwrap())
            .collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_secs(240) && *d < Duration::from_secs(360)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100);
    }

    #[test]
    fn longer_retry_after_wins_and_is_capped() {
        let mut rng = Fixed(1 << 63);
        // Shorter than the schedule: the schedule wins.
        assert_eq!(
            next_delay(2, Some(Duration::from_secs(10)), &mut rng),
            Some(Duration::from_secs(300))
        );
        // Longer: honoured.
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(3600)), &mut rng),
            Some(Duration::from_secs(3600))
        );
        // Absurd: capped at a day.
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(10 * 86_400)), &mut rng),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 08:28:00 2015", now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-5", "1.5", "soon", "Wed, 99 Oct 2015 07:30:00 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        for (status, verdict) in [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (299, Verdict::Delivered),
            (301, Verdict::Retry),
            (302, Verdict::Retry),
            (400, Verdict::Retry),
            (404, Verdict::Retry),
            (410, Verdict::Gone),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
            (100, Verdict::Retry),
        ] {
            assert_eq!(classify_status(status), verdict, "{status}");
        }
    }

    #[test]
    fn five_days_of_failure_is_too_long() {
        let since = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        assert!(!failing_too_long(
            since,
            since + chrono::TimeDelta::days(5) - chrono::TimeDelta::seconds(1)
        ));
        assert!(failing_too_long(since, since + chrono::TimeDelta::days(5)));
    }
}
