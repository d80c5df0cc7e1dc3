//! A node's events as JSON lines, for an observer in another process.

use std::io::Write;
use std::path::Path;

/// A node's events written as JSON lines, one per event, flushed as they come, so an
/// observer in another process (the simulation) can follow the node's run.
pub struct EventLog<E> {
    tx: tokio::sync::mpsc::UnboundedSender<E>,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl<E: serde::Serialize + Send + 'static> EventLog<E> {
    /// Creates (or truncates) the file at `path`; needs a tokio runtime.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<E>();
        let writer = tokio::task::spawn_blocking(move || {
            while let Some(event) = rx.blocking_recv() {
                serde_json::to_writer(&mut file, &event).map_err(std::io::Error::other)?;
                file.write_all(b"\n")?;
                file.flush()?;
            }
            Ok(())
        });
        Ok(EventLog { tx, writer })
    }

    /// Where the node sends its events.
    pub fn sender(&self) -> tokio::sync::mpsc::UnboundedSender<E> {
        self.tx.clone()
    }

    /// Waits until every event sent so far is written (once the node has dropped its senders).
    pub async fn close(self) -> std::io::Result<()> {
        drop(self.tx);
        self.writer.await.map_err(std::io::Error::other)?
    }

    /// Runs a node with its events logged to `path`, if given: `node` receives the sender
    /// to install, and every event is written before this returns, whatever the run gave.
    pub async fn around<T, F: Future<Output = T>>(
        path: Option<&Path>,
        node: impl FnOnce(Option<tokio::sync::mpsc::UnboundedSender<E>>) -> F,
    ) -> std::io::Result<T> {
        let log = path.map(Self::create).transpose()?;
        let ran = node(log.as_ref().map(Self::sender)).await;
        if let Some(log) = log {
            log.close().await?;
        }
        Ok(ran)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_log_writes_one_json_line_per_event_and_finishes_when_senders_drop() {
        let path = std::env::temp_dir().join(format!("zkfed-events-{}", std::process::id()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ran = runtime.block_on(EventLog::around(Some(&path), |sender| async move {
            let node = sender.expect("a log was asked for");
            node.send((1u64, "one".to_string())).unwrap();
            node.send((2, "two".into())).unwrap();
            "the node's result"
        }));
        assert_eq!(ran.unwrap(), "the node's result");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "[1,\"one\"]\n[2,\"two\"]\n");
        assert!(EventLog::<u64>::create(&path.join("no-such-dir/x")).is_err());
        let unlogged = runtime.block_on(EventLog::<u64>::around(None, |sender| async move {
            sender.is_none()
        }));
        assert!(unlogged.unwrap(), "no path, no sender");
        std::fs::remove_file(path).unwrap();
    }
}
