//! The superblock (where the root group is, the widths of addresses and lengths) and the
//! reads every other structure starts from: an address, a length, the bytes at an address.

use super::cursor::Cur;
use super::{File, Res, UNDEF};

/// The format signature at the start of the superblock.
const SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

impl<'a> File<'a> {
    /// Checks the signature and superblock.
    pub fn parse(bytes: &'a [u8]) -> Result<File<'a>, String> {
        // The superblock sits at 0, or after a user block at 512, 1024, 2048, ...
        let mut base = 0usize;
        while bytes.get(base..base.saturating_add(8)) != Some(&SIGNATURE[..]) {
            base = if base == 0 {
                512
            } else {
                base.saturating_mul(2)
            };
            if base >= bytes.len() {
                return Err("not an HDF5 file (no signature)".into());
            }
        }
        let mut c = Cur::new(bytes.get(base..).unwrap_or(&[]), "superblock", 0);
        c.skip(8)?;
        let version = c.u8()?;
        let mut file = File {
            bytes,
            base,
            version,
            offset_size: 8,
            length_size: 8,
            root: UNDEF,
        };
        match version {
            0 | 1 => {
                // Free-space, root group symbol table and shared header versions, reserved.
                c.skip(4)?;
                let (o, l) = (c.u8()?, c.u8()?);
                file.set_sizes(&c, o, l)?;
                c.skip(1)?;
                // Group leaf/internal node K, consistency flags.
                c.skip(8)?;
                if version == 1 {
                    // Indexed storage internal node K, reserved.
                    c.skip(4)?;
                }
                // Base, free-space info, end-of-file and driver info addresses.
                for _ in 0..4 {
                    file.addr(&mut c)?;
                }
                // Root group symbol table entry: link name offset, object header address, ...
                file.addr(&mut c)?;
                file.root = file.addr(&mut c)?;
                c.skip(8 + 16)?;
            }
            2 | 3 => {
                let (o, l) = (c.u8()?, c.u8()?);
                file.set_sizes(&c, o, l)?;
                // Flags; base, superblock extension and end-of-file addresses.
                c.skip(1)?;
                for _ in 0..3 {
                    file.addr(&mut c)?;
                }
                file.root = file.addr(&mut c)?;
                c.skip(4)?;
            }
            v => return Err(format!("superblock version {v} is not supported")),
        }
        if file.root == UNDEF {
            return Err("superblock: undefined root group address".into());
        }
        Ok(file)
    }

    fn set_sizes(&mut self, c: &Cur<'_>, offsets: u8, lengths: u8) -> Res<()> {
        for size in [offsets, lengths] {
            if !matches!(size, 2 | 4 | 8) {
                return Err(c.err(format_args!(
                    "offset/length size {size} is not supported (2, 4 or 8)"
                )));
            }
        }
        self.offset_size = offsets;
        self.length_size = lengths;
        Ok(())
    }

    /// An address field; all ones (undefined) becomes [`UNDEF`].
    pub(super) fn addr(&self, c: &mut Cur<'_>) -> Res<u64> {
        let v = c.uint(self.offset_size)?;
        let ones = u64::MAX >> (64 - 8 * u32::from(self.offset_size));
        Ok(if v == ones { UNDEF } else { v })
    }

    pub(super) fn length(&self, c: &mut Cur<'_>) -> Res<u64> {
        c.uint(self.length_size)
    }

    /// A cursor from `addr` to the end of the file.
    pub(super) fn at(&self, addr: u64, what: &'static str) -> Res<Cur<'a>> {
        let start = self.offset_of(addr, what)?;
        match self.bytes.get(start..) {
            Some(s) if !s.is_empty() => Ok(Cur::new(s, what, addr)),
            _ => Err(format!(
                "{what} at {addr:#x}: beyond the end of the file ({} bytes)",
                self.bytes.len()
            )),
        }
    }

    /// Exactly `len` bytes at `addr`, or an error if they are not all in the file.
    pub(super) fn range(&self, addr: u64, len: u64, what: &'static str) -> Res<&'a [u8]> {
        let start = self.offset_of(addr, what)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len));
        end.and_then(|end| self.bytes.get(start..end))
            .ok_or_else(|| {
                format!(
                    "{what} at {addr:#x}: {len} bytes do not fit in the file ({} bytes)",
                    self.bytes.len()
                )
            })
    }

    fn offset_of(&self, addr: u64, what: &'static str) -> Res<usize> {
        if addr == UNDEF {
            return Err(format!("{what}: undefined address"));
        }
        usize::try_from(addr)
            .ok()
            .and_then(|a| a.checked_add(self.base))
            .ok_or_else(|| format!("{what} at {addr:#x}: address out of range"))
    }
}
