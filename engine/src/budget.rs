//! The node's own gossip budget.

use byzgossip_reputation::BudgetConfig;

/// Keeps this node's own gossip under the origin budget every peer applies to a new origin
/// (`BudgetConfig::origin_base_*`): beyond it, peers would drop the messages and blame us, so
/// `publish` refuses instead and the application gets backpressure, not silent loss. A token
/// bucket over the engine's `now_ms`.
pub(crate) struct PublishBudget {
    tokens: f64,
    at_ms: u64,
    pub(crate) rate_per_s: f64,
    burst: f64,
}

impl PublishBudget {
    pub(crate) fn new(budget: &BudgetConfig, now_ms: u64) -> Self {
        // Stay a little under the peers' limit so clock and timing differences never cross it.
        let (rate_per_s, burst) = (budget.origin_base_rate_per_s * 0.9, budget.origin_base_burst * 0.9);
        Self { tokens: burst, at_ms: now_ms, rate_per_s, burst }
    }

    pub(crate) fn take(&mut self, now_ms: u64) -> bool {
        let elapsed_s = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed_s * self.rate_per_s).min(self.burst);
        self.at_ms = self.at_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_publish_budget_refuses_beyond_its_burst_and_refills() {
        let peers = BudgetConfig::default();
        let mut budget = PublishBudget::new(&peers, 1_000);
        let burst = budget.burst as usize;
        assert!((0..burst).all(|_| budget.take(1_000)), "the burst is available at once");
        assert!(!budget.take(1_000), "beyond the burst, publish must wait for the refill");
        assert!(budget.take(1_000 + (1000.0 / budget.rate_per_s).ceil() as u64), "one token after 1/rate");
        assert!(budget.rate_per_s < peers.origin_base_rate_per_s && budget.burst < peers.origin_base_burst);
    }
}
