//! Splitting rows across participants: IID, or non-IID with Dirichlet-distributed label
//! proportions (the usual federated-learning benchmark split).

use rand::{Rng, RngExt};

/// How rows are split across participants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Partition {
    /// Uniformly at random.
    Iid,
    /// For each label, participant shares drawn from Dirichlet(α); small α is more skewed.
    Dirichlet(f64),
}

impl std::str::FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iid" => Ok(Self::Iid),
            _ => match s.strip_prefix("dirichlet:").map(str::parse::<f64>) {
                Some(Ok(alpha)) if alpha > 0.0 && alpha.is_finite() => Ok(Self::Dirichlet(alpha)),
                _ => Err(format!(
                    "`{s}`: expected `iid` or `dirichlet:ALPHA` with ALPHA > 0"
                )),
            },
        }
    }
}

/// Assigns `rows` (given by index, with their labels) to `parts` participants.
pub fn split(
    rows: &[usize],
    labels: &[u8],
    parts: usize,
    partition: Partition,
    rng: &mut impl Rng,
) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); parts];
    match partition {
        Partition::Iid => {
            let mut shuffled = rows.to_vec();
            shuffle(&mut shuffled, rng);
            for (i, row) in shuffled.into_iter().enumerate() {
                out[i % parts].push(row);
            }
        }
        Partition::Dirichlet(alpha) => {
            // Every label present, binary or multi-class, gets its own Dirichlet shares.
            let top = rows.iter().map(|&r| labels[r]).max().unwrap_or(0);
            for label in 0..=top {
                let mut of_label: Vec<usize> = rows
                    .iter()
                    .copied()
                    .filter(|&r| labels[r] == label)
                    .collect();
                shuffle(&mut of_label, rng);
                let shares = dirichlet(parts, alpha, rng);
                let mut start = 0;
                for (k, share) in shares.iter().enumerate() {
                    let end = if k + 1 == parts {
                        of_label.len()
                    } else {
                        (start + (share * of_label.len() as f64).round() as usize)
                            .min(of_label.len())
                    };
                    out[k].extend_from_slice(&of_label[start..end]);
                    start = end;
                }
            }
        }
    }
    out
}

fn shuffle(v: &mut [usize], rng: &mut impl Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// A draw from the symmetric Dirichlet(α) distribution on `k` components.
pub fn dirichlet(k: usize, alpha: f64, rng: &mut impl Rng) -> Vec<f64> {
    let draws: Vec<f64> = (0..k).map(|_| gamma(alpha, rng)).collect();
    let total: f64 = draws.iter().sum();
    if total > 0.0 {
        draws.iter().map(|g| g / total).collect()
    } else {
        vec![1.0 / k as f64; k]
    }
}

/// A Gamma(α, 1) draw (Marsaglia and Tsang; boosted for α < 1).
fn gamma(alpha: f64, rng: &mut impl Rng) -> f64 {
    if alpha < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return gamma(alpha + 1.0, rng) * u.powf(1.0 / alpha);
    }
    let d = alpha - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn data() -> (Vec<usize>, Vec<u8>) {
        let labels: Vec<u8> = (0..1000).map(|i| u8::from(i % 3 == 0)).collect();
        ((0..1000).collect(), labels)
    }

    #[test]
    fn every_row_lands_in_exactly_one_part() {
        let (rows, binary) = data();
        let ten_classes: Vec<u8> = (0..1000).map(|i| (i * 7 % 10) as u8).collect();
        for (labels, partition) in [
            (&binary, Partition::Iid),
            (&binary, Partition::Dirichlet(0.5)),
            (&binary, Partition::Dirichlet(100.0)),
            (&ten_classes, Partition::Dirichlet(0.5)),
        ] {
            let parts = split(&rows, labels, 4, partition, &mut StdRng::seed_from_u64(1));
            let mut all: Vec<usize> = parts.concat();
            all.sort();
            assert_eq!(all, rows, "{partition:?}");
        }
    }

    #[test]
    fn small_alpha_skews_labels_and_iid_does_not() {
        let (rows, labels) = data();
        let positive_share = |parts: &[Vec<usize>]| -> Vec<f64> {
            parts
                .iter()
                .map(|p| {
                    p.iter().filter(|&&r| labels[r] == 1).count() as f64 / p.len().max(1) as f64
                })
                .collect()
        };
        let spread = |v: &[f64]| {
            v.iter().cloned().fold(0.0, f64::max) - v.iter().cloned().fold(1.0, f64::min)
        };
        let iid = split(
            &rows,
            &labels,
            4,
            Partition::Iid,
            &mut StdRng::seed_from_u64(2),
        );
        let skewed = split(
            &rows,
            &labels,
            4,
            Partition::Dirichlet(0.1),
            &mut StdRng::seed_from_u64(2),
        );
        assert!(spread(&positive_share(&iid)) < 0.1);
        assert!(spread(&positive_share(&skewed)) > 0.3);
    }

    #[test]
    fn dirichlet_draws_are_distributions() {
        let mut rng = StdRng::seed_from_u64(3);
        for alpha in [0.05, 0.5, 1.0, 10.0] {
            let d = dirichlet(5, alpha, &mut rng);
            assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(d.iter().all(|&x| x >= 0.0));
        }
    }

    #[test]
    fn partitions_parse() {
        assert_eq!("iid".parse::<Partition>(), Ok(Partition::Iid));
        assert_eq!(
            "dirichlet:0.5".parse::<Partition>(),
            Ok(Partition::Dirichlet(0.5))
        );
        assert!("dirichlet:-1".parse::<Partition>().is_err());
        assert!("random".parse::<Partition>().is_err());
    }
}
