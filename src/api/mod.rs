//! The lab server's two APIs, thin adapters over [`crate::service::LabService`]:
//! - [`rest`]: JSON over HTTP (axum), Server-Sent Events, the OpenAPI document.
//! - [`grpc`]: the same operations over gRPC (tonic), with reflection and health.
//! - [`metrics`]: `GET /metrics` and the latency middleware of both.

pub mod grpc;
pub mod metrics;
pub mod rest;
pub mod web;
