//! Key encodings of the embedded store, chosen so that byte order is the order the log needs.
//!
//! - history: `seq` as 8 big-endian bytes, so keys sort numerically.
//! - channel index: the channel name with every `0x00` byte written as `0x00 0xFF`, then the
//!   terminator `0x00 0x00`, then `seq` big-endian. Keys sort by (channel bytes, seq), and a
//!   channel's entries stay contiguous even when another channel's name extends it
//!   (`a` vs `a/b`): the terminator sorts below every byte a longer name can continue with.
//! - de-duplication expiry index: creation time in milliseconds big-endian, then the key, so
//!   a range scan from zero finds the oldest keys first.

/// Bytes of an encoded sequence number.
pub const SEQ_LEN: usize = 8;

/// History key of a sequence number.
pub fn seq_key(seq: u64) -> [u8; SEQ_LEN] {
    seq.to_be_bytes()
}

/// Reads a history key back; `None` when it is not 8 bytes.
pub fn decode_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; SEQ_LEN] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The escaped channel name plus terminator: every index key of `channel` starts with this,
/// and no key of another channel does.
pub fn chan_prefix(channel: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + 2 + SEQ_LEN);
    for &b in channel.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// Channel-index key of (`channel`, `seq`).
pub fn chan_key(channel: &str, seq: u64) -> Vec<u8> {
    let mut out = chan_prefix(channel);
    out.extend_from_slice(&seq_key(seq));
    out
}

/// Reads a channel-index key back into (channel, seq); `None` when it is malformed.
pub fn decode_chan_key(key: &[u8]) -> Option<(String, u64)> {
    let mut name = Vec::with_capacity(key.len());
    let mut i = 0;
    while i < key.len() {
        let b = key[i];
        if b != 0 {
            name.push(b);
            i += 1;
            continue;
        }
        match key.get(i + 1) {
            Some(0xFF) => {
                name.push(0);
                i += 2;
            }
            Some(0) => {
                let seq = decode_seq(&key[i + 2..])?;
                return String::from_utf8(name).ok().map(|n| (n, seq));
            }
            _ => return None,
        }
    }
    None
}

/// Expiry-index key of a de-duplication key created at `created_ms`.
pub fn dedupe_time_key(created_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEQ_LEN + key.len());
    out.extend_from_slice(&created_ms.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits an expiry-index key into (created_ms, de-duplication key).
pub fn decode_dedupe_time_key(key: &[u8]) -> Option<(u64, &[u8])> {
    let (t, rest) = key.split_at_checked(SEQ_LEN)?;
    Some((decode_seq(t)?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Channel names built from a tiny alphabet so that prefixes and NUL bytes are common.
    fn channel() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('/'), Just('\0'), Just('é')],
            0..6,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn seq_keys_sort_numerically(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), seq_key(a).cmp(&seq_key(b)));
            prop_assert_eq!(decode_seq(&seq_key(a)), Some(a));
        }

        #[test]
        fn chan_keys_sort_by_channel_then_seq(
            c1 in channel(), s1 in any::<u64>(), c2 in channel(), s2 in any::<u64>()
        ) {
            let expected = (c1.as_bytes(), s1).cmp(&(c2.as_bytes(), s2));
            prop_assert_eq!(chan_key(&c1, s1).cmp(&chan_key(&c2, s2)), expected);
            prop_assert_eq!(decode_chan_key(&chan_key(&c1, s1)), Some((c1.clone(), s1)));
        }

        #[test]
        fn chan_prefix_selects_only_its_channel(
            c1 in channel(), c2 in channel(), s in any::<u64>()
        ) {
            prop_assert_eq!(chan_key(&c2, s).starts_with(&chan_prefix(&c1)), c1 == c2);
        }

        #[test]
        fn dedupe_time_keys_sort_by_time_first(
            t1 in any::<u64>(), k1 in any::<Vec<u8>>(), t2 in any::<u64>(), k2 in any::<Vec<u8>>()
        ) {
            let a = dedupe_time_key(t1, &k1);
            let b = dedupe_time_key(t2, &k2);
            prop_assert_eq!(a.cmp(&b), (t1, &k1).cmp(&(t2, &k2)));
            prop_assert_eq!(decode_dedupe_time_key(&a), Some((t1, k1.as_slice())));
        }

        #[test]
        fn decoding_garbage_never_panics(k in any::<Vec<u8>>()) {
            let _ = decode_chan_key(&k);
            let _ = decode_dedupe_time_key(&k);
        }
    }

    #[test]
    fn a_channel_sorts_before_its_extensions() {
        assert!(chan_key("a", u64::MAX) < chan_key("a/b", 0));
        assert!(chan_key("a", u64::MAX) < chan_key("a\0", 0));
    }
}
