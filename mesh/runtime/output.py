"""What a model returns for one task, and the common checks of inputs."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.manifest import Manifest


@dataclass(frozen=True)
class ModelOutput:
    """The outputs of one task and its activation commitment (``b""`` when none)."""

    outputs: Values
    commitment: bytes = b""


def check_schema(manifest: Manifest, inputs: Values) -> None:
    """Names, dtypes and fixed dimensions of ``inputs`` against the manifest.

    Raises:
        InvalidInput: an unknown or missing name, a wrong dtype or shape.
    """
    unknown = set(inputs) - set(manifest.inputs)
    if unknown:
        raise InvalidInput(f"{manifest.name} takes no input named {', '.join(sorted(unknown))}")
    for name, spec in manifest.inputs.items():
        if name not in inputs:
            if spec.optional:
                continue
            raise InvalidInput(f"{manifest.name} needs input {name!r}")
        value = inputs[name]
        if spec.dtype == "str":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidInput(f"input {name!r} must be a list of strings")
            shape: tuple[int, ...] = (len(value),)
        else:
            if not isinstance(value, Tensor):
                raise InvalidInput(f"input {name!r} must be a tensor")
            if value.dtype != spec.dtype:
                raise InvalidInput(f"input {name!r} must be {spec.dtype}, not {value.dtype}")
            shape = value.shape
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInput(
                f"input {name!r} has shape {list(shape)}, {manifest.name} wants {list(spec.shape)}"
            )
        if 0 in shape:
            raise InvalidInput(f"input {name!r} is empty")
