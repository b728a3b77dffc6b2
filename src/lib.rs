//! hearth: self-hosted shared terminal sessions over plain SSH.
//!
//! # Layout, in data-flow order
//!
//! - [`cli`]: the command line; talks to the daemon through `hearth-rpc`.
//! - [`daemon`]: the control socket, the tarpc adapter, the registry of sessions.
//! - [`ssh`]: one SSH listener per session; auth; a handler per connection and a writer
//!   task per client.
//! - [`session`]: transport-free core: PTY threads, output log, screen model, sizing.
//! - [`menu`]: the `!>` pause menu: trigger detector, state machine, ratatui view.
//! - [`logging`]: bounded log writers (capped lines, a rotated file).
//! - [`dashboard`]: the dashboard of every session (`hearth top`, the lobby): model, keys,
//!   view, and the feed both share.
//! - [`mcp`]: `hearth mcp`, the MCP server over `hearth-rpc`.
//! - [`search`]: `grep` over every recording: text indexes beside them, the scan.
//! - [`authorized_keys`]: `authorized_keys` lines and key-file rules (shared by `ssh` and `cli`).
//! - [`join`]: this machine's host name and the `ssh` line that joins a listener.
//! - [`paths`]: XDG locations.
//!
//! See `docs/architecture.md` for the invariants.

pub mod authorized_keys;
pub mod cli;
pub mod daemon;
pub mod dashboard;
pub mod join;
pub mod logging;
pub mod mcp;
pub mod menu;
pub mod paths;
pub mod search;
pub mod session;
pub mod ssh;
pub mod text;
pub mod tripwire;
pub mod web;
