//! Using a trained model: its predictions on standardized rows, and how good they are
//! (accuracy, per-class confusion, log loss).
//!
//! The logits are the model's own fixed-point forward pass ([`crate::network`]: exact
//! dense layers, the capped ReLU); the probabilities then come from the real `exp` in
//! `f64`, as a deployed model would compute them (the proof's tables are within `2^-12.7`
//! of it).

use crate::error::ShapeError;
use crate::fixed::ONE;
use crate::model::Model;
use crate::network::relu;
use crate::reference::validate_features;
use crate::spec::Head;

/// Smallest probability a log loss takes the logarithm of (so a confident mistake costs
/// `ln(10^12) ≈ 27.6`, not infinity).
pub const MIN_PROBABILITY: f64 = 1e-12;

/// The model's probability for each class of one row (two classes for a sigmoid head).
pub fn predict(model: &Model, x: &[i64]) -> Result<Vec<f64>, ShapeError> {
    validate_features(model.num_features(), x)?;
    let layers = model.layers()?;
    let (last, hidden) = layers.split_last().expect("a model has a layer");
    let mut inputs = x.to_vec();
    for layer in hidden {
        inputs = layer
            .forward(&inputs)
            .into_iter()
            .map(|a| relu(a).value)
            .collect();
    }
    let scale = (ONE as f64) * (ONE as f64);
    let logits: Vec<f64> = last
        .forward(&inputs)
        .into_iter()
        .map(|z| z as f64 / scale)
        .collect();
    Ok(match model.spec.head() {
        Head::Sigmoid => {
            let p = 1.0 / (1.0 + (-logits[0]).exp());
            vec![1.0 - p, p]
        }
        Head::Softmax { .. } => {
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|z| (z - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(|e| e / sum).collect()
        }
    })
}

/// How a model did on labelled rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Rows evaluated.
    pub rows: usize,
    /// Fraction predicted right (the most probable class, the lowest on a tie).
    pub accuracy: f64,
    /// `confusion[true][predicted]` row counts.
    pub confusion: Vec<Vec<u64>>,
    /// Mean `-ln p(true class)`, each probability at least [`MIN_PROBABILITY`].
    pub log_loss: f64,
}

impl Evaluation {
    /// Per class: of the rows with this true label, the fraction predicted right (`None`
    /// for a class with no rows).
    pub fn recall(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(k, row)| {
                let total: u64 = row.iter().sum();
                (total > 0).then(|| row[k] as f64 / total as f64)
            })
            .collect()
    }
}

/// Evaluates a model on standardized `(features, label)` rows.
pub fn evaluate<'a>(
    model: &Model,
    rows: impl IntoIterator<Item = (&'a [i64], u8)>,
) -> Result<Evaluation, ShapeError> {
    let classes = usize::from(model.spec.classes());
    let mut confusion = vec![vec![0u64; classes]; classes];
    let (mut loss, mut n) = (0.0, 0usize);
    for (x, y) in rows {
        n += 1;
        let y = usize::from(y);
        if y >= classes {
            return Err(ShapeError::LabelOutOfRange {
                classes: classes as u8,
            });
        }
        let p = predict(model, x)?;
        let predicted = p
            .iter()
            .enumerate()
            .fold(0, |best, (k, &v)| if v > p[best] { k } else { best });
        confusion[y][predicted] += 1;
        loss -= p[y].max(MIN_PROBABILITY).ln();
    }
    let right: u64 = (0..classes).map(|k| confusion[k][k]).sum();
    Ok(Evaluation {
        rows: n,
        accuracy: if n == 0 { 0.0 } else { right as f64 / n as f64 },
        confusion,
        log_loss: if n == 0 { 0.0 } else { loss / n as f64 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ModelSpec;

    #[test]
    fn logistic_predictions_follow_the_logit() {
        let model = Model::logistic(vec![ONE, -ONE], 0);
        let p = predict(&model, &[2 * ONE, 0]).unwrap();
        assert!((p[1] - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-12);
        let rows = [[2 * ONE, 0], [0, 2 * ONE], [ONE, 0]];
        let e = evaluate(&model, rows.iter().map(|r| &r[..]).zip([1, 0, 0])).unwrap();
        assert_eq!(e.confusion, vec![vec![1, 1], vec![0, 1]]);
        assert!((e.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.recall(), vec![Some(0.5), Some(1.0)]);
        let s = |z: f64| 1.0 / (1.0 + (-z).exp());
        let expected = -(2.0 * s(2.0).ln() + (1.0 - s(1.0)).ln()) / 3.0;
        assert!((e.log_loss - expected).abs() < 1e-12, "{e:?}");
    }

    #[test]
    fn softmax_and_mlp_predict_a_distribution_over_the_classes() {
        let softmax = Model {
            params: vec![ONE, 0, 0, ONE, -ONE, -ONE, 0, 0, 0],
            ..Model::zeros(ModelSpec::Softmax { classes: 3 }, 2)
        };
        let p = predict(&softmax, &[3 * ONE, 0]).unwrap();
        assert_eq!(p.len(), 3);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[0] > p[1] && p[1] > p[2], "{p:?}");
        let mlp = Model::zeros(
            ModelSpec::Mlp {
                hidden: 4,
                outputs: 3,
            },
            2,
        );
        let p = predict(&mlp, &[ONE, ONE]).unwrap();
        assert!(p.iter().all(|&v| (v - 1.0 / 3.0).abs() < 1e-12), "{p:?}");
        let e = evaluate(&mlp, [(&[ONE, ONE][..], 2)]).unwrap();
        // All ties: the lowest class is predicted.
        assert_eq!(e.confusion[2], vec![1, 0, 0]);
        assert!((e.log_loss - 3f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn bad_rows_are_errors() {
        let model = Model::logistic(vec![ONE], 0);
        assert!(matches!(
            evaluate(&model, [(&[0][..], 2)]),
            Err(ShapeError::LabelOutOfRange { classes: 2 })
        ));
        assert!(matches!(
            evaluate(&model, [(&[0, 0][..], 1)]),
            Err(ShapeError::RowWidth { .. })
        ));
    }
}
