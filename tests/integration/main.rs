//! The integration tests, one binary (as ripgrep lays them out): one link step, one
//! shared harness (`harness`: sshd servers, clusters, network namespaces, sudo, the CLI).
//! Each module is one area; every test talks to real OpenSSH servers the harness starts.

mod harness;

mod algorithms;
mod auth;
mod cli;
mod cli_lifecycle;
mod cli_transfer;
mod commands;
mod connect;
mod examples;
mod host_certificates;
mod host_keys;
mod host_names;
mod hostile_input;
mod inventory;
mod ipv6;
mod jump;
mod jump_measure;
mod key_formats;
mod lifecycle;
mod odd_peers;
mod peers;
mod pool;
mod rollout;
mod sftp;
mod sftp_safety;
mod shard;
mod ssh_config;
mod sudo;
mod template;
mod user_certificates;
