//! Which subscriptions an event goes to: Tsuru's rules (`docs/protocols.md` §5.2), exactly,
//! with `sources` as one list more.
//!
//! A subscription matches an event iff it is enabled, each of its lists (`target_types`,
//! `target_values`, `kind_types`, `kind_names`, `sources`) is empty or shares an entry with the
//! event's, and the outcome fits: `error_only` needs a failed event (`Error` not empty),
//! `success_only` a successful one, and both together match nothing. The event's target types
//! and values include those of its `ExtraTargets`, each matched on its own (not as pairs). Its
//! kind names include every dotted prefix of its kind name: `app.update.env.set` offers `app`,
//! `app.update`, `app.update.env` and itself, while `app.upd` matches nothing.

use crate::model::{EventFilter, Subscription};
use crate::view::EventView;

/// The event's side of the comparison, computed once per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKeys<'a> {
    pub source: &'a str,
    pub target_types: Vec<&'a str>,
    pub target_values: Vec<&'a str>,
    pub kind_type: &'a str,
    pub kind_names: Vec<&'a str>,
    pub failed: bool,
}

impl<'a> EventKeys<'a> {
    pub fn of(view: &'a EventView) -> EventKeys<'a> {
        let targets = std::iter::once(&view.target)
            .chain(view.extra_targets.iter().map(|extra| &extra.target));
        EventKeys {
            source: &view.source,
            target_types: targets.clone().map(|t| t.target_type.as_str()).collect(),
            target_values: targets.map(|t| t.value.as_str()).collect(),
            kind_type: &view.kind.kind_type,
            kind_names: kind_name_prefixes(&view.kind.name),
            failed: view.failed(),
        }
    }
}

/// Every dotted prefix of a kind name, then the name itself: `a.b.c` gives `a`, `a.b`, `a.b.c`.
pub fn kind_name_prefixes(name: &str) -> Vec<&str> {
    name.match_indices('.')
        .map(|(dot, _)| &name[..dot])
        .filter(|prefix| !prefix.is_empty())
        .chain(std::iter::once(name))
        .collect()
}

fn list_matches(wanted: &[String], offered: &[&str]) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| offered.contains(&w.as_str()))
}

/// The filter alone, without the subscription's `disabled` flag.
pub fn filter_matches(filter: &EventFilter, keys: &EventKeys<'_>) -> bool {
    let outcome_fits = if keys.failed {
        !filter.success_only
    } else {
        !filter.error_only
    };
    outcome_fits
        && list_matches(&filter.sources, &[keys.source])
        && list_matches(&filter.kind_types, &[keys.kind_type])
        && list_matches(&filter.kind_names, &keys.kind_names)
        && list_matches(&filter.target_types, &keys.target_types)
        && list_matches(&filter.target_values, &keys.target_values)
}

pub fn matches(subscription: &Subscription, view: &EventView) -> bool {
    !subscription.disabled && filter_matches(&subscription.event_filter, &EventKeys::of(view))
}

/// The subscriptions an event goes to, in the order given.
pub fn matching<'s>(
    subscriptions: impl IntoIterator<Item = &'s Subscription>,
    view: &EventView,
) -> Vec<&'s Subscription> {
    let keys = EventKeys::of(view);
    subscriptions
        .into_iter()
        .filter(|s| !s.disabled && filter_matches(&s.event_filter, &keys))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{ExtraTarget, Kind, Target};
    use serde_json::json;

    fn sub(name: &str, filter: serde_json::Value) -> Subscription {
        serde_json::from_value(
            json!({"name": name, "url": "https://example.com", "event_filter": filter}),
        )
        .unwrap()
    }

    fn event(
        source: &str,
        kind: (&str, &str),
        target: (&str, &str),
        extras: &[(&str, &str)],
        error: &str,
    ) -> EventView {
        EventView {
            id: "id".into(),
            source: source.into(),
            kind: Kind {
                kind_type: kind.0.into(),
                name: kind.1.into(),
            },
            target: Target::new(target.0, target.1),
            extra_targets: extras
                .iter()
                .map(|(t, v)| ExtraTarget {
                    target: Target::new(*t, *v),
                    lock: false,
                })
                .collect(),
            error: error.into(),
            start_time: String::new(),
            end_time: String::new(),
            received_at: String::new(),
            payload: json!({}),
        }
    }

    #[test]
    fn prefixes_of_kind_names() {
        assert_eq!(
            kind_name_prefixes("app.update.env.set"),
            ["app", "app.update", "app.update.env", "app.update.env.set"]
        );
        assert_eq!(kind_name_prefixes("healer"), ["healer"]);
        assert_eq!(kind_name_prefixes(".a"), [".a"]);
        assert_eq!(kind_name_prefixes(""), [""]);
    }

    /// Subscriptions × events, with the expected matching set per event (after Tsuru's
    /// `TestFindByEvent`, plus sources, outcomes and disabled subscriptions).
    #[test]
    fn matching_table() {
        let subs = vec![
            sub("all", json!({})),
            sub("app-update", json!({"kind_names": ["app.update"]})),
            sub("app-upd", json!({"kind_names": ["app.upd"]})),
            sub(
                "myapp-errors",
                json!({"target_values": ["myapp"], "error_only": true}),
            ),
            sub(
                "pool-or-node",
                json!({"target_types": ["pool", "node"], "success_only": true}),
            ),
            sub(
                "stack-failed",
                json!({"sources": ["stack"], "error_only": true}),
            ),
            sub(
                "s3-created",
                json!({"kind_names": ["s3.ObjectCreated"], "target_values": ["photos"]}),
            ),
            sub(
                "internal",
                json!({"kind_types": ["internal"], "target_types": ["app"]}),
            ),
            sub(
                "both-outcomes",
                json!({"error_only": true, "success_only": true}),
            ),
            {
                let mut disabled = sub("disabled", json!({}));
                disabled.disabled = true;
                disabled
            },
            sub(
                "mixed-pair",
                json!({"target_types": ["pool"], "target_values": ["myapp"]}),
            ),
        ];
        let cases: Vec<(EventView, Vec<&str>)> = vec![
            (
                event(
                    "tsuru",
                    ("permission", "app.update.env.set"),
                    ("app", "myapp"),
                    &[("pool", "prod")],
                    "",
                ),
                vec!["all", "app-update", "pool-or-node", "mixed-pair"],
            ),
            (
                event(
                    "tsuru",
                    ("permission", "app.update.env.set"),
                    ("app", "myapp"),
                    &[],
                    "boom",
                ),
                vec!["all", "app-update", "myapp-errors"],
            ),
            (
                event(
                    "tsuru",
                    ("internal", "healer"),
                    ("node", "n1"),
                    &[("app", "other")],
                    "",
                ),
                vec!["all", "pool-or-node", "internal"],
            ),
            (
                event(
                    "stack",
                    ("stack", "stack.UPDATE_ROLLBACK_COMPLETE"),
                    ("stack", "web"),
                    &[("stack-id", "arn:1")],
                    "rolled back",
                ),
                vec!["all", "stack-failed"],
            ),
            (
                event(
                    "stack",
                    ("stack", "stack.UPDATE_COMPLETE"),
                    ("stack", "web"),
                    &[],
                    "",
                ),
                vec!["all"],
            ),
            (
                event(
                    "s3",
                    ("s3", "s3.ObjectCreated.Put"),
                    ("s3-object", "photos/cat.jpg"),
                    &[("s3-bucket", "photos")],
                    "",
                ),
                vec!["all", "s3-created"],
            ),
            (
                event(
                    "s3",
                    ("s3", "s3.ObjectRemoved.Delete"),
                    ("s3-object", "photos/cat.jpg"),
                    &[("s3-bucket", "photos")],
                    "",
                ),
                vec!["all"],
            ),
            (
                event("tsuru", ("permission", "app.upd"), ("app", "x"), &[], ""),
                vec!["all", "app-upd"],
            ),
        ];
        for (view, expected) in &cases {
            let got: Vec<&str> = matching(&subs, view)
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(&got, expected, "event {} {:?}", view.kind.name, view.target);
            for s in &subs {
                assert_eq!(
                    matches(s, view),
                    expected.contains(&s.name.as_str()),
                    "{}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn event_keys_gather_extra_targets_and_prefixes() {
        let view = event(
            "tsuru",
            ("permission", "a.b"),
            ("app", "x"),
            &[("pool", "p")],
            "e",
        );
        let keys = EventKeys::of(&view);
        assert_eq!(keys.target_types, ["app", "pool"]);
        assert_eq!(keys.target_values, ["x", "p"]);
        assert_eq!(keys.kind_names, ["a", "a.b"]);
        assert!(keys.failed);
    }
}
