//! Clients on a unix socket send what `:authority` they like: grpc-go (kubelet) sends
//! `localhost`, grpcio (Python, C++) since 1.5x the socket's path percent-encoded
//! (`run%2Fcsi%2Fcsi.sock`), other clients the raw path. HTTP/2 wants an authority there,
//! and h2 (under hyper and tonic) resets a stream whose `:authority` does not parse as one
//! (`RST_STREAM` `PROTOCOL_ERROR`, in `h2::server::Peer::convert_poll_message`), before
//! any of our code sees the request, with no setting to relax it.
//!
//! So each connection's bytes from the client pass through a [`Rewriter`] on their way
//! to h2: it reads the HTTP/2 frames, and in each header block ([`hpack`]) replaces an
//! `:authority` that is not one by a valid one of the same length (`run-2Fcsi-2Fcsi.sock`).
//! Nothing else changes; the plugin serves every request whatever its authority.

use super::hpack;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": what a client sends first.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may set: rewritten frames fit any server.
const MAX_FRAME: usize = 16_384;

/// Where the client's byte stream is.
enum Stage {
    Preface,
    /// Between frames.
    Frame,
    /// Inside a frame that passes as it is: bytes of it still to pass.
    Passing(usize),
    /// Reading stopped (a malformed stream): everything passes as it is; h2 judges it.
    Blind,
}

/// Rewrites the client-to-server half of an HTTP/2 connection (see the module).
pub struct Rewriter {
    stage: Stage,
    /// Bytes read but not yet passed on (a frame header, a header block's frames).
    held: Vec<u8>,
    /// The frames of a header block still missing its END_HEADERS: raw, and the block.
    block_frames: Vec<u8>,
    block: Vec<u8>,
    /// The first frame's stream, flags and priority fields.
    block_head: Option<(u32, u8, Vec<u8>)>,
    table: hpack::Table,
}

impl Default for Rewriter {
    fn default() -> Rewriter {
        Rewriter {
            stage: Stage::Preface,
            held: Vec::new(),
            block_frames: Vec::new(),
            block: Vec::new(),
            block_head: None,
            table: hpack::Table::default(),
        }
    }
}

impl Rewriter {
    /// Takes bytes from the client; appends to `out` what may go to the server now.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.stage {
                Stage::Blind => {
                    out.extend_from_slice(input);
                    return;
                }
                Stage::Passing(left) => {
                    let n = left.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.stage = if n == left {
                        Stage::Frame
                    } else {
                        Stage::Passing(left - n)
                    };
                }
                Stage::Preface => {
                    let n = (PREFACE_LEN - self.held.len()).min(input.len());
                    self.held.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.held.len() == PREFACE_LEN {
                        out.append(&mut self.held);
                        self.stage = Stage::Frame;
                    }
                }
                Stage::Frame => {
                    let need = if self.held.len() < FRAME_HEADER {
                        FRAME_HEADER
                    } else {
                        FRAME_HEADER + frame_len(&self.held)
                    };
                    let n = (need - self.held.len()).min(input.len());
                    self.held.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.held.len() == need {
                        self.frame(out);
                    }
                }
            }
        }
    }

    /// The client closed its side: whatever is held goes as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.block_frames);
        out.append(&mut self.held);
        self.stage = Stage::Blind;
    }

    /// With a frame header (and for header blocks, the whole frame) held.
    fn frame(&mut self, out: &mut Vec<u8>) {
        let kind = self.held[3];
        let collecting = self.block_head.is_some();
        let header_block = kind == HEADERS && !collecting || kind == CONTINUATION && collecting;
        if !header_block {
            if collecting {
                return self.blind(out); // a header block interrupted: h2 will say so
            }
            let len = frame_len(&self.held);
            out.append(&mut self.held);
            self.stage = if len > 0 {
                Stage::Passing(len)
            } else {
                Stage::Frame
            };
            return;
        }
        if self.held.len() == FRAME_HEADER && frame_len(&self.held) > 0 {
            return; // the payload comes next: hold the whole frame
        }
        let flags = self.held[4];
        let stream = u32::from_be_bytes(self.held[5..9].try_into().unwrap_or([0; 4])) & 0x7FFF_FFFF;
        let payload = &self.held[FRAME_HEADER..];
        let fragment = if kind == HEADERS {
            let Some((priority, fragment)) = headers_fragment(flags, payload) else {
                return self.blind(out);
            };
            self.block_head = Some((stream, flags, priority.to_vec()));
            fragment
        } else {
            payload
        };
        self.block.extend_from_slice(fragment);
        self.block_frames.append(&mut self.held);
        if flags & END_HEADERS != 0 {
            self.end_block(out);
        }
    }

    fn end_block(&mut self, out: &mut Vec<u8>) {
        let block = std::mem::take(&mut self.block);
        let raw = std::mem::take(&mut self.block_frames);
        let Some((stream, flags, priority)) = self.block_head.take() else {
            return;
        };
        match self.table.rewrite(&block) {
            Ok(None) => out.extend_from_slice(&raw),
            Ok(Some((rewritten, fixed))) => {
                for f in fixed {
                    log::debug!(
                        "stream {stream}: :authority {:?} served as {:?}",
                        String::from_utf8_lossy(&f.sent),
                        String::from_utf8_lossy(&f.served)
                    );
                }
                put_block(out, stream, flags, &priority, &rewritten);
            }
            Err(hpack::Malformed) => {
                out.extend_from_slice(&raw);
                self.stage = Stage::Blind;
            }
        }
    }

    fn blind(&mut self, out: &mut Vec<u8>) {
        self.block.clear();
        self.block_head = None;
        self.finish(out);
    }
}

fn frame_len(header: &[u8]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

/// A HEADERS payload's priority fields and header block fragment (padding dropped).
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let (pad, rest) = if flags & PADDED != 0 {
        (usize::from(*payload.first()?), &payload[1..])
    } else {
        (0, payload)
    };
    let rest = rest.get(..rest.len().checked_sub(pad)?)?;
    if flags & PRIORITY != 0 {
        Some((rest.get(..5)?, rest.get(5..)?))
    } else {
        Some((&[], rest))
    }
}

/// Writes a header block as a HEADERS frame (unpadded, with `priority` if it had it)
/// and as many CONTINUATION frames as it needs.
fn put_block(out: &mut Vec<u8>, stream: u32, flags: u8, priority: &[u8], block: &[u8]) {
    let first = (MAX_FRAME - priority.len()).min(block.len());
    let chunks = std::iter::once(&block[..first]).chain(block[first..].chunks(MAX_FRAME));
    let mut kind = HEADERS;
    let mut flags = flags & !(PADDED | END_HEADERS);
    let mut left = block.len();
    for chunk in chunks {
        left -= chunk.len();
        let extra = if kind == HEADERS { priority } else { &[][..] };
        let end = if left == 0 { END_HEADERS } else { 0 };
        let len = (extra.len() + chunk.len()) as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags | end);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(extra);
        out.extend_from_slice(chunk);
        (kind, flags) = (CONTINUATION, 0);
        if left == 0 {
            break;
        }
    }
}

/// A connection whose bytes from the client pass through a [`Rewriter`].
pub struct Fixed<IO> {
    io: IO,
    rewriter: Rewriter,
    ready: Vec<u8>,
    at: usize,
    eof: bool,
}

impl<IO> Fixed<IO> {
    pub fn new(io: IO) -> Fixed<IO> {
        Fixed {
            io,
            rewriter: Rewriter::default(),
            ready: Vec::new(),
            at: 0,
            eof: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Fixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            if me.at < me.ready.len() {
                let n = (me.ready.len() - me.at).min(buf.remaining());
                buf.put_slice(&me.ready[me.at..me.at + n]);
                me.at += n;
                if me.at == me.ready.len() {
                    me.ready.clear();
                    me.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut me.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                me.eof = true;
                me.rewriter.finish(&mut me.ready);
            } else {
                me.rewriter.feed(read.filled(), &mut me.ready);
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Fixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Fixed<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// :method POST, :scheme http, :path /p, :authority `authority` (indexed name 1).
    fn request_block(authority: &[u8]) -> Vec<u8> {
        let mut b = vec![
            0x83,
            0x86,
            0x44,
            0x02,
            b'/',
            b'p',
            0x41,
            authority.len() as u8,
        ];
        b.extend_from_slice(authority);
        b
    }

    /// Feeds `input` in pieces of `step` bytes.
    fn run(input: &[u8], step: usize) -> Vec<u8> {
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            r.feed(piece, &mut out);
        }
        r.finish(&mut out);
        out
    }

    #[test]
    fn frames_without_a_bad_authority_pass_byte_for_byte() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
        input.extend(frame(HEADERS, END_HEADERS, 1, &request_block(b"localhost")));
        input.extend(frame(0x0, 0x1, 1, b"data bytes")); // DATA, END_STREAM
        for step in [1, 7, 4096] {
            assert_eq!(run(&input, step), input, "in pieces of {step}");
        }
    }

    #[test]
    fn a_socket_path_is_replaced_in_padded_and_continued_blocks() {
        let block = request_block(b"run%2Fcsi.sock");
        let mut want = PREFACE.to_vec();
        want.extend(frame(
            HEADERS,
            END_HEADERS | 0x1,
            3,
            &request_block(b"run-2Fcsi.sock"),
        ));
        want.extend(frame(0x0, 0x1, 3, b"x"));
        // Padded, split over a CONTINUATION, DATA after it.
        let mut input = PREFACE.to_vec();
        let mut padded = vec![4u8];
        padded.extend_from_slice(&block[..5]);
        padded.extend_from_slice(&[0; 4]);
        input.extend(frame(HEADERS, PADDED | 0x1, 3, &padded));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, &block[5..]));
        input.extend(frame(0x0, 0x1, 3, b"x"));
        for step in [1, 3, 4096] {
            assert_eq!(run(&input, step), want, "in pieces of {step}");
        }
    }

    #[test]
    fn priority_fields_are_kept() {
        let prio = [0, 0, 0, 1, 15];
        let mut payload = prio.to_vec();
        payload.extend(request_block(b"/s"));
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PRIORITY | END_HEADERS, 5, &payload));
        let mut want_payload = prio.to_vec();
        want_payload.extend(request_block(b"-s"));
        let mut want = PREFACE.to_vec();
        want.extend(frame(HEADERS, PRIORITY | END_HEADERS, 5, &want_payload));
        assert_eq!(run(&input, 2), want);
    }

    #[test]
    fn a_big_block_is_split_into_frames_the_server_takes() {
        let mut block = request_block(b"/s");
        for _ in 0..100 {
            block.extend_from_slice(&[0x00, 0x01, b'x', 0x7F, 0x81, 0x01]); // x: 256 bytes
            block.extend_from_slice(&[b'v'; 256]);
        }
        let mut input = PREFACE.to_vec();
        let half = block.len() / 2;
        input.extend(frame(HEADERS, 0, 1, &block[..half]));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, &block[half..]));
        let out = run(&input, 1000);
        let (mut at, mut got, mut frames) = (PREFACE_LEN, Vec::new(), 0);
        while at < out.len() {
            let len = frame_len(&out[at..]);
            assert!(len <= MAX_FRAME);
            got.extend_from_slice(&out[at + FRAME_HEADER..at + FRAME_HEADER + len]);
            at += FRAME_HEADER + len;
            frames += 1;
        }
        assert_eq!(frames, 2, "{} bytes in two frames", block.len());
        assert_eq!(&got[..8], &request_block(b"-s")[..8]);
        assert_eq!(got.len(), block.len());
    }

    #[test]
    fn a_malformed_block_passes_and_reading_stops() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0xC5])); // no entry 69
        input.extend(frame(HEADERS, END_HEADERS, 3, &request_block(b"/s")));
        assert_eq!(run(&input, 5), input);
    }
}
