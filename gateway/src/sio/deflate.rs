//! permessage-deflate (RFC 7692) as a byte stream beneath tungstenite.
//! tungstenite (and so axum's `ws`) implements no extensions and refuses
//! every frame with RSV1 set, and no maintained crate adds the extension to
//! it, so the gateway rewrites frames one layer down: [`DeflateStream`]
//! wraps the upgraded connection and tungstenite only ever sees plain
//! frames.
//!
//! - Reading: a message whose first frame has RSV1 set is gathered across
//!   its continuation frames (control frames in between pass on at once),
//!   inflated with the frame limit as ceiling, and handed up as one masked
//!   frame with RSV1 clear. Every other frame passes untouched, so
//!   tungstenite still enforces the rest of RFC 6455 and its size limits.
//! - Writing: a whole, unfragmented text or binary frame tungstenite writes
//!   with at least `min_bytes` of payload is deflated and goes out with
//!   RSV1 set when that is smaller; every other frame goes out as written.
//!
//! The connection keeps no deflate state between messages (see
//! `deflate_codec`), and the buffers here exist only while a compressed
//! message is passing: an idle connection costs what it did without.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::deflate_codec::{apply_mask, deflate_into, inflate};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV_ALL: u8 = 0x70;
const MASKED: u8 = 0x80;
const OPCODE: u8 = 0x0f;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
/// The longest frame header: 2 bytes, an 8-byte length and a mask key.
const MAX_HEADER: usize = 14;

/// The terms of a negotiated extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// Outgoing payloads smaller than this go out uncompressed.
    pub min_bytes: usize,
    /// The most an incoming message may inflate to (the frame limit).
    pub max_payload: usize,
}

/// A stream of WebSocket frames (server side) with permessage-deflate
/// applied in both directions, or untouched when `deflate` is None.
pub struct DeflateStream<S> {
    inner: S,
    deflate: Option<Deflate>,
    read: ReadSide,
    write: WriteSide,
}

impl<S> DeflateStream<S> {
    pub fn new(inner: S, deflate: Option<Deflate>) -> Self {
        DeflateStream {
            inner,
            deflate,
            read: ReadSide::default(),
            write: WriteSide::default(),
        }
    }
}

/// The fields of a frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    first: u8,
    len: u64,
    mask: Option<[u8; 4]>,
    /// Bytes the header itself takes.
    size: usize,
}

impl Header {
    /// Parses a header from the start of `bytes`; None when incomplete.
    fn parse(bytes: &[u8]) -> Option<Header> {
        let (&first, rest) = bytes.split_first()?;
        let &second = rest.first()?;
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = second & MASKED != 0;
        let size = 2 + extended + if masked { 4 } else { 0 };
        if bytes.len() < size {
            return None;
        }
        let len = match extended {
            0 => u64::from(second & 0x7f),
            2 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            _ => {
                let mut raw = [0; 8];
                raw.copy_from_slice(&bytes[2..10]);
                u64::from_be_bytes(raw)
            }
        };
        let mask = masked.then(|| {
            let at = 2 + extended;
            [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
        });
        Some(Header {
            first,
            len,
            mask,
            size,
        })
    }

    /// The header's length in bytes, once its first two bytes are known.
    fn size_from(first_two: [u8; 2]) -> usize {
        let extended = match first_two[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + extended + if first_two[1] & MASKED != 0 { 4 } else { 0 }
    }

    fn opcode(&self) -> u8 {
        self.first & OPCODE
    }

    fn fin(&self) -> bool {
        self.first & FIN != 0
    }

    /// The whole frame's length, header included.
    fn frame_len(&self) -> u64 {
        self.len.saturating_add(self.size as u64)
    }
}

/// Writes a frame header into `out`.
fn write_header(out: &mut Vec<u8>, first: u8, len: usize, mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { MASKED } else { 0 };
    out.push(first);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// A compressed message being gathered from its frames.
struct Gathering {
    opcode: u8,
    mask: [u8; 4],
    payload: Vec<u8>,
}

#[derive(Default)]
struct ReadSide {
    /// The header being read, at a frame boundary.
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// The current frame's payload bytes still to come.
    payload_left: u64,
    /// How far into the current frame's payload (for unmasking).
    payload_at: usize,
    /// The current frame's mask key and whether it is being taken out of
    /// the stream (a frame of a compressed message) and its FIN bit.
    mask: [u8; 4],
    taking: bool,
    fin: bool,
    /// Whether the current position is inside a frame's payload.
    in_payload: bool,
    message: Option<Gathering>,
    /// A rebuilt frame to hand up, then bytes read but not yet looked at.
    ready: Vec<u8>,
    ready_at: usize,
    unread: Vec<u8>,
}

impl ReadSide {
    /// Looks at `bytes` fresh off the wire, in place: what passes stays
    /// (moved down over what was taken out), and the count kept is
    /// returned. Stops after a completed compressed message, leaving the
    /// rest in `unread`, so that the rebuilt frame is read before it.
    fn process(&mut self, bytes: &mut [u8], deflate: &Deflate) -> io::Result<usize> {
        let (mut read, mut kept) = (0, 0);
        while read < bytes.len() {
            if !self.in_payload {
                let byte = bytes[read];
                if self.header_len == 0 {
                    self.taking = self.starts_taken(byte)?;
                }
                self.header[self.header_len] = byte;
                self.header_len += 1;
                read += 1;
                if !self.taking {
                    bytes[kept] = byte;
                    kept += 1;
                }
                if self.header_len < 2
                    || self.header_len < Header::size_from([self.header[0], self.header[1]])
                {
                    continue;
                }
                let Some(header) = Header::parse(&self.header[..self.header_len]) else {
                    continue;
                };
                self.header_len = 0;
                self.begin_frame(header, deflate)?;
            } else {
                let left = usize::try_from(self.payload_left).unwrap_or(usize::MAX);
                let count = left.min(bytes.len() - read);
                let chunk = read..read + count;
                if self.taking {
                    if let Some(message) = self.message.as_mut() {
                        let from = message.payload.len();
                        message.payload.extend_from_slice(&bytes[chunk]);
                        apply_mask(&mut message.payload[from..], self.mask, self.payload_at);
                    }
                } else {
                    bytes.copy_within(chunk, kept);
                    kept += count;
                }
                read += count;
                self.payload_at += count;
                self.payload_left -= count as u64;
            }
            if self.in_payload && self.payload_left == 0 {
                self.in_payload = false;
                if self.taking && self.fin {
                    self.finish_message(deflate)?;
                    // Ahead of anything still unread from before.
                    self.unread.splice(0..0, bytes[read..].iter().copied());
                    return Ok(kept);
                }
            }
        }
        Ok(kept)
    }

    /// Decides from a frame's first byte whether it belongs to a
    /// compressed message.
    fn starts_taken(&mut self, first: u8) -> io::Result<bool> {
        let opcode = first & OPCODE;
        let control = opcode & 0x8 != 0;
        if self.message.is_some() {
            return match opcode {
                CONTINUATION if first & RSV1 != 0 => {
                    Err(invalid("RSV1 set on a continuation frame"))
                }
                CONTINUATION => Ok(true),
                _ if control => Ok(false),
                _ => Err(invalid(
                    "a new message inside a fragmented compressed message",
                )),
            };
        }
        if first & RSV1 != 0 && matches!(opcode, TEXT | BINARY) {
            self.message = Some(Gathering {
                opcode,
                mask: [0; 4],
                payload: Vec::new(),
            });
            return Ok(true);
        }
        // Anything else, RSV1 on a control frame included, is tungstenite's
        // to accept or refuse.
        Ok(false)
    }

    fn begin_frame(&mut self, header: Header, deflate: &Deflate) -> io::Result<()> {
        self.payload_left = header.len;
        self.payload_at = 0;
        self.fin = header.fin();
        self.in_payload = true;
        if self.taking {
            let Some(mask) = header.mask else {
                return Err(invalid("unmasked client frame"));
            };
            self.mask = mask;
            let message = self
                .message
                .as_mut()
                .ok_or_else(|| invalid("frame outside a message"))?;
            if message.payload.is_empty() && header.opcode() != CONTINUATION {
                message.mask = mask;
            }
            // The compressed form may be a little larger than what it
            // inflates to (stored blocks), never much.
            let most = deflate.max_payload + deflate.max_payload / 64 + 64;
            let total = (message.payload.len() as u64).saturating_add(header.len);
            if total > most as u64 {
                return Err(invalid(format!(
                    "compressed message over {} bytes",
                    deflate.max_payload
                )));
            }
            message.payload.reserve_exact(header.len as usize);
        }
        // A frame with no payload ends here.
        Ok(())
    }

    /// Inflates a gathered message into a plain frame in `ready`.
    fn finish_message(&mut self, deflate: &Deflate) -> io::Result<()> {
        let Some(message) = self.message.take() else {
            return Ok(());
        };
        let mut payload = inflate(&message.payload, deflate.max_payload)
            .map_err(|error| invalid(error.to_string()))?;
        drop(message.payload);
        apply_mask(&mut payload, message.mask, 0);
        let mut frame = Vec::with_capacity(payload.len() + MAX_HEADER);
        write_header(
            &mut frame,
            FIN | message.opcode,
            payload.len(),
            Some(message.mask),
        );
        frame.extend_from_slice(&payload);
        self.ready = frame;
        self.ready_at = 0;
        Ok(())
    }
}

#[derive(Default)]
struct WriteSide {
    /// Bytes of the stream already known to pass as written (the rest of
    /// a frame whose header has been seen).
    passing: u64,
    /// A frame gathered whole before it can be judged or compressed.
    gathered: Vec<u8>,
    /// Rewritten bytes not yet on the wire.
    wire: Vec<u8>,
    wire_at: usize,
}

impl WriteSide {
    /// Whether a frame tungstenite wrote is one to compress.
    fn compressible(header: &Header, deflate: &Deflate) -> bool {
        header.fin()
            && header.first & RSV_ALL == 0
            && matches!(header.opcode(), TEXT | BINARY)
            && header.mask.is_none()
            && header.len >= deflate.min_bytes as u64
    }

    /// Puts the compressed form of a whole frame in `wire`; false, and
    /// nothing put, when compressing it gains nothing.
    fn rewrite(&mut self, frame: &[u8], header: &Header) -> bool {
        let payload = &frame[header.size..];
        // The header is at most 10 bytes (unmasked) and written in front
        // of the compressed payload once its length is known.
        let mut out = vec![0; 10];
        if deflate_into(payload, &mut out) {
            let compressed = out.len() - 10;
            let mut head = Vec::with_capacity(10);
            write_header(&mut head, FIN | RSV1 | header.opcode(), compressed, None);
            let start = 10 - head.len();
            out[start..10].copy_from_slice(&head);
            self.wire = out;
            self.wire_at = start;
            true
        } else {
            false
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> DeflateStream<S> {
    /// Writes whatever rewritten bytes wait, before anything newer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.write.wire_at < self.write.wire.len() {
            let pending = &self.write.wire[self.write.wire_at..];
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.write.wire_at += written;
        }
        if !self.write.wire.is_empty() {
            self.write.wire = Vec::new();
            self.write.wire_at = 0;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_write_deflating(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        deflate: Deflate,
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        let write = &mut self.write;
        if !write.gathered.is_empty() {
            // Complete the gathered frame, then judge it.
            let have = write.gathered.len();
            let want = match Header::parse(&write.gathered) {
                Some(header) => usize::try_from(header.frame_len()).unwrap_or(usize::MAX),
                None if have >= 2 => Header::size_from([write.gathered[0], write.gathered[1]]),
                None => 2,
            };
            let take = (want - have).min(buf.len());
            write.gathered.extend_from_slice(&buf[..take]);
            if let Some(header) = Header::parse(&write.gathered) {
                let whole = usize::try_from(header.frame_len()).unwrap_or(usize::MAX);
                if write.gathered.len() == whole {
                    let frame = std::mem::take(&mut write.gathered);
                    if !WriteSide::compressible(&header, &deflate)
                        || !write.rewrite(&frame, &header)
                    {
                        write.wire = frame;
                        write.wire_at = 0;
                    }
                } else if !WriteSide::compressible(&header, &deflate) {
                    // Only compressible frames need to be whole: let the
                    // rest of this one pass as it comes.
                    let frame = std::mem::take(&mut write.gathered);
                    write.passing = header.frame_len() - frame.len() as u64;
                    write.wire = frame;
                    write.wire_at = 0;
                }
            }
            return Poll::Ready(Ok(take));
        }
        // Find how much of `buf` passes as it is.
        let mut end = write.passing;
        let mut stop = None;
        while end < buf.len() as u64 {
            let at = end as usize;
            match Header::parse(&buf[at..]) {
                Some(header) if WriteSide::compressible(&header, &deflate) => {
                    stop = Some((at, Some(header)));
                    break;
                }
                Some(header) => end += header.frame_len(),
                None => {
                    stop = Some((at, None));
                    break;
                }
            }
        }
        if end > 0 {
            let pass = usize::try_from(end).unwrap_or(usize::MAX).min(buf.len());
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..pass]))?;
            write.passing = end - written as u64;
            return Poll::Ready(Ok(written));
        }
        match stop {
            Some((_, Some(header))) => {
                let whole = usize::try_from(header.frame_len()).unwrap_or(usize::MAX);
                if buf.len() >= whole {
                    if write.rewrite(&buf[..whole], &header) {
                        return Poll::Ready(Ok(whole));
                    }
                    // Not worth it: the frame goes out as it is.
                    write.passing = header.frame_len();
                    self.poll_write_deflating(cx, buf, deflate)
                } else {
                    write.gathered = buf.to_vec();
                    Poll::Ready(Ok(buf.len()))
                }
            }
            // A header cut short: less than a header's worth of bytes.
            _ => {
                write.gathered = buf.to_vec();
                Poll::Ready(Ok(buf.len()))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for DeflateStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(deflate) = this.deflate else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let read = &mut this.read;
        loop {
            if read.ready_at < read.ready.len() {
                let count = (read.ready.len() - read.ready_at).min(buf.remaining());
                buf.put_slice(&read.ready[read.ready_at..read.ready_at + count]);
                read.ready_at += count;
                if read.ready_at == read.ready.len() {
                    read.ready = Vec::new();
                    read.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            if !read.unread.is_empty() {
                let count = read.unread.len().min(buf.remaining());
                buf.put_slice(&read.unread[..count]);
                read.unread.drain(..count);
                if read.unread.is_empty() {
                    read.unread = Vec::new();
                }
            } else {
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                if buf.filled().len() == before {
                    // End of stream: tungstenite decides what an
                    // unfinished frame means.
                    return Poll::Ready(Ok(()));
                }
            }
            let kept = read.process(&mut buf.filled_mut()[before..], &deflate)?;
            buf.set_filled(before + kept);
            // Nothing kept (all of it belonged to a compressed message):
            // hand up the rebuilt frame, or read on.
            if kept > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for DeflateStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.deflate {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            Some(_) if buf.is_empty() => Poll::Ready(Ok(0)),
            Some(deflate) => this.poll_write_deflating(cx, buf, deflate),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "deflate_tests.rs"]
mod tests;
