//! The AWS IoT fleet provisioning topics, parsed, and what each kind of
//! client may publish and subscribe to.

/// A fleet provisioning operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `$aws/certificates/create/{fmt}`.
    CreateKeysAndCertificate,
    /// `$aws/certificates/create-from-csr/{fmt}`.
    CreateCertificateFromCsr,
    /// `$aws/provisioning-templates/{template}/provision/{fmt}`.
    RegisterThing(String),
}

/// The payload encoding a request names in its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// CBOR.
    Cbor,
}

/// A request topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetTopic {
    /// The operation.
    pub operation: Operation,
    /// The payload encoding.
    pub format: Format,
}

const CREATE: &str = "$aws/certificates/create/";
const CREATE_FROM_CSR: &str = "$aws/certificates/create-from-csr/";
const TEMPLATES: &str = "$aws/provisioning-templates/";

fn format(s: &str) -> Option<Format> {
    match s {
        "json" => Some(Format::Json),
        "cbor" => Some(Format::Cbor),
        _ => None,
    }
}

impl FleetTopic {
    /// Parses a request topic (not a response topic).
    pub fn parse(topic: &str) -> Option<FleetTopic> {
        if let Some(f) = topic.strip_prefix(CREATE) {
            return Some(FleetTopic {
                operation: Operation::CreateKeysAndCertificate,
                format: format(f)?,
            });
        }
        if let Some(f) = topic.strip_prefix(CREATE_FROM_CSR) {
            return Some(FleetTopic {
                operation: Operation::CreateCertificateFromCsr,
                format: format(f)?,
            });
        }
        let rest = topic.strip_prefix(TEMPLATES)?;
        let (template, f) = rest.split_once("/provision/")?;
        if template.is_empty() || template.contains('/') {
            return None;
        }
        Some(FleetTopic {
            operation: Operation::RegisterThing(template.to_string()),
            format: format(f)?,
        })
    }

    /// The request topic.
    pub fn request(&self) -> String {
        let f = match self.format {
            Format::Json => "json",
            Format::Cbor => "cbor",
        };
        match &self.operation {
            Operation::CreateKeysAndCertificate => format!("{CREATE}{f}"),
            Operation::CreateCertificateFromCsr => format!("{CREATE_FROM_CSR}{f}"),
            Operation::RegisterThing(t) => format!("{TEMPLATES}{t}/provision/{f}"),
        }
    }

    /// `<request>/accepted`.
    pub fn accepted(&self) -> String {
        format!("{}/accepted", self.request())
    }

    /// `<request>/rejected`.
    pub fn rejected(&self) -> String {
        format!("{}/rejected", self.request())
    }

    /// The operation's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self.operation {
            Operation::CreateKeysAndCertificate => "CreateKeysAndCertificate",
            Operation::CreateCertificateFromCsr => "CreateCertificateFromCsr",
            Operation::RegisterThing(_) => "RegisterThing",
        }
    }

    /// Whether a claim allowed `templates` may make this request.
    pub fn allowed_for_claim(&self, templates: &[String]) -> bool {
        match &self.operation {
            Operation::RegisterThing(t) => templates.iter().any(|x| x == t),
            _ => true,
        }
    }
}

/// Whether a claim allowed `templates` may subscribe to `filter`: the
/// `/accepted` or `/rejected` topic (or `/+`) of a request it may make.
pub fn claim_may_subscribe(filter: &str, templates: &[String]) -> bool {
    let Some((request, last)) = filter.rsplit_once('/') else {
        return false;
    };
    if !matches!(last, "accepted" | "rejected" | "+") {
        return false;
    }
    FleetTopic::parse(request).is_some_and(|t| t.allowed_for_claim(templates))
}

/// Topics reserved for the fleet provisioning service and its events:
/// devices may not publish there, and only admins may subscribe to events.
pub fn reserved(topic: &str) -> bool {
    topic.starts_with("$aws/certificates/")
        || topic.starts_with(TEMPLATES)
        || topic.starts_with("$aws/events/")
}

/// Whether `topic` matches the subscription `filter` (MQTT 4.7): `+` is one
/// level, a trailing `#` any number (including none), and a filter that
/// starts with a wildcard matches no topic starting with `$`.
pub fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(_) if f == "+" => {}
            Some(t) if t == f => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// The JITP event topic for a CA.
pub fn registered_event_topic(ca_certificate_id: &str) -> String {
    format!("$aws/events/certificates/registered/{ca_certificate_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_operations_in_both_formats() {
        let t = FleetTopic::parse("$aws/certificates/create/json").expect("create");
        assert_eq!(t.operation, Operation::CreateKeysAndCertificate);
        assert_eq!(t.accepted(), "$aws/certificates/create/json/accepted");
        let t = FleetTopic::parse("$aws/certificates/create-from-csr/cbor").expect("csr");
        assert_eq!(t.format, Format::Cbor);
        assert_eq!(
            t.rejected(),
            "$aws/certificates/create-from-csr/cbor/rejected"
        );
        let t =
            FleetTopic::parse("$aws/provisioning-templates/Fleet_1/provision/json").expect("rt");
        assert_eq!(t.operation, Operation::RegisterThing("Fleet_1".into()));
        assert_eq!(
            t.request(),
            "$aws/provisioning-templates/Fleet_1/provision/json"
        );
    }

    #[test]
    fn refuses_other_topics() {
        for bad in [
            "$aws/certificates/create/xml",
            "$aws/certificates/create/json/accepted",
            "$aws/provisioning-templates//provision/json",
            "$aws/provisioning-templates/a/b/provision/json",
            "devices/1/telemetry",
            "",
        ] {
            assert_eq!(FleetTopic::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn matches_filters_as_mqtt_says() {
        assert!(matches(
            "$aws/certificates/create/json/accepted",
            "$aws/certificates/create/json/accepted"
        ));
        assert!(matches(
            "$aws/certificates/create/json/accepted",
            "$aws/certificates/create/json/+"
        ));
        assert!(matches(
            "$aws/events/certificates/registered/x",
            "$aws/events/#"
        ));
        assert!(!matches("$aws/events/certificates/registered/x", "#"));
        assert!(!matches("$aws/x", "+/x"));
        assert!(matches("a/b/c", "a/#"));
        assert!(matches("a", "a/#"));
        assert!(matches("a/b", "a/+"));
        assert!(!matches("a/b/c", "a/+"));
        assert!(!matches("a", "a/b"));
        assert!(!matches("a/b", "a"));
    }

    #[test]
    fn claims_subscribe_only_to_their_responses() {
        let templates = vec!["T".to_string()];
        assert!(claim_may_subscribe(
            "$aws/certificates/create/json/accepted",
            &templates
        ));
        assert!(claim_may_subscribe(
            "$aws/provisioning-templates/T/provision/cbor/+",
            &templates
        ));
        assert!(!claim_may_subscribe(
            "$aws/provisioning-templates/U/provision/json/accepted",
            &templates
        ));
        assert!(!claim_may_subscribe("#", &templates));
        assert!(!claim_may_subscribe("$aws/certificates/#", &templates));
        assert!(!claim_may_subscribe("devices/x", &templates));
    }
}
