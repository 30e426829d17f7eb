//! Tests for the subscription index: spec examples through the trie, shared round-robin,
//! pruning, and property tests against the reference matcher.

use super::*;
use crate::core::topic::{TopicLimits, matches, validate_filter};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Values are the filter text, so a hit says which subscription matched.
type Index = SubscriptionIndex<u32, String>;

fn index_of(subs: &[(&str, u32)]) -> Index {
    let mut idx = Index::new();
    for &(f, k) in subs {
        assert!(
            validate_filter(f, &TopicLimits::default()).is_ok(),
            "bad test filter {f}"
        );
        idx.insert(f, k, f.to_string());
    }
    idx
}

/// Direct hits as sorted (key, filter) pairs; shared offers are refused.
fn direct(idx: &mut Index, topic: &str) -> Vec<(u32, String)> {
    let mut hits = Vec::new();
    idx.route(topic, |k, v| hits.push((*k, v.clone())), |_, _| false);
    hits.sort();
    hits
}

/// Shared deliveries for one route, every member accepting: (key, filter) sorted.
fn shared(idx: &mut Index, topic: &str) -> Vec<(u32, String)> {
    let mut hits = Vec::new();
    idx.route(
        topic,
        |_, _| {},
        |k, v| {
            hits.push((*k, v.clone()));
            true
        },
    );
    hits.sort();
    hits
}

fn reaches(filter: &str, topic: &str) -> bool {
    !direct(&mut index_of(&[(filter, 1)]), topic).is_empty()
}

#[test]
fn spec_examples_through_the_trie() {
    let cases = [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS", true),
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("a/b", "a//b", false),
        ("été/+", "été/x", true),
        ("+/x", "été/x", true),
        ("ete/x", "été/x", false),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
    ];
    for (f, t, want) in cases {
        assert_eq!(reaches(f, t), want, "{f} vs {t}");
        assert_eq!(matches(f, t), want, "reference matcher: {f} vs {t}");
    }
}

#[test]
fn overlapping_filters_report_once_each() {
    let mut idx = index_of(&[("a/#", 1), ("a/+", 1), ("a/b", 1), ("a/b", 2), ("c", 3)]);
    assert_eq!(idx.len(), 5);
    let want = vec![
        (1, "a/#".into()),
        (1, "a/+".into()),
        (1, "a/b".into()),
        (2, "a/b".into()),
    ];
    assert_eq!(direct(&mut idx, "a/b"), want);
    assert_eq!(direct(&mut idx, "x"), vec![]);
}

#[test]
fn insert_replaces_value_of_same_key_and_filter() {
    let mut idx = SubscriptionIndex::<u32, u8>::new();
    assert_eq!(idx.insert("a/+", 7, 0), None);
    assert_eq!(idx.insert("a/+", 7, 1), Some(0));
    assert_eq!(idx.insert("$share/g/a/+", 7, 2), None);
    assert_eq!(idx.insert("$share/g/a/+", 7, 3), Some(2));
    assert_eq!(idx.len(), 2);
    assert_eq!(idx.get("a/+", &7), Some(&1));
    assert_eq!(idx.get("$share/g/a/+", &7), Some(&3));
    assert_eq!(idx.get("$share/h/a/+", &7), None);
    assert_eq!(idx.get("a/#", &7), None);
}

#[test]
fn remove_returns_value_and_prunes() {
    let mut idx = index_of(&[("a/b/c", 1), ("a/+/#", 2), ("$share/g/a/b/c", 3), ("#", 4)]);
    assert!(idx.node_count() > 0);
    assert_eq!(idx.remove("a/b/c", &2), None, "wrong key");
    assert_eq!(idx.remove("a/b", &1), None, "prefix of a filter");
    assert_eq!(idx.remove("a/b/c/d", &1), None, "longer than any filter");
    assert_eq!(idx.remove("$share/h/a/b/c", &3), None, "other group");
    assert_eq!(idx.remove("a/b/c", &1), Some("a/b/c".into()));
    assert_eq!(idx.remove("a/b/c", &1), None, "already removed");
    assert_eq!(
        shared(&mut idx, "a/b/c"),
        vec![(3, "$share/g/a/b/c".into())]
    );
    assert_eq!(
        idx.remove("$share/g/a/b/c", &3),
        Some("$share/g/a/b/c".into())
    );
    assert_eq!(idx.remove("a/+/#", &2), Some("a/+/#".into()));
    assert_eq!(idx.node_count(), 0);
    assert_eq!(idx.remove("#", &4), Some("#".into()));
    assert!(idx.is_empty());
    assert_eq!(idx.node_count(), 0);
    assert!(idx.root.is_empty());
}

#[test]
fn dollar_topics_and_shared_wildcards() {
    let mut idx = index_of(&[
        ("$share/g/#", 1),
        ("$share/h/+/x", 2),
        ("$share/i/$SYS/#", 3),
    ]);
    assert_eq!(
        shared(&mut idx, "$SYS/x"),
        vec![(3, "$share/i/$SYS/#".into())]
    );
    let want = vec![(1, "$share/g/#".into()), (2, "$share/h/+/x".into())];
    assert_eq!(shared(&mut idx, "a/x"), want);
}

#[test]
fn shared_round_robin_order() {
    let mut idx = index_of(&[("$share/g/t", 1), ("$share/g/t", 2), ("$share/g/t", 3)]);
    let order: Vec<u32> = (0..6)
        .flat_map(|_| shared(&mut idx, "t"))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(order, vec![1, 2, 3, 1, 2, 3]);
}

/// Routes once with `accept` deciding; returns every offer made, in order.
fn offers(idx: &mut Index, topic: &str, accept: impl Fn(u32) -> bool) -> Vec<u32> {
    let mut seen = Vec::new();
    idx.route(
        topic,
        |_, _| {},
        |k, _| {
            seen.push(*k);
            accept(*k)
        },
    );
    seen
}

#[test]
fn shared_cursor_moves_past_the_member_that_accepted() {
    let mut idx = index_of(&[("$share/g/t", 1), ("$share/g/t", 2), ("$share/g/t", 3)]);
    // 1 refuses, 2 accepts: the next message starts at 3.
    assert_eq!(offers(&mut idx, "t", |k| k == 2), vec![1, 2]);
    assert_eq!(offers(&mut idx, "t", |_| true), vec![3]);
    // Nobody accepts: everyone was offered once, and the cursor still moves on by one.
    assert_eq!(offers(&mut idx, "t", |_| false), vec![1, 2, 3]);
    assert_eq!(offers(&mut idx, "t", |_| false), vec![2, 3, 1]);
    assert_eq!(offers(&mut idx, "t", |_| true), vec![3]);
}

#[test]
fn removing_a_member_keeps_the_rotation() {
    let subs = [
        ("$share/g/t", 1),
        ("$share/g/t", 2),
        ("$share/g/t", 3),
        ("$share/g/t", 4),
    ];
    let mut idx = index_of(&subs);
    assert_eq!(offers(&mut idx, "t", |_| true), vec![1]);
    // The turn is 2's. Removing a member before it does not skip 2.
    idx.remove("$share/g/t", &1);
    assert_eq!(offers(&mut idx, "t", |_| true), vec![2]);
    // The turn is 3's. Removing 3 hands it to the next member, 4.
    idx.remove("$share/g/t", &3);
    assert_eq!(offers(&mut idx, "t", |_| true), vec![4]);
    // A newcomer joins the end of the rotation.
    idx.insert("$share/g/t", 9, "$share/g/t".into());
    assert_eq!(offers(&mut idx, "t", |_| true), vec![2]);
    assert_eq!(offers(&mut idx, "t", |_| true), vec![4]);
    // The turn is 9's, the last member. Removing it wraps to the first.
    idx.remove("$share/g/t", &9);
    assert_eq!(offers(&mut idx, "t", |_| true), vec![2]);
    assert_eq!(offers(&mut idx, "t", |_| true), vec![4]);
}

#[test]
fn a_group_is_its_name_and_filter() {
    // Same name, different filters: two groups. Same filter, different names: two groups.
    let subs = [
        ("$share/g/a/+", 1),
        ("$share/g/a/#", 2),
        ("$share/h/a/+", 3),
        ("a/+", 4),
    ];
    let mut idx = index_of(&subs);
    let want: Vec<(u32, String)> = vec![
        (1, "$share/g/a/+".into()),
        (2, "$share/g/a/#".into()),
        (3, "$share/h/a/+".into()),
    ];
    assert_eq!(shared(&mut idx, "a/b"), want);
    // Shared subscriptions never show up as direct ones, and vice versa.
    assert_eq!(direct(&mut idx, "a/b"), vec![(4, "a/+".into())]);
}

#[test]
fn a_key_can_be_direct_and_shared() {
    let mut idx = index_of(&[("a", 1), ("$share/g/a", 1)]);
    assert_eq!(idx.len(), 2);
    let mut calls = (0, 0);
    idx.route(
        "a",
        |_, _| calls.0 += 1,
        |_, _| {
            calls.1 += 1;
            true
        },
    );
    assert_eq!(calls, (1, 1));
}

#[test]
fn odd_input_does_not_panic() {
    let mut idx = index_of(&[("#", 1), ("+", 2)]);
    // Not valid topic names or filters, but routing and removal must stay safe.
    assert_eq!(direct(&mut idx, "").len(), 2);
    let deep = "x/".repeat(10_000);
    assert_eq!(direct(&mut idx, &deep), vec![(1, "#".into())]);
    assert_eq!(idx.remove(&deep, &1), None);
    idx.insert("$share/g", 3, "$share/g".into());
    assert_eq!(direct(&mut idx, "$share/g"), vec![(3, "$share/g".into())]);
}

const LEVELS: &[&str] = &["a", "b", "", "é", "$SYS", "+"];
const TOPIC_LEVELS: &[&str] = &["a", "b", "", "é", "$SYS", "c"];

/// Valid filters over a small alphabet, so topics and filters often meet. About one in
/// four is a shared subscription in group `g` or `h`.
fn filter_strategy() -> impl Strategy<Value = String> {
    let levels = prop::collection::vec(prop::sample::select(LEVELS), 0..4);
    let share = prop::sample::select(&["", "", "", "$share/g/", "$share/h/"][..]);
    (share, levels, any::<bool>()).prop_filter_map("empty filter", |(share, levels, hash)| {
        let mut f = levels.join("/");
        if hash {
            f = if levels.is_empty() {
                "#".into()
            } else {
                format!("{f}/#")
            };
        }
        (!f.is_empty()).then(|| format!("{share}{f}"))
    })
}

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOPIC_LEVELS), 1..5).prop_map(|l| l.join("/"))
}

proptest! {
    #[test]
    fn route_agrees_with_reference_matcher(
        subs in prop::collection::vec((filter_strategy(), 0u32..4), 0..40),
        topics in prop::collection::vec(topic_strategy(), 1..10),
    ) {
        let mut idx = Index::new();
        for (f, k) in &subs {
            prop_assert!(validate_filter(f, &TopicLimits::default()).is_ok(), "{}", f);
            idx.insert(f, *k, f.clone());
        }
        let distinct: BTreeSet<(String, u32)> = subs.iter().cloned().collect();
        prop_assert_eq!(idx.len(), distinct.len());
        for t in &topics {
            let mut want_direct = Vec::new();
            let mut want_groups = BTreeSet::new();
            for (f, k) in &distinct {
                let parsed = FilterRef::parse(f);
                if matches(parsed.filter(), t) {
                    match parsed.share_group() {
                        None => want_direct.push((*k, f.clone())),
                        Some(_) => { want_groups.insert(f.clone()); }
                    }
                }
            }
            want_direct.sort();
            prop_assert_eq!(direct(&mut idx, t), want_direct, "topic {}", t);
            // Every matching group delivers exactly once.
            let mut got_groups: Vec<String> =
                shared(&mut idx, t).into_iter().map(|(_, f)| f).collect();
            got_groups.sort();
            prop_assert_eq!(got_groups, want_groups.into_iter().collect::<Vec<_>>(), "topic {}", t);
        }
    }

    #[test]
    fn removing_everything_leaves_nothing(
        subs in prop::collection::vec((filter_strategy(), 0u32..4), 0..40)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        let (inserts, removes) = subs;
        let mut idx = Index::new();
        let mut model = BTreeMap::new();
        for (i, (f, k)) in inserts.iter().enumerate() {
            let value = format!("{f}#{i}");
            let old = model.insert((f.clone(), *k), value.clone());
            prop_assert_eq!(idx.insert(f, *k, value), old);
            prop_assert_eq!(idx.len(), model.len());
        }
        for (f, k) in &removes {
            let old = model.remove(&(f.clone(), *k));
            prop_assert_eq!(idx.remove(f, k), old);
            prop_assert_eq!(idx.len(), model.len());
        }
        prop_assert!(idx.is_empty());
        prop_assert_eq!(idx.node_count(), 0);
        prop_assert!(idx.root.is_empty());
    }

    #[test]
    fn shared_delivery_is_even_when_all_accept(members in 1u32..8, rounds in 1usize..20) {
        // The value names the group, so deliveries can be counted per group.
        let mut idx = SubscriptionIndex::<u32, char>::new();
        for k in 0..members {
            idx.insert("$share/g/site/+/temp", k, 'g');
            idx.insert("$share/h/site/#", k, 'h');
        }
        let mut counts = BTreeMap::<(u32, char), usize>::new();
        for _ in 0..(members as usize * rounds) {
            let mut delivered = 0;
            idx.route("site/1/temp", |_, _| {}, |k, g| {
                delivered += 1;
                *counts.entry((*k, *g)).or_default() += 1;
                true
            });
            prop_assert_eq!(delivered, 2, "one per group");
        }
        for k in 0..members {
            for g in ['g', 'h'] {
                prop_assert_eq!(counts.get(&(k, g)).copied(), Some(rounds), "member {} of {}", k, g);
            }
        }
    }
}

#[test]
fn visiting_matches_does_not_move_round_robin() {
    let mut idx: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
    idx.insert("$share/g/t/#", 1, ());
    idx.insert("$share/g/t/#", 2, ());
    idx.insert("t/+", 3, ());
    let mut seen = vec![];
    idx.visit_matches("t/x", |k, _| seen.push(*k));
    seen.sort();
    assert_eq!(seen, vec![1, 2, 3]);
    let mut first = vec![];
    idx.route(
        "t/x",
        |_, _| {},
        |k, _| {
            first.push(*k);
            true
        },
    );
    idx.visit_matches("t/x", |_, _| {});
    idx.route(
        "t/x",
        |_, _| {},
        |k, _| {
            first.push(*k);
            true
        },
    );
    assert_eq!(
        first,
        vec![1, 2],
        "visiting between deliveries left the rotation alone"
    );
}
