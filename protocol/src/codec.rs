//! The wire codec: CBOR, like libp2p's own, with every read bounded twice over.
//!
//! A stream may carry at most [`MAX_REQUEST_BYTES`] (or [`MAX_RESPONSE_BYTES`]), and the
//! bytes a node holds for messages still in flight are capped per connection
//! ([`INBOUND_BYTES_PER_CONNECTION`]) and overall ([`INBOUND_BYTES_OVERALL`]). A byte read
//! stays counted until its stream is done, that is until the answer has been written (a
//! submission stays counted while it is verified). A read that would go over a cap fails
//! at once: nothing waits on a budget, so no two streams can deadlock over one. Decoding
//! itself is bounded by the message types: every vector an untrusted peer can size is
//! capped at decode time (ARCHITECTURE.md, "Bounded memory").
//!
//! With the coordinator's limit of connections per peer, one peer can hold at most
//! `2 × INBOUND_BYTES_PER_CONNECTION` of the coordinator's memory in messages.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::prelude::*;
use libp2p::StreamProtocol;
use thiserror::Error;
use zkfed_air::fixed::{MAX_WIRE_PARAMS, MAX_WIRE_PARAMS_CBOR_BYTES};

use crate::{Request, Response};

/// Largest request a node reads: a submission's largest proof
/// ([`zkfed_air::proof::MAX_PROOF_BYTES`]), its largest update
/// ([`MAX_WIRE_PARAMS_CBOR_BYTES`]) and 64 KiB of framing.
pub const MAX_REQUEST_BYTES: u64 =
    (zkfed_air::proof::MAX_PROOF_BYTES + MAX_WIRE_PARAMS_CBOR_BYTES) as u64 + (64 << 10);
/// Largest response a node reads: a round's model of up to `MAX_WIRE_PARAMS` entries at
/// their widest, and 1 MiB for the rest (run parameters with a schema and standardization
/// of up to `MAX_FEATURES` features).
pub const MAX_RESPONSE_BYTES: u64 = MAX_WIRE_PARAMS_CBOR_BYTES as u64 + (1 << 20);
/// Most bytes a decoded message's parameter vector holds beyond its encoding: each entry is
/// an 8-byte `i64`, however few bytes it took on the wire (one, for a small integer), so
/// 128 KiB of small integers decode to 1 MiB. Charged to the budgets once decoded.
pub const MAX_DECODED_PARAMS_BYTES: u64 = 8 * MAX_WIRE_PARAMS as u64;
/// Bytes of messages in flight one connection may hold: two whole submissions, each read
/// and decoded (an honest participant may resend one while the first is still being
/// verified), and small requests.
pub const INBOUND_BYTES_PER_CONNECTION: u64 =
    2 * (MAX_REQUEST_BYTES + MAX_DECODED_PARAMS_BYTES) + (64 << 10);
/// Bytes of messages in flight all connections of a node together may hold.
pub const INBOUND_BYTES_OVERALL: u64 = 256 << 20;
/// Bytes read from a stream at a time (and reserved before they are read).
const CHUNK: usize = 64 << 10;

/// Why a message could not be read or decoded. Reported to libp2p as an [`io::Error`]
/// (its `InboundFailure`/`OutboundFailure`); the message text names no message content.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The stream carried more than a message may.
    #[error("message longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: u64,
    },
    /// Reading on would take the connection's or the node's in-flight bytes over its cap.
    #[error("{scope} in-flight message budget of {limit} bytes is used up")]
    BudgetExhausted {
        /// `connection` or `overall`.
        scope: &'static str,
        /// The cap.
        limit: u64,
    },
    /// The bytes are not a message of the protocol (or a vector in it is over its cap).
    #[error("undecodable message: {0}")]
    Decode(String),
}

impl From<WireError> for io::Error {
    fn from(e: WireError) -> Self {
        let kind = match e {
            WireError::Decode(_) => io::ErrorKind::InvalidData,
            WireError::TooLong { .. } | WireError::BudgetExhausted { .. } => {
                io::ErrorKind::OutOfMemory
            }
        };
        io::Error::new(kind, e)
    }
}

/// A cap on bytes held at once, shared by the streams it covers.
#[derive(Debug)]
struct Budget {
    scope: &'static str,
    limit: u64,
    in_use: AtomicU64,
}

impl Budget {
    fn new(scope: &'static str, limit: u64) -> Arc<Self> {
        Arc::new(Self {
            scope,
            limit,
            in_use: AtomicU64::new(0),
        })
    }

    fn try_take(&self, n: u64) -> Result<(), WireError> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .map(|_| ())
            .map_err(|_| WireError::BudgetExhausted {
                scope: self.scope,
                limit: self.limit,
            })
    }

    fn give_back(&self, n: u64) {
        self.in_use.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The budgets a codec value charges.
///
/// libp2p's request-response behaviour clones its codec once per connection (into the
/// connection's handler), and the handler clones that once per stream. So a clone of the
/// behaviour's template starts a fresh connection budget, and a clone of a connection's
/// codec shares it. `tests::clones_share_the_connection_budget_of_their_origin` pins this,
/// and the protocol's `bounded_reads` test checks it on real connections.
#[derive(Debug, Clone)]
enum Scope {
    /// The behaviour's own codec.
    Template,
    /// A connection's codec or one of its streams'.
    Connection(Arc<Budget>),
}

/// The `/zkfed` codec: CBOR messages read under the caps above.
#[derive(Debug)]
pub struct ZkfedCodec {
    overall: Arc<Budget>,
    /// The cap a new connection's budget gets.
    per_connection: u64,
    scope: Scope,
    /// Bytes this value (one stream) holds, returned when it is dropped.
    held: u64,
}

impl ZkfedCodec {
    /// A codec template for one behaviour, with its own overall budget.
    pub fn new() -> Self {
        Self::with_limits(INBOUND_BYTES_PER_CONNECTION, INBOUND_BYTES_OVERALL)
    }

    fn with_limits(per_connection: u64, overall: u64) -> Self {
        Self {
            overall: Budget::new("overall", overall),
            per_connection,
            scope: Scope::Template,
            held: 0,
        }
    }

    fn connection(&self) -> Option<&Arc<Budget>> {
        match &self.scope {
            Scope::Template => None,
            Scope::Connection(budget) => Some(budget),
        }
    }

    /// Reserves `n` more bytes for this stream, on its connection and overall.
    fn take(&mut self, n: u64) -> Result<(), WireError> {
        if let Some(connection) = self.connection() {
            connection.try_take(n)?;
        }
        if let Err(e) = self.overall.try_take(n) {
            if let Some(connection) = self.connection() {
                connection.give_back(n);
            }
            return Err(e);
        }
        self.held += n;
        Ok(())
    }

    /// Reads the stream to its end, at most `max` bytes, reserving them as they come.
    async fn read_bounded<T: AsyncRead + Unpin + Send>(
        &mut self,
        io: &mut T,
        max: u64,
    ) -> Result<Vec<u8>, io::Error> {
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Ok(bytes);
            }
            if bytes.len() as u64 + n as u64 > max {
                return Err(WireError::TooLong { max }.into());
            }
            let needed = bytes.len() + n;
            if needed > bytes.capacity() {
                // The budget counts the buffer's capacity, which doubles (never past the
                // message limit) so a message is copied a logarithmic number of times.
                let grown = (2 * bytes.capacity()).max(needed).min(max as usize);
                self.take((grown - bytes.capacity()) as u64)?;
                bytes.reserve_exact(grown - bytes.len());
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Default for ZkfedCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for ZkfedCodec {
    fn clone(&self) -> Self {
        let scope = match &self.scope {
            Scope::Template => Scope::Connection(Budget::new("connection", self.per_connection)),
            Scope::Connection(budget) => Scope::Connection(budget.clone()),
        };
        Self {
            overall: self.overall.clone(),
            per_connection: self.per_connection,
            scope,
            held: 0,
        }
    }
}

impl Drop for ZkfedCodec {
    fn drop(&mut self) {
        if let Some(connection) = self.connection() {
            connection.give_back(self.held);
        }
        self.overall.give_back(self.held);
    }
}

/// Decodes a request (the bounds of [`Request`]'s types apply).
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| WireError::Decode(e.to_string()))
}

/// Decodes a response (the bounds of [`Response`]'s types apply).
pub fn decode_response(bytes: &[u8]) -> Result<Response, WireError> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| WireError::Decode(e.to_string()))
}

/// What a decoded request's parameter vector holds (its capacity: the decoder grows it by
/// doubling), held for as long as its stream's bytes are: the read buffer's reservation
/// counts its encoding, not its 8-byte entries. The decoder allocates it before it is
/// charged, so each stream being decoded (one per runtime worker at a time) holds up to
/// [`MAX_DECODED_PARAMS_BYTES`] uncounted for that moment.
fn decoded_request_bytes(request: &Request) -> u64 {
    match request {
        Request::Submit(submission) => 8 * submission.update.values.capacity() as u64,
        Request::Parameters | Request::Enrol(_) | Request::CurrentRound => 0,
    }
}

/// [`decoded_request_bytes`] of a response: the model a round or the run's end carries.
fn decoded_response_bytes(response: &Response) -> u64 {
    match response {
        Response::Round(announcement) => 8 * announcement.model.params.capacity() as u64,
        Response::Finished { model, .. } => 8 * model.params.capacity() as u64,
        Response::Parameters(_)
        | Response::Enrolled
        | Response::Waiting
        | Response::Verdict(_)
        | Response::Refused(_) => 0,
    }
}

/// Encodes a request as it goes on the wire.
pub fn encode_request(request: &Request) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), request).expect("encoding into a Vec cannot fail")
}

/// Encodes a response as it goes on the wire.
pub fn encode_response(response: &Response) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), response).expect("encoding into a Vec cannot fail")
}

impl libp2p::request_response::Codec for ZkfedCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = self.read_bounded(io, MAX_REQUEST_BYTES).await?;
        let request = decode_request(&bytes)?;
        self.take(decoded_request_bytes(&request))?;
        Ok(request)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = self.read_bounded(io, MAX_RESPONSE_BYTES).await?;
        let response = decode_response(&bytes)?;
        self.take(decoded_response_bytes(&response))?;
        Ok(response)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_request(&request)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_response(&response)).await
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;

    use super::*;

    fn read(codec: &mut ZkfedCodec, len: usize, max: u64) -> Result<usize, io::Error> {
        let mut stream = Cursor::new(vec![0u8; len]);
        block_on(codec.read_bounded(&mut stream, max)).map(|b| b.len())
    }

    fn exhausted(result: Result<usize, io::Error>, scope: &str) -> bool {
        result.is_err_and(|e| {
            matches!(
                e.get_ref().and_then(|e| e.downcast_ref::<WireError>()),
                Some(WireError::BudgetExhausted { scope: s, .. }) if *s == scope
            )
        })
    }

    #[test]
    fn clones_share_the_connection_budget_of_their_origin() {
        let template = ZkfedCodec::with_limits(1000, 1 << 20);
        let connection_a = template.clone();
        let mut stream_a1 = connection_a.clone();
        let mut stream_a2 = connection_a.clone();
        let mut stream_b = template.clone().clone();
        assert_eq!(read(&mut stream_a1, 700, 1 << 20).unwrap(), 700);
        assert!(exhausted(read(&mut stream_a2, 400, 1 << 20), "connection"));
        assert_eq!(
            read(&mut stream_b, 700, 1 << 20).unwrap(),
            700,
            "another connection has its own"
        );
        drop(stream_a1);
        let mut stream_a3 = connection_a.clone();
        assert_eq!(
            read(&mut stream_a3, 900, 1 << 20).unwrap(),
            900,
            "a finished stream gives its bytes back"
        );
    }

    #[test]
    fn the_overall_budget_caps_all_connections_together() {
        let template = ZkfedCodec::with_limits(1000, 1500);
        let mut a = template.clone();
        let mut b = template.clone();
        assert_eq!(read(&mut a, 900, 1 << 20).unwrap(), 900);
        assert!(exhausted(read(&mut b, 900, 1 << 20), "overall"));
        drop(a);
        assert_eq!(read(&mut b, 900, 1 << 20).unwrap(), 900);
    }

    #[test]
    fn a_failed_overall_reservation_gives_the_connection_bytes_back() {
        let template = ZkfedCodec::with_limits(1000, 500);
        let connection = template.clone();
        let mut a = connection.clone();
        assert!(exhausted(read(&mut a, 600, 1 << 20), "overall"));
        drop(a);
        let mut b = connection.clone();
        assert_eq!(read(&mut b, 500, 1 << 20).unwrap(), 500);
    }

    /// An update of small integers is short on the wire and eight bytes an entry once
    /// decoded: the decoded entries are charged too, so a connection's budget bounds what
    /// its streams hold, not only what they read.
    #[test]
    fn decoded_updates_are_charged_to_the_budget() {
        use libp2p::request_response::Codec;

        let submission = crate::Request::Submit(crate::Submission {
            round: 1,
            attempt: 1,
            update: zkfed_air::ClippedGradientSum::zero(100_000),
            proof: vec![1, 2, 3],
        });
        let wire = encode_request(&submission);
        assert!(wire.len() < 110_000, "{}", wire.len());
        let read = |per_connection: u64| {
            let mut codec = ZkfedCodec::with_limits(per_connection, 1 << 30).clone();
            let mut stream = Cursor::new(wire.clone());
            block_on(codec.read_request(&crate::PROTOCOL, &mut stream)).map(|_| codec.held)
        };
        let error = read(600_000).unwrap_err();
        assert!(
            matches!(
                error.get_ref().and_then(|e| e.downcast_ref::<WireError>()),
                Some(WireError::BudgetExhausted {
                    scope: "connection",
                    ..
                })
            ),
            "{error}"
        );
        let held = read(2 << 20).expect("within a larger budget");
        // The decoder grows the vector by doubling from 1024 entries: 131,072 of them.
        assert!(held >= 8 * 131_072 + wire.len() as u64, "{held}");
    }

    #[test]
    fn a_stream_longer_than_a_message_may_be_is_refused() {
        let mut codec = ZkfedCodec::new().clone();
        let error = read(&mut codec, 2000, 1000).unwrap_err();
        assert_eq!(
            error.get_ref().and_then(|e| e.downcast_ref::<WireError>()),
            Some(&WireError::TooLong { max: 1000 })
        );
    }
}

#[cfg(test)]
mod decoding {
    use super::*;

    /// CBOR: array header with a 4-byte length, then `len` one-byte integers (zero).
    fn cbor_array_of_small_ints(len: u32) -> Vec<u8> {
        let mut bytes = vec![0x9a];
        bytes.extend(len.to_be_bytes());
        bytes.resize(bytes.len() + len as usize, 0x00);
        bytes
    }

    /// The largest messages an honest node sends fit the limits the other side reads
    /// under: a submission of the largest proof with an update of `MAX_WIRE_PARAMS` entries
    /// at their widest, and a round announcing a model of as many.
    #[test]
    fn the_largest_honest_messages_fit_their_limits() {
        use zkfed_air::fixed::MAX_WIRE_PARAMS;
        use zkfed_air::spec::ModelSpec;

        let widest = vec![i64::MIN; MAX_WIRE_PARAMS];
        let submission = crate::Submission {
            round: u64::MAX,
            attempt: u32::MAX,
            update: zkfed_air::ClippedGradientSum {
                values: widest.clone(),
                examples: u64::MAX,
            },
            proof: vec![0xA5; zkfed_air::proof::MAX_PROOF_BYTES],
        };
        let request = encode_request(&crate::Request::Submit(submission));
        assert!(
            request.len() as u64 <= MAX_REQUEST_BYTES,
            "{}",
            request.len()
        );
        assert!(matches!(
            decode_request(&request),
            Ok(crate::Request::Submit(_))
        ));

        // A 1024 → 127 → 10 MLP: 131,455 parameters would be over; 1024 → 126 → 10 is
        // 130,420, the largest hidden width under the bound at 1024 features.
        let spec = ModelSpec::Mlp {
            hidden: 126,
            outputs: 10,
        };
        let model = zkfed_air::Model {
            spec,
            num_features: 1024,
            params: widest[..spec.num_params(1024)].to_vec(),
        };
        let announcement = crate::RoundAnnouncement {
            round: u64::MAX,
            attempt: u32::MAX,
            model,
            params: zkfed_air::RoundParams {
                clip_norm: i64::MIN,
                batch_size: usize::MAX,
            },
            seed: [0xFF; 32],
            opened_at_ms: u64::MAX,
        };
        let response = encode_response(&crate::Response::Round(announcement));
        assert!(
            response.len() as u64 <= MAX_RESPONSE_BYTES,
            "{}",
            response.len()
        );
        assert!(matches!(
            decode_response(&response),
            Ok(crate::Response::Round(_))
        ));
        // One entry more than the bound is refused while decoding.
        let over = encode_request(&crate::Request::Submit(crate::Submission {
            round: 1,
            attempt: 1,
            update: zkfed_air::ClippedGradientSum {
                values: vec![1; MAX_WIRE_PARAMS + 1],
                examples: 1,
            },
            proof: vec![1],
        }));
        assert!(matches!(decode_request(&over), Err(WireError::Decode(_))));
    }

    #[test]
    fn an_update_longer_than_any_model_is_refused_while_decoding() {
        let submission = crate::Submission {
            round: 1,
            attempt: 1,
            update: zkfed_air::ClippedGradientSum::zero(2),
            proof: vec![1, 2, 3],
        };
        let honest = encode_request(&crate::Request::Submit(submission));
        assert!(matches!(
            decode_request(&honest),
            Ok(crate::Request::Submit(_))
        ));
        // Splice a 2-million-entry weights array in place of the two-entry one.
        let two_zeros = [0x82, 0x00, 0x00];
        let at = honest
            .windows(3)
            .position(|w| w == two_zeros)
            .expect("the weights array");
        let mut hostile = honest[..at].to_vec();
        hostile.extend(cbor_array_of_small_ints(2_000_000));
        hostile.extend(&honest[at + 3..]);
        let error = decode_request(&hostile).unwrap_err();
        assert!(matches!(error, WireError::Decode(_)), "{error}");
    }
}
