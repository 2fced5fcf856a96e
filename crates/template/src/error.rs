//! The two ways a template can fail: refused when it is created
//! ([`TemplateError`], with the JSON path of the fault), or failing for one
//! device when it is rendered with that device's parameters ([`RenderError`]).

/// Why a template body was refused by [`Template::parse`](crate::Template::parse).
///
/// Every variant found inside the document carries `path`, the JSON path of
/// the fault (`Resources.thing.Properties.ThingName`, `...ThingGroups[1]`,
/// `...Fn::Join[1]`), and its message starts with that path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The body is longer than [`MAX_BODY_CHARS`](crate::MAX_BODY_CHARS).
    #[error("template body is {chars} characters long; the limit is {max}")]
    TooLong {
        /// Length of the body, in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not JSON (or repeats a key in an object).
    #[error("template body is not valid JSON: {message}")]
    Json {
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value has the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Where.
        path: String,
        /// What was expected there.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// A key that this position does not know (a top-level section, a
    /// property of a resource, a parameter attribute, ...).
    #[error("{path}: unknown key (expected {expected})")]
    UnknownKey {
        /// Where, ending in the unknown key.
        path: String,
        /// The keys allowed there.
        expected: &'static str,
    },
    /// A required key is absent.
    #[error("{path}: missing {what}")]
    Missing {
        /// The object that lacks it.
        path: String,
        /// What is missing.
        what: &'static str,
    },
    /// `Resources` declares nothing.
    #[error("Resources: a template declares at least one resource")]
    NoResources,
    /// A resource `Type` other than the three AWS IoT ones.
    #[error(
        "{path}: unknown resource type {type_name:?} \
         (expected AWS::IoT::Thing, AWS::IoT::Certificate or AWS::IoT::Policy)"
    )]
    UnknownResourceType {
        /// Where (`Resources.<name>.Type`).
        path: String,
        /// The type given.
        type_name: String,
    },
    /// A second `AWS::IoT::Thing` or `AWS::IoT::Certificate`.
    #[error(
        "{path}: a template declares at most one {resource_type} (already declared as {first:?})"
    )]
    DuplicateResource {
        /// Where (`Resources.<second name>`).
        path: String,
        /// `AWS::IoT::Thing` or `AWS::IoT::Certificate`.
        resource_type: &'static str,
        /// Logical name of the first one.
        first: String,
    },
    /// `{"Fn::If": ..}` and other functions AWS IoT does not have.
    #[error(
        "{path}: unknown intrinsic function {name} \
         (supported: Ref, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::FindInMap)"
    )]
    UnknownFunction {
        /// Where the function object is.
        path: String,
        /// Its name.
        name: String,
    },
    /// An intrinsic function with arguments of the wrong shape.
    #[error("{path}: {function} expects {expected}")]
    BadArguments {
        /// Where the function object is.
        path: String,
        /// `Ref`, `Fn::Join`, ...
        function: &'static str,
        /// The shape it expects.
        expected: &'static str,
    },
    /// `Ref` or `Fn::Sub` names a parameter that `Parameters` does not
    /// declare and that is not a pseudo parameter.
    #[error("{path}: reference to undeclared parameter {name:?}")]
    UndeclaredParameter {
        /// Where the reference is.
        path: String,
        /// The parameter name.
        name: String,
    },
    /// A declared parameter named `AWS::...` that AWS IoT does not define
    /// (a typo of a certificate field, most likely).
    #[error("{path}: {name:?} is not an AWS IoT pseudo parameter (AWS::IoT::Certificate::Id, CommonName, SerialNumber, Organization, OrganizationalUnit, Country, StateName or DistinguishedNameQualifier)")]
    UnknownPseudoParameter {
        /// Where.
        path: String,
        /// The name declared.
        name: String,
    },
    /// `Fn::FindInMap` names a mapping that `Mappings` does not declare.
    #[error("{path}: Fn::FindInMap of missing mapping {mapping:?}")]
    MissingMapping {
        /// Where the function is.
        path: String,
        /// The mapping name.
        mapping: String,
    },
    /// `Fn::FindInMap` with literal keys that the mapping does not have.
    #[error("{path}: Fn::FindInMap: mapping {mapping:?} has no key {key:?}")]
    MissingMappingKey {
        /// Where the function is.
        path: String,
        /// The mapping name.
        mapping: String,
        /// The missing key.
        key: String,
    },
    /// `Fn::Select` with a literal index past the end of a literal list.
    #[error("{path}: Fn::Select index {index} is out of range for a list of {len}")]
    SelectOutOfRange {
        /// Where the function is.
        path: String,
        /// The index.
        index: usize,
        /// The list length.
        len: usize,
    },
    /// An intrinsic function inside `Mappings`.
    #[error("{path}: Mappings cannot contain intrinsic functions")]
    FunctionInMappings {
        /// Where.
        path: String,
    },
    /// `MERGE` on a property other than `AttributePayload` or `ThingGroups`.
    #[error("{path}: MERGE is only allowed for AttributePayload and ThingGroups")]
    MergeNotAllowed {
        /// Where (`Resources.<name>.OverrideSettings.<property>`).
        path: String,
    },
    /// An override value other than `DO_NOTHING`, `REPLACE`, `FAIL`, `MERGE`.
    #[error("{path}: {value:?} is not an override setting (expected DO_NOTHING, REPLACE, FAIL or MERGE)")]
    BadOverride {
        /// Where.
        path: String,
        /// The value given.
        value: String,
    },
    /// `OverrideSettings` where none are allowed.
    #[error("{path}: {reason}")]
    OverrideNotAllowed {
        /// Where.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A policy with both `PolicyName` and `PolicyDocument`.
    #[error("{path}: PolicyName and PolicyDocument are both set; set exactly one")]
    PolicyNameAndDocument {
        /// Where (`Resources.<name>.Properties`).
        path: String,
    },
    /// A policy with neither `PolicyName` nor `PolicyDocument`.
    #[error("{path}: neither PolicyName nor PolicyDocument is set; set exactly one")]
    PolicyNameOrDocumentMissing {
        /// Where (`Resources.<name>.Properties`).
        path: String,
    },
    /// A literal value that can never be valid (a thing name with spaces, a
    /// certificate status `ENABLED`, a policy document that is not JSON, an
    /// unterminated `${` in `Fn::Sub`, ...).
    #[error("{path}: {reason}")]
    Invalid {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
    /// Objects or lists nested deeper than the engine evaluates.
    #[error("{path}: nested deeper than {max} levels")]
    TooDeep {
        /// Where the limit was reached.
        path: String,
        /// The limit.
        max: usize,
    },
    /// A valid template that does not fit the kind of template asked for
    /// by [`Template::check_type`](crate::Template::check_type).
    #[error("{path}: {reason}")]
    WrongTemplateType {
        /// Where.
        path: String,
        /// Why.
        reason: &'static str,
    },
}

impl TemplateError {
    /// The JSON path of the fault, when it lies inside the document.
    pub fn path(&self) -> Option<&str> {
        match self {
            TemplateError::TooLong { .. } | TemplateError::Json { .. } => None,
            TemplateError::NoResources => Some("Resources"),
            TemplateError::WrongType { path, .. }
            | TemplateError::UnknownKey { path, .. }
            | TemplateError::Missing { path, .. }
            | TemplateError::UnknownResourceType { path, .. }
            | TemplateError::DuplicateResource { path, .. }
            | TemplateError::UnknownFunction { path, .. }
            | TemplateError::BadArguments { path, .. }
            | TemplateError::UndeclaredParameter { path, .. }
            | TemplateError::UnknownPseudoParameter { path, .. }
            | TemplateError::MissingMapping { path, .. }
            | TemplateError::MissingMappingKey { path, .. }
            | TemplateError::SelectOutOfRange { path, .. }
            | TemplateError::FunctionInMappings { path }
            | TemplateError::MergeNotAllowed { path }
            | TemplateError::BadOverride { path, .. }
            | TemplateError::OverrideNotAllowed { path, .. }
            | TemplateError::PolicyNameAndDocument { path }
            | TemplateError::PolicyNameOrDocumentMissing { path }
            | TemplateError::Invalid { path, .. }
            | TemplateError::TooDeep { path, .. }
            | TemplateError::WrongTemplateType { path, .. } => Some(path),
        }
    }
}

/// Why a valid template could not be rendered with one device's parameters.
///
/// Each variant carries the JSON path of the expression that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A referenced parameter has no value and no default. For JITP this is
    /// a certificate subject field the device certificate lacks.
    #[error("{path}: parameter {name:?} has no value and no default")]
    MissingParameter {
        /// Where it is referenced.
        path: String,
        /// The parameter, e.g. `AWS::IoT::Certificate::OrganizationalUnit`.
        name: String,
    },
    /// `Fn::Select` past the end of its list.
    #[error("{path}: Fn::Select index {index} is out of range for a list of {len}")]
    SelectOutOfRange {
        /// Where the function is.
        path: String,
        /// The index.
        index: usize,
        /// The list length.
        len: usize,
    },
    /// `Fn::Select` with an index that is not a non-negative integer.
    #[error("{path}: Fn::Select index {index:?} is not a non-negative integer")]
    SelectIndex {
        /// Where the function is.
        path: String,
        /// The index as evaluated.
        index: String,
    },
    /// `Fn::FindInMap` names a mapping that does not exist.
    #[error("{path}: Fn::FindInMap of missing mapping {mapping:?}")]
    MissingMapping {
        /// Where the function is.
        path: String,
        /// The mapping name.
        mapping: String,
    },
    /// `Fn::FindInMap` with a key the mapping does not have.
    #[error("{path}: Fn::FindInMap: mapping {mapping:?} has no key {key:?}")]
    MissingMappingKey {
        /// Where the function is.
        path: String,
        /// The mapping name.
        mapping: String,
        /// The missing key.
        key: String,
    },
    /// The thing name evaluated to something AWS IoT does not accept
    /// (1 to 128 of `[a-zA-Z0-9:_-]`).
    #[error("{path}: {name:?} is not a valid thing name (1 to 128 of [a-zA-Z0-9:_-])")]
    InvalidThingName {
        /// Where (`Resources.<name>.Properties.ThingName`).
        path: String,
        /// The evaluated name.
        name: String,
    },
    /// An expression evaluated to the wrong JSON type (a list where a
    /// string belongs, a `null` picked by `Fn::Select`, ...).
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Where.
        path: String,
        /// What was expected.
        expected: &'static str,
        /// What the expression produced.
        found: &'static str,
    },
    /// Any other evaluated value that AWS IoT would refuse (an attribute
    /// value with spaces, a status `DISABLED`, a policy document that is not
    /// a JSON object, ...).
    #[error("{path}: {reason}")]
    Invalid {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
    /// Evaluation produced more text than [`MAX_RENDER_BYTES`](crate::MAX_RENDER_BYTES).
    #[error("{path}: the rendered template exceeds {max} bytes")]
    TooLarge {
        /// Where the limit was reached.
        path: String,
        /// The limit.
        max: usize,
    },
}

impl RenderError {
    /// The JSON path of the expression that failed.
    pub fn path(&self) -> &str {
        match self {
            RenderError::MissingParameter { path, .. }
            | RenderError::SelectOutOfRange { path, .. }
            | RenderError::SelectIndex { path, .. }
            | RenderError::MissingMapping { path, .. }
            | RenderError::MissingMappingKey { path, .. }
            | RenderError::InvalidThingName { path, .. }
            | RenderError::WrongType { path, .. }
            | RenderError::Invalid { path, .. }
            | RenderError::TooLarge { path, .. } => path,
        }
    }

    /// The parameter that had no value, for [`RenderError::MissingParameter`].
    pub fn missing_parameter(&self) -> Option<&str> {
        match self {
            RenderError::MissingParameter { name, .. } => Some(name),
            _ => None,
        }
    }
}
