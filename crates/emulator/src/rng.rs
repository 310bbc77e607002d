//! A small deterministic random source (SplitMix64) for ids, seeded data and fault dice.
//!
//! Our own rather than a crate's so that a seed gives the same data on every version of every
//! dependency: `--seed 7` must mean the same account forever.

/// SplitMix64: fast, statistically fine for test data, trivially reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const ALPHANUMERIC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// A generator seeded from the clock and an address, for runtime ids that need not repeat.
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let marker = 0u8;
        Rng::new(nanos ^ (&marker as *const u8 as u64).rotate_left(32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `len` characters of `[0-9A-Za-z]`, the alphabet of Stripe ids and keys.
    pub fn alphanumeric(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| ALPHANUMERIC[self.below(62) as usize] as char)
            .collect()
    }

    /// A Stripe-looking id: `{prefix}_{14 characters}`.
    pub fn id(&mut self, prefix: &str) -> String {
        let mut id = String::with_capacity(prefix.len() + 15);
        id.push_str(prefix);
        id.push('_');
        id.push_str(&self.alphanumeric(14));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.id("cus"), b.id("cus"));
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }
}
