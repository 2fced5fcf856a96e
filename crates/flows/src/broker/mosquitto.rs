//! `idmint broker mosquitto`: the attached AWS IoT policies compiled to a
//! mosquitto `acl_file`, one `user` block per certificate common name (the
//! broker runs with `use_identity_as_username true`).
//!
//! Only what has an exact mosquitto form is written; everything else is
//! reported and left out, so the broker denies it:
//! - a topic resource (after the thing's variables are filled in) that is a
//!   literal topic, `*`, or `PREFIX/*` with no other wildcard; `PREFIX/*`
//!   becomes `PREFIX/#` preceded by `topic deny PREFIX` (`#` also matches
//!   its parent, `*` does not);
//! - `iot:Publish` becomes `write`; `read` covers subscribing and
//!   receiving at once, so it is written for a topic only when both
//!   `iot:Subscribe` (on `topicfilter/…`) and `iot:Receive` (on `topic/…`)
//!   are allowed with the same text;
//! - Deny statements become `topic deny`, written first: mosquitto applies
//!   the first line that matches, and a deny line denies every access.
//!
//! `${iot:ClientId}` cannot be known before a session, `?` and inner `*`
//! have no MQTT form, and `iot:Connect` is decided by the broker's trust in
//! the certificate (CA file and CRL), not by the ACL: all are reported.

use std::collections::{BTreeMap, BTreeSet};

use crate::access::policy::{Condition, Effect, IotAction, ResourceKind, Variable};
use crate::access::PolicySubject;
use idmint_registry::CertificateId;

use crate::{FlowError, Idmint};

/// A compiled ACL file and what could not be compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MosquittoAcl {
    /// The `acl_file` text.
    pub text: String,
    /// How many `user` blocks it has.
    pub users: usize,
    /// What was left out, and why (one line each).
    pub left_out: Vec<String>,
}

/// The topic lines of one user, collected before they are written.
#[derive(Debug, Default)]
struct UserLines {
    deny: BTreeSet<String>,
    write: BTreeSet<String>,
    subscribe: BTreeSet<String>,
    receive: BTreeSet<String>,
    /// Parents of `PREFIX/#` lines that `*` does not match.
    parents: BTreeSet<String>,
}

impl Idmint {
    /// Compiles the policies attached to every certificate in force.
    pub async fn mosquitto_acl(&self) -> Result<MosquittoAcl, FlowError> {
        let mut certificates: BTreeSet<CertificateId> = BTreeSet::new();
        for (certificate, _) in self.store().policy_attachments().await? {
            certificates.insert(certificate);
        }
        let mut users: BTreeMap<String, UserLines> = BTreeMap::new();
        let mut left_out = Vec::new();
        for certificate in certificates {
            if !self.certificate_in_force(&certificate).await? {
                continue;
            }
            let subject = self.policy_subject(&certificate, "").await?;
            let Some(user) = subject.variables.common_name.clone() else {
                left_out.push(format!(
                    "certificate {certificate}: its subject has no common name, which mosquitto's use_identity_as_username needs"
                ));
                continue;
            };
            if user.chars().any(char::is_control) || user.trim() != user {
                left_out.push(format!(
                    "certificate {certificate}: common name {:?} cannot be an ACL user name",
                    user.escape_default().to_string()
                ));
                continue;
            }
            let lines = users.entry(user.clone()).or_default();
            collect(&user, &subject, lines, &mut left_out);
        }
        let mut text = String::from(
            "# idmint broker mosquitto: compiled from the policies attached to each certificate.\n\
             # Regenerate with `idmint broker mosquitto`; edits are overwritten.\n",
        );
        let count = users.len();
        for (user, lines) in users {
            text.push_str(&format!("\nuser {user}\n"));
            let read: BTreeSet<&String> = lines.subscribe.intersection(&lines.receive).collect();
            for topic in lines.subscribe.symmetric_difference(&lines.receive) {
                left_out.push(format!(
                    "user {user}: {topic:?} is allowed for only one of iot:Subscribe and iot:Receive; mosquitto's read grants both"
                ));
            }
            let allowed: BTreeSet<&String> =
                lines.write.iter().chain(read.iter().copied()).collect();
            let mut deny = lines.deny.clone();
            for parent in &lines.parents {
                if allowed.contains(parent) {
                    left_out.push(format!(
                        "user {user}: {parent:?} is allowed itself, so PREFIX/# lines also grant it every access the ACL gives {parent:?}/#"
                    ));
                } else {
                    deny.insert(parent.clone());
                }
            }
            for topic in &deny {
                text.push_str(&format!("topic deny {topic}\n"));
            }
            for topic in &lines.write {
                if read.contains(topic) {
                    text.push_str(&format!("topic readwrite {topic}\n"));
                } else {
                    text.push_str(&format!("topic write {topic}\n"));
                }
            }
            for topic in read {
                if !lines.write.contains(topic) {
                    text.push_str(&format!("topic read {topic}\n"));
                }
            }
        }
        Ok(MosquittoAcl {
            text,
            users: count,
            left_out,
        })
    }
}

/// Adds the lines of `subject`'s policies to `lines`.
fn collect(user: &str, subject: &PolicySubject, lines: &mut UserLines, left_out: &mut Vec<String>) {
    let attached = subject.variables.thing_name.is_some();
    for (p, policy) in subject.policies.iter().enumerate() {
        for (s, statement) in policy.statements().iter().enumerate() {
            let at = match &statement.sid {
                Some(sid) => format!("user {user}: statement {sid:?}"),
                None => format!("user {user}: policy {p} statement {s}"),
            };
            let applies = statement.conditions.iter().all(|c| match c {
                Condition::ThingAttached(want) => *want == attached,
            });
            if !applies {
                continue;
            }
            for action in &statement.actions {
                let wanted = match action {
                    IotAction::Connect => {
                        if statement.effect == Effect::Deny {
                            left_out.push(format!("{at}: a Deny of iot:Connect has no mosquitto form (revoke the certificate instead)"));
                        }
                        continue;
                    }
                    IotAction::Publish | IotAction::Receive => ResourceKind::Topic,
                    IotAction::Subscribe => ResourceKind::TopicFilter,
                };
                for resource in &statement.resources {
                    if resource.kind != wanted && resource.kind != ResourceKind::Any {
                        continue;
                    }
                    let topic = if resource.kind == ResourceKind::Any {
                        Some("*".to_string())
                    } else if resource.uses(&Variable::ClientId) {
                        left_out.push(format!(
                            "{at}: {:?} uses ${{iot:ClientId}}, unknown before a session",
                            resource.pattern
                        ));
                        continue;
                    } else {
                        subject.variables.substitute(&resource.pattern)
                    };
                    let Some(topic) = topic else {
                        // A variable without a value matches nothing in AWS either.
                        continue;
                    };
                    let Some((line, parent)) = mqtt_form(&topic, wanted) else {
                        left_out.push(format!(
                            "{at}: {} on {topic:?} has no exact mosquitto form",
                            action.name()
                        ));
                        continue;
                    };
                    if statement.effect == Effect::Deny {
                        lines.deny.insert(line);
                        continue;
                    }
                    if let Some(parent) = parent {
                        lines.parents.insert(parent);
                    }
                    match action {
                        IotAction::Publish => lines.write.insert(line),
                        IotAction::Receive => lines.receive.insert(line),
                        IotAction::Subscribe => lines.subscribe.insert(line),
                        IotAction::Connect => false,
                    };
                }
            }
        }
    }
}

/// The mosquitto topic for an AWS resource text, and the parent a `/#`
/// line must exclude; `None` when there is no exact form.
fn mqtt_form(text: &str, kind: ResourceKind) -> Option<(String, Option<String>)> {
    if text == "*" {
        return Some(("#".into(), None));
    }
    let (base, star) = match text.strip_suffix("/*") {
        Some(base) => (base, true),
        None => (text, false),
    };
    if base.is_empty() || base.contains(['*', '?']) || base.chars().any(char::is_control) {
        return None;
    }
    // In a topic (not a filter), `+` and `#` are literal characters that no
    // real topic holds: AWS grants nothing, mosquitto would grant a level.
    if kind == ResourceKind::Topic && base.contains(['+', '#']) {
        return None;
    }
    if kind == ResourceKind::TopicFilter && !crate::mqtt_topic::valid_filter(base) {
        return None;
    }
    Some(if star {
        (format!("{base}/#"), Some(base.to_string()))
    } else {
        (base.to_string(), None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::policy::{PolicyDocument, PolicyVariables};

    fn subject(document: &str) -> PolicySubject {
        PolicySubject {
            policies: vec![PolicyDocument::parse(document).expect("policy")],
            variables: PolicyVariables {
                client_id: String::new(),
                thing_name: Some("dev-1".into()),
                common_name: Some("dev-1".into()),
                ..PolicyVariables::default()
            },
        }
    }

    fn compile(document: &str) -> (UserLines, Vec<String>) {
        let mut lines = UserLines::default();
        let mut left_out = Vec::new();
        collect("dev-1", &subject(document), &mut lines, &mut left_out);
        (lines, left_out)
    }

    #[test]
    fn exact_forms_and_what_is_left_out() {
        assert_eq!(
            mqtt_form("a/b", ResourceKind::Topic),
            Some(("a/b".into(), None))
        );
        assert_eq!(
            mqtt_form("a/b/*", ResourceKind::Topic),
            Some(("a/b/#".into(), Some("a/b".into())))
        );
        assert_eq!(
            mqtt_form("*", ResourceKind::Topic),
            Some(("#".into(), None))
        );
        assert_eq!(mqtt_form("a/*/b", ResourceKind::Topic), None);
        assert_eq!(mqtt_form("a/?", ResourceKind::Topic), None);
        assert_eq!(mqtt_form("a/+", ResourceKind::Topic), None);
        assert_eq!(
            mqtt_form("a/+", ResourceKind::TopicFilter),
            Some(("a/+".into(), None))
        );
        assert_eq!(mqtt_form("a/#/b", ResourceKind::TopicFilter), None);
        // A thing attribute from a vendor's file cannot add ACL lines.
        assert_eq!(
            mqtt_form("a/b\ntopic readwrite #", ResourceKind::Topic),
            None
        );
        assert_eq!(
            mqtt_form("a\r\nuser admin", ResourceKind::TopicFilter),
            None
        );
    }

    #[test]
    fn thing_variables_fill_in_and_client_id_is_reported() {
        let (lines, left_out) = compile(
            r#"{"Version":"2012-10-17","Statement":[
              {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/dev/${iot:Connection.Thing.ThingName}/*"},
              {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/cmd/${iot:Connection.Thing.ThingName}"},
              {"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/cmd/${iot:Connection.Thing.ThingName}"},
              {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/c/${iot:ClientId}"},
              {"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/dev/dev-1/admin"}]}"#,
        );
        assert!(lines.write.contains("dev/dev-1/#"));
        assert!(lines.parents.contains("dev/dev-1"));
        assert!(lines.subscribe.contains("cmd/dev-1") && lines.receive.contains("cmd/dev-1"));
        assert!(lines.deny.contains("dev/dev-1/admin"));
        assert_eq!(left_out.len(), 1, "{left_out:?}");
        assert!(left_out[0].contains("iot:ClientId"));
    }
}
