//! Tests for topic validation and matching: the MQTT 5 section 4.7 examples, each
//! validation rule, and property tests that validation never panics.

use super::*;
use proptest::prelude::*;

fn lim() -> TopicLimits {
    TopicLimits::default()
}

fn topic_ok(t: &str) -> bool {
    validate_topic_name(t, &lim()).is_ok()
}

#[test]
fn spec_examples_multi_level_wildcard() {
    // MQTT 5 section 4.7.1.2
    assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
    assert!(matches(
        "sport/tennis/player1/#",
        "sport/tennis/player1/ranking"
    ));
    assert!(matches(
        "sport/tennis/player1/#",
        "sport/tennis/player1/score/wimbledon"
    ));
    assert!(matches("sport/#", "sport"));
    assert!(matches("#", "sport/tennis"));
    assert!(!matches("sport/tennis/#", "sport"));
}

#[test]
fn spec_examples_single_level_wildcard() {
    // MQTT 5 section 4.7.1.3
    assert!(matches("sport/tennis/+", "sport/tennis/player1"));
    assert!(matches("sport/tennis/+", "sport/tennis/player2"));
    assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert!(!matches("sport/+", "sport"));
    assert!(matches("sport/+", "sport/"));
    assert!(matches("+/+", "/finance"));
    assert!(matches("/+", "/finance"));
    assert!(!matches("+", "/finance"));
    assert!(matches("+/tennis/#", "sport/tennis/player1"));
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    // MQTT 5 section 4.7.2
    assert!(!matches("#", "$SYS/broker/clients"));
    assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(!matches("+", "$SYS"));
    assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
    assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    // Only the first character counts.
    assert!(matches("+/x", "a$/x"));
    assert!(matches("#", "a/$SYS"));
}

#[test]
fn empty_levels_are_levels() {
    assert!(topic_ok("a//b"));
    assert!(topic_ok("/"));
    assert!(topic_ok("/a/"));
    assert!(matches("a//b", "a//b"));
    assert!(matches("a/+/b", "a//b"));
    assert!(!matches("a/b", "a//b"));
    assert!(matches("a/#", "a//b"));
    assert!(matches("+/+", "/"));
}

#[test]
fn non_ascii_topics() {
    assert!(topic_ok("été/x"));
    assert!(topic_ok("工厂/线/温度"));
    assert!(matches("été/+", "été/x"));
    assert!(matches("+/x", "été/x"));
    assert!(!matches("ete/x", "été/x"));
    assert_eq!(
        validate_filter("été/#", &lim()),
        Ok(FilterRef::Plain("été/#"))
    );
    // U+00A0 and U+00C2 are printable and share a lead byte with C1 controls.
    assert!(topic_ok("a\u{a0}b"));
    assert!(topic_ok("\u{c2}"));
}

#[test]
fn topic_name_rules() {
    assert_eq!(validate_topic_name("", &lim()), Err(TopicError::Empty));
    assert_eq!(
        validate_topic_name("a/+/b", &lim()),
        Err(TopicError::WildcardInTopicName {
            wildcard: '+',
            at: 2
        })
    );
    assert_eq!(
        validate_topic_name("a#", &lim()),
        Err(TopicError::WildcardInTopicName {
            wildcard: '#',
            at: 1
        })
    );
    assert_eq!(
        validate_topic_name("a\0b", &lim()),
        Err(TopicError::NulChar { at: 1 })
    );
    assert_eq!(
        validate_topic_name("a\nb", &lim()),
        Err(TopicError::ControlChar { code: 0x0A, at: 1 })
    );
    assert_eq!(
        validate_topic_name("\u{1b}[2J", &lim()),
        Err(TopicError::ControlChar { code: 0x1B, at: 0 })
    );
    assert_eq!(
        validate_topic_name("x\u{7f}", &lim()),
        Err(TopicError::ControlChar { code: 0x7F, at: 1 })
    );
    assert_eq!(
        validate_topic_name("é\u{85}", &lim()),
        Err(TopicError::ControlChar { code: 0x85, at: 2 })
    );
    assert_eq!(
        validate_topic_name("\u{9f}", &lim()),
        Err(TopicError::ControlChar { code: 0x9F, at: 0 })
    );
    assert!(topic_ok("$SYS/broker"));
    assert!(topic_ok(" spaces are fine "));
}

#[test]
fn length_limits() {
    let max = "a".repeat(MQTT_MAX_TOPIC_BYTES);
    let too_long = "a".repeat(MQTT_MAX_TOPIC_BYTES + 1);
    let many_levels = TopicLimits {
        max_levels: 100_000,
        ..lim()
    };
    assert_eq!(validate_topic_name(&max, &lim()), Ok(()));
    assert_eq!(
        validate_topic_name(&too_long, &lim()),
        Err(TopicError::TooLong {
            len: MQTT_MAX_TOPIC_BYTES + 1,
            max: MQTT_MAX_TOPIC_BYTES
        })
    );
    // A configured limit above the protocol's is capped.
    let big = TopicLimits {
        max_len: usize::MAX,
        ..many_levels
    };
    assert!(validate_topic_name(&too_long, &big).is_err());
    assert!(validate_filter(&too_long, &big).is_err());
    let small = TopicLimits {
        max_len: 4,
        max_levels: 2,
    };
    assert_eq!(validate_topic_name("abcd", &small), Ok(()));
    assert_eq!(
        validate_topic_name("abcde", &small),
        Err(TopicError::TooLong { len: 5, max: 4 })
    );
    // Length counts bytes, not characters.
    assert_eq!(
        validate_topic_name("ééé", &small),
        Err(TopicError::TooLong { len: 6, max: 4 })
    );
    assert_eq!(
        validate_topic_name(
            "a/b/c",
            &TopicLimits {
                max_len: 10,
                max_levels: 2
            }
        ),
        Err(TopicError::TooManyLevels { levels: 3, max: 2 })
    );
    assert_eq!(
        validate_filter(
            "a/b/#",
            &TopicLimits {
                max_len: 10,
                max_levels: 2
            }
        ),
        Err(TopicError::TooManyLevels { levels: 3, max: 2 })
    );
    let l128 = vec!["x"; 128].join("/");
    let l129 = vec!["x"; 129].join("/");
    assert!(topic_ok(&l128));
    assert_eq!(
        validate_topic_name(&l129, &lim()),
        Err(TopicError::TooManyLevels {
            levels: 129,
            max: 128
        })
    );
}

#[test]
fn filter_wildcard_placement() {
    for ok in [
        "#", "+", "+/+", "/+", "+/", "a/#", "a/+/b/#", "+/#", "//#", "a/+/+",
    ] {
        assert_eq!(
            validate_filter(ok, &lim()),
            Ok(FilterRef::Plain(ok)),
            "{ok}"
        );
    }
    use TopicError::{MisplacedMultiLevelWildcard as Hash, MisplacedSingleLevelWildcard as Plus};
    let cases = [
        ("a/#/b", Hash { at: 2 }),
        ("#/", Hash { at: 0 }),
        ("a#", Hash { at: 1 }),
        ("a/#b", Hash { at: 2 }),
        ("##", Hash { at: 0 }),
        ("a+", Plus { at: 1 }),
        ("a/+b", Plus { at: 2 }),
        ("++", Plus { at: 0 }),
        ("+#", Plus { at: 0 }),
    ];
    for (f, e) in cases {
        assert_eq!(validate_filter(f, &lim()), Err(e), "{f}");
    }
    assert_eq!(validate_filter("", &lim()), Err(TopicError::Empty));
    assert_eq!(
        validate_filter("a/\0", &lim()),
        Err(TopicError::NulChar { at: 2 })
    );
    assert_eq!(
        validate_filter("a/\r/#", &lim()),
        Err(TopicError::ControlChar { code: 0x0D, at: 2 })
    );
}

#[test]
fn shared_filters() {
    assert_eq!(
        validate_filter("$share/g/a/+", &lim()),
        Ok(FilterRef::Shared {
            group: "g",
            filter: "a/+"
        })
    );
    assert_eq!(
        validate_filter("$share/workers/#", &lim()),
        Ok(FilterRef::Shared {
            group: "workers",
            filter: "#"
        })
    );
    assert_eq!(
        validate_filter("$share", &lim()),
        Err(TopicError::EmptyShareGroup)
    );
    assert_eq!(
        validate_filter("$share/", &lim()),
        Err(TopicError::EmptyShareGroup)
    );
    assert_eq!(
        validate_filter("$share//a", &lim()),
        Err(TopicError::EmptyShareGroup)
    );
    assert_eq!(
        validate_filter("$share/g", &lim()),
        Err(TopicError::MissingSharedFilter)
    );
    assert_eq!(
        validate_filter("$share/g/", &lim()),
        Err(TopicError::MissingSharedFilter)
    );
    assert_eq!(
        validate_filter("$share/g+/a", &lim()),
        Err(TopicError::InvalidShareGroup { wildcard: '+' })
    );
    assert_eq!(
        validate_filter("$share/#/a", &lim()),
        Err(TopicError::InvalidShareGroup { wildcard: '#' })
    );
    assert_eq!(
        validate_filter("$share/g\t/a", &lim()),
        Err(TopicError::ControlChar { code: 0x09, at: 8 })
    );
    assert_eq!(
        validate_filter("$share/g/a/b#", &lim()),
        Err(TopicError::MisplacedMultiLevelWildcard { at: 12 })
    );
    // Level limit applies to the filter after the group.
    let two = TopicLimits {
        max_len: 100,
        max_levels: 2,
    };
    assert!(validate_filter("$share/g/a/b", &two).is_ok());
    // Not shared: the first level is not exactly `$share`.
    assert_eq!(
        validate_filter("$shared/a", &lim()),
        Ok(FilterRef::Plain("$shared/a"))
    );
    assert_eq!(
        validate_filter("$SYS/#", &lim()),
        Ok(FilterRef::Plain("$SYS/#"))
    );
}

#[test]
fn filter_ref_helpers() {
    let s = FilterRef::parse("$share/g/a/#");
    assert_eq!(
        s,
        FilterRef::Shared {
            group: "g",
            filter: "a/#"
        }
    );
    assert!(s.is_shared());
    assert_eq!(s.filter(), "a/#");
    assert_eq!(s.share_group(), Some("g"));
    let p = FilterRef::parse("a/#");
    assert!(!p.is_shared());
    assert_eq!((p.filter(), p.share_group()), ("a/#", None));
    // Malformed shared filters are not split (callers validate first).
    assert_eq!(FilterRef::parse("$share/g"), FilterRef::Plain("$share/g"));
}

#[test]
fn wildcard_detection() {
    assert!(is_wildcard_filter("#"));
    assert!(is_wildcard_filter("a/+/b"));
    assert!(is_wildcard_filter("$share/g/a/#"));
    assert!(!is_wildcard_filter("a/b"));
    assert!(!is_wildcard_filter("$share/g/a/b"));
    assert!(!is_wildcard_filter("$SYS/x"));
}

#[test]
fn errors_say_what_to_do() {
    let msg = TopicError::MisplacedSingleLevelWildcard { at: 3 }.to_string();
    assert!(msg.contains("whole level"), "{msg}");
    let msg = TopicError::ControlChar { code: 0x1B, at: 0 }.to_string();
    assert!(msg.contains("U+001B"), "{msg}");
}

proptest! {
    #[test]
    fn validation_never_panics(s in "\\PC{0,64}|.{0,64}|[+#/$a\\x00\\x1f\\u{85}]{0,16}") {
        let small = TopicLimits { max_len: 32, max_levels: 4 };
        for l in [lim(), small] {
            let _ = validate_topic_name(&s, &l);
            let _ = validate_filter(&s, &l);
            let shared = format!("$share/{s}");
            let _ = validate_filter(&shared, &l);
        }
        let _ = is_wildcard_filter(&s);
        let _ = FilterRef::parse(&s);
    }

    #[test]
    fn valid_topic_matches_itself_and_hash(t in "[a-z$/é+#]{1,20}") {
        if validate_topic_name(&t, &lim()).is_ok() {
            prop_assert!(validate_filter(&t, &lim()).is_ok());
            prop_assert!(matches(&t, &t));
            prop_assert_eq!(matches("#", &t), !t.starts_with('$'));
        }
    }
}
