//! Reading the registry's records back from store rows: the column readers
//! the model's `sqlx::FromRow` impls share. A value that fails its type's
//! rule (an id, a status, a JSON document) was written behind the
//! registry's back and is a decode error, which [`RegistryError`] reports
//! as a corrupt row.
//!
//! [`RegistryError`]: crate::RegistryError

use std::fmt::Display;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};
use time::OffsetDateTime;

use crate::RegistryError;

/// A column's value refused by its type's rule.
pub(crate) fn refused(column: &str, reason: impl Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: reason.to_string().into(),
    }
}

/// A record of type `T` from a row (what `rows.iter().map(...)` wants).
pub(crate) fn from_row<T>(row: &AnyRow) -> Result<T, RegistryError>
where
    T: for<'r> FromRow<'r, AnyRow>,
{
    Ok(T::from_row(row)?)
}

/// A column holding a typed identifier (a certificate id, serial, thing
/// name or batch id), checked as it is read.
pub(crate) fn typed<T>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error>
where
    T: TryFrom<String>,
    T::Error: Display,
{
    let text: String = row.try_get(column)?;
    T::try_from(text).map_err(|e| refused(column, e))
}

/// A nullable column holding a typed identifier.
pub(crate) fn typed_option<T>(row: &AnyRow, column: &str) -> Result<Option<T>, sqlx::Error>
where
    T: TryFrom<String>,
    T::Error: Display,
{
    row.try_get::<Option<String>, _>(column)?
        .map(|text| T::try_from(text).map_err(|e| refused(column, e)))
        .transpose()
}

/// A column holding a name from a closed set (a status, a kind, a role).
pub(crate) fn parsed<T>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error>
where
    T: FromStr,
    T::Err: Display,
{
    let text: String = row.try_get(column)?;
    text.parse().map_err(|e| refused(column, e))
}

/// A nullable column holding a name from a closed set.
pub(crate) fn parsed_option<T>(row: &AnyRow, column: &str) -> Result<Option<T>, sqlx::Error>
where
    T: FromStr,
    T::Err: Display,
{
    row.try_get::<Option<String>, _>(column)?
        .map(|text| text.parse().map_err(|e| refused(column, e)))
        .transpose()
}

/// A column holding a JSON document.
pub(crate) fn json<T: DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| refused(column, e))
}

/// A column holding Unix seconds.
pub(crate) fn time(row: &AnyRow, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
    Ok(crate::store::ts(row.try_get(column)?))
}

/// A nullable column holding Unix seconds.
pub(crate) fn time_option(
    row: &AnyRow,
    column: &str,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(crate::store::ts))
}

/// A column holding a flag as 0 or 1.
pub(crate) fn flag(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}
