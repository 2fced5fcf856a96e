//! Managing provisioning templates: every template is parsed and checked
//! when it is created or changed, so a fault is reported with its path to
//! the engineer who wrote it, not to a device at its first boot.

use idmint_registry::{NewTemplate, ProvisioningTemplate, RegistryError, TemplateKind};
use idmint_template::{valid_template_name, Template, TemplateType};

use idmint_flows::FlowError;

/// The built-in hook that checks the `SerialNumber` parameter against the
/// template's allow list.
pub const ALLOW_LIST_HOOK: &str = "allow-list";

/// A template to create.
#[derive(Clone, Debug)]
pub struct TemplateRequest {
    /// Name, 1–36 of `[0-9A-Za-z_-]`.
    pub name: String,
    /// Fleet or JITP.
    pub kind: TemplateKind,
    /// The template JSON.
    pub body: String,
    /// Pre-provisioning hook: an http(s) URL or `allow-list`.
    pub hook: Option<String>,
    /// Hook timeout, milliseconds (the `[fleet]` default when `None`).
    pub hook_timeout_ms: Option<u64>,
    /// Whether devices may use it.
    pub enabled: bool,
}

/// Changes to a template; `None` keeps what is there.
#[derive(Clone, Debug, Default)]
pub struct TemplateChanges {
    /// A new body.
    pub body: Option<String>,
    /// A new hook (`Some(None)` removes it).
    pub hook: Option<Option<String>>,
    /// A new hook timeout.
    pub hook_timeout_ms: Option<u64>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// Parses and checks a template body for its use, naming the template in
/// the error.
pub fn check_template(name: &str, kind: TemplateKind, body: &str) -> Result<Template, FlowError> {
    if !valid_template_name(name) {
        return Err(FlowError::Invalid(format!(
            "invalid template name {:?}: use 1 to 36 of A-Z a-z 0-9 _ -",
            name.escape_default().to_string()
        )));
    }
    let invalid =
        |e: idmint_template::TemplateError| FlowError::Invalid(format!("template {name}: {e}"));
    let template = Template::parse(body).map_err(invalid)?;
    template
        .check_type(match kind {
            TemplateKind::Fleet => TemplateType::Fleet,
            TemplateKind::Jitp => TemplateType::Jitp,
        })
        .map_err(invalid)?;
    Ok(template)
}

fn check_hook(hook: Option<&str>) -> Result<(), FlowError> {
    match hook {
        None | Some(ALLOW_LIST_HOOK) => Ok(()),
        Some(url) => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| FlowError::Invalid(format!("hook URL {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(FlowError::Invalid(format!(
                    "hook {url:?}: expected an http(s) URL or {ALLOW_LIST_HOOK:?}"
                )));
            }
            Ok(())
        }
    }
}

impl crate::Fleet<'_> {
    /// Creates a template after checking it.
    pub async fn create_template(
        &self,
        actor: &str,
        req: &TemplateRequest,
    ) -> Result<ProvisioningTemplate, FlowError> {
        check_template(&req.name, req.kind, &req.body)?;
        check_hook(req.hook.as_deref())?;
        let mut tx = self.store().begin(actor).await?;
        tx.insert_template(&NewTemplate {
            name: req.name.clone(),
            kind: req.kind,
            body: req.body.clone(),
            hook: req.hook.clone(),
            hook_timeout_ms: timeout_ms(
                req.hook_timeout_ms
                    .unwrap_or(self.config().fleet.hook_timeout_ms),
            ),
            enabled: req.enabled,
        })
        .await?;
        tx.commit().await?;
        self.require_template(&req.name).await
    }

    /// Changes a template; a new body is checked first.
    pub async fn update_template(
        &self,
        actor: &str,
        name: &str,
        changes: &TemplateChanges,
    ) -> Result<ProvisioningTemplate, FlowError> {
        let current = self.require_template(name).await?;
        let body = changes.body.clone().unwrap_or(current.body);
        check_template(name, current.kind, &body)?;
        let hook = changes.hook.clone().unwrap_or(current.hook);
        check_hook(hook.as_deref())?;
        let mut tx = self.store().begin(actor).await?;
        tx.update_template(&NewTemplate {
            name: name.to_string(),
            kind: current.kind,
            body,
            hook,
            hook_timeout_ms: changes
                .hook_timeout_ms
                .map(timeout_ms)
                .unwrap_or(current.hook_timeout_ms),
            enabled: changes.enabled.unwrap_or(current.enabled),
        })
        .await?;
        tx.commit().await?;
        self.require_template(name).await
    }

    /// Deletes a template no CA auto-registers with.
    pub async fn delete_template(&self, actor: &str, name: &str) -> Result<(), FlowError> {
        if let Some(ca) = self
            .store()
            .list_cas()
            .await?
            .into_iter()
            .find(|ca| ca.template.as_deref() == Some(name))
        {
            return Err(FlowError::Conflict(format!(
                "template {name:?} is the auto-registration template of CA {:?}: change the CA first",
                ca.name
            )));
        }
        let mut tx = self.store().begin(actor).await?;
        tx.delete_template(name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds serial numbers to a template's allow list; returns how many were new.
    pub async fn allow_serials(
        &self,
        actor: &str,
        name: &str,
        serials: &[String],
    ) -> Result<usize, FlowError> {
        self.require_template(name).await?;
        let mut tx = self.store().begin(actor).await?;
        let added = tx.allow_serials(name, serials).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// A template that must exist.
    pub async fn require_template(&self, name: &str) -> Result<ProvisioningTemplate, FlowError> {
        self.store().template(name).await?.ok_or_else(|| {
            RegistryError::NotFound {
                kind: "template",
                name: name.to_string(),
            }
            .into()
        })
    }
}

fn timeout_ms(ms: u64) -> i64 {
    i64::try_from(ms.clamp(100, 60_000)).unwrap_or(5000)
}
