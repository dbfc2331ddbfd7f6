//! Percentiles, medians and how figures are written in BENCHMARKS.md; and the shuffling.

/// The p-th percentile of the values given (`None`s left out), linear between closest ranks
/// (numpy's default).
pub fn pct(values: impl IntoIterator<Item = Option<f64>>, p: f64) -> Option<f64> {
    let mut vs: Vec<f64> = values.into_iter().flatten().collect();
    if vs.is_empty() {
        return None;
    }
    vs.sort_by(f64::total_cmp);
    let k = (vs.len() - 1) as f64 * p / 100.0;
    let lo = k as usize;
    let hi = (lo + 1).min(vs.len() - 1);
    Some(vs[lo] + (vs[hi] - vs[lo]) * (k - lo as f64))
}

/// The median.
pub fn med(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    pct(values, 50.0)
}

/// Median and p95 of the same values.
pub fn med_p95(values: impl IntoIterator<Item = Option<f64>>) -> (Option<f64>, Option<f64>) {
    let vs: Vec<Option<f64>> = values.into_iter().collect();
    (med(vs.iter().copied()), pct(vs, 95.0))
}

/// The largest value.
pub fn max(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    values.into_iter().flatten().reduce(f64::max)
}

/// The smallest value.
pub fn min(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    values.into_iter().flatten().reduce(f64::min)
}

/// A figure with `digits` decimals, or `–` when there is none.
pub fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        None => "–".into(),
        Some(v) => format!("{v:.digits$}"),
    }
}

/// A figure with one decimal.
pub fn f1(v: Option<f64>) -> String {
    fmt(v, 1)
}

/// `a ÷ b` as `12×` or `1.4×`.
pub fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            if a / b >= 10.0 {
                format!("{:.0}×", a / b)
            } else {
                format!("{:.1}×", a / b)
            }
        }
        _ => "–".into(),
    }
}

/// `median / p95`.
pub fn pair(t: (Option<f64>, Option<f64>)) -> String {
    format!("{} / {}", f1(t.0), f1(t.1))
}

/// A small deterministic generator (splitmix64) for the shuffled orders: the same order on
/// every run of the benchmark, without a dependency for it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
