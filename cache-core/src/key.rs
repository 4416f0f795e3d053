//! Keys and Redis glob patterns.

/// Escapes the Redis glob characters (`*`, `?`, `[`, `]`, `\`) in a caller-supplied key
/// segment, so that it matches only itself inside a pattern.
///
/// Use it whenever a pattern includes data from outside the program: a user id of `*` must
/// never widen an invalidation to every user.
///
/// ```
/// use cache_core::key::escape_glob;
///
/// assert_eq!(escape_glob("42"), "42");
/// assert_eq!(escape_glob("*"), r"\*");
/// let pattern = format!("user:{}:*", escape_glob("[a]"));
/// assert_eq!(pattern, r"user:\[a\]:*");
/// ```
pub fn escape_glob(segment: &str) -> String {
    let mut escaped = String::with_capacity(segment.len());
    for c in segment.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The marker in every key cachemere keeps for itself: distributed locks
/// (`<key>.__cachemere:lock`), tag indexes (`<prefix>__cachemere:tag:<tag>`), the tags a key
/// was written with ([`tags_record`]) and the local tier's channel. A
/// [`Cache`](crate::Cache) refuses to write a key holding it
/// ([`Error::InvalidKey`](crate::Error::InvalidKey)), and pattern sweeps
/// ([`Store::delete_matching`](crate::Store::delete_matching)) never match such keys, so a
/// user's `user:*` leaves the lock of `user:1` alone and no user key can collide with an
/// internal one; a swept key's [`tags_record`] goes with it.
pub const RESERVED: &str = "__cachemere:";

/// The key of the record of the tags `key` was written with (`<key>.__cachemere:tags`), so
/// that a ttl change can keep the key in its tags' indexes. It goes wherever its key goes:
/// every removal of a key by a [`Cache`](crate::Cache), and every
/// [`Store::delete_matching`](crate::Store::delete_matching), removes it too.
///
/// ```
/// use cache_core::key::tags_record;
///
/// assert_eq!(tags_record(b"user:1"), b"user:1.__cachemere:tags");
/// ```
pub fn tags_record(key: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(key.len() + RESERVED.len() + 5);
    record.extend_from_slice(key);
    record.push(b'.');
    record.extend_from_slice(RESERVED.as_bytes());
    record.extend_from_slice(b"tags");
    record
}

/// [`tags_record`] of a text key.
pub(crate) fn tags_record_of(key: &str) -> String {
    format!("{key}.{RESERVED}tags")
}

/// Whether `key` is one of cachemere's own (it holds [`RESERVED`]).
///
/// ```
/// use cache_core::key::is_internal;
///
/// assert!(is_internal(b"user:1.__cachemere:lock"));
/// assert!(!is_internal(b"user:1"));
/// ```
pub fn is_internal(key: &[u8]) -> bool {
    key.windows(RESERVED.len())
        .any(|window| window == RESERVED.as_bytes())
}

/// Whether `key` matches the Redis glob `pattern`, with the semantics of Redis `SCAN MATCH`.
pub fn glob_matches(pattern: &str, key: &str) -> bool {
    matches_bytes(pattern.as_bytes(), key.as_bytes())
}

/// Greedy matching with one backtrack point (the latest `*`): quadratic at worst, where
/// trying every split after every star is exponential in the number of stars.
fn matches_bytes(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (pattern, key);
    let mut star: Option<(&[u8], &[u8])> = None;
    loop {
        if let Some((b'*', rest)) = p.split_first() {
            p = trim_stars(rest);
            star = Some((p, k));
            continue;
        }
        if p.is_empty() && k.is_empty() {
            return true;
        }
        if let Some(after) = (!p.is_empty()).then(|| step(p, k)).flatten() {
            (p, k) = after;
            continue;
        }
        match star {
            Some((star_p, star_k)) if !star_k.is_empty() => {
                let star_k = &star_k[1..];
                star = Some((star_p, star_k));
                (p, k) = (star_p, star_k);
            }
            _ => return false,
        }
    }
}

/// Matches the first non-star token of `pattern` against the first byte of `key`.
fn step<'p, 'k>(pattern: &'p [u8], key: &'k [u8]) -> Option<(&'p [u8], &'k [u8])> {
    let (&c, key_rest) = key.split_first()?;
    let (&p, rest) = pattern.split_first()?;
    match p {
        b'?' => Some((rest, key_rest)),
        b'[' => {
            let (matched, after) = match_class(rest, c);
            matched.then_some((after, key_rest))
        }
        _ => {
            let (literal, after) = match (p, rest.split_first()) {
                (b'\\', Some((&escaped, after))) => (escaped, after),
                _ => (p, rest),
            };
            (c == literal).then_some((after, key_rest))
        }
    }
}

fn trim_stars(mut pattern: &[u8]) -> &[u8] {
    while let Some((b'*', rest)) = pattern.split_first() {
        pattern = rest;
    }
    pattern
}

/// Matches `c` against a class whose opening `[` is already consumed; returns whether it
/// matched and the pattern after the closing `]` (or the end, as Redis does when unclosed).
fn match_class(mut class: &[u8], c: u8) -> (bool, &[u8]) {
    let negate = class.first() == Some(&b'^');
    if negate {
        class = &class[1..];
    }
    let mut matched = false;
    loop {
        match class {
            [] => break,
            [b']', rest @ ..] => {
                class = rest;
                break;
            }
            [b'\\', escaped, rest @ ..] => {
                matched |= *escaped == c;
                class = rest;
            }
            [lo, b'-', hi, rest @ ..] if *hi != b']' => {
                let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                matched |= (lo..=hi).contains(&c);
                class = rest;
            }
            [single, rest @ ..] => {
                matched |= *single == c;
                class = rest;
            }
        }
    }
    (matched != negate, class)
}

/// The Redis Cluster hash slot of `key` (0 to 16383): CRC16 (XMODEM) of the key, or of its
/// `{hash tag}` when it has a non-empty one, as Redis computes it. Keys of one slot live on
/// one node, which is what scripts and other atomic multi-key steps need.
///
/// ```
/// use cache_core::key::hash_slot;
///
/// assert_eq!(hash_slot("foo"), 12182);
/// assert_eq!(hash_slot("{user:42}:profile"), hash_slot("{user:42}:sessions"));
/// ```
pub fn hash_slot(key: impl AsRef<[u8]>) -> u16 {
    const SLOTS: u16 = 16384;
    let key = key.as_ref();
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty());
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_semantics() {
        let cases = [
            ("user:*", "user:1", true),
            ("user:*", "user:", true),
            ("user:*", "users:1", false),
            ("*", "", true),
            ("user:?", "user:1", true),
            ("user:?", "user:12", false),
            ("user:[ab]", "user:a", true),
            ("user:[ab]", "user:c", false),
            ("user:[^ab]", "user:c", true),
            ("user:[a-c]x", "user:bx", true),
            ("user:[a-c]x", "user:dx", false),
            (r"user:\*", "user:*", true),
            (r"user:\*", "user:1", false),
            (r"user:\[a\]", "user:[a]", true),
            (r"user:\[a\]", "user:a", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("**x", "abcx", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(glob_matches(pattern, key), expected, "{pattern} ~ {key}");
        }
    }

    #[test]
    fn escaped_segments_match_only_themselves() {
        for segment in ["*", "?", "[a]", r"a\b", "]", "plain", "a*b?[c]"] {
            let pattern = format!("user:{}:*", escape_glob(segment));
            assert!(glob_matches(&pattern, &format!("user:{segment}:profile")));
            for other in ["1", "x", "a", "ab", "[", "plainer"] {
                if other != segment {
                    assert!(
                        !glob_matches(&pattern, &format!("user:{other}:profile")),
                        "{pattern} matched {other}"
                    );
                }
            }
        }
    }

    #[test]
    fn many_stars_against_a_long_key_answer_at_once() {
        let pattern = format!("{}b", "*a".repeat(30));
        let key = "a".repeat(10_000);
        assert!(!glob_matches(&pattern, &key));
        assert!(glob_matches(&pattern, &format!("{key}b")));
    }

    /// The exhaustive definition the fast matcher must agree with.
    fn reference(pattern: &[u8], key: &[u8]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((b'*', rest)) => (0..=key.len()).any(|skip| reference(rest, &key[skip..])),
            Some(_) => step(pattern, key).is_some_and(|(p, k)| reference(p, k)),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn an_escaped_segment_matches_only_itself(segment in "\\PC{0,12}", other in "\\PC{0,12}") {
            let pattern = format!("user:{}:*", escape_glob(&segment));
            let key = format!("user:{segment}:x");
            let other_key = format!("user:{other}:x");
            proptest::prop_assert!(glob_matches(&pattern, &key));
            proptest::prop_assert!(glob_matches(&escape_glob(&segment), &segment));
            if other != segment {
                proptest::prop_assert!(!glob_matches(&escape_glob(&segment), &other));
            }
            if !other_key.starts_with(&key[..key.len() - 1]) {
                proptest::prop_assert!(!glob_matches(&pattern, &other_key));
            }
        }

        #[test]
        fn the_matcher_agrees_with_the_definition_and_never_panics(
            pattern in "[ab*?\\[\\]^\\\\-é]{0,10}",
            key in "[abé\\[\\]*?-]{0,10}",
        ) {
            proptest::prop_assert_eq!(
                glob_matches(&pattern, &key),
                reference(pattern.as_bytes(), key.as_bytes()),
                "{} ~ {}", pattern, key
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            pattern in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let _ = matches_bytes(&pattern, &key);
            let _ = hash_slot(&key);
        }
    }
}
