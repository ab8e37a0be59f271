"""modules/devices.py of web UI 1.10.1, the parts extensions read: where and in which dtype the host computes.

The host sets these at start-up (shared_init.py): ``dtype`` float16 unless --no-half, ``dtype_inference`` float32
with --precision full else ``dtype``. ``fp8`` is set when Settings > "FP8 weight" stored the Linear/Conv weights
as float8_e4m3fn (sd_models.load_model_weights); sampling then runs inside :func:`autocast`, which for FP8 casts
each layer's weights per call (:func:`manual_cast`) or uses CPU bfloat16 autocast. Written from the public
source, not copied; tests set the fields as a given host configuration would.
"""
import contextlib

import torch

cpu = torch.device("cpu")
fp8 = False
force_fp16 = False
device = cpu
dtype = torch.float32
dtype_vae = torch.float32
dtype_unet = torch.float32
dtype_inference = torch.float32
unet_needs_upcast = False

patch_module_list = [torch.nn.Linear, torch.nn.Conv2d, torch.nn.MultiheadAttention, torch.nn.GroupNorm,
                     torch.nn.LayerNorm]


def torch_gc():
    pass


def manual_cast_forward(target_dtype):
    """Each layer: inputs to target_dtype, weights cast to it for the call and back after, output to
    dtype_inference."""
    def forward_wrapper(self, *args, **kwargs):
        if any(isinstance(a, torch.Tensor) and a.dtype != target_dtype for a in args):
            args = [a.to(target_dtype) if isinstance(a, torch.Tensor) else a for a in args]
            kwargs = {k: v.to(target_dtype) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        stored = next((prm.dtype for prm in self.parameters() if prm.dtype != target_dtype), target_dtype)
        if stored != target_dtype:
            self.to(target_dtype)
        result = self.org_forward(*args, **kwargs)
        if stored != target_dtype:
            self.to(stored)
        if target_dtype != dtype_inference and isinstance(result, torch.Tensor):
            result = result.to(dtype_inference)
        return result
    return forward_wrapper


@contextlib.contextmanager
def manual_cast(target_dtype):
    applied = []
    for module_type in patch_module_list:
        if hasattr(module_type, "org_forward"):
            continue
        module_type.org_forward = module_type.forward
        cast = torch.float32 if module_type is torch.nn.MultiheadAttention else target_dtype
        module_type.forward = manual_cast_forward(cast)
        applied.append(module_type)
    try:
        yield None
    finally:
        for module_type in applied:
            module_type.forward = module_type.org_forward
            del module_type.org_forward


def autocast(disable=False):
    if disable or force_fp16:
        return contextlib.nullcontext()
    if fp8 and device == cpu:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=True)
    if fp8 and dtype_inference == torch.float32:
        return manual_cast(dtype)
    if dtype == torch.float32 or dtype_inference == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cuda")
