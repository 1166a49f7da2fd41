//! Kubernetes resource quantities (`64Mi`, `1Gi`, `500M`, `1e9`, `1500k`, `12345`), as
//! `resource.ParseQuantity` reads them, turned into whole units rounded up as
//! `Quantity.Value()` does.

/// Parses a quantity of bytes (or of anything counted in whole units).
pub fn parse(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid quantity {text:?}: {why}");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (mut number, suffix) = text.split_at(split);
    if number.is_empty() {
        return Err(bad("it must start with a number"));
    }
    if let Some(rest) = number.strip_prefix('+') {
        number = rest;
    } else if number.starts_with('-') {
        return Err(bad("it must not be negative"));
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(int) || !digits_ok(frac) || (int.is_empty() && frac.is_empty()) {
        return Err(bad("the number is malformed"));
    }
    let (base, exp) = suffix_multiplier(suffix).ok_or_else(|| {
        bad(&format!(
            "unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E, m or e<N>)"
        ))
    })?;
    // value = mantissa / 10^frac_len * base^exp, computed exactly and rounded up.
    let too_big = || bad("it is too large");
    let mantissa: u128 = format!("{int}{frac}")
        .trim_start_matches('0')
        .parse()
        .unwrap_or(0);
    let mut num = mantissa;
    let mut den: u128 = 10u128.checked_pow(frac.len() as u32).ok_or_else(too_big)?;
    let factor = (base as u128)
        .checked_pow(exp.unsigned_abs())
        .ok_or_else(too_big)?;
    if exp >= 0 {
        num = num.checked_mul(factor).ok_or_else(too_big)?;
    } else {
        den = den.checked_mul(factor).ok_or_else(too_big)?;
    }
    u64::try_from(num.div_ceil(den)).map_err(|_| too_big())
}

/// `(base, exponent)` of a suffix: `Ki` is 1024^1, `k` is 10^3, `e6` is 10^6.
fn suffix_multiplier(suffix: &str) -> Option<(u64, i32)> {
    let binary = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if let Some(i) = binary.iter().position(|s| *s == suffix) {
        return Some((1024, i as i32 + 1));
    }
    let decimal = [
        ("n", -9),
        ("u", -6),
        ("m", -3),
        ("", 0),
        ("k", 3),
        ("M", 6),
        ("G", 9),
        ("T", 12),
        ("P", 15),
        ("E", 18),
    ];
    if let Some((_, e)) = decimal.iter().find(|(s, _)| *s == suffix) {
        return Some((10, *e));
    }
    let exp = suffix.strip_prefix(['e', 'E'])?;
    let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    exp.parse().ok().map(|e| (10, e))
}

/// Parses a positive quantity, for limits.
pub fn parse_positive(text: &str) -> Result<u64, String> {
    match parse(text)? {
        0 => Err(format!(
            "invalid quantity {text:?}: it must be greater than zero"
        )),
        n => Ok(n),
    }
}

/// Writes `n` as the shortest exact binary quantity: 2097152 is `2Mi`, 1000 is `1000`.
pub fn format_binary(n: u64) -> String {
    let suffixes = ["Ei", "Pi", "Ti", "Gi", "Mi", "Ki"];
    for (i, suffix) in suffixes.iter().enumerate() {
        let unit = 1u64 << (10 * (6 - i));
        if n != 0 && n.is_multiple_of(unit) {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_forms() {
        let cases = [
            ("64Mi", 64 << 20),
            ("1Gi", 1 << 30),
            ("500M", 500_000_000),
            ("1e9", 1_000_000_000),
            ("1E3", 1000),
            ("1500k", 1_500_000),
            ("12345", 12345),
            ("+1Ki", 1024),
            ("1.5Gi", 1_610_612_736),
            (".5Ki", 512),
            ("100m", 1),
            ("0", 0),
            ("1.0001", 2),
            ("8Ei", 1 << 63),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn binary_forms_round_trip() {
        for (n, text) in [
            (2 << 20, "2Mi"),
            (1 << 30, "1Gi"),
            (64 << 10, "64Ki"),
            (1000, "1000"),
            (0, "0"),
        ] {
            assert_eq!(format_binary(n), text);
            assert_eq!(parse(text), Ok(n));
        }
    }

    #[test]
    fn refusals_name_the_input() {
        for bad in [
            "12Zi", "-1", "1.5.2Gi", "", "Mi", "1K", "1 Mi", "1e", "16Ei", "1e30", "1..", ".",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert!(
            parse_positive("0")
                .unwrap_err()
                .contains("greater than zero")
        );
    }
}
