//! Integration tests: the built `dbctl` binary on temporary GitOps repos against real
//! PostgreSQL, MariaDB and Redis servers started by dbctl itself.

mod support;

mod apply;
mod backup;
mod bad_input;
mod ci;
mod convergence;
mod day2;
mod gitops;
mod ha;
mod hostile;
mod kubernetes;
mod lifecycle;
mod nomad;
mod openstack;
mod overrides;
mod progress;
mod render;
mod schema;
mod ssh;
mod statuspage;
mod terraform;
