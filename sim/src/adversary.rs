//! Adversarial participants: the cheats of ARCHITECTURE.md's table that can be mounted over
//! the wire, each a [`TamperingProver`] in an otherwise honest participant.

use std::sync::{Arc, Mutex};

use rand::{RngExt, SeedableRng};
use zkfed_air::fixed::{ONE, PARAM_BOUND};
use zkfed_air::proof::{MAX_PROOF_BYTES, ProveError, prove_traces};
use zkfed_air::{CommittedDataset, Model, ProofContext, Statement, clipped_gradient_sum};
use zkfed_participant::participation::Prover;
use zkfed_protocol::{Rejection, RoundAnnouncement, Submission};

/// One kind of cheat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// The update multiplied by 4 after proving.
    ScaledUpdate,
    /// One entry of the update changed: a valid proof with a different update.
    ChangedUpdate,
    /// The unclipped gradient sum sent with the honest proof.
    SkippedClipping,
    /// More examples claimed than were proven.
    InflatedCount,
    /// Bits of the proof flipped.
    FlippedBits,
    /// The proof cut in half.
    TruncatedProof,
    /// Random bytes behind valid magic and version.
    GarbageProof,
    /// Last round's proof and update resent for this round.
    ReplayedRound,
    /// A proof for another model (the all-zero one).
    StaleModel,
    /// A proof over rows not derived from the round seed.
    ChosenRows,
    /// A proof over the same rows under a fresh, never-enrolled commitment.
    UnenrolledRows,
    /// A proof made for another participant's identity.
    OtherParticipant,
    /// A proof made for another federation run.
    OtherRun,
    /// The honest proof padded past the largest proof the verifier reads.
    OversizedProof,
    /// A proof over the honest trace stacked twice: about twice the update, same count.
    TallerTrace,
}

impl Attack {
    /// Every kind, in the order `cycle` uses.
    pub const ALL: [Attack; 15] = [
        Attack::ScaledUpdate,
        Attack::ChangedUpdate,
        Attack::SkippedClipping,
        Attack::InflatedCount,
        Attack::FlippedBits,
        Attack::TruncatedProof,
        Attack::GarbageProof,
        Attack::ReplayedRound,
        Attack::StaleModel,
        Attack::ChosenRows,
        Attack::UnenrolledRows,
        Attack::OtherParticipant,
        Attack::OtherRun,
        Attack::OversizedProof,
        Attack::TallerTrace,
    ];

    /// The kebab-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Attack::ScaledUpdate => "scaled-update",
            Attack::ChangedUpdate => "changed-update",
            Attack::SkippedClipping => "skipped-clipping",
            Attack::InflatedCount => "inflated-count",
            Attack::FlippedBits => "flipped-bits",
            Attack::TruncatedProof => "truncated-proof",
            Attack::GarbageProof => "garbage-proof",
            Attack::ReplayedRound => "replayed-round",
            Attack::StaleModel => "stale-model",
            Attack::ChosenRows => "chosen-rows",
            Attack::UnenrolledRows => "unenrolled-rows",
            Attack::OtherParticipant => "other-participant",
            Attack::OtherRun => "other-run",
            Attack::OversizedProof => "oversized-proof",
            Attack::TallerTrace => "taller-trace",
        }
    }

    /// Whether the coordinator's rejection is the one this cheat must trigger.
    pub fn expected_rejection(self, rejection: &Rejection) -> bool {
        match self {
            Attack::InflatedCount => {
                matches!(rejection, Rejection::UpdateShape { what, .. } if what == "examples")
            }
            Attack::TruncatedProof => matches!(rejection, Rejection::Decode(_)),
            Attack::OversizedProof => matches!(rejection, Rejection::TooLarge { .. }),
            Attack::TallerTrace => {
                matches!(rejection, Rejection::ProofShape { field, .. } if field.ends_with("degree_bits"))
            }
            Attack::GarbageProof | Attack::FlippedBits => matches!(
                rejection,
                Rejection::Decode(_) | Rejection::ProofRejected(_)
            ),
            _ => matches!(rejection, Rejection::ProofRejected(_)),
        }
    }
}

/// Which cheat an adversary mounts: one kind every round, or all kinds in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdversaryPlan {
    /// The same cheat every round.
    Always(Attack),
    /// Round `r` uses `Attack::ALL[(r - 1) % Attack::ALL.len()]`.
    Cycle,
}

impl AdversaryPlan {
    /// The cheat for `round`.
    pub fn attack(self, round: u64) -> Attack {
        match self {
            AdversaryPlan::Always(a) => a,
            AdversaryPlan::Cycle => Attack::ALL[(round as usize - 1) % Attack::ALL.len()],
        }
    }
}

/// One adversarial node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adversary {
    /// An enrolled participant that tampers with its submissions.
    Tampering(AdversaryPlan),
    /// A peer that is not on the allow-list and tries to take part anyway.
    Stranger,
    /// An enrolled participant that sends many garbage submissions at once every round.
    Flood,
}

impl Adversary {
    /// The tampering plan, for adversaries that run the participant library.
    pub fn plan(self) -> Option<AdversaryPlan> {
        match self {
            Adversary::Tampering(plan) => Some(plan),
            Adversary::Stranger | Adversary::Flood => None,
        }
    }

    /// The node name prefix: `adversary`, `stranger` or `flood`.
    pub fn kind(self) -> &'static str {
        match self {
            Adversary::Tampering(_) => "adversary",
            Adversary::Stranger => "stranger",
            Adversary::Flood => "flood",
        }
    }

    /// What this adversary's submission for `round` is called in reports.
    pub fn label(self, round: u64) -> &'static str {
        match self {
            Adversary::Tampering(plan) => plan.attack(round).name(),
            Adversary::Stranger | Adversary::Flood => self.kind(),
        }
    }

    /// Whether `rejection`, the coordinator's verdict on this adversary's verified
    /// submission for `round`, is the one its cheat must trigger. A stranger must never get
    /// that far.
    pub fn expected_rejection(self, round: u64, rejection: &Rejection) -> bool {
        match self {
            Adversary::Tampering(plan) => plan.attack(round).expected_rejection(rejection),
            Adversary::Flood => Attack::GarbageProof.expected_rejection(rejection),
            Adversary::Stranger => false,
        }
    }

    /// Whether `rejection`, a refusal before verification of this adversary's submission
    /// for `round`, is the one it must get: a flood's extra copies are refused while one is
    /// verified, once it is judged, or once the round closed; an inflated example count is
    /// refused for its shape before any verification.
    pub fn expected_refusal(self, round: u64, rejection: &Rejection) -> bool {
        match self {
            Adversary::Flood => matches!(
                rejection,
                Rejection::Busy
                    | Rejection::Duplicate { .. }
                    | Rejection::WrongRound { .. }
                    | Rejection::NoOpenRound
            ),
            Adversary::Tampering(plan) => {
                plan.attack(round) == Attack::InflatedCount
                    && Attack::InflatedCount.expected_rejection(rejection)
            }
            Adversary::Stranger => false,
        }
    }
}

/// Most adversaries of one kind: each is a node of its own (a huge COUNT would exhaust
/// memory laying them out, not make a larger test).
pub const MAX_ADVERSARIES: usize = 256;

/// `KIND[:COUNT]`: an adversary and how many of it.
pub fn parse_adversary(s: &str) -> Result<(Adversary, usize), String> {
    let (kind, count) = match s.split_once(':') {
        Some((k, c)) => (
            k,
            c.parse::<usize>()
                .ok()
                .filter(|&n| n <= MAX_ADVERSARIES)
                .ok_or_else(|| format!("`{s}`: COUNT must be a number up to {MAX_ADVERSARIES}"))?,
        ),
        None => (s, 1),
    };
    let adversary = match kind {
        "cycle" => Adversary::Tampering(AdversaryPlan::Cycle),
        "stranger" => Adversary::Stranger,
        "flood" => Adversary::Flood,
        _ => Adversary::Tampering(AdversaryPlan::Always(attack_named(kind)?)),
    };
    Ok((adversary, count))
}

fn attack_named(kind: &str) -> Result<Attack, String> {
    Attack::ALL
        .iter()
        .copied()
        .find(|a| a.name() == kind)
        .ok_or_else(|| {
            let names: Vec<_> = Attack::ALL.iter().map(|a| a.name()).collect();
            format!(
                "`{kind}` is not an attack; use `cycle`, `stranger`, `flood` or one of {}",
                names.join(", ")
            )
        })
}

/// What a cheat starts from: the honest submission and what it was made from.
pub struct TamperInput<'a> {
    /// The honest submission.
    pub honest: &'a Submission,
    /// The statement it proves.
    pub statement: &'a Statement,
    /// The committed rows.
    pub dataset: &'a CommittedDataset,
    /// This node's previous honest submission, if any.
    pub previous: Option<&'a Submission>,
}

/// A participant's proving step that makes the honest submission (with `inner`) and sends
/// the cheat `plan` names for the round instead.
pub struct TamperingProver {
    inner: Arc<dyn Prover>,
    plan: AdversaryPlan,
    /// The last honest submission, for the replay cheat.
    previous: Mutex<Option<Submission>>,
}

impl TamperingProver {
    /// Cheats by `plan` on top of `inner`'s honest submissions.
    pub fn new(inner: Arc<dyn Prover>, plan: AdversaryPlan) -> Self {
        Self {
            inner,
            plan,
            previous: Mutex::new(None),
        }
    }
}

impl Prover for TamperingProver {
    fn submission(
        &self,
        round: &RoundAnnouncement,
        statement: &Statement,
        dataset: &CommittedDataset,
    ) -> anyhow::Result<Submission> {
        let honest = self.inner.submission(round, statement, dataset)?;
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let input = TamperInput {
            honest: &honest,
            statement,
            dataset,
            previous: previous.as_ref(),
        };
        let forged = mount(self.plan.attack(round.round), &input);
        *previous = Some(honest);
        Ok(forged)
    }
}

fn mount(attack: Attack, input: &TamperInput<'_>) -> Submission {
    let mut s = input.honest.clone();
    match attack {
        Attack::ScaledUpdate
        | Attack::ChangedUpdate
        | Attack::SkippedClipping
        | Attack::InflatedCount => change_update(attack, &mut s, input),
        Attack::FlippedBits
        | Attack::TruncatedProof
        | Attack::GarbageProof
        | Attack::OversizedProof => corrupt_proof(attack, &mut s),
        Attack::ReplayedRound => match input.previous {
            Some(previous) => {
                s = Submission {
                    round: s.round,
                    attempt: s.attempt,
                    ..previous.clone()
                }
            }
            // No earlier round to replay yet: send a changed update.
            None => s.update.values[0] += 1,
        },
        Attack::StaleModel
        | Attack::ChosenRows
        | Attack::OtherParticipant
        | Attack::OtherRun
        | Attack::UnenrolledRows => s = prove_another_statement(attack, input),
        Attack::TallerTrace => s = prove_stacked(input),
    }
    s
}

/// A valid proof sent with another update.
fn change_update(attack: Attack, s: &mut Submission, input: &TamperInput<'_>) {
    match attack {
        Attack::ScaledUpdate => {
            s.update.values.iter_mut().for_each(|w| *w *= 4);
        }
        Attack::ChangedUpdate => s.update.values[0] += ONE * ONE / 2,
        Attack::SkippedClipping => {
            let st = input.statement;
            let rows = st.batch_indices.iter().map(|&i| {
                let (x, y, _) = input.dataset.row(i as usize);
                (x, y)
            });
            if let Ok(unclipped) = clipped_gradient_sum(&st.model, rows, PARAM_BOUND - 1) {
                s.update = unclipped;
            }
            if s.update == input.honest.update {
                s.update.values[0] += 1; // nothing was clipped this round: still a different update
            }
        }
        Attack::InflatedCount => s.update.examples *= 2,
        _ => unreachable!("{attack:?} does not change the update"),
    }
}

/// The honest update sent with damaged proof bytes.
fn corrupt_proof(attack: Attack, s: &mut Submission) {
    if s.proof.len() <= 8 {
        // No proof to corrupt (the no-proofs baseline): cheat on the update instead.
        s.update.values[0] += ONE * ONE;
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.round);
    match attack {
        Attack::FlippedBits => {
            for _ in 0..8 {
                let bit = rng.random_range(64..s.proof.len() * 8);
                s.proof[bit / 8] ^= 1 << (bit % 8);
            }
        }
        Attack::TruncatedProof => s.proof.truncate(s.proof.len() / 2),
        Attack::GarbageProof => {
            let len = s.proof.len();
            s.proof.truncate(8);
            s.proof.extend((8..len).map(|_| rng.random::<u8>()));
        }
        Attack::OversizedProof => s.proof.resize(MAX_PROOF_BYTES + 1, 0),
        _ => unreachable!("{attack:?} does not corrupt the proof"),
    }
}

/// A real proof of a statement other than the round's.
fn prove_another_statement(attack: Attack, input: &TamperInput<'_>) -> Submission {
    match attack {
        Attack::StaleModel => {
            let model = &input.statement.model;
            let zero = Model::zeros(model.spec, model.num_features());
            reprove(
                input,
                |st| Statement::new(st.context, zero, st.params, st.dataset, st.seed),
                input.dataset,
            )
        }
        Attack::ChosenRows => {
            let mut seed = input.statement.seed;
            seed[0] ^= 0xff;
            reprove(
                input,
                |st| Statement::new(st.context, st.model.clone(), st.params, st.dataset, seed),
                input.dataset,
            )
        }
        Attack::OtherParticipant => {
            let someone = zkfed_protocol::participant_digest(&libp2p::PeerId::random());
            reprove_in(input, |c| c.participant = someone)
        }
        Attack::OtherRun => reprove_in(input, |c| c.federation_id[0] ^= 0xff),
        Attack::UnenrolledRows => {
            let fresh = recommit(input.dataset);
            let commitment = fresh.commitment();
            reprove(
                input,
                |st| Statement::new(st.context, st.model.clone(), st.params, commitment, st.seed),
                &fresh,
            )
        }
        _ => unreachable!("{attack:?} does not prove another statement"),
    }
}

/// Proves the honest statement over its tables stacked twice (`zkfed_air::forgery`).
fn prove_stacked(input: &TamperInput<'_>) -> Submission {
    let stacked = zkfed_air::forgery::stacked_traces(input.statement, input.dataset, 2);
    let proved = stacked
        .map_err(ProveError::from)
        .and_then(|(traces, update)| {
            prove_traces(input.statement, &traces, &update).map(|proof| (update, proof))
        });
    match proved {
        Ok((update, proof)) => Submission {
            round: input.honest.round,
            attempt: input.honest.attempt,
            update,
            proof,
        },
        Err(_) => input.honest.clone(),
    }
}

/// Proves the honest statement under a changed context (identity, run) for the round.
fn reprove_in(input: &TamperInput<'_>, change: impl FnOnce(&mut ProofContext)) -> Submission {
    let mut context = input.statement.context;
    change(&mut context);
    reprove(
        input,
        |st| Statement::new(context, st.model.clone(), st.params, st.dataset, st.seed),
        input.dataset,
    )
}

/// Proves a different statement and submits it for the round.
fn reprove(
    input: &TamperInput<'_>,
    statement: impl FnOnce(&Statement) -> Result<Statement, zkfed_air::ShapeError>,
    dataset: &CommittedDataset,
) -> Submission {
    match statement(input.statement).map(|st| zkfed_air::prove(&st, dataset)) {
        Ok(Ok((update, proof))) => Submission {
            round: input.honest.round,
            attempt: input.honest.attempt,
            update,
            proof,
        },
        _ => input.honest.clone(),
    }
}

/// The same rows under fresh salts: a commitment the coordinator never saw.
fn recommit(dataset: &CommittedDataset) -> CommittedDataset {
    let n = dataset.commitment().rows as usize;
    let (features, labels) = (0..n)
        .map(|i| dataset.row(i))
        .map(|(x, y, _)| (x.to_vec(), y))
        .unzip();
    CommittedDataset::commit(
        features,
        labels,
        &mut rand::make_rng::<rand::rngs::StdRng>(),
    )
    .expect("rows that committed once commit again")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adversary_specs_parse() {
        assert_eq!(
            parse_adversary("cycle"),
            Ok((Adversary::Tampering(AdversaryPlan::Cycle), 1))
        );
        assert_eq!(
            parse_adversary("scaled-update:3"),
            Ok((
                Adversary::Tampering(AdversaryPlan::Always(Attack::ScaledUpdate)),
                3
            ))
        );
        assert_eq!(parse_adversary("stranger"), Ok((Adversary::Stranger, 1)));
        assert_eq!(parse_adversary("flood:2"), Ok((Adversary::Flood, 2)));
        assert!(
            parse_adversary("nonsense")
                .unwrap_err()
                .contains("not an attack")
        );
        assert!(parse_adversary("cycle:x").is_err());
        // Odd input is an error, never a panic or a huge allocation.
        assert!(parse_adversary("flood:18446744073709551615").is_err());
        assert!(parse_adversary("flood:257").is_err());
        assert!(parse_adversary("cyclé:1").is_err());
        assert!(parse_adversary(":").is_err());
    }

    #[test]
    fn cycle_visits_every_attack() {
        let n = Attack::ALL.len() as u64;
        let seen: std::collections::BTreeSet<_> =
            (1..=n).map(|r| AdversaryPlan::Cycle.attack(r)).collect();
        assert_eq!(seen.len(), Attack::ALL.len());
        assert_eq!(AdversaryPlan::Cycle.attack(n + 1), Attack::ALL[0]);
    }

    #[test]
    fn only_a_flood_expects_refusals_and_a_stranger_expects_nothing() {
        let cycle = Adversary::Tampering(AdversaryPlan::Cycle);
        let busy = Rejection::Busy;
        assert!(Adversary::Flood.expected_refusal(1, &busy));
        assert!(Adversary::Flood.expected_refusal(1, &Rejection::Duplicate { round: 3 }));
        assert!(!Adversary::Flood.expected_refusal(1, &Rejection::NotEnrolled));
        let statement = Rejection::Statement("round".into());
        assert!(!Adversary::Flood.expected_refusal(1, &statement));
        assert!(!cycle.expected_refusal(1, &busy));
        assert!(!Adversary::Stranger.expected_refusal(1, &busy));
        let decode = Rejection::Decode("bad length".into());
        assert!(Adversary::Flood.expected_rejection(1, &decode));
        let count = Rejection::UpdateShape {
            what: "examples".into(),
            expected: 16,
            got: 32,
        };
        assert!(!Adversary::Flood.expected_rejection(1, &count));
        let plonky3 = Rejection::ProofRejected("OodEvaluationMismatch".into());
        assert!(!Adversary::Stranger.expected_rejection(1, &plonky3));
        let inflated = Adversary::Tampering(AdversaryPlan::Always(Attack::InflatedCount));
        assert!(inflated.expected_rejection(1, &count));
        assert!(!inflated.expected_rejection(1, &plonky3));
        assert_eq!(cycle.label(2), "changed-update");
        assert_eq!(Adversary::Flood.label(2), "flood");
    }
}
