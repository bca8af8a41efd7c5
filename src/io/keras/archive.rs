//! The `.keras` archive: a zip of `config.json`, `model.weights.h5` and `metadata.json`, each
//! member read under a limit that holds while it inflates, whatever size it declares.

use super::{Fault, Res};
use serde_json::Value;
use std::io::{Cursor, Read};

/// A `.keras` archive held in memory.
pub(super) struct Archive<'b>(zip::ZipArchive<Cursor<&'b [u8]>>);

impl<'b> Archive<'b> {
    /// Reads the zip's central directory.
    pub(super) fn open(bytes: &'b [u8]) -> Res<Self> {
        zip::ZipArchive::new(Cursor::new(bytes))
            .map(Archive)
            .map_err(|e| Fault::malformed(format!("not a .keras archive (zip: {e})")))
    }

    /// The member `name`, inflated, if it is at most `limit` bytes.
    pub(super) fn member(&mut self, name: &str, limit: u64) -> Res<Vec<u8>> {
        let mut f = self.0.by_name(name).map_err(|e| {
            let msg = format!("archive member {name}: {e}");
            match e {
                zip::result::ZipError::FileNotFound => Fault::invalid(msg),
                _ => Fault::malformed(msg),
            }
        })?;
        if f.size() > limit {
            return Err(Fault::limit(format!(
                "archive member {name} declares {} bytes, more than the {limit}-byte limit",
                f.size()
            )));
        }
        // The declared size may lie: never read past the limit. (The zip crate's reader
        // also errors once a member inflates past its declared size; this bound does not rely
        // on it. tests/hostile.rs `keras_member_inflating_past_its_declared_size_is_refused`.)
        let mut buf = Vec::with_capacity(f.size().min(1 << 20) as usize);
        (&mut f)
            .take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| Fault::malformed(format!("archive member {name}: {e}")))?;
        if buf.len() as u64 > limit {
            return Err(Fault::limit(format!(
                "archive member {name} inflates past the {limit}-byte limit"
            )));
        }
        Ok(buf)
    }

    /// The Keras version `metadata.json` names, if the archive has a readable one.
    pub(super) fn keras_version(&mut self) -> Option<String> {
        let meta = self.member("metadata.json", 1 << 20).ok()?;
        let meta = serde_json::from_slice::<Value>(&meta).ok()?;
        meta.get("keras_version")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}
