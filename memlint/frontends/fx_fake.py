"""Fake tensors for a module built on the meta device (shapes without storage)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv


@contextlib.contextmanager
def fake_meta_state(module: torch.nn.Module) -> Iterator[FakeTensorMode | None]:
    """While capturing, the module's meta-device parameters and buffers are fake CPU tensors
    (shapes without storage, so a 7B model costs nothing; "cpu" because model code such as
    torch.autocast(device_type=x.device.type) refuses "meta"). Yields the fake mode, or None
    when nothing is on the meta device."""
    slots = [
        (table, name, tensor)
        for sub in module.modules()
        for table in (sub._parameters, sub._buffers)
        for name, tensor in table.items()
        if tensor is not None and tensor.device.type == "meta"
    ]
    if not slots:
        yield None
        return
    mode = FakeTensorMode(shape_env=ShapeEnv())
    try:
        for table, name, tensor in slots:
            fake = fake_tensor(mode, tensor)
            if isinstance(tensor, torch.nn.Parameter):
                fake = torch.nn.Parameter(fake, requires_grad=tensor.requires_grad)
            table[name] = fake
        yield mode
    finally:
        for table, name, tensor in slots:
            table[name] = tensor


def fake_tensor(mode: FakeTensorMode, tensor: torch.Tensor) -> torch.Tensor:
    if isinstance(tensor, FakeTensor):
        return tensor
    if tensor.device.type == "meta":
        return FakeTensor(mode, tensor.detach(), torch.device("cpu"))
    return mode.from_tensor(tensor)


__all__ = ["fake_meta_state", "fake_tensor"]
