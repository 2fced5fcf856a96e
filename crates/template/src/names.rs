//! The name and value rules of the AWS IoT registry API, checked on literal
//! values when a template is parsed and on evaluated values when it is
//! rendered, so a template cannot produce what AWS IoT would refuse.

/// True if `name` is a valid provisioning template name: 1 to 36 of
/// `[0-9A-Za-z_-]`.
pub fn valid_template_name(name: &str) -> bool {
    (1..=36).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True if `name` is a valid thing name: 1 to 128 of `[a-zA-Z0-9:_-]`.
/// Thing type, thing group and billing group names follow the same rule.
pub fn valid_thing_name(name: &str) -> bool {
    idmint_types::ThingName::parse(name).is_ok()
}

/// Checks a thing type, thing group or billing group name.
pub(crate) fn check_registry_name(what: &str, name: &str) -> Result<(), String> {
    if valid_thing_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid {what} (1 to 128 of [a-zA-Z0-9:_-])"
        ))
    }
}

/// Checks a thing attribute name: 1 to 128 of `[a-zA-Z0-9_.,@/:#-]`.
pub(crate) fn check_attribute_name(name: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'.' | b',' | b'@' | b'/' | b':' | b'#' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid attribute name (1 to 128 of [a-zA-Z0-9_.,@/:#-])"
        ))
    }
}

/// Checks a thing attribute value: up to 800 of `[a-zA-Z0-9_.,@/:#=[]-]`.
pub(crate) fn check_attribute_value(value: &str) -> Result<(), String> {
    let ok = value.len() <= 800
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'.' | b',' | b'@' | b'/' | b':' | b'#' | b'=' | b'[' | b']' | b'-'
                )
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid attribute value (up to 800 of [a-zA-Z0-9_.,@/:#=[]-])",
            shorten(value)
        ))
    }
}

/// Checks an IoT policy name: 1 to 128 of `[\w+=,.@-]`.
pub(crate) fn check_policy_name(name: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid policy name (1 to 128 of [a-zA-Z0-9_+=,.@-])",
            shorten(name)
        ))
    }
}

/// Checks a declared parameter name: 1 to 128 of `[A-Za-z0-9_.:-]`. This
/// refuses names with spaces or braces, which no `Ref` or `${..}` can use
/// cleanly (the AWS documentation's own examples once declared
/// `"ThingName "` with a trailing space).
pub(crate) fn check_parameter_name(name: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid parameter name (1 to 128 of [A-Za-z0-9_.:-])",
            shorten(name)
        ))
    }
}

/// At most 64 characters of `text`, for error messages about long values.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names() {
        assert!(valid_template_name("fleet-template_1"));
        assert!(valid_template_name(&"a".repeat(36)));
        assert!(!valid_template_name(&"a".repeat(37)));
        assert!(!valid_template_name(""));
        assert!(!valid_template_name("with space"));
        assert!(!valid_template_name("colon:no"));
        assert!(!valid_template_name("é"));
    }

    #[test]
    fn thing_names() {
        assert!(valid_thing_name("sensor:0001_a-b"));
        assert!(valid_thing_name(&"x".repeat(128)));
        assert!(!valid_thing_name(&"x".repeat(129)));
        assert!(!valid_thing_name(""));
        assert!(!valid_thing_name("a/b"));
        assert!(!valid_thing_name("a b"));
    }

    #[test]
    fn attributes_and_policies() {
        assert!(check_attribute_name("serial.number@x/y#z").is_ok());
        assert!(check_attribute_name("").is_err());
        assert!(check_attribute_value("").is_ok());
        assert!(check_attribute_value("a=[1]").is_ok());
        assert!(check_attribute_value("New York").is_err());
        assert!(check_attribute_value(&"v".repeat(801)).is_err());
        assert!(check_policy_name("Device+Policy=1,v.2@x-y_z").is_ok());
        assert!(check_policy_name("no/slash").is_err());
        assert!(check_parameter_name("AWS::IoT::Certificate::Id").is_ok());
        assert!(check_parameter_name("ThingName ").is_err());
    }

    #[test]
    fn shorten_respects_char_boundaries() {
        let long = "é".repeat(100);
        let short = shorten(&long);
        assert!(short.ends_with("..."));
        assert_eq!(short.chars().count(), 67);
        assert_eq!(shorten("abc"), "abc");
    }
}
