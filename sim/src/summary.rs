//! From what a federation reported to the report: per-round rows, the adversarial summary
//! and the printed summary.

use std::collections::BTreeMap;
use std::io::Write;

use libp2p::PeerId;
use zkfed_air::Model;
use zkfed_coordinator::event_loop::CoordinatorTelemetry;
use zkfed_coordinator::events::AuditEvent;
use zkfed_participant::participation::ParticipantTelemetry;
use zkfed_protocol::Rejection;

use crate::Options;
use crate::adversary::Adversary;
use crate::data::NodeSpec;
use crate::federation::Observed;
use crate::report::{AdversarialSummary, Report, RoundRow, percentile};

/// One row per aggregated round, from the signed log and the nodes' telemetry.
pub(crate) fn rows_of(
    observed: &Observed,
    central: &[Model],
    evaluate: &impl Fn(&Model) -> (f64, f64),
) -> Vec<RoundRow> {
    let traffic = traffic_by_round(&observed.coordinator);
    let mut rows = Vec::new();
    let mut judged: BTreeMap<u64, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for event in &observed.log {
        match event {
            AuditEvent::Judged {
                round, rejection, ..
            } => {
                let entry = judged.entry(*round).or_default();
                match rejection {
                    None => entry.0 += 1,
                    Some(rejection) => *entry.1.entry(rejection.kind().into()).or_default() += 1,
                }
            }
            AuditEvent::Aggregated {
                round,
                model,
                privacy,
                ..
            } => {
                let (accuracy, loss) = evaluate(model);
                let (accepted, rejected) = judged.remove(round).unwrap_or_default();
                let timings = RoundTimings::of(observed, *round);
                let (bytes_in, bytes_out) = traffic.get(round).copied().unwrap_or_default();
                rows.push(RoundRow {
                    round: *round,
                    accuracy,
                    loss,
                    centralized_accuracy: central
                        .get(*round as usize - 1)
                        .map_or(0.0, |m| evaluate(m).0),
                    accepted,
                    rejected,
                    prove_p50: percentile(&timings.prove, 50.0),
                    prove_p95: percentile(&timings.prove, 95.0),
                    prove_max: percentile(&timings.prove, 100.0),
                    verify_ms_p50: percentile(&timings.verify_ms, 50.0),
                    verify_ms_max: percentile(&timings.verify_ms, 100.0),
                    refused: timings.refused,
                    bytes_in,
                    bytes_out,
                    wall_seconds: timings.wall_seconds,
                    baseline_accuracy: None,
                    baseline_wall_seconds: None,
                    epsilon: privacy.map(|p| p.epsilon),
                });
            }
            _ => {}
        }
    }
    rows
}

/// What the nodes reported about one round.
struct RoundTimings {
    /// Seconds each proof took.
    prove: Vec<f64>,
    /// Milliseconds each verification took.
    verify_ms: Vec<f64>,
    /// Submissions refused before verification.
    refused: usize,
    /// Seconds from the round's opening to its close.
    wall_seconds: f64,
}

impl RoundTimings {
    fn of(observed: &Observed, round: u64) -> Self {
        let prove = observed
            .proofs
            .iter()
            .filter_map(|(_, e)| match e {
                ParticipantTelemetry::Proved {
                    round: r, seconds, ..
                } if *r == round => Some(*seconds),
                _ => None,
            })
            .collect();
        let mut timings = RoundTimings {
            prove,
            verify_ms: Vec::new(),
            refused: 0,
            wall_seconds: 0.0,
        };
        for event in &observed.coordinator {
            match event {
                CoordinatorTelemetry::Judged {
                    round: r,
                    verify_seconds,
                    ..
                } if *r == round => timings.verify_ms.push(verify_seconds * 1e3),
                CoordinatorTelemetry::Refused { round: Some(r), .. } if *r == round => {
                    timings.refused += 1;
                }
                CoordinatorTelemetry::Closed {
                    round: r, seconds, ..
                } if *r == round => timings.wall_seconds = *seconds,
                _ => {}
            }
        }
        timings
    }
}

/// Bytes the coordinator read and wrote per round, from the cumulative totals at each close.
pub(crate) fn traffic_by_round(events: &[CoordinatorTelemetry]) -> BTreeMap<u64, (u64, u64)> {
    let mut by_round = BTreeMap::new();
    let mut previous = (0, 0);
    for event in events {
        if let CoordinatorTelemetry::Closed {
            round,
            bytes_received,
            bytes_sent,
            ..
        } = event
        {
            let delta = (
                bytes_received.saturating_sub(previous.0),
                bytes_sent.saturating_sub(previous.1),
            );
            by_round.insert(*round, delta);
            previous = (*bytes_received, *bytes_sent);
        }
    }
    by_round
}

/// A rejection's text cut short enough for a summary line.
pub(crate) fn short_reason(rejection: &Rejection) -> String {
    rejection.to_string().chars().take(60).collect()
}

pub(crate) fn adversarial_summary(observed: &Observed, specs: &[NodeSpec]) -> AdversarialSummary {
    let adversary_of = |peer: &PeerId| observed.peers.get(peer).and_then(|&k| specs[k].adversary);
    let mut summary = AdversarialSummary::default();
    for event in &observed.log {
        let (round, peer, rejection) = match event {
            AuditEvent::Judged {
                round,
                peer,
                rejection,
                ..
            } => (*round, peer, rejection.as_ref()),
            AuditEvent::Enrolled { peer, .. } => (0, peer, None),
            _ => continue,
        };
        let Some(adversary) = PeerId::from_bytes(peer).ok().and_then(|p| adversary_of(&p)) else {
            continue;
        };
        if adversary == Adversary::Stranger {
            summary.stranger_records += 1;
        }
        if !matches!(event, AuditEvent::Judged { .. }) {
            continue;
        }
        summary.submitted += 1;
        match rejection {
            None => summary.aggregated += 1,
            Some(rejection) => {
                summary.rejected += 1;
                if adversary.expected_rejection(round, rejection) {
                    summary.rejected_for_the_right_reason += 1;
                }
                summary
                    .reasons
                    .entry(adversary.label(round).to_string())
                    .or_default()
                    .push(short_reason(rejection));
            }
        }
    }
    for event in &observed.coordinator {
        match event {
            // A submission turned away before verification: rejected, never aggregated.
            CoordinatorTelemetry::Refused {
                peer,
                round: Some(round),
                rejection,
            } => {
                let Some(adversary) = adversary_of(peer) else {
                    continue;
                };
                summary.submitted += 1;
                summary.rejected += 1;
                summary.refused_before_verification += 1;
                if adversary.expected_refusal(*round, rejection) {
                    summary.rejected_for_the_right_reason += 1;
                }
                if adversary != Adversary::Flood {
                    summary
                        .reasons
                        .entry(adversary.label(*round).to_string())
                        .or_default()
                        .push(short_reason(rejection));
                }
            }
            CoordinatorTelemetry::ConnectionRefused {
                peer: Some(peer),
                suppressed,
                ..
            } if adversary_of(peer) == Some(Adversary::Stranger) => {
                summary.connections_refused += 1 + *suppressed as usize;
            }
            _ => {}
        }
    }
    for tally in &observed.floods {
        summary.flood.add(tally);
    }
    summary
}

pub(crate) fn summarize(
    report: &Report,
    options: &Options,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let difference = (report.final_accuracy - report.final_centralized_accuracy) * 100.0;
    writeln!(out)?;
    writeln!(out, "model: {}", report.model)?;
    writeln!(out, "aggregation: {}", report.strategy)?;
    if let Some(privacy) = &report.privacy {
        writeln!(out, "privacy: {privacy}")?;
    }
    writeln!(
        out,
        "final test accuracy: zkfed {:.1}%, centralized {:.1}% (difference {:+.1} points, {} the 2-point bar)",
        report.final_accuracy * 100.0,
        report.final_centralized_accuracy * 100.0,
        difference,
        if difference.abs() <= 2.0 {
            "within"
        } else {
            "beyond"
        }
    )?;
    summarize_adversaries(&report.adversarial, out)?;
    summarize_run(report, options, out)
}

/// What the adversaries sent and what became of it.
fn summarize_adversaries(a: &AdversarialSummary, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "adversarial submissions: {} sent, {} rejected ({} for the expected reason, {} refused before verification), {} aggregated",
        a.submitted,
        a.rejected,
        a.rejected_for_the_right_reason,
        a.refused_before_verification,
        a.aggregated
    )?;
    for (attack, reasons) in &a.reasons {
        writeln!(
            out,
            "  {attack}: {}",
            reasons.first().map_or("", String::as_str)
        )?;
    }
    if a.flood.sent > 0 {
        writeln!(
            out,
            "flood: {} copies sent, {} refused or rejected, {} accepted, {} unanswered",
            a.flood.sent, a.flood.refused, a.flood.accepted, a.flood.unanswered
        )?;
    }
    if a.connections_refused > 0 || a.stranger_records > 0 {
        writeln!(
            out,
            "peers off the allow-list: {} connections refused, {} records in the log",
            a.connections_refused, a.stranger_records
        )?;
    }
    Ok(())
}

/// Time, memory and the cost of proofs.
fn summarize_run(report: &Report, options: &Options, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "mean round {:.2} s; wall time {:.1} s; report in {}",
        report.mean_round_seconds,
        report.wall_seconds,
        options.out.display()
    )?;
    if options.processes {
        writeln!(
            out,
            "the coordinator and the {} honest hospitals ran as their own processes (logs in {}); \
             adversaries and the no-proofs baseline ran as tasks",
            options.participants,
            options.out.join("nodes").display()
        )?;
    }
    if let Some(peak) = &report.peak_memory {
        writeln!(
            out,
            "peak memory {:.1} MiB ({})",
            peak.bytes as f64 / f64::from(1 << 20),
            peak.of
        )?;
    }
    match report.overhead_ratio {
        Some(ratio) => writeln!(
            out,
            "overhead: round wall time with proofs / without = {ratio:.2}"
        ),
        None if !report.proofs => writeln!(
            out,
            "proofs were off (--no-proofs): every update was trusted"
        ),
        None => Ok(()),
    }
}
