//! The end-to-end tests: real tidewright processes over loopback, one
//! module per area. They are one test binary, so the control plane, worker
//! and operator are linked once for all of them; nextest still runs each
//! test in a process of its own. One area's tests:
//! `cargo nextest run -p tidewright-tests --test end_to_end -E 'test(/^verify::/)'`.

mod a2a;
mod access;
mod agent_fixtures;
mod agent_runtimes;
mod agents_dag;
mod approvals;
mod attempts;
mod bad_input;
mod broker;
mod budgets;
mod chart;
mod checkpoints;
mod claude;
mod client;
mod codex;
mod console;
mod costs;
mod demo;
mod docs;
mod evals;
mod failover;
mod fallback;
mod faults;
mod fleet_mcp;
mod http_api;
mod land;
mod layers;
mod metrics;
mod operator;
mod operator_schedules;
mod operator_shares;
mod operator_triggers;
mod parallel_feature;
mod planner;
mod policy;
mod postgres;
mod pull_requests;
mod release;
mod repo_flow;
mod repos;
mod retention;
mod review;
mod sandbox;
mod sandbox_reach;
mod schedules;
mod security;
mod seeds;
mod shares;
mod state;
mod steer;
mod tasks;
mod telemetry;
mod templates;
mod triggers;
mod unserved;
mod up;
mod upgrade;
mod upgrade_fixtures;
mod verify;
mod version;
mod webhooks;
mod worktrees;
