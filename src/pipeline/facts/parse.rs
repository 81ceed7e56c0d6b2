//! Finding facts in folded text: one pattern per kind, tried from the most
//! specific (emails, links, dates, money) to the least (bare numbers); a
//! piece of text belongs to the first fact that claims it.

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::{Fact, FactKind, UNKNOWN_CURRENCY};
use crate::text::{fold, folded_regex};

/// A number as written: digits with `.` or `,` between groups.
const NUM: &str = r"\d+(?:[.,]\d+)*";

/// Currency signs and codes written before an amount.
const CUR_BEFORE: &str = r"us\$|r\$|s\$|\brm|\brp|\bphp|\bthb|\busd|\bsgd|\bmyr|\bidr|\bvnd|\bbrl|\beur|\bcny|\brmb|\$|₱|฿|€|¥|£|₫";
/// Currency words and signs written after an amount.
const CUR_AFTER: &str = r"usd\b|us\$|dollars?\b|bucks\b|rm\b|ringgit\b|rp\b|rupiah\b|baht\b|บาท|thb\b|pesos?\b|php\b|₱|vnd\b|dong\b|d\b|₫|reais\b|real\b|brl\b|r\$|eur\b|euros?\b|€|sgd\b|元|块|塊|人民币";
/// Multipliers written after a number: thousands, millions.
const MULT: &str = r"k\b|rb\b|ribu\b|nghin\b|ngan\b|jt\b|juta\b|trieu\b|mil\b|万|千";

/// The normalised value of a match, or `None` to leave the text to the
/// rules after this one.
type Value = fn(&Captures<'_>) -> Option<String>;

struct Rule {
    kind: FactKind,
    regex: Regex,
    value: Value,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let month = month_names();
    let th_month = thai_month_names();
    let day_units = r"(?:working |business )?days?\b|hari(?: kerja)?\b|ngay(?: lam viec)?\b|วันทำการ|วัน|dias? uteis\b|dias? habiles\b|dias?\b|araw\b|个工作日|個工作日|工作日|天";
    let units = format!(
        r"(?<day>{day_units})|(?<hour>hours?\b|hrs?\b|h\b|jam\b|gio\b|ชั่วโมง|ชม\.|horas?\b|oras\b|小时|小時)|(?<week>weeks?\b|minggu\b|tuan\b|สัปดาห์|อาทิตย์|semanas?\b|linggo\b|周|週|星期)|(?<month>months?\b|bulan\b|thang\b|เดือน|mes(?:es)?\b|meses\b|buwan\b|个月|個月)|(?<minute>minutes?\b|mins?\b|menit\b|minit\b|phut\b|นาที|minutos?\b|分钟|分鐘)|(?<year>years?\b|tahun\b|ปี|anos?\b|taon\b)"
    );
    let range = r"(?:\s?(?:-|–|~|to|a|ate|hasta|sampai|hingga|den|ถึง|到|至)\s?)";
    let rules: Vec<(FactKind, String, Value)> = vec![
        (
            FactKind::Email,
            r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}".into(),
            |c| Some(c[0].to_string()),
        ),
        (
            FactKind::Link,
            r"(?:https?://)?(?:[\w-]+\.)+[^\W\d_][\w-]+(?:/[^\s<>()\[\]]*)?".into(),
            |c| Some(link_value(&c[0])),
        ),
        (
            FactKind::Date,
            r"\b(?<y>\d{4})[-/.](?<m>\d{1,2})[-/.](?<d>\d{1,2})\b".into(),
            date_value,
        ),
        (
            FactKind::Date,
            r"\b(?<d>\d{1,2})[/.-](?<m>\d{1,2})[/.-](?<y>\d{4}|\d{2})\b".into(),
            date_value,
        ),
        (
            FactKind::Date,
            r"\b(?<d>\d{1,2})/(?<m>\d{1,2})\b".into(),
            date_value,
        ),
        (
            FactKind::Date,
            r"\bngay (?<d>\d{1,2}) thang (?<m>\d{1,2})(?: nam (?<y>\d{4}))?".into(),
            date_value,
        ),
        (
            FactKind::Date,
            format!(
                r"\b(?<d>\d{{1,2}})(?:st|nd|rd|th)? (?:de )?(?:ng )?(?<mn>{month})\b\.?(?:,? (?:de )?(?<y>\d{{4}}))?"
            ),
            date_value,
        ),
        (
            FactKind::Date,
            format!(r"\b(?<mn>{month})\.? (?<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,? (?<y>\d{{4}}))?"),
            date_value,
        ),
        (
            FactKind::Date,
            format!(r"(?<d>\d{{1,2}}) ?(?<mn>{th_month})(?: ?(?<y>\d{{4}}))?"),
            date_value,
        ),
        (
            FactKind::Date,
            r"(?:(?<y>\d{4}) ?年 ?)?(?<m>\d{1,2}) ?月 ?(?<d>\d{1,2}) ?[日号號]".into(),
            date_value,
        ),
        (
            FactKind::Number,
            r"\b(?<h>\d{1,2}):(?<min>\d{2})\b".into(),
            |c| Some(format!("{}:{}", c["h"].parse::<u32>().ok()?, &c["min"])),
        ),
        (
            FactKind::Amount,
            format!(r"(?<cur>{CUR_BEFORE}) ?(?<n>{NUM})(?: ?(?<mult>{MULT}))?"),
            amount_value,
        ),
        (
            FactKind::Amount,
            format!(r"(?<n>{NUM})(?: ?(?<mult>{MULT}))? ?(?<cur>{CUR_AFTER})"),
            amount_value,
        ),
        (
            FactKind::Percentage,
            format!(
                r"(?<n>{NUM}) ?(?:%|percent\b|per cent\b|pct\b|persen\b|peratus\b|por ciento\b|por cento\b|porcento\b|phan tram\b|เปอร์เซ็นต์|porsiyento\b)"
            ),
            |c| number(&c["n"]),
        ),
        (
            FactKind::Percentage,
            format!(r"百分之(?<n>{NUM})"),
            |c| number(&c["n"]),
        ),
        (
            FactKind::Percentage,
            r"(?<n>\d{1,2}(?:\.\d)?) ?折".into(),
            |c| {
                // 八折 is 80% of the price: 20% off; 八五折 (85) is 8.5.
                let mut tenths: f64 = c["n"].parse().ok()?;
                if tenths >= 10.0 {
                    tenths /= 10.0;
                }
                Some(trim_number(&format!("{:.1}", 100.0 - tenths * 10.0)))
            },
        ),
        (
            FactKind::Amount,
            format!(r"\b(?<n>{NUM}) ?(?<mult>k\b|rb\b|ribu\b|jt\b|juta\b|nghin\b|ngan\b|trieu\b)"),
            amount_value,
        ),
        (
            FactKind::Duration,
            format!(r"(?<a>{NUM})(?:{range}(?<b>{NUM}))? ?(?:{units})"),
            duration_value,
        ),
        (
            FactKind::Quantity,
            format!(
                r"(?<n>{NUM}) ?(?<unit>kg\b|g\b|gr\b|grams?\b|mg\b|cm\b|mm\b|m\b|km\b|l\b|ml\b|liters?\b|litres?\b|mah\b|wh\b|kwh\b|w\b|v\b|inch(?:es)?\b|pcs\b|pc\b|pieces?\b|helai\b|pasang\b|ชิ้น|cai\b|chiec\b|件|pairs?\b|gb\b|tb\b|mp\b|hz\b|db\b|°c\b)"
            ),
            |c| Some(format!("{} {}", number(&c["n"])?, unit_name(&c["unit"]))),
        ),
        (
            FactKind::Code,
            r"\b[a-z0-9]+(?:[-_/][a-z0-9]+)*\b".into(),
            code_value,
        ),
        (
            FactKind::Phone,
            r"(?:\+ ?)?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,5}\)?){2,5}".into(),
            phone_value,
        ),
        (FactKind::Code, r"\b\d{8,}\b".into(), |c| {
            Some(c[0].to_string())
        }),
        (FactKind::Number, NUM.into(), |c| number(&c[0])),
    ];
    rules
        .into_iter()
        .map(|(kind, pattern, value)| Rule {
            kind,
            regex: folded_regex(&pattern),
            value,
        })
        .collect()
});

/// Every fact of `text`, in order of position.
pub fn extract(text: &str) -> Vec<Fact> {
    let folded = spaced(&chinese_numerals(&fold(text)));
    let mut claimed: Vec<(usize, usize, Fact)> = Vec::new();
    for rule in RULES.iter() {
        for captures in rule.regex.captures_iter(&folded) {
            let whole = captures.get(0).expect("group 0");
            let (start, end) = (whole.start(), whole.end());
            if start == end || claimed.iter().any(|(s, e, _)| start < *e && *s < end) {
                continue;
            }
            if let Some(value) = (rule.value)(&captures) {
                claimed.push((
                    start,
                    end,
                    Fact {
                        kind: rule.kind,
                        value,
                        text: whole.as_str().trim().to_string(),
                    },
                ));
            }
        }
    }
    claimed.sort_by_key(|(start, _, _)| *start);
    claimed.into_iter().map(|(_, _, fact)| fact).collect()
}

/// A number written with `.` or `,` between digit groups, as plain digits
/// with a `.` before any fraction: the last separator is the decimal one
/// when both kinds appear; one kind appearing more than once groups
/// thousands; a single one before exactly three digits groups thousands
/// (`50.000`, `1,500`), before other counts it is decimal (`2.50`, `2,5`).
pub(super) fn number(written: &str) -> Option<String> {
    let dots = written.matches('.').count();
    let commas = written.matches(',').count();
    let decimal = match (dots, commas) {
        (0, 0) => None,
        (d, c) if d > 0 && c > 0 => written.rfind(['.', ',']),
        (n, 0) | (0, n) if n > 1 => None,
        _ => {
            let at = written.rfind(['.', ','])?;
            let after = written.len() - at - 1;
            (after != 3 || written[..at].len() > 3 || written.starts_with('0')).then_some(at)
        }
    };
    let (whole, fraction) = match decimal {
        Some(at) => (&written[..at], &written[at + 1..]),
        None => (written, ""),
    };
    let whole: String = whole.chars().filter(char::is_ascii_digit).collect();
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    if whole.len() > 18 {
        // An identifier, not a quantity; keep its digits.
        return Some(whole.to_string());
    }
    Some(trim_number(&format!("{whole}.{fraction}")))
}

/// `12.500` as `12.5`, `3.0` and `3.` as `3`.
fn trim_number(text: &str) -> String {
    if !text.contains('.') {
        return text.to_string();
    }
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn multiplied(value: &str, multiplier: Option<&str>) -> Option<String> {
    let factor: u64 = match multiplier.unwrap_or("") {
        "" => return Some(value.to_string()),
        "k" | "rb" | "ribu" | "nghin" | "ngan" | "mil" | "千" => 1_000,
        "jt" | "juta" | "trieu" => 1_000_000,
        "万" => 10_000,
        _ => return Some(value.to_string()),
    };
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = format!("{whole}{fraction}");
    let scale = 10u64.checked_pow(fraction.len() as u32)?;
    let n: u64 = digits.parse().ok()?;
    let scaled = n.checked_mul(factor)?;
    Some(trim_number(&format!(
        "{}.{:0width$}",
        scaled / scale,
        scaled % scale,
        width = fraction.len().max(1)
    )))
}

fn currency_code(written: &str) -> Option<&'static str> {
    Some(match written.trim() {
        "$" | "us$" | "usd" | "dollar" | "dollars" | "bucks" => "USD",
        "rm" | "myr" | "ringgit" => "MYR",
        "rp" | "idr" | "rupiah" => "IDR",
        "฿" | "thb" | "baht" | "บาท" => "THB",
        "₱" | "php" | "peso" | "pesos" => "PHP",
        "₫" | "vnd" | "dong" | "d" => "VND",
        "r$" | "brl" | "real" | "reais" => "BRL",
        "€" | "eur" | "euro" | "euros" => "EUR",
        "s$" | "sgd" => "SGD",
        "¥" | "cny" | "rmb" | "元" | "块" | "塊" | "人民币" => "CNY",
        "£" => "GBP",
        _ => return None,
    })
}

fn amount_value(c: &Captures<'_>) -> Option<String> {
    let value = multiplied(&number(&c["n"])?, c.name("mult").map(|m| m.as_str()))?;
    let currency = match c.name("cur") {
        Some(cur) => currency_code(cur.as_str())?,
        None => UNKNOWN_CURRENCY,
    };
    if c.name("cur").is_some_and(|m| m.as_str() == "d") {
        // A bare `d` after a number is the đồng (folded) only for sums a
        // price in đồng reaches; "3d" is more likely three days.
        let whole: f64 = value.parse().ok()?;
        if whole < 1000.0 {
            return None;
        }
    }
    Some(format!("{currency} {value}"))
}

fn duration_value(c: &Captures<'_>) -> Option<String> {
    let unit = ["day", "hour", "week", "month", "minute", "year"]
        .into_iter()
        .find(|u| c.name(u).is_some())?;
    let a = number(&c["a"])?;
    Some(match c.name("b") {
        Some(b) => format!("{a}-{} {unit}", number(b.as_str())?),
        None => format!("{a} {unit}"),
    })
}

fn unit_name(written: &str) -> &str {
    match written {
        "gr" | "gram" | "grams" => "g",
        "liter" | "liters" | "litre" | "litres" => "l",
        "inch" | "inches" => "inch",
        "pc" | "pcs" | "piece" | "pieces" | "helai" | "ชิ้น" | "cai" | "chiec" | "件" => {
            "pcs"
        }
        "pair" | "pairs" | "pasang" => "pair",
        other => other,
    }
}

fn date_value(c: &Captures<'_>) -> Option<String> {
    let day: u32 = c.name("d")?.as_str().parse().ok()?;
    let month: u32 = match (c.name("m"), c.name("mn")) {
        (Some(m), _) => m.as_str().parse().ok()?,
        (None, Some(name)) => month_number(name.as_str())?,
        (None, None) => return None,
    };
    if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    Some(match c.name("y") {
        Some(y) => {
            let mut year: u32 = y.as_str().parse().ok()?;
            if year < 100 {
                year += 2000;
            } else if year > 2400 {
                // The Thai Buddhist era.
                year -= 543;
            }
            format!("{year:04}-{month:02}-{day:02}")
        }
        None => format!("{month:02}-{day:02}"),
    })
}

/// Month names in the folded spellings of every served language, first
/// January.
const MONTHS: [&[&str]; 12] = [
    &["january", "jan", "januari", "janeiro", "enero"],
    &[
        "february",
        "feb",
        "februari",
        "fevereiro",
        "febrero",
        "pebrero",
    ],
    &["march", "mar", "maret", "mac", "marco", "marzo", "marso"],
    &["april", "apr", "abril"],
    &["may", "mei", "maio", "mayo"],
    &["june", "jun", "juni", "junho", "junio", "hunyo"],
    &["july", "jul", "juli", "julai", "julho", "julio", "hulyo"],
    &["august", "aug", "agustus", "ogos", "agosto"],
    &[
        "september",
        "sept",
        "sep",
        "setembro",
        "septiembre",
        "setiembre",
        "setyembre",
    ],
    &["october", "oct", "oktober", "outubro", "octubre", "oktubre"],
    &["november", "nov", "novembro", "noviembre", "nobyembre"],
    &[
        "december",
        "dec",
        "desember",
        "disember",
        "dezembro",
        "diciembre",
        "disyembre",
    ],
];

const THAI_MONTHS: [&[&str]; 12] = [
    &["มกราคม", "ม.ค."],
    &["กุมภาพันธ์", "ก.พ."],
    &["มีนาคม", "มี.ค."],
    &["เมษายน", "เม.ย."],
    &["พฤษภาคม", "พ.ค."],
    &["มิถุนายน", "มิ.ย."],
    &["กรกฎาคม", "ก.ค."],
    &["สิงหาคม", "ส.ค."],
    &["กันยายน", "ก.ย."],
    &["ตุลาคม", "ต.ค."],
    &["พฤศจิกายน", "พ.ย."],
    &["ธันวาคม", "ธ.ค."],
];

fn alternation(names: &[&[&str]; 12]) -> String {
    let mut all: Vec<String> = names
        .iter()
        .flat_map(|m| m.iter().map(|n| regex::escape(&fold(n))))
        .collect();
    // Longest first, so "september" wins over "sep".
    all.sort_by_key(|n| std::cmp::Reverse(n.len()));
    all.join("|")
}

fn month_names() -> String {
    alternation(&MONTHS)
}

fn thai_month_names() -> String {
    alternation(&THAI_MONTHS)
}

fn month_number(name: &str) -> Option<u32> {
    let name = name.trim_end_matches('.');
    MONTHS
        .iter()
        .chain(THAI_MONTHS.iter())
        .position(|names| names.iter().any(|n| fold(n).trim_end_matches('.') == name))
        .map(|i| (i % 12) as u32 + 1)
}

fn link_value(written: &str) -> String {
    let trimmed = written.trim_end_matches(['.', ',', '!', '?', ';', ':', '/']);
    let without_scheme = trimmed
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(trimmed);
    without_scheme
        .strip_prefix("www.")
        .unwrap_or(without_scheme)
        .to_string()
}

fn phone_value(c: &Captures<'_>) -> Option<String> {
    let written = &c[0];
    let digits: String = written.chars().filter(char::is_ascii_digit).collect();
    let separated = written.contains([' ', '.', '-', '(', '+']);
    if !(9..=15).contains(&digits.len()) || (!separated && !written.starts_with('0')) {
        return None;
    }
    Some(digits[digits.len() - 9..].to_string())
}

fn code_value(c: &Captures<'_>) -> Option<String> {
    let written = &c[0];
    let compact: String = written
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_uppercase();
    let digits = compact.chars().filter(char::is_ascii_digit).count();
    let letters = compact.len() - digits;
    (digits >= 1 && letters >= 1 && compact.len() >= 5).then_some(compact)
}

/// `text` with a space wherever ASCII letters or digits meet letters of
/// another script (`满30 USD打9折`, `kedai10优惠`), which write no space
/// between words: the patterns' word boundaries then hold.
fn spaced(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut previous: Option<char> = None;
    for c in text.chars() {
        if let Some(p) = previous {
            let foreign = |c: char| !c.is_ascii() && c.is_alphabetic();
            if (p.is_ascii_alphanumeric() && foreign(c))
                || (foreign(p) && c.is_ascii_alphanumeric())
            {
                out.push(' ');
            }
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

/// Chinese numerals before a unit of time, a date or a discount written
/// as digits (`三天` as `3天`, `十一月` as `11月`, `八折` as `8折`);
/// elsewhere they are words (`一点`, `一下`) and stay.
fn chinese_numerals(text: &str) -> String {
    static NUMERAL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"[零〇一二两兩三四五六七八九十百]+(?<unit>天|周|週|个月|個月|年|元|块|塊|折|小时|小時|分钟|分鐘|月|日|号|號|个工作日|個工作日)")
            .expect("valid regex")
    });
    NUMERAL
        .replace_all(text, |c: &Captures<'_>| {
            let numeral = &c[0][..c[0].len() - c["unit"].len()];
            match chinese_number(numeral) {
                Some(n) => format!("{n}{}", &c["unit"]),
                None => c[0].to_string(),
            }
        })
        .into_owned()
}

fn chinese_number(numeral: &str) -> Option<u32> {
    let digit = |c: char| -> Option<u32> {
        Some(match c {
            '零' | '〇' => 0,
            '一' => 1,
            '二' | '两' | '兩' => 2,
            '三' => 3,
            '四' => 4,
            '五' => 5,
            '六' => 6,
            '七' => 7,
            '八' => 8,
            '九' => 9,
            _ => return None,
        })
    };
    let mut total: u32 = 0;
    let mut current: u32 = 0;
    for c in numeral.chars() {
        match c {
            '十' => {
                total = total.checked_add(current.max(1).checked_mul(10)?)?;
                current = 0;
            }
            '百' => {
                total = total.checked_add(current.max(1).checked_mul(100)?)?;
                current = 0;
            }
            other => current = current.checked_mul(10)?.checked_add(digit(other)?)?,
        }
    }
    total.checked_add(current)
}
