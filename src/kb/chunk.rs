//! Turning entries into retrievable chunks: one per FAQ entry, product and
//! shipping rule, one per `## ` section of a policy (keeping the document
//! title and the heading as context). A chunk's `text` is what both indexes
//! see; its `fields` are what a caller gets back to answer from (the FAQ
//! answer, a product's variants with stock and price, a rule's days and cost).

use serde::{Deserialize, Serialize};

use super::entry::{country_name, KbEntry, Policy, Product, ShippingRule};
use crate::store::KbKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub kind: KbKind,
    pub entry_id: String,
    /// The policy section heading; `None` for whole entries.
    pub section: Option<String>,
    pub title: String,
    pub lang: String,
    /// The text indexed by BM25 and embedded as a passage.
    pub text: String,
    /// The structured content to answer from.
    pub fields: serde_json::Value,
    /// Question variants, embedded one by one besides `text` (a buyer's
    /// question is closest to another question, in any language).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<String>,
}

pub fn chunks(entry: &KbEntry) -> Vec<Chunk> {
    let whole = |title: String, text: String| Chunk {
        kind: entry.kind(),
        entry_id: entry.id(),
        section: None,
        title,
        lang: entry.lang().as_str().to_owned(),
        text,
        fields: entry.to_json(),
        questions: Vec::new(),
    };
    match entry {
        KbEntry::Faq(faq) => {
            let mut text = faq.questions.join("\n");
            text.push('\n');
            text.push_str(&faq.answer);
            let mut chunk = whole(faq.questions[0].clone(), text);
            chunk.questions = faq.questions.clone();
            vec![chunk]
        }
        KbEntry::Product(product) => vec![whole(product.name.clone(), product_text(product))],
        KbEntry::Shipping(rule) => vec![whole(shipping_title(rule), shipping_text(rule))],
        KbEntry::Policy(policy) => policy_chunks(policy),
    }
}

fn product_text(p: &Product) -> String {
    let mut lines = vec![p.name.clone()];
    if !p.category.is_empty() {
        lines.push(p.category.replace('/', " / "));
    }
    if !p.description.is_empty() {
        lines.push(p.description.clone());
    }
    if !p.attributes.is_empty() {
        let attrs: Vec<String> = p
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        lines.push(attrs.join("; "));
    }
    let mut options: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for variant in &p.variants {
        for (key, value) in &variant.options {
            let values = options.entry(key).or_default();
            if !values.contains(&value.as_str()) {
                values.push(value);
            }
        }
    }
    if !options.is_empty() {
        let opts: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.join(", ")))
            .collect();
        lines.push(format!("Options: {}", opts.join("; ")));
    }
    let mut tail = format!("Price {:.2} {}.", p.price, p.currency);
    if !p.ships_from.is_empty() {
        tail.push_str(&format!(" Ships from {}.", p.ships_from));
    }
    lines.push(tail);
    if !p.tags.is_empty() {
        lines.push(p.tags.join(", "));
    }
    lines.join("\n")
}

fn shipping_title(rule: &ShippingRule) -> String {
    let country = country_name(&rule.destination).unwrap_or(&rule.destination);
    format!("Shipping to {country}: {} {}", rule.carrier, rule.service)
}

fn shipping_text(rule: &ShippingRule) -> String {
    let country = country_name(&rule.destination).unwrap_or("");
    let mut text = format!(
        "Shipping to {country} ({}) by {} {}: delivery in {} to {} days, shipping cost {:.2} {}.",
        rule.destination,
        rule.carrier,
        rule.service,
        rule.min_days,
        rule.max_days,
        rule.cost,
        rule.currency
    );
    if let Some(free) = rule.free_over {
        text.push_str(&format!(
            " Free shipping on orders over {free:.2} {}.",
            rule.currency
        ));
    }
    if !rule.notes.is_empty() {
        text.push(' ');
        text.push_str(&rule.notes);
    }
    text
}

/// One chunk per `## ` section; text before the first such heading (less
/// the `# ` title line) is a chunk of its own when it has any words.
fn policy_chunks(policy: &Policy) -> Vec<Chunk> {
    let mut sections: Vec<(Option<String>, Vec<&str>)> = vec![(None, Vec::new())];
    for line in policy.body.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            sections.push((Some(heading.trim().to_owned()), Vec::new()));
        } else if line.starts_with("# ") && sections.len() == 1 {
            continue;
        } else if let Some((_, lines)) = sections.last_mut() {
            lines.push(line);
        }
    }
    sections
        .into_iter()
        .filter_map(|(heading, lines)| {
            let body = lines.join("\n").trim().to_owned();
            if body.is_empty() && heading.is_none() {
                return None;
            }
            let context = match &heading {
                Some(h) => format!("{} - {h}", policy.title),
                None => policy.title.clone(),
            };
            Some(Chunk {
                kind: KbKind::Policy,
                entry_id: policy.id.clone(),
                section: heading.clone(),
                title: context.clone(),
                lang: policy.lang.as_str().to_owned(),
                text: format!("{context}\n{body}"),
                fields: serde_json::json!({
                    "title": policy.title,
                    "section": heading,
                    "body": body,
                }),
                questions: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_split_at_second_level_headings_with_their_title() {
        let entry = KbEntry::from_json(
            KbKind::Policy,
            json!({"id": "returns", "title": "Returns policy", "lang": "en",
                   "body": "# Returns policy\n\nWe want you happy.\n\n## Window\n15 days.\n\n## Condition\nUnworn, with tags.\n"}),
        )
        .unwrap();
        let chunks = chunks(&entry);
        let titles: Vec<&str> = chunks.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Returns policy",
                "Returns policy - Window",
                "Returns policy - Condition"
            ]
        );
        assert_eq!(chunks[1].text, "Returns policy - Window\n15 days.");
        assert_eq!(chunks[2].fields["section"], "Condition");
    }

    #[test]
    fn products_list_their_options_and_keep_variants_as_fields() {
        let entry = KbEntry::from_json(
            KbKind::Product,
            json!({"sku": "TEE-1", "name": "Oversized Tee", "category": "fashion/tops",
                   "price": 12.9, "currency": "USD", "ships_from": "Guangzhou, CN", "lang": "en",
                   "variants": [
                       {"sku": "TEE-1-RED-XL", "options": {"colour": "red", "size": "XL"}, "stock": 0},
                       {"sku": "TEE-1-RED-M", "options": {"colour": "red", "size": "M"}, "stock": 4}]}),
        )
        .unwrap();
        let chunk = &chunks(&entry)[0];
        assert!(
            chunk.text.contains("Options: colour: red; size: XL, M"),
            "{}",
            chunk.text
        );
        assert!(chunk.text.contains("Ships from Guangzhou, CN."));
        assert_eq!(chunk.fields["variants"][0]["stock"], 0);
    }

    #[test]
    fn shipping_rules_name_the_country() {
        let entry = KbEntry::from_json(
            KbKind::Shipping,
            json!({"destination": "TH", "carrier": "Flash Express", "service": "Standard",
                   "min_days": 3, "max_days": 6, "cost": 2.5, "currency": "USD", "free_over": 30.0}),
        )
        .unwrap();
        let chunk = &chunks(&entry)[0];
        assert!(
            chunk.text.starts_with("Shipping to Thailand (TH)"),
            "{}",
            chunk.text
        );
        assert!(chunk
            .text
            .contains("Free shipping on orders over 30.00 USD"));
    }
}
