//! The standard `process_*` metrics every Prometheus client exposes, read from `/proc/self`
//! at each scrape.
//!
//! Names, types and help texts are those of the Go client (client_golang), so dashboards and
//! alerts written for any Prometheus-instrumented program work unchanged. `prometheus-client`
//! ships no such collector; the one built for it (`kubert-prometheus-process`) is tied to an
//! older `prometheus-client`, so this maps `procfs`'s parsed `/proc` files onto the metrics
//! instead. A file that cannot be read leaves its metrics out of that scrape rather than
//! reporting zeros.

use procfs::process::{LimitValue, Process};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Ok(me) = Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            // Counters are named without `_total`: the encoder adds it.
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.vsize,
            )?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.rss.saturating_mul(procfs::page_size()),
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    boot as f64 + stat.starttime as f64 / ticks,
                )?;
            }
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process.",
                stat.num_threads,
            )?;
        }
        if let Ok(fds) = me.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                fds,
            )?;
        }
        if let Ok(limits) = me.limits() {
            // No limit reads as 2^64 - 1, as the Go client reports it.
            let max = match limits.max_open_files.soft_limit {
                LimitValue::Value(v) => v,
                LimitValue::Unlimited => u64::MAX,
            };
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        Ok(())
    }
}

fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}
