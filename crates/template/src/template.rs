//! [`Template`]: a provisioning template body parsed and checked once, at
//! creation, and rendered into a [`Provisioning`] for each device.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::error::{RenderError, TemplateError};
use crate::expr::{function_key, json_type, Compiler, Evaluator, Expr, Mappings, Objects};
use crate::model::{
    CertificateSource, CertificateSpec, CertificateStatus, OverrideSetting, ParameterSpec,
    PolicySpec, Provisioning, ThingSpec,
};
use crate::names::{
    check_attribute_name, check_attribute_value, check_parameter_name, check_policy_name,
    check_registry_name, valid_thing_name,
};
use crate::{is_pseudo_parameter, json, MAX_BODY_CHARS, PSEUDO_CERTIFICATE_ID};

const THING: &str = "AWS::IoT::Thing";
const CERTIFICATE: &str = "AWS::IoT::Certificate";
const POLICY: &str = "AWS::IoT::Policy";

/// The path used for faults of the document as a whole.
const ROOT: &str = "(root)";

/// A parsed, validated provisioning template.
///
/// [`Template::parse`] refuses an invalid body with the JSON path of the
/// fault; [`Template::render`] evaluates it with one device's parameters.
/// A `Template` is immutable and cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Template {
    body: String,
    parameters: BTreeMap<String, ParameterSpec>,
    mappings: Mappings,
    thing: Option<ThingTemplate>,
    certificate: Option<CertificateTemplate>,
    policies: Vec<PolicyTemplate>,
    device_configuration: Vec<Prop>,
    referenced: BTreeSet<String>,
}

/// The two uses of a template, for [`Template::check_type`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateType {
    /// Fleet provisioning (RegisterThing over MQTT).
    Fleet,
    /// Just-in-time provisioning from a registered CA.
    Jitp,
}

/// A compiled property: where it is and what it evaluates.
#[derive(Debug, Clone)]
struct Prop {
    path: String,
    /// The key (property, attribute or device configuration name).
    key: String,
    expr: Expr,
}

#[derive(Debug, Clone)]
struct ThingTemplate {
    logical_name: String,
    name: Prop,
    attributes: Vec<Prop>,
    thing_type: Option<Prop>,
    thing_groups: Option<Prop>,
    billing_group: Option<Prop>,
    overrides: BTreeMap<String, OverrideSetting>,
}

#[derive(Debug, Clone)]
struct CertificateTemplate {
    logical_name: String,
    source: SourceTemplate,
    status: Option<Prop>,
    overrides: BTreeMap<String, OverrideSetting>,
}

#[derive(Debug, Clone)]
enum SourceTemplate {
    Id(Prop),
    SigningRequest(Prop),
    Pem(Prop, Option<Prop>),
}

#[derive(Debug, Clone)]
enum PolicyTemplate {
    Name(Prop),
    Document(Prop),
}

impl Template {
    /// Parses and checks a template body (at most [`MAX_BODY_CHARS`]
    /// characters of JSON).
    ///
    /// Everything that does not depend on a device's parameters is checked
    /// here: the sections and their keys, resource types and properties,
    /// the shape of every intrinsic function, every `Ref` and `${..}`
    /// against `Parameters`, every literal `Fn::FindInMap` against
    /// `Mappings`, override settings, and literal names and values against
    /// AWS IoT's rules.
    pub fn parse(body: &str) -> Result<Template, TemplateError> {
        let chars = body.chars().count();
        if chars > MAX_BODY_CHARS {
            return Err(TemplateError::TooLong {
                chars,
                max: MAX_BODY_CHARS,
            });
        }
        let root = json::parse_strict(body).map_err(|e| TemplateError::Json {
            message: e.to_string(),
        })?;
        let root = as_object(&root, ROOT, "a JSON object")?;
        for key in root.keys() {
            if !matches!(
                key.as_str(),
                "Parameters" | "Mappings" | "Resources" | "DeviceConfiguration"
            ) {
                return Err(TemplateError::UnknownKey {
                    path: key.clone(),
                    expected: "Parameters, Mappings, Resources or DeviceConfiguration",
                });
            }
        }

        let parameters = match root.get("Parameters") {
            Some(value) => parse_parameters(value)?,
            None => BTreeMap::new(),
        };
        let mappings = match root.get("Mappings") {
            Some(value) => parse_mappings(value)?,
            None => Mappings::new(),
        };
        let mut compiler = Compiler::new(&parameters, &mappings);

        let Some(resources) = root.get("Resources") else {
            return Err(TemplateError::Missing {
                path: ROOT.to_owned(),
                what: "Resources",
            });
        };
        let resources = as_object(resources, "Resources", "an object of resources")?;
        if resources.is_empty() {
            return Err(TemplateError::NoResources);
        }
        let mut thing: Option<ThingTemplate> = None;
        let mut certificate: Option<CertificateTemplate> = None;
        let mut policies = Vec::new();
        for (logical_name, resource) in resources {
            let path = format!("Resources.{logical_name}");
            let resource = as_object(resource, &path, "a resource object")?;
            for key in resource.keys() {
                if !matches!(key.as_str(), "Type" | "Properties" | "OverrideSettings") {
                    return Err(TemplateError::UnknownKey {
                        path: format!("{path}.{key}"),
                        expected: "Type, Properties or OverrideSettings",
                    });
                }
            }
            let type_path = format!("{path}.Type");
            let type_name = match resource.get("Type") {
                Some(Value::String(type_name)) => type_name.as_str(),
                Some(other) => {
                    return Err(TemplateError::WrongType {
                        path: type_path,
                        expected: "a resource type name",
                        found: json_type(other),
                    })
                }
                None => return Err(TemplateError::Missing { path, what: "Type" }),
            };
            if !matches!(type_name, THING | CERTIFICATE | POLICY) {
                return Err(TemplateError::UnknownResourceType {
                    path: type_path,
                    type_name: type_name.to_owned(),
                });
            }
            let Some(properties) = resource.get("Properties") else {
                return Err(TemplateError::Missing {
                    path,
                    what: "Properties",
                });
            };
            let properties = as_object(
                properties,
                &format!("{path}.Properties"),
                "an object of properties",
            )?;
            let overrides = resource.get("OverrideSettings");
            match type_name {
                THING => {
                    if let Some(first) = &thing {
                        return Err(TemplateError::DuplicateResource {
                            path,
                            resource_type: THING,
                            first: first.logical_name.clone(),
                        });
                    }
                    thing = Some(parse_thing(
                        &mut compiler,
                        logical_name,
                        &path,
                        properties,
                        overrides,
                    )?);
                }
                CERTIFICATE => {
                    if let Some(first) = &certificate {
                        return Err(TemplateError::DuplicateResource {
                            path,
                            resource_type: CERTIFICATE,
                            first: first.logical_name.clone(),
                        });
                    }
                    certificate = Some(parse_certificate(
                        &mut compiler,
                        logical_name,
                        &path,
                        properties,
                        overrides,
                    )?);
                }
                _ => policies.push(parse_policy(&mut compiler, &path, properties, overrides)?),
            }
        }

        let mut device_configuration = Vec::new();
        if let Some(config) = root.get("DeviceConfiguration") {
            let config = as_object(config, "DeviceConfiguration", "an object")?;
            if function_key(config, "DeviceConfiguration")?.is_some() {
                return Err(TemplateError::WrongType {
                    path: "DeviceConfiguration".to_owned(),
                    expected: "an object of names to values",
                    found: "an intrinsic function",
                });
            }
            for (key, value) in config {
                let path = format!("DeviceConfiguration.{key}");
                let expr = compiler.value(
                    value,
                    &path,
                    Objects::Refused(
                        "a string, number, boolean, list or intrinsic function \
                         (DeviceConfiguration does not support nested objects)",
                    ),
                )?;
                device_configuration.push(Prop {
                    path,
                    key: key.clone(),
                    expr,
                });
            }
        }

        let referenced = compiler.into_referenced();
        Ok(Template {
            body: body.to_owned(),
            parameters,
            mappings,
            thing,
            certificate,
            policies,
            device_configuration,
            referenced,
        })
    }

    /// The original JSON text.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The declared parameters (`Parameters`), by name.
    pub fn parameters(&self) -> &BTreeMap<String, ParameterSpec> {
        &self.parameters
    }

    /// Every parameter name the template references through `Ref` or
    /// `Fn::Sub`, declared or pseudo (e.g. `SerialNumber`,
    /// `AWS::IoT::Certificate::CommonName`). `Fn::Sub` variables bound by
    /// its own variable map are not parameters and are not listed.
    pub fn referenced_parameters(&self) -> BTreeSet<String> {
        self.referenced.clone()
    }

    /// The referenced parameters that have no default: [`Template::render`]
    /// fails unless the caller passes a value for each.
    pub fn required_parameters(&self) -> BTreeSet<String> {
        self.referenced
            .iter()
            .filter(|name| {
                self.parameters
                    .get(name.as_str())
                    .is_none_or(|spec| spec.default.is_none())
            })
            .cloned()
            .collect()
    }

    /// True if the template declares a `DeviceConfiguration`.
    pub fn has_device_configuration(&self) -> bool {
        !self.device_configuration.is_empty()
    }

    /// Checks that the template fits a use: fleet provisioning and JITP
    /// templates name their certificate (if any) with
    /// `"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}`, and only
    /// fleet templates return a `DeviceConfiguration`.
    pub fn check_type(&self, template_type: TemplateType) -> Result<(), TemplateError> {
        if let Some(cert) = &self.certificate {
            let by_id = matches!(&cert.source, SourceTemplate::Id(prop)
                if prop.expr.is_ref_to(PSEUDO_CERTIFICATE_ID));
            if !by_id {
                return Err(TemplateError::WrongTemplateType {
                    path: format!("Resources.{}.Properties", cert.logical_name),
                    reason: "fleet provisioning and JITP templates name the certificate with \
                             \"CertificateId\": {\"Ref\": \"AWS::IoT::Certificate::Id\"}",
                });
            }
        }
        if template_type == TemplateType::Jitp && self.has_device_configuration() {
            return Err(TemplateError::WrongTemplateType {
                path: "DeviceConfiguration".to_owned(),
                reason: "only fleet provisioning templates return a DeviceConfiguration",
            });
        }
        Ok(())
    }

    /// Evaluates the template with `params` (falling back to each
    /// parameter's `Default`). Pseudo parameters such as
    /// `AWS::IoT::Certificate::Id` are passed in `params` by the caller;
    /// values for parameters the template does not reference are ignored.
    pub fn render(&self, params: &BTreeMap<String, String>) -> Result<Provisioning, RenderError> {
        let mut eval = Evaluator::new(&self.parameters, &self.mappings, params);

        let thing = match &self.thing {
            Some(thing) => Some(render_thing(&mut eval, thing)?),
            None => None,
        };
        let certificate = match &self.certificate {
            Some(cert) => Some(render_certificate(&mut eval, cert)?),
            None => None,
        };
        let mut policies = Vec::with_capacity(self.policies.len());
        for policy in &self.policies {
            policies.push(render_policy(&mut eval, policy)?);
        }
        let mut device_configuration = Map::new();
        for prop in &self.device_configuration {
            let value = eval.eval(&prop.expr, &prop.path)?;
            device_configuration.insert(prop.key.clone(), value);
        }
        Ok(Provisioning {
            thing,
            certificate,
            policies,
            device_configuration,
        })
    }

    /// Renders for a device whose `device` parameters came from outside
    /// (the RegisterThing payload, a pre-provisioning hook's overrides)
    /// and whose `pseudo` parameters idmint derived itself (the certificate
    /// id and subject fields). Device values for names starting with
    /// `AWS::` are dropped, so a device cannot pass itself off as another
    /// certificate.
    pub fn render_device(
        &self,
        device: &BTreeMap<String, String>,
        pseudo: &BTreeMap<String, String>,
    ) -> Result<Provisioning, RenderError> {
        let mut params: BTreeMap<String, String> = device
            .iter()
            .filter(|(name, _)| !name.starts_with("AWS::"))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        params.extend(pseudo.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.render(&params)
    }
}

fn as_object<'v>(
    value: &'v Value,
    path: &str,
    expected: &'static str,
) -> Result<&'v Map<String, Value>, TemplateError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(TemplateError::WrongType {
            path: path.to_owned(),
            expected,
            found: json_type(other),
        }),
    }
}

fn parse_parameters(value: &Value) -> Result<BTreeMap<String, ParameterSpec>, TemplateError> {
    let declared = as_object(value, "Parameters", "an object of parameters")?;
    let mut parameters = BTreeMap::new();
    for (name, spec) in declared {
        let path = format!("Parameters.{name}");
        check_parameter_name(name).map_err(|reason| TemplateError::Invalid {
            path: path.clone(),
            reason,
        })?;
        if name.starts_with("AWS::") && !is_pseudo_parameter(name) {
            return Err(TemplateError::UnknownPseudoParameter {
                path,
                name: name.clone(),
            });
        }
        let spec = as_object(spec, &path, "a parameter object")?;
        for key in spec.keys() {
            if !matches!(key.as_str(), "Type" | "Default" | "Description") {
                return Err(TemplateError::UnknownKey {
                    path: format!("{path}.{key}"),
                    expected: "Type, Default or Description",
                });
            }
        }
        match spec.get("Type") {
            Some(Value::String(t)) if t == "String" => {}
            Some(other) => {
                return Err(TemplateError::Invalid {
                    path: format!("{path}.Type"),
                    reason: format!("parameter Type must be \"String\", not {other}"),
                })
            }
            None => return Err(TemplateError::Missing { path, what: "Type" }),
        }
        let default = match spec.get("Default") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(TemplateError::WrongType {
                    path: format!("{path}.Default"),
                    expected: "a string",
                    found: json_type(other),
                })
            }
        };
        if let Some(other) = spec.get("Description").filter(|d| !d.is_string()) {
            return Err(TemplateError::WrongType {
                path: format!("{path}.Description"),
                expected: "a string",
                found: json_type(other),
            });
        }
        parameters.insert(name.clone(), ParameterSpec { default });
    }
    Ok(parameters)
}

fn parse_mappings(value: &Value) -> Result<Mappings, TemplateError> {
    let declared = no_function_object(value, "Mappings", "an object of mappings")?;
    let mut mappings = Mappings::new();
    for (map_name, mapping) in declared {
        let map_path = format!("Mappings.{map_name}");
        let mut entries = BTreeMap::new();
        for (top_key, entry) in no_function_object(mapping, &map_path, "an object of keys")? {
            let top_path = format!("{map_path}.{top_key}");
            let mut values = BTreeMap::new();
            for (key, value) in no_function_object(entry, &top_path, "an object of keys")? {
                let path = format!("{top_path}.{key}");
                check_mapping_value(value, &path)?;
                values.insert(key.clone(), value.clone());
            }
            entries.insert(top_key.clone(), values);
        }
        mappings.insert(map_name.clone(), entries);
    }
    Ok(mappings)
}

/// An object inside `Mappings` that must not be an intrinsic function.
fn no_function_object<'v>(
    value: &'v Value,
    path: &str,
    expected: &'static str,
) -> Result<&'v Map<String, Value>, TemplateError> {
    let map = as_object(value, path, expected)?;
    if map.keys().any(|k| k == "Ref" || k.starts_with("Fn::")) {
        return Err(TemplateError::FunctionInMappings {
            path: path.to_owned(),
        });
    }
    Ok(map)
}

/// A mapping value is a string or a list of strings.
fn check_mapping_value(value: &Value, path: &str) -> Result<(), TemplateError> {
    const EXPECTED: &str = "a string or a list of strings";
    let check_item = |item: &Value, path: &str| match item {
        Value::String(_) => Ok(()),
        Value::Object(_) => {
            no_function_object(item, path, EXPECTED)?;
            Err(TemplateError::WrongType {
                path: path.to_owned(),
                expected: EXPECTED,
                found: "an object",
            })
        }
        other => Err(TemplateError::WrongType {
            path: path.to_owned(),
            expected: EXPECTED,
            found: json_type(other),
        }),
    };
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_array() {
                    return Err(TemplateError::WrongType {
                        path: item_path,
                        expected: "a string",
                        found: "a list",
                    });
                }
                check_item(item, &item_path)?;
            }
            Ok(())
        }
        other => check_item(other, path),
    }
}

fn unknown_properties(
    properties: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
    expected: &'static str,
) -> Result<(), TemplateError> {
    match properties.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(TemplateError::UnknownKey {
            path: format!("{path}.Properties.{key}"),
            expected,
        }),
        None => Ok(()),
    }
}

/// Compiles the string property `key`, checking a literal value with `check`.
fn string_prop(
    compiler: &mut Compiler<'_>,
    properties: &Map<String, Value>,
    path: &str,
    key: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Option<Prop>, TemplateError> {
    let Some(value) = properties.get(key) else {
        return Ok(None);
    };
    let path = format!("{path}.Properties.{key}");
    let expr = compiler.string(value, &path)?;
    if let Some(literal) = expr.literal_str() {
        check(literal).map_err(|reason| TemplateError::Invalid {
            path: path.clone(),
            reason,
        })?;
    }
    Ok(Some(Prop {
        path,
        key: key.to_owned(),
        expr,
    }))
}

fn parse_thing(
    compiler: &mut Compiler<'_>,
    logical_name: &str,
    path: &str,
    properties: &Map<String, Value>,
    overrides: Option<&Value>,
) -> Result<ThingTemplate, TemplateError> {
    unknown_properties(
        properties,
        path,
        &[
            "ThingName",
            "AttributePayload",
            "ThingTypeName",
            "ThingGroups",
            "BillingGroup",
        ],
        "ThingName, AttributePayload, ThingTypeName, ThingGroups or BillingGroup",
    )?;
    let name = string_prop(compiler, properties, path, "ThingName", |name| {
        if valid_thing_name(name) {
            Ok(())
        } else {
            Err(format!(
                "{name:?} is not a valid thing name (1 to 128 of [a-zA-Z0-9:_-])"
            ))
        }
    })?
    .ok_or_else(|| TemplateError::Missing {
        path: format!("{path}.Properties"),
        what: "ThingName",
    })?;

    let mut attributes = Vec::new();
    if let Some(payload) = properties.get("AttributePayload") {
        let payload_path = format!("{path}.Properties.AttributePayload");
        const EXPECTED: &str = "an object of attribute names to values";
        let payload = as_object(payload, &payload_path, EXPECTED)?;
        if function_key(payload, &payload_path)?.is_some() {
            return Err(TemplateError::WrongType {
                path: payload_path,
                expected: EXPECTED,
                found: "an intrinsic function",
            });
        }
        for (attribute, value) in payload {
            let path = format!("{payload_path}.{attribute}");
            check_attribute_name(attribute).map_err(|reason| TemplateError::Invalid {
                path: path.clone(),
                reason,
            })?;
            let expr = compiler.string(value, &path)?;
            if let Some(literal) = expr.literal_str() {
                check_attribute_value(literal).map_err(|reason| TemplateError::Invalid {
                    path: path.clone(),
                    reason,
                })?;
            }
            attributes.push(Prop {
                path,
                key: attribute.clone(),
                expr,
            });
        }
    }

    let thing_type = string_prop(compiler, properties, path, "ThingTypeName", |name| {
        check_registry_name("thing type name", name)
    })?;
    let billing_group = string_prop(compiler, properties, path, "BillingGroup", |name| {
        check_registry_name("billing group name", name)
    })?;
    let thing_groups = match properties.get("ThingGroups") {
        Some(value) => {
            let path = format!("{path}.Properties.ThingGroups");
            let expr = compiler.string_list(value, &path)?;
            if let Expr::Array(items) = &expr {
                for (i, item) in items.iter().enumerate() {
                    if let Some(group) = item.literal_str() {
                        check_registry_name("thing group name", group).map_err(|reason| {
                            TemplateError::Invalid {
                                path: format!("{path}[{i}]"),
                                reason,
                            }
                        })?;
                    }
                }
            }
            Some(Prop {
                path,
                key: "ThingGroups".to_owned(),
                expr,
            })
        }
        None => None,
    };
    let overrides = parse_overrides(
        overrides,
        path,
        &[
            ("AttributePayload", "ATTRIBUTE_PAYLOAD"),
            ("ThingTypeName", "THING_TYPE_NAME"),
            ("ThingGroups", "THING_GROUPS"),
            ("BillingGroup", "BILLING_GROUP"),
        ],
        "AttributePayload, ThingTypeName, ThingGroups or BillingGroup",
    )?;
    Ok(ThingTemplate {
        logical_name: logical_name.to_owned(),
        name,
        attributes,
        thing_type,
        thing_groups,
        billing_group,
        overrides,
    })
}

/// Parses `OverrideSettings`. `allowed` lists each property name with the
/// upper-case spelling the AWS documentation also lists for it.
fn parse_overrides(
    overrides: Option<&Value>,
    path: &str,
    allowed: &[(&'static str, &'static str)],
    expected: &'static str,
) -> Result<BTreeMap<String, OverrideSetting>, TemplateError> {
    let mut settings = BTreeMap::new();
    let Some(overrides) = overrides else {
        return Ok(settings);
    };
    let opath = format!("{path}.OverrideSettings");
    let overrides = as_object(overrides, &opath, "an object of property names to settings")?;
    for (key, value) in overrides {
        let kpath = format!("{opath}.{key}");
        let Some((property, _)) = allowed
            .iter()
            .find(|(name, alias)| key == name || key == alias)
        else {
            return Err(TemplateError::UnknownKey {
                path: kpath,
                expected,
            });
        };
        let setting = match value {
            Value::String(text) => {
                text.parse::<OverrideSetting>()
                    .map_err(|_| TemplateError::BadOverride {
                        path: kpath.clone(),
                        value: text.clone(),
                    })?
            }
            other => {
                return Err(TemplateError::BadOverride {
                    path: kpath,
                    value: other.to_string(),
                })
            }
        };
        if setting == OverrideSetting::Merge
            && !matches!(*property, "AttributePayload" | "ThingGroups")
        {
            return Err(TemplateError::MergeNotAllowed { path: kpath });
        }
        if settings.insert((*property).to_owned(), setting).is_some() {
            return Err(TemplateError::Invalid {
                path: kpath,
                reason: format!("the override setting for {property} is given twice"),
            });
        }
    }
    Ok(settings)
}

fn parse_certificate(
    compiler: &mut Compiler<'_>,
    logical_name: &str,
    path: &str,
    properties: &Map<String, Value>,
    overrides: Option<&Value>,
) -> Result<CertificateTemplate, TemplateError> {
    unknown_properties(
        properties,
        path,
        &[
            "CertificateId",
            "CertificateID",
            "CertificateSigningRequest",
            "CertificatePem",
            "CACertificatePem",
            "Status",
        ],
        "CertificateId, CertificateSigningRequest, CertificatePem, CACertificatePem or Status",
    )?;
    let no_check = |_: &str| Ok(());
    let id = string_prop(compiler, properties, path, "CertificateId", no_check)?;
    let id_upper = string_prop(compiler, properties, path, "CertificateID", no_check)?;
    let csr = string_prop(
        compiler,
        properties,
        path,
        "CertificateSigningRequest",
        no_check,
    )?;
    let pem = string_prop(compiler, properties, path, "CertificatePem", no_check)?;
    let ca_pem = string_prop(compiler, properties, path, "CACertificatePem", no_check)?;
    let status =
        string_prop(
            compiler,
            properties,
            path,
            "Status",
            |status| match CertificateStatus::parse(status) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "certificate Status {status:?} is neither ACTIVE nor INACTIVE"
                )),
            },
        )?;

    let ppath = format!("{path}.Properties");
    let id = match (id, id_upper) {
        (Some(_), Some(_)) => {
            return Err(TemplateError::Invalid {
                path: ppath,
                reason: "CertificateId is given twice (as CertificateId and CertificateID)"
                    .to_owned(),
            })
        }
        (id, id_upper) => id.or(id_upper),
    };
    let source = match (id, csr, pem) {
        (Some(id), None, None) => SourceTemplate::Id(id),
        (None, Some(csr), None) => SourceTemplate::SigningRequest(csr),
        (None, None, Some(pem)) => SourceTemplate::Pem(pem, ca_pem),
        _ => {
            return Err(TemplateError::Invalid {
                path: ppath,
                reason: "set exactly one of CertificateId, CertificateSigningRequest or \
                         CertificatePem"
                    .to_owned(),
            })
        }
    };
    if !matches!(source, SourceTemplate::Pem(..)) && properties.contains_key("CACertificatePem") {
        return Err(TemplateError::Invalid {
            path: format!("{ppath}.CACertificatePem"),
            reason: "CACertificatePem goes only with CertificatePem".to_owned(),
        });
    }
    let overrides = parse_overrides(overrides, path, &[("Status", "STATUS")], "Status")?;
    Ok(CertificateTemplate {
        logical_name: logical_name.to_owned(),
        source,
        status,
        overrides,
    })
}

fn parse_policy(
    compiler: &mut Compiler<'_>,
    path: &str,
    properties: &Map<String, Value>,
    overrides: Option<&Value>,
) -> Result<PolicyTemplate, TemplateError> {
    unknown_properties(
        properties,
        path,
        &["PolicyName", "PolicyDocument"],
        "PolicyName or PolicyDocument",
    )?;
    if overrides.is_some() {
        return Err(TemplateError::OverrideNotAllowed {
            path: format!("{path}.OverrideSettings"),
            reason: "OverrideSettings are not available for AWS::IoT::Policy",
        });
    }
    let ppath = format!("{path}.Properties");
    match (
        properties.get("PolicyName"),
        properties.get("PolicyDocument"),
    ) {
        (Some(_), Some(_)) => Err(TemplateError::PolicyNameAndDocument { path: ppath }),
        (None, None) => Err(TemplateError::PolicyNameOrDocumentMissing { path: ppath }),
        (Some(_), None) => {
            let prop = string_prop(compiler, properties, path, "PolicyName", check_policy_name)?
                .ok_or(TemplateError::PolicyNameOrDocumentMissing { path: ppath })?;
            Ok(PolicyTemplate::Name(prop))
        }
        (None, Some(document)) => {
            let dpath = format!("{ppath}.PolicyDocument");
            let expr = match document {
                Value::String(text) => {
                    check_policy_document(text).map_err(|reason| TemplateError::Invalid {
                        path: dpath.clone(),
                        reason,
                    })?;
                    Expr::Str(text.clone())
                }
                Value::Object(map) if function_key(map, &dpath)?.is_some() => {
                    compiler.string(document, &dpath)?
                }
                Value::Object(_) => compiler.value(document, &dpath, Objects::Allowed)?,
                other => {
                    return Err(TemplateError::WrongType {
                        path: dpath,
                        expected: "a policy document (a JSON object, or one as a string)",
                        found: json_type(other),
                    })
                }
            };
            Ok(PolicyTemplate::Document(Prop {
                path: dpath,
                key: "PolicyDocument".to_owned(),
                expr,
            }))
        }
    }
}

/// A policy document given as a string must hold a JSON object.
fn check_policy_document(text: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(other) => Err(format!(
            "the policy document is {}, not a JSON object",
            json_type(&other)
        )),
        Err(e) => Err(format!("the policy document is not JSON: {e}")),
    }
}

fn render_string(eval: &mut Evaluator<'_>, prop: &Prop) -> Result<String, RenderError> {
    eval.eval_string(&prop.expr, &prop.path)
}

/// Renders an optional name property and checks it with `check`.
fn render_name(
    eval: &mut Evaluator<'_>,
    prop: Option<&Prop>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Option<String>, RenderError> {
    let Some(prop) = prop else {
        return Ok(None);
    };
    let value = render_string(eval, prop)?;
    check(&value).map_err(|reason| RenderError::Invalid {
        path: prop.path.clone(),
        reason,
    })?;
    Ok(Some(value))
}

fn render_thing(eval: &mut Evaluator<'_>, thing: &ThingTemplate) -> Result<ThingSpec, RenderError> {
    let name = render_string(eval, &thing.name)?;
    if !valid_thing_name(&name) {
        return Err(RenderError::InvalidThingName {
            path: thing.name.path.clone(),
            name: crate::names::shorten(&name),
        });
    }
    let mut attributes = BTreeMap::new();
    for prop in &thing.attributes {
        let value = render_string(eval, prop)?;
        check_attribute_value(&value).map_err(|reason| RenderError::Invalid {
            path: prop.path.clone(),
            reason,
        })?;
        attributes.insert(prop.key.clone(), value);
    }
    let thing_type = render_name(eval, thing.thing_type.as_ref(), |name| {
        check_registry_name("thing type name", name)
    })?;
    let billing_group = render_name(eval, thing.billing_group.as_ref(), |name| {
        check_registry_name("billing group name", name)
    })?;
    let mut thing_groups: Vec<String> = Vec::new();
    if let Some(prop) = &thing.thing_groups {
        for group in eval.eval_string_list(&prop.expr, &prop.path)? {
            check_registry_name("thing group name", &group).map_err(|reason| {
                RenderError::Invalid {
                    path: prop.path.clone(),
                    reason,
                }
            })?;
            if !thing_groups.contains(&group) {
                thing_groups.push(group);
            }
        }
    }
    Ok(ThingSpec {
        name,
        attributes,
        thing_type,
        thing_groups,
        billing_group,
        overrides: thing.overrides.clone(),
    })
}

fn render_certificate(
    eval: &mut Evaluator<'_>,
    cert: &CertificateTemplate,
) -> Result<CertificateSpec, RenderError> {
    let source = match &cert.source {
        SourceTemplate::Id(prop) => CertificateSource::Id(render_string(eval, prop)?),
        SourceTemplate::SigningRequest(prop) => {
            CertificateSource::SigningRequest(render_string(eval, prop)?)
        }
        SourceTemplate::Pem(pem, ca_pem) => CertificateSource::Pem {
            certificate_pem: render_string(eval, pem)?,
            ca_certificate_pem: match ca_pem {
                Some(prop) => Some(render_string(eval, prop)?),
                None => None,
            },
        },
    };
    let status = match &cert.status {
        Some(prop) => {
            let text = render_string(eval, prop)?;
            CertificateStatus::parse(&text).ok_or_else(|| RenderError::Invalid {
                path: prop.path.clone(),
                reason: format!(
                    "certificate Status {:?} is neither ACTIVE nor INACTIVE",
                    crate::names::shorten(&text)
                ),
            })?
        }
        None => CertificateStatus::Active,
    };
    Ok(CertificateSpec {
        source,
        status,
        overrides: cert.overrides.clone(),
    })
}

fn render_policy(
    eval: &mut Evaluator<'_>,
    policy: &PolicyTemplate,
) -> Result<PolicySpec, RenderError> {
    match policy {
        PolicyTemplate::Name(prop) => {
            let name = render_name(eval, Some(prop), check_policy_name)?;
            Ok(PolicySpec {
                name,
                document: None,
            })
        }
        PolicyTemplate::Document(prop) => {
            let document = match eval.eval(&prop.expr, &prop.path)? {
                Value::String(text) => {
                    check_policy_document(&text).map_err(|reason| RenderError::Invalid {
                        path: prop.path.clone(),
                        reason,
                    })?;
                    text
                }
                value @ Value::Object(_) => value.to_string(),
                other => {
                    return Err(RenderError::WrongType {
                        path: prop.path.clone(),
                        expected: "a policy document",
                        found: json_type(&other),
                    })
                }
            };
            Ok(PolicySpec {
                name: None,
                document: Some(document),
            })
        }
    }
}
