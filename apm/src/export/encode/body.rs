//! One intake request body being built: events are serialised as NDJSON into a plain buffer,
//! which goes to the gzip encoder in large chunks. Serialising straight into the encoder would
//! make every small piece of JSON one call into deflate, which costs microseconds per event.

use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;

/// Uncompressed bytes gathered before they are compressed in one go.
const STAGE: usize = 64 * 1024;

pub(crate) struct Body {
    /// NDJSON not yet compressed (all of it when not compressing).
    ndjson: Vec<u8>,
    gzip: Option<GzEncoder<Vec<u8>>>,
    /// Uncompressed bytes handed to the encoder so far.
    fed: usize,
    /// Compressed bytes per uncompressed byte so far, in 1/65 536ths: [`Body::len`] runs after
    /// every event, and a multiplication is cheaper there than a division.
    ratio: u64,
}

/// [`Body::ratio`] before anything was compressed: one to one, never an underestimate.
const ONE: u64 = 1 << 16;

impl Body {
    pub(crate) fn new(compress: bool, capacity: usize) -> Body {
        Body::reusing(compress, capacity, Vec::new())
    }

    /// A body whose output is written into `buffer` (a body sent earlier, emptied), when it
    /// has the room: a new buffer of the request's size is fresh memory, and the kernel faults
    /// its pages in one by one as the body fills it.
    pub(crate) fn reusing(compress: bool, capacity: usize, mut buffer: Vec<u8>) -> Body {
        buffer.clear();
        let out_capacity = if compress { capacity / 4 } else { capacity };
        if buffer.capacity() < out_capacity {
            buffer = Vec::with_capacity(out_capacity);
        }
        if compress {
            Body {
                ndjson: Vec::with_capacity(STAGE + STAGE / 4),
                // Level 1 of flate2's zlib-rs backend: the cheapest deflate in CPU per event
                // (BENCHMARKS.md, "Transport"), and intake NDJSON still shrinks over tenfold.
                gzip: Some(GzEncoder::new(buffer, Compression::fast())),
                fed: 0,
                ratio: ONE,
            }
        } else {
            Body {
                ndjson: buffer,
                gzip: None,
                fed: 0,
                ratio: ONE,
            }
        }
    }

    /// Where the next event is serialised; call [`Body::written`] after each.
    #[inline]
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        &mut self.ndjson
    }

    /// Compresses the staged NDJSON once there is enough of it.
    #[inline]
    pub(crate) fn written(&mut self) -> io::Result<()> {
        if self.ndjson.len() >= STAGE {
            self.compress_stage()?;
        }
        Ok(())
    }

    fn compress_stage(&mut self) -> io::Result<()> {
        if let Some(g) = &mut self.gzip {
            g.write_all(&self.ndjson)?;
            self.fed += self.ndjson.len();
            self.ndjson.clear();
            let compressed = g.get_ref().len().max(1) as u64;
            self.ratio = (compressed << 16).div_ceil(self.fed as u64);
        }
        Ok(())
    }

    /// Bytes on the wire so far. With gzip, what is still staged counts at the compression
    /// ratio seen so far (all of it before anything was compressed: never an underestimate
    /// at the start).
    pub(crate) fn len(&self) -> usize {
        match &self.gzip {
            None => self.ndjson.len(),
            Some(g) => {
                let staged_on_wire = (self.ndjson.len() as u64 * self.ratio) >> 16;
                g.get_ref().len() + staged_on_wire as usize
            }
        }
    }

    /// Bytes of NDJSON written so far (what the server has once it decompressed the body).
    pub(crate) fn decoded_len(&self) -> usize {
        self.fed + self.ndjson.len()
    }

    pub(crate) fn finish(mut self) -> io::Result<Vec<u8>> {
        self.compress_stage()?;
        match self.gzip {
            Some(g) => g.finish(),
            None => Ok(self.ndjson),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_body_decompresses_to_what_was_written() {
        let mut body = Body::new(true, 1 << 20);
        let mut expected = Vec::new();
        for i in 0..20_000 {
            let line = format!("{{\"n\":{i}}}\n");
            body.out().extend_from_slice(line.as_bytes());
            body.written().expect("stage");
            expected.extend_from_slice(line.as_bytes());
        }
        assert!(body.len() > 0 && body.len() < expected.len());
        assert_eq!(body.decoded_len(), expected.len());
        let compressed = body.finish().expect("finish");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut plain)
            .expect("valid gzip");
        assert_eq!(plain, expected);
    }

    #[test]
    fn a_reused_buffer_is_emptied_and_kept() {
        for compress in [false, true] {
            let mut old = Vec::with_capacity(1 << 20);
            old.extend_from_slice(b"an earlier body");
            let at = old.as_ptr();
            let mut body = Body::reusing(compress, 4096, old);
            body.out().extend_from_slice(b"{}\n");
            let sent = body.finish().expect("finish");
            assert_eq!(sent.as_ptr(), at, "compress: {compress}");
            if !compress {
                assert_eq!(sent, b"{}\n");
            }
        }
    }

    #[test]
    fn plain_body_is_the_ndjson() {
        let mut body = Body::new(false, 16);
        body.out().extend_from_slice(b"{}\n");
        body.written().expect("stage");
        assert_eq!(body.len(), 3);
        assert_eq!(body.finish().expect("finish"), b"{}\n");
    }
}
