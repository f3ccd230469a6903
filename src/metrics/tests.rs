use super::*;

/// The value of one sample line (`name{labels} value`).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[test]
fn renders_counts_with_bounded_labels() {
    let m = Metrics::default();
    m.request("accepted");
    m.request("accepted");
    m.event("message.received", "accepted");
    m.event("made.up.by.sender", "accepted");
    m.delivery("warehouse", "delivered");
    m.reload("error");
    let text = m.render(&[], None, None);
    assert!(
        text.contains("relay_requests_total{outcome=\"accepted\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("relay_events_total{type=\"other\",outcome=\"accepted\"} 1\n"));
    assert!(!text.contains("made.up"));
    assert!(
        text.contains("relay_deliveries_total{target=\"warehouse\",outcome=\"delivered\"} 1\n")
    );
    assert!(text.contains("relay_config_reloads_total{outcome=\"error\"} 1\n"));
}

#[test]
fn histograms_are_cumulative_with_sum_and_count() {
    let m = Metrics::default();
    m.delivery_duration("w", Duration::from_millis(3));
    m.delivery_duration("w", Duration::from_millis(30));
    m.delivery_duration("w", Duration::from_secs(60));
    m.commit(Duration::from_millis(2), 40);
    let text = m.render(&[], None, None);
    assert!(
        text.contains("relay_delivery_duration_seconds_bucket{target=\"w\",le=\"0.005\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("relay_delivery_duration_seconds_bucket{target=\"w\",le=\"0.05\"} 2\n"));
    // Bounds are written as before (`10`, not `10.0`), so existing queries on `le` still match.
    assert!(text.contains("relay_delivery_duration_seconds_bucket{target=\"w\",le=\"10\"} 2\n"));
    assert!(text.contains("relay_delivery_duration_seconds_bucket{target=\"w\",le=\"+Inf\"} 3\n"));
    assert!(text.contains("relay_delivery_duration_seconds_count{target=\"w\"} 3\n"));
    assert_eq!(
        value(&text, "relay_delivery_duration_seconds_sum{target=\"w\"}"),
        Some(60.033)
    );
    assert!(text.contains("relay_commit_duration_seconds_bucket{le=\"0.0025\"} 1\n"));
    assert!(text.contains("relay_commit_batch_size_bucket{le=\"25\"} 0\n"));
    assert!(text.contains("relay_commit_batch_size_bucket{le=\"50\"} 1\n"));
    assert!(text.contains("relay_commit_batch_size_count 1\n"));
    assert_eq!(value(&text, "relay_commit_batch_size_sum"), Some(40.0));
}

#[test]
fn gauges_come_from_the_values_given() {
    let m = Metrics::default();
    let targets = [TargetGauges {
        target: "slack".into(),
        queued: 7,
        dead: 2,
        breaker_open: true,
    }];
    let text = m.render(&targets, Some(4096), None);
    assert!(
        text.contains("relay_queue_depth{target=\"slack\"} 7\n"),
        "{text}"
    );
    assert!(text.contains("relay_dead_letters{target=\"slack\"} 2\n"));
    assert!(text.contains("relay_breaker_open{target=\"slack\"} 1\n"));
    assert!(text.contains("relay_store_bytes 4096\n"));
}

#[test]
fn the_storage_budget_is_a_set_of_gauges() {
    let status = StorageStatus {
        ingest: "stopped",
        stopped_by: Some(crate::store::SpaceLimit::MaxBytes),
        used_bytes: 900,
        reserve_bytes: 100,
        max_bytes: Some(1000),
        free_bytes: 5000,
        ..StorageStatus::default()
    };
    let text = Metrics::default().render(&[], Some(1200), Some(&status));
    for line in [
        "relay_store_bytes 1200\n",
        "relay_store_used_bytes 900\n",
        "relay_store_reserve_bytes 100\n",
        "relay_store_ingest_stopped 1\n",
        "relay_store_max_bytes 1000\n",
        "relay_store_filesystem_free_bytes 5000\n",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let open = StorageStatus {
        max_bytes: None,
        ..StorageStatus::default()
    };
    let text = Metrics::default().render(&[], None, Some(&open));
    assert!(text.contains("relay_store_ingest_stopped 0\n"));
    assert!(!text.contains("relay_store_max_bytes"), "{text}");
}

/// Names, types and help texts as the hand-written encoder wrote them, which dashboards and
/// alerts were built against; the library must not change a character of them.
#[test]
fn every_relay_metric_keeps_its_name_type_and_help() {
    let m = Metrics::default();
    m.request("accepted");
    m.event("message.received", "accepted");
    m.delivery("t", "delivered");
    m.reload("ok");
    m.delivery_duration("t", Duration::from_millis(1));
    let targets = [TargetGauges {
        target: "t".into(),
        ..TargetGauges::default()
    }];
    let expected = "\
# HELP relay_requests_total Inbound requests by outcome.
# TYPE relay_requests_total counter
# HELP relay_events_total Signed events by type and outcome.
# TYPE relay_events_total counter
# HELP relay_deliveries_total Delivery attempts by target and outcome.
# TYPE relay_deliveries_total counter
# HELP relay_config_reloads_total Config reloads by outcome (ok, error).
# TYPE relay_config_reloads_total counter
# HELP relay_delivery_duration_seconds Time one delivery attempt took.
# TYPE relay_delivery_duration_seconds histogram
# HELP relay_commit_duration_seconds Time one store transaction took, fsync included.
# TYPE relay_commit_duration_seconds histogram
# HELP relay_commit_batch_size Operations per store transaction (group commit).
# TYPE relay_commit_batch_size histogram
# HELP relay_queue_depth Deliveries waiting or in flight.
# TYPE relay_queue_depth gauge
# HELP relay_dead_letters Dead letters kept.
# TYPE relay_dead_letters gauge
# HELP relay_breaker_open 1 while the target's circuit breaker is open.
# TYPE relay_breaker_open gauge
# HELP relay_store_bytes Size of the store on disk (database, WAL and reserve file).
# TYPE relay_store_bytes gauge
# HELP relay_store_used_bytes What the store's data takes, less free pages inside its file.
# TYPE relay_store_used_bytes gauge
# HELP relay_store_reserve_bytes Room kept for draining the queue once ingest stops.
# TYPE relay_store_reserve_bytes gauge
# HELP relay_store_ingest_room_bytes How much more ingest may store before it stops (0 while stopped).
# TYPE relay_store_ingest_room_bytes gauge
# HELP relay_store_ingest_stopped 1 while new events are answered 504 store_full.
# TYPE relay_store_ingest_stopped gauge
# HELP relay_store_max_bytes storage.max_bytes: the most the store's files may take.
# TYPE relay_store_max_bytes gauge
# HELP relay_store_min_free_bytes storage.min_free: free space left on the store's file system.
# TYPE relay_store_min_free_bytes gauge
# HELP relay_store_filesystem_free_bytes Free space of the store's file system.
# TYPE relay_store_filesystem_free_bytes gauge
# HELP relay_store_filesystem_bytes Size of the store's file system.
# TYPE relay_store_filesystem_bytes gauge
";
    let status = StorageStatus {
        max_bytes: Some(1),
        ..StorageStatus::default()
    };
    let text = m.render(&targets, Some(1), Some(&status));
    let described: String = text
        .lines()
        .filter(|l| l.starts_with("# ") && l.contains(" relay_"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(described, expected);
}

/// A family with no series yet (no request counted, no target configured) is left out
/// whole, as the Go client does, rather than announced with no samples.
#[test]
fn a_family_with_no_series_yet_is_left_out() {
    let m = Metrics::default();
    let text = m.render(&[], None, None);
    assert!(!text.contains("relay_requests_total"), "{text}");
    assert!(!text.contains("relay_queue_depth"), "{text}");
    // Histograms without labels always have their one series.
    assert!(text.contains("relay_commit_batch_size_count 0\n"), "{text}");
    m.request("accepted");
    assert!(
        m.render(&[], None, None)
            .contains("# TYPE relay_requests_total counter\n")
    );
}

/// Each sample belongs to the family announced just before it, as the 0.0.4 text format
/// requires (a scraper reads a sample of another name as a new, untyped family).
#[test]
fn every_sample_follows_its_own_type_line() {
    let m = Metrics::default();
    m.request("accepted");
    m.delivery_duration("w", Duration::from_millis(3));
    m.commit(Duration::from_millis(2), 4);
    let targets = [TargetGauges {
        target: "w".into(),
        ..TargetGauges::default()
    }];
    let text = m.render(&targets, Some(1), Some(&StorageStatus::default()));
    let mut family = String::new();
    let mut types = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            family = name.to_string();
            types.push((family.clone(), kind.to_string()));
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| *b == family))
                .unwrap_or(name);
            assert_eq!(base, family, "{line} outside its family in:\n{text}");
        }
    }
    let mut names: Vec<_> = types.iter().map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        types.len(),
        "a family announced twice:\n{text}"
    );
}

#[test]
fn concurrent_counting_loses_nothing() {
    let m = Metrics::default();
    std::thread::scope(|s| {
        for t in 0..8 {
            let m = &m;
            s.spawn(move || {
                for _ in 0..1000 {
                    m.request("accepted");
                    m.delivery(if t % 2 == 0 { "a" } else { "b" }, "delivered");
                    m.delivery_duration("a", Duration::from_millis(1));
                }
            });
        }
    });
    let text = m.render(&[], None, None);
    assert_eq!(
        value(&text, "relay_requests_total{outcome=\"accepted\"}"),
        Some(8000.0)
    );
    assert_eq!(
        value(
            &text,
            "relay_deliveries_total{target=\"a\",outcome=\"delivered\"}"
        ),
        Some(4000.0)
    );
    assert_eq!(
        value(&text, "relay_delivery_duration_seconds_count{target=\"a\"}"),
        Some(8000.0)
    );
}

#[cfg(target_os = "linux")]
#[test]
fn the_process_metrics_describe_this_process() {
    let text = Metrics::default().render(&[], None, None);
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_threads", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} missing from:\n{text}"
        );
    }
    let get = |name: &str| value(&text, name).unwrap_or_else(|| panic!("{name} in:\n{text}"));
    // This very test holds files open (stdout, the test harness's pipes) and has memory.
    let open = get("process_open_fds");
    assert!(open >= 1.0, "{text}");
    assert!(get("process_max_fds") >= open, "{text}");
    let rss = get("process_resident_memory_bytes");
    assert!(
        rss > 0.0 && get("process_virtual_memory_bytes") >= rss,
        "{text}"
    );
    assert!(get("process_threads") >= 1.0, "{text}");
    assert!(get("process_cpu_seconds_total") >= 0.0, "{text}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let started = get("process_start_time_seconds");
    // Started before now (one tick of slack for the kernel's rounding) and not years ago.
    assert!(
        started <= now + 1.0 && started > now - 86_400.0 * 365.0,
        "{started} vs now {now}"
    );
}
