//! Tests of rule matching, captures, templates and output filters.

use super::*;

fn rule(filter: &str, template: Option<&str>) -> Rule {
    match Rule::new(filter, template, QoS::AtLeastOnce, RetainPolicy::Keep, true) {
        Ok(r) => r,
        Err(e) => panic!("rule {filter:?} -> {template:?}: {e}"),
    }
}

#[test]
fn captures_follow_wildcards() {
    let r = rule("plant1/+/temp", Some("site/{1}/temperature"));
    assert_eq!(
        r.map("plant1/line3/temp").as_deref(),
        Some("site/line3/temperature")
    );
    assert_eq!(r.map("plant1/line3/hum"), None);
    assert_eq!(r.map("plant1/a/b/temp"), None);

    let r = rule("a/+/b/#", Some("{2}/{1}"));
    assert_eq!(r.map("a/x/b/c/d").as_deref(), Some("c/d/x"));
}

#[test]
fn empty_multi_level_match_drops_its_separator() {
    let r = rule("plant/#", Some("site/{1}"));
    assert_eq!(r.map("plant/a/b").as_deref(), Some("site/a/b"));
    assert_eq!(r.map("plant").as_deref(), Some("site"));
    // An empty level is a level: kept.
    assert_eq!(r.map("plant/").as_deref(), Some("site/"));
}

#[test]
fn missing_template_keeps_the_name() {
    let r = rule("a/#", None);
    assert_eq!(r.map("a/b").as_deref(), Some("a/b"));
    let r = rule("a/#", Some("mirror/{topic}"));
    assert_eq!(r.map("a/b").as_deref(), Some("mirror/a/b"));
}

#[test]
fn dollar_topics_need_an_explicit_first_level() {
    let r = rule("#", None);
    assert_eq!(r.map("$SYS/x"), None);
    let r = rule("$SYS/#", None);
    assert_eq!(r.map("$SYS/x").as_deref(), Some("$SYS/x"));
}

#[test]
fn shared_filters_match_their_inner_filter() {
    let r = rule("$share/g/cmd/+", Some("local/{1}"));
    assert_eq!(r.map("cmd/x").as_deref(), Some("local/x"));
    assert!(
        Rule::new(
            "$share/g/a",
            None,
            QoS::AtMostOnce,
            RetainPolicy::Keep,
            false
        )
        .is_err()
    );
}

#[test]
fn an_empty_result_is_not_a_topic() {
    let r = rule("a/#", Some("{1}"));
    assert_eq!(r.map("a"), None);
    assert_eq!(r.map("a/b").as_deref(), Some("b"));
}

#[test]
fn bad_filters_and_templates_are_explained() {
    let bad = |f: &str, t: Option<&str>| {
        Rule::new(f, t, QoS::AtMostOnce, RetainPolicy::Keep, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(bad("", None).contains("empty"));
    assert!(bad("a/#/b", None).contains("last level"));
    assert!(bad("a+/b", None).contains("whole levels"));
    assert!(bad("a/+", Some("x/{2}")).contains("only 1 wildcard"));
    assert!(bad("a/+", Some("x/+")).contains("cannot appear"));
    assert!(bad("a/+", Some("x/{one}")).contains("unknown placeholder"));
    assert!(bad("a/+", Some("x/{1")).contains("reserved"));
    assert!(bad("a/+", Some("x/}")).contains("reserved"));
    assert!(bad("a/+", Some("x/{0}")).contains("unknown placeholder"));
    assert!(bad("a\nb", None).contains("control"));
}

#[test]
fn output_filters_cover_what_a_rule_produces() {
    let cases = [
        ("plant/+/temp", Some("site/{1}/t"), "site/+/t"),
        ("plant/#", Some("site/{1}"), "site/#"),
        ("plant/#", Some("site/{1}/x"), "site/#"),
        ("a/+", Some("pre{1}post/z"), "+/z"),
        ("a/#", None, "a/#"),
        ("a/b", None, "a/b"),
        ("a/b", Some("m/{topic}"), "m/#"),
        ("a/b", Some("fixed/topic"), "fixed/topic"),
    ];
    for (filter, template, expected) in cases {
        let r = rule(filter, template);
        assert_eq!(r.output_filter(), expected, "{filter} -> {template:?}");
    }
    // And the output filter does match what the rule maps to.
    let r = rule("plant/+/#", Some("s/{1}/{2}"));
    let out = r.output_filter();
    for topic in ["plant/a", "plant/a/b", "plant/a/b/c"] {
        let mapped = r.map(topic).unwrap_or_default();
        assert!(
            capture(&out, &mapped).is_some(),
            "{mapped} not matched by {out}"
        );
    }
}

#[test]
fn first_matching_rule_wins() {
    let rules = vec![
        rule("a/special", Some("x/special")),
        rule("a/+", Some("y/{1}")),
    ];
    let (r, t) = first_match(&rules, "a/special").unwrap_or_else(|| panic!("matches"));
    assert_eq!((r.filter.as_str(), t.as_str()), ("a/special", "x/special"));
    let (_, t) = first_match(&rules, "a/other").unwrap_or_else(|| panic!("matches"));
    assert_eq!(t, "y/other");
    assert!(first_match(&rules, "b").is_none());
}

#[test]
fn retain_policies() {
    assert!(RetainPolicy::Keep.apply(true));
    assert!(!RetainPolicy::Keep.apply(false));
    assert!(!RetainPolicy::Clear.apply(true));
    assert!(RetainPolicy::Set.apply(false));
}
