//! [`Rejection`]: every reason the coordinator turns a request or a submission down, as a
//! value both nodes, the audit log and the telemetry carry, so nobody classifies a verdict
//! by searching its text.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zkfed_air::VerifyError;

/// Why an enrolment, a request or a submission was not accepted. The display texts name the
/// failed check; variant names (`kind`) are stable and what programs match on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum Rejection {
    // --- enrolment
    /// The peer is not on the run's allow-list.
    #[error("peer is not on the allow-list")]
    NotAllowed,
    /// The enrolment's signature or key does not check out.
    #[error("enrolment signature: {0}")]
    BadEnrolmentSignature(String),
    /// An enrolment for another federation run.
    #[error("enrolment is for another federation")]
    OtherFederation,
    /// An enrolment under another schema.
    #[error("enrolment is for another schema")]
    OtherSchema,
    /// An enrolment signed over other run parameters than the run's (the coordinator told
    /// the participant something else, or the participant pinned another run).
    #[error("enrolment is for other run parameters")]
    OtherParameters,
    /// A sampling-key commitment missing in a run with privacy, present in one without, or
    /// not canonical.
    #[error("sampling key: {0}")]
    SamplingKey(String),
    /// Fewer committed rows than one batch.
    #[error("dataset of {rows} rows is smaller than the batch of {batch}")]
    TooFewRows { rows: u64, batch: u64 },
    /// A second, different commitment from an enrolled peer.
    #[error("already enrolled with another commitment; the root cannot change")]
    CommitmentChanged,

    // --- refused before verification
    /// The peer never enrolled.
    #[error("not enrolled")]
    NotEnrolled,
    /// The operator revoked the peer's key during the run (a signed `Revoked` record in the
    /// coordinator's log): nothing from it is enrolled, verified or aggregated any more.
    #[error("this peer's key was revoked by the federation's operator")]
    Revoked,
    /// No round is open (the round closed, or none started yet).
    #[error("no round is open")]
    NoOpenRound,
    /// A submission naming another round or attempt than the open one (late, or early).
    #[error(
        "submission for round {submitted} attempt {submitted_attempt} but round {open} \
         attempt {open_attempt} is open"
    )]
    WrongRound {
        open: u64,
        open_attempt: u32,
        submitted: u64,
        submitted_attempt: u32,
    },
    /// The peer was already judged in this round.
    #[error("duplicate submission for round {round}")]
    Duplicate { round: u64 },
    /// Another submission from the peer is being verified.
    #[error("a submission from this peer is already being verified")]
    Busy,
    /// The coordinator cannot form the statement (its own state is out of range).
    #[error("cannot form the statement: {0}")]
    Statement(String),

    // --- rejected by verification (`zkfed_air::VerifyError`)
    /// Proof bytes over the limit.
    #[error("proof is {got} bytes, over the {max}-byte limit")]
    TooLarge { got: u64, max: u64 },
    /// Not proof bytes at all.
    #[error("not a zkfed proof (bad magic bytes)")]
    BadMagic,
    /// A proof of another protocol version.
    #[error("proof version {got}, expected {expected}")]
    Version { expected: u32, got: u32 },
    /// Bytes that do not decode as a proof.
    #[error("proof bytes do not decode: {0}")]
    Decode(String),
    /// A proof dimension other than the statement fixes (a taller trace, say).
    #[error("proof has {field} = {got}, the statement requires {expected}")]
    ProofShape {
        field: String,
        expected: u64,
        got: u64,
    },
    /// An update of the wrong length or example count.
    #[error("update has {got} {what}, the statement requires {expected}")]
    UpdateShape {
        what: String,
        expected: u64,
        got: u64,
    },
    /// An update entry too large to be a clipped-gradient sum.
    #[error("update entry {index} is out of range")]
    UpdateRange { index: u64 },
    /// The STARK verifier said no, with Plonky3's reason.
    #[error("proof rejected: {0}")]
    ProofRejected(String),
    /// Malformed input made the (isolated) STARK verifier fault.
    #[error("proof rejected: malformed proof caused a verifier fault")]
    VerifierFault,
    /// The verification task itself failed (a coordinator fault, not the submitter's).
    #[error("verification task failed")]
    VerifierUnavailable,
}

impl Rejection {
    /// The variant's stable name, for counting and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::NotAllowed => "not_allowed",
            Rejection::BadEnrolmentSignature(_) => "bad_enrolment_signature",
            Rejection::OtherFederation => "other_federation",
            Rejection::OtherSchema => "other_schema",
            Rejection::OtherParameters => "other_parameters",
            Rejection::SamplingKey(_) => "sampling_key",
            Rejection::TooFewRows { .. } => "too_few_rows",
            Rejection::CommitmentChanged => "commitment_changed",
            Rejection::NotEnrolled => "not_enrolled",
            Rejection::Revoked => "revoked",
            Rejection::NoOpenRound => "no_open_round",
            Rejection::WrongRound { .. } => "wrong_round",
            Rejection::Duplicate { .. } => "duplicate",
            Rejection::Busy => "busy",
            Rejection::Statement(_) => "statement",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::BadMagic => "bad_magic",
            Rejection::Version { .. } => "version",
            Rejection::Decode(_) => "decode",
            Rejection::ProofShape { .. } => "proof_shape",
            Rejection::UpdateShape { .. } => "update_shape",
            Rejection::UpdateRange { .. } => "update_range",
            Rejection::ProofRejected(_) => "proof_rejected",
            Rejection::VerifierFault => "verifier_fault",
            Rejection::VerifierUnavailable => "verifier_unavailable",
        }
    }
}

/// Most bytes of a rejection's text a run's state keeps (`Rejection::bounded`).
pub const MAX_KEPT_TEXT_BYTES: usize = 1024;

impl Rejection {
    /// This rejection with each text cut to [`MAX_KEPT_TEXT_BYTES`] (at a character
    /// boundary): what a run's state keeps of a recorded verdict, so a log whose records
    /// carry long texts costs whoever replays it a bounded amount per verdict.
    pub fn bounded(&self) -> Rejection {
        let cut = |text: &String| {
            let mut end = text.len().min(MAX_KEPT_TEXT_BYTES);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_string()
        };
        match self {
            Rejection::BadEnrolmentSignature(t) => Rejection::BadEnrolmentSignature(cut(t)),
            Rejection::SamplingKey(t) => Rejection::SamplingKey(cut(t)),
            Rejection::Statement(t) => Rejection::Statement(cut(t)),
            Rejection::Decode(t) => Rejection::Decode(cut(t)),
            Rejection::ProofRejected(t) => Rejection::ProofRejected(cut(t)),
            Rejection::ProofShape {
                field,
                expected,
                got,
            } => Rejection::ProofShape {
                field: cut(field),
                expected: *expected,
                got: *got,
            },
            Rejection::UpdateShape {
                what,
                expected,
                got,
            } => Rejection::UpdateShape {
                what: cut(what),
                expected: *expected,
                got: *got,
            },
            Rejection::NotAllowed
            | Rejection::OtherFederation
            | Rejection::OtherSchema
            | Rejection::OtherParameters
            | Rejection::TooFewRows { .. }
            | Rejection::CommitmentChanged
            | Rejection::NotEnrolled
            | Rejection::Revoked
            | Rejection::NoOpenRound
            | Rejection::WrongRound { .. }
            | Rejection::Duplicate { .. }
            | Rejection::Busy
            | Rejection::TooLarge { .. }
            | Rejection::BadMagic
            | Rejection::Version { .. }
            | Rejection::UpdateRange { .. }
            | Rejection::VerifierFault
            | Rejection::VerifierUnavailable => self.clone(),
        }
    }
}

impl From<VerifyError> for Rejection {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::TooLarge { got, max } => Rejection::TooLarge {
                got: got as u64,
                max: max as u64,
            },
            VerifyError::BadMagic => Rejection::BadMagic,
            VerifyError::Version { expected, got } => Rejection::Version { expected, got },
            VerifyError::Statement(e) => Rejection::Statement(e.to_string()),
            VerifyError::Decode(message) => Rejection::Decode(message),
            VerifyError::ProofShape {
                field,
                expected,
                got,
            } => Rejection::ProofShape {
                field: field.into(),
                expected,
                got,
            },
            VerifyError::UpdateShape {
                what,
                expected,
                got,
            } => Rejection::UpdateShape {
                what: what.into(),
                expected,
                got,
            },
            VerifyError::UpdateRange { index } => Rejection::UpdateRange {
                index: index as u64,
            },
            VerifyError::Rejected(reason) => Rejection::ProofRejected(reason),
            VerifyError::VerifierFault => Rejection::VerifierFault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_errors_keep_their_text_and_gain_a_kind() {
        let shape = VerifyError::ProofShape {
            field: "degree_bits",
            expected: 9,
            got: 10,
        };
        let text = shape.to_string();
        let rejection = Rejection::from(shape);
        assert_eq!(rejection.to_string(), text);
        assert_eq!(rejection.kind(), "proof_shape");
        let round_trip: Rejection =
            serde_json::from_str(&serde_json::to_string(&rejection).unwrap()).unwrap();
        assert_eq!(round_trip, rejection);
    }

    #[test]
    fn kept_texts_are_cut_at_a_character_boundary() {
        // A three-byte character straddling the bound is dropped whole.
        let long = format!(
            "{}€{}",
            "a".repeat(MAX_KEPT_TEXT_BYTES - 1),
            "b".repeat(1 << 20)
        );
        let Rejection::ProofRejected(kept) = Rejection::ProofRejected(long).bounded() else {
            panic!("the variant is kept");
        };
        assert_eq!(kept, "a".repeat(MAX_KEPT_TEXT_BYTES - 1));
        let shape = Rejection::UpdateShape {
            what: "w".repeat(5000),
            expected: 1,
            got: 2,
        };
        assert!(matches!(
            shape.bounded(),
            Rejection::UpdateShape { what, expected: 1, got: 2 } if what.len() == MAX_KEPT_TEXT_BYTES
        ));
        for short in [Rejection::Statement("short".into()), Rejection::Busy] {
            assert_eq!(short.bounded(), short);
        }
    }
}
