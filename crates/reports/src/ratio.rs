//! Exact rational amounts. MRR divides by 12, by interval counts and by 52/12 or 365/12, so a
//! sum of floats or of rounded cents would drift: amounts stay exact fractions of minor units
//! until they are rounded to millionths of a minor unit, once per subscription (see
//! [`Ratio::micros`]), and movements are differences of those, so they add up exactly.

use std::cmp::Ordering;
use std::ops::{Add, Mul, Neg, Sub};

/// `num / den`, `den > 0`, always reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ratio {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Millionths of a minor unit per minor unit.
pub const MICROS: i128 = 1_000_000;

impl Ratio {
    pub const ZERO: Ratio = Ratio { num: 0, den: 1 };
    pub const ONE: Ratio = Ratio { num: 1, den: 1 };

    /// `num / den`; a zero denominator is taken as zero (nothing is divided by nothing here).
    pub fn new(num: i128, den: i128) -> Ratio {
        if den == 0 {
            return Ratio::ZERO;
        }
        let sign = if den < 0 { -1 } else { 1 };
        let g = gcd(num, den);
        Ratio {
            num: sign * num / g,
            den: sign * den / g,
        }
    }

    pub fn int(n: i128) -> Ratio {
        Ratio { num: n, den: 1 }
    }

    /// A decimal as Stripe writes `unit_amount_decimal` ("1234.5678", "-0.5", "12").
    pub fn parse_decimal(text: &str) -> Option<Ratio> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > 18
        {
            return None;
        }
        let den = 10i128.checked_pow(fraction.len() as u32)?;
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let fraction: i128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().ok()?
        };
        let num = whole.checked_mul(den)?.checked_add(fraction)?;
        Some(Ratio::new(if negative { -num } else { num }, den))
    }

    pub fn is_zero(self) -> bool {
        self.num == 0
    }

    pub fn is_positive(self) -> bool {
        self.num > 0
    }

    pub fn max(self, other: Ratio) -> Ratio {
        if self >= other { self } else { other }
    }

    pub fn min(self, other: Ratio) -> Ratio {
        if self <= other { self } else { other }
    }

    /// Rounded down (toward −∞) to a whole number.
    pub fn floor(self) -> i128 {
        self.num.div_euclid(self.den)
    }

    /// Rounded up (toward +∞) to a whole number.
    pub fn ceil(self) -> i128 {
        -(-self).floor()
    }

    /// Rounded half to even to millionths of a minor unit: the grain at which MRR is kept.
    pub fn micros(self) -> i128 {
        round_half_even(self.num.saturating_mul(MICROS), self.den)
    }

    pub fn checked_div(self, other: Ratio) -> Option<Ratio> {
        (!other.is_zero()).then(|| self * Ratio::new(other.den, other.num))
    }
}

/// `num / den` rounded half to even (`den > 0`).
pub fn round_half_even(num: i128, den: i128) -> i128 {
    let quotient = num.div_euclid(den);
    let twice_remainder = 2 * num.rem_euclid(den);
    match twice_remainder.cmp(&den) {
        Ordering::Less => quotient,
        Ordering::Greater => quotient + 1,
        Ordering::Equal => quotient + (quotient & 1),
    }
}

/// Millionths of a minor unit rounded half to even to minor units (for display only).
pub fn micros_to_minor(micros: i128) -> i64 {
    round_half_even(micros, MICROS) as i64
}

impl Add for Ratio {
    type Output = Ratio;
    fn add(self, other: Ratio) -> Ratio {
        let g = gcd(self.den, other.den);
        let den = (self.den / g).saturating_mul(other.den);
        Ratio::new(
            self.num
                .saturating_mul(other.den / g)
                .saturating_add(other.num.saturating_mul(self.den / g)),
            den,
        )
    }
}

impl Sub for Ratio {
    type Output = Ratio;
    fn sub(self, other: Ratio) -> Ratio {
        self + (-other)
    }
}

impl Neg for Ratio {
    type Output = Ratio;
    fn neg(self) -> Ratio {
        Ratio {
            num: -self.num,
            den: self.den,
        }
    }
}

impl Mul for Ratio {
    type Output = Ratio;
    fn mul(self, other: Ratio) -> Ratio {
        // Cross-reduced first, so that products of small fractions never grow large.
        let a = gcd(self.num, other.den);
        let b = gcd(other.num, self.den);
        Ratio::new(
            (self.num / a).saturating_mul(other.num / b),
            (self.den / b).saturating_mul(other.den / a),
        )
    }
}

impl PartialOrd for Ratio {
    fn partial_cmp(&self, other: &Ratio) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ratio {
    fn cmp(&self, other: &Ratio) -> Ordering {
        self.num
            .saturating_mul(other.den)
            .cmp(&other.num.saturating_mul(self.den))
    }
}

impl Ratio {
    /// The nearest float, for rates and for showing a setting.
    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl serde::Serialize for Ratio {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.to_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(Ratio::parse_decimal("12.50"), Some(Ratio::new(25, 2)));
        assert_eq!(Ratio::parse_decimal("-0.5"), Some(Ratio::new(-1, 2)));
        assert_eq!(Ratio::parse_decimal("7"), Some(Ratio::int(7)));
        assert_eq!(Ratio::parse_decimal("1e3"), None);
        assert_eq!(Ratio::parse_decimal(""), None);
    }

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(round_half_even(5, 2), 2);
        assert_eq!(round_half_even(7, 2), 4);
        assert_eq!(round_half_even(-5, 2), -2);
        assert_eq!(Ratio::new(1000, 12).micros(), 83_333_333);
        assert_eq!(micros_to_minor(4_333_333_333), 4333);
    }

    #[test]
    fn floor_and_ceil() {
        assert_eq!(Ratio::new(11, 10).ceil(), 2);
        assert_eq!(Ratio::new(11, 10).floor(), 1);
        assert_eq!(Ratio::new(-11, 10).floor(), -2);
    }
}
