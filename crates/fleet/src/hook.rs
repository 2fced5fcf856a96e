//! Pre-provisioning hooks: an HTTP(S) webhook asked, with AWS IoT's request
//! shape, whether a device may be provisioned (anything but an explicit
//! `allowProvisioning: true` denies), or the built-in allow list of serial
//! numbers for makers without a web service. The transport is a
//! [`HookClient`] ([`HttpHookClient`] in production); what its answer
//! means is [`decide`]'s alone.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
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

/// What a hook answered (AWS's field names), as the transport read it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookAnswer {
    /// Provisioning goes ahead only when this is exactly `true`.
    pub allow_provisioning: Option<serde_json::Value>,
    /// Template parameters the hook replaces.
    #[serde(default)]
    pub parameter_overrides: BTreeMap<String, serde_json::Value>,
}

/// Why a hook gave no answer. Every one of these denies provisioning.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookFailure {
    /// No answer within the template's timeout.
    #[error("the hook did not answer in time")]
    TimedOut,
    /// The hook could not be reached (connection refused, TLS, DNS).
    #[error("the hook could not be reached: {0}")]
    Unreachable(String),
    /// The hook answered with a status other than 2xx.
    #[error("the hook answered HTTP {0}")]
    Status(u16),
    /// The hook's body is not the expected JSON.
    #[error("the hook's answer is not the expected JSON")]
    NotJson,
}

/// How a pre-provisioning hook is reached: one JSON request with a
/// deadline. [`HttpHookClient`] is the one idmint runs; what the answer
/// means (only an explicit `true` allows) is decided by [`decide`], not by
/// the transport.
pub trait HookClient: Send + Sync {
    /// Sends `request` to `hook` and reads its answer, within `timeout`.
    fn call<'a>(
        &'a self,
        hook: &'a str,
        request: &'a HookRequest<'a>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<HookAnswer, HookFailure>> + Send + 'a>>;
}

/// The hook as a webhook: an HTTP(S) POST with a JSON body, one shared
/// connection pool for the process.
#[derive(Clone, Debug)]
pub struct HttpHookClient {
    client: reqwest::Client,
}

impl HttpHookClient {
    /// The process-wide client (connections are pooled across requests).
    pub fn shared() -> &'static HttpHookClient {
        static CLIENT: OnceLock<HttpHookClient> = OnceLock::new();
        CLIENT.get_or_init(|| HttpHookClient {
            client: reqwest::Client::builder()
                .user_agent(concat!("idmint/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
        })
    }
}

impl HookClient for HttpHookClient {
    fn call<'a>(
        &'a self,
        hook: &'a str,
        request: &'a HookRequest<'a>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<HookAnswer, HookFailure>> + Send + 'a>> {
        Box::pin(async move {
            let response = self
                .client
                .post(hook)
                .timeout(timeout)
                .json(request)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        HookFailure::TimedOut
                    } else {
                        HookFailure::Unreachable(e.to_string())
                    }
                })?;
            if !response.status().is_success() {
                return Err(HookFailure::Status(response.status().as_u16()));
            }
            response.json().await.map_err(|e| {
                if e.is_timeout() {
                    HookFailure::TimedOut
                } else {
                    HookFailure::NotJson
                }
            })
        })
    }
}

/// What a hook's answer means: the parameter overrides to merge when it
/// allowed provisioning (anything but an explicit `true` denies), or the
/// refusal the device is sent.
pub fn decide(
    answer: Result<HookAnswer, HookFailure>,
    timeout_ms: i64,
) -> Result<BTreeMap<String, String>, Rejection> {
    let answer = answer.map_err(|failure| match failure {
        HookFailure::TimedOut => denied(format!(
            "the pre-provisioning hook did not answer within {timeout_ms} ms"
        )),
        HookFailure::Unreachable(_) => denied("the pre-provisioning hook could not be reached"),
        HookFailure::Status(code) => {
            denied(format!("the pre-provisioning hook answered HTTP {code}"))
        }
        HookFailure::NotJson => {
            denied("the pre-provisioning hook's answer is not the expected JSON")
        }
    })?;
    if answer.allow_provisioning != Some(serde_json::Value::Bool(true)) {
        return Err(denied(
            "the pre-provisioning hook did not allow provisioning",
        ));
    }
    Ok(answer
        .parameter_overrides
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// The ARN-shaped name hooks written for AWS expect.
pub fn template_arn(template: &str) -> String {
    format!("arn:idmint:iot:local:000000000000:provisioningtemplate/{template}")
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
        let answer = HttpHookClient::shared()
            .call(hook, request, timeout)
            .await
            .inspect_err(|e| tracing::warn!(%hook, "pre-provisioning hook failed: {e}"));
        decide(answer, timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: serde_json::Value) -> Result<HookAnswer, HookFailure> {
        Ok(serde_json::from_value(json).expect("a hook answer"))
    }

    #[test]
    fn only_an_explicit_true_allows() {
        for denied in [
            serde_json::json!({}),
            serde_json::json!({"allowProvisioning": false}),
            serde_json::json!({"allowProvisioning": "true"}),
            serde_json::json!({"allowProvisioning": 1}),
            serde_json::json!({"allowProvisioning": null}),
        ] {
            let refused = decide(answer(denied.clone()), 5000).expect_err("denied");
            assert_eq!(refused.status_code, 403, "{denied}");
            assert_eq!(refused.error_code, "ACCESS_DENIED");
        }
        let allowed = decide(
            answer(serde_json::json!({
                "allowProvisioning": true,
                "parameterOverrides": {"Region": "eu", "Slots": 4}
            })),
            5000,
        )
        .expect("allowed");
        assert_eq!(allowed["Region"], "eu");
        assert_eq!(allowed["Slots"], "4");
    }

    #[test]
    fn a_hook_that_gives_no_answer_denies_with_the_reason() {
        for (failure, says) in [
            (HookFailure::TimedOut, "did not answer within 250 ms"),
            (
                HookFailure::Unreachable("connection refused".into()),
                "could not be reached",
            ),
            (HookFailure::Status(502), "answered HTTP 502"),
            (HookFailure::NotJson, "not the expected JSON"),
        ] {
            let refused = decide(Err(failure.clone()), 250).expect_err("denied");
            assert_eq!(refused.status_code, 403);
            assert!(refused.message.contains(says), "{failure:?}: {refused}");
            // Nothing of the transport's own error (addresses, TLS detail)
            // reaches the device.
            assert!(!refused.message.contains("connection refused"));
        }
    }
}
