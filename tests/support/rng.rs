//! xorshift64*: enough randomness for tests, reproducible from its seed.

pub struct Rng(u64);

impl Rng {
    /// Seeded from `var` if set (to replay a run), else from the clock.
    pub fn from_env(var: &str) -> (Rng, u64) {
        let seed = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        }) | 1;
        (Rng(seed), seed)
    }

    /// A generator of its own, seeded from another's output.
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
