//! What a rolling run (`--batch`, `--max-fail`) adds to the bar and the summary, from the
//! pool's batch and budget events.

use std::sync::Mutex;

use rexec::{Event, Outcome};
use serde_json::json;

use crate::cli::args::Rollout;

use super::*;

/// What a rolling run adds to the progress bar and the summary, from the pool's batch and
/// budget events.
pub(super) struct RolloutView {
    options: Rollout,
    /// Batch sizes for the selected hosts (empty without --batch).
    sizes: Vec<usize>,
    allowed: usize,
    state: Mutex<RolloutState>,
}

#[derive(Default)]
pub(super) struct RolloutState {
    /// The batch in progress, from 1 (0 before the first).
    batch: usize,
    completed: usize,
    exceeded: bool,
    /// From the pool's last event of a stopped run: the budget-counted failures, the
    /// batch where the budget was exceeded and how many hosts never started.
    stopped: Option<(usize, Option<usize>, usize)>,
}

impl Reporter {
    /// A rolling run over `total` hosts: the bar shows the batch, the summary the budget.
    #[must_use]
    pub fn rollout(mut self, options: &Rollout, total: usize) -> Reporter {
        if options.batches.is_some() || options.budget.is_some() {
            self.rollout = Some(RolloutView {
                sizes: options
                    .batches
                    .as_ref()
                    .map(|b| b.split(total))
                    .unwrap_or_default(),
                allowed: options.budget.as_ref().map_or(0, |b| b.allowed(total)),
                options: options.clone(),
                state: Mutex::default(),
            });
        }
        self
    }

    /// Batch and budget events; whether `event` was one.
    pub(super) fn rollout_event<T>(&self, event: &Event<'_, T>) -> bool {
        let Some(view) = &self.rollout else {
            return false;
        };
        let Ok(mut state) = view.state.lock() else {
            return false;
        };
        match event {
            Event::BatchStarted { batch, .. } => state.batch = *batch,
            Event::BatchFinished { .. } => state.completed += 1,
            Event::BudgetExceeded { .. } => state.exceeded = true,
            Event::RolloutStopped {
                failed,
                batch,
                not_started,
                ..
            } => state.stopped = Some((*failed, *batch, *not_started)),
            _ => return false,
        }
        drop(state);
        self.update_bar();
        true
    }

    /// `batch 2/5: ` for the bar.
    pub(super) fn batch_prefix(&self) -> String {
        let Some(view) = &self.rollout else {
            return String::new();
        };
        let Ok(state) = view.state.lock() else {
            return String::new();
        };
        let mut text = String::new();
        if !view.sizes.is_empty() && state.batch > 0 {
            text.push_str(&format!("batch {}/{}: ", state.batch, view.sizes.len()));
        }
        if state.exceeded {
            text.push_str("failure budget exceeded, no new hosts: ");
        }
        text
    }

    /// `--- rollout stopped: 3 hosts failed (budget --max-fail 2) in batch 2/5; 40 hosts
    /// not started: node[11-50]`, when the budget stopped the run.
    pub(super) fn rollout_summary(&self, outcomes: &[(String, Outcome)]) -> String {
        let Some(view) = &self.rollout else {
            return String::new();
        };
        let Ok(state) = view.state.lock() else {
            return String::new();
        };
        let Some((failed, batch, not_started)) = state.stopped else {
            return String::new();
        };
        let plural = |n: usize| if n == 1 { "host" } else { "hosts" };
        let mut text = format!(
            "--- rollout stopped: {} {} failed (budget {})",
            failed,
            plural(failed),
            view.options.budget_flag
        );
        if let Some(batch) = batch {
            text.push_str(&format!(" in batch {batch}/{}", view.sizes.len()));
        }
        text.push_str(&format!(
            "; {not_started} {} not started",
            plural(not_started)
        ));
        let never: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::NotStarted)
            .map(|(h, _)| h.clone())
            .collect();
        if !never.is_empty() {
            text.push_str(&format!(": {}", summary_list(&never)));
        }
        text.push('\n');
        text
    }

    /// The JSON summary's `batches` (with --batch) and `budget` (with --max-fail).
    pub(super) fn rollout_json(
        &self,
        summary: &mut serde_json::Map<String, serde_json::Value>,
        outcomes: &[(String, Outcome)],
    ) {
        let Some(view) = &self.rollout else { return };
        let Ok(state) = view.state.lock() else { return };
        if view.options.batches.is_some() {
            summary.insert(
                "batches".into(),
                json!({"sizes": view.sizes, "completed": state.completed}),
            );
        }
        if let Some(budget) = &view.options.budget {
            let counted: Vec<&str> = budget.counted().iter().map(|o| o.as_str()).collect();
            let (_, batch, not_started) = state.stopped.unwrap_or((0, None, 0));
            // The pool's rule, applied to the run's outcomes.
            let failed = outcomes.iter().filter(|(_, o)| budget.counts(*o)).count();
            summary.insert(
                "budget".into(),
                json!({
                    "max_fail": budget.limit().to_string(),
                    "allowed": view.allowed,
                    "counted": counted,
                    "failed": failed,
                    "exceeded": state.stopped.is_some(),
                    "stopped_in_batch": batch,
                    "not_started": not_started,
                }),
            );
        }
    }
}
