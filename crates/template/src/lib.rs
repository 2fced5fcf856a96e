//! idmint's provisioning templates: AWS IoT's template language, so that
//! templates written for AWS IoT fleet provisioning and JITP work unchanged.
//!
//! A template body declares `Parameters` (all of type `String`, with an
//! optional `Default`), `Mappings`, `Resources` (one `AWS::IoT::Thing`, one
//! `AWS::IoT::Certificate`, any number of `AWS::IoT::Policy`, with
//! `OverrideSettings`) and, for fleet provisioning, a `DeviceConfiguration`
//! returned to the device. Values may use the intrinsic functions `Ref`,
//! `Fn::Join`, `Fn::Sub`, `Fn::Select`, `Fn::Split` and `Fn::FindInMap`,
//! nested.
//!
//! [`Template::parse`] checks a body once, when the template is created,
//! and refuses it with the JSON path of the fault; [`Template::render`]
//! evaluates it per device into a [`Provisioning`], or fails with a
//! [`RenderError`] naming what the device lacked. Neither panics on any
//! input, and rendering is bounded in time and memory.
//!
//! ```
//! use std::collections::BTreeMap;
//! use idmint_template::{CertificateSource, Template};
//!
//! let template = Template::parse(r#"{
//!     "Parameters": {"SerialNumber": {"Type": "String"}},
//!     "Resources": {
//!         "thing": {
//!             "Type": "AWS::IoT::Thing",
//!             "Properties": {
//!                 "ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]},
//!                 "AttributePayload": {"serial": {"Ref": "SerialNumber"}}
//!             }
//!         },
//!         "certificate": {
//!             "Type": "AWS::IoT::Certificate",
//!             "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}
//!         }
//!     },
//!     "DeviceConfiguration": {"greeting": {"Fn::Sub": "hello ${SerialNumber}"}}
//! }"#)?;
//!
//! let params = BTreeMap::from([
//!     ("SerialNumber".to_string(), "0042".to_string()),
//!     ("AWS::IoT::Certificate::Id".to_string(), "ab12".to_string()),
//! ]);
//! let provisioning = template.render(&params)?;
//! let thing = provisioning.thing.as_ref().unwrap();
//! assert_eq!(thing.name, "sensor-0042");
//! assert_eq!(thing.attributes["serial"], "0042");
//! let cert = provisioning.certificate.as_ref().unwrap();
//! assert_eq!(cert.source, CertificateSource::Id("ab12".into()));
//! assert_eq!(provisioning.device_configuration["greeting"], "hello 0042");
//!
//! // Faults are refused at creation, with their path.
//! let err = Template::parse(r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing",
//!     "Properties": {"ThingName": {"Fn::Join": ["-"]}}}}}"#).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "Resources.thing.Properties.ThingName: Fn::Join expects [delimiter, [values]]"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod expr;
mod json;
mod model;
mod names;
mod template;

pub use error::{RenderError, TemplateError};
pub use model::{
    CertificateSource, CertificateSpec, CertificateStatus, OverrideSetting, ParameterSpec,
    PolicySpec, Provisioning, ThingSpec, UnknownOverrideSetting,
};
pub use names::{valid_template_name, valid_thing_name};
pub use template::{Template, TemplateType};

/// The longest template body accepted, in characters (AWS IoT's limit).
pub const MAX_BODY_CHARS: usize = 10_240;

/// The most text one [`Template::render`] may produce, in bytes, counting
/// every intermediate string. Real templates produce a few kilobytes; the
/// limit stops `Fn::Sub` variables that expand into each other.
pub const MAX_RENDER_BYTES: usize = 1 << 20;

/// The pseudo parameter holding the certificate id (hex SHA-256 of the
/// DER), passed by the caller of [`Template::render`].
pub const PSEUDO_CERTIFICATE_ID: &str = "AWS::IoT::Certificate::Id";

/// The pseudo parameters AWS IoT defines: the certificate id and the device
/// certificate's subject fields. A template may reference them without
/// declaring them; the caller passes their values to [`Template::render`].
pub const PSEUDO_PARAMETERS: [&str; 8] = [
    PSEUDO_CERTIFICATE_ID,
    "AWS::IoT::Certificate::CommonName",
    "AWS::IoT::Certificate::SerialNumber",
    "AWS::IoT::Certificate::Organization",
    "AWS::IoT::Certificate::OrganizationalUnit",
    "AWS::IoT::Certificate::Country",
    "AWS::IoT::Certificate::StateName",
    "AWS::IoT::Certificate::DistinguishedNameQualifier",
];

/// True if `name` is one of [`PSEUDO_PARAMETERS`].
pub fn is_pseudo_parameter(name: &str) -> bool {
    PSEUDO_PARAMETERS.contains(&name)
}
