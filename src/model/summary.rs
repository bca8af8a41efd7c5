//! `Model::summary()`: the Keras 3 table.

use super::Model;
use std::fmt::Write;

/// `25384` -> `"25,384"`.
pub(crate) fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as Keras prints them (`99.16 KB`, 1024-based).
pub(crate) fn human_bytes(b: usize) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", units[u])
}

/// `(None, d1, ..)`, with `None` for a first axis that is a variable sequence (`seq`).
fn shape(s: &[usize], seq: bool) -> String {
    let dims: Vec<String> = std::iter::once("None".to_string())
        .chain(s.iter().enumerate().map(|(i, d)| match i == 0 && seq {
            true => "None".to_string(),
            false => d.to_string(),
        }))
        .collect();
    format!("({})", dims.join(", "))
}

/// Per node: whether its first axis follows the model's variable sequence
/// ([`Model::set_seq_input`]), found by inferring every shape again one position longer: the
/// nodes whose first axis grows. All false when a layer cannot take that length.
fn seq_axes(m: &Model) -> Vec<bool> {
    let nodes = m.nodes();
    let none = vec![false; nodes.len()];
    if !m.seq_inputs().iter().any(|&s| s) {
        return none;
    }
    let mut longer: Vec<Vec<usize>> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let s = match m.inputs().iter().position(|&k| k == i) {
            Some(k) => {
                let mut s = n.shape.clone();
                if m.seq_inputs()[k] && !s.is_empty() {
                    s[0] += 1;
                }
                s
            }
            None => {
                let ins: Vec<&[usize]> = n.inputs.iter().map(|&j| longer[j].as_slice()).collect();
                match n.layer.output_shape(&ins) {
                    Ok(s) => s,
                    Err(_) => return none,
                }
            }
        };
        longer.push(s);
    }
    nodes
        .iter()
        .zip(&longer)
        .map(|(n, l)| {
            n.shape
                .first()
                .is_some_and(|&d| l.first() == Some(&(d + 1)))
        })
        .collect()
}

/// Whether the graph branches (several inputs or outputs, a layer read twice, a merge): then
/// Keras 3 adds a "Connected to" column.
fn branches(m: &Model) -> bool {
    let mut readers = vec![0usize; m.nodes().len()];
    for n in m.nodes() {
        for &j in &n.inputs {
            readers[j] += 1;
        }
    }
    m.inputs().len() > 1
        || m.outputs().len() > 1
        || readers.iter().any(|&r| r > 1)
        || m.nodes().iter().any(|n| n.inputs.len() > 1)
}

/// Non-trainable weights as Keras counts them: batch-normalization moving statistics and the
/// adapted statistics of `Normalization`.
fn non_trainable(m: &Model) -> usize {
    m.nodes()
        .iter()
        .map(|n| n.layer.op().non_trainable_count())
        .sum()
}

pub(super) fn render(m: &Model) -> String {
    let connected = branches(m);
    let seq = seq_axes(m);
    let rows: Vec<[Vec<String>; 4]> = m
        .nodes()
        .iter()
        .zip(&seq)
        .map(|(n, &seq)| {
            let mut links: Vec<String> = n
                .inputs
                .iter()
                .map(|&j| format!("{}[0][0]", m.nodes()[j].name))
                .collect();
            let last = links.len().saturating_sub(1);
            for l in links.iter_mut().take(last) {
                l.push(',');
            }
            if links.is_empty() {
                links.push("-".into());
            }
            [
                vec![format!("{} ({})", n.name, n.layer.type_name())],
                vec![shape(&n.shape, seq)],
                vec![thousands(n.count_params())],
                links,
            ]
        })
        .collect();
    let width = |c: usize, min: usize| {
        rows.iter()
            .flat_map(|r| r[c].iter().map(|s| s.chars().count()))
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let w = [width(0, 31), width(1, 22), 13, width(3, 21)];
    let cols = if connected { 4 } else { 3 };
    let line = |l: &str, f: &str, mid: &str, r: &str| {
        let parts: Vec<String> = w[..cols].iter().map(|&x| f.repeat(x + 2)).collect();
        format!("{l}{}{r}\n", parts.join(mid))
    };
    let cells = |v: [&str; 4], bar: &str| {
        let mut out = String::from(bar);
        for c in 0..cols {
            let cell = if c == 2 {
                format!(" {:>x$} ", v[c], x = w[c])
            } else {
                format!(" {:<x$} ", v[c], x = w[c])
            };
            out += &cell;
            out += bar;
        }
        out + "\n"
    };
    let mut out = String::new();
    let _ = writeln!(out, "Model: \"{}\"", m.name());
    out += &line("┏", "━", "┳", "┓");
    out += &cells(
        ["Layer (type)", "Output Shape", "Param #", "Connected to"],
        "┃",
    );
    out += &line("┡", "━", "╇", "┩");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out += &line("├", "─", "┼", "┤");
        }
        let height = if connected { r[3].len() } else { 1 };
        for h in 0..height {
            let get = |c: usize| r[c].get(h).map_or("", String::as_str);
            out += &cells([get(0), get(1), get(2), get(3)], "│");
        }
    }
    out += &line("└", "─", "┴", "┘");
    let total = m.count_params();
    let fixed = non_trainable(m);
    let _ = writeln!(
        out,
        " Total params: {} ({})",
        thousands(total),
        human_bytes(total * 4)
    );
    let _ = writeln!(
        out,
        " Trainable params: {} ({})",
        thousands(total - fixed),
        human_bytes((total - fixed) * 4)
    );
    let _ = writeln!(
        out,
        " Non-trainable params: {} ({})",
        thousands(fixed),
        human_bytes(fixed * 4)
    );
    out
}
