//! The trained model, read offline from a coordinator's state directory and evaluated on
//! labelled rows (`zkfed-coordinator model export` and `model evaluate`).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use zkfed_air::data::{Standardized, read_csv};
use zkfed_air::evaluation::{Evaluation, evaluate};
use zkfed_protocol::model_file::{MAX_MODEL_FILE_BYTES, ModelFile};

use crate::audit::audit_stored;
use crate::log::StoredLog;

/// The run's current model (its last aggregate, or the initial model before any) as a
/// model file, from the store at `path`, opened read-only. The store is audited first
/// (hash chain, signatures against the key the log names, every proof and aggregate), so
/// an edited record is refused rather than exported; who signed it is `audit verify
/// --coordinator`'s question.
pub fn export_model(path: &Path) -> anyhow::Result<ModelFile> {
    let stored = StoredLog::open(path).context("opening the state store")?;
    let state = match audit_stored(&stored, None, None).context("reading the audit log")? {
        Ok((_, state)) => state,
        Err(divergence) => {
            bail!("the store does not audit, so its model is not exported: {divergence}")
        }
    };
    let public = &state.config.public;
    Ok(ModelFile::new(
        &state.model,
        &public.schema,
        &public.standardization,
        state.completed_rounds,
    ))
}

/// A model file read and checked, and how it does on the CSV at `dataset`: rows whose
/// standardized values fall outside the fixed-point range are left out and counted.
pub fn evaluate_model_file(
    model: &Path,
    dataset: &Path,
) -> anyhow::Result<(ModelFile, Evaluation, usize)> {
    let mut bytes = Vec::new();
    std::fs::File::open(model)
        .and_then(|f| f.take(MAX_MODEL_FILE_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", model.display()))?;
    ensure!(
        bytes.len() as u64 <= MAX_MODEL_FILE_BYTES,
        "{} is larger than a model file may be ({MAX_MODEL_FILE_BYTES} bytes)",
        model.display()
    );
    let (file, parsed) =
        ModelFile::from_json(&bytes).with_context(|| format!("reading {}", model.display()))?;
    let csv =
        std::fs::File::open(dataset).with_context(|| format!("opening {}", dataset.display()))?;
    let raw = read_csv(std::io::BufReader::new(csv), &file.schema)
        .with_context(|| format!("reading {}", dataset.display()))?;
    let Standardized {
        rows,
        labels,
        out_of_range,
        ..
    } = file.standardization.standardize(&raw)?;
    let evaluation = evaluate(&parsed, rows.iter().map(Vec::as_slice).zip(labels))?;
    Ok((file, evaluation, out_of_range.len()))
}

/// The evaluation as text: the model, the counts, accuracy, log loss, the confusion matrix
/// (true labels down, predictions across) and each class's recall.
pub fn evaluation_report(file: &ModelFile, e: &Evaluation, left_out: usize) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model: {}, {} parameters, {} rounds, digest {}",
        file.spec,
        file.params_fixed.len(),
        file.rounds,
        file.digest
    );
    let _ = writeln!(
        out,
        "rows: {} evaluated, {left_out} left out (standardized values outside the fixed-point range)",
        e.rows
    );
    let _ = writeln!(out, "accuracy: {:.4}", e.accuracy);
    let _ = writeln!(out, "log loss: {:.4}", e.log_loss);
    let _ = writeln!(out, "confusion (rows: true label, columns: predicted):");
    let width = e
        .confusion
        .iter()
        .flatten()
        .max()
        .map_or(1, |m| m.to_string().len())
        .max(3);
    let _ = write!(out, "{:>5}", "");
    for k in 0..e.confusion.len() {
        let _ = write!(out, " {k:>width$}");
    }
    let _ = writeln!(out, " {:>8}", "recall");
    for (k, (row, recall)) in e.confusion.iter().zip(e.recall()).enumerate() {
        let _ = write!(out, "{k:>5}");
        for v in row {
            let _ = write!(out, " {v:>width$}");
        }
        match recall {
            Some(r) => {
                let _ = writeln!(out, " {r:>8.4}");
            }
            None => {
                let _ = writeln!(out, " {:>8}", "-");
            }
        }
    }
    out
}
