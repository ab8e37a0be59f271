"""Bad adapter, encoder and reference image files: one line that names the file and what is wrong (issue 11,
defect 10), never a traceback from a parser."""
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import style_fixtures as fx
from lib_stylus.images import ReferenceImageError, to_pil
from lib_stylus.style import AdapterFormatError, load_clip_vision, load_ip_adapter
from lib_stylus.style.encoders import EncoderFormatError, preprocess


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    unet = fx.tiny_sd15()
    sd = fx.adapter_state_dict(unet, "sd15")
    save_file(sd, str(d / "a.safetensors"))
    torch.save(fx.nest(sd), str(d / "a.bin"))
    vision = fx.tiny_vision_model()
    save_file({k: v.contiguous() for k, v in vision.state_dict().items()}, str(d / "clip.safetensors"))
    torch.save(vision.state_dict(), str(d / "clip_h.pth"))
    return d


def _one_line(err, path):
    msg = str(err.value)
    assert os.path.basename(path) in msg and "\n" not in msg, msg
    return msg


def _variants(good, tmp_path, name):
    """Empty, truncated and random-bytes copies of a good file."""
    data = (good / name).read_bytes()
    out = {}
    for kind, content in (("empty", b""), ("truncated", data[:len(data) // 2]),
                          ("random", np.random.default_rng(0).bytes(4096))):
        path = tmp_path / ("%s-%s" % (kind, name))
        path.write_bytes(content)
        out[kind] = str(path)
    return out


@pytest.mark.parametrize("name", ["a.safetensors", "a.bin"])
@pytest.mark.parametrize("kind", ["empty", "truncated", "random"])
def test_broken_adapter_files_give_one_line_naming_the_file(good, tmp_path, name, kind):
    path = _variants(good, tmp_path, name)[kind]
    with pytest.raises(AdapterFormatError) as err:
        load_ip_adapter(path)
    msg = _one_line(err, path)
    if kind == "empty":
        assert "empty" in msg


@pytest.mark.parametrize("key, shape", [("image_proj.proj.weight", (4 * fx.CTX,)),     # 1-D where 2-D belongs
                                        ("image_proj.norm.weight", (2, fx.CTX)),
                                        ("ip_adapter.1.to_k_ip.weight", (fx.CTX,)),
                                        ("ip_adapter.1.to_v_ip.weight", (3, 4, 5))])
def test_adapter_with_wrong_key_shapes_gives_one_line(tmp_path, key, shape):
    sd = fx.adapter_state_dict(fx.tiny_sd15(), "sd15")
    sd[key] = torch.zeros(shape)
    path = str(tmp_path / "shapes.safetensors")
    save_file(sd, path)
    with pytest.raises(AdapterFormatError) as err:
        load_ip_adapter(path)
    _one_line(err, path)


def test_plus_adapter_missing_resampler_layers_gives_one_line(tmp_path):
    sd = fx.adapter_state_dict(fx.tiny_sd15(), "sd15", "plus", clip_dim=32, tokens=16)
    for k in [k for k in sd if k.startswith("image_proj.layers.")]:
        sd.pop(k)
    path = str(tmp_path / "plus.safetensors")
    save_file(sd, path)
    with pytest.raises(AdapterFormatError) as err:
        load_ip_adapter(path)
    _one_line(err, path)


def test_a_pickle_of_something_else_gives_one_line(tmp_path):
    path = str(tmp_path / "list.bin")
    torch.save([torch.zeros(2)], path)
    with pytest.raises(AdapterFormatError) as err:
        load_ip_adapter(path)
    _one_line(err, path)


@pytest.mark.parametrize("name", ["clip.safetensors", "clip_h.pth"])
@pytest.mark.parametrize("kind", ["empty", "truncated", "random"])
def test_broken_encoder_files_give_one_line_naming_the_file(good, tmp_path, name, kind):
    path = _variants(good, tmp_path, name)[kind]
    with pytest.raises(EncoderFormatError) as err:
        load_clip_vision(path)
    _one_line(err, path)


@pytest.mark.parametrize("mutate", [
    lambda sd: sd.update({"vision_model.embeddings.patch_embedding.weight": torch.zeros(32, 3)}),
    lambda sd: sd.update({"vision_model.embeddings.position_embedding.weight": torch.zeros(1, 32)}),
    lambda sd: sd.pop("vision_model.encoder.layers.0.mlp.fc1.weight"),
    lambda sd: sd.update({"visual_projection.weight": torch.zeros(24, 31)}),
    lambda sd: sd.update({"vision_model.encoder.layers.1.mlp.fc2.weight": torch.zeros(5, 5)}),
])
def test_encoder_with_wrong_key_shapes_gives_one_line(tmp_path, mutate):
    sd = {k: v.clone() for k, v in fx.tiny_vision_model().state_dict().items()}
    mutate(sd)
    path = str(tmp_path / "clip_g.pth")
    torch.save(sd, path)
    with pytest.raises(EncoderFormatError) as err:
        load_clip_vision(path)
    _one_line(err, path)


def test_encoder_folder_with_broken_config_gives_one_line(tmp_path):
    folder = tmp_path / "image_encoder"
    fx.tiny_vision_model().save_pretrained(str(folder))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(EncoderFormatError) as err:
        load_clip_vision(str(folder))
    _one_line(err, str(folder))


# ------------------------------------------------------------------------------------------------ images
def _png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_sixteen_bit_grey_png_keeps_its_tones():
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    im = Image.open(io.BytesIO(_png(Image.fromarray(ramp))))
    rgb = np.asarray(to_pil(im))
    assert rgb.shape == (64, 64, 3)
    want = (ramp.astype(np.float64) / 257).round()
    assert np.abs(rgb[..., 0].astype(np.float64) - want).max() <= 1
    assert rgb.min() == 0 and 250 <= rgb.max() <= 255 and rgb.mean() < 200  # not all white


@pytest.mark.parametrize("value", ["data:image/png;base64,", b"", Image.new("RGB", (0, 0)),
                                   np.zeros((0, 0, 3), dtype=np.uint8)])
def test_empty_reference_images_give_one_line(value):
    with pytest.raises(ReferenceImageError) as err:
        to_pil(value)
    assert "empty" in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_is_not_an_image_gives_one_line():
    with pytest.raises(ReferenceImageError) as err:
        to_pil("data:image/png;base64,aGVsbG8gd29ybGQ=")
    assert "not an image" in str(err.value) and "\n" not in str(err.value)


def test_preprocess_downscales_before_any_float_copy():
    import tracemalloc
    big = Image.new("RGB", (3000, 2400), (10, 200, 30))
    tracemalloc.start()
    out = preprocess([big], 224)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.shape == (1, 3, 224, 224)
    assert peak < 16 * 2 ** 20, peak  # a float32 copy of the full image alone would be 82 MiB
