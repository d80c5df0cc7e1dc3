//! The trained model as a file: what `zkfed-coordinator model export` writes, what a
//! participant keeps in its state directory when a run ends, and what
//! `zkfed-coordinator model evaluate` reads.
//!
//! JSON, self-describing: the spec, the schema and standardization the rows must follow,
//! the rounds aggregated into it, the model digest the proofs of the next round would bind,
//! and the parameters both as the fixed-point integers the proofs use (authoritative) and
//! as floats (for other tools). Reading checks every part against the others.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zkfed_air::Model;
use zkfed_air::ShapeError;
use zkfed_air::data::{DataError, Schema, Standardization};
use zkfed_air::fixed::{FRAC_BITS, dequantize};
use zkfed_air::hash::digest_hex;
use zkfed_air::spec::ModelSpec;

/// The format tag of a model file.
pub const MODEL_FILE_FORMAT: &str = "zkfed-model/1";
/// Largest model file a reader accepts (an MLP at the parameter limit is about 20 MiB).
pub const MAX_MODEL_FILE_BYTES: u64 = 64 << 20;

/// One dense layer's shape, written out so a reader need not know the spec's layout rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerLayout {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Offset of its `outputs × inputs` weights (row by row) in the parameter vector; its
    /// `outputs` biases follow them.
    pub offset: usize,
}

/// A trained model and everything needed to use it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// [`MODEL_FILE_FORMAT`].
    pub format: String,
    /// Which model.
    pub spec: ModelSpec,
    /// Feature and label columns, and the label's classes.
    pub schema: Schema,
    /// The statistics rows are standardized with before the model reads them.
    pub standardization: Standardization,
    /// Rounds aggregated into this model.
    pub rounds: u64,
    /// The model digest (Poseidon2), four field elements in hex.
    pub digest: String,
    /// Fraction bits of the fixed-point parameters.
    pub frac_bits: u32,
    /// The layers, input layer first.
    #[serde(deserialize_with = "zkfed_air::bounded::per_feature")]
    pub layers: Vec<LayerLayout>,
    /// The parameters in fixed point: authoritative.
    #[serde(deserialize_with = "zkfed_air::bounded::file_params")]
    pub params_fixed: Vec<i64>,
    /// The same parameters as real numbers.
    #[serde(deserialize_with = "zkfed_air::bounded::file_params")]
    pub params: Vec<f64>,
}

/// A model file that cannot be used.
#[derive(Debug, Error)]
pub enum ModelFileError {
    /// Not JSON of this shape (serde's message names a field or a position, never a
    /// parameter's value).
    #[error("not a model file: {0}")]
    Json(String),
    /// Another format or fixed-point scale (the file's own tag is not repeated: it is
    /// whatever the file says).
    #[error(
        "not a `{MODEL_FILE_FORMAT}` model file at scale 2^{FRAC_BITS} (the file says scale 2^{frac_bits})"
    )]
    Format {
        /// The file's fraction bits.
        frac_bits: u32,
    },
    /// A model, schema or spec the proofs do not accept.
    #[error("the model: {0}")]
    Shape(#[from] ShapeError),
    /// A schema or standardization that cannot be used.
    #[error("the model's data description: {0}")]
    Data(#[from] DataError),
    /// Parts that disagree with each other (the layers, the floats or the digest).
    #[error("the model file is inconsistent: {0}")]
    Inconsistent(&'static str),
}

impl ModelFile {
    /// The file of a validated `model`, trained for `rounds` rounds on rows under `schema`
    /// and `standardization`.
    pub fn new(
        model: &Model,
        schema: &Schema,
        standardization: &Standardization,
        rounds: u64,
    ) -> Self {
        Self {
            format: MODEL_FILE_FORMAT.into(),
            spec: model.spec,
            schema: schema.clone(),
            standardization: standardization.clone(),
            rounds,
            digest: digest_hex(&model.digest()),
            frac_bits: FRAC_BITS,
            layers: layout(&model.spec, model.num_features()),
            params_fixed: model.params.clone(),
            params: model.params.iter().map(|&w| dequantize(w)).collect(),
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a model file serializes")
    }

    /// Parses and checks a model file: the format, the model against its spec and schema,
    /// the standardization against the schema, and the layers, floats and digest against
    /// the fixed-point parameters.
    pub fn from_json(bytes: &[u8]) -> Result<(Self, Model), ModelFileError> {
        let file: Self =
            serde_json::from_slice(bytes).map_err(|e| ModelFileError::Json(json_reason(&e)))?;
        if file.format != MODEL_FILE_FORMAT || file.frac_bits != FRAC_BITS {
            return Err(ModelFileError::Format {
                frac_bits: file.frac_bits,
            });
        }
        file.schema.validate()?;
        file.standardization.check(&file.schema)?;
        let model = Model {
            spec: file.spec,
            num_features: file.schema.features.len(),
            params: file.params_fixed.clone(),
        };
        file.spec
            .validate(model.num_features, file.schema.classes)?;
        model.validate()?;
        if file.layers != layout(&model.spec, model.num_features) {
            return Err(ModelFileError::Inconsistent("`layers` are not the spec's"));
        }
        let floats_agree = file.params.len() == model.params.len()
            && file
                .params
                .iter()
                .zip(&model.params)
                .all(|(&f, &w)| f == dequantize(w));
        if !floats_agree {
            return Err(ModelFileError::Inconsistent(
                "`params` are not `params_fixed` as real numbers",
            ));
        }
        if file.digest != digest_hex(&model.digest()) {
            return Err(ModelFileError::Inconsistent(
                "`digest` is not the parameters' digest",
            ));
        }
        Ok((file, model))
    }
}

fn layout(spec: &ModelSpec, num_features: usize) -> Vec<LayerLayout> {
    let mut offset = 0;
    spec.layers(num_features)
        .into_iter()
        .map(|s| {
            let layer = LayerLayout {
                inputs: s.inputs,
                outputs: s.outputs,
                offset,
            };
            offset += s.num_params();
            layer
        })
        .collect()
}

/// serde_json's error by category and position: its message can quote the input.
fn json_reason(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Data => "a field is missing, unknown or of the wrong type",
        serde_json::error::Category::Eof => "truncated",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkfed_air::data::{breast_cancer, digits};
    use zkfed_air::fixed::ONE;

    fn softmax_file() -> (ModelFile, Model) {
        let raw = digits();
        let stats = Standardization::fit_pooled(&raw).unwrap();
        let spec = ModelSpec::Softmax { classes: 10 };
        let mut model = Model::zeros(spec, 64);
        for (i, w) in model.params.iter_mut().enumerate() {
            *w = (i as i64 - 300) * ONE / 97;
        }
        (ModelFile::new(&model, &raw.schema, &stats, 7), model)
    }

    #[test]
    fn a_model_file_round_trips_and_checks_its_parts() {
        let (file, model) = softmax_file();
        let (read, read_model) = ModelFile::from_json(&file.to_json()).unwrap();
        assert_eq!((read, read_model), (file.clone(), model));
        assert_eq!(file.layers[0].outputs, 10);
        assert_eq!(file.params[1], dequantize(file.params_fixed[1]));

        type Change = Box<dyn Fn(&mut ModelFile)>;
        let broken: Vec<(&str, Change)> = vec![
            (
                "`digest` is not",
                Box::new(|f| {
                    f.params_fixed[3] += 1;
                    f.params[3] = dequantize(f.params_fixed[3]);
                }),
            ),
            ("`params` are not", Box::new(|f| f.params[3] += 1e-3)),
            ("`layers` are not", Box::new(|f| f.layers[0].offset = 1)),
            (
                "`digest` is not",
                Box::new(|f| {
                    let flipped = if f.digest.starts_with('0') { "1" } else { "0" };
                    f.digest.replace_range(0..1, flipped);
                }),
            ),
            (
                "not a `zkfed-model/1`",
                Box::new(|f| f.format = "zkfed-model/0".into()),
            ),
            ("the file says scale 2^8", Box::new(|f| f.frac_bits = 8)),
            (
                "parameters, its spec",
                Box::new(|f| {
                    f.params_fixed.pop();
                    f.params.pop();
                }),
            ),
            (
                "predicts 10 classes, the label has 2",
                Box::new(|f| f.schema.classes = 2),
            ),
            (
                "standard deviation",
                Box::new(|f| f.standardization.std[0] = 0.0),
            ),
        ];
        for (reason, change) in broken {
            let mut f = file.clone();
            change(&mut f);
            let err = ModelFile::from_json(&f.to_json()).unwrap_err().to_string();
            assert!(err.contains(reason), "{reason}: {err}");
        }
    }

    #[test]
    fn garbage_is_an_error_that_quotes_nothing() {
        for bytes in [
            &b""[..],
            b"{",
            b"[1,2,3]",
            br#"{"format":"zkfed-model/1","secret":98765}"#,
        ] {
            let err = ModelFile::from_json(bytes).unwrap_err();
            assert!(!err.to_string().contains("98765"), "{err}");
        }
        let raw = breast_cancer();
        let stats = Standardization::fit(&raw).unwrap();
        let model = Model::zeros(ModelSpec::Logistic, 30);
        let file = ModelFile::new(&model, &raw.schema, &stats, 0);
        let mut json: serde_json::Value = serde_json::from_slice(&file.to_json()).unwrap();
        json["params_fixed"][0] = serde_json::json!(98765.5);
        let err = ModelFile::from_json(json.to_string().as_bytes()).unwrap_err();
        assert!(!err.to_string().contains("98765"), "{err}");
    }
}
