//! rancon keeps a service registry in step with an orchestrator.
//!
//! Data flows one way: config → build → fetch → pure plan → apply (see ARCHITECTURE.md).

pub mod app;
pub mod backend;
pub mod build;
pub mod cli;
pub mod config;
pub mod consul;
pub mod engine;
pub mod error;
pub mod http;
pub mod implied;
pub mod labels;
pub mod leader;
pub mod legacy;
pub mod logging;
pub mod man;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plan;
pub mod process_metrics;
pub mod purge;
pub mod report_print;
pub mod serve;
pub mod source;
pub mod template;
pub mod wakes;
pub mod watch;
