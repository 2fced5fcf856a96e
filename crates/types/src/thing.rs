//! Thing names: the one rule every layer applies to the name of a thing,
//! wherever it came from (a CSR's common name, a provisioning template, a
//! vendor manifest, a REST request, the command line).
//!
//! The rule is AWS IoT's: 1 to 128 characters of `[a-zA-Z0-9:_-]`. It is
//! also what keeps a name safe where idmint puts it: substituted into
//! MQTT topics and broker ACLs (no `/`, `+`, `#`), into policy patterns
//! (no `*`, `?`, `$`), into URL paths and file names (no `.`, no `/`, no
//! whitespace or control characters).

/// The longest thing name, characters.
pub const MAX_THING_NAME: usize = 128;

/// A thing name that follows the rule of this module.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThingName(String);

/// A name that is not a valid thing name, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a valid thing name: {reason} (1 to 128 of [a-zA-Z0-9:_-])")]
pub struct InvalidThingName {
    /// The refused name, escaped for printing.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ThingName {
    /// Checks `name` against the rule.
    pub fn parse(name: &str) -> Result<ThingName, InvalidThingName> {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_THING_NAME {
            Some("it is longer than 128 characters")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
        {
            Some("it holds a character other than letters, digits, ':', '_' and '-'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidThingName {
                name: crate::ids::printable(name),
                reason,
            }),
            None => Ok(ThingName(name.to_string())),
        }
    }
}

crate::ids::string_identifier!(ThingName, InvalidThingName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aws_accepts_are_accepted() {
        for name in ["dev-0001", "a", "ACME:sensor_7", &"x".repeat(128)] {
            assert_eq!(ThingName::parse(name).expect(name).as_str(), name);
        }
    }

    #[test]
    fn names_that_could_escape_a_topic_a_path_or_a_pattern_are_refused() {
        for name in [
            "",
            "+",
            "#",
            "a/b",
            "dev/+/x",
            "..",
            "a.b",
            "*",
            "a?",
            "${iot:ClientId}",
            "a b",
            " dev",
            "dev\n",
            "dev\0",
            "dév",
            &"x".repeat(129),
        ] {
            let e = ThingName::parse(name).expect_err(name);
            assert!(e.to_string().contains("not a valid thing name"), "{e}");
        }
    }

    #[test]
    fn deserializing_checks_the_rule() {
        let ok: ThingName = serde_json::from_str("\"dev-1\"").expect("valid");
        assert_eq!(ok.to_string(), "dev-1");
        assert!(serde_json::from_str::<ThingName>("\"dev/1\"").is_err());
        assert_eq!(serde_json::to_string(&ok).expect("json"), "\"dev-1\"");
    }
}
