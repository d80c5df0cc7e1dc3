//! Tabular data: CSV rows under a schema, public standardization, and the bundled
//! Wisconsin breast-cancer data.
//!
//! Parsing reads from any `Read` handed in; opening files is the caller's business.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::fixed::{X_OFFSET, dequantize, feature_in_range, quantize};

/// Most rows a CSV may hold (bounds memory on hostile input).
pub const MAX_CSV_ROWS: usize = 10_000_000;

/// Which CSV columns are features (in order) and which is the 0/1 label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Feature column names, in model order.
    pub features: Vec<String>,
    /// Label column name.
    pub label: String,
}

impl Schema {
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
    /// One 0/1 label per row.
    pub labels: Vec<u8>,
}

/// A CSV that does not fit its schema. Lines count from 1, the header being line 1.
#[derive(Debug, Error, PartialEq)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum DataError {
    /// The reader failed or the CSV is malformed.
    #[error("CSV line {line}: {message}")]
    Csv { line: u64, message: String },
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
    #[error("CSV line {line}, column `{column}`: `{value}` is not a finite number")]
    NotNumeric {
        line: u64,
        column: String,
        value: String,
    },
    /// A label other than 0 or 1.
    #[error("CSV line {line}: label `{value}` is not 0 or 1")]
    BadLabel { line: u64, value: String },
    /// No data rows.
    #[error("CSV has no data rows")]
    Empty,
    /// Too many rows.
    #[error("CSV has more than {max} rows")]
    TooManyRows { max: usize },
    /// A standardized value the fixed-point format cannot hold.
    #[error("row {row}, feature `{column}`: standardized value {value:.3} is outside ±{limit}")]
    OutOfRange {
        row: usize,
        column: String,
        value: f64,
        limit: f64,
    },
    /// Standardization statistics that do not fit the schema.
    #[error("standardization has {got} features, the schema {expected}")]
    StatsShape { expected: usize, got: usize },
    /// A column with no spread, or a non-finite statistic.
    #[error("feature `{column}` has an unusable standard deviation {std}")]
    DegenerateColumn { column: String, std: f64 },
}

/// Reads a CSV with a header row, keeping the schema's columns.
pub fn read_csv<R: Read>(reader: R, schema: &Schema) -> Result<RawDataset, DataError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut records = csv.records();
    let header = match records.next() {
        Some(r) => r.map_err(|e| csv_error(1, e))?,
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
        let record = record.map_err(|e| csv_error(line, e))?;
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
        let label = match record[label_col].trim() {
            "0" => 0,
            "1" => 1,
            "" => {
                return Err(DataError::Missing {
                    line,
                    column: schema.label.clone(),
                });
            }
            other => {
                return Err(DataError::BadLabel {
                    line,
                    value: other.to_string(),
                });
            }
        };
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

fn csv_error(line: u64, e: csv::Error) -> DataError {
    let line = e.position().map_or(line, |p| p.line());
    DataError::Csv {
        line,
        message: e.to_string(),
    }
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
            value: field.to_string(),
        }),
    }
}

/// Per-feature mean and standard deviation: public run parameters, fixed before enrolment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    /// Mean of each feature.
    pub mean: Vec<f64>,
    /// Standard deviation of each feature (population).
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

    fn check(&self, schema: &Schema) -> Result<(), DataError> {
        let d = schema.features.len();
        if self.mean.len() != d || self.std.len() != d {
            return Err(DataError::StatsShape {
                expected: d,
                got: self.mean.len().min(self.std.len()),
            });
        }
        for (name, &std) in schema.features.iter().zip(&self.std) {
            if !(std.is_finite() && std > 0.0) {
                return Err(DataError::DegenerateColumn {
                    column: name.clone(),
                    std,
                });
            }
        }
        Ok(())
    }

    /// Standardizes and quantizes rows; a value outside ±16 after standardization is an error.
    pub fn apply(&self, data: &RawDataset) -> Result<Vec<Vec<i64>>, DataError> {
        self.check(&data.schema)?;
        let limit = dequantize(X_OFFSET);
        data.features
            .iter()
            .enumerate()
            .map(|(row, x)| {
                x.iter()
                    .zip(self.mean.iter().zip(&self.std))
                    .zip(&data.schema.features)
                    .map(|((v, (m, s)), column)| {
                        let z = (v - m) / s;
                        let q = quantize(z);
                        if feature_in_range(q) {
                            Ok(q)
                        } else {
                            Err(DataError::OutOfRange {
                                row,
                                column: column.clone(),
                                value: z,
                                limit,
                            })
                        }
                    })
                    .collect()
            })
            .collect()
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
    let schema = Schema {
        features: ds.feature_names.clone(),
        label: "diagnosis".into(),
    };
    RawDataset {
        schema,
        features,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema {
            features: vec!["a".into(), "b".into()],
            label: "y".into(),
        }
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
                value: "two".into()
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
                value: "2".into()
            }
        );
        assert_eq!(e("a,b,y\n"), DataError::Empty);
    }

    #[test]
    fn standardization_rejects_values_outside_the_format() {
        let mut rows = vec![vec![0.0, 1.0]; 300];
        rows.push(vec![1000.0, 2.0]);
        let data = RawDataset {
            schema: schema(),
            features: rows,
            labels: vec![0; 301],
        };
        let stats = Standardization::fit(&data).unwrap();
        let err = stats.apply(&data).unwrap_err();
        assert!(
            matches!(err, DataError::OutOfRange { row: 300, .. }),
            "{err:?}"
        );
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
