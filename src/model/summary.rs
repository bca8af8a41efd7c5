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

fn shape(s: &[usize]) -> String {
    let dims: Vec<String> = std::iter::once("None".to_string())
        .chain(s.iter().map(usize::to_string))
        .collect();
    format!("({})", dims.join(", "))
}

pub(super) fn render(m: &Model) -> String {
    let rows: Vec<[String; 3]> = m
        .nodes()
        .iter()
        .map(|n| {
            [
                format!("{} ({})", n.name, n.layer.type_name()),
                shape(&n.shape),
                thousands(n.count_params()),
            ]
        })
        .collect();
    let w = [
        rows.iter()
            .map(|r| r[0].chars().count())
            .max()
            .unwrap_or(0)
            .max(31),
        rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max(22),
        13,
    ];
    let line = |l: &str, f: &str, mid: &str, r: &str| {
        format!(
            "{l}{}{mid}{}{mid}{}{r}\n",
            f.repeat(w[0] + 2),
            f.repeat(w[1] + 2),
            f.repeat(w[2] + 2)
        )
    };
    let mut out = String::new();
    let _ = writeln!(out, "Model: \"{}\"", m.name());
    out += &line("┏", "━", "┳", "┓");
    let _ = writeln!(
        out,
        "┃ {:<a$} ┃ {:<b$} ┃ {:>c$} ┃",
        "Layer (type)",
        "Output Shape",
        "Param #",
        a = w[0],
        b = w[1],
        c = w[2]
    );
    out += &line("┡", "━", "╇", "┩");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out += &line("├", "─", "┼", "┤");
        }
        let _ = writeln!(
            out,
            "│ {:<a$} │ {:<b$} │ {:>c$} │",
            r[0],
            r[1],
            r[2],
            a = w[0],
            b = w[1],
            c = w[2]
        );
    }
    out += &line("└", "─", "┴", "┘");
    let total = m.count_params();
    let size = human_bytes(total * 4);
    let _ = writeln!(out, " Total params: {} ({size})", thousands(total));
    let _ = writeln!(out, " Trainable params: {} ({size})", thousands(total));
    let _ = writeln!(out, " Non-trainable params: 0 ({})", human_bytes(0));
    out
}
