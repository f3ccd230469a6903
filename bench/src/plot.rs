//! A latency-percentile plot as a PNG, drawn by hand so the harness needs only the `png`
//! encoder: x is the percentile on the usual HDR log scale (50 %, 90 %, 99 %, 99.9 %,
//! 99.99 %), y the latency in milliseconds on a log scale. Tick labels use a built-in 3×5
//! digit font; the legend (colours) is printed in REPORT.md next to the image.

use std::path::Path;

use hdrhistogram::Histogram;

const W: usize = 960;
const H: usize = 540;
const LEFT: usize = 70;
const RIGHT: usize = 20;
const TOP: usize = 20;
const BOTTOM: usize = 50;
/// x spans 1/(1-q) from 2 (p50) to 10^5 (p99.999), log10.
const X_MIN: f64 = std::f64::consts::LOG10_2;
const X_MAX: f64 = 5.0;

/// Line colours, in the order the curves are given; REPORT.md names them.
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("blue", [31, 119, 180]),
    ("orange", [255, 127, 14]),
    ("green", [44, 160, 44]),
    ("red", [214, 39, 40]),
    ("purple", [148, 103, 189]),
    ("brown", [140, 86, 75]),
];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            px: vec![255; W * H * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], thick: i64) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            for dx in 0..thick {
                for dy in 0..thick {
                    self.set(x as i64 + dx, y as i64 + dy, c);
                }
            }
        }
    }

    /// Digits, '.', '%' and 'm'/'s' in a 3×5 font, scaled by 2.
    fn text(&mut self, x: i64, y: i64, s: &str) {
        let mut cx = x;
        for ch in s.chars() {
            let rows = glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for b in 0..3 {
                    if bits & (4 >> b) != 0 {
                        for d in 0..4 {
                            self.set(cx + b * 2 + d % 2, y + r as i64 * 2 + d / 2, [0, 0, 0]);
                        }
                    }
                }
            }
            cx += 8;
        }
    }
}

fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '%' => [5, 1, 2, 4, 5],
        'm' => [0, 0, 7, 7, 5],
        's' => [0, 3, 6, 1, 6],
        'p' => [0, 6, 5, 6, 4],
        _ => [0, 0, 0, 0, 0],
    }
}

/// Writes the curves (at most [`COLOURS`].len()) to `path`.
pub fn percentiles(path: &Path, curves: &[(&str, &Histogram<u64>)]) -> std::io::Result<()> {
    let mut canvas = Canvas::new();
    let max_ms = curves
        .iter()
        .map(|(_, h)| h.max() as f64 / 1000.0)
        .fold(1.0f64, f64::max);
    let (y_lo, y_hi) = (-1.0f64, max_ms.log10().ceil().max(0.0) + 0.0001);
    let plot_w = (W - LEFT - RIGHT) as f64;
    let plot_h = (H - TOP - BOTTOM) as f64;
    let to_x = |v: f64| LEFT as f64 + (v - X_MIN) / (X_MAX - X_MIN) * plot_w;
    let to_y = |ms: f64| {
        let l = ms.max(10f64.powf(y_lo)).log10();
        TOP as f64 + (1.0 - (l - y_lo) / (y_hi - y_lo)) * plot_h
    };
    let grey = [210, 210, 210];
    for (i, label) in ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = to_x(if i == 0 { X_MIN } else { i as f64 });
        canvas.line((x, TOP as f64), (x, (H - BOTTOM) as f64), grey, 1);
        // Centred under the grid line, but kept inside the image.
        let width = 8 * label.len() as i64;
        let left = (x as i64 - width / 2).clamp(0, W as i64 - width);
        canvas.text(left, (H - BOTTOM + 10) as i64, label);
    }
    let mut decade = y_lo as i32;
    while decade as f64 <= y_hi {
        let ms = 10f64.powi(decade);
        let y = to_y(ms);
        canvas.line((LEFT as f64, y), ((W - RIGHT) as f64, y), grey, 1);
        let label = if decade < 0 {
            format!("{ms:.*}", (-decade) as usize)
        } else {
            format!("{ms:.0}")
        };
        canvas.text(4, y as i64 - 5, &format!("{label}ms"));
        decade += 1;
    }
    let axis = [0, 0, 0];
    canvas.line(
        (LEFT as f64, TOP as f64),
        (LEFT as f64, (H - BOTTOM) as f64),
        axis,
        2,
    );
    canvas.line(
        (LEFT as f64, (H - BOTTOM) as f64),
        ((W - RIGHT) as f64, (H - BOTTOM) as f64),
        axis,
        2,
    );
    for ((_, h), (_, colour)) in curves.iter().zip(COLOURS) {
        if h.is_empty() {
            continue;
        }
        let mut previous: Option<(f64, f64)> = None;
        let points = 400;
        for i in 0..=points {
            let v = X_MIN + (X_MAX - X_MIN) * i as f64 / points as f64;
            let q = 1.0 - 10f64.powf(-v);
            let ms = h.value_at_quantile(q) as f64 / 1000.0;
            let p = (to_x(v), to_y(ms));
            if let Some(prev) = previous {
                canvas.line(prev, p, colour, 2);
            }
            previous = Some(p);
            // Past the last sample the curve would only repeat the maximum.
            if (1.0 - q) * (h.len() as f64) < 1.0 {
                break;
            }
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, W as u32, H as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(&canvas.px)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
}
