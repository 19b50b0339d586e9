//! Prometheus metrics served on the admin listener.
