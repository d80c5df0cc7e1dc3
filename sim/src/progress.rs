//! The live progress bar of a federation run.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use zkfed_coordinator::event_loop::CoordinatorTelemetry;
use zkfed_participant::participation::ParticipantTelemetry;

use crate::Options;

/// The progress bar: rounds closed, and in the open round the proofs made and judged.
pub(crate) struct RoundProgress {
    pub(crate) bar: ProgressBar,
    pub(crate) provers: usize,
    pub(crate) open: u64,
    pub(crate) proved: usize,
    pub(crate) judged: usize,
}

impl RoundProgress {
    pub(crate) fn new(options: &Options, provers: usize) -> Self {
        let bar = if options.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(options.rounds)
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} round {pos}/{len} [{bar:30}] {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let progress = RoundProgress {
            bar,
            provers,
            open: 1,
            proved: 0,
            judged: 0,
        };
        progress.show();
        progress
    }

    pub(crate) fn proved(&mut self, event: &ParticipantTelemetry) {
        if matches!(event, ParticipantTelemetry::Proved { round, .. } if *round == self.open) {
            self.proved += 1;
            self.show();
        }
    }

    pub(crate) fn observe(&mut self, event: &CoordinatorTelemetry) {
        match event {
            CoordinatorTelemetry::Judged { round, .. } if *round == self.open => self.judged += 1,
            CoordinatorTelemetry::Closed { round, .. } => {
                self.bar.set_position(*round);
                self.open = round + 1;
                self.proved = 0;
                self.judged = 0;
            }
            _ => return,
        }
        self.show();
    }

    pub(crate) fn show(&self) {
        self.bar.set_message(format!(
            "round {}: {}/{} proved, {} judged",
            self.open, self.proved, self.provers, self.judged
        ));
    }
}
