//! What the transport asks of the application above it. The connection
//! task knows Engine.IO and Socket.IO; who may connect, what an event
//! means and what a queued item becomes on the wire are the
//! application's, behind these two traits.

use std::future::Future;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::queue::{OutboundQueue, QueueItem};

/// The `auth` of a namespace CONNECT.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// The JSON the client sent, if any.
    Given(Option<&'a Value>),
    /// Something that is not JSON.
    Unparsable,
}

/// Why a CONNECT is answered with CONNECT_ERROR: its `message` and the
/// `data.code` clients branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub message: &'static str,
    pub code: &'static str,
}

/// What a timer of the connection produced.
#[derive(Debug, Default)]
pub struct TimerOutcome {
    /// Frames to write now.
    pub frames: Vec<String>,
    /// End the connection after them, with this close reason.
    pub close: Option<&'static str>,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Ending {
    ClientClosed,
    PingTimeout,
    /// Its queue was cancelled: cut off elsewhere, or the gateway drains.
    Kicked,
    Transport(String),
    /// A write did not finish within `WRITE_TIMEOUT_MS`: the peer is not
    /// reading.
    WriteTimeout,
    /// What the socket was to be sent did not fit its byte budget.
    QueueFull,
    /// The application ended it (a timer said so), with this reason.
    Closed(&'static str),
}

/// Everything that may connect to the namespace.
pub trait Application: Send + Sync + 'static {
    /// What a successful CONNECT hands on to `open`.
    type Admission: Send;
    type Item: QueueItem;
    type Connection: Connection<Item = Self::Item>;

    /// Decides a CONNECT without waiting on anything: a refused client
    /// costs no I/O.
    fn admit(&self, auth: Auth<'_>) -> Result<Self::Admission, Refusal>;

    /// Sets up an admitted socket: its queue and whatever it subscribes
    /// to. A refusal here is still answered with CONNECT_ERROR.
    fn open(
        &self,
        admission: Self::Admission,
        sid: String,
    ) -> impl Future<Output = Result<(Self::Connection, mpsc::Receiver<Self::Item>), Refusal>> + Send;
}

/// One connected socket as the application sees it.
pub trait Connection: Send {
    type Item: QueueItem;

    /// The queue others push to; the transport counts its own writes here.
    fn queue(&self) -> &OutboundQueue<Self::Item>;

    /// Events written right after the CONNECT answer.
    fn greeting(&self) -> Vec<String>;

    /// One client event; the frames to write at once, in order.
    fn on_event(
        &mut self,
        name: &str,
        payload: Value,
        ack_id: Option<u64>,
    ) -> impl Future<Output = Vec<String>> + Send;

    /// What a queued item becomes on the wire (possibly nothing, possibly
    /// several frames). Frames are the socket's own text type: built from
    /// a String, one is written without being checked as UTF-8 again.
    fn render(&mut self, item: Self::Item) -> impl Future<Output = Vec<Utf8Bytes>> + Send;

    /// Whether an event was refused for its budget since the last call:
    /// the transport then reads the next frame a little later.
    fn take_over_budget(&mut self) -> bool;

    /// When `on_timer` is next due.
    fn next_timer(&mut self) -> Instant;

    /// Called once `next_timer` has passed.
    fn on_timer(&mut self, now: Instant) -> impl Future<Output = TimerOutcome> + Send;

    /// Called once when the connection ends, whatever ended it.
    fn close(self, ending: &Ending) -> impl Future<Output = ()> + Send;
}
