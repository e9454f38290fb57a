//! Element-wise math functions on float samples: `abs`, `ceil`, `floor`,
//! `exp`, `ln`, `log2`, `log10`, `sqrt`, `sgn`, `deg`, `rad`, the
//! trigonometric and hyperbolic functions, `round`, `clamp`, `clamp_min`,
//! `clamp_max`, and Go's NaN-propagating `min`/`max` (`min_of`, `max_of`).
//! NaN in gives NaN out everywhere, as IEEE 754 and Go's `math` do.

/// Applies the one-argument math function `name` to `v`; `None` when `name`
/// is not one of them.
pub fn apply_math(name: &str, v: f64) -> Option<f64> {
    let out = match name {
        "abs" => v.abs(),
        "ceil" => v.ceil(),
        "floor" => v.floor(),
        "exp" => v.exp(),
        "ln" => v.ln(),
        "log2" => v.log2(),
        "log10" => v.log10(),
        "sqrt" => v.sqrt(),
        "sgn" => sgn(v),
        "deg" => v * 180.0 / std::f64::consts::PI,
        "rad" => v * std::f64::consts::PI / 180.0,
        "sin" => v.sin(),
        "cos" => v.cos(),
        "tan" => v.tan(),
        "asin" => v.asin(),
        "acos" => v.acos(),
        "atan" => v.atan(),
        "sinh" => v.sinh(),
        "cosh" => v.cosh(),
        "tanh" => v.tanh(),
        "asinh" => v.asinh(),
        "acosh" => v.acosh(),
        "atanh" => v.atanh(),
        _ => return None,
    };
    Some(out)
}

/// `sgn`: −1 for negative, 1 for positive, the value itself for ±0 and NaN.
pub fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }
}

/// `round(v, to_nearest)`: rounds half up (towards +Inf) to a multiple of
/// `to_nearest` (1 when the argument is omitted). Computed as Prometheus
/// does, through the inverse, so `round(5.2005, 0.1)` is `5.2`.
pub fn round(v: f64, to_nearest: f64) -> f64 {
    let inverse = 1.0 / to_nearest;
    (v * inverse + 0.5).floor() / inverse
}

/// Go's `math.Min`: NaN if either is NaN, and −0 is less than +0.
pub fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// Go's `math.Max`: NaN if either is NaN, and +0 is greater than −0.
pub fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_positive() { a } else { b }
    } else if a > b {
        a
    } else {
        b
    }
}

/// `clamp(v, min, max)`: `v` limited to `[min, max]`. `None` (the series is
/// dropped) when `max < min`; a NaN bound makes the result NaN.
pub fn clamp(v: f64, min: f64, max: f64) -> Option<f64> {
    if max < min {
        return None;
    }
    Some(go_max(min, go_min(max, v)))
}

/// `clamp_min(v, min)`: `v` raised to at least `min` (NaN propagates).
pub fn clamp_min(v: f64, min: f64) -> f64 {
    go_max(min, v)
}

/// `clamp_max(v, max)`: `v` lowered to at most `max` (NaN propagates).
pub fn clamp_max(v: f64, max: f64) -> f64 {
    go_min(max, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, v: f64) -> f64 {
        apply_math(name, v).unwrap_or(f64::NAN)
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || ((a - b) / b).abs() < 1e-12
    }

    #[test]
    fn rounding_family_matches_functions_test() {
        let inputs = [2.5, 2.0, -2.5, -2.0, 0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY];
        let abs = [2.5, 2.0, 2.5, 2.0, 0.0, 0.0, f64::INFINITY, f64::INFINITY];
        let ceil = [3.0, 2.0, -2.0, -2.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY];
        let floor = [2.0, 2.0, -3.0, -2.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY];
        let rnd = [3.0, 2.0, -2.0, -2.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY];
        for (i, v) in inputs.iter().enumerate() {
            assert_eq!(m("abs", *v), abs[i]);
            assert_eq!(m("ceil", *v), ceil[i]);
            assert_eq!(m("floor", *v), floor[i]);
            assert_eq!(round(*v, 1.0), rnd[i]);
        }
        for f in ["abs", "ceil", "floor", "sqrt", "exp", "sgn", "sin", "deg"] {
            assert!(m(f, f64::NAN).is_nan(), "{f}");
        }
        assert!(round(f64::NAN, 1.0).is_nan());
        assert_eq!(apply_math("nope", 1.0), None);
    }

    #[test]
    fn round_to_nearest_matches_aggregators_test() {
        // (expression over http_requests = 100 and 200, to_nearest, want for 100, want for 200)
        type Case = (fn(f64) -> f64, f64, f64, f64);
        let cases: [Case; 12] = [
            (|x| 0.004 * x, 1.0, 0.0, 1.0),
            (|x| -(0.004 * x), 1.0, 0.0, -1.0),
            (|x| 0.005 * x, 1.0, 1.0, 1.0),
            (|x| -(0.005 * x), 1.0, 0.0, -1.0),
            (|x| 1.0 + 0.005 * x, 1.0, 2.0, 2.0),
            (|x| -(1.0 + 0.005 * x), 1.0, -1.0, -2.0),
            (|x| 0.0005 * x, 0.1, 0.1, 0.1),
            (|x| 2.1 + 0.0005 * x, 0.1, 2.2, 2.2),
            (|x| 5.2 + 0.0005 * x, 0.1, 5.3, 5.3),
            (|x| -(5.2 + 0.0005 * x), 0.1, -5.2, -5.3),
            (|x| 0.025 * x, 5.0, 5.0, 5.0),
            (|x| 0.045 * x, 5.0, 5.0, 10.0),
        ];
        for (i, (f, to, w100, w200)) in cases.iter().enumerate() {
            assert!(close(round(f(100.0), *to), *w100), "case {i} at 100: {}", round(f(100.0), *to));
            assert!(close(round(f(200.0), *to), *w200), "case {i} at 200: {}", round(f(200.0), *to));
        }
    }

    #[test]
    fn exp_log_sqrt() {
        assert!(close(m("exp", 10.0), 22026.465794806718));
        assert!(close(m("exp", -10.0), 4.5399929762484854e-05));
        assert!(close(m("ln", 10.0), std::f64::consts::LN_10)); // 2.302585092994046
        assert_eq!(m("ln", 0.0), f64::NEG_INFINITY);
        assert!(m("ln", -10.0).is_nan());
        assert!(close(m("log2", 20.0), 4.321928094887363));
        assert!(m("log2", -10.0).is_nan());
        assert_eq!(m("log10", 10.0), 1.0);
        assert!(close(m("log10", 20.0), 1.301029995663981));
        assert!(close(m("sqrt", 10.0), 3.1622776601683795));
    }

    #[test]
    fn trig_matches_trig_functions_test() {
        let cases = [
            ("sin", 10.0, -0.5440211108893699),
            ("cos", 20.0, 0.40808206181339196),
            ("tan", 10.0, 0.6483608274590867),
            ("asin", -0.1, -0.10016742116155944),
            ("acos", -0.1, 1.670963747956456),
            ("atan", 20.0, 1.5208379310729538),
            ("sinh", 20.0, 2.4258259770489514e+08),
            ("cosh", 10.0, 11013.232920103324),
            ("tanh", 10.0, 0.9999999958776927),
            ("asinh", 10.0, 2.99822295029797),
            ("acosh", 20.0, 3.6882538673612966),
            ("atanh", -0.1, -0.10033534773107522),
            ("rad", 10.0, 0.17453292519943295),
            ("deg", 10.0, 572.9577951308232),
            ("deg", -10.0, -572.9577951308232),
        ];
        for (f, v, want) in cases {
            assert!(close(m(f, v), want), "{f}({v}) = {} want {want}", m(f, v));
        }
        assert!(m("asin", 9.9).is_nan());
        assert!(m("atanh", 9.9).is_nan());
        assert_eq!(m("rad", 0.0), 0.0);
    }

    #[test]
    fn sgn_values() {
        assert_eq!(sgn(f64::NEG_INFINITY), -1.0);
        assert_eq!(sgn(f64::INFINITY), 1.0);
        assert_eq!(sgn(-50.0), -1.0);
        assert_eq!(sgn(0.0), 0.0);
        assert_eq!(sgn(100.0), 1.0);
        assert!(sgn(f64::NAN).is_nan());
    }

    #[test]
    fn clamp_family() {
        assert_eq!(clamp(-50.0, -25.0, 75.0), Some(-25.0));
        assert_eq!(clamp(0.0, -25.0, 75.0), Some(0.0));
        assert_eq!(clamp(100.0, -25.0, 75.0), Some(75.0));
        assert!(clamp(100.0, 0.0, f64::NAN).unwrap_or(0.0).is_nan());
        assert!(clamp(-50.0, f64::NAN, 0.0).unwrap_or(0.0).is_nan());
        assert_eq!(clamp(1.0, 5.0, -5.0), None);
        assert_eq!(clamp_max(100.0, 75.0), 75.0);
        assert_eq!(clamp_max(-50.0, 75.0), -50.0);
        assert_eq!(clamp_min(-50.0, -25.0), -25.0);
        assert_eq!(clamp_min(100.0, -25.0), 100.0);
        assert!(clamp_min(1.0, f64::NAN).is_nan());
        assert!(clamp_max(f64::NAN, 1.0).is_nan());
    }

    #[test]
    fn go_min_max() {
        assert_eq!(go_min(3.0, 5.0), 3.0);
        assert_eq!(go_max(-2.0, -5.0), -2.0);
        assert!(go_min(f64::NAN, 3.0).is_nan());
        assert!(go_max(3.0, f64::NAN).is_nan());
        assert!(go_min(0.0, -0.0).is_sign_negative());
        assert!(go_max(-0.0, 0.0).is_sign_positive());
    }
}
