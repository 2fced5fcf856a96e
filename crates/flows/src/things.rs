//! Changing a thing's type and attributes (`idmint thing update`).
//! Attributes are data: they confer no access (see [`crate::access`]).

use idmint_registry::{NewThing, RegistryError, ThingName};

use crate::{FlowError, Idmint};

impl Idmint {
    /// Sets `thing_type` (if given) and applies `changes` to a thing's
    /// attributes: `(key, Some(value))` sets, `(key, None)` removes.
    pub async fn update_thing(
        &self,
        actor: &str,
        name: &str,
        thing_type: Option<String>,
        changes: &[(String, Option<String>)],
    ) -> Result<(), FlowError> {
        let mut tx = self.store().begin(actor).await?;
        let thing = tx
            .thing(name)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                kind: "thing",
                name: name.to_string(),
            })?;
        let mut new = NewThing::named(ThingName::parse(name).map_err(RegistryError::from)?);
        new.thing_type = thing_type.or(thing.thing_type);
        new.attributes = thing.attributes;
        new.device_id = thing.device_id;
        new.batch = thing.batch;
        for (key, value) in changes {
            match value {
                Some(v) => new.attributes.insert(key.clone(), v.clone()),
                None => new.attributes.remove(key),
            };
        }
        tx.upsert_thing(&new).await?;
        tx.commit().await?;
        Ok(())
    }
}
