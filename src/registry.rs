//! What the component list (`components.rs`) expands to: for each kind, the config
//! enum with one variant per component, and every step the binary takes with a
//! component, each a `match` the macro writes once per kind:
//!
//! - `TYPES`, `kind()`: the `type` names, for config decoding and messages;
//! - `decode_type()`: the component's own keys decoded straight into its config
//!   (the config's `Tagged` impls call it, so errors keep their line and key);
//! - `validate()`: the checks serde cannot make;
//! - sources: `describe()` (the route graph) and `build()` (sockets bound before
//!   anything runs), then `run()` on the built [`Source`](crate::components::Source);
//!   filters: `build()`; sinks: `run()`.
//!
//! Each line of a list is `[#[cfg(feature = "...")]] Variant => path::to::Component`,
//! where the component implements its kind's trait in `nagare_core::component`; a
//! component that lacks a piece is a compile error at its line, and so are two
//! components of one kind with the same `type`.

/// Whether no two of `types` are the same: checked when the binary is compiled.
pub(crate) const fn distinct(types: &[&str]) -> bool {
    let mut i = 0;
    while i < types.len() {
        let mut j = i + 1;
        while j < types.len() {
            if same(types[i].as_bytes(), types[j].as_bytes()) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The config enum of one kind (`$enum`), with what every kind has: `TYPES`,
/// `kind()`, `decode_type()` and `validate()`.
macro_rules! config_enum {
    (
        $kind:literal, $enum:ident, $trait:path,
        $( $(#[cfg($cfg:meta)])? $variant:ident => $component:ty ),+
    ) => {
        #[doc = concat!("A ", $kind, "'s config: which ", $kind, " (`type`) and its own keys.")]
        #[derive(Debug, Clone)]
        // Built once per component at start; boxing would only add noise.
        #[allow(clippy::large_enum_variant)]
        pub enum $enum {
            $( $(#[cfg($cfg)])? $variant(<$component as $trait>::Config), )+
        }

        const _: () = assert!(
            $crate::registry::distinct($enum::TYPES),
            concat!("two ", $kind, "s have the same `type`")
        );

        impl $enum {
            #[doc = concat!("Every ", $kind, "'s `type`.")]
            pub const TYPES: &'static [&'static str] = &[
                $( $(#[cfg($cfg)])? <$component as $trait>::TYPE, )+
            ];

            /// The `type` as written.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(_) => <$component as $trait>::TYPE, )+
                }
            }

            #[doc = concat!("Decodes the keys of the ", $kind, " of type `kind`.")]
            pub fn decode_type<'de, D: ::serde::Deserializer<'de>>(
                kind: &str,
                rest: D,
            ) -> Result<Self, D::Error> {
                $( $(#[cfg($cfg)])?
                if kind == <$component as $trait>::TYPE {
                    return Ok(Self::$variant(::serde::Deserialize::deserialize(rest)?));
                } )+
                Err(::serde::de::Error::unknown_variant(kind, Self::TYPES))
            }

            /// Checks what serde cannot.
            pub fn validate(&self) -> Result<(), ::nagare_core::component::Invalid> {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(c) => <$component as $trait>::validate(c), )+
                }
            }
        }
    };
}

/// Expands to the config enum `SourceConfig` and the built `Source`.
macro_rules! sources {
    ($( $(#[cfg($cfg:meta)])? $variant:ident => $component:ty ),+ $(,)?) => {
        $crate::registry::config_enum!(
            "source", SourceConfig, ::nagare_core::component::SourceComponent,
            $( $(#[cfg($cfg)])? $variant => $component ),+
        );

        /// A source built from its config (its sockets bound), ready to run.
        #[derive(Debug)]
        // Built once per source at start and moved once into its task.
        #[allow(clippy::large_enum_variant)]
        pub enum Source {
            $( $(#[cfg($cfg)])? $variant($component), )+
        }

        impl SourceConfig {
            /// What `nagare validate` says about the source's tags.
            pub fn describe(&self) -> ::nagare_core::component::SourceTags {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(c) =>
                        <$component as ::nagare_core::component::SourceComponent>::describe(c), )+
                }
            }

            /// Builds the source: what must fail the start fails here.
            pub async fn build(self, name: &str) -> ::anyhow::Result<Source> {
                Ok(match self {
                    $( $(#[cfg($cfg)])? Self::$variant(c) => Source::$variant(
                        <$component as ::nagare_core::component::SourceComponent>::build(c, name)
                            .await?,
                    ), )+
                })
            }
        }

        impl Source {
            /// Runs the source until `ctx.shutdown`.
            pub async fn run(
                self,
                ctx: ::nagare_core::component::SourceContext,
            ) -> ::anyhow::Result<()> {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(s) =>
                        <$component as ::nagare_core::component::SourceComponent>::run(s, ctx)
                            .await?, )+
                }
                Ok(())
            }
        }
    };
}

/// Expands to the config enum `FilterConfig`.
macro_rules! filters {
    ($( $(#[cfg($cfg:meta)])? $variant:ident => $component:ty ),+ $(,)?) => {
        $crate::registry::config_enum!(
            "filter", FilterConfig, ::nagare_core::component::FilterComponent,
            $( $(#[cfg($cfg)])? $variant => $component ),+
        );

        impl FilterConfig {
            /// The running filter.
            pub fn build(
                &self,
            ) -> Result<
                ::std::sync::Arc<dyn ::nagare_core::router::Filter>,
                ::nagare_core::component::Invalid,
            > {
                Ok(match self {
                    $( $(#[cfg($cfg)])? Self::$variant(c) => ::std::sync::Arc::new(
                        <$component as ::nagare_core::component::FilterComponent>::build(c)?,
                    ), )+
                })
            }
        }
    };
}

/// Expands to the config enum `SinkConfig`.
macro_rules! sinks {
    ($( $(#[cfg($cfg:meta)])? $variant:ident => $component:ty ),+ $(,)?) => {
        $crate::registry::config_enum!(
            "sink", SinkConfig, ::nagare_core::component::SinkComponent,
            $( $(#[cfg($cfg)])? $variant => $component ),+
        );

        impl SinkConfig {
            /// The buffer's `chunk_limit_size` for this sink when the config sets
            /// none ([`SinkComponent::CHUNK_LIMIT_SIZE`]).
            ///
            /// [`SinkComponent::CHUNK_LIMIT_SIZE`]: ::nagare_core::component::SinkComponent::CHUNK_LIMIT_SIZE
            pub fn chunk_limit_size(&self) -> Option<::nagare_core::config::ByteSize> {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(_) =>
                        <$component as ::nagare_core::component::SinkComponent>::CHUNK_LIMIT_SIZE, )+
                }
            }

            /// Runs the sink until its buffer is closed and drained, or `ctx.abort`.
            pub async fn run(
                self,
                ctx: ::nagare_core::component::SinkContext,
            ) -> ::anyhow::Result<()> {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(c) =>
                        <$component as ::nagare_core::component::SinkComponent>::run(c, ctx)
                            .await?, )+
                }
                Ok(())
            }
        }
    };
}

pub(crate) use {config_enum, filters, sinks, sources};
