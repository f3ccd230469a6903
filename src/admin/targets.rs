//! `GET /api/v1/targets` and `POST /api/v1/targets/{name}/enable|pause`: what every target is
//! doing, and the operator's hand on it.
//!
//! A change is persisted by the store first and only then copied to the target's health view
//! (which its dispatcher reads before every claim), so what this API shows is never ahead of
//! what a restart would find.

use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;
use serde_json::{Value, json};

use super::{Admin, Answer, error, json_ok};
use crate::config::{DeliveryOrder, OnFull, TargetSettings};
use crate::store::{ControlChange, StoreError, TargetCounts, unix_ms};
use crate::targets::health::TargetHealth;

/// One target as the admin API sees it.
pub struct AdminTarget {
    /// Its settings (concurrency, rate limit, ordering, quota).
    pub config: TargetSettings,
    /// Shared with its dispatcher.
    pub health: Arc<TargetHealth>,
}

impl Admin {
    pub(super) async fn target_list(&self) -> Answer {
        let config = self.config.get();
        let mut out = Vec::with_capacity(config.targets.len());
        for target in &config.targets {
            match self.store.counts(&target.config.name).await {
                Ok(counts) => out.push(view(target, &counts)),
                Err(e) => return unavailable(&e),
            }
        }
        // Targets removed from the config whose deliveries wait in the store.
        let orphaned = super::orphans(self.store.as_ref(), &config).await;
        json_ok(json!({ "targets": out, "unconfigured": orphaned }))
    }

    pub(super) async fn control_target(&self, name: &str, change: ControlChange) -> Answer {
        let config = self.config.get();
        let Some(target) = config
            .targets
            .iter()
            .find(|t| t.config.name.as_str() == name)
        else {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_target",
                &format!("no target named {name:?}"),
            );
        };
        let id = &target.config.name;
        let control = match self.store.set_control(id, change.clone()).await {
            Ok(control) => control,
            Err(e) => return unavailable(&e),
        };
        target.health.set_control(control);
        // Only now can the dispatcher see the change: wake it so a resumed target sends at once.
        self.store.wakeup(id).notify_one();
        match change {
            ControlChange::Pause => tracing::warn!(target = %id, "target paused by an operator"),
            _ => tracing::info!(target = %id, "target enabled by an operator"),
        }
        match self.store.counts(id).await {
            Ok(counts) => json_ok(view(target, &counts)),
            Err(e) => unavailable(&e),
        }
    }
}

/// The JSON for one target.
fn view(target: &AdminTarget, counts: &TargetCounts) -> Value {
    let config = &target.config;
    let health = target.health.snapshot();
    let control = target.health.control();
    let now = unix_ms(SystemTime::now());
    let oldest_age = counts
        .oldest_queued_at
        .map(|at| (now - at).max(0) as f64 / 1000.0);
    let ordering = match config.ordering {
        DeliveryOrder::Unordered => "unordered",
        DeliveryOrder::Fifo => "fifo",
        DeliveryOrder::Key(_) => "key",
    };
    json!({
        "name": config.name.as_str(),
        "kind": config.kind.kind().name(),
        "queued": counts.queued,
        "in_flight": counts.in_flight,
        "dead": counts.dead,
        "oldest_queued_age_seconds": oldest_age,
        "breaker": target.health.breaker().as_str(),
        "disabled": control.disabled.is_some(),
        "disabled_reason": control.disabled.as_ref().map(|d| d.reason.as_str()),
        "disabled_at": control.disabled.as_ref().map(|d| d.at),
        "paused": control.paused_at.is_some(),
        "paused_at": control.paused_at,
        "rate_limit": config.rate_limit.map(|r| r.to_string()),
        "concurrency": config.concurrency,
        "ordering": ordering,
        "max_queue": config.max_queue,
        "on_full": config.max_queue.map(|_| match config.on_full {
            OnFull::Reject => "reject",
            OnFull::DeadLetter => "dead_letter",
        }),
        "last_error": health.last_error,
        "needs_attention": health.needs_attention,
    })
}

fn unavailable(e: &StoreError) -> Answer {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        &e.to_string(),
    )
}
