//! The API's input rules, checked up front: the Rust SDK validates nothing on the client side,
//! and an invalid name discovered by the service while a filesystem is frozen is a frozen
//! window spent for nothing. Also the limits lightsnap sets on what it is given to reach the
//! API (the freeze timeout, the region, the endpoint), so every command refuses the same
//! input with the same sentence.

use std::time::Duration;

/// Longest resource name lightsnap will send.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag key (seeds: "a maximum of 128 letters ...").
pub const MAX_TAG_KEY_LEN: usize = 128;
/// Longest tag value.
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Most tags on one resource.
pub const MAX_TAGS: usize = 50;
/// The longest `--freeze-timeout` / `freeze_timeout`: far above any API round trip, far below
/// what applications whose writes are paused survive. The one place this limit is written.
pub const MAX_FREEZE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

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
    /// A duration out of its bounds.
    #[error("{what} = {value}: {why}")]
    Duration {
        /// Which setting (`--freeze-timeout`).
        what: &'static str,
        /// The duration given.
        value: String,
        /// The bound it breaks.
        why: String,
    },
    /// A region that cannot be one (it becomes part of the endpoint's host name).
    #[error("region {0:?} is not an AWS region name: write it as AWS does, such as us-east-1 or eu-central-1")]
    Region(String),
    /// An endpoint override that is not an http(s) URL.
    #[error("endpoint {url:?} (from {from}) is not a URL: write it as https://host[:port] or http://host[:port]")]
    Endpoint {
        /// The URL given.
        url: String,
        /// Where it came from (`AWS_ENDPOINT_URL_LIGHTSAIL`).
        from: &'static str,
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

/// Checks a freeze timeout (`what` says which setting): more than 0, at most
/// [`MAX_FREEZE_TIMEOUT`].
pub fn freeze_timeout(what: &'static str, timeout: Duration) -> Result<(), InvalidInput> {
    let why = if timeout.is_zero() {
        "must be more than 0".to_string()
    } else if timeout > MAX_FREEZE_TIMEOUT {
        format!(
            "more than the maximum, {}: writes would stay paused that long if Lightsail did not answer",
            humantime::format_duration(MAX_FREEZE_TIMEOUT)
        )
    } else {
        return Ok(());
    };
    Err(InvalidInput::Duration {
        what,
        value: humantime::format_duration(timeout).to_string(),
        why,
    })
}

/// Checks a region name: it becomes a host label (`lightsail.REGION.amazonaws.com`), so
/// lowercase letters, digits and inner '-' only.
pub fn region(region: &str) -> Result<(), InvalidInput> {
    let ok = !region.is_empty()
        && region.len() <= 63
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::Region(region.to_string()))
    }
}

/// Checks an endpoint override (`from` names where it was set): `http://` or `https://` and
/// a host.
pub fn endpoint(from: &'static str, url: &str) -> Result<(), InvalidInput> {
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Ok(()),
        _ => Err(InvalidInput::Endpoint {
            url: url.to_string(),
            from,
        }),
    }
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

    #[test]
    fn freeze_timeouts_are_bounded_and_say_the_bound() {
        assert!(freeze_timeout("--freeze-timeout", Duration::from_millis(1)).is_ok());
        assert!(freeze_timeout("--freeze-timeout", MAX_FREEZE_TIMEOUT).is_ok());
        assert!(freeze_timeout("--freeze-timeout", Duration::ZERO).is_err());
        let over = MAX_FREEZE_TIMEOUT + Duration::from_millis(1);
        let text = freeze_timeout("--freeze-timeout", over)
            .unwrap_err()
            .to_string();
        let max = humantime::format_duration(MAX_FREEZE_TIMEOUT).to_string();
        assert!(text.contains(&max), "{text}");
    }

    #[test]
    fn regions_and_endpoints_are_checked() {
        for good in ["us-east-1", "eu-central-1", "ap-northeast-2"] {
            assert!(region(good).is_ok(), "{good}");
        }
        for bad in ["", "us east 1", "US-EAST-1", "-us", "us-", "us.east"] {
            assert!(region(bad).is_err(), "{bad:?}");
        }
        for good in [
            "http://127.0.0.1:8080",
            "https://lightsail.us-east-1.amazonaws.com/",
        ] {
            assert!(endpoint("AWS_ENDPOINT_URL", good).is_ok(), "{good}");
        }
        for bad in ["", "not-a-url", "ftp://x", "http://", "https:// x"] {
            assert!(endpoint("AWS_ENDPOINT_URL", bad).is_err(), "{bad:?}");
        }
    }
}
