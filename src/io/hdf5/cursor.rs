//! The bounds-checked reader every structure is parsed with.

use super::Res;
use std::fmt;

/// A bounds-checked little-endian reader over one structure; errors name the structure and its
/// address.
#[derive(Clone)]
pub(super) struct Cur<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    what: &'static str,
    pub(super) at: u64,
}

impl<'a> Cur<'a> {
    pub(super) fn new(buf: &'a [u8], what: &'static str, at: u64) -> Self {
        Cur {
            buf,
            pos: 0,
            what,
            at,
        }
    }

    pub(super) fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(super) fn err(&self, msg: impl fmt::Display) -> String {
        format!("{} at {:#x}: {msg}", self.what, self.at)
    }

    pub(super) fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let left = self.left();
        if n > left {
            return Err(self.err(format_args!("truncated (need {n} bytes, {left} left)")));
        }
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| self.err("truncated"))?;
        self.pos += n;
        Ok(s)
    }

    pub(super) fn take_u64(&mut self, n: u64) -> Res<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) => self.take(n),
            Err(_) => Err(self.err(format_args!("size {n} does not fit in memory"))),
        }
    }

    pub(super) fn skip(&mut self, n: usize) -> Res<()> {
        self.take(n).map(|_| ())
    }

    pub(super) fn u8(&mut self) -> Res<u8> {
        Ok(self.uint(1)? as u8)
    }

    pub(super) fn u16(&mut self) -> Res<u16> {
        Ok(self.uint(2)? as u16)
    }

    pub(super) fn u32(&mut self) -> Res<u32> {
        Ok(self.uint(4)? as u32)
    }

    /// An unsigned little-endian integer of 1..=8 bytes.
    pub(super) fn uint(&mut self, size: u8) -> Res<u64> {
        if !(1..=8).contains(&size) {
            return Err(self.err(format_args!("integer of {size} bytes")));
        }
        let b = self.take(usize::from(size))?;
        Ok(b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x)))
    }

    pub(super) fn signature(&mut self, sig: &[u8; 4]) -> Res<()> {
        let got = self.take(4)?;
        if got != sig {
            return Err(self.err(format_args!(
                "bad signature {:?}, expected {:?}",
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(sig)
            )));
        }
        Ok(())
    }

    /// The next `n` bytes as their own cursor.
    pub(super) fn sub(&mut self, n: usize, what: &'static str, at: u64) -> Res<Cur<'a>> {
        Ok(Cur::new(self.take(n)?, what, at))
    }

    pub(super) fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }
}
