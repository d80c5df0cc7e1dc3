//! Tabular data: CSV rows under a schema, public standardization, and the bundled
//! Wisconsin breast-cancer (binary) and handwritten-digits (ten classes) data.
//!
//! Parsing reads from any `Read` handed in; opening files is the caller's business.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::fixed::{MAX_FEATURES, X_OFFSET, dequantize, feature_in_range, quantize};

/// Most rows a CSV may hold (bounds memory on hostile input).
pub const MAX_CSV_ROWS: usize = 10_000_000;

/// Most classes a label column may have.
pub const MAX_CLASSES: u8 = 64;

/// Which CSV columns are features (in order), which is the label, and how many classes
/// the label has: each row's label is an integer in `0..classes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Feature column names, in model order.
    #[serde(deserialize_with = "crate::bounded::per_feature")]
    pub features: Vec<String>,
    /// Label column name.
    pub label: String,
    /// Number of label classes, 2 to [`MAX_CLASSES`] (2 when a configuration omits it).
    #[serde(default = "binary")]
    pub classes: u8,
}

fn binary() -> u8 {
    2
}

impl Schema {
    /// A schema with a binary (0/1) label.
    pub fn binary(features: Vec<String>, label: impl Into<String>) -> Self {
        Self {
            features,
            label: label.into(),
            classes: 2,
        }
    }

    /// 1 to [`MAX_FEATURES`] feature columns, each name non-blank without surrounding
    /// spaces, no name twice (the label is not a feature), 2 to [`MAX_CLASSES`] classes. A
    /// participant checks the coordinator's schema with it: a feature named twice reads one
    /// CSV column twice.
    pub fn validate(&self) -> Result<(), DataError> {
        let got = self.features.len();
        if !(1..=MAX_FEATURES).contains(&got) {
            return Err(DataError::SchemaSize {
                got,
                max: MAX_FEATURES,
            });
        }
        if !(2..=MAX_CLASSES).contains(&self.classes) {
            return Err(DataError::Classes {
                got: self.classes,
                max: MAX_CLASSES,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for name in self.features.iter().chain(std::iter::once(&self.label)) {
            if name.trim().is_empty() || name.trim() != name {
                return Err(DataError::ColumnName {
                    column: name.clone(),
                });
            }
            if !seen.insert(name) {
                return Err(DataError::DuplicateColumn {
                    column: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// SHA-256 of the schema's canonical (postcard) encoding, bound into enrolment.
    pub fn hash(&self) -> [u8; 32] {
        let bytes = postcard::to_allocvec(self).expect("serializing strings cannot fail");
        Sha256::digest(bytes).into()
    }
}

/// Rows in real units, before standardization.
#[derive(Clone, Debug, PartialEq)]
pub struct RawDataset {
    /// The schema the rows follow.
    pub schema: Schema,
    /// One feature vector per row, in schema order.
    pub features: Vec<Vec<f64>>,
    /// One label per row, in `0..schema.classes`.
    pub labels: Vec<u8>,
}

/// A CSV that does not fit its schema. Lines count from 1, the header being line 1.
///
/// No variant holds a cell's content: these errors reach logs and terminals, and a cell is
/// a patient's value. They name the line (or data row), the column and the rule broken.
#[derive(Debug, Error, PartialEq)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum DataError {
    /// The reader failed or the CSV is malformed (`reason` never quotes the input).
    #[error("CSV line {line}: {reason}")]
    Csv { line: u64, reason: String },
    /// No header row.
    #[error("CSV has no header row")]
    NoHeader,
    /// A schema column missing from the header.
    #[error("CSV header has no column `{column}`")]
    MissingColumn { column: String },
    /// A row with a different number of fields than the header.
    #[error("CSV line {line}: {got} fields, the header has {expected}")]
    ColumnCount {
        line: u64,
        expected: usize,
        got: usize,
    },
    /// An empty value.
    #[error("CSV line {line}, column `{column}`: missing value")]
    Missing { line: u64, column: String },
    /// A value that is not a finite number.
    #[error("CSV line {line}, column `{column}`: not a finite number")]
    NotNumeric { line: u64, column: String },
    /// A label that is not an integer in `0..classes`.
    #[error("CSV line {line}, label column `{column}`: not an integer from 0 to {}", .classes.saturating_sub(1))]
    BadLabel {
        line: u64,
        column: String,
        classes: u8,
    },
    /// A schema whose label has fewer than 2 or more than [`MAX_CLASSES`] classes.
    #[error("the schema's label has {got} classes; a model takes 2 to {max}")]
    Classes { got: u8, max: u8 },
    /// No data rows.
    #[error("CSV has no data rows")]
    Empty,
    /// Too many rows.
    #[error("CSV has more than {max} rows")]
    TooManyRows { max: usize },
    /// Data rows with standardized values the fixed-point format cannot hold: how many,
    /// and the first [`LISTED_ROWS`] of them with their columns.
    #[error(
        "{count} data row(s) have standardized values outside ±{limit} standard deviations, \
         which the proof's fixed-point format cannot hold: {}",
        list_rows(.first, *.count)
    )]
    OutOfRange {
        count: usize,
        first: Vec<OutOfRangeRow>,
        limit: f64,
    },
    /// Standardization statistics that do not fit the schema.
    #[error("standardization has {got} features, the schema {expected}")]
    StatsShape { expected: usize, got: usize },
    /// A feature whose mean is not a finite number.
    #[error("feature `{column}` has a mean that is not a finite number")]
    NonFiniteMean { column: String },
    /// A schema with no feature columns or more than a model takes.
    #[error("the schema has {got} feature columns; a model takes 1 to {max}")]
    SchemaSize { got: usize, max: usize },
    /// A column name that is blank or has surrounding spaces (CSV headers are trimmed).
    #[error("schema column `{column}` is empty or has surrounding spaces")]
    ColumnName { column: String },
    /// A column named twice (the label counts: it must not be a feature).
    #[error("the schema names column `{column}` twice (the label must not be a feature)")]
    DuplicateColumn { column: String },
    /// A column with no spread, or a non-finite statistic.
    #[error("feature `{column}` has an unusable standard deviation {std}")]
    DegenerateColumn { column: String, std: f64 },
}

/// How many out-of-range rows [`DataError::OutOfRange`] lists.
pub const LISTED_ROWS: usize = 5;

/// A data row whose standardized values the fixed-point format cannot hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfRangeRow {
    /// The data row, counted from 1 after the header (CSV line `row + 1` when the file has
    /// no blank lines or quoted line breaks).
    pub row: usize,
    /// The feature columns whose standardized values are out of range (never the values).
    pub columns: Vec<String>,
}

impl std::fmt::Display for OutOfRangeRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "data row {} (", self.row)?;
        for (i, column) in self.columns.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}`{column}`")?;
        }
        write!(f, ")")
    }
}

/// "data row 3 (`a`), data row 9 (`b`, `c`) and 4 more", for messages.
pub fn list_rows(first: &[OutOfRangeRow], count: usize) -> String {
    let mut out = first
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if count > first.len() {
        out.push_str(&format!(" and {} more", count - first.len()));
    }
    out
}

/// Reads a CSV with a header row, keeping the schema's columns.
pub fn read_csv<R: Read>(reader: R, schema: &Schema) -> Result<RawDataset, DataError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut records = csv.records();
    let header = match records.next() {
        Some(r) => r.map_err(|e| csv_error(1, e, None))?,
        None => return Err(DataError::NoHeader),
    };
    let position = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| DataError::MissingColumn {
                column: name.to_string(),
            })
    };
    let feature_cols = schema
        .features
        .iter()
        .map(|f| position(f))
        .collect::<Result<Vec<_>, _>>()?;
    let label_col = position(&schema.label)?;

    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (i, record) in records.enumerate() {
        let line = i as u64 + 2;
        let record = record.map_err(|e| csv_error(line, e, Some(&header)))?;
        if record.len() != header.len() {
            return Err(DataError::ColumnCount {
                line,
                expected: header.len(),
                got: record.len(),
            });
        }
        if features.len() == MAX_CSV_ROWS {
            return Err(DataError::TooManyRows { max: MAX_CSV_ROWS });
        }
        let row = feature_cols
            .iter()
            .zip(&schema.features)
            .map(|(&c, name)| parse_number(&record[c], line, name))
            .collect::<Result<Vec<_>, _>>()?;
        let label = parse_label(&record[label_col], line, schema)?;
        features.push(row);
        labels.push(label);
    }
    if features.is_empty() {
        return Err(DataError::Empty);
    }
    Ok(RawDataset {
        schema: schema.clone(),
        features,
        labels,
    })
}

/// A label: a decimal integer in `0..schema.classes` (no sign, no fraction: "1.0" is
/// refused rather than guessed at).
fn parse_label(cell: &str, line: u64, schema: &Schema) -> Result<u8, DataError> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Err(DataError::Missing {
            line,
            column: schema.label.clone(),
        });
    }
    let label = (cell.len() <= 3 && cell.bytes().all(|b| b.is_ascii_digit()))
        .then(|| cell.parse::<u8>().ok())
        .flatten()
        .filter(|&l| l < schema.classes);
    label.ok_or_else(|| DataError::BadLabel {
        line,
        column: schema.label.clone(),
        classes: schema.classes,
    })
}

/// The csv crate's failure, by kind only: its own messages may quote the input.
fn csv_error(line: u64, e: csv::Error, header: Option<&csv::StringRecord>) -> DataError {
    let line = e.position().map_or(line, |p| p.line());
    let reason = match e.kind() {
        csv::ErrorKind::Io(io) => format!("reading failed ({})", io.kind()),
        csv::ErrorKind::Utf8 { err, .. } => match header.and_then(|h| h.get(err.field())) {
            Some(name) => format!("column `{}` is not valid UTF-8", name.trim()),
            None => format!("field {} is not valid UTF-8", err.field() + 1),
        },
        _ => "malformed CSV".to_string(),
    };
    DataError::Csv { line, reason }
}

fn parse_number(field: &str, line: u64, column: &str) -> Result<f64, DataError> {
    let field = field.trim();
    if field.is_empty() {
        return Err(DataError::Missing {
            line,
            column: column.to_string(),
        });
    }
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(DataError::NotNumeric {
            line,
            column: column.to_string(),
        }),
    }
}

/// Per-feature mean and standard deviation: public run parameters, fixed before enrolment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    /// Mean of each feature.
    #[serde(deserialize_with = "crate::bounded::per_feature")]
    pub mean: Vec<f64>,
    /// Standard deviation of each feature (population).
    #[serde(deserialize_with = "crate::bounded::per_feature")]
    pub std: Vec<f64>,
}

impl Standardization {
    /// Statistics of a dataset (the operator computes them on reference data).
    pub fn fit(data: &RawDataset) -> Result<Self, DataError> {
        let n = data.features.len() as f64;
        let d = data.schema.features.len();
        let mut mean = vec![0.0; d];
        for row in &data.features {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n;
            }
        }
        let mut var = vec![0.0; d];
        for row in &data.features {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v - m) * (v - m) / n;
            }
        }
        let std: Vec<f64> = var.into_iter().map(f64::sqrt).collect();
        let stats = Self { mean, std };
        stats.check(&data.schema)?;
        Ok(stats)
    }

    /// One mean and one standard deviation over every value of every feature, used for
    /// each feature: for features measured on one scale, such as the digits' pixel
    /// intensities, where per-feature statistics would divide by the near-zero spread of
    /// pixels that are almost always blank (three digits pixels never vary at all).
    pub fn fit_pooled(data: &RawDataset) -> Result<Self, DataError> {
        let d = data.schema.features.len();
        let count = (data.features.len() * d) as f64;
        let mean = data.features.iter().flatten().sum::<f64>() / count;
        let var = data
            .features
            .iter()
            .flatten()
            .map(|v| (v - mean) * (v - mean) / count)
            .sum::<f64>();
        let stats = Self {
            mean: vec![mean; d],
            std: vec![var.sqrt(); d],
        };
        stats.check(&data.schema)?;
        Ok(stats)
    }

    /// One finite mean and one finite, positive standard deviation per feature of
    /// `schema`: every row is measured by them, so a participant checks the coordinator's
    /// statistics as the coordinator checks its own configuration.
    pub fn check(&self, schema: &Schema) -> Result<(), DataError> {
        let d = schema.features.len();
        if self.mean.len() != d || self.std.len() != d {
            return Err(DataError::StatsShape {
                expected: d,
                got: self.mean.len().min(self.std.len()),
            });
        }
        for ((name, &mean), &std) in schema.features.iter().zip(&self.mean).zip(&self.std) {
            if !mean.is_finite() {
                return Err(DataError::NonFiniteMean {
                    column: name.clone(),
                });
            }
            if !(std.is_finite() && std > 0.0) {
                return Err(DataError::DegenerateColumn {
                    column: name.clone(),
                    std,
                });
            }
        }
        Ok(())
    }

    /// Standardizes and quantizes rows, refusing them all if any value lands outside the
    /// fixed-point range (±32 standard deviations): one error counting the rows out of
    /// range and naming the first few with their columns. [`Self::standardize`] keeps the
    /// rows that fit instead.
    pub fn apply(&self, data: &RawDataset) -> Result<Vec<Vec<i64>>, DataError> {
        let standardized = self.standardize(data)?;
        standardized.check_in_range()?;
        Ok(standardized.rows)
    }

    /// Standardizes and quantizes every row that fits the fixed-point range, and reports
    /// the rows that do not (with their columns, never their values). Fails only for
    /// statistics that do not fit the schema.
    pub fn standardize(&self, data: &RawDataset) -> Result<Standardized, DataError> {
        self.check(&data.schema)?;
        let mut out = Standardized {
            rows: Vec::with_capacity(data.features.len()),
            labels: Vec::with_capacity(data.features.len()),
            kept: Vec::with_capacity(data.features.len()),
            out_of_range: Vec::new(),
        };
        for (index, (x, &label)) in data.features.iter().zip(&data.labels).enumerate() {
            let row: Vec<i64> = x
                .iter()
                .zip(self.mean.iter().zip(&self.std))
                .map(|(v, (m, s))| quantize((v - m) / s))
                .collect();
            let columns: Vec<String> = row
                .iter()
                .zip(&data.schema.features)
                .filter(|(q, _)| !feature_in_range(**q))
                .map(|(_, name)| name.clone())
                .collect();
            if columns.is_empty() {
                out.rows.push(row);
                out.labels.push(label);
                out.kept.push(index);
            } else {
                out.out_of_range.push(OutOfRangeRow {
                    row: index + 1,
                    columns,
                });
            }
        }
        Ok(out)
    }
}

/// Rows in fixed point under a [`Standardization`], and the rows left out because a
/// standardized value falls outside the range the proof covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardized {
    /// The rows that fit, in file order.
    pub rows: Vec<Vec<i64>>,
    /// Their labels.
    pub labels: Vec<u8>,
    /// Each kept row's index (from 0) in the data.
    pub kept: Vec<usize>,
    /// The rows left out, in file order.
    pub out_of_range: Vec<OutOfRangeRow>,
}

impl Standardized {
    /// [`DataError::OutOfRange`] if any row was left out.
    pub fn check_in_range(&self) -> Result<(), DataError> {
        if self.out_of_range.is_empty() {
            return Ok(());
        }
        Err(DataError::OutOfRange {
            count: self.out_of_range.len(),
            first: self
                .out_of_range
                .iter()
                .take(LISTED_ROWS)
                .cloned()
                .collect(),
            limit: dequantize(X_OFFSET),
        })
    }
}

/// The Wisconsin diagnostic breast-cancer data (569 rows, 30 features), as shipped inside
/// the `smartcore` crate (UCI Machine Learning Repository, CC BY 4.0). Label 1 = benign.
pub fn breast_cancer() -> RawDataset {
    let ds = smartcore::dataset::breast_cancer::load_dataset();
    let features = ds
        .data
        .chunks_exact(ds.num_features)
        .map(|row| row.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let labels = ds.target.iter().map(|&t| u8::from(t != 0)).collect();
    let schema = Schema::binary(ds.feature_names.clone(), "diagnosis");
    RawDataset {
        schema,
        features,
        labels,
    }
}

/// The optical handwritten-digits data (1,797 images of 8 × 8 pixels with intensities
/// 0 to 16, labels 0 to 9), as shipped inside the `smartcore` crate (UCI Machine Learning
/// Repository, "Optical Recognition of Handwritten Digits", CC BY 4.0). Pixels are named
/// `r{row}c{column}`, row-major; the label column is `digit`. (smartcore's own feature
/// and target names for this set are copied from another dataset and are not used.)
pub fn digits() -> RawDataset {
    let ds = smartcore::dataset::digits::load_dataset();
    let features = ds
        .data
        .chunks_exact(ds.num_features)
        .map(|row| row.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let labels = ds.target.iter().map(|&t| t as u8).collect();
    let names = (0..ds.num_features)
        .map(|p| format!("r{}c{}", p / 8, p % 8))
        .collect();
    RawDataset {
        schema: Schema {
            features: names,
            label: "digit".into(),
            classes: 10,
        },
        features,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::binary(vec!["a".into(), "b".into()], "y")
    }

    #[test]
    fn reads_columns_by_name_in_schema_order() {
        let csv = "b,extra,y,a\n2,x,1,1.5\n-3,z,0,0\n";
        let d = read_csv(csv.as_bytes(), &schema()).unwrap();
        assert_eq!(d.features, vec![vec![1.5, 2.0], vec![0.0, -3.0]]);
        assert_eq!(d.labels, vec![1, 0]);
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let s = schema();
        let e = |csv: &str| read_csv(csv.as_bytes(), &s).unwrap_err();
        assert_eq!(e(""), DataError::NoHeader);
        assert_eq!(
            e("a,y\n1,0\n"),
            DataError::MissingColumn { column: "b".into() }
        );
        assert_eq!(
            e("a,b,y\n1,2\n"),
            DataError::ColumnCount {
                line: 2,
                expected: 3,
                got: 2
            }
        );
        assert_eq!(
            e("a,b,y\n1,,0\n"),
            DataError::Missing {
                line: 2,
                column: "b".into()
            }
        );
        assert_eq!(
            e("a,b,y\n1,2,0\n1,two,1\n"),
            DataError::NotNumeric {
                line: 3,
                column: "b".into(),
            }
        );
        assert!(matches!(
            e("a,b,y\n1,NaN,0\n"),
            DataError::NotNumeric { .. }
        ));
        assert!(matches!(
            e("a,b,y\n1,inf,0\n"),
            DataError::NotNumeric { .. }
        ));
        assert_eq!(
            e("a,b,y\n1,2,2\n"),
            DataError::BadLabel {
                line: 2,
                column: "y".into(),
                classes: 2
            }
        );
        assert_eq!(e("a,b,y\n"), DataError::Empty);
    }

    #[test]
    fn multi_class_labels_are_integers_below_the_class_count() {
        let s = Schema {
            classes: 10,
            ..schema()
        };
        let d = read_csv("a,b,y\n1,2,0\n1,2,9\n3,4, 7 \n".as_bytes(), &s).unwrap();
        assert_eq!(d.labels, vec![0, 9, 7]);
        for bad in ["10", "-1", "1.0", "+3", "0x1", "256", "99999999999", "a"] {
            let err = read_csv(format!("a,b,y\n1,2,{bad}\n").as_bytes(), &s).unwrap_err();
            assert_eq!(
                err,
                DataError::BadLabel {
                    line: 2,
                    column: "y".into(),
                    classes: 10
                },
                "{bad}"
            );
            assert!(err.to_string().contains("from 0 to 9"), "{err}");
        }
        for classes in [0, 1, MAX_CLASSES + 1] {
            let s = Schema {
                classes,
                ..schema()
            };
            assert_eq!(
                s.validate(),
                Err(DataError::Classes {
                    got: classes,
                    max: MAX_CLASSES
                })
            );
        }
        // A configuration written before multi-class labels reads as binary.
        let old: Schema = serde_json::from_str(r#"{"features":["a","b"],"label":"y"}"#).unwrap();
        assert_eq!(old, schema());
    }

    #[test]
    fn digits_are_ten_classes_of_sixty_four_pixels() {
        let d = digits();
        d.schema.validate().unwrap();
        assert_eq!((d.features.len(), d.schema.features.len()), (1797, 64));
        assert_eq!(d.schema.features[9], "r1c1");
        let mut counts = [0usize; 10];
        for &l in &d.labels {
            counts[usize::from(l)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (170..=190).contains(&c)),
            "{counts:?}"
        );
        assert!(
            d.features
                .iter()
                .flatten()
                .all(|v| (0.0..=16.0).contains(v))
        );
        // Per-pixel statistics cannot standardize it: three pixels never vary.
        assert!(matches!(
            Standardization::fit(&d),
            Err(DataError::DegenerateColumn { .. })
        ));
        let pooled = Standardization::fit_pooled(&d).unwrap();
        assert!((pooled.mean[0] - 4.88).abs() < 0.01 && (pooled.std[63] - 6.02).abs() < 0.01);
        assert_eq!(pooled.apply(&d).unwrap().len(), 1797);
    }

    /// Every error a CSV can cause, built from a file holding a distinctive value in the
    /// offending cell: the value reaches neither the message nor the debug text.
    #[test]
    fn errors_never_show_a_cell_value() {
        let s = schema();
        let secret = "987654.321";
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                format!("a,b,y\n1,{secret}x,0\n").into_bytes(),
                "not a finite",
            ),
            (
                format!("a,b,y\n1,2,{secret}\n").into_bytes(),
                "not an integer from 0 to 1",
            ),
            ("a,b,y\n1,2,7\n".into(), "not an integer from 0 to 1"),
            (format!("a,b,y\n1,2,0\n{secret},3\n").into_bytes(), "fields"),
            // Invalid UTF-8 right after the value: the csv crate's own message is not used.
            (
                [b"a,b,y\n1,", secret.as_bytes(), b"\xff\xfe,0\n"].concat(),
                "not valid UTF-8",
            ),
            (format!("a,b,y\n1,\"{secret}").into_bytes(), ""),
        ];
        for (csv, rule) in cases {
            let Err(err) = read_csv(csv.as_slice(), &s) else {
                panic!("{} parsed", String::from_utf8_lossy(&csv));
            };
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains(rule), "{shown}");
            if rule == "not an integer from 0 to 1" {
                assert!(
                    !shown.contains('7'),
                    "the label itself is not shown: {shown}"
                );
            }
        }
        // A standardized value out of range: the row and column, not the value or z-score.
        let mut rows = vec![vec![0.0, 1.0]; 1500];
        rows.push(vec![987654.321, 2.0]);
        let data = RawDataset {
            schema: s,
            features: rows,
            labels: vec![0; 1501],
        };
        let err = Standardization::fit(&data)
            .unwrap()
            .apply(&data)
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("data row 1501 (`a`, `b`)"), "{shown}");
        assert!(!shown.contains("987654"), "{shown}");
        assert!(!shown.contains("38.7"), "the z-score is not shown: {shown}");
    }

    /// Four rows out of range among many: `apply` refuses them all with one error that
    /// counts them and lists the first few with their columns; `standardize` keeps the rest.
    #[test]
    fn out_of_range_rows_are_counted_listed_or_left_out() {
        let mut rows = vec![vec![0.0, 1.0]; 8000];
        for (i, row) in [(10, vec![5000.0, 1.0]), (20, vec![1.0, 5000.0])] {
            rows[i] = row;
        }
        rows[30] = vec![-5000.0, -5000.0];
        rows[7999] = vec![5000.0, 1.0];
        let data = RawDataset {
            schema: schema(),
            features: rows,
            labels: (0..8000).map(|i| u8::from(i % 3 == 0)).collect(),
        };
        let stats = Standardization::fit(&data).unwrap();
        let err = stats.apply(&data).unwrap_err();
        let DataError::OutOfRange { count, first, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*count, 4);
        let listed: Vec<_> = first.iter().map(|r| (r.row, r.columns.clone())).collect();
        assert_eq!(
            listed,
            [
                (11, vec!["a".to_string()]),
                (21, vec!["b".into()]),
                (31, vec!["a".into(), "b".into()]),
                (8000, vec!["a".into()]),
            ]
        );
        assert!(
            err.to_string()
                .starts_with("4 data row(s) have standardized values outside ±32"),
            "{err}"
        );
        assert!(err.to_string().contains("data row 31 (`a`, `b`)"), "{err}");

        let kept = stats.standardize(&data).unwrap();
        assert_eq!(kept.rows.len(), 7996);
        assert_eq!(kept.out_of_range.len(), 4);
        assert!(kept.check_in_range().is_err());
        assert!(!kept.kept.contains(&10) && !kept.kept.contains(&7999));
        for (k, &i) in kept.kept.iter().enumerate() {
            assert_eq!(kept.labels[k], data.labels[i]);
        }

        // More rows than are listed: the count is complete, the list is not.
        let mut many = data.clone();
        for row in many.features.iter_mut().skip(100).take(10) {
            row[0] = 9000.0;
        }
        let err = stats.apply(&many).unwrap_err();
        let DataError::OutOfRange { count, first, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((*count, first.len()), (14, LISTED_ROWS));
        assert!(err.to_string().ends_with(" and 9 more"), "{err}");
        let flat = RawDataset {
            schema: schema(),
            features: vec![vec![1.0, 1.0]; 3],
            labels: vec![0; 3],
        };
        assert!(matches!(
            Standardization::fit(&flat),
            Err(DataError::DegenerateColumn { .. })
        ));
    }

    #[test]
    fn bundled_breast_cancer_is_whole_and_representable() {
        let data = breast_cancer();
        assert_eq!(data.features.len(), 569);
        assert_eq!(data.schema.features.len(), 30);
        assert_eq!(data.labels.iter().filter(|&&y| y == 1).count(), 357);
        let stats = Standardization::fit(&data).unwrap();
        let q = stats.apply(&data).unwrap();
        assert_eq!(q.len(), 569);
    }
}
