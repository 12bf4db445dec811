//! Reading the Prometheus text exposition the way the tests check it: one
//! sample, by its name and labels exactly as rendered.

/// The value of `series` (name and labels exactly as rendered).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("numeric sample"))
        })
        .unwrap_or_else(|| panic!("no series {series} in metrics:\n{text}"))
}
