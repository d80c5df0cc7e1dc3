//! The statement a proof establishes, and its encoding as public values.
//!
//! Every field below is absorbed into the Fiat–Shamir transcript as a public value, so a
//! proof verifies only against the exact statement it was made for: another run, round,
//! participant, model, dataset, seed, clip norm, batch or update makes the verifier derive
//! different challenges and reject. The AIR additionally constrains the values that
//! describe the witness (root, update) and is itself built from the model and the batch
//! indices (periodic columns), so those are enforced row by row.

use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use serde::{Deserialize, Serialize};

use crate::batch::batch_indices;
use crate::commitment::{DatasetCommitment, tree_depth};
use crate::error::ShapeError;
use crate::fixed::{FRAC_BITS, to_field};
use crate::hash::{DIGEST_ELEMS, leaf_chunks};
use crate::model::{Model, RoundParams};
use crate::reference::ClippedGradientSum;
use crate::sampling::{KeyCommitment, MAX_SAMPLED_ROWS, SamplingRate, capacity};
use crate::spec::ModelSpec;

/// Version of the statement, trace layout and proof encoding. Bumped on any change.
pub const PROTOCOL_VERSION: u32 = 6;

/// Most parameters a softmax proof covers: up to this many, every accepted shape keeps
/// 110 conjectured bits (`tests/security.rs`); beyond it the batch-combination term of the
/// widest tables at the largest batch and dataset falls below (109.8 bits at 16 classes
/// over 1,024 features). A 784 → 10 softmax has 7,850.
pub const MAX_SOFTMAX_PARAMS: usize = 1 << 13;

/// Most parameters an MLP proof covers (a 784 → 128 → 10 MLP has 101,770).
pub const MAX_MLP_PARAMS: usize = 1 << 17;

/// Smallest trace height: a floor above what hiding FRI needs, `2 · (queries + 2 ·
/// openings)` = 56 rows.
pub const MIN_LOG_HEIGHT: usize = 8;

/// Who proves what, when: the replay-protection part of the statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofContext {
    /// Identifies the federation run.
    pub federation_id: [u8; 32],
    /// Round number.
    pub round: u64,
    /// SHA-256 of the participant's peer id.
    pub participant: [u8; 32],
}

/// Dimensions of one proof's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofShape {
    /// Features per row (`d`).
    pub num_features: usize,
    /// Examples in the batch (`B`).
    pub batch: usize,
    /// Merkle depth of the dataset tree.
    pub depth: usize,
    /// Outputs of the model's first layer (the hash table's): 1 for logistic regression (a
    /// sigmoid), `K` for a softmax over `K` classes, `H` for an MLP.
    pub outputs: usize,
    /// Outputs of the model's last layer: 1 for a sigmoid head, else the classes.
    pub classes: usize,
    /// Whether the first layer is an MLP's hidden layer (proven by the hidden table).
    pub hidden: bool,
    /// Under hidden sampling, the dataset's row count (the sampling table covers every
    /// row); `None` when the batch indices are public.
    pub sampled_from: Option<u64>,
}

impl ProofShape {
    /// The shape of a proof for `spec` over `num_features` features, a batch of `batch`
    /// and a dataset of `rows` rows.
    pub fn new(spec: ModelSpec, num_features: usize, batch: usize, rows: u64) -> Self {
        let layers = spec.layers(num_features);
        Self {
            num_features,
            batch,
            depth: tree_depth(rows),
            outputs: layers[0].outputs,
            classes: layers[layers.len() - 1].outputs,
            hidden: layers.len() > 1,
            sampled_from: None,
        }
    }

    /// Length of the parameter vector.
    pub fn num_params(&self) -> usize {
        let first = self.outputs * (self.num_features + 1);
        match self.hidden {
            true => first + self.classes * (self.outputs + 1),
            false => first,
        }
    }

    /// Absorb rows per example.
    pub fn chunks(&self) -> usize {
        leaf_chunks(self.num_features)
    }

    /// The step table's head: a sigmoid for one output, a softmax for more.
    pub fn head(&self) -> crate::spec::Head {
        match self.classes {
            0 | 1 => crate::spec::Head::Sigmoid,
            classes => crate::spec::Head::Softmax { classes },
        }
    }

    /// Hash-table rows per example: absorb rows then Merkle rows.
    pub fn block_len(&self) -> usize {
        self.chunks() + self.depth
    }

    /// Committed main-trace cells of a proof of this shape, over all tables.
    pub fn committed_cells(&self) -> u64 {
        crate::engine::TableHeights::for_shape(self).committed_cells(self)
    }
}

/// Hidden Poisson sampling's public part ([`crate::sampling`]): whose key decides the
/// sample, and at what rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenSampling {
    /// The participant's enrolled key commitment.
    pub key: KeyCommitment,
    /// The run's sampling rate.
    pub rate: SamplingRate,
}

/// Everything the verifier knows about one submission before looking at the proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Run, round and participant.
    pub context: ProofContext,
    /// The global model of the round.
    pub model: Model,
    /// Clip norm and batch size.
    pub params: RoundParams,
    /// The participant's enrolled commitment.
    pub dataset: DatasetCommitment,
    /// The round's public seed.
    pub seed: [u8; 32],
    /// Rows the batch must use, derived from the seed (in order); empty under hidden
    /// sampling.
    pub batch_indices: Vec<u64>,
    /// Hidden Poisson sampling: the rows are the ones the participant's key samples, the
    /// batch size is the proof's capacity ([`capacity`]) and unused slots contribute
    /// nothing.
    pub sampling: Option<HiddenSampling>,
}

impl Statement {
    /// Validates every range the proof relies on and derives the batch from the seed.
    pub fn new(
        context: ProofContext,
        model: Model,
        params: RoundParams,
        dataset: DatasetCommitment,
        seed: [u8; 32],
    ) -> Result<Self, ShapeError> {
        check_ranges(&model, &params, &dataset)?;
        let batch_indices =
            batch_indices(&seed, &context.participant, dataset.rows, params.batch_size)?;
        Ok(Self {
            context,
            model,
            params,
            dataset,
            seed,
            batch_indices,
            sampling: None,
        })
    }

    /// A statement under hidden Poisson sampling: the batch size is the capacity the
    /// dataset's row count and the rate fix.
    pub fn with_hidden_sampling(
        context: ProofContext,
        model: Model,
        clip_norm: i64,
        dataset: DatasetCommitment,
        seed: [u8; 32],
        sampling: HiddenSampling,
    ) -> Result<Self, ShapeError> {
        if SamplingRate::new(sampling.rate.threshold).is_err() {
            return Err(ShapeError::HiddenSampling(
                "the sampling threshold is not in 1..=2^32",
            ));
        }
        let params = RoundParams {
            clip_norm,
            batch_size: capacity(dataset.rows.min(MAX_SAMPLED_ROWS), sampling.rate),
        };
        let statement = Self {
            context,
            model,
            params,
            dataset,
            seed,
            batch_indices: Vec::new(),
            sampling: Some(sampling),
        };
        statement.check_shape()?;
        Ok(statement)
    }

    /// Re-checks everything [`Statement::new`] establishes, including that the batch is the
    /// one the seed derives. The verifier calls this: a statement is only as good as the
    /// data it was built from, and its fields are public.
    pub fn validate(&self) -> Result<(), ShapeError> {
        self.check_shape()?;
        if self.sampling.is_some() {
            return Ok(());
        }
        let derived = batch_indices(
            &self.seed,
            &self.context.participant,
            self.dataset.rows,
            self.params.batch_size,
        )?;
        if derived != self.batch_indices {
            return Err(ShapeError::BatchNotFromSeed);
        }
        Ok(())
    }

    /// The structural part of [`Self::validate`]: shapes in range, one index per example,
    /// every index a row. Trace generation needs only this (it also serves forgers' tests).
    pub fn check_shape(&self) -> Result<(), ShapeError> {
        check_ranges(&self.model, &self.params, &self.dataset)?;
        if let Some(sampling) = &self.sampling {
            return self.check_hidden_sampling(sampling);
        }
        let (expected, got) = (self.params.batch_size, self.batch_indices.len());
        if got != expected {
            return Err(ShapeError::Count {
                what: "batch indices",
                expected,
                got,
            });
        }
        match self.batch_indices.iter().find(|&&i| i >= self.dataset.rows) {
            Some(&index) => Err(ShapeError::IndexOutOfRange {
                index,
                rows: self.dataset.rows,
            }),
            None => Ok(()),
        }
    }

    /// Hidden sampling's rules: a model it covers, a dataset its table covers, no public
    /// indices, and exactly the capacity's slots.
    fn check_hidden_sampling(&self, sampling: &HiddenSampling) -> Result<(), ShapeError> {
        if self.shape().hidden {
            return Err(ShapeError::HiddenSampling(
                "hidden sampling is not proven for MLPs yet",
            ));
        }
        if self.dataset.rows > MAX_SAMPLED_ROWS {
            return Err(ShapeError::Rows {
                got: self.dataset.rows,
                max: MAX_SAMPLED_ROWS,
            });
        }
        if !sampling.key.is_canonical() {
            return Err(ShapeError::HiddenSampling(
                "the sampling key commitment is not canonical",
            ));
        }
        if SamplingRate::new(sampling.rate.threshold).is_err() {
            return Err(ShapeError::HiddenSampling(
                "the sampling threshold is not in 1..=2^32",
            ));
        }
        if !self.batch_indices.is_empty() {
            return Err(ShapeError::HiddenSampling(
                "hidden sampling has no public batch indices",
            ));
        }
        let expected = capacity(self.dataset.rows, sampling.rate);
        if self.params.batch_size != expected {
            return Err(ShapeError::Count {
                what: "slots (the sampling capacity)",
                expected,
                got: self.params.batch_size,
            });
        }
        Ok(())
    }

    /// Which attempt a hidden sample is drawn for: this statement's seed and round.
    pub fn draw(&self) -> crate::sampling::Draw<'_> {
        crate::sampling::Draw {
            seed: &self.seed,
            round: self.context.round,
        }
    }

    /// The trace dimensions of this statement's proof.
    pub fn shape(&self) -> ProofShape {
        let shape = ProofShape::new(
            self.model.spec,
            self.model.num_features(),
            self.params.batch_size,
            self.dataset.rows,
        );
        ProofShape {
            sampled_from: self.sampling.map(|_| self.dataset.rows),
            ..shape
        }
    }

    /// Where the AIR finds the values it constrains.
    pub fn layout(&self) -> PublicLayout {
        let selection = match self.sampling {
            Some(_) => HIDDEN_SELECTION_LEN,
            None => self.params.batch_size,
        };
        PublicLayout::new(selection, self.model.params.len())
    }

    /// The public values of a proof that `update` answers this statement.
    pub fn public_values(&self, update: &ClippedGradientSum) -> Vec<Goldilocks> {
        let layout = self.layout();
        let mut v = Vec::with_capacity(layout.len);
        v.push(Goldilocks::from_u32(PROTOCOL_VERSION));
        push_bytes(&mut v, &self.context.federation_id);
        push_u64(&mut v, self.context.round);
        push_bytes(&mut v, &self.context.participant);
        v.extend(self.model.digest());
        debug_assert_eq!(v.len(), layout.root);
        v.extend(self.dataset.root_digest());
        push_u64(&mut v, self.dataset.rows);
        push_bytes(&mut v, &self.seed);
        v.push(to_field(self.params.clip_norm));
        v.push(Goldilocks::from_usize(self.model.num_features()));
        v.push(Goldilocks::from_usize(self.params.batch_size));
        v.push(Goldilocks::from_u32(FRAC_BITS));
        match &self.sampling {
            None => {
                v.push(Goldilocks::ZERO);
                v.extend(self.batch_indices.iter().map(|&i| Goldilocks::from_u64(i)));
            }
            Some(sampling) => {
                v.push(Goldilocks::ONE);
                v.extend(sampling.key.elements());
                push_u64(&mut v, sampling.rate.threshold);
            }
        }
        debug_assert_eq!(v.len(), layout.update);
        v.extend(update.values.iter().map(|&w| to_field(w)));
        v.push(Goldilocks::from_u64(update.examples));
        debug_assert_eq!(v.len(), layout.len);
        v
    }
}

/// A model of this family and parameter count is one the proofs cover: not a
/// sigmoid-headed MLP, a softmax of at most [`MAX_SOFTMAX_PARAMS`] parameters, an MLP of at
/// most [`MAX_MLP_PARAMS`] (a logistic model's features are bounded elsewhere). A run's
/// configuration checks it too, so no run starts whose proofs could never be made.
pub fn check_provable(spec: ModelSpec, num_params: usize) -> Result<(), ShapeError> {
    let max = match spec {
        ModelSpec::Logistic => return Ok(()),
        ModelSpec::Mlp { outputs: 1, .. } => return Err(ShapeError::Unproven { spec }),
        ModelSpec::Softmax { .. } => MAX_SOFTMAX_PARAMS,
        ModelSpec::Mlp { .. } => MAX_MLP_PARAMS,
    };
    if num_params > max {
        return Err(ShapeError::TooManyParameters {
            got: num_params,
            max,
        });
    }
    Ok(())
}

/// The ranges the headroom argument and the tree depth rely on.
fn check_ranges(
    model: &Model,
    params: &RoundParams,
    dataset: &DatasetCommitment,
) -> Result<(), ShapeError> {
    model.validate()?;
    check_provable(model.spec, model.params.len())?;
    params.validate()?;
    dataset.validate()
}

/// Offsets into the public values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicLayout {
    /// First of the four root elements.
    pub root: usize,
    /// First update entry (one per model parameter, then the example count).
    pub update: usize,
    /// Total length.
    pub len: usize,
}

/// Public values that describe a hidden sample: the key commitment and the threshold.
const HIDDEN_SELECTION_LEN: usize = DIGEST_ELEMS + 2;

impl PublicLayout {
    /// `selection` values describe the batch: its indices, or a hidden sample's key
    /// commitment and threshold.
    fn new(selection: usize, num_params: usize) -> Self {
        // version, federation (8), round (2), participant (8), model digest (4)
        let root = 1 + 8 + 2 + 8 + DIGEST_ELEMS;
        // root (4), rows (2), seed (8), clip, d, B, frac bits, selection tag, selection
        let update = root + DIGEST_ELEMS + 2 + 8 + 4 + 1 + selection;
        Self {
            root,
            update,
            len: update + num_params + 1,
        }
    }
}

fn push_bytes(v: &mut Vec<Goldilocks>, bytes: &[u8; 32]) {
    for limb in bytes.chunks_exact(4) {
        v.push(Goldilocks::from_u32(u32::from_le_bytes(
            limb.try_into().expect("4 bytes"),
        )));
    }
}

fn push_u64(v: &mut Vec<Goldilocks>, x: u64) {
    v.push(Goldilocks::from_u32(x as u32));
    v.push(Goldilocks::from_u32((x >> 32) as u32));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::ONE;

    fn statement() -> Statement {
        let context = ProofContext {
            federation_id: [1; 32],
            round: 2,
            participant: [3; 32],
        };
        let params = RoundParams {
            clip_norm: ONE,
            batch_size: 3,
        };
        let dataset = DatasetCommitment {
            root: [0; 4],
            rows: 10,
        };
        let model = Model::zeros(ModelSpec::Logistic, 4);
        Statement::new(context, model, params, dataset, [5; 32]).unwrap()
    }

    #[test]
    fn inconsistent_statements_are_errors_not_panics() {
        let good = statement();
        assert_eq!(good.validate(), Ok(()));
        let mut extra = good.clone();
        extra.batch_indices.push(1);
        assert!(matches!(extra.check_shape(), Err(ShapeError::Count { .. })));
        let mut outside = good.clone();
        outside.batch_indices[0] = 10;
        assert!(matches!(
            outside.check_shape(),
            Err(ShapeError::IndexOutOfRange { index: 10, .. })
        ));
        let mut reordered = good.clone();
        reordered.batch_indices.reverse();
        assert_eq!(reordered.check_shape(), Ok(()));
        assert_eq!(reordered.validate(), Err(ShapeError::BatchNotFromSeed));
        let mut aliased = good.clone();
        aliased.dataset.root[3] += 0xFFFF_FFFF_0000_0001;
        assert_eq!(
            aliased.validate(),
            Err(ShapeError::RootNotCanonical { limb: 3 })
        );
        let mut wide = good.clone();
        wide.model.params[1] = crate::fixed::PARAM_BOUND;
        assert!(matches!(
            wide.validate(),
            Err(ShapeError::ParameterOutOfRange { index: 1, .. })
        ));
        let mut softmax = good.clone();
        softmax.model = Model::zeros(ModelSpec::Softmax { classes: 3 }, 4);
        assert_eq!(softmax.validate(), Ok(()));
        assert_eq!(softmax.shape().outputs, 3);
        let mut mlp = good.clone();
        mlp.model = Model::zeros(
            ModelSpec::Mlp {
                hidden: 2,
                outputs: 3,
            },
            4,
        );
        assert_eq!(mlp.validate(), Ok(()));
        let shape = mlp.shape();
        assert_eq!((shape.outputs, shape.classes, shape.hidden), (2, 3, true));
        assert_eq!(shape.num_params(), mlp.model.params.len());
        let binary = ModelSpec::Mlp {
            hidden: 2,
            outputs: 1,
        };
        let mut sigmoid_mlp = good;
        sigmoid_mlp.model = Model::zeros(binary, 4);
        assert_eq!(
            sigmoid_mlp.validate(),
            Err(ShapeError::Unproven { spec: binary })
        );
    }

    #[test]
    fn public_values_follow_the_layout() {
        let s = statement();
        let update = ClippedGradientSum {
            values: vec![1, 2, 3, 4, 5],
            examples: 3,
        };
        let v = s.public_values(&update);
        let layout = s.layout();
        assert_eq!(v.len(), layout.len);
        assert_eq!(&v[layout.root..layout.root + 4], &s.dataset.root_digest());
        assert_eq!(v[layout.update + 4], Goldilocks::from_u64(5));
    }
}
