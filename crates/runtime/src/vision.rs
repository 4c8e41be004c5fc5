//! Image preprocessing as a model's `preprocessor_config.json` says: decode (the `image`
//! crate), resize, centre-crop, rescale, normalise, channel order and layout.
//!
//! Hugging Face keys are read (`do_resize`, `size`, `resample`, `do_center_crop`,
//! `crop_size`, `do_rescale`, `rescale_factor`, `do_normalize`, `image_mean`, `image_std`),
//! with `size.shortest_edge` keeping the aspect ratio (CLIP) and ConvNeXT's `crop_pct` rule
//! (ResNet: resize the shorter side to `shortest_edge / crop_pct`, then centre-crop
//! `shortest_edge`; at 384 and above a square resize, no crop),
//! plus two of Lattice's for graphs trained on other pipelines (Caffe's Open-NSFW):
//! `lattice_channel_order` (`"rgb"`/`"bgr"`, the order `image_mean` is given in too) and
//! `lattice_jpeg_roundtrip_quality` (encode and decode as JPEG after resizing).

use std::io::Cursor;
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use serde_json::Value;

use crate::error::{Result, RuntimeError};
use crate::onnx::Layout;

/// Channel order of the model's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (Caffe).
    Bgr,
}

/// A preprocessing pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Resize to (width, height) first, when set.
    pub resize: Option<(u32, u32)>,
    /// Resize so the shorter side is this many pixels, keeping the aspect ratio (the longer
    /// side is truncated as Hugging Face's `get_resize_output_image_size` does); used when
    /// `resize` is not set.
    pub shortest_edge: Option<u32>,
    /// The resampling filter.
    pub filter: FilterType,
    /// JPEG-encode and decode at this quality after resizing.
    pub jpeg_roundtrip: Option<u8>,
    /// Centre-crop to (width, height), when set.
    pub crop: Option<(u32, u32)>,
    /// Multiply pixel values (0..=255) by this.
    pub rescale: f32,
    /// Subtract per channel (in `order`).
    pub mean: [f32; 3],
    /// Then divide per channel (in `order`).
    pub std: [f32; 3],
    /// Channel order of the output.
    pub order: ChannelOrder,
}

impl Default for Preprocess {
    /// ImageNet-style: resize to 224×224 bilinear, rescale to 0..1, ImageNet mean/std, RGB.
    fn default() -> Self {
        Self {
            resize: Some((224, 224)),
            shortest_edge: None,
            filter: FilterType::Triangle,
            jpeg_roundtrip: None,
            crop: None,
            rescale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            order: ChannelOrder::Rgb,
        }
    }
}

/// The most pixels a shortest-edge resize may make (a 1x100000 image would otherwise ask for
/// gigabytes).
const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// `size` as a shortest edge: `{"shortest_edge": n}`, or a bare number for processors whose
/// integer size means the shorter side (`default_to_square = False`: CLIP, ConvNeXT, BiT).
fn shortest_edge_of(v: &Value) -> Option<u32> {
    let size = v.get("size")?;
    if let Some(n) = size.get("shortest_edge").and_then(Value::as_u64) {
        return Some(n as u32);
    }
    let kind = v
        .get("image_processor_type")
        .or_else(|| v.get("feature_extractor_type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let not_square = ["CLIP", "ConvNext", "Bit"]
        .iter()
        .any(|p| kind.starts_with(p));
    size.as_u64().filter(|_| not_square).map(|n| n as u32)
}

/// Whether the processor is ConvNeXT's (which applies `crop_pct` in its resize).
fn is_convnext(v: &Value) -> bool {
    v.get("image_processor_type")
        .or_else(|| v.get("feature_extractor_type"))
        .and_then(Value::as_str)
        .is_some_and(|k| k.starts_with("ConvNext"))
}

/// The (width, height) a shortest-edge resize gives `(w, h)`: the shorter side becomes `s`,
/// the longer `int(s * long / short)`. A zero side (size unknown) gives `(s, s)`.
pub fn shortest_edge_size((w, h): (u32, u32), s: u32) -> (u32, u32) {
    if w == 0 || h == 0 {
        return (s, s);
    }
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (f64::from(s) * f64::from(long) / f64::from(short)) as u32;
    if w <= h { (s, new_long) } else { (new_long, s) }
}

fn size_of(v: Option<&Value>) -> Option<(u32, u32)> {
    let v = v?;
    if let Some(n) = v.as_u64() {
        return Some((n as u32, n as u32));
    }
    let h = v.get("height").and_then(Value::as_u64);
    let w = v.get("width").and_then(Value::as_u64);
    if let (Some(h), Some(w)) = (h, w) {
        return Some((w as u32, h as u32));
    }
    v.get("shortest_edge")
        .and_then(Value::as_u64)
        .map(|n| (n as u32, n as u32))
}

fn triple(v: Option<&Value>, default: [f32; 3]) -> Result<[f32; 3]> {
    let Some(v) = v else { return Ok(default) };
    let a = v.as_array().filter(|a| a.len() == 3).ok_or_else(|| {
        RuntimeError::InvalidModel(format!(
            "preprocessor_config.json: expected 3 numbers, got {v}"
        ))
    })?;
    let mut out = [0f32; 3];
    for (o, x) in out.iter_mut().zip(a) {
        *o = x.as_f64().ok_or_else(|| {
            RuntimeError::InvalidModel(format!("preprocessor_config.json: {x} is not a number"))
        })? as f32;
    }
    Ok(out)
}

impl Preprocess {
    /// Reads `preprocessor_config.json` from `dir`; the default pipeline when there is none.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("preprocessor_config.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, e))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::InvalidModel(format!("{}: {e}", path.display())))?;
        Self::from_json(&v)
    }

    /// Reads a parsed `preprocessor_config.json`.
    pub fn from_json(v: &Value) -> Result<Self> {
        let flag = |k: &str, d: bool| v.get(k).and_then(Value::as_bool).unwrap_or(d);
        let filter = match v.get("resample").and_then(Value::as_u64).unwrap_or(2) {
            0 => FilterType::Nearest,
            2 => FilterType::Triangle,
            3 => FilterType::CatmullRom,
            1 => FilterType::Lanczos3,
            other => {
                return Err(RuntimeError::Unsupported(format!(
                    "preprocessor_config.json: resample {other}"
                )));
            }
        };
        let order = match v
            .get("lattice_channel_order")
            .and_then(Value::as_str)
            .unwrap_or("rgb")
        {
            "rgb" => ChannelOrder::Rgb,
            "bgr" => ChannelOrder::Bgr,
            other => {
                return Err(RuntimeError::Unsupported(format!(
                    "preprocessor_config.json: lattice_channel_order {other:?}"
                )));
            }
        };
        let normalize = flag("do_normalize", true);
        let do_resize = flag("do_resize", true);
        let shortest = shortest_edge_of(v).filter(|_| do_resize);
        // ConvNeXT (microsoft/resnet-50): below 384 the shorter side goes to
        // int(shortest_edge / crop_pct) and a shortest_edge square is cropped from the
        // centre; from 384 the image is resized to a square.
        let convnext = match shortest.filter(|_| is_convnext(v)) {
            Some(s) if s < 384 => {
                let pct = v
                    .get("crop_pct")
                    .and_then(Value::as_f64)
                    .unwrap_or(224.0 / 256.0);
                if !(pct > 0.0 && pct <= 1.0) {
                    return Err(RuntimeError::InvalidModel(format!(
                        "preprocessor_config.json: crop_pct {pct} is not in (0, 1]"
                    )));
                }
                Some((None, Some((f64::from(s) / pct) as u32), Some((s, s))))
            }
            Some(s) => Some((Some((s, s)), None, None)),
            None => None,
        };
        let (resize, shortest_edge, convnext_crop) = match convnext {
            Some(c) => c,
            None if shortest.is_some() => (None, shortest, None),
            None if do_resize => (size_of(v.get("size")).or(Some((224, 224))), None, None),
            None => (None, None, None),
        };
        Ok(Self {
            resize,
            shortest_edge,
            filter,
            jpeg_roundtrip: v
                .get("lattice_jpeg_roundtrip_quality")
                .and_then(Value::as_u64)
                .map(|q| q.clamp(1, 100) as u8),
            crop: if flag("do_center_crop", false) {
                size_of(v.get("crop_size"))
            } else {
                None
            }
            .or(convnext_crop),
            rescale: if flag("do_rescale", true) {
                v.get("rescale_factor")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0 / 255.0) as f32
            } else {
                1.0
            },
            mean: if normalize {
                triple(v.get("image_mean"), [0.5; 3])?
            } else {
                [0.0; 3]
            },
            std: if normalize {
                triple(v.get("image_std"), [0.5; 3])?
            } else {
                [1.0; 3]
            },
            order,
        })
    }

    /// The output (width, height) for an image of `original` size (`(0, 0)` when unknown:
    /// a shortest-edge resize without a crop then answers a square).
    pub fn output_size(&self, original: (u32, u32)) -> (u32, u32) {
        self.crop
            .or(self.resize)
            .or(self.shortest_edge.map(|s| shortest_edge_size(original, s)))
            .unwrap_or(original)
    }

    /// Decodes encoded image bytes (PNG, JPEG) into RGB.
    pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
        let img = image::load_from_memory(bytes)
            .map_err(|e| RuntimeError::InvalidInput(format!("cannot decode the image: {e}")))?;
        Ok(img.to_rgb8())
    }

    /// The pipeline up to the pixels (resize, JPEG round trip, crop).
    pub fn geometry(&self, img: RgbImage) -> Result<RgbImage> {
        let mut img = img;
        if let Some((w, h)) = self.resize {
            img = image::imageops::resize(&img, w, h, self.filter);
        } else if let Some(s) = self.shortest_edge {
            let (w, h) = shortest_edge_size(img.dimensions(), s);
            if u64::from(w) * u64::from(h) > MAX_RESIZED_PIXELS {
                let (ow, oh) = img.dimensions();
                return Err(RuntimeError::InvalidInput(format!(
                    "image {ow}x{oh} is too elongated: its shorter side to {s} makes {w}x{h}"
                )));
            }
            if (w, h) != img.dimensions() {
                img = image::imageops::resize(&img, w, h, self.filter);
            }
        }
        if let Some(q) = self.jpeg_roundtrip {
            let mut buf = Vec::new();
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q);
            DynamicImage::ImageRgb8(img)
                .write_with_encoder(enc)
                .map_err(|e| RuntimeError::InvalidInput(format!("jpeg round trip: {e}")))?;
            img = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)
                .map_err(|e| RuntimeError::InvalidInput(format!("jpeg round trip: {e}")))?
                .to_rgb8();
        }
        if let Some((cw, ch)) = self.crop {
            let (w, h) = img.dimensions();
            if cw > w || ch > h {
                return Err(RuntimeError::InvalidInput(format!(
                    "image {w}x{h} is smaller than the {cw}x{ch} crop"
                )));
            }
            img = image::imageops::crop_imm(&img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
        }
        Ok(img)
    }

    /// Runs the whole pipeline on encoded bytes and appends the floats in `layout` to `out`.
    pub fn run(&self, bytes: &[u8], layout: Layout, out: &mut Vec<f32>) -> Result<(u32, u32)> {
        let img = self.geometry(Self::decode(bytes)?)?;
        let (w, h) = img.dimensions();
        let (w_us, h_us) = (w as usize, h as usize);
        let base = out.len();
        out.resize(base + w_us * h_us * 3, 0.0);
        let dst = &mut out[base..];
        for (x, y, p) in img.enumerate_pixels() {
            let (x, y) = (x as usize, y as usize);
            for c in 0..3 {
                let src = match self.order {
                    ChannelOrder::Rgb => p[c],
                    ChannelOrder::Bgr => p[2 - c],
                };
                let v = (f32::from(src) * self.rescale - self.mean[c]) / self.std[c];
                let i = match layout {
                    Layout::Nhwc => (y * w_us + x) * 3 + c,
                    Layout::Nchw => c * h_us * w_us + y * w_us + x,
                };
                dst[i] = v;
            }
        }
        Ok((w, h))
    }
}

/// Encodes an RGB image as PNG (for tests and tools).
pub fn png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| RuntimeError::InvalidInput(e.to_string()))?;
    Ok(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_channel_order_place_pixels_where_the_graph_expects() -> Result<()> {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([10, 20, 30]));
        img.put_pixel(1, 0, image::Rgb([40, 50, 60]));
        let bytes = png(&img)?;
        let p = Preprocess {
            resize: None,
            crop: None,
            rescale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            order: ChannelOrder::Bgr,
            ..Default::default()
        };
        let mut out = Vec::new();
        p.run(&bytes, Layout::Nhwc, &mut out)?;
        assert_eq!(out, vec![30.0, 20.0, 10.0, 60.0, 50.0, 40.0]);
        out.clear();
        p.run(&bytes, Layout::Nchw, &mut out)?;
        assert_eq!(out, vec![30.0, 60.0, 20.0, 50.0, 10.0, 40.0]);
        Ok(())
    }

    #[test]
    fn garbage_is_a_clear_input_error() {
        let e = Preprocess::default()
            .run(b"not an image", Layout::Nchw, &mut Vec::new())
            .expect_err("must fail");
        assert!(matches!(e, RuntimeError::InvalidInput(_)), "{e}");
        assert!(e.to_string().contains("cannot decode"), "{e}");
    }

    #[test]
    fn hf_config_is_read() -> Result<()> {
        let v: Value = serde_json::from_str(
            r#"{"do_resize":true,"size":{"height":256,"width":256},"resample":2,
                "do_center_crop":true,"crop_size":{"height":224,"width":224},
                "do_rescale":false,"image_mean":[104,117,123],"image_std":[1,1,1],
                "lattice_channel_order":"bgr","lattice_jpeg_roundtrip_quality":75}"#,
        )
        .map_err(|e| RuntimeError::InvalidModel(e.to_string()))?;
        let p = Preprocess::from_json(&v)?;
        assert_eq!(p.resize, Some((256, 256)));
        assert_eq!(p.crop, Some((224, 224)));
        assert_eq!(p.rescale, 1.0);
        assert_eq!(p.order, ChannelOrder::Bgr);
        assert_eq!(p.jpeg_roundtrip, Some(75));
        assert_eq!(p.output_size((640, 480)), (224, 224));
        Ok(())
    }

    fn parse(json: &str) -> Result<Preprocess> {
        let v: Value =
            serde_json::from_str(json).map_err(|e| RuntimeError::InvalidModel(e.to_string()))?;
        Preprocess::from_json(&v)
    }

    #[test]
    fn shortest_edge_keeps_the_aspect_ratio() -> Result<()> {
        // openai/clip-vit-base-patch32's form: a bare size means the shorter side.
        let p = parse(
            r#"{"image_processor_type":"CLIPImageProcessor","size":224,"do_center_crop":true,
                "crop_size":224,"resample":3}"#,
        )?;
        assert_eq!((p.resize, p.shortest_edge), (None, Some(224)));
        assert_eq!(p.crop, Some((224, 224)));
        assert_eq!(p.filter, FilterType::CatmullRom);
        let p = parse(r#"{"size":{"shortest_edge":32}}"#)?;
        assert_eq!(p.output_size((60, 45)), (42, 32));
        assert_eq!(p.output_size((45, 61)), (32, 43));
        let img = p.geometry(RgbImage::new(60, 45))?;
        assert_eq!(img.dimensions(), (42, 32));
        let e = p
            .geometry(RgbImage::new(1, 100_000))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("too elongated"), "{e}");
        // A bare number for a ViT processor is still a square.
        let p = parse(r#"{"image_processor_type":"ViTImageProcessor","size":32}"#)?;
        assert_eq!((p.resize, p.shortest_edge), (Some((32, 32)), None));
        Ok(())
    }

    #[test]
    fn convnext_crop_pct_resizes_then_crops() -> Result<()> {
        // microsoft/resnet-50's preprocessor_config.json.
        let p = parse(
            r#"{"feature_extractor_type":"ConvNextFeatureExtractor","size":224,"crop_pct":0.875,
                "resample":3,"do_normalize":true}"#,
        )?;
        assert_eq!(p.shortest_edge, Some(256));
        assert_eq!(p.crop, Some((224, 224)));
        assert_eq!(p.output_size((640, 480)), (224, 224));
        let img = p.geometry(RgbImage::new(300, 400))?;
        assert_eq!(img.dimensions(), (224, 224));
        let p = parse(
            r#"{"image_processor_type":"ConvNextImageProcessor","size":{"shortest_edge":384}}"#,
        )?;
        assert_eq!(
            (p.resize, p.shortest_edge, p.crop),
            (Some((384, 384)), None, None)
        );
        let e =
            parse(r#"{"image_processor_type":"ConvNextImageProcessor","size":224,"crop_pct":0}"#)
                .expect_err("must fail");
        assert!(e.to_string().contains("crop_pct"), "{e}");
        Ok(())
    }
}
