//! Which model a run trains: its layers, its output head and the layout of its parameter
//! vector.
//!
//! Every model is a stack of dense layers over the `d` standardized features:
//!
//! | spec | layers | head |
//! |---|---|---|
//! | `logistic` | `d → 1` | sigmoid (labels 0/1) |
//! | `softmax` with `K` classes | `d → K` | softmax |
//! | `mlp` with `H` hidden units and `K` outputs | `d → H` (ReLU, capped), `H → K` | softmax, or sigmoid when `K = 1` (labels 0/1) |
//!
//! The parameter vector holds the layers in order, each as its weight matrix row by row
//! (`outputs × inputs`, one row per output unit) followed by its `outputs` biases, all in
//! fixed point at scale `2^16`. [`crate::network`] defines the arithmetic.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::data::MAX_CLASSES;
use crate::error::ShapeError;
use crate::fixed::{MAX_FEATURES, MAX_PARAMS};

/// Most hidden units an MLP may have.
pub const MAX_HIDDEN: u16 = 256;

/// The model a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSpec {
    /// Binary logistic regression: one sigmoid output.
    Logistic,
    /// Multinomial logistic regression over `classes` classes.
    Softmax {
        /// Number of classes, 2 to [`MAX_CLASSES`].
        classes: u8,
    },
    /// One hidden layer of ReLU units, then a softmax over `outputs` classes, or a sigmoid
    /// when `outputs` is 1.
    Mlp {
        /// Hidden units, 1 to [`MAX_HIDDEN`].
        hidden: u16,
        /// Output units: 1 (binary, sigmoid) or 2 to [`MAX_CLASSES`] (softmax).
        outputs: u8,
    },
}

/// The output nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// One output through the table sigmoid; labels are 0 or 1.
    Sigmoid,
    /// A softmax over this many outputs; labels are `0..classes`.
    Softmax {
        /// Number of outputs and label classes.
        classes: usize,
    },
}

/// One dense layer's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerShape {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
}

impl LayerShape {
    /// Weights then biases.
    pub fn num_params(&self) -> usize {
        self.outputs * (self.inputs + 1)
    }
}

impl ModelSpec {
    /// The spec named on a command line: `logistic`, `softmax` (with the label's class
    /// count) or `mlp:H` (`H` hidden units, then a softmax over the label's classes, two
    /// for a binary label: the MLP a proof covers; a sigmoid head is not proven yet).
    pub fn parse(name: &str, classes: u8) -> Result<Self, String> {
        let spec = match name {
            "logistic" => Self::Logistic,
            "softmax" => Self::Softmax { classes },
            _ => {
                let hidden = name
                    .strip_prefix("mlp:")
                    .and_then(|h| h.parse::<u16>().ok())
                    .ok_or_else(|| {
                        format!("unknown model `{name}`: expected logistic, softmax or mlp:H")
                    })?;
                Self::Mlp {
                    hidden,
                    outputs: classes,
                }
            }
        };
        Ok(spec)
    }

    /// The output head.
    pub fn head(&self) -> Head {
        match *self {
            Self::Logistic | Self::Mlp { outputs: 1, .. } => Head::Sigmoid,
            Self::Softmax { classes } => Head::Softmax {
                classes: classes.into(),
            },
            Self::Mlp { outputs, .. } => Head::Softmax {
                classes: outputs.into(),
            },
        }
    }

    /// The label classes the model predicts (2 for a sigmoid head).
    pub fn classes(&self) -> u8 {
        match self.head() {
            Head::Sigmoid => 2,
            Head::Softmax { classes } => classes as u8,
        }
    }

    /// The dense layers over `num_features` inputs, input layer first.
    pub fn layers(&self, num_features: usize) -> Vec<LayerShape> {
        let dense = |inputs, outputs| LayerShape { inputs, outputs };
        match *self {
            Self::Logistic => vec![dense(num_features, 1)],
            Self::Softmax { classes } => vec![dense(num_features, classes.into())],
            Self::Mlp { hidden, outputs } => vec![
                dense(num_features, hidden.into()),
                dense(hidden.into(), outputs.into()),
            ],
        }
    }

    /// Length of the parameter vector.
    pub fn num_params(&self, num_features: usize) -> usize {
        self.layers(num_features)
            .iter()
            .map(LayerShape::num_params)
            .sum()
    }

    /// Checks the spec's own limits, `num_features`, and that it predicts the schema's
    /// label classes.
    pub fn validate(&self, num_features: usize, label_classes: u8) -> Result<(), ShapeError> {
        if num_features == 0 || num_features > MAX_FEATURES {
            return Err(ShapeError::Features {
                got: num_features,
                max: MAX_FEATURES,
            });
        }
        let outputs_ok = match *self {
            Self::Logistic => true,
            Self::Softmax { classes } => (2..=MAX_CLASSES).contains(&classes),
            Self::Mlp { hidden, outputs } => {
                if hidden == 0 || hidden > MAX_HIDDEN {
                    return Err(ShapeError::Hidden {
                        got: hidden,
                        max: MAX_HIDDEN,
                    });
                }
                outputs == 1 || (2..=MAX_CLASSES).contains(&outputs)
            }
        };
        if !outputs_ok || self.classes() != label_classes {
            return Err(ShapeError::Classes {
                model: self.classes(),
                label: label_classes,
            });
        }
        let params = self.num_params(num_features);
        if params > MAX_PARAMS {
            return Err(ShapeError::TooManyParameters {
                got: params,
                max: MAX_PARAMS,
            });
        }
        Ok(())
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Logistic => write!(f, "logistic"),
            Self::Softmax { classes } => write!(f, "softmax ({classes} classes)"),
            Self::Mlp { hidden, outputs: 1 } => write!(f, "mlp ({hidden} hidden, sigmoid)"),
            Self::Mlp { hidden, outputs } => {
                write!(f, "mlp ({hidden} hidden, softmax over {outputs})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_issue_shapes() {
        assert_eq!(ModelSpec::Logistic.num_params(30), 31);
        assert_eq!(ModelSpec::Softmax { classes: 10 }.num_params(64), 650);
        let mlp = ModelSpec::Mlp {
            hidden: 32,
            outputs: 10,
        };
        assert_eq!(mlp.num_params(64), 2410);
        assert_eq!(ModelSpec::Softmax { classes: 10 }.num_params(784), 7850);
        let big = ModelSpec::Mlp {
            hidden: 128,
            outputs: 10,
        };
        assert_eq!(big.num_params(784), 101_770);
    }

    #[test]
    fn names_parse_against_the_label_classes() {
        assert_eq!(ModelSpec::parse("logistic", 2), Ok(ModelSpec::Logistic));
        assert_eq!(
            ModelSpec::parse("softmax", 10),
            Ok(ModelSpec::Softmax { classes: 10 })
        );
        assert_eq!(
            ModelSpec::parse("mlp:32", 10),
            Ok(ModelSpec::Mlp {
                hidden: 32,
                outputs: 10
            })
        );
        let binary = ModelSpec::parse("mlp:8", 2).unwrap();
        assert_eq!(binary.head(), Head::Softmax { classes: 2 });
        assert_eq!(binary.classes(), 2);
        for bad in ["mlp", "mlp:", "mlp:x", "mlp:70000", "svm", ""] {
            let err = ModelSpec::parse(bad, 2).unwrap_err();
            assert!(err.contains("expected logistic, softmax or mlp:H"), "{err}");
        }
    }

    #[test]
    fn validation_ties_the_model_to_the_label() {
        let softmax = ModelSpec::Softmax { classes: 10 };
        assert_eq!(softmax.validate(64, 10), Ok(()));
        assert_eq!(
            softmax.validate(64, 2),
            Err(ShapeError::Classes {
                model: 10,
                label: 2
            })
        );
        assert_eq!(
            ModelSpec::Logistic.validate(30, 10),
            Err(ShapeError::Classes {
                model: 2,
                label: 10
            })
        );
        assert!(matches!(
            ModelSpec::Softmax { classes: 1 }.validate(4, 1),
            Err(ShapeError::Classes { .. })
        ));
        let wide = ModelSpec::Mlp {
            hidden: MAX_HIDDEN + 1,
            outputs: 10,
        };
        assert!(matches!(
            wide.validate(64, 10),
            Err(ShapeError::Hidden { .. })
        ));
        assert!(matches!(
            softmax.validate(0, 10),
            Err(ShapeError::Features { .. })
        ));
    }

    #[test]
    fn specs_round_trip_through_json_and_postcard() {
        for spec in [
            ModelSpec::Logistic,
            ModelSpec::Softmax { classes: 10 },
            ModelSpec::Mlp {
                hidden: 32,
                outputs: 1,
            },
        ] {
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);
            let bytes = postcard::to_allocvec(&spec).unwrap();
            assert_eq!(postcard::from_bytes::<ModelSpec>(&bytes).unwrap(), spec);
        }
        assert_eq!(
            serde_json::to_string(&ModelSpec::Softmax { classes: 3 }).unwrap(),
            r#"{"softmax":{"classes":3}}"#
        );
    }
}
