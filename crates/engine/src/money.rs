//! Amounts as people read them: Stripe keeps minor units (cents), except for zero-decimal
//! currencies (JPY, KRW, …: whole units) and a few three-decimal ones (KWD, BHD, …).

/// Currencies Stripe counts in whole units.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Currencies Stripe counts in thousandths.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// How many decimals a currency's minor unit has.
pub fn decimals(currency: &str) -> u32 {
    let currency = currency.to_ascii_lowercase();
    if ZERO_DECIMAL.contains(&currency.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&currency.as_str()) {
        3
    } else {
        2
    }
}

/// `$1,234.50`, `€12.00`, `¥1,200`, `12.500 KWD`, `-$5.00`.
pub fn format(minor: i64, currency: &str) -> String {
    let places = decimals(currency);
    let scale = 10u64.pow(places);
    let whole = minor.unsigned_abs() / scale;
    let fraction = minor.unsigned_abs() % scale;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let number = if places == 0 {
        grouped
    } else {
        format!("{grouped}.{fraction:0width$}", width = places as usize)
    };
    let sign = if minor < 0 { "-" } else { "" };
    match currency.to_ascii_lowercase().as_str() {
        "usd" => format!("{sign}${number}"),
        "eur" => format!("{sign}€{number}"),
        "gbp" => format!("{sign}£{number}"),
        "jpy" => format!("{sign}¥{number}"),
        other => format!("{sign}{number} {}", other.to_ascii_uppercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_people_write_them() {
        assert_eq!(format(123_450, "usd"), "$1,234.50");
        assert_eq!(format(1_200, "EUR"), "€12.00");
        assert_eq!(format(1_200, "jpy"), "¥1,200");
        assert_eq!(format(5, "usd"), "$0.05");
        assert_eq!(format(-500, "gbp"), "-£5.00");
        assert_eq!(format(12_500, "kwd"), "12.500 KWD");
        assert_eq!(format(1_000_000, "krw"), "1,000,000 KRW");
        assert_eq!(format(0, "chf"), "0.00 CHF");
    }
}
