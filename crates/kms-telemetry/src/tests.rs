use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kms_core::{KeyId, KeyMaterial, KeyProvider, KeyVersion, LiveVersions};
use kms_testing::capture::{self, Captured};
use kms_testing::{Fault, FaultyProvider, MemoryProvider};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::Value;

use super::*;

/// Every alert event named `alert`.
fn alerts_named<'a>(c: &'a Captured, alert: &str) -> Vec<&'a Value> {
    c.events(ALERT_TARGET)
        .into_iter()
        .filter(|e| e["fields"]["alert"] == alert)
        .collect()
}

/// Runs `fut` capturing its metrics and every event (all levels).
fn observe<F: Future>(fut: F) -> (F::Output, Captured) {
    capture::observe(tracing::Level::TRACE, fut).unwrap()
}

fn id() -> KeyId {
    KeyId::default()
}

const P: (&str, &str) = ("provider", "memory");

#[test]
fn successful_calls_are_counted_and_timed() {
    let metered = MeteredProvider::new(MemoryProvider::with_key(id()), TelemetryConfig::default());
    let ((), c) = observe(async {
        metered.current_key(&id()).await.unwrap();
        metered.current_key(&id()).await.unwrap();
        metered
            .key_version(&id(), &KeyVersion::from(1))
            .await
            .unwrap();
        metered.versions(&id()).await.unwrap();
        metered.metadata(&id()).await.unwrap();
    });
    let req = names::PROVIDER_REQUESTS_TOTAL;
    let ok = ("outcome", "ok");
    assert_eq!(
        c.counter(req, &[P, ("operation", "current_key"), ok]),
        Ok(2)
    );
    assert_eq!(
        c.counter(req, &[P, ("operation", "key_version"), ok]),
        Ok(1)
    );
    assert_eq!(c.counter(req, &[P, ("operation", "versions"), ok]), Ok(1));
    assert_eq!(c.counter(req, &[P, ("operation", "metadata"), ok]), Ok(1));
    assert_eq!(c.all_named(req).len(), 4, "{:?}", c.metrics);
    let durations = c
        .histogram(
            names::KEY_RETRIEVAL_DURATION_SECONDS,
            &[P, ("operation", "current_key")],
        )
        .unwrap();
    assert_eq!(durations.len(), 2);
    assert!(
        durations.iter().all(|d| (0.0..1.0).contains(d)),
        "{durations:?}"
    );
    assert!(c.all_named(names::PROVIDER_ERRORS_TOTAL).is_empty());
    assert!(c.all_named(names::KEY_ROTATIONS_TOTAL).is_empty());
    assert!(c.events(ALERT_TARGET).is_empty(), "{}", c.raw);
}

#[test]
fn errors_are_counted_by_kind_and_alerted() {
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(id())));
    let metered = MeteredProvider::new(faulty.clone(), TelemetryConfig::default());
    let ((), c) = observe(async {
        faulty.set_fault(Fault::Permanent);
        metered.current_key(&id()).await.unwrap_err();
        metered
            .rotate(&id(), &LiveVersions::all())
            .await
            .unwrap_err();
        faulty.set_fault(Fault::None);
        metered
            .key_version(&id(), &KeyVersion::from(9))
            .await
            .unwrap_err();
    });
    let err = ("outcome", "error");
    assert_eq!(
        c.counter(
            names::PROVIDER_REQUESTS_TOTAL,
            &[P, ("operation", "current_key"), err]
        ),
        Ok(1)
    );
    assert_eq!(
        c.counter(
            names::PROVIDER_ERRORS_TOTAL,
            &[P, ("operation", "current_key"), ("kind", "ACCESS_DENIED")]
        ),
        Ok(1)
    );
    assert_eq!(
        c.counter(
            names::PROVIDER_ERRORS_TOTAL,
            &[P, ("operation", "rotate"), ("kind", "ACCESS_DENIED")]
        ),
        Ok(1)
    );
    assert_eq!(
        c.counter(
            names::PROVIDER_ERRORS_TOTAL,
            &[P, ("operation", "key_version"), ("kind", "KEY_NOT_FOUND")]
        ),
        Ok(1)
    );
    assert_eq!(
        c.counter(names::KEY_ROTATIONS_TOTAL, &[P, ("outcome", "error")]),
        Ok(1)
    );
    // Retrieval failures alert; a failed rotation is not a retrieval failure.
    let alerts = alerts_named(&c, "key_retrieval_failure");
    assert_eq!(alerts.len(), 2, "{}", c.raw);
    assert!(alerts.iter().all(|a| a["level"] == "WARN"));
    assert_eq!(alerts[0]["fields"]["message"], "key retrieval failed");
    assert_eq!(alerts[0]["fields"]["op"], "current_key");
    assert_eq!(alerts[0]["fields"]["error"], "ACCESS_DENIED");
    assert_eq!(alerts[1]["fields"]["op"], "key_version");
    assert_eq!(alerts[1]["fields"]["version"], "9");
    assert!(alerts_named(&c, "kms_unavailable").is_empty());
}

#[test]
fn unavailable_raises_the_error_alert() {
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(id())));
    faulty.set_fault(Fault::Temporary);
    let metered = MeteredProvider::new(faulty.clone(), TelemetryConfig::default());
    let ((), c) = observe(async {
        metered.current_key(&id()).await.unwrap_err();
        metered.metadata(&id()).await.unwrap_err();
    });
    assert_eq!(
        c.counter(
            names::PROVIDER_ERRORS_TOTAL,
            &[P, ("operation", "current_key"), ("kind", "KMS_UNAVAILABLE")]
        ),
        Ok(1)
    );
    let alerts = alerts_named(&c, "kms_unavailable");
    assert_eq!(alerts.len(), 2, "{}", c.raw);
    for a in &alerts {
        assert_eq!(a["level"], "ERROR");
        assert_eq!(a["fields"]["message"], "provider unavailable");
        assert_eq!(a["fields"]["provider"], "memory");
        assert_eq!(a["fields"]["key_id"], "default");
        assert_eq!(
            a["fields"]["cause"],
            "KMS service unavailable: injected outage"
        );
    }
    assert_eq!(alerts[1]["fields"]["op"], "metadata");
    // Unavailable is not also reported as a retrieval failure.
    assert!(alerts_named(&c, "key_retrieval_failure").is_empty());
}

#[test]
fn rotations_are_counted_by_outcome() {
    let metered = MeteredProvider::new(MemoryProvider::with_key(id()), TelemetryConfig::default());
    let ((), c) = observe(async {
        let v2 = metered.rotate(&id(), &LiveVersions::all()).await.unwrap();
        assert_eq!(v2.version().as_str(), "2");
        // Check-and-set against the current version: rotates.
        let v3 = metered
            .rotate_if_current(&id(), v2.version(), &LiveVersions::all())
            .await
            .unwrap();
        assert!(v3.is_some());
        // Against a stale version: skipped.
        let none = metered
            .rotate_if_current(&id(), v2.version(), &LiveVersions::all())
            .await
            .unwrap();
        assert!(none.is_none());
    });
    assert_eq!(
        c.counter(names::KEY_ROTATIONS_TOTAL, &[P, ("outcome", "ok")]),
        Ok(2)
    );
    assert_eq!(
        c.counter(names::KEY_ROTATIONS_TOTAL, &[P, ("outcome", "skipped")]),
        Ok(1)
    );
    assert_eq!(
        c.counter(
            names::PROVIDER_REQUESTS_TOTAL,
            &[P, ("operation", "rotate_if_current"), ("outcome", "ok")]
        ),
        Ok(2)
    );
    let audit = c.events(AUDIT_TARGET);
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[0]["fields"]["op"], "rotate");
    assert_eq!(audit[0]["fields"]["version"], "2");
    assert_eq!(audit[1]["fields"]["version"], "3");
    assert_eq!(audit[2]["fields"]["outcome"], "skipped");
    assert_eq!(audit[2]["fields"]["version"], "2");
}

#[test]
fn slow_calls_raise_the_slow_alert() {
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(id())));
    let slow = MeteredProvider::new(
        faulty.clone(),
        TelemetryConfig::with_slow_threshold(Duration::from_millis(5)),
    );
    let relaxed = MeteredProvider::new(faulty.clone(), TelemetryConfig::default());
    let ((), c) = observe(async {
        faulty.set_latency(Duration::from_millis(30));
        slow.current_key(&id()).await.unwrap();
        relaxed.current_key(&id()).await.unwrap();
        faulty.set_latency(Duration::ZERO);
        slow.versions(&id()).await.unwrap();
    });
    let alerts = alerts_named(&c, "slow_response");
    assert_eq!(alerts.len(), 1, "{}", c.raw);
    let a = alerts[0];
    assert_eq!(a["level"], "WARN");
    assert_eq!(a["fields"]["message"], "slow provider response");
    assert_eq!(a["fields"]["op"], "current_key");
    assert_eq!(a["fields"]["threshold_ms"], 5);
    assert!(a["fields"]["latency_ms"].as_u64().unwrap() >= 30, "{a}");
    let durations = c
        .histogram(
            names::KEY_RETRIEVAL_DURATION_SECONDS,
            &[P, ("operation", "current_key")],
        )
        .unwrap();
    assert_eq!(durations.len(), 2);
    assert!(durations.iter().all(|d| *d >= 0.030), "{durations:?}");
}

#[test]
fn health_sets_the_gauge() {
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(id())));
    let metered = MeteredProvider::new(faulty.clone(), TelemetryConfig::default());
    let (healthy, c) = observe(metered.health());
    assert!(healthy.healthy);
    assert_eq!(c.gauge(names::PROVIDER_HEALTHY, &[P]), Ok(Some(1.0)));
    assert_eq!(
        c.histogram(
            names::KEY_RETRIEVAL_DURATION_SECONDS,
            &[P, ("operation", "health")]
        )
        .unwrap()
        .len(),
        1
    );
    // Health is a probe: no request counter, no audit event.
    assert!(c.all_named(names::PROVIDER_REQUESTS_TOTAL).is_empty());
    assert!(c.events(AUDIT_TARGET).is_empty());

    faulty.set_fault(Fault::Temporary);
    let (sick, c) = observe(metered.health());
    assert!(!sick.healthy);
    assert_eq!(c.gauge(names::PROVIDER_HEALTHY, &[P]), Ok(Some(0.0)));
}

#[test]
fn audit_events_carry_fields_and_never_key_bytes() {
    let memory = MemoryProvider::new();
    let material = KeyMaterial::from_bytes([0xA7; 32]);
    let hex = material.to_hex().to_string();
    let key = memory.add_version(&id(), material);
    let fingerprint = key.fingerprint().to_string();
    let metered = MeteredProvider::new(memory, TelemetryConfig::default());
    let ((), c) = observe(async {
        metered.current_key(&id()).await.unwrap();
        metered
            .key_version(&id(), &KeyVersion::from(1))
            .await
            .unwrap();
        metered.versions(&id()).await.unwrap();
        metered.metadata(&id()).await.unwrap();
        metered
            .current_key(&KeyId::new("missing").unwrap())
            .await
            .unwrap_err();
    });
    let audit = c.events(AUDIT_TARGET);
    assert_eq!(audit.len(), 5, "{}", c.raw);
    for (event, op) in audit.iter().zip([
        "current_key",
        "key_version",
        "versions",
        "metadata",
        "current_key",
    ]) {
        let f = &event["fields"];
        assert_eq!(event["level"], "INFO");
        assert_eq!(f["message"], "key operation");
        assert_eq!(f["op"], op);
        assert_eq!(f["provider"], "memory");
        assert!(f["latency_ms"].is_u64(), "{event}");
    }
    let ok = &audit[0]["fields"];
    assert_eq!(ok["key_id"], "default");
    assert_eq!(ok["version"], "1");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["fingerprint"], fingerprint.as_str());
    assert!(ok.get("error").is_none());
    assert_eq!(audit[2]["fields"]["version"], "1");
    assert_eq!(audit[3]["fields"]["version"], "1");
    let failed = &audit[4]["fields"];
    assert_eq!(failed["key_id"], "missing");
    assert_eq!(failed["outcome"], "error");
    assert_eq!(failed["error"], "KEY_NOT_FOUND");
    assert!(failed.get("version").is_none());

    let raw = c.raw.to_ascii_lowercase();
    assert!(!raw.contains(&hex.to_ascii_lowercase()), "{raw}");
    assert!(!raw.contains("a7a7a7a7"), "{raw}");
}

#[test]
fn every_trait_method_is_forwarded() {
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(id())));
    let metered = MeteredProvider::new(faulty.clone(), TelemetryConfig::default());
    assert_eq!(metered.name(), "memory");
    let ((), c) = observe(async {
        metered.current_key(&id()).await.unwrap();
        metered
            .key_version(&id(), &KeyVersion::from(1))
            .await
            .unwrap();
        metered.versions(&id()).await.unwrap();
        metered.rotate(&id(), &LiveVersions::all()).await.unwrap();
        metered
            .rotate_if_current(&id(), &KeyVersion::from(2), &LiveVersions::all())
            .await
            .unwrap();
        let imported = metered
            .import(
                &id(),
                KeyMaterial::from_bytes([0x11; 32]),
                &LiveVersions::all(),
            )
            .await
            .unwrap();
        assert_eq!(imported.version().as_str(), "4");
        metered.metadata(&id()).await.unwrap();
        metered.health().await;
    });
    assert_eq!(faulty.calls(), 8);
    let ops: Vec<&str> = c
        .all_named(names::KEY_RETRIEVAL_DURATION_SECONDS)
        .iter()
        .filter_map(|(_, labels, _)| {
            labels
                .iter()
                .find(|(k, _)| k == "operation")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert_eq!(
        ops,
        [
            "current_key",
            "key_version",
            "versions",
            "rotate",
            "rotate_if_current",
            "import",
            "metadata",
            "health"
        ]
    );
}

#[test]
fn debug_is_redacted() {
    let memory = MemoryProvider::new();
    let material = KeyMaterial::from_bytes([0x5C; 32]);
    let hex = material.to_hex().to_string();
    memory.add_version(&id(), material);
    let text = format!(
        "{:?}",
        MeteredProvider::new(memory, TelemetryConfig::default())
    );
    assert!(text.starts_with("MeteredProvider"), "{text}");
    assert!(text.contains("slow_threshold: 1s"), "{text}");
    assert!(!text.to_ascii_lowercase().contains(&hex), "{text}");
}

#[test]
fn default_threshold_is_the_spec_s() {
    assert_eq!(DEFAULT_SLOW_THRESHOLD, Duration::from_millis(1000));
    assert_eq!(
        TelemetryConfig::default().slow_threshold,
        DEFAULT_SLOW_THRESHOLD
    );
}

/// One description: name, metric type, unit, help text.
type Description = (String, &'static str, Option<Unit>, String);

/// A recorder that only remembers descriptions.
#[derive(Default)]
struct Descriptions(Mutex<Vec<Description>>);

impl Descriptions {
    fn push(&self, kind: &'static str, key: &KeyName, unit: Option<Unit>, help: &SharedString) {
        self.0
            .lock()
            .unwrap()
            .push((key.as_str().to_owned(), kind, unit, help.to_string()));
    }
}

impl Recorder for Descriptions {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push("counter", &key, unit, &help);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push("gauge", &key, unit, &help);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push("histogram", &key, unit, &help);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn describe_metrics_describes_every_name() {
    let recorder = Descriptions::default();
    metrics::with_local_recorder(&recorder, describe_metrics);
    let described = recorder.0.into_inner().unwrap();
    assert_eq!(described.len(), names::ALL.len());
    for name in names::ALL {
        let (_, kind, unit, help) = described
            .iter()
            .find(|(n, ..)| n == name)
            .unwrap_or_else(|| panic!("{name} is not described"));
        assert!(!help.is_empty());
        let expected = if name.ends_with("_seconds") {
            ("histogram", Some(Unit::Seconds))
        } else if name.ends_with("_total") {
            ("counter", Some(Unit::Count))
        } else {
            ("gauge", None)
        };
        assert_eq!((*kind, *unit), expected, "{name}");
    }
}

#[test]
fn without_a_recorder_or_subscriber_calls_still_work() {
    let metered = MeteredProvider::new(MemoryProvider::with_key(id()), TelemetryConfig::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let key = rt.block_on(metered.current_key(&id())).unwrap();
    assert_eq!(key.version().as_str(), "1");
}
