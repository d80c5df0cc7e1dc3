//! Pieces the end-to-end tests share.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A release binary of the workspace, next to the test's own executable.
pub fn bin(name: &str) -> PathBuf {
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("test path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --release --workspace`",
        path.display()
    );
    path
}

/// Hospital `name`'s configuration: shard `shard` of `of` of the bundled data in
/// `dir/name.csv`, state in `dir/name`, batches of at least 4, defaults otherwise.
pub fn participant(
    dir: &Path,
    name: &str,
    (shard, of): (usize, usize),
    coordinator: &str,
) -> zkfed_participant::config::Config {
    let csv = dir.join(format!("{name}.csv"));
    std::fs::write(&csv, zkfed_participant::bundled_shard_csv(shard, of)).unwrap();
    let raw = format!(
        "coordinator = {coordinator:?}\ndataset = {:?}\nstate_dir = {:?}\nmin_batch_size = 4\n",
        csv,
        dir.join(name)
    );
    toml::from_str::<zkfed_participant::config::RawConfig>(&raw)
        .unwrap()
        .resolve()
        .unwrap()
}
