//! Health: active checks (HAProxy's model: interval, timeout, rise, fall)
//! and passive outlier detection (Envoy's model: consecutive failures eject
//! a backend for a back-off that grows on repeat, capped share of ejected
//! backends).
//!
//! A backend takes traffic unless a check has marked it down, outlier
//! detection has ejected it, it is being drained or its weight is 0. New
//! backends take traffic at once (health "unknown") until a check says
//! otherwise.

mod active;
mod outlier;

pub use self::active::{CheckKind, HealthCheck};
pub use self::outlier::OutlierDetection;
