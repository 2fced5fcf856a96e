//! The shape every scenario crate's service takes: a handle on the opened
//! data directory ([`Idmint`](crate::Idmint), the core) that carries one
//! scenario's API.
//!
//! Each scenario lives in its own crate (`idmint-mint`, `idmint-station`,
//! `idmint-manifest`, `idmint-fleet`) and declares its service with
//! [`scenario_service!`](crate::scenario_service): a `Copy` handle made by
//! `Service::new(&idmint)`, whose methods use the core's store, CA keyring,
//! issuance and audit through `Deref`. The core knows nothing of the
//! scenarios; a scenario reaches another only through that one's service.

/// Declares a scenario's service: `pub struct $name<'a>`, made with
/// `$name::new(&idmint)`, dereferencing to the core [`Idmint`](crate::Idmint).
#[macro_export]
macro_rules! scenario_service {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            idmint: &'a $crate::Idmint,
        }

        impl<'a> $name<'a> {
            /// This scenario's service over an opened data directory.
            pub fn new(idmint: &'a $crate::Idmint) -> Self {
                Self { idmint }
            }

            /// The core this service works on.
            pub fn core(&self) -> &'a $crate::Idmint {
                self.idmint
            }
        }

        impl ::std::ops::Deref for $name<'_> {
            type Target = $crate::Idmint;

            fn deref(&self) -> &$crate::Idmint {
                self.idmint
            }
        }
    };
}
