//! The agent-facing HTTP proxy.
