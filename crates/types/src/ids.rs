//! Identifiers of the registry's records — certificate ids, certificate
//! serial numbers and batch ids — each checked once, where it enters
//! (parsed from a URL path, a command-line argument, a vendor's file, or
//! computed from a certificate), and carried typed from there on.

/// The string-backed identifier boilerplate: display, borrowing as `str`,
/// comparison with strings, serde as a plain string (checked when read),
/// and `TryFrom<String>` (what a store row is read through).
macro_rules! string_identifier {
    ($name:ident, $error:ident) => {
        impl $name {
            /// The identifier's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let text = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&text).map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use string_identifier;

/// Shortens refused text for an error message and escapes what would not
/// print.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .collect::<String>()
        .escape_default()
        .to_string()
}

/// A certificate id: the lowercase hex SHA-256 of the certificate's DER, as
/// AWS IoT names certificates. 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertificateId(String);

/// Text that is not a certificate id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a certificate id: {reason} (64 hex digits, the SHA-256 of the certificate; `idmint cert list` shows them)")]
pub struct InvalidCertificateId {
    /// The refused text, escaped for printing.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl CertificateId {
    /// Checks `text`: 64 hex digits, either case (kept lowercase).
    pub fn parse(text: &str) -> Result<CertificateId, InvalidCertificateId> {
        let reason = if text.len() != 64 {
            Some("it is not 64 characters long")
        } else if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some("it holds a character that is not a hex digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidCertificateId {
                text: printable(text),
                reason,
            }),
            None => Ok(CertificateId(text.to_ascii_lowercase())),
        }
    }

    /// The id of the certificate whose DER has this SHA-256.
    pub fn from_sha256(digest: &[u8; 32]) -> CertificateId {
        CertificateId(hex_lower(digest))
    }
}

string_identifier!(CertificateId, InvalidCertificateId);

/// A certificate's serial number: the DER INTEGER's bytes as lowercase hex,
/// without leading zero bytes (`8f01`, not `008f01`); at most 20 octets
/// (RFC 5280 §4.1.2.2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(String);

/// Text that is not a certificate serial number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a certificate serial number: {reason} (up to 40 hex digits)")]
pub struct InvalidSerial {
    /// The refused text, escaped for printing.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The most octets a conforming serial number has.
const MAX_SERIAL_OCTETS: usize = 20;

impl Serial {
    /// Checks `text`: 1 to 40 hex digits, either case, optionally with
    /// `:` between octets as openssl prints them. Leading zero octets are
    /// dropped, so `00:8F:01` and `8f01` are the same serial.
    pub fn parse(text: &str) -> Result<Serial, InvalidSerial> {
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        let reason = if digits.is_empty() {
            Some("it is empty")
        } else if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some("it holds a character that is not a hex digit")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(InvalidSerial {
                text: printable(text),
                reason,
            });
        }
        let digits = digits.to_ascii_lowercase();
        // Keep whole octets: an odd count is read with a leading zero digit.
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let significant = padded
            .as_bytes()
            .chunks(2)
            .position(|octet| octet != b"00")
            .map_or(padded.len() - 2, |first| first * 2);
        let serial = &padded[significant..];
        if serial.len() > MAX_SERIAL_OCTETS * 2 {
            return Err(InvalidSerial {
                text: printable(text),
                reason: "it is longer than 20 octets",
            });
        }
        Ok(Serial(serial.to_string()))
    }

    /// The serial of a DER INTEGER's content bytes (big-endian, two's
    /// complement; a leading zero byte keeps a high bit positive).
    pub fn from_integer_bytes(raw: &[u8]) -> Serial {
        if raw.is_empty() {
            return Serial("00".to_string());
        }
        let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len() - 1);
        Serial(hex_lower(&raw[first..]))
    }
}

string_identifier!(Serial, InvalidSerial);

/// A batch id: 1 to 128 characters, no control characters, no leading or
/// trailing whitespace (the rule for every operator-chosen name but a
/// thing's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(String);

/// Text that is not a batch id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid batch id: {reason}")]
pub struct InvalidBatchId {
    /// The refused text, escaped for printing.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl BatchId {
    /// Checks `text` against the rule.
    pub fn parse(text: &str) -> Result<BatchId, InvalidBatchId> {
        match name_fault(text) {
            Some(reason) => Err(InvalidBatchId {
                text: printable(text),
                reason,
            }),
            None => Ok(BatchId(text.to_string())),
        }
    }
}

string_identifier!(BatchId, InvalidBatchId);

/// What is wrong with an operator-chosen name (a batch, CA, template,
/// token, product or hardware id), if anything: 1 to 128 characters, no
/// control characters, no surrounding whitespace.
pub fn name_fault(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.chars().count() > 128 {
        Some("is longer than 128 characters")
    } else if name.chars().any(char::is_control) {
        Some("contains control characters")
    } else if name.trim() != name {
        Some("has leading or trailing whitespace")
    } else {
        None
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_ids_are_64_hex_digits_kept_lowercase() {
        let upper = "AB".repeat(32);
        let id = CertificateId::parse(&upper).expect("hex");
        assert_eq!(id.as_str(), "ab".repeat(32));
        assert_eq!(CertificateId::from_sha256(&[0xab; 32]), id);
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(65), "../etc/passwd"] {
            let e = CertificateId::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("not a certificate id"), "{e}");
        }
    }

    #[test]
    fn serials_drop_leading_zero_octets_and_colons() {
        for (text, want) in [
            ("8f01", "8f01"),
            ("008F01", "8f01"),
            ("00:8f:01", "8f01"),
            ("f01", "0f01"),
            ("00", "00"),
            ("0", "00"),
        ] {
            assert_eq!(Serial::parse(text).expect(text).as_str(), want, "{text}");
        }
        assert_eq!(Serial::from_integer_bytes(&[0, 0x8f, 1]).as_str(), "8f01");
        assert_eq!(Serial::from_integer_bytes(&[0]).as_str(), "00");
        assert_eq!(Serial::from_integer_bytes(&[]).as_str(), "00");
        for bad in ["", ":", "xyz", &"1".repeat(42)] {
            assert!(Serial::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_ids_follow_the_name_rule() {
        assert_eq!(BatchId::parse("lot-7").expect("valid").as_str(), "lot-7");
        for bad in ["", " lot", "lot\n", &"x".repeat(129)] {
            let e = BatchId::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("not a valid batch id"), "{e}");
        }
    }

    #[test]
    fn identifiers_read_and_write_as_plain_strings() {
        let id: BatchId = serde_json::from_str("\"lot-7\"").expect("json");
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"lot-7\"");
        assert!(serde_json::from_str::<BatchId>("\"\"").is_err());
        assert!(id == "lot-7" && *"lot-7" == id && "lot-7" == id.as_str());
    }
}
