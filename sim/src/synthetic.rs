//! A synthetic dataset for scale runs: Gaussian features, labels drawn from a random
//! logistic model (so the data is learnable but not separable).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::data::{RawDataset, Schema};

/// `ROWSxFEATURES`, e.g. `20000x30`.
pub fn parse_shape(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}`: expected ROWSxFEATURES, e.g. 20000x30");
    let (rows, features) = s.split_once('x').ok_or_else(bad)?;
    let rows: usize = rows.parse().map_err(|_| bad())?;
    let features: usize = features.parse().map_err(|_| bad())?;
    if rows < 10 || features == 0 || features > zkfed_air::fixed::MAX_FEATURES {
        return Err(format!(
            "`{s}`: need at least 10 rows and 1..=1024 features"
        ));
    }
    Ok((rows, features))
}

/// `rows` rows of `features` standard-normal features with logistic labels.
pub fn generate(rows: usize, features: usize, seed: u64) -> RawDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = move || {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let truth: Vec<f64> = (0..features)
        .map(|_| 2.0 * normal() / (features as f64).sqrt())
        .collect();
    let mut data = Vec::with_capacity(rows);
    let mut labels = Vec::with_capacity(rows);
    let mut coin = StdRng::seed_from_u64(seed ^ 0x5eed);
    for _ in 0..rows {
        let x: Vec<f64> = (0..features).map(|_| normal()).collect();
        let z: f64 = x.iter().zip(&truth).map(|(a, b)| a * b).sum();
        labels.push(u8::from(coin.random::<f64>() < 1.0 / (1.0 + (-z).exp())));
        data.push(x);
    }
    let schema = Schema::binary((0..features).map(|j| format!("f{j}")).collect(), "y");
    RawDataset {
        schema,
        features: data,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_shape("20000x30"), Ok((20000, 30)));
        assert!(parse_shape("20000").is_err());
        assert!(parse_shape("5x3").is_err());
        assert!(parse_shape("100x0").is_err());
    }

    #[test]
    fn generated_data_is_deterministic_balanced_and_representable() {
        let a = generate(2000, 8, 3);
        assert_eq!(a, generate(2000, 8, 3));
        let positive = a.labels.iter().filter(|&&y| y == 1).count();
        assert!((600..1400).contains(&positive), "{positive}");
        let stats = zkfed_air::data::Standardization::fit(&a).unwrap();
        assert_eq!(stats.apply(&a).unwrap().len(), 2000);
    }
}
