"""Model and training-state files: safetensors tensors + JSON metadata, written atomically.

Loading never unpickles, so a shared style file cannot run code. Kinds of file:
- ``generator``: full generator weights (the meta-init, a per-style network, ...);
- ``delta``: only the tensors adaptation changed, against a base generator identified by the
  hash of its weights (a norm-only adapted style is a few KB);
- ``training``: a resumable run (weights, optimizer, RNG state, step); its tensor layout is
  `write_training` / `read_training`'s.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from .errors import UserError
from .images import atomic_write_bytes, check_readable_file
from .limits import NETWORK_SIDE, STUDENT_WIDTH

FORMAT_VERSION = 1
META_KEY = "metastyle"
MODEL_SUFFIX = ".safetensors"
# Tensor names in a training checkpoint: the generator, the Meta-SGD log rates, Adam's state
# (see `flatten_optimizer`) and the episode RNG each under their own prefix, so one file holds
# them all and a generator can be read out of it.
MODEL_PREFIX = "model/"
RATE_PREFIX = "extra/log_rate/"
OPTIM_PREFIX = "optim/"
RNG_KEY = "rng/episodes"


def check_model_suffix(path: str | Path) -> None:
    """Model files end in .safetensors; call it before heavy work to fail early."""
    if Path(path).suffix != MODEL_SUFFIX:
        raise UserError(f"{path}: model files must end in {MODEL_SUFFIX}")


def weights_hash(weights: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and bytes in name order: identifies a base for deltas."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def encode(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    """The bytes of a file of tensors + metadata (``format_version`` is added here)."""
    meta = {"format_version": FORMAT_VERSION, **meta}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return save(tensors, metadata={META_KEY: json.dumps(meta)})


def write(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically write tensors + metadata (``format_version`` is added here)."""
    atomic_write_bytes(Path(path), encode(tensors, meta))


# The metadata fields code reads, and the JSON types they must have (files are user input:
# `read` checks them, so nothing past it meets a list where it expects an object).
_NUMBER = (int, float)
META_SCHEMA = {
    "format_version": int, "kind": str, "generator": dict, "weights_hash": str,
    "base_hash": str, "base_path": str, "encoder": str, "encoder_sha256": str, "loss": dict,
    "config": dict, "optimizer": dict, "adapt_steps": int, "adapt_lr": _NUMBER,
    "adapt_subset": str, "step": int, "wall_seconds": _NUMBER, "strength": _NUMBER,
    "teacher": dict,
}
# Within "config": the tables and the values adaptation reads.
CONFIG_SCHEMA = {"data": dict, "loss": dict, "meta": dict, "train": dict}
DATA_SCHEMA = {"crop": int, "style_size": int}


def _check_types(path: Path, where: str, values: dict, schema: dict) -> None:
    for key, expected in schema.items():
        if key not in values:
            continue
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else "number"
            names = {"dict": "an object", "str": "a string", "int": "an integer",
                     "list": "a list"}.get(names, f"a {names}")
            raise UserError(f"{path}: bad metadata: {where}{key} is {json.dumps(value)[:40]}, "
                            f"expected {names}")


def check_metadata(path: Path, meta) -> None:
    """The metadata's schema: an object whose known fields have their types; a one-line
    `UserError` naming the file and the field otherwise."""
    if not isinstance(meta, dict):
        raise UserError(f"{path}: bad metadata: expected a JSON object, got "
                        f"{type(meta).__name__} ({json.dumps(meta)[:40]})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise UserError(f"{path}: unsupported model format version {version!r} "
                        f"(this metastyle reads {FORMAT_VERSION})")
    _check_types(path, "", meta, META_SCHEMA)
    config = meta.get("config", {})
    _check_types(path, "config.", config, CONFIG_SCHEMA)
    data = config.get("data", {})
    _check_types(path, "config.data.", data, DATA_SCHEMA)
    if not 0 <= file_strength(meta) <= 1:
        raise UserError(f"{path}: bad metadata: strength is {meta['strength']}, "
                        "expected 0 to 1")
    width = meta.get("generator", {}).get("student_width", 0)  # "generator" is an object here
    if isinstance(width, bool) or not isinstance(width, _NUMBER) or not STUDENT_WIDTH.ok(width):
        raise UserError(f"{path}: bad metadata: generator.student_width is "
                        f"{json.dumps(width)[:40]}, expected {STUDENT_WIDTH.describe()}")
    for key in DATA_SCHEMA:
        if key in data and not NETWORK_SIDE.ok(data[key]):
            raise UserError(f"{path}: bad metadata: config.data.{key} is {data[key]}, "
                            f"expected {NETWORK_SIDE.low} to {NETWORK_SIDE.high}")


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a metastyle file; anything else is a one-line ``UserError``."""
    path = Path(path)
    check_readable_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {})[META_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError, AttributeError,
            json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a metastyle model file ({type(exc).__name__})") from None
    check_metadata(path, meta)
    return tensors, meta


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors and JSON (for safetensors, not pickle)."""
    tensors, scalars = {}, {}
    for index, slot in state["state"].items():
        for key, value in slot.items():
            if torch.is_tensor(value):
                tensors[f"{OPTIM_PREFIX}{index}/{key}"] = value
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(OPTIM_PREFIX):
            index, key = name.removeprefix(OPTIM_PREFIX).split("/", 1)
            state.setdefault(int(index), {})[key] = value
    for name, value in info["scalars"].items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}


@dataclass
class TrainingState:
    """What a training checkpoint holds, split back into its parts."""

    model: dict[str, torch.Tensor]  # generator state_dict
    log_rates: dict[str, torch.Tensor]  # Meta-SGD log rates by (slash-separated) name
    optimizer: dict  # optimizer state_dict
    rng: torch.Tensor  # the episode generator's state
    meta: dict


def write_training(path: str | Path, model: dict[str, torch.Tensor],
                   log_rates: dict[str, torch.Tensor], optimizer: dict, rng: torch.Tensor,
                   meta: dict) -> None:
    """Atomically write a resumable training state (``kind`` "training")."""
    optim_tensors, optim_info = flatten_optimizer(optimizer)
    tensors = ({f"{MODEL_PREFIX}{k}": v for k, v in model.items()}
               | {f"{RATE_PREFIX}{k}": v for k, v in log_rates.items()}
               | optim_tensors | {RNG_KEY: rng})
    write(path, tensors, {"kind": "training", **meta, "optimizer": optim_info})


def read_training(path: str | Path) -> TrainingState:
    tensors, meta = read(path)
    if meta.get("kind") != "training":
        raise UserError(f"{path}: not a training checkpoint (kind {meta.get('kind')!r})")
    return TrainingState(generator_weights(tensors),
                         {k.removeprefix(RATE_PREFIX): v for k, v in tensors.items()
                          if k.startswith(RATE_PREFIX)},
                         unflatten_optimizer(tensors, meta["optimizer"]), tensors[RNG_KEY], meta)


def generator_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generator's tensors of a generator, delta or training file (prefix removed)."""
    if any(k.startswith(MODEL_PREFIX) for k in tensors):
        return {k.removeprefix(MODEL_PREFIX): v for k, v in tensors.items()
                if k.startswith(MODEL_PREFIX)}
    return tensors


WEIGHTS_DIR = Path(__file__).parent / "weights"
# What `metastyle adapt`, `stylize --style` and the service start from: the encoder-decoder
# (a stylization at k = 0, refined by adaptation).
SHIPPED_INIT = WEIGHTS_DIR / "stylenet.safetensors"
# The meta-trained Johnson network (the MetaStyle reproduction; `--base` selects it).
SHIPPED_JOHNSON = WEIGHTS_DIR / "meta_init.safetensors"
# How a delta names a shipped base: by file name, so it finds it in any install. Deltas written
# before the encoder-decoder shipped say "shipped", which meant the Johnson init.
SHIPPED_HINT = "shipped:"
LEGACY_SHIPPED_HINT = "shipped"


def save_generator(path: str | Path, model, meta: dict,
                   dtype: torch.dtype = torch.float32) -> None:
    """A full generator file; ``meta`` should carry encoder, loss weights and provenance.
    ``dtype`` is the stored precision (weights load back into float32 models); the hash is of
    the stored values, which is what a delta's base check reads back."""
    weights = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    write(path, weights, {"kind": "generator", **generator_metadata(model),
                          "weights_hash": weights_hash(weights), **meta})


def file_strength(meta: dict) -> float:
    """The AdaIN strength an encoder-decoder file stylizes at by default (1 if it names none)."""
    return meta.get("strength", 1.0)


def file_style_size(meta: dict) -> int:
    """The long side (px) a file's style images are read at: its style code and Gram targets.
    Files that name none read them at their kind's training size (the data defaults of
    stages.py and config.py)."""
    trained_at = 256 if meta.get("generator", {}).get("kind") == "stylenet" else 192
    return meta.get("config", {}).get("data", {}).get("style_size", trained_at)


def generator_metadata(model) -> dict:
    """What a file records of its generator: the kind and size and, for the encoder-decoder,
    the AdaIN strength it stylizes at unless told otherwise."""
    strength = getattr(model, "strength", None)
    return {"generator": model.config.to_dict(),
            **({"strength": strength} if strength is not None else {})}


def save_delta(path: str | Path, model, base_path: str | Path, names: list[str], meta: dict):
    """Only ``names`` are stored; loading re-applies them to the base found at ``base_path``."""
    atomic_write_bytes(Path(path), encode_delta(model, base_path, names, meta))


def encode_delta(model, base_path: str | Path, names: list[str], meta: dict) -> bytes:
    """The bytes `save_delta` writes."""
    base_weights, base_meta = read(base_path)
    if base_meta.get("kind") != "generator":
        raise UserError(f"{base_path}: a delta needs a generator file as its base, not a "
                        f"{base_meta.get('kind')!r} file (use `metastyle export-init` first)")
    weights = model.state_dict()
    return encode({n: weights[n] for n in names},
                  {"kind": "delta", **generator_metadata(model),
                   "base_hash": base_meta.get("weights_hash") or weights_hash(base_weights),
                   "base_path": _base_hint(Path(base_path)),
                   **meta})


def _base_hint(base_path: Path) -> str:
    """``shipped:<name>`` for a file in the package's weights, else the path as given."""
    if base_path.resolve().parent == WEIGHTS_DIR.resolve():
        return SHIPPED_HINT + base_path.name
    return str(base_path)


def delta_base_file(path: str | Path, meta: dict) -> Path:
    """The base model file the delta at ``path`` (with metadata ``meta``) applies to."""
    path = Path(path)
    hint = meta.get("base_path", LEGACY_SHIPPED_HINT)
    if hint == LEGACY_SHIPPED_HINT:
        base_file = SHIPPED_JOHNSON
    elif hint.startswith(SHIPPED_HINT):
        base_file = WEIGHTS_DIR / Path(hint.removeprefix(SHIPPED_HINT)).name
    else:
        base_file = Path(hint)
    if not base_file.is_absolute() and not base_file.exists():
        base_file = path.parent / base_file
    if not base_file.is_file():
        raise UserError(f"{path}: its base model {base_file} is missing")
    return base_file


def _resolve_base(path: Path, meta: dict) -> dict[str, torch.Tensor]:
    base_file = delta_base_file(path, meta)
    weights, _ = read(base_file)
    if weights_hash(weights) != meta["base_hash"]:
        raise UserError(f"{path}: base model {base_file} has changed (hash mismatch)")
    return weights


def build_generator(path: Path, meta: dict, encoder=None):
    """An untrained generator of the kind and size ``meta`` records: the Johnson network, or
    the encoder-decoder on a frozen encoder. That is ``encoder`` when given (a training run
    passes its loss's, so the two share one trunk at the run's precision), else the one the
    file names; either way the one the file was made for (checked by name and weights hash).
    A student encoder (``student_width``) is part of the generator's own weights."""
    from .generator import Generator, GeneratorConfig

    spec = dict(meta["generator"])
    if spec.pop("kind", "johnson") != "stylenet":
        return Generator(GeneratorConfig(**spec))
    from .encoders import shared_encoder
    from .stylenet import StyleNet, StyleNetConfig

    if encoder is None:
        encoder = shared_encoder(meta["encoder"], 0,
                                 meta.get("loss", {}).get("precision", "float32"))
    if encoder.name != meta["encoder"]:
        raise UserError(f"{path}: made for the {meta['encoder']} encoder, not {encoder.name}")
    if encoder.weights_sha256 != meta["encoder_sha256"]:
        raise UserError(f"{path}: made for other {meta['encoder']} weights than these "
                        f"({meta['encoder_sha256'][:12]} vs {encoder.weights_sha256[:12]})")
    model = StyleNet(StyleNetConfig(**spec), encoder)
    model.strength = file_strength(meta)
    return model


def load_generator(path: str | Path, encoder=None):
    """Load a generator or delta file -> (generator in eval mode, metadata); ``encoder`` as in
    `build_generator`."""
    path = Path(path)
    tensors, meta = read(path)
    if meta.get("kind") not in ("generator", "delta", "training"):
        raise UserError(f"{path}: not a generator model (kind {meta.get('kind')!r})")
    try:
        model = build_generator(path, meta, encoder)
        weights = generator_weights(tensors)
        if meta["kind"] == "delta":
            weights = {**_resolve_base(path, meta), **weights}
        model.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: model weights do not match its config "
                        f"({str(exc).splitlines()[0][:120]})") from None
    return model.eval(), meta
