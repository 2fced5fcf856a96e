//! Thing names: the one rule every layer applies to the name of a thing,
//! wherever it came from (a CSR's common name, a provisioning template, a
//! vendor manifest, a REST request, the command line).
//!
//! The rule is AWS IoT's: 1 to 128 characters of `[a-zA-Z0-9:_-]`. It is
//! also what keeps a name safe where idmint puts it: substituted into
//! MQTT topics and broker ACLs (no `/`, `+`, `#`), into policy patterns
//! (no `*`, `?`, `$`), into URL paths and file names (no `.`, no `/`, no
//! whitespace or control characters).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
                name: name
                    .chars()
                    .take(200)
                    .collect::<String>()
                    .escape_default()
                    .to_string(),
                reason,
            }),
            None => Ok(ThingName(name.to_string())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ThingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ThingName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ThingName {
    type Err = InvalidThingName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ThingName::parse(s)
    }
}

impl Serialize for ThingName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ThingName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ThingName::parse(&text).map_err(serde::de::Error::custom)
    }
}

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
