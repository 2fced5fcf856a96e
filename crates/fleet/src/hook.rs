//! Pre-provisioning hooks: an HTTP(S) webhook asked, with AWS IoT's request
//! shape, whether a device may be provisioned (anything but an explicit
//! `allowProvisioning: true` denies), or the built-in allow list of serial
//! numbers for makers without a web service.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::templates::ALLOW_LIST_HOOK;
use super::Rejection;

/// What the hook is sent (AWS's field names).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRequest<'a> {
    /// The claim certificate that asked.
    pub claim_certificate_id: &'a str,
    /// The certificate being registered.
    pub certificate_id: &'a str,
    /// Its PEM.
    pub certificate_pem: &'a str,
    /// The template, as an ARN-shaped string.
    pub template_arn: String,
    /// The MQTT client id.
    pub client_id: &'a str,
    /// The device's parameters.
    pub parameters: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HookResponse {
    allow_provisioning: Option<serde_json::Value>,
    #[serde(default)]
    parameter_overrides: BTreeMap<String, serde_json::Value>,
}

/// The ARN-shaped name hooks written for AWS expect.
pub fn template_arn(template: &str) -> String {
    format!("arn:idmint:iot:local:000000000000:provisioningtemplate/{template}")
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("idmint/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
}

fn denied(message: impl Into<String>) -> Rejection {
    Rejection::forbidden("ACCESS_DENIED", message)
}

impl crate::Fleet<'_> {
    /// Runs a template's hook. Returns the parameter overrides to merge, or
    /// `ACCESS_DENIED`.
    pub async fn run_hook(
        &self,
        hook: &str,
        timeout_ms: i64,
        template: &str,
        request: &HookRequest<'_>,
    ) -> Result<BTreeMap<String, String>, Rejection> {
        if hook == ALLOW_LIST_HOOK {
            let serial = request
                .parameters
                .get("SerialNumber")
                .ok_or_else(|| denied("the allow-list hook needs the SerialNumber parameter"))?;
            return if self.store().allow_listed(template, serial).await? {
                Ok(BTreeMap::new())
            } else {
                Err(denied(format!(
                    "serial number {serial:?} is not on the allow list of template {template}"
                )))
            };
        }
        let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(5000));
        let response = client()
            .post(hook)
            .timeout(timeout)
            .json(request)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(%hook, "pre-provisioning hook failed: {e}");
                if e.is_timeout() {
                    denied(format!(
                        "the pre-provisioning hook did not answer within {timeout_ms} ms"
                    ))
                } else {
                    denied("the pre-provisioning hook could not be reached")
                }
            })?;
        if !response.status().is_success() {
            return Err(denied(format!(
                "the pre-provisioning hook answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let body: HookResponse = response
            .json()
            .await
            .map_err(|_| denied("the pre-provisioning hook's answer is not the expected JSON"))?;
        if body.allow_provisioning != Some(serde_json::Value::Bool(true)) {
            return Err(denied(
                "the pre-provisioning hook did not allow provisioning",
            ));
        }
        body.parameter_overrides
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k, s)),
                other => Ok((k, other.to_string())),
            })
            .collect()
    }
}
