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

/// Whether `key` matches the Redis glob `pattern`, with the semantics of Redis `SCAN MATCH`.
pub fn glob_matches(pattern: &str, key: &str) -> bool {
    matches_bytes(pattern.as_bytes(), key.as_bytes())
}

fn matches_bytes(mut pattern: &[u8], mut key: &[u8]) -> bool {
    while let Some((&p, rest)) = pattern.split_first() {
        match p {
            b'*' => {
                let rest = trim_stars(rest);
                if rest.is_empty() {
                    return true;
                }
                return (0..=key.len()).any(|skip| matches_bytes(rest, &key[skip..]));
            }
            b'?' => {
                let Some((_, k)) = key.split_first() else {
                    return false;
                };
                pattern = rest;
                key = k;
            }
            b'[' => {
                let Some((&c, k)) = key.split_first() else {
                    return false;
                };
                let (matched, after) = match_class(rest, c);
                if !matched {
                    return false;
                }
                pattern = after;
                key = k;
            }
            _ => {
                let (literal, after) = match (p, rest.split_first()) {
                    (b'\\', Some((&escaped, after))) => (escaped, after),
                    _ => (p, rest),
                };
                match key.split_first() {
                    Some((&c, k)) if c == literal => {
                        pattern = after;
                        key = k;
                    }
                    _ => return false,
                }
            }
        }
    }
    key.is_empty()
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
}
