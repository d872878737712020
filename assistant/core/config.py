"""One typed configuration for every stage.

Precedence, lowest to highest: field defaults < `assistant.toml` < environment
(`ASSISTANT_<FIELD>` or `ASSISTANT_<SECTION>__<FIELD>`) < command-line flags.

    python -c "from assistant.core.config import load_config; print(load_config().model_dump_json(indent=2))"
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from assistant.core.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CORPUS = REPO_ROOT / "corpora" / "finance" / "docs"
PACKAGED_BASE_MODEL = "packaged:gemma3-270m"
PACKAGED_EMBED_MODEL = "packaged:all-MiniLM-L6-v2"


def default_model_cache() -> Path:
    """Per user, beside the Hugging Face cache (HF_HOME, else ~/.cache/huggingface): every checkout and
    every folder the CLI runs in share one converted copy instead of ~1 GB each."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "domain-assistant" / "models"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IndexConfig(Section):
    chunk_size: int = Field(256, ge=32, description="Chunk size in tokens; MiniLM reads 256 word pieces, so a bigger chunk's tail would never reach its vector.")
    chunk_overlap: int = Field(48, ge=0, description="Tokens shared by neighbouring chunks, so a fact cut at a boundary survives in one of them.")
    max_file_mb: float = Field(20.0, gt=0, description="Files larger than this are skipped with a reason.")
    embed_batch_size: int = Field(64, ge=1, description="Chunks embedded per forward pass.")
    embed_bf16: Literal["auto"] | bool = Field("auto", description="Embed in bf16: auto = where the hardware computes bf16 natively (AMX/AVX512-BF16 CPUs, bf16 GPUs: 2.6x faster on an AVX512-BF16 EPYC, cosine >= 0.998 to fp32); fp32 elsewhere, where bf16 falls back to a reference GEMM.")
    collection: str = Field("chunks", min_length=3, description="Chroma collection name (3+ characters, Chroma's rule).")


class RetrieveConfig(Section):
    retriever: Literal["hybrid", "vector", "bm25"] = Field("hybrid", description="Vector, BM25, or both fused by reciprocal rank.")
    top_k: int = Field(6, ge=1, le=50, description="Chunks searched for the sentences that go into the prompt (with sentences=0: chunks put into the prompt, ~200 tokens each).")
    sentences: int = Field(6, ge=0, le=50, description="Sentences put into the prompt: the units of the top_k chunks that best match the question, under their chunks' headings (0: whole chunks). On the shipped held-out set 6 of the top 6 chunks hold 65% of the key facts in ~180 tokens; 3 whole chunks hold 79% in ~450, and a 270M reader picks the right sentence far more often among 6.")
    sentence_word_weight: float = Field(0.2, ge=0.0, description="Weight of the question's rare words (idf-weighted share found in a sentence) next to the embedding cosine when choosing the sentences (`Retriever.passages_many`).")
    sentence_rank_penalty: float = Field(0.03, ge=0.0, description="Subtracted from a sentence's match per rank of its chunk, so the retriever's ranking of whole chunks counts too.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    search_ef: int = Field(256, ge=16, description="Candidates Chroma's HNSW graph keeps while searching (its ef_search). At Chroma's default of 100 a search over the shipped 321 chunks missed a true top-20 neighbour for 1-2 queries in 256, and which ones changed from process to process, so two synth runs on one index wrote different RAFT contexts; at 256 the same 256 queries matched exact search in every run.")


class SynthConfig(Section):
    generator: Literal["extractive", "hf", "openai"] = Field("extractive", description="Who writes content points and questions: 'extractive' needs no LLM; 'hf' uses the base model; 'openai' any OpenAI-compatible endpoint.")
    generator_url: str | None = Field(None, description="Base URL of an OpenAI-compatible endpoint for --generator openai (vLLM, Ollama, llama.cpp server).")
    generator_model: str | None = Field(None, description="Model name sent to that endpoint.")
    paraphrases: int = Field(4, ge=1, le=12, description="Differently phrased questions per content point; recall from the weights needs variety.")
    raft_fraction: float = Field(0.5, ge=0.0, le=1.0, description="Share of QA items also emitted as RAFT pairs with retrieved context.")
    raft_follow_ups: int = Field(3, ge=0, le=5, description="RAFT answers quote the answering sentence, then this many other lines of the context, in the order they come (the next best matches at answer time). Hybrid key facts on the shipped held-out set: 38.0% at 0, 49.4% at 1; at 2 (8-minute training, 96-token answers) dev half 56.3 against 49.5 at 1, test half 57.5 against 48.0, answers 53 words instead of 36. At 3 (128-token answers; default runs on a 2-core AMX Xeon): shipped dev half 64.9 against 62.6 at 2, test half 61.1 against 58.5; handbook dev half 69.4 against 57.6, test half 66.7 against 66.7; answers 75 words instead of 58. At 2, no key fact on the context's fourth line or lower was stated (15 such facts in the two dev halves).")
    raft_oracle_fraction: float = Field(0.95, ge=0.0, le=1.0, description="Share of RAFT pairs whose context holds the answering sentence; the rest get distractors only and learn to refuse. At 0.8 the tuned reader refused 15-18% of answerable held-out questions (dev half) yet only 13% of the unanswerable ones: retrieval misses look like out-of-scope questions to it.")
    refusals: int = Field(0, ge=0, description="Refusal pairs for template questions on topics the knowledge base does not cover (off by default; RAFT pairs with the answer taken out of the context still teach refusing). Their workplace phrasing ('How do I apply for X?') taught a shortcut: with 40 of them, a 24-minute training refused 77% of answerable held-out questions (hybrid 14.1% key facts); without, 0% (hybrid 48.9%).")
    validation_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Share of the content points that keep one phrasing out of training, for validation (every document reaches training).")
    feedback_fraction: float = Field(0.0, ge=0.0, le=1.0, description="Share of the answers corrected in the app (<workspace>/feedback.jsonl) that become training pairs, asked without and with retrieved context and answered with the correction; chosen by a hash of the question, so each keeps its side. The rest stay questions for `assistant eval --questions feedback`, which never asks one that was trained on. 0: feedback only evaluates.")
    near_duplicate_threshold: float = Field(0.9, gt=0.0, le=1.0, description="Jaccard (MinHash) above which two questions count as duplicates.")
    leakage_threshold: float = Field(0.85, gt=0.0, le=1.0, description="Embedding cosine above which a training question counts as a leaked eval question.")
    batch_size: int = Field(8, ge=1, description="Chunks sent to an LLM generator together (hf: one padded batch).")
    max_new_tokens: int = Field(256, ge=16, description="Tokens an LLM generator may write per chunk.")
    max_answer_words: int = Field(120, ge=5, description="Longer question-answer answers fail the length gate (golden outputs are exempt).")


class TrainConfig(Section):
    objective: Literal["sft", "cpt", "cpt+sft"] = Field("sft", description="Supervised pairs, continued pre-training on the corpus chunks, or CPT then SFT.")
    lora_r: int = Field(16, ge=1, description="LoRA rank. 16 on every linear layer of Gemma 3 270M is 3.8M trainable weights (15 MB): room for a few thousand facts; recall depends more on the data than on a higher rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scale numerator (alpha / r multiplies the update); alpha = 2r is the usual choice and keeps the learning rate meaningful when r changes with it.")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: str = Field("all-linear", description="Modules that get adapters ('all-linear' or a comma list such as q_proj,v_proj). All linear layers: facts live mostly in the MLPs, which attention-only LoRA leaves untouched; vLLM serves LoRA on all of them.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (5% warm-up, cosine decay). Higher than the usual 2e-4 because the CPU budget is 50 steps: after 15 steps on the shipped set, 1e-3 reached train/validation loss 2.11/2.64 against 2.60/2.96 at 2e-4.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training set; recall from the weights needs several, early stopping ends sooner when validation loss stops falling.")
    budget_minutes: float = Field(12.0, ge=0, description="Training time budget: the first steps are timed and the step count set to what fits (0: no budget, the epochs or --max-steps decide). 12 minutes keeps `assistant run` on the shipped corpus within 30 minutes on a 2-core CPU, bf16 or fp32; the epochs still cap it, so a fast machine stops after `epochs` passes.")
    run_minutes: float = Field(30.0, ge=0, description="`assistant run` as a whole: before training, one batch of answers times the evaluation on this machine, and the training budget is cut (to 3 minutes at least) so the run ends within this (0: no cap). Not part of the adapter's identity.")
    max_steps: int = Field(0, ge=0, description="A fixed number of optimizer steps, replacing the time budget (0: the budget decides).")
    min_steps: int = Field(30, ge=0, description="The fewest steps a time budget plans (the epochs still cap it), even where they overrun it: below ~30 steps of 4 rows the reader is not reliably learnt. Default runs on one 2-core CPU at 21-26 steps scored 44.9-55.0 on hybrid, at 29-78 steps 53.4-57.3. 0: the budget alone decides.")
    batch_size: int = Field(4, ge=1, description="Packed rows per optimizer step (over all processes). 4 x 512 tokens keeps a CPU step near 15 s and peak memory near 6.5 GB.")
    max_seq_len: int = Field(512, ge=32, description="Tokens per training sequence.")
    eval_steps: int = Field(20, ge=1, description="Validation loss (and a checkpoint for --resume) every N steps.")
    max_val_pairs: int = Field(64, ge=1, description="Validation pairs scored at each evaluation (a fixed seeded sample): enough for a stable loss, cheap next to training.")
    early_stopping_patience: int = Field(3, ge=1, description="Stop when validation loss has not improved for this many evaluations.")
    overfit_evals: int = Field(2, ge=1, description="Overfitting guard: stop when validation loss rose this many evaluations in a row while training loss fell.")
    bf16: Literal["auto"] | bool = Field("auto", description="bf16 weights and autocast: auto = where the hardware computes bf16 natively (AMX/AVX512-BF16 CPUs, bf16 GPUs); fp32 elsewhere (a bf16 matmul ran 150x slower than fp32 on an AVX2-only EPYC).")
    qlora: bool = Field(False, description="4-bit base weights with bitsandbytes (CUDA only).")
    merge: bool = Field(False, description="Also write the adapter merged into the base weights.")


class AnswerConfig(Section):
    backend: Literal["hf", "openai"] = Field("hf", description="Generate locally with transformers, or through an OpenAI-compatible server.")
    backend_url: str | None = Field(None, description="Base URL for --backend openai (e.g. vLLM serving the base model plus the adapter).")
    backend_model: str | None = Field(None, description="Model name for the base paths on that server.")
    backend_adapter_model: str | None = Field(None, description="Model name for the tuned paths on that server (vLLM's LoRA module name).")
    adapter: Path | None = Field(None, description="LoRA adapter folder for the tuned paths; default: the newest under the workspace.")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Answer length limit in tokens: a tuned hybrid answer quotes four lines of its context (synth.raft_follow_ups), ~75 words. The RAFT answers of the dataset are fitted to it (their follow-up lines stop before one that would run past it), so a change rebuilds the dataset: trained on answers 37% of which ran past 128 tokens, hybrid cut 39 of 117 shipped held-out answers mid-sentence; fitted, 12, with the same key facts (62.5 against 63.4), and on the handbook 5 of 48 instead of 11 (hybrid 71.2 against 68.1).")
    history_turns: int = Field(4, ge=0, description="Earlier turns kept in the prompt.")
    max_batch_rows: int = Field(32, ge=1, le=512, description="Requests the local model decodes at once, per model (base, tuned); later ones wait for a free row. The serving bench measured batch 16 at 3x the tokens/s of batch 1 on 2 cores; beyond ~32 rows a CPU decode step grows about linearly with the rows, so admitting more only delays everyone. On a GPU, raise it.")
    max_question_chars: int = Field(4000, ge=100, description="Longer messages are truncated, with a visible note.")
    refusal_floor: float | Literal["auto"] = Field(0.0, description="hybrid: start the refusal when the tuned model gives its first token at least this probability. 0 (default): greedy only. auto: the floor measured for the adapter on synthetic questions (eval.refusal_calibration: at most 5% of answerable validation prompts refused), written beside it by `assistant train` and `assistant eval`. Off by default: that first token, \"The\", opens ordinary answers too, and a forced \"The\" rarely went on to the refusal. On a 2-core AMX Xeon one adapter's auto floor (0.029) fired on 52 held-out questions that then restated the question instead of quoting the context: hybrid key facts 44.6 with it, 57.7 without (dev half 44.7 -> 58.8); unanswerable questions refused 6 of 15 with it, 5 without (by the retrieval gate), answerable ones wrongly 6.8% and 6.0%.")
    retrieval_gate: float | Literal["auto"] = Field("auto", description="hybrid: refuse without generating when the context's match to the question (indexing.retrieve.gate_score: the best sentence's cosine plus retrieval_gate_words times the share of the question's rare words one line holds) is below this. auto: the score under which 5% of the synthetic validation questions fall (eval.refusal_calibration, written beside the adapter with the weight it used). Shipped held-out dev half, unanswerable refused / answerable wrongly refused: cosine alone at 10% 3 of 11 / 5 of 66, with the words at 5% 5 of 11 / 3 of 66; 0: off.")
    retrieval_gate_words: float = Field(0.5, ge=0.0, le=5.0, description="Weight of the question's rare words in the retrieval gate's score, used when the gate is calibrated (`auto` answers with the weight its gate was measured with; a number for the gate uses this). 0: the cosine alone, as before.")
    decode_vocabulary: Literal["auto", "full", "shortlist"] = Field("auto", description="Tokens a local decode step scores after the first: full (all 262k of Gemma 3's) or shortlist (the tokenizer's 16,384 most frequent pieces, the knowledge base's tokens and the prompts'; assistant.batching). The output layer was half of a decode step on a 2-core AVX2 EPYC in fp32. auto: shortlist on a CPU, full on a GPU.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="Weights for local generation. auto: bfloat16 on GPUs and on CPUs with AMX or AVX512-BF16 (2.2x faster prefill, 3x faster batched decoding here), else float32.")


class EvalConfig(Section):
    bootstrap_samples: int = Field(2000, ge=100, description="Resamples for the 95% intervals.")
    judge_url: str | None = Field(None, description="OpenAI-compatible endpoint for LLM-judged RAGAS metrics.")
    judge_model: str | None = Field(None, description="Judge model name at that endpoint, or an HF id/path for a local judge.")
    limit: int | None = Field(None, ge=1, description="Score only the first N questions (quick runs).")
    batch_size: int = Field(16, ge=1, description="Questions generated together; batching amortises the memory-bound LM head (262k rows). Rag answers of 96 tokens on a 2-core EPYC, seconds each: bf16 0.59 at 8, 0.45 at 16, 0.54 at 32; fp32 5.2 at 8 (CPU shared), 2.3 at 16, 1.7 at 32. The paths without retrieval, whose prompts are short, take four times as many.")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Answer length scored, the same as the app's (answer.max_new_tokens): a tuned hybrid answer quotes four lines, ~75 words; a rambling answer costs time but gains no key fact after this. An adapter that quotes three lines scored the same at 96 and 128 (shipped and handbook); rag, which rambles to the cap, gains ~4 points at 128.")
    budget_minutes: float = Field(10.0, ge=0.0, description="Time for evaluation: every held-out question is always answered on every path; the validation sample and the general (forgetting) questions shrink when the held-out pace says they would not fit (2-core AVX512 EPYC: 4-5 min in bf16, 12 min in fp32 with the CPU shared).")
    validation_sample: int = Field(24, ge=0, description="Synthetic validation pairs also answered on every path (a seeded sample): they check that the held-out picture holds on the tuning distribution.")


class TuneConfig(Section):
    trials: int = Field(6, ge=1, description="Trials of `assistant tune`; the first trains the configured settings, the baseline the others must beat.")
    budget_minutes: float = Field(30.0, ge=0, description="Training time over all trials; each trial trains for budget_minutes / trials (0: train.max_steps or the epochs decide). Dataset builds and validation scoring come on top, about 2 minutes a trial on 2 cores.")
    eval_steps: int = Field(5, ge=1, description="Validation loss every N steps inside a trial (train.eval_steps for the trials): the intermediate scores the pruner stops weak trials on.")
    validation_questions: int = Field(48, ge=1, description="Synthetic validation questions (a seeded sample) each trial answers on offline and hybrid; its score is their key-fact accuracy. The held-out questions are never used to choose.")
    sampler_startup_trials: int = Field(3, ge=1, description="Trials drawn at random before TPE models the results (Optuna's default of 10 would leave a short tune all random).")
    pruner_startup_trials: int = Field(2, ge=1, description="Trials that must finish before any is pruned: the median they set is what a trial's validation loss is compared with.")
    pruner_warmup_steps: int = Field(0, ge=0, description="Steps a trial trains before it may be pruned.")


class Config(Section):
    corpus: Path = Field(SHIPPED_CORPUS, description="Folder of documents to index (Markdown, text, PDF, HTML, DOCX).")
    questions: Path | None = Field(None, description="Held-out questions (JSONL); default: <corpus>/../eval/heldout.jsonl when it exists, else a generated set.")
    workspace: Path | None = Field(None, description="Where every stage writes; default: workspace/<corpus name>.")
    model_cache: Path = Field(default_factory=default_model_cache, description="Converted model weights, shared by all workspaces and checkouts (default: <HF_HOME>/domain-assistant/models; ASSISTANT_MODEL_CACHE overrides).")
    base_model: str = Field(PACKAGED_BASE_MODEL, description="Generator: the packaged Gemma 3 270M, an HF id, or a local path.")
    embed_model: str = Field(PACKAGED_EMBED_MODEL, description="Embedder: the packaged all-MiniLM-L6-v2, an HF id, or a local path.")
    chroma_url: str | None = Field(None, description="A Chroma server (http://host:port) instead of the embedded store.")
    seed: int = Field(0, description="Seed for sampling, splits and training.")
    api_key: SecretStr | None = Field(None, min_length=8, description="Key (8+ characters) `assistant serve` requires (Authorization: Bearer <key>); needed for a host other than loopback. Prefer ASSISTANT_API_KEY to --api-key, which the process list shows.")
    index: IndexConfig = IndexConfig()
    retrieve: RetrieveConfig = RetrieveConfig()
    synth: SynthConfig = SynthConfig()
    train: TrainConfig = TrainConfig()
    answer: AnswerConfig = AnswerConfig()
    eval: EvalConfig = EvalConfig()
    tune: TuneConfig = TuneConfig()

    @property
    def home(self) -> Path:
        """The workspace folder, derived from the corpus when not given."""
        if self.workspace is not None:
            return self.workspace
        name = self.corpus.name if self.corpus.name not in ("docs", "documents") else self.corpus.parent.name
        return Path("workspace") / name

    @property
    def questions_path(self) -> Path | None:
        if self.questions is not None:
            return self.questions
        beside = self.corpus.parent / "eval" / "heldout.jsonl"
        return beside if beside.exists() else None

    @property
    def general_questions_path(self) -> Path:
        return SHIPPED_CORPUS.parent / "eval" / "general.jsonl"

    @property
    def kb_dir(self) -> Path:
        return self.home / "kb"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def evals_dir(self) -> Path:
        return self.home / "evals"


class ConfigError(UserError):
    """A configuration value is wrong; the message names the setting and the fix."""


def _env_overrides() -> dict[str, Any]:
    sections = {name for name, f in Config.model_fields.items() if isinstance(f.default, Section)}
    out: dict[str, Any] = {}
    for key, value in os.environ.items():
        if not key.startswith("ASSISTANT_"):
            continue
        name = key[len("ASSISTANT_"):].lower()
        section, _, field = name.partition("__")
        if field and section in sections:
            out.setdefault(section, {})[field] = value
        elif name in Config.model_fields and name not in sections:
            out[name] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif value is not None:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults < assistant.toml < ASSISTANT_* environment < overrides (the CLI flags)."""
    data: dict[str, Any] = {}
    toml_path = path or Path("assistant.toml")
    if toml_path.exists():
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{toml_path}: not valid TOML ({err}); fix the file or pass --config another.toml") from err
        except OSError as err:
            raise ConfigError(f"{toml_path}: cannot be read ({err.strerror or err}); pass --config with a TOML file") from err
    elif path is not None:
        raise ConfigError(f"{path}: config file not found; check --config")
    data = _merge(_merge(data, _env_overrides()), overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}. Set it by flag, ASSISTANT_* variable or assistant.toml.") from err
