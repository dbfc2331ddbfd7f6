//! The API's input rules, checked up front: the Rust SDK validates nothing on the client side,
//! and an invalid name discovered by the service while a filesystem is frozen is a frozen
//! window spent for nothing.

/// Longest resource name lightsnap will send.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag key (seeds: "a maximum of 128 letters ...").
pub const MAX_TAG_KEY_LEN: usize = 128;
/// Longest tag value.
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Most tags on one resource.
pub const MAX_TAGS: usize = 50;

/// An input the API would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A name that breaks `\w[\w\-]*\w` or the length limit.
    #[error("{what} {name:?} is not a valid Lightsail name: use 2 to {MAX_NAME_LEN} letters, digits, '_' or '-', starting and ending with a letter, digit or '_'")]
    Name {
        /// What the name is for (`snapshot name`, `disk name`).
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A tag that breaks the API's limits.
    #[error("tag {tag:?}: {why}")]
    Tag {
        /// The tag as given.
        tag: String,
        /// What is wrong with it.
        why: String,
    },
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Checks `name` against the API pattern `\w[\w\-]*\w` (Java's ASCII `\w`) and length limit.
pub fn name(what: &'static str, name: &str) -> Result<(), InvalidInput> {
    let chars: Vec<char> = name.chars().collect();
    let ok = chars.len() >= 2
        && chars.len() <= MAX_NAME_LEN
        && is_word(chars[0])
        && is_word(chars[chars.len() - 1])
        && chars.iter().all(|&c| is_word(c) || c == '-');
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::Name {
            what,
            name: name.to_string(),
        })
    }
}

fn tag_char_ok(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c)
}

/// A tag as `KEY=VALUE` (or `KEY` alone, for a tag without a value), checked.
pub fn parse_tag(text: &str) -> Result<(String, String), InvalidInput> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    let bad = |why: String| InvalidInput::Tag {
        tag: text.to_string(),
        why,
    };
    if key.is_empty() {
        return Err(bad("the key is empty; write KEY=VALUE".into()));
    }
    if key.chars().count() > MAX_TAG_KEY_LEN {
        return Err(bad(format!(
            "the key is longer than {MAX_TAG_KEY_LEN} characters"
        )));
    }
    if value.chars().count() > MAX_TAG_VALUE_LEN {
        return Err(bad(format!(
            "the value is longer than {MAX_TAG_VALUE_LEN} characters"
        )));
    }
    if let Some(c) = key.chars().chain(value.chars()).find(|&c| !tag_char_ok(c)) {
        return Err(bad(format!(
            "{c:?} is not allowed: use letters, digits, spaces and + - = . _ : / @"
        )));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Checks a whole tag set: each tag, no key twice, not too many.
pub fn tags(tags: &[(String, String)]) -> Result<(), InvalidInput> {
    if tags.len() > MAX_TAGS {
        return Err(InvalidInput::Tag {
            tag: format!("({} tags)", tags.len()),
            why: format!("a resource takes at most {MAX_TAGS} tags"),
        });
    }
    for (i, (key, _)) in tags.iter().enumerate() {
        if tags[..i].iter().any(|(k, _)| k == key) {
            return Err(InvalidInput::Tag {
                tag: key.clone(),
                why: "the key is given twice".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_api_pattern() {
        for good in ["ab", "data-1", "a_b", "_x_", "D1-2026-11-24"] {
            assert!(name("snapshot name", good).is_ok(), "{good}");
        }
        for bad in ["", "a", "-ab", "ab-", "a b", "a.b", "é1", "a/b"] {
            assert!(name("snapshot name", bad).is_err(), "{bad:?}");
        }
        assert!(name("snapshot name", &"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(name("snapshot name", &"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn tags_follow_the_api_limits() {
        assert_eq!(
            parse_tag("env=prod").unwrap(),
            ("env".into(), "prod".into())
        );
        assert_eq!(parse_tag("k=a=b").unwrap(), ("k".into(), "a=b".into()));
        assert_eq!(parse_tag("solo").unwrap(), ("solo".into(), String::new()));
        assert!(parse_tag("=v").is_err());
        assert!(parse_tag("k=a;b").is_err());
        assert!(parse_tag(&format!("{}=v", "k".repeat(129))).is_err());
        assert!(parse_tag(&format!("k={}", "v".repeat(257))).is_err());
        assert!(parse_tag(&format!("{}={}", "k".repeat(128), "v".repeat(256))).is_ok());
        let twice = vec![
            ("a".to_string(), String::new()),
            ("a".to_string(), "x".into()),
        ];
        assert!(tags(&twice).is_err());
        let many: Vec<_> = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(tags(&many).is_err());
    }
}
