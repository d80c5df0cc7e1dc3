//! The fixed-point softmax and MLP references against f64 DP-SGD (exact exponential and
//! division, an uncapped ReLU, per-example clipping of the whole parameter vector by its
//! exact L2 norm) on the bundled digits data (and a binary MLP on breast cancer): the clipped-gradient sum of a model part-way
//! through training. Prints the deviation and the cosine; asserts cosine ≥ 0.999.

use zkfed_air::data::{RawDataset, Standardization, breast_cancer, digits};
use zkfed_air::fixed::{ONE, dequantize};
use zkfed_air::network::network_gradient_sum;
use zkfed_air::spec::{LayerShape, ModelSpec};

/// Clip norm C = 1.0, as in the logistic comparison.
const CLIP: i64 = ONE;

/// One example's f64 gradient, in the parameter vector's layout.
fn f64_gradient(spec: &ModelSpec, params: &[f64], x: &[f64], label: usize) -> Vec<f64> {
    let shapes = spec.layers(x.len());
    let split = |offset: usize, s: &LayerShape| {
        let w = &params[offset..offset + s.outputs * s.inputs];
        let b = &params[offset + s.outputs * s.inputs..offset + s.num_params()];
        (w, b)
    };
    let dense = |w: &[f64], b: &[f64], v: &[f64], s: &LayerShape| -> Vec<f64> {
        (0..s.outputs)
            .map(|k| {
                (0..s.inputs)
                    .map(|j| w[k * s.inputs + j] * v[j])
                    .sum::<f64>()
                    + b[k]
            })
            .collect()
    };
    let residual = |z: &[f64]| -> Vec<f64> {
        if z.len() == 1 {
            return vec![1.0 / (1.0 + (-z[0]).exp()) - label as f64];
        }
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|z| (z - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter()
            .enumerate()
            .map(|(k, e)| e / s - f64::from(u8::from(k == label)))
            .collect()
    };
    let outer = |delta: &[f64], v: &[f64]| -> Vec<f64> {
        let mut g: Vec<f64> = delta
            .iter()
            .flat_map(|d| v.iter().map(move |v| d * v))
            .collect();
        g.extend_from_slice(delta);
        g
    };
    match shapes.as_slice() {
        [s] => {
            let (w, b) = split(0, s);
            let r = residual(&dense(w, b, x, s));
            outer(&r, x)
        }
        [s1, s2] => {
            let (w1, b1) = split(0, s1);
            let (w2, b2) = split(s1.num_params(), s2);
            let a = dense(w1, b1, x, s1);
            let h: Vec<f64> = a.iter().map(|a| a.max(0.0)).collect();
            let r = residual(&dense(w2, b2, &h, s2));
            let delta: Vec<f64> = (0..s1.outputs)
                .map(|m| {
                    let back: f64 = (0..s2.outputs).map(|k| w2[k * s2.inputs + m] * r[k]).sum();
                    if a[m] > 0.0 { back } else { 0.0 }
                })
                .collect();
            let mut g = outer(&delta, x);
            g.extend(outer(&r, &h));
            g
        }
        _ => unreachable!(),
    }
}

fn f64_clipped_sum(spec: &ModelSpec, params: &[f64], rows: &[(Vec<f64>, u8)]) -> Vec<f64> {
    let clip = dequantize(CLIP);
    let mut sum = vec![0.0; params.len()];
    for (x, y) in rows {
        let g = f64_gradient(spec, params, x, usize::from(*y));
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let factor = if norm > clip { clip / norm } else { 1.0 };
        for (s, g) in sum.iter_mut().zip(g) {
            *s += g * factor;
        }
    }
    sum
}

/// Small deterministic initial weights (xorshift), as a trainer would draw them.
fn initial_params(spec: &ModelSpec, d: usize, seed: u64) -> Vec<i64> {
    let mut state = seed;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2001) as f64 / 1000.0 - 1.0
    };
    let mut params = Vec::new();
    for s in spec.layers(d) {
        let scale = (2.0 / s.inputs as f64).sqrt();
        params.extend((0..s.outputs * s.inputs).map(|_| (next() * scale * ONE as f64) as i64));
        params.extend(std::iter::repeat_n(0, s.outputs));
    }
    params
}

fn compare(spec: ModelSpec, raw: RawDataset, steps: usize) {
    let stats = if raw.schema.classes == 10 {
        Standardization::fit_pooled(&raw).unwrap()
    } else {
        Standardization::fit(&raw).unwrap()
    };
    let q = stats.apply(&raw).unwrap();
    let d = q[0].len();
    let n = q.len();
    let rows = || {
        q.iter()
            .map(|r| r.as_slice())
            .zip(raw.labels.iter().copied())
    };

    // A model part-way through training: full-batch fixed-point steps with lr = 0.5.
    let mut params = initial_params(&spec, d, 0x5eed);
    for _ in 0..steps {
        let u = network_gradient_sum(&spec, &params, d, rows(), CLIP).unwrap();
        for (w, g) in params.iter_mut().zip(&u.values) {
            *w -= (*g as f64 * 0.5 / (ONE as f64 * n as f64)).round() as i64;
        }
    }

    let fixed: Vec<f64> = network_gradient_sum(&spec, &params, d, rows(), CLIP)
        .unwrap()
        .values
        .iter()
        .map(|&v| v as f64 / (ONE as f64).powi(2))
        .collect();
    let real_params: Vec<f64> = params.iter().map(|&w| dequantize(w)).collect();
    let real_rows: Vec<(Vec<f64>, u8)> = q
        .iter()
        .map(|r| r.iter().map(|&v| dequantize(v)).collect())
        .zip(raw.labels.iter().copied())
        .collect();
    let real = f64_clipped_sum(&spec, &real_params, &real_rows);

    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
    let diff: Vec<f64> = fixed.iter().zip(&real).map(|(a, b)| a - b).collect();
    let rel = dot(&diff, &diff).sqrt() / dot(&real, &real).sqrt();
    let cosine = dot(&fixed, &real) / (dot(&fixed, &fixed).sqrt() * dot(&real, &real).sqrt());
    eprintln!(
        "{spec}: fixed point vs f64 DP-SGD over {n} rows after {steps} steps, {} parameters: \
         relative L2 {rel:.2e}, cosine {cosine:.6}",
        params.len()
    );
    assert!(
        cosine >= 0.999,
        "the proven gradient points elsewhere: cosine {cosine}"
    );
    assert!(rel < 1e-2, "fixed point drifts from f64: relative L2 {rel}");
}

#[test]
fn softmax_matches_f64_dp_sgd_on_digits() {
    compare(ModelSpec::Softmax { classes: 10 }, digits(), 10);
}

#[test]
fn mlp_matches_f64_dp_sgd_on_digits() {
    compare(
        ModelSpec::Mlp {
            hidden: 32,
            outputs: 10,
        },
        digits(),
        10,
    );
}

#[test]
fn binary_mlp_matches_f64_dp_sgd_on_breast_cancer() {
    compare(
        ModelSpec::Mlp {
            hidden: 8,
            outputs: 1,
        },
        breast_cancer(),
        10,
    );
}
