//! The report channel: parsing COM2's `KEY=JSON` lines and merging them
//! with the runner's own fields.
//!
//! The kernel writes one line per fact to its second serial port, which QEMU
//! saves to `report.txt` in the run directory:
//!
//! ```text
//! boot.ready_ms=12.5              -> {"boot": {"ready_ms": 12.5}}
//! cpus[]={"vp":1,"apic_id":1}     -> {"cpus": [{"vp": 1, "apic_id": 1}]}
//! result="pass"
//! ```
//!
//! A key is a dotted path of words (letters, digits, `_`, `-`); a trailing
//! `[]` appends to the array at that path. A later plain line for the same
//! key replaces the earlier value. A line that does not parse, or whose path
//! runs through a value that is not an object, is skipped and described in
//! `report_errors`; it never stops the run. Blank lines are ignored.

use serde_json::{Map, Value};
use sidecar::vocabulary::report_key;

/// What the kernel reported on COM2.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct KernelReport {
    /// The parsed fields, nested along their dotted keys.
    pub fields: Map<String, Value>,
    /// One message per malformed line.
    pub errors: Vec<String>,
}

impl KernelReport {
    /// The kernel's top-level string field `key`, if it wrote one.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

/// Parses the whole report text; never fails.
pub(crate) fn parse(text: &str) -> KernelReport {
    let mut report = KernelReport::default();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches(['\r', '\0']);
        if line.trim().is_empty() {
            continue;
        }
        if let Err(why) = apply_line(&mut report.fields, line) {
            report
                .errors
                .push(format!("line {}: {why}: {}", index + 1, shorten(line)));
        }
    }
    report
}

/// Applies one `KEY=JSON` or `KEY[]=JSON` line to `fields`.
fn apply_line(fields: &mut Map<String, Value>, line: &str) -> Result<(), String> {
    let (key, value) = line.split_once('=').ok_or("no '='")?;
    let value: Value =
        serde_json::from_str(value.trim()).map_err(|e| format!("value is not JSON ({e})"))?;
    let (path, append) = match key.trim().strip_suffix("[]") {
        Some(path) => (path, true),
        None => (key.trim(), false),
    };
    let segments: Vec<&str> = path.split('.').collect();
    if let Some(bad) = segments.iter().find(|s| !is_word(s)) {
        return Err(format!("bad key segment {bad:?}"));
    }
    let (last, parents) = segments.split_last().ok_or("empty key")?;
    let mut object = fields;
    for (depth, segment) in parents.iter().enumerate() {
        let slot = object
            .entry(*segment)
            .or_insert_with(|| Value::Object(Map::new()));
        object = slot
            .as_object_mut()
            .ok_or_else(|| format!("{} is not an object", segments[..=depth].join(".")))?;
    }
    if append {
        let slot = object
            .entry(*last)
            .or_insert_with(|| Value::Array(Vec::new()));
        let array = slot
            .as_array_mut()
            .ok_or_else(|| format!("{path} is not an array"))?;
        array.push(value);
    } else {
        object.insert((*last).to_owned(), value);
    }
    Ok(())
}

fn is_word(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Cuts a long line for an error message.
fn shorten(line: &str) -> String {
    const MAX: usize = 120;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The merged report: the kernel's fields, then the runner's on top (the
/// runner's win), then `report_errors`. The caller leaves `failure` out of
/// `runner` when it has no reason of its own, so the kernel's stays.
///
/// Both sides write `result` and `failure` on purpose. Any other kernel
/// field that a runner field replaces with a different value is not lost:
/// it moves to `kernel_shadowed.<key>`, and `report_errors` says so.
pub(crate) fn merge(kernel: KernelReport, runner: Map<String, Value>) -> Value {
    let mut errors = kernel.errors;
    let mut merged = kernel.fields;
    let mut shadowed = Map::new();
    for (key, value) in runner {
        let Some(old) = merged.insert(key.clone(), value) else {
            continue;
        };
        let both_write = [report_key::RESULT, report_key::FAILURE].contains(&key.as_str());
        if !both_write && old != merged[&key] {
            errors.push(format!(
                "kernel field {key} is shadowed by the runner's (kept as kernel_shadowed.{key})"
            ));
            shadowed.insert(key, old);
        }
    }
    if !shadowed.is_empty() {
        merged.insert("kernel_shadowed".to_owned(), Value::Object(shadowed));
    }
    let errors = errors.into_iter().map(Value::String).collect();
    merged.insert("report_errors".to_owned(), Value::Array(errors));
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_keys_nest() {
        let report = parse("boot.ready_ms=12.5\nboot.cpus=4\nresult=\"pass\"\n");
        assert_eq!(
            Value::Object(report.fields),
            json!({"boot": {"ready_ms": 12.5, "cpus": 4}, "result": "pass"})
        );
        assert!(report.errors.is_empty());
    }

    #[test]
    fn brackets_append() {
        let text =
            "cpus[]={\"vp\":0,\"apic_id\":0}\r\ncpus[]={\"vp\":1,\"apic_id\":2}\nx.y[]=[1]\n";
        let report = parse(text);
        assert_eq!(
            Value::Object(report.fields),
            json!({
                "cpus": [{"vp": 0, "apic_id": 0}, {"vp": 1, "apic_id": 2}],
                "x": {"y": [[1]]},
            })
        );
    }

    #[test]
    fn later_value_replaces() {
        let report = parse("phase=\"start\"\nphase=\"done\"\n");
        assert_eq!(report.fields["phase"], json!("done"));
    }

    #[test]
    fn malformed_lines_are_recorded_and_skipped() {
        let text = "no equals\n\nok=1\nbad=not json\n.x=1\na..b=1\nok.inner=2\nlist=3\nlist[]=4\n=5\ntrue=true";
        let report = parse(text);
        assert_eq!(
            Value::Object(report.fields.clone()),
            json!({"ok": 1, "list": 3, "true": true})
        );
        let errors = report.errors.join("\n");
        assert_eq!(report.errors.len(), 7, "{errors}");
        assert!(report.errors[0].starts_with("line 1: no '='"), "{errors}");
        assert!(
            report.errors[1].starts_with("line 4: value is not JSON"),
            "{errors}"
        );
        assert!(errors.contains("line 7: ok is not an object"), "{errors}");
        assert!(errors.contains("line 9: list is not an array"), "{errors}");
    }

    #[test]
    fn cut_off_last_line_is_an_error() {
        let report = parse("result=\"pass\"\nfailure=\"half");
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.str_field("result"), Some("pass"));
    }

    #[test]
    fn runner_fields_win() {
        let text = "result=\"pass\"\ncpus[]={\"vp\":0}\nfailure=\"kernel said\"\n\
                    scenario=\"boot\"\nboot.ms=1\nbroken";
        let mut runner = Map::new();
        runner.insert("result".into(), json!("fail"));
        runner.insert("cpus".into(), json!(4));
        runner.insert("scenario".into(), json!("boot"));
        let merged = merge(parse(text), runner);
        assert_eq!(merged["result"], "fail");
        assert_eq!(merged["cpus"], 4);
        assert_eq!(merged["scenario"], "boot");
        assert_eq!(merged["failure"], "kernel said");
        assert_eq!(merged["boot"]["ms"], 1);
        assert_eq!(merged["kernel_shadowed"], json!({"cpus": [{"vp": 0}]}));
        let errors = merged["report_errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[1],
            "kernel field cpus is shadowed by the runner's (kept as kernel_shadowed.cpus)"
        );
    }
}
