//! MQTT topic names and topic filters (MQTT 3.1.1 §4.7, 5.0 §4.7): the
//! rules the endpoint's codec and the broker ACL compiler share.

/// Whether `topic` may be published to: non-empty, at most 65535 bytes, no
/// NUL and no wildcard (`+`, `#`).
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= usize::from(u16::MAX) && !topic.contains(['\0', '+', '#'])
}

/// Whether `filter` is a valid topic filter: non-empty, at most 65535
/// bytes, no NUL, `+` only as a whole level and `#` only as the whole last
/// level.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "#" => last,
            "+" => true,
            other => !other.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}
