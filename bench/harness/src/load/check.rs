//! The end-of-run check, from the database alone: every acknowledged event stored exactly
//! once, nothing stored from a tampered or oversize request, nothing stored that no request
//! explains.

use crate::requests::{markers_in, Sender};
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// One stored event, as the `events` table of `sqlite-store` holds it.
#[derive(Debug, Clone)]
pub struct Row {
    pub source: String,
    pub event_id: String,
    pub payload: String,
}

/// Every stored event, read through a read-only connection (the server may still run: WAL
/// readers do not block its writer).
pub fn read_rows(db: &Path) -> Result<Vec<Row>, String> {
    let connection = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: {e}", db.display()))?;
    let mut statement = connection
        .prepare("SELECT source, event_id, payload FROM events")
        .map_err(|e| e.to_string())?;
    let rows = statement
        .query_map([], |row| {
            Ok(Row {
                source: row.get(0)?,
                event_id: row.get(1)?,
                payload: row.get(2)?,
            })
        })
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(rows)
}

/// What was sent and answered, per event number.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Events sent in their valid form (new or exact duplicate), and by which sender.
    pub valid: HashMap<u64, Sender>,
    /// Events for which some valid request was answered 2xx.
    pub acked: HashSet<u64>,
    /// Events only ever sent tampered or oversize: none may be stored.
    pub forbidden: HashMap<u64, Sender>,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub rows: usize,
    pub acked: usize,
    /// Acknowledged and not stored.
    pub lost: Vec<u64>,
    /// Stored more than once.
    pub duplicated: Vec<u64>,
    /// Stored from a tampered or oversize request.
    pub forbidden_stored: Vec<u64>,
    /// Stored with no marker, an unknown one, or under another sender's source.
    pub unexplained: Vec<String>,
    /// Sent validly, never acknowledged (failed or unanswered), stored anyway: allowed (the
    /// store committed before the answer was lost).
    pub stored_unacked: usize,
}

impl Verdict {
    pub fn of(ledger: &Ledger, rows: &[Row]) -> Verdict {
        let mut verdict = Verdict {
            rows: rows.len(),
            acked: ledger.acked.len(),
            ..Verdict::default()
        };
        let mut stored: BTreeMap<u64, usize> = BTreeMap::new();
        for row in rows {
            let markers: HashSet<u64> = markers_in(&row.payload).into_iter().collect();
            if markers.len() != 1 {
                verdict.unexplained.push(format!(
                    "{}/{} ({} markers)",
                    row.source,
                    row.event_id,
                    markers.len()
                ));
                continue;
            }
            let n = *markers.iter().next().expect("one");
            let sender = ledger.valid.get(&n).or_else(|| ledger.forbidden.get(&n));
            match sender {
                Some(sender) if sender.source() == row.source => {
                    *stored.entry(n).or_default() += 1;
                }
                _ => verdict.unexplained.push(format!(
                    "{}/{} (event {n}, sent as {:?})",
                    row.source, row.event_id, sender
                )),
            }
        }
        for (&n, &count) in &stored {
            if ledger.forbidden.contains_key(&n) {
                verdict.forbidden_stored.push(n);
            } else if count > 1 {
                verdict.duplicated.push(n);
            }
            if !ledger.acked.contains(&n) && ledger.valid.contains_key(&n) {
                verdict.stored_unacked += 1;
            }
        }
        verdict.lost = ledger
            .acked
            .iter()
            .filter(|n| !stored.contains_key(n))
            .copied()
            .collect();
        verdict.lost.sort_unstable();
        verdict
    }

    /// The failed properties, empty when the run holds.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let list = |items: &[u64]| {
            items
                .iter()
                .take(10)
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.lost.is_empty() {
            out.push(format!(
                "{} acknowledged events not stored (events {}…)",
                self.lost.len(),
                list(&self.lost)
            ));
        }
        if !self.duplicated.is_empty() {
            out.push(format!(
                "{} events stored more than once (events {}…)",
                self.duplicated.len(),
                list(&self.duplicated)
            ));
        }
        if !self.forbidden_stored.is_empty() {
            out.push(format!(
                "{} tampered or oversize requests stored (events {}…)",
                self.forbidden_stored.len(),
                list(&self.forbidden_stored)
            ));
        }
        if !self.unexplained.is_empty() {
            out.push(format!(
                "{} stored items no request explains: {}",
                self.unexplained.len(),
                self.unexplained
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::marker;

    fn row(source: &str, id: &str, n: u64) -> Row {
        Row {
            source: source.into(),
            event_id: id.into(),
            payload: format!("{{\"name\":\"{}\"}}", marker(n)),
        }
    }

    fn ledger() -> Ledger {
        let mut ledger = Ledger::default();
        ledger.valid.insert(1, Sender::Tsuru);
        ledger.valid.insert(2, Sender::Mns);
        ledger.valid.insert(3, Sender::Tsuru);
        ledger.acked.extend([1, 2]);
        ledger.forbidden.insert(4, Sender::Tsuru);
        ledger
    }

    #[test]
    fn a_clean_run_has_no_violation() {
        let rows = [
            row("tsuru", "a", 1),
            row("mns", "b", 2),
            row("tsuru", "c", 3),
        ];
        let verdict = Verdict::of(&ledger(), &rows);
        assert!(
            verdict.violations().is_empty(),
            "{:?}",
            verdict.violations()
        );
        assert_eq!(verdict.stored_unacked, 1);
    }

    #[test]
    fn a_lost_event_fails() {
        let verdict = Verdict::of(&ledger(), &[row("tsuru", "a", 1)]);
        assert_eq!(verdict.lost, vec![2]);
        assert_eq!(verdict.violations().len(), 1);
    }

    #[test]
    fn a_second_item_fails() {
        let rows = [
            row("tsuru", "a", 1),
            row("tsuru", "a2", 1),
            row("mns", "b", 2),
        ];
        assert_eq!(Verdict::of(&ledger(), &rows).duplicated, vec![1]);
    }

    #[test]
    fn a_stored_tampered_request_fails() {
        let rows = [
            row("tsuru", "a", 1),
            row("mns", "b", 2),
            row("tsuru", "d", 4),
        ];
        assert_eq!(Verdict::of(&ledger(), &rows).forbidden_stored, vec![4]);
    }

    #[test]
    fn an_item_no_request_explains_fails() {
        let mut unmarked = row("tsuru", "z", 1);
        unmarked.payload = "{}".into();
        let rows = [
            row("tsuru", "a", 1),
            row("mns", "b", 2),
            unmarked,
            row("s3", "y", 3),
        ];
        assert_eq!(Verdict::of(&ledger(), &rows).unexplained.len(), 2);
    }
}
