//! Reading a kb folder (`docs/kb-format.md`): `faq*.jsonl`,
//! `policies/*.md`, `products.jsonl` and `shipping.csv`, into validated
//! entries. Everything is parsed before anything is stored, so a bad line
//! anywhere stops the whole import; the error names the file and the line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::entry::{KbEntry, Lang, Policy, ShippingRule};
use super::KbError;
use crate::store::KbKind;

/// Reads every kb file in `dir`. Fails on the first malformed line, on an
/// id used twice, and on a folder without any kb file.
pub fn read_dir(dir: &Path) -> Result<Vec<KbEntry>, KbError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KbError::Io { path, source }
    };
    if !dir.is_dir() {
        return Err(KbError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let mut entries: Vec<(KbEntry, PathBuf, usize)> = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    names.sort();
    let mut found = false;
    for path in &names {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with("faq") && name.ends_with(".jsonl") {
            found = true;
            read_jsonl(path, KbKind::Faq, &mut entries)?;
        } else if name == "products.jsonl" {
            found = true;
            read_jsonl(path, KbKind::Product, &mut entries)?;
        } else if name == "shipping.csv" {
            found = true;
            read_shipping(path, &mut entries)?;
        }
    }
    let policies = dir.join("policies");
    if policies.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&policies)
            .map_err(io(&policies))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(&policies))?;
        files.retain(|p| p.extension().is_some_and(|e| e == "md"));
        files.sort();
        for path in files {
            found = true;
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let (policy, line) = parse_policy(&path, &text)?;
            entries.push((KbEntry::Policy(policy), path, line));
        }
    }
    if !found {
        return Err(KbError::Import {
            file: dir.to_path_buf(),
            line: 0,
            reason: "no knowledge-base files here (expected faq*.jsonl, policies/*.md, \
                     products.jsonl or shipping.csv)"
                .into(),
        });
    }
    let mut seen: HashMap<(KbKind, String), (PathBuf, usize)> = HashMap::new();
    for (entry, file, line) in &entries {
        let key = (entry.kind(), entry.id());
        if let Some((first_file, first_line)) = seen.get(&key) {
            return Err(KbError::Import {
                file: file.clone(),
                line: *line,
                reason: format!(
                    "duplicate {} id {:?} (first defined at {}:{first_line})",
                    key.0,
                    key.1,
                    first_file.display()
                ),
            });
        }
        seen.insert(key, (file.clone(), *line));
    }
    Ok(entries.into_iter().map(|(entry, _, _)| entry).collect())
}

fn read_jsonl(
    path: &Path,
    kind: KbKind,
    out: &mut Vec<(KbEntry, PathBuf, usize)>,
) -> Result<(), KbError> {
    let text = std::fs::read_to_string(path).map_err(|source| KbError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let fail = |reason: String| KbError::Import {
            file: path.to_path_buf(),
            line,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| fail(format!("not valid JSON: {e}")))?;
        let entry = KbEntry::from_json(kind, value).map_err(fail)?;
        out.push((entry, path.to_path_buf(), line));
    }
    Ok(())
}

/// Splits optional `---` front matter (`key: value` lines) from the body.
fn parse_policy(path: &Path, text: &str) -> Result<(Policy, usize), KbError> {
    let fail = |line: usize, reason: String| KbError::Import {
        file: path.to_path_buf(),
        line,
        reason,
    };
    let id = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    super::entry::check_id(&id).map_err(|e| fail(1, format!("file name: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut title = None;
    let mut lang = None;
    let mut tags = Vec::new();
    let mut body_start = 0;
    if lines.first().map(|l| l.trim()) == Some("---") {
        let close = lines
            .iter()
            .skip(1)
            .position(|l| l.trim() == "---")
            .ok_or_else(|| fail(1, "front matter opened with --- is never closed".into()))?
            + 1;
        for (i, raw) in lines.iter().enumerate().take(close).skip(1) {
            if raw.trim().is_empty() {
                continue;
            }
            let (key, value) = raw
                .split_once(':')
                .ok_or_else(|| fail(i + 1, format!("expected `key: value`, got {raw:?}")))?;
            let value = value.trim();
            match key.trim() {
                "title" => title = Some(value.to_owned()),
                "lang" => lang = Some(Lang::parse(value).map_err(|e| fail(i + 1, e))?),
                "tags" => {
                    tags = value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                other => {
                    return Err(fail(
                        i + 1,
                        format!("unknown front-matter key {other:?}; expected title, lang or tags"),
                    ))
                }
            }
        }
        body_start = close + 1;
    }
    let body = lines[body_start.min(lines.len())..].join("\n");
    let title = match title {
        Some(t) => t,
        None => body
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|| id.replace('-', " ")),
    };
    let json = serde_json::json!({
        "id": id,
        "title": title,
        "lang": lang.map(Lang::as_str).unwrap_or("en"),
        "tags": tags,
        "body": body,
    });
    match KbEntry::from_json(KbKind::Policy, json).map_err(|e| fail(body_start + 1, e))? {
        KbEntry::Policy(policy) => Ok((policy, 1)),
        other => unreachable!("a policy parses as a policy, got {:?}", other.kind()),
    }
}

const SHIPPING_HEADER: [&str; 9] = [
    "destination",
    "carrier",
    "service",
    "min_days",
    "max_days",
    "cost",
    "currency",
    "free_over",
    "notes",
];

fn read_shipping(path: &Path, out: &mut Vec<(KbEntry, PathBuf, usize)>) -> Result<(), KbError> {
    let fail = |line: usize, reason: String| KbError::Import {
        file: path.to_path_buf(),
        line,
        reason,
    };
    let file = std::fs::File::open(path).map_err(|source| KbError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let header = reader
        .headers()
        .map_err(|e| fail(1, format!("unreadable header: {e}")))?
        .clone();
    let columns: Vec<&str> = header.iter().collect();
    if columns != SHIPPING_HEADER {
        return Err(fail(
            1,
            format!(
                "header must be `{}`, got `{}`",
                SHIPPING_HEADER.join(","),
                columns.join(",")
            ),
        ));
    }
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            fail(line, format!("malformed CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let number = |i: usize| -> Result<f64, KbError> {
            record[i].parse::<f64>().map_err(|_| {
                fail(
                    line,
                    format!(
                        "{} must be a number, got {:?}",
                        SHIPPING_HEADER[i], &record[i]
                    ),
                )
            })
        };
        let days = |i: usize| -> Result<u32, KbError> {
            record[i].parse::<u32>().map_err(|_| {
                fail(
                    line,
                    format!(
                        "{} must be a whole number of days, got {:?}",
                        SHIPPING_HEADER[i], &record[i]
                    ),
                )
            })
        };
        let rule = ShippingRule {
            destination: record[0].to_owned(),
            carrier: record[1].to_owned(),
            service: record[2].to_owned(),
            min_days: days(3)?,
            max_days: days(4)?,
            cost: number(5)?,
            currency: record[6].to_owned(),
            free_over: if record[7].is_empty() {
                None
            } else {
                Some(number(7)?)
            },
            notes: record[8].to_owned(),
        };
        let value = serde_json::to_value(&rule).expect("a shipping rule serialises");
        let entry = KbEntry::from_json(KbKind::Shipping, value).map_err(|e| fail(line, e))?;
        out.push((entry, path.to_path_buf(), line));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::TempDir::new().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const FAQ: &str = r#"{"id": "returns-window", "questions": ["How many days to return?"], "answer": "15 days.", "lang": "en"}"#;

    #[test]
    fn a_malformed_line_names_file_and_line() {
        let dir = folder(&[("faq.jsonl", &format!("{FAQ}\n\n{{\"id\": \"x\",\n"))]);
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("faq.jsonl:3:") && err.contains("not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_ids_across_files_name_both_places() {
        let dir = folder(&[("faq.jsonl", FAQ), ("faq-more.jsonl", &format!("\n{FAQ}"))]);
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("duplicate faq id \"returns-window\""), "{err}");
        assert!(
            err.contains("faq.jsonl:1:") && err.contains("faq-more.jsonl:2)"),
            "{err}"
        );
    }

    #[test]
    fn policies_keep_front_matter_and_shipping_rules_parse_quoted_notes() {
        let dir = folder(&[
            (
                "policies/returns.md",
                "---\ntitle: Returns\nlang: en\ntags: returns, refunds\n---\n# Returns\n\n## Window\n15 days.\n",
            ),
            (
                "shipping.csv",
                "destination,carrier,service,min_days,max_days,cost,currency,free_over,notes\n\
                 TH,Flash Express,Standard,3,6,2.50,USD,30,\"Cash on delivery, in Bangkok only\"\n\
                 BR,Correios,Economy,12,25,6.90,USD,,\n",
            ),
        ]);
        let entries = read_dir(dir.path()).unwrap();
        assert_eq!(entries.len(), 3);
        let KbEntry::Policy(policy) = &entries[2] else {
            panic!("{entries:?}")
        };
        assert_eq!((policy.title.as_str(), policy.tags.len()), ("Returns", 2));
        let KbEntry::Shipping(th) = &entries[0] else {
            panic!("{entries:?}")
        };
        assert_eq!(th.notes, "Cash on delivery, in Bangkok only");
        assert_eq!(entries[0].id(), "th-flash-express-standard");
        let KbEntry::Shipping(br) = &entries[1] else {
            panic!("{entries:?}")
        };
        assert_eq!(br.free_over, None);
    }

    #[test]
    fn bad_shipping_rows_and_policy_languages_name_the_line() {
        let dir = folder(&[(
            "shipping.csv",
            "destination,carrier,service,min_days,max_days,cost,currency,free_over,notes\n\
             TH,Flash,Standard,3,6,2.50,USD,,\n\
             VN,GHN,Standard,three,6,2.50,USD,,\n",
        )]);
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("shipping.csv:3:") && err.contains("min_days"),
            "{err}"
        );

        let dir = folder(&[("policies/returns.md", "---\nlang: klingon\n---\nbody\n")]);
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("returns.md:2:") && err.contains("unknown language"),
            "{err}"
        );
    }

    #[test]
    fn a_folder_without_kb_files_is_an_error() {
        let dir = folder(&[("notes.txt", "hello")]);
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no knowledge-base files"), "{err}");
    }
}
