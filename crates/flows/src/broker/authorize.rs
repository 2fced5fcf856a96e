//! Decisions for outside brokers' HTTP authorizers (EMQX's HTTP
//! authorizer, mosquitto-go-auth's HTTP backend): may the device that
//! connected as `username` (its certificate's common name, which is its
//! thing's name) with `client_id` do this to this topic? Answered from the
//! live registry with the same policy evaluator as idmint's own endpoint.

use idmint_registry::{CertificateFilter, CertificateStatus};

use crate::access::policy::{Decision, IotAction};
use crate::access::{Action, Authorized};
use crate::{FlowError, Idmint};

/// What a broker asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerAccess {
    /// Publish to a topic (`iot:Publish`).
    Publish,
    /// Subscribe to a filter (`iot:Subscribe` on the filter).
    Subscribe,
    /// Subscribe for a broker that never asks again per message (EMQX):
    /// `iot:Subscribe` on the filter and `iot:Receive` on its text.
    SubscribeAndReceive,
    /// Receive one message on a topic (`iot:Receive`).
    Receive,
}

impl Idmint {
    /// Whether the device `username` (connected as `client_id`) may do
    /// `access` on `topic`. The device's certificates in force whose common
    /// name is `username` are asked: a Deny in any wins, else an Allow in
    /// any; a name with no certificate in force is denied.
    pub async fn broker_decision(
        &self,
        who: &Authorized,
        username: &str,
        client_id: &str,
        access: BrokerAccess,
        topic: &str,
    ) -> Result<Decision, FlowError> {
        if who.action() != Action::Read {
            return Err(FlowError::Invalid(
                "broker decisions need a read authorization".into(),
            ));
        }
        let certificates = self
            .store()
            .list_certificates(&CertificateFilter {
                thing: Some(username.to_string()),
                status: Some(CertificateStatus::Active),
                ..CertificateFilter::default()
            })
            .await?;
        let asks: &[IotAction] = match access {
            BrokerAccess::Publish => &[IotAction::Publish],
            BrokerAccess::Subscribe => &[IotAction::Subscribe],
            BrokerAccess::SubscribeAndReceive => &[IotAction::Subscribe, IotAction::Receive],
            BrokerAccess::Receive => &[IotAction::Receive],
        };
        let mut decision = Decision::NoMatch;
        for certificate in certificates {
            if !crate::access::in_force(&certificate) {
                continue;
            }
            let subject = self.policy_subject(&certificate.id, client_id).await?;
            if subject.variables.common_name.as_deref() != Some(username) {
                continue;
            }
            let mut each = Decision::Allow;
            for action in asks {
                match subject.decide(*action, topic) {
                    Decision::Allow => {}
                    other => {
                        each = other;
                        break;
                    }
                }
            }
            match each {
                Decision::ExplicitDeny => return Ok(Decision::ExplicitDeny),
                Decision::Allow => decision = Decision::Allow,
                Decision::NoMatch => {}
            }
        }
        Ok(decision)
    }
}
