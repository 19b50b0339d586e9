//! Prometheus metrics served on the admin listener (SPEC §10 names).

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};

/// Every metric cordon exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `cordon_requests_total{decision,reason}`.
    pub requests: IntCounterVec,
    /// `cordon_request_duration_seconds{decision}`.
    pub request_duration: HistogramVec,
    /// `cordon_audit_records_total`.
    pub audit_records: IntCounter,
    /// `cordon_credential_expiry_seconds{credential}`: seconds until the current value expires.
    pub credential_expiry: GaugeVec,
    /// `cordon_credential_rotations_total{credential,reason}`.
    pub credential_rotations: IntCounterVec,
    /// `cordon_scan_findings_total{direction,rule,action}`.
    pub scan_findings: IntCounterVec,
    /// `cordon_dns_queries_total{decision}`.
    pub dns_queries: IntCounterVec,
    /// `cordon_dns_upstream_seconds`: how long upstream answers took.
    pub dns_upstream: Histogram,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "cordon_requests_total",
                "Proxy decisions by outcome and reason.",
            ),
            &["decision", "reason"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "cordon_request_duration_seconds",
                "Time from request head to the end of the response.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["decision"],
        )
        .expect("static metric definition");
        let audit_records = IntCounter::new(
            "cordon_audit_records_total",
            "Audit records written to the trail.",
        )
        .expect("static metric definition");
        let credential_expiry = GaugeVec::new(
            Opts::new(
                "cordon_credential_expiry_seconds",
                "Seconds until the current value of a credential expires.",
            ),
            &["credential"],
        )
        .expect("static metric definition");
        let credential_rotations = IntCounterVec::new(
            Opts::new(
                "cordon_credential_rotations_total",
                "New credential values taken into use, by reason.",
            ),
            &["credential", "reason"],
        )
        .expect("static metric definition");
        let scan_findings = IntCounterVec::new(
            Opts::new("cordon_scan_findings_total", "Secrets found by scanning."),
            &["direction", "rule", "action"],
        )
        .expect("static metric definition");
        let dns_queries = IntCounterVec::new(
            Opts::new("cordon_dns_queries_total", "Resolver decisions by outcome."),
            &["decision"],
        )
        .expect("static metric definition");
        let dns_upstream = Histogram::with_opts(
            HistogramOpts::new(
                "cordon_dns_upstream_seconds",
                "Time the upstream DNS servers took.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
            ]),
        )
        .expect("static metric definition");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(audit_records.clone()),
            Box::new(credential_expiry.clone()),
            Box::new(credential_rotations.clone()),
            Box::new(scan_findings.clone()),
            Box::new(dns_queries.clone()),
            Box::new(dns_upstream.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_duration,
            audit_records,
            credential_expiry,
            credential_rotations,
            scan_findings,
            dns_queries,
            dns_upstream,
        }
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        // Encoding into a Vec cannot fail for the text format.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
