//! 10^4 mutated inputs per decoder of untrusted bytes: none panics and none allocates
//! beyond its target's limit. `zkfed-fuzz` runs 10^6 (BENCH.md).

#[global_allocator]
static ALLOCATOR: zkfed_fuzz::alloc::PeakAlloc = zkfed_fuzz::alloc::PeakAlloc;

const RUNS: u64 = 10_000;

/// The allocation counts are process-wide: tests measure one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_decoder_survives_ten_thousand_mutated_inputs() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = std::env::temp_dir().join(format!("zkfed-fuzz-test-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut targets = zkfed_fuzz::targets::all(&scratch).unwrap();
    assert_eq!(targets.len(), 7);
    for target in &mut targets {
        // Every sample is valid: the mutations start from inputs the decoder accepts.
        for sample in target.samples.clone() {
            assert!(
                (target.run)(&sample),
                "{}: a sample is refused",
                target.name
            );
        }
        let report = zkfed_fuzz::fuzz(target, RUNS, 7).unwrap_or_else(|finding| {
            panic!(
                "{}: {}; input starts {:02x?}",
                finding.target,
                finding.what,
                &finding.input[..finding.input.len().min(64)]
            )
        });
        assert_eq!(report.runs, RUNS);
        assert!(
            report.max_peak_bytes > 0,
            "{}: the allocator measures",
            report.target
        );
        assert!(
            report.accepted < RUNS,
            "{}: mutations are refused sometimes",
            report.target
        );
    }
    std::fs::remove_dir_all(scratch).unwrap();
}

#[test]
fn the_allocation_limit_catches_an_inflating_decoder() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut inflating = zkfed_fuzz::Target {
        name: "inflating",
        samples: vec![vec![1, 2, 3]],
        tokens: vec![vec![0]],
        limit: |n| 16 * n + 1024,
        run: Box::new(|input| !std::hint::black_box(vec![0u8; 64 * input.len() + 4096]).is_empty()),
    };
    let finding = zkfed_fuzz::fuzz(&mut inflating, 10, 1).unwrap_err();
    assert!(finding.what.contains("allocated"), "{}", finding.what);
}
