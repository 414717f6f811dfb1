//! Small statistics the detectors share.

/// Pearson correlation of two equally long series; 0 when either does not vary.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return 0.0;
    }
    sab / (saa * sbb).sqrt()
}

/// Population standard deviation; 0 for an empty series.
pub fn sd(x: &[f64]) -> f64 {
    let n = x.len().max(1) as f64;
    let m = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt()
}

/// Fisher's z of a correlation: near-normal, so its tail can be read off an empirical null.
pub fn fisher_z(r: f64) -> f64 {
    r.clamp(-0.999_999, 0.999_999).atanh()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_of_a_scaled_copy_is_one_and_of_a_constant_is_zero() {
        let a = [1.0, 3.0, 2.0, 5.0];
        let b: Vec<f64> = a.iter().map(|x| 7.0 - 2.0 * x).collect();
        assert!((correlation(&a, &b) + 1.0).abs() < 1e-12);
        assert_eq!(correlation(&a, &[4.0; 4]), 0.0);
        assert!(fisher_z(1.0).is_finite());
    }
}
