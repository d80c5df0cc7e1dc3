//! The participant node (`zkfed-participant`): loads its CSV under the run's schema,
//! commits to it with durably persisted salts, enrols, and each round proves and submits its
//! clipped-gradient update. No row ever leaves the machine; only the update and the proof do.

pub mod config;
pub mod participation;

/// Shard `shard` of `of` (rows `i` with `i % of == shard`) of the bundled breast-cancer
/// data as CSV text with a header row, for demonstrations and tests.
pub fn bundled_shard_csv(shard: usize, of: usize) -> String {
    let raw = zkfed_air::data::breast_cancer();
    let mut out = raw.schema.features.join(",");
    out.push(',');
    out.push_str(&raw.schema.label);
    out.push('\n');
    for (i, (x, y)) in raw.features.iter().zip(&raw.labels).enumerate() {
        if i % of != shard {
            continue;
        }
        for v in x {
            out.push_str(&format!("{v},"));
        }
        out.push_str(&format!("{y}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_bundled_data_and_parse_back() {
        let raw = zkfed_air::data::breast_cancer();
        let mut total = 0;
        for shard in 0..3 {
            let text = bundled_shard_csv(shard, 3);
            let parsed = zkfed_air::data::read_csv(text.as_bytes(), &raw.schema).unwrap();
            total += parsed.features.len();
            assert_eq!(parsed.features[0], raw.features[shard]);
        }
        assert_eq!(total, 569);
    }
}
