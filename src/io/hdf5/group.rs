//! Groups: their links, as a symbol table (a version-1 B-tree of `TREE` nodes over `SNOD`
//! nodes, names in a local `HEAP`) or as link messages (compact, or dense in a fractal heap:
//! `dense.rs`), and paths resolved through them.

use super::cursor::Cur;
use super::header::{MSG_LINK, MSG_LINK_INFO, MSG_SYMBOL_TABLE, Msg};
use super::{
    File, MAX_BTREE_DEPTH, MAX_MEMBERS, MAX_NAME_BYTES, MAX_NODES, Res, UNDEF, dense, show,
};
use std::collections::HashSet;

/// Where a link points.
pub(super) enum Target {
    Object(u64),
    Soft,
    External,
}

struct LocalHeap<'a> {
    data: &'a [u8],
    at: u64,
}

/// Bounds shared by one walk of a group's B-tree.
struct Walk {
    seen: HashSet<u64>,
    out: Vec<(String, Target)>,
    name_bytes: usize,
    /// B-tree child pointers followed so far; overlapping nodes could otherwise make the walk
    /// quadratic in the file size.
    children: usize,
}

impl Walk {
    fn push(&mut self, name: String, target: Target) -> Res<()> {
        // HDF5 forbids these, and a path could never name such a member.
        if name.is_empty() || name.contains('/') {
            return Err(format!("invalid link name {name:?}"));
        }
        self.name_bytes = self.name_bytes.saturating_add(name.len());
        if self.out.len() >= MAX_MEMBERS || self.name_bytes > MAX_NAME_BYTES {
            return Err(format!(
                "group has more than {MAX_MEMBERS} members or {MAX_NAME_BYTES} bytes of names"
            ));
        }
        self.out.push((name, target));
        Ok(())
    }
}

impl<'a> File<'a> {
    /// The links of the group whose header messages are `msgs`, or None if it is not a group.
    pub(super) fn links(&self, msgs: &[Msg<'a>]) -> Res<Option<Vec<(String, Target)>>> {
        if let Some(m) = msgs.iter().find(|m| m.kind == MSG_SYMBOL_TABLE) {
            let mut c = Cur::new(m.data, "symbol table message", m.at);
            let btree = self.addr(&mut c)?;
            let heap = self.local_heap(self.addr(&mut c)?)?;
            let mut walk = Walk {
                seen: HashSet::new(),
                out: Vec::new(),
                name_bytes: 0,
                children: 0,
            };
            self.group_btree(btree, &heap, &mut walk, 0, None)?;
            return Ok(Some(walk.out));
        }
        let mut walk = Walk {
            seen: HashSet::new(),
            out: Vec::new(),
            name_bytes: 0,
            children: 0,
        };
        let info = msgs.iter().find(|m| m.kind == MSG_LINK_INFO);
        if let Some(m) = info {
            let mut c = Cur::new(m.data, "link info message", m.at);
            c.skip(1)?;
            let flags = c.u8()?;
            if flags & 1 != 0 {
                c.skip(8)?; // maximum creation index
            }
            let heap = self.addr(&mut c)?;
            if heap != UNDEF {
                // Dense storage: link messages in a fractal heap, indexed by name.
                let names = self.addr(&mut c)?;
                let heap = self.fractal_heap(heap)?;
                self.btree2_records(names, dense::LINK_NAMES, &mut |rec| {
                    // Name hash, then the heap ID.
                    let id = rec.get(4..).filter(|id| id.len() >= heap.id_len);
                    let id = id.ok_or_else(|| format!("link name record {rec:02x?} too short"))?;
                    let data = self.heap_object(&heap, id)?;
                    let m = Msg {
                        kind: MSG_LINK,
                        flags: 0,
                        data,
                        at: m.at,
                    };
                    let (name, target) = self.link(&m)?;
                    walk.push(name, target)
                })?;
            }
        }
        for m in msgs.iter().filter(|m| m.kind == MSG_LINK) {
            let (name, target) = self.link(m)?;
            walk.push(name, target)?;
        }
        if info.is_none() && walk.out.is_empty() {
            return Ok(None);
        }
        Ok(Some(walk.out))
    }

    fn link(&self, m: &Msg<'a>) -> Res<(String, Target)> {
        let mut c = Cur::new(m.data, "link message", m.at);
        let version = c.u8()?;
        if version != 1 {
            return Err(c.err(format_args!("link message version {version}")));
        }
        let flags = c.u8()?;
        let kind = if flags & 0x08 != 0 { c.u8()? } else { 0 };
        if flags & 0x04 != 0 {
            c.skip(8)?; // creation order
        }
        if flags & 0x10 != 0 {
            c.skip(1)?; // name character set
        }
        let name_len = c.uint(1 << (flags & 3))?;
        let name = String::from_utf8_lossy(c.take_u64(name_len)?).into_owned();
        let target = match kind {
            0 => Target::Object(self.addr(&mut c)?),
            1 => Target::Soft,
            _ => Target::External,
        };
        Ok((name, target))
    }

    fn local_heap(&self, addr: u64) -> Res<LocalHeap<'a>> {
        let mut c = self.at(addr, "local heap")?;
        c.signature(b"HEAP")?;
        let version = c.u8()?;
        if version != 0 {
            return Err(c.err(format_args!("local heap version {version}")));
        }
        c.skip(3)?;
        let size = self.length(&mut c)?;
        self.length(&mut c)?; // free list head
        let at = self.addr(&mut c)?;
        let data = self.range(at, size, "local heap data")?;
        Ok(LocalHeap { data, at })
    }

    /// Walks a version-1 B-tree of group nodes; children sit exactly one level lower, so the
    /// walk ends, and `walk.seen` stops a node being read twice (a DAG would blow up otherwise).
    fn group_btree(
        &self,
        addr: u64,
        heap: &LocalHeap<'a>,
        walk: &mut Walk,
        depth: usize,
        level: Option<u8>,
    ) -> Res<()> {
        let mut c = self.at(addr, "B-tree node")?;
        if depth > MAX_BTREE_DEPTH {
            return Err(c.err(format_args!("deeper than {MAX_BTREE_DEPTH} levels")));
        }
        if !walk.seen.insert(addr) || walk.seen.len() > MAX_NODES {
            return Err(c.err("node visited twice or too many nodes (cycle?)"));
        }
        c.signature(b"TREE")?;
        let kind = c.u8()?;
        if kind != 0 {
            return Err(c.err(format_args!("node type {kind}, expected 0 (group)")));
        }
        let node_level = c.u8()?;
        if level.is_some_and(|l| l != node_level) {
            return Err(c.err(format_args!(
                "node level {node_level}, expected {}",
                level.unwrap_or(0)
            )));
        }
        let entries = c.u16()?;
        self.addr(&mut c)?; // left sibling
        self.addr(&mut c)?; // right sibling
        walk.children = walk.children.saturating_add(usize::from(entries));
        if walk.children > MAX_MEMBERS {
            return Err(c.err(format_args!(
                "more than {MAX_MEMBERS} B-tree entries in one group"
            )));
        }
        let mut children = Vec::new();
        for _ in 0..entries {
            self.length(&mut c)?; // key: heap offset of the largest name in the child
            children.push(self.addr(&mut c)?);
        }
        for child in children {
            if node_level == 0 {
                self.symbol_node(child, heap, walk)?;
            } else {
                self.group_btree(child, heap, walk, depth + 1, Some(node_level - 1))?;
            }
        }
        Ok(())
    }

    fn symbol_node(&self, addr: u64, heap: &LocalHeap<'a>, walk: &mut Walk) -> Res<()> {
        let mut c = self.at(addr, "symbol table node")?;
        if !walk.seen.insert(addr) || walk.seen.len() > MAX_NODES {
            return Err(c.err("node visited twice or too many nodes (cycle?)"));
        }
        c.signature(b"SNOD")?;
        let version = c.u8()?;
        if version != 1 {
            return Err(c.err(format_args!("symbol table node version {version}")));
        }
        c.skip(1)?;
        let count = c.u16()?;
        for _ in 0..count {
            let name_offset = c.uint(self.offset_size)?;
            let object = self.addr(&mut c)?;
            let cache = c.u32()?;
            c.skip(4 + 16)?;
            let name = heap.name(name_offset)?;
            let target = if cache == 2 {
                Target::Soft
            } else {
                Target::Object(object)
            };
            walk.push(name, target).map_err(|e| c.err(e))?;
        }
        Ok(())
    }

    /// Follows `path` from the root; None if some component does not exist.
    pub(super) fn resolve(&self, path: &str) -> Res<Option<u64>> {
        let mut addr = self.root;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let msgs = self.header(addr)?;
            let Some(links) = self.links(&msgs)? else {
                return Ok(None);
            };
            match links.into_iter().find(|(name, _)| name == part) {
                None => return Ok(None),
                Some((_, Target::Object(a))) => addr = a,
                Some((_, Target::Soft)) => {
                    return Err(format!("{part} is a soft link (not supported)"));
                }
                Some((_, Target::External)) => {
                    return Err(format!("{part} is an external link (not supported)"));
                }
            }
        }
        Ok(Some(addr))
    }

    /// Names of the members of the group at `path` ("/" or "" is the root; "layers/dense/vars"), sorted.
    /// Err if path missing or not a group.
    pub fn members(&self, path: &str) -> Result<Vec<String>, String> {
        let ctx = |e: String| format!("group {}: {e}", show(path));
        let addr = self
            .resolve(path)
            .map_err(ctx)?
            .ok_or_else(|| ctx("no such object".into()))?;
        let msgs = self.header(addr).map_err(ctx)?;
        let links = self
            .links(&msgs)
            .map_err(ctx)?
            .ok_or_else(|| ctx("not a group".into()))?;
        let mut names: Vec<String> = links.into_iter().map(|(name, _)| name).collect();
        names.sort();
        Ok(names)
    }
}

impl LocalHeap<'_> {
    /// The NUL-terminated name at `offset` in the heap's data segment.
    fn name(&self, offset: u64) -> Res<String> {
        let bad = || {
            format!(
                "local heap data at {:#x}: no name at offset {offset}",
                self.at
            )
        };
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|o| self.data.get(o..))
            .ok_or_else(bad)?;
        let end = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        Ok(String::from_utf8_lossy(rest.get(..end).unwrap_or(&[])).into_owned())
    }
}
