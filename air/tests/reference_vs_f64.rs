//! The fixed-point reference against an f64 (ndarray) DP-SGD implementation with the exact
//! logistic sigmoid on the bundled breast-cancer data: the clipped-gradient sum of a model
//! part-way through training. Prints the deviation and the cosine; asserts cosine ≥ 0.999.

use ndarray::{Array1, Array2, Axis};
use zkfed_air::Model;
use zkfed_air::data::{Standardization, breast_cancer};
use zkfed_air::fixed::{ONE, dequantize};
use zkfed_air::reference::clipped_gradient_sum;

fn f64_clipped_sum(
    x: &Array2<f64>,
    y: &Array1<f64>,
    w: &Array1<f64>,
    b: f64,
    clip: f64,
    sigmoid: impl Fn(f64) -> f64,
) -> Array1<f64> {
    let d = x.ncols();
    let mut sum = Array1::<f64>::zeros(d + 1);
    for (row, &label) in x.axis_iter(Axis(0)).zip(y) {
        let z = row.dot(w) + b;
        let r = sigmoid(z) - label;
        let mut g = Array1::<f64>::zeros(d + 1);
        g.slice_mut(ndarray::s![..d]).assign(&(&row * r));
        g[d] = r;
        let norm = g.dot(&g).sqrt();
        let factor = if norm > clip { clip / norm } else { 1.0 };
        sum += &(g * factor);
    }
    sum
}

#[test]
fn fixed_point_matches_f64_dp_sgd_on_breast_cancer() {
    let raw = breast_cancer();
    let stats = Standardization::fit(&raw).unwrap();
    let q = stats.apply(&raw).unwrap();
    let n = q.len();
    let d = q[0].len();
    let x = Array2::from_shape_fn((n, d), |(i, j)| dequantize(q[i][j]));
    let y = Array1::from_iter(raw.labels.iter().map(|&l| f64::from(l)));
    let clip = ONE; // C = 1.0

    // A model part-way through training: 15 full-batch fixed-point steps with lr = 0.5.
    let mut model = Model::zeros(zkfed_air::spec::ModelSpec::Logistic, d);
    for _ in 0..15 {
        let rows = q
            .iter()
            .map(|r| r.as_slice())
            .zip(raw.labels.iter().copied());
        let u = clipped_gradient_sum(&model, rows, clip).unwrap();
        // g is a sum at scale 2^32; the step is lr · mean at scale 2^16.
        let step = |g: i64| (g as f64 * 0.5 / (ONE as f64 * n as f64)).round() as i64;
        for (w, g) in model.params.iter_mut().zip(&u.values) {
            *w -= step(*g);
        }
    }

    let rows = q
        .iter()
        .map(|r| r.as_slice())
        .zip(raw.labels.iter().copied());
    let fixed = clipped_gradient_sum(&model, rows, clip).unwrap();
    let fixed = Array1::from_iter(
        fixed
            .values
            .iter()
            .map(|&v| v as f64 / (ONE as f64).powi(2)),
    );

    let w = Array1::from_iter(model.weights().iter().map(|&v| dequantize(v)));
    let b = dequantize(model.bias());
    let logistic = f64_clipped_sum(&x, &y, &w, b, 1.0, |z| 1.0 / (1.0 + (-z).exp()));
    let rel =
        (&fixed - &logistic).mapv(|v| v * v).sum().sqrt() / logistic.mapv(|v| v * v).sum().sqrt();
    let max_abs = (&fixed - &logistic)
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let cosine = fixed.dot(&logistic) / (fixed.dot(&fixed).sqrt() * logistic.dot(&logistic).sqrt());
    eprintln!(
        "fixed point vs f64 logistic DP-SGD over {n} examples: relative L2 {rel:.2e}, \
         max |Δ| {max_abs:.2e}, cosine {cosine:.6}"
    );
    assert!(
        cosine >= 0.999,
        "the proven gradient points elsewhere: cosine {cosine}"
    );
    assert!(rel < 1e-2, "fixed point drifts from f64: relative L2 {rel}");
}
