"""What make_tiny_sd15.py and make_tiny_sdxl.py share: module classes, tokenizer, checkpoint and LoRA writing.

The scripts run as `python .../make_tiny_x.py OUT`, which puts this folder on sys.path, and import it.

* UNet building blocks and UNetModel with the attribute NAMES and parameter SHAPES of ldm's and sgm's
  openaimodel / attention modules (sgm is a fork of ldm; both name them alike). They have no forward pass.
  Keep the order in which they create their layers: the seeded default init draws from the global RNG in that
  order, so a reordering changes every weight (and every written file's sha256).
* The VAE (ldm's and sgm's Encoder/Decoder/AutoencoderKL key layout) and its sizes, the same for both models.
* The yaml lines both configs spell alike (the UNet's shape arguments, the VAE's ddconfig).
* The CLIP tokenizer files + tiny CLIPTextConfig, written from open_clip's bundled BPE (no download).
* Seeded random models with non-trivial norm affines, and the checkpoint's state dict under its prefixes.
* safetensors files with deterministic bytes, kohya's precalculated hashes, and kohya-format LoRAs with the
  web UI's metadata sidecar.
"""
import collections
import gzip
import hashlib
import json
import os

import torch
import torch.nn as nn
from safetensors.torch import load_file, save as st_save

# The VAE is the same for both models: 4 levels, so the latent is image/8 as the web UI assumes.
VAE = dict(embed_dim=4, z_channels=4, ch=32, ch_mult=[1, 1, 2, 2], num_res_blocks=1, in_channels=3, out_ch=3)

# Yaml fragments both configs hold, in yaml_fields() as {unet_shape} and {vae_ddconfig}. Their placeholders
# are UNetModel's / AutoencoderKL's arguments, which ldm and sgm take with the same meaning.
UNET_SHAPE_YAML = """\
        in_channels: {in_channels}
        out_channels: {out_channels}
        model_channels: {model_channels}
        attention_resolutions: {attention_resolutions}
        num_res_blocks: {num_res_blocks}
        channel_mult: {channel_mult}
"""
VAE_DDCONFIG_YAML = """\
          double_z: true
          z_channels: {z_channels}
          resolution: 256
          in_channels: {vae_in}
          out_ch: {out_ch}
          ch: {ch}
          ch_mult: {ch_mult}
          num_res_blocks: {vae_res}
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity
"""


# ------------------------------------------------------------------------------------------------------------
# UNet: same attribute names as {ldm,sgm}.modules.diffusionmodules.openaimodel / {ldm,sgm}.modules.attention
# ------------------------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    def __init__(self, ch, emb_ch, out_ch):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, out_ch))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, out_ch), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip_connection = nn.Identity() if ch == out_ch else nn.Conv2d(ch, out_ch, 1)


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)


class SpatialTransformer(nn.Module):
    def __init__(self, ch, heads, dim_head, depth, context_dim, use_linear):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, ch)
        # use_linear_in_transformer: False in SD1.5 (1x1 convolutions), True in SDXL (linear layers)
        self.proj_in = nn.Linear(ch, inner) if use_linear else nn.Conv2d(ch, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)])
        self.proj_out = nn.Linear(inner, ch) if use_linear else nn.Conv2d(inner, ch, 1)


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)


class UNetModel(nn.Module):
    """openaimodel.UNetModel with use_spatial_transformer True and legacy False, as SD1.5 and SDXL set it.

    The arguments that tell the two apart keep ldm's / sgm's meaning: the heads come from num_heads (SD1.5)
    or num_head_channels (SDXL); transformer_depth is one number (SD1.5) or one per level, the middle block
    taking the last (SDXL); adm_in_channels adds sgm's label_emb (num_classes "sequential", SDXL);
    use_linear_in_transformer (SDXL)."""

    def __init__(self, in_channels, out_channels, model_channels, attention_resolutions, num_res_blocks,
                 channel_mult, transformer_depth, context_dim, num_heads=-1, num_head_channels=-1,
                 adm_in_channels=None, use_linear_in_transformer=False):
        super().__init__()
        mc = model_channels
        temb = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, temb), nn.SiLU(), nn.Linear(temb, temb))
        if adm_in_channels is not None:  # num_classes: "sequential"
            self.label_emb = nn.Sequential(nn.Sequential(nn.Linear(adm_in_channels, temb), nn.SiLU(),
                                                         nn.Linear(temb, temb)))
        depths = transformer_depth
        if isinstance(depths, int):
            depths = [depths] * len(channel_mult)

        def attn(ch, depth):
            if num_head_channels == -1:
                heads = num_heads
                dim_head = ch // num_heads
            else:  # legacy: False -> heads = ch // num_head_channels
                heads = ch // num_head_channels
                dim_head = num_head_channels
            return SpatialTransformer(ch, heads, dim_head, depth, context_dim, use_linear_in_transformer)

        self.input_blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(in_channels, mc, 3, padding=1))])
        chans = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, temb, mult * mc)]
                ch = mult * mc
                if ds in attention_resolutions:
                    layers.append(attn(ch, depths[level]))
                self.input_blocks.append(nn.Sequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(nn.Sequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        # transformer_depth_middle defaults to transformer_depth[-1]
        self.middle_block = nn.Sequential(ResBlock(ch, temb, ch), attn(ch, depths[-1]),
                                          ResBlock(ch, temb, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), temb, mc * mult)]
                ch = mc * mult
                if ds in attention_resolutions:
                    layers.append(attn(ch, depths[level]))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(nn.Sequential(*layers))
        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Conv2d(mc, out_channels, 3, padding=1))


# ------------------------------------------------------------------------------------------------------------
# VAE: same attribute names as {ldm,sgm}.modules.diffusionmodules.model (Encoder/Decoder), .models.autoencoder
# ------------------------------------------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(32, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)


class AttnBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = nn.GroupNorm(32, ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)


class VaeDown(nn.Module):
    def __init__(self, cin, cout, n, last):
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(cin if j == 0 else cout, cout) for j in range(n)])
        self.attn = nn.ModuleList()
        if not last:
            self.downsample = nn.Module()
            self.downsample.conv = nn.Conv2d(cout, cout, 3, stride=2, padding=0)


class VaeUp(nn.Module):
    def __init__(self, cin, cout, n, first):
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(cin if j == 0 else cout, cout) for j in range(n + 1)])
        self.attn = nn.ModuleList()
        if not first:
            self.upsample = nn.Module()
            self.upsample.conv = nn.Conv2d(cout, cout, 3, padding=1)


class Mid(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.block_1 = ResnetBlock(ch, ch)
        self.attn_1 = AttnBlock(ch)
        self.block_2 = ResnetBlock(ch, ch)


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, in_channels, z_channels):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_mult = (1,) + tuple(ch_mult)
        last = len(ch_mult) - 1
        self.down = nn.ModuleList([VaeDown(ch * in_mult[i], ch * ch_mult[i], num_res_blocks, i == last)
                                   for i in range(len(ch_mult))])
        top = ch * ch_mult[-1]
        self.mid = Mid(top)
        self.norm_out = nn.GroupNorm(32, top)
        self.conv_out = nn.Conv2d(top, 2 * z_channels, 3, padding=1)


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, out_ch, z_channels):
        super().__init__()
        top = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, top, 3, padding=1)
        self.mid = Mid(top)
        ups = []
        block_in = top
        for i in reversed(range(len(ch_mult))):
            ups.insert(0, VaeUp(block_in, ch * ch_mult[i], num_res_blocks, i == 0))
            block_in = ch * ch_mult[i]
        self.up = nn.ModuleList(ups)
        self.norm_out = nn.GroupNorm(32, block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)


class AutoencoderKL(nn.Module):
    def __init__(self, embed_dim, z_channels, ch, ch_mult, num_res_blocks, in_channels, out_ch):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, in_channels, z_channels)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, out_ch, z_channels)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)


def yaml_fields(unet):
    """The placeholders both yaml templates have: the UNet's arguments (`unet`), the VAE's sizes, and the
    fragments {unet_shape} and {vae_ddconfig} filled with them."""
    fields = dict(unet, embed_dim=VAE["embed_dim"], z_channels=VAE["z_channels"], vae_in=VAE["in_channels"],
                  out_ch=VAE["out_ch"], ch=VAE["ch"], ch_mult=VAE["ch_mult"], vae_res=VAE["num_res_blocks"])
    fields["unet_shape"] = UNET_SHAPE_YAML.format(**fields)
    fields["vae_ddconfig"] = VAE_DDCONFIG_YAML.format(**fields)
    return fields


# ------------------------------------------------------------------------------------------------------------
# tokenizer + CLIP text model config
# ------------------------------------------------------------------------------------------------------------
def write_clip_tokenizer(dirname, clip):
    """HF CLIPTokenizer files built from open_clip's bundled BPE (same ids as openai/clip-vit-large-patch14
    and as open_clip's own tokenizer), and config.json: the tiny CLIPTextConfig made of the keyword arguments
    `clip`. Returns that config."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTextConfig

    os.makedirs(dirname, exist_ok=True)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(merges) == 48894, (len(vocab), len(merges))
    with open(os.path.join(dirname, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(dirname, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.write("\n".join(" ".join(m) for m in merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    with open(os.path.join(dirname, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=1)
    with open(os.path.join(dirname, "tokenizer_config.json"), "w") as f:
        json.dump(dict(special, model_max_length=77, do_lower_case=True, errors="replace",
                       add_prefix_space=False, tokenizer_class="CLIPTokenizer"), f, indent=1)
    cfg = CLIPTextConfig(**clip, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    cfg.architectures = ["CLIPTextModel"]
    cfg.save_pretrained(dirname)
    return cfg


# ------------------------------------------------------------------------------------------------------------
# random weights and the checkpoint's state dict
# ------------------------------------------------------------------------------------------------------------
def perturb_norms(model, gen):
    """Give every GroupNorm/LayerNorm a non-trivial affine (weight 1+0.1*N, bias 0.1*N), as trained ones have.

    With the default weight=1, bias=0 a normalised text embedding has mean exactly ~0, and the web UI's
    prompt-emphasis step (z * original_mean / new_mean) then divides 0 by 0 and the UNet sees NaNs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def random_model(make, seed):
    """make() after torch.manual_seed(seed) (default inits draw from the global RNG), then perturb_norms with
    a generator of the same seed: a part's weights depend on its seed only, not on what was built before."""
    torch.manual_seed(seed)
    model = make()
    perturb_norms(model, torch.Generator().manual_seed(seed))
    return model


def checkpoint_state_dict(parts, dtype):
    """One state dict of the (key prefix, state dict) parts, in order; floating tensors cast to dtype."""
    sd = {}
    for prefix, part in parts:
        for k, v in part.items():
            sd[prefix + k] = v.detach().to(dtype).contiguous() if v.is_floating_point() else v.contiguous()
    return sd


# ------------------------------------------------------------------------------------------------------------
# safetensors with deterministic bytes
# ------------------------------------------------------------------------------------------------------------
def save_deterministic(tensors, path, metadata):
    """safetensors' save_file, but with the JSON header's keys sorted: safetensors writes __metadata__ in
    hash-map order, so two runs would give files with equal tensors but different bytes (and sha256)."""
    data = st_save(tensors, metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data[8 + n:])
    back = load_file(path)  # round-trip check of the rewritten header
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors), path


def save_checkpoint(out, name, ckpt, note):
    """Write OUT/Stable-diffusion/<name>.safetensors with deterministic bytes, print its size.
    Returns that folder."""
    sd_dir = os.path.join(out, "Stable-diffusion")
    os.makedirs(sd_dir, exist_ok=True)
    ckpt_path = os.path.join(sd_dir, name + ".safetensors")
    save_deterministic(ckpt, ckpt_path, {"format": "pt", "note": note})
    n_params = sum(v.numel() for v in ckpt.values())
    print(f"checkpoint: {ckpt_path} ({len(ckpt)} tensors, {n_params / 1e6:.2f}M values, "
          f"{os.path.getsize(ckpt_path) / 2**20:.1f} MiB)")
    return sd_dir


def addnet_hashes(tensors, metadata):
    """kohya sd-scripts' precalculated hashes of the file saved with the ss_* metadata: sshs_model_hash
    (sha256 of the tensor bytes after the header) and sshs_legacy_hash (sha256 of its 64 KiB at 1 MiB, first
    8 hex digits)."""
    data = st_save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    n = int.from_bytes(data[:8], "little")
    model_hash = hashlib.sha256(data[8 + n:]).hexdigest()
    legacy_hash = hashlib.sha256(data[0x100000:0x100000 + 0x10000]).hexdigest()[:8]
    return model_hash, legacy_hash


# ------------------------------------------------------------------------------------------------------------
# kohya-format LoRAs
# ------------------------------------------------------------------------------------------------------------
# What a LoRA's files say about the model it is for: kohya's ss_base_model_version and ss_resolution, the
# checkpoint file it names (ss_sd_model_name), and the "sd version" of the web UI's sidecar.
LoraBase = collections.namedtuple("LoraBase", "base_model_version resolution ckpt_file sd_version")


def write_lora(lora_dir, base, name, seed, words, desc, modules, extra_meta=None,
               rank=4, alpha=4.0, scale=0.6):
    """LORA_DIR/<name>.safetensors in kohya sd-scripts' format, with kohya's metadata and hashes; <name>.json.

    base: a LoraBase. modules: (kohya module prefix, (out_features, in_features)), in the order their random
    fp16 down/up weights are drawn from one generator seeded with `seed`. words: trigger words, the first two
    are the activation text. extra_meta: more metadata keys (modelspec.*).
    Returns (path, number of tensors, sshs_model_hash[:12])."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for prefix, (out_f, in_f) in modules:
        tensors[prefix + ".lora_down.weight"] = (torch.randn(rank, in_f, generator=g) * scale).half()
        tensors[prefix + ".lora_up.weight"] = (torch.randn(out_f, rank, generator=g) * scale).half()
        tensors[prefix + ".alpha"] = torch.tensor(alpha).half()
    meta = {
        "ss_output_name": name,
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_base_model_version": base.base_model_version,
        "ss_v2": "False",
        "ss_sd_model_name": base.ckpt_file,
        "ss_resolution": base.resolution,
        "ss_clip_skip": "None",
        "ss_num_train_images": "10",
        "ss_num_epochs": "1",
        "ss_learning_rate": "0.0001",
        "ss_mixed_precision": "fp16",
        "ss_seed": str(seed),
        "ss_training_comment": desc,
        "ss_tag_frequency": json.dumps({"1_" + name: {w: 10 - i for i, w in enumerate(words)}}),
        "ss_dataset_dirs": json.dumps({"1_" + name: {"n_repeats": 1, "img_count": 10}}),
    }
    meta.update(extra_meta or {})
    meta["sshs_model_hash"], meta["sshs_legacy_hash"] = addnet_hashes(tensors, meta)
    os.makedirs(lora_dir, exist_ok=True)
    path = os.path.join(lora_dir, name + ".safetensors")
    save_deterministic(tensors, path, meta)
    # the web UI's per-LoRA user metadata sidecar (Extra Networks card: activation text etc.)
    with open(os.path.join(lora_dir, name + ".json"), "w") as f:
        json.dump({"description": desc, "sd version": base.sd_version,
                   "activation text": ", ".join(words[:2]), "preferred weight": 0.8,
                   "notes": "random weights for tests"}, f, indent=1)
    return path, len(tensors), meta["sshs_model_hash"][:12]
