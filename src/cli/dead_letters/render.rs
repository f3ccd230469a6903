//! How `dead-letters` prints the admin API's answers for people: a table for `list`, the letter
//! with its attempts and body for `show`, sentences for `replay` and `purge`. Absent values print
//! as `-` so columns stay aligned; times print as RFC 3339 in UTC, to the second.

use std::fmt::Write as _;

use serde_json::Value;

use crate::admin::params::format_time;

/// Longest reason shown in the list table; `show` prints it whole.
const REASON_WIDTH: usize = 80;

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `-` for what is absent, so columns stay aligned.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time_cell(v: &Value) -> String {
    v.as_i64().map_or_else(|| cell(v), format_time)
}

/// One line, at most `width` characters.
fn clip(text: &str, width: usize) -> String {
    let line = text.replace(['\n', '\r'], " ");
    if line.chars().count() <= width {
        return line;
    }
    let mut clipped: String = line.chars().take(width - 1).collect();
    clipped.push('…');
    clipped
}

/// Rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = indent.to_owned();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(super) fn render_list(answer: &Value) -> String {
    let letters = answer["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if letters.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|d| {
            vec![
                cell(&d["id"]),
                time_cell(&d["dead_at"]),
                cell(&d["target"]),
                cell(&d["event_type"]),
                cell(&d["attempts"]),
                cell(&d["last_status"]),
                clip(&cell(&d["reason"]), REASON_WIDTH),
            ]
        })
        .collect();
    let header = [
        "ID", "DEAD AT", "TARGET", "TYPE", "ATTEMPTS", "STATUS", "REASON",
    ];
    let n = letters.len() as u64;
    format!(
        "{}{n} dead letter{}, newest first\n",
        table(&header, &rows, ""),
        plural(n)
    )
}

pub(super) fn render_show(d: &Value) -> String {
    let mut out = format!("dead letter {}\n", cell(&d["id"]));
    let fields = [
        ("target", cell(&d["target"])),
        ("event id", cell(&d["event_id"])),
        ("event type", cell(&d["event_type"])),
        ("received at", time_cell(&d["received_at"])),
        ("dead at", time_cell(&d["dead_at"])),
        ("attempts", cell(&d["attempts"])),
        ("last status", cell(&d["last_status"])),
        ("reason", cell(&d["reason"])),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "  {:<12} {value}", format!("{name}:"));
    }
    let history = d["attempt_history"].as_array().cloned().unwrap_or_default();
    if history.is_empty() {
        out.push_str("\nno attempts were made\n");
    } else {
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|a| {
                vec![
                    cell(&a["attempt"]),
                    time_cell(&a["at"]),
                    cell(&a["status"]),
                    cell(&a["reason"]),
                ]
            })
            .collect();
        let _ = write!(
            out,
            "\nattempts:\n{}",
            table(&["#", "AT", "STATUS", "REASON"], &rows, "  ")
        );
    }
    let body = match (&d["body_format"], &d["body"]) {
        (f, Value::String(text)) if f != "json" => text.clone(),
        (_, value) => serde_json::to_string_pretty(value).unwrap_or_default(),
    };
    let _ = write!(out, "\nbody ({}):\n{body}\n", cell(&d["body_format"]));
    out
}

pub(super) fn render_replay(answer: &Value) -> String {
    let n = answer["replayed"].as_u64().unwrap_or(0);
    let per_target: Vec<String> = answer["targets"]
        .as_object()
        .map(|m| m.iter().map(|(t, c)| format!("{t}: {c}")).collect())
        .unwrap_or_default();
    let mut out = format!("replayed {n} dead letter{}", plural(n));
    if !per_target.is_empty() {
        let _ = write!(out, " ({})", per_target.join(", "));
    }
    out.push('\n');
    for skipped in answer["skipped"].as_array().into_iter().flatten() {
        let count = skipped["count"].as_u64().unwrap_or(0);
        let ids: Vec<String> = skipped["ids"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        let more = if (ids.len() as u64) < count {
            ", …"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "skipped {count}: {} (ids {}{more})",
            cell(&skipped["reason"]),
            ids.join(", ")
        );
    }
    out
}

pub(super) fn render_purge(answer: &Value) -> String {
    let n = answer["purged"].as_u64().unwrap_or(0);
    format!("purged {n} dead letter{}\n", plural(n))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_and_clip() {
        let rows = vec![
            vec!["7".to_owned(), "crm".to_owned(), "x".repeat(3)],
            vec!["12".to_owned(), "-".to_owned(), "ok".to_owned()],
        ];
        assert_eq!(
            table(&["ID", "TARGET", "REASON"], &rows, ""),
            "ID  TARGET  REASON\n7   crm     xxx\n12  -       ok\n"
        );
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn replay_answers_read_as_sentences() {
        let answer = json!({
            "replayed": 2, "targets": {"crm": 1, "wh": 1},
            "skipped": [{"reason": "never an event", "count": 1, "ids": [7]}],
        });
        assert_eq!(
            render_replay(&answer),
            "replayed 2 dead letters (crm: 1, wh: 1)\nskipped 1: never an event (ids 7)\n"
        );
        assert_eq!(
            render_purge(&json!({"purged": 1})),
            "purged 1 dead letter\n"
        );
    }
}
