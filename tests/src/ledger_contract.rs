//! The mirror ledger's contract: what every `MirrorLedger` must do (DynamoDB, SQLite, memory),
//! as one suite. The ledger belongs to s3-notification; its suite lives here, beside the moto
//! harness that the DynamoDB ledger needs.

use hub_core::event::Source;
use hub_core::store::{EventStore, PageRequest};
use s3_notification::ledger::{ClaimOutcome, LedgerClaim, MirrorLedger};

/// Runs every ledger check against `ledger`, which must be empty, kept beside `events`.
pub async fn run_all<L: MirrorLedger, S: EventStore>(ledger: &L, events: &S) {
    ledger_applies_changes_in_sequencer_order(ledger, events).await;
    ledger_detects_ties_and_concurrent_claims(ledger).await;
}

fn ledger_claim(object: &str, sequencer: &str, event_id: &str, action: &str) -> LedgerClaim {
    LedgerClaim {
        object: object.into(),
        sequencer: sequencer.into(),
        event_id: event_id.into(),
        action: action.into(),
    }
}

pub async fn ledger_applies_changes_in_sequencer_order<L: MirrorLedger, S: EventStore>(
    store: &L,
    events: &S,
) {
    let object = "bucket/ledger key ü";
    assert_eq!(store.ledger_entry(object).await.unwrap(), None);
    let create = ledger_claim(object, "0001", "create", "copy");
    let delete = ledger_claim(object, "0002", "delete", "delete");
    let fresh = ClaimOutcome::Claimed { tie: false };

    // The newer delete arrives first and is applied.
    assert_eq!(store.claim(&delete).await.unwrap(), fresh);
    // A retry before it was applied claims it again: the first attempt may have failed.
    assert_eq!(store.claim(&delete).await.unwrap(), fresh);
    assert!(store.mark_applied(&delete).await.unwrap());
    let entry = store.ledger_entry(object).await.unwrap().unwrap();
    assert_eq!((entry.sequencer.as_str(), entry.applied), ("0002", true));
    assert_eq!(entry.action, "delete");
    // A retry after it was applied is not redone; the older create must not resurrect.
    assert_eq!(
        store.claim(&delete).await.unwrap(),
        ClaimOutcome::AlreadyApplied
    );
    assert_eq!(
        store.claim(&create).await.unwrap(),
        ClaimOutcome::Superseded
    );
    assert!(!store.mark_applied(&create).await.unwrap());
    // A newer change claims over it; the overtaken claim can no longer be marked applied.
    let recreate = ledger_claim(object, "0003", "recreate", "copy");
    assert_eq!(store.claim(&recreate).await.unwrap(), fresh);
    assert!(!store.mark_applied(&delete).await.unwrap());
    assert!(store.mark_applied(&recreate).await.unwrap());
    // Objects do not share entries.
    assert_eq!(store.ledger_entry("bucket/other").await.unwrap(), None);
    // Nor do the origins of one object: the mirror names token deliveries' entries
    // `token#bucket/key`, so an older sequencer there is not superseded by the signed entry.
    let token = ledger_claim(&format!("token#{object}"), "0001", "token", "copy");
    assert_eq!(store.claim(&token).await.unwrap(), fresh);
    assert!(store.mark_applied(&token).await.unwrap());
    let entry = store.ledger_entry(object).await.unwrap().unwrap();
    assert_eq!(
        (entry.sequencer.as_str(), entry.event_id.as_str()),
        ("0003", "recreate")
    );
    // Ledger entries are not events.
    let page = events
        .events_about(Source::S3, object, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(page.events.is_empty());
}

pub async fn ledger_detects_ties_and_concurrent_claims<L: MirrorLedger>(store: &L) {
    let object = "bucket/tie";
    let first = ledger_claim(object, "0005", "first", "copy");
    let second = ledger_claim(object, "0005", "second", "delete");
    assert_eq!(
        store.claim(&first).await.unwrap(),
        ClaimOutcome::Claimed { tie: false }
    );
    assert!(store.mark_applied(&first).await.unwrap());
    // Same sequencer, another event: the order between them is unknown.
    assert_eq!(
        store.claim(&second).await.unwrap(),
        ClaimOutcome::Claimed { tie: true }
    );

    // Ten concurrent claims of increasing sequencers: whatever the interleaving, the entry ends
    // on the newest, and only the newest can be marked applied.
    let claims: Vec<LedgerClaim> = (10..20)
        .map(|n| ledger_claim("bucket/race", &format!("{n:04}"), &format!("e{n}"), "copy"))
        .collect();
    let outcomes = futures::future::join_all(claims.iter().map(|c| store.claim(c))).await;
    assert!(outcomes.iter().all(|o| o.is_ok()));
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, Ok(ClaimOutcome::Claimed { .. }))));
    let entry = store.ledger_entry("bucket/race").await.unwrap().unwrap();
    assert_eq!(entry.sequencer, "0019");
    for claim in &claims[..9] {
        assert!(!store.mark_applied(claim).await.unwrap());
    }
    assert!(store.mark_applied(&claims[9]).await.unwrap());
}
