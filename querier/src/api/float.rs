//! Sample values as Prometheus writes them (Go's `strconv.FormatFloat(v,
//! 'f', -1, 64)`): the shortest digits that read back as the same float,
//! in plain decimal notation, never an exponent. Range answers write
//! thousands of values, so the digits come from `ryu` and are laid out
//! here instead of going through `core::fmt`.

/// Appends the finite `v` in Prometheus' format.
pub fn write_finite(out: &mut String, v: f64) {
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v);
    let (sign, s) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s),
    };
    out.push_str(sign);
    let Some((mantissa, exp)) = s.split_once('e') else {
        // Plain already; ryu writes integers as `N.0`.
        out.push_str(s.strip_suffix(".0").unwrap_or(s));
        return;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // All significant digits, with the decimal point after `point` of them.
    let digits = [int, frac].concat();
    let point = int.len() as i32 + exp;
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else if point as usize >= digits.len() {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        let (a, b) = digits.split_at(point as usize);
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same digits as `core::fmt`'s `{}` (shortest round-trip, plain
    /// notation), except where two shortest candidates are equally near:
    /// Go, like ryu, then rounds half to even; `core::fmt` rounds up.
    fn check(v: f64) {
        let mut got = String::new();
        write_finite(&mut got, v);
        let fmt = format!("{v}");
        if got == fmt {
            return;
        }
        let what = format!("{v:e} ({:#x}): {got} vs {fmt}", v.to_bits());
        assert_eq!(got.len(), fmt.len(), "{what}");
        assert_eq!(got.parse::<f64>().ok(), Some(v), "{what}");
        let (a, b) = (got.as_bytes(), fmt.as_bytes());
        assert_eq!(a[..a.len() - 1], b[..b.len() - 1], "{what}");
        assert_eq!(a[a.len() - 1] + 1, b[b.len() - 1], "{what}");
        assert_eq!((a[a.len() - 1] - b'0') % 2, 0, "{what}: not rounded to even");
    }

    /// What Prometheus 3 answers for `query=<v>` (ties round half to even).
    #[test]
    fn ties_round_to_even_as_prometheus_does() {
        for (v, want) in [
            // 1840920000000000.25 and .75: exactly halfway between two 17-digit candidates.
            (f64::from_bits(0x431a_293a_5aa3_c001), "1840920000000000.2"),
            (f64::from_bits(0x431a_293a_5aa3_c003), "1840920000000000.8"),
            (1e22, "10000000000000000000000"),
        ] {
            let mut got = String::new();
            write_finite(&mut got, v);
            assert_eq!(got, want);
        }
    }

    /// `core::fmt`'s `{}` is Go's `'f', -1` (shortest round-trip digits,
    /// plain notation) but for ties: the fast path agrees with it elsewhere.
    #[test]
    fn agrees_with_shortest_plain_formatting() {
        for v in [
            0.0, -0.0, 1.0, -1.0, 0.1, 0.3, 1.5, 100.0, 123456.0, 1e15, 1e16, 1e17, 1.5e16, 1e21, 1e22, 1.7976931348623157e308,
            1e-4, 1e-5, 1e-6, 1e-7, 1.25e-7, 5e-324, 2.2250738585072014e-308, 0.009641092116989387, 2045741332.7058823,
            1796297700.0, 9007199254740993.0, 123e-20, -4.5e-10, 0.5,
        ] {
            check(v);
        }
        // Pseudo-random bit patterns over the whole range, and values of
        // every magnitude near common dashboard numbers.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                check(v);
            }
            let scaled = (x % 1_000_000) as f64 / 1000.0 * 10f64.powi((i % 40) - 20);
            check(scaled);
        }
    }
}
