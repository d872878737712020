"""Continuous batching on the tiny random Gemma 3 (with its LoRA merged for the tuned lane):
concurrent requests, joining the running batch mid-generation, get exactly the greedy tokens they
get alone and the tokens `model.generate` gives; a decode step that scores a shortlist of the vocabulary
picks what the whole vocabulary picks whenever the shortlist holds it, and never a token outside it.

In fp32: a random model's logits are full of near-ties, and in bf16 the few ulps by which a padded
batch's sums differ from a lone row's flip some of them (bf16 serving shares that noise with any
batched server); the splicing itself is what these tests check."""
from __future__ import annotations

import threading
import time

import pytest

from assistant.answer import prompt_messages
from assistant.generate import Generation, open_generator

QUESTIONS = ["How much does a household membership cost per year?", "Who collects the fees?",
             "When is the shop open for youth builders?", "Can I borrow a drill?"]


@pytest.fixture(scope="module")
def generator(kb_cfg, tiny_adapter):
    # The whole vocabulary, as transformers' generate scores it (the shortlist has its own tests below).
    answer = kb_cfg.answer.model_copy(update={"dtype": "float32", "decode_vocabulary": "full"})
    return open_generator(kb_cfg.model_copy(update={"answer": answer}), tiny_adapter)


def requests(assistant) -> list[tuple[list[dict], bool, int]]:
    """(messages, tuned, max_new_tokens): short and long prompts (with retrieved context, past the
    tiny model's 128-token sliding window), base and tuned, different lengths."""
    hits = assistant.retriever.passages_many(QUESTIONS[:2])
    return [(prompt_messages(QUESTIONS[0], hits[0], ()), False, 24),
            (prompt_messages(QUESTIONS[1], None, ()), False, 9),
            (prompt_messages(QUESTIONS[2], None, ()), True, 17),
            (prompt_messages(QUESTIONS[1], hits[1], ()), True, 30),
            (prompt_messages(QUESTIONS[3], None, ()), False, 30)]


def run_stream(generator, messages, tuned, max_new_tokens) -> tuple[list[str], Generation]:
    items = list(generator.stream(messages, tuned=tuned, max_new_tokens=max_new_tokens))
    return items[:-1], items[-1]


def test_concurrent_streams_equal_their_greedy_answer_alone(assistant, generator):
    asks = requests(assistant)
    alone = [run_stream(generator, *ask)[1] for ask in asks]
    assert all(g.tokens > 0 for g in alone)
    # The first request is running before the others arrive: they must join it mid-generation.
    first_piece, results, finished = threading.Event(), [None] * len(asks), {}

    def one(i: int) -> None:
        pieces = []
        for item in generator.stream(asks[i][0], tuned=asks[i][1], max_new_tokens=asks[i][2]):
            if isinstance(item, Generation):
                results[i] = (pieces, item)
            else:
                pieces.append(item)
                first_piece.set()
                finished.setdefault(f"first piece {i}", time.perf_counter())
        finished[i] = time.perf_counter()

    threads = [threading.Thread(target=one, args=(0,))]
    threads[0].start()
    assert first_piece.wait(60)
    threads += [threading.Thread(target=one, args=(i,)) for i in range(1, len(asks))]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(120)
    for i, (pieces, generation) in enumerate(results):
        assert generation.text == alone[i].text and generation.tokens == alone[i].tokens, f"request {i}"
        assert "".join(pieces).strip() == generation.text
    # Admitted between decode steps, not after the running request: the short one ends first.
    assert finished["first piece 1"] < finished[0] and finished[1] < finished[0]


def test_batched_tokens_equal_model_generate(assistant, generator):
    """The reference: transformers' own greedy generate, one prompt at a time."""
    import torch

    asks = requests(assistant)
    batched = generator.generate_batch([a[0] for a in asks[:2]], tuned=False, max_new_tokens=24)
    for (messages, _, _), generation in zip(asks[:2], batched):
        ids = generator.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                      return_dict=True)["input_ids"]
        with torch.inference_mode():
            out = generator.base.generate(ids, max_new_tokens=24, do_sample=False, top_p=None, top_k=None)
        new = out[0, ids.shape[1]:].tolist()
        stops = [i for i, t in enumerate(new) if t in generator.loop.stop_ids]
        expected = generator.tokenizer.decode(new[:stops[0] if stops else None], skip_special_tokens=True).strip()
        assert generation.text == expected


def test_a_reader_that_leaves_frees_its_row(assistant, generator):
    messages = requests(assistant)[1][0]
    stream = generator.stream(messages, tuned=False, max_new_tokens=200)
    next(stream)
    stream.close()                       # the browser tab closed
    deadline = time.time() + 30
    while any(lane.rows for lane in generator.loop.lanes.values()):
        assert time.time() < deadline, "the abandoned request still occupies the batch"
        time.sleep(0.05)


def test_at_most_max_batch_rows_decode_at_once_and_the_rest_wait_their_turn(assistant, generator):
    from assistant.generate import LocalGenerator

    narrow = LocalGenerator(generator.base, generator.tokenizer, max_rows=2)     # answer.max_batch_rows = 2
    conversations = [prompt_messages(q, None, ()) for q in QUESTIONS]
    widest, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            widest[0] = max(widest[0], len(narrow.loop.lanes[False].rows))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answers = narrow.generate_batch(conversations, tuned=False, max_new_tokens=16)
    finally:
        done.set()
        watcher.join()
    assert widest[0] == 2
    assert [a.text for a in answers] == [a.text for a in generator.generate_batch(conversations, tuned=False,
                                                                                   max_new_tokens=16)]


def test_newcomers_are_prefilled_in_groups_of_like_length_shortest_first():
    from assistant.batching import Request, length_groups

    crowd = [Request([7] * n, tuned=False, max_new_tokens=4) for n in (600, 50, 590, 55, 300, 48)]
    groups = length_groups(crowd)
    assert [[len(r.prompt_ids) for r in group] for group in groups] == [[48, 50, 55], [300], [590, 600]]
    for group in groups:       # the left padding each group's prefill computes stays under 15% of its tokens
        width, tokens = max(len(r.prompt_ids) for r in group), sum(len(r.prompt_ids) for r in group)
        assert width * len(group) <= 1.15 * tokens
    assert sorted(map(id, crowd)) == sorted(id(r) for group in groups for r in group)


def test_a_crowd_admitted_over_several_turns_gets_the_same_answers(assistant, generator):
    """A prefill budget of one prompt per turn: the crowd joins across several decode steps, the running
    rows go on meanwhile, and every answer is still the greedy one."""
    from assistant.generate import LocalGenerator

    asks = [a for a in requests(assistant) if not a[1]]                 # the base lane's three
    patient = LocalGenerator(generator.base, generator.tokenizer)
    patient.loop.prefill_tokens = 1
    admitted: list[int] = []
    admit = patient.loop._admit
    patient.loop._admit = lambda lane, group: (admitted.append(len(group)), admit(lane, group))
    answers = [None] * len(asks)

    def one(i: int) -> None:
        answers[i] = run_stream(patient, *asks[i])[1]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(asks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert admitted == [1] * len(asks)
    assert [a.text for a in answers] == [run_stream(generator, *ask)[1].text for ask in asks]


def test_prompts_prefilled_after_the_shared_prefix_get_the_tokens_of_whole_prompts(assistant, generator):
    """The loop keeps the keys and values of the prefix every prompt starts with (<bos>, the turn marker,
    the system line) and prefills only what follows, with each row's padding between the two. Alone and
    joining one another (rows of different lengths in one prefill, so padding sits mid-row), the tokens
    are those of a loop that prefills whole prompts; a prompt that would outgrow the sliding window, or
    does not start with the prefix, is prefilled whole."""
    from assistant.batching import Request
    from assistant.generate import LocalGenerator

    hits = assistant.retriever.passages_many(QUESTIONS[:1])[0]
    asks = [(prompt_messages(q, None, ()), tuned, 20) for q in QUESTIONS for tuned in (False, True)]
    asks += [(prompt_messages(QUESTIONS[0], [], ()), True, 12)]          # "Context: (nothing found)"
    whole = LocalGenerator(generator.base, generator.tokenizer, generator.tuned)
    whole.loop.prefix_ids = []
    expected = [token_ids(whole, *ask) for ask in asks]
    assert [token_ids(generator, *ask) for ask in asks] == expected

    assert token_ids_at_once(generator, asks) == expected

    loop, prefix = generator.loop, generator.loop.prefix_ids
    assert generator.tokenizer.decode(prefix).endswith("say so.\n\n")      # the system line, then the question
    lane = loop.lanes[False]
    assert lane.prefix_kv is not None and lane.prefix_kv[0][0].shape[2] == len(prefix)
    short = Request(generator._prompt_ids(asks[0][0]), False, 20)
    assert loop._shared_prefix(lane, [short]) is lane.prefix_kv
    long = Request(generator._prompt_ids(prompt_messages(QUESTIONS[0], hits, ())), False, 20)
    assert len(long.prompt_ids) + 20 > generator.base.config.sliding_window
    assert loop._shared_prefix(lane, [short, long]) is None
    assert loop._shared_prefix(lane, [Request(short.prompt_ids[1:], False, 20)]) is None


def token_ids(generator, messages: list[dict], tuned: bool, max_new_tokens: int) -> list[int]:
    from assistant.generate import _token_runs

    return [token for run in _token_runs(generator._submit(messages, tuned, max_new_tokens, 0.0)) for token in run]


def token_ids_at_once(generator, asks) -> list[list[int]]:
    """Each ask's token ids, all submitted at once from threads of their own, so they join one another."""
    results = [None] * len(asks)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, token_ids(generator, *asks[i])))
               for i in range(len(asks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_a_shortlist_that_holds_the_chosen_tokens_decodes_the_same(assistant, generator):
    """The shortlisted step (the decoder's state against gathered rows of the output layer) is the same
    computation: given the tokens the full decode chose among a thousand others, it chooses them again,
    alone and with requests of both lanes joining one another mid-generation."""
    from assistant.generate import LocalGenerator

    asks = requests(assistant)
    full = [token_ids(generator, *ask) for ask in asks]
    vocabulary = set().union(*full) | set(range(500, 1500))
    short = LocalGenerator(generator.base, generator.tokenizer, generator.tuned, vocabulary=vocabulary)
    assert [token_ids(short, *ask) for ask in asks] == full
    assert token_ids_at_once(short, asks) == full


def test_a_shortlist_keeps_every_token_after_the_first_inside_it_and_the_prompt(assistant, generator):
    from assistant.generate import LocalGenerator

    asks = requests(assistant)
    full = [token_ids(generator, *ask) for ask in asks]
    vocabulary = set(range(2000, 3000))       # none of them is a token the full decode chose
    assert not vocabulary & set().union(*full)
    short = LocalGenerator(generator.base, generator.tokenizer, generator.tuned, vocabulary=vocabulary)
    allowed = vocabulary | generator.loop.stop_ids | {generator.loop.refusal_token}
    for (messages, tuned, max_new_tokens), reference in zip(asks, full):
        ids = token_ids(short, messages, tuned, max_new_tokens)
        text = generator.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt = generator.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids[0] == reference[0]             # the first token is chosen from the whole vocabulary
        assert ids[1:] and set(ids[1:]) <= allowed | set(prompt), "a token from outside the shortlist"
        assert ids != reference


def test_the_default_shortlist_holds_the_core_and_the_knowledge_base(kb_cfg, generator):
    from assistant.generate import CORE_TOKENS, decode_vocabulary
    from indexing.store import load_chunks

    auto = kb_cfg.model_copy(update={"answer": kb_cfg.answer.model_copy(update={"decode_vocabulary": "auto"})})
    vocabulary = decode_vocabulary(auto, generator.base, generator.tokenizer)      # the tiny model is on the CPU
    chunk = load_chunks(kb_cfg)[0]
    rare = {i for i in generator.tokenizer(chunk.text, add_special_tokens=False)["input_ids"] if i >= CORE_TOKENS}
    assert rare and rare <= vocabulary and set(range(CORE_TOKENS)) <= vocabulary
    assert len(vocabulary) < len(generator.tokenizer) // 4
    full = kb_cfg.model_copy(update={"answer": kb_cfg.answer.model_copy(update={"decode_vocabulary": "full"})})
    assert decode_vocabulary(full, generator.base, generator.tokenizer) is None


def test_at_exit_every_decode_thread_is_let_go_and_a_later_request_starts_another(assistant, generator):
    """Python's exit runs `_close_open_loops`: a decode thread left waiting in the loop took the process down
    with it on the packaged model (`assistant ask` exited 134, "terminate called without an active
    exception"; the tiny model's small matmuls never start torch's thread pool, so that part is not shown)."""
    from assistant.batching import _close_open_loops

    messages, tuned, max_new_tokens = requests(assistant)[1]
    before = token_ids(generator, messages, tuned, max_new_tokens)
    thread = generator.loop._thread
    assert thread is not None and thread.is_alive()
    _close_open_loops()
    assert not thread.is_alive() and generator.loop._thread is None
    assert token_ids(generator, messages, tuned, max_new_tokens) == before


def test_a_reader_that_falls_behind_gets_the_tokens_sent_meanwhile_in_one_piece(assistant, generator):
    """Tokens already waiting for a slow reader come as one run, in order, and the stream's text is the
    same as when every token is read as it comes."""
    from assistant.batching import Request
    from assistant.generate import _token_runs

    waiting = Request([1, 2], tuned=False, max_new_tokens=8)
    for token in (5, 6, 7):
        waiting.tokens.put(token)
    waiting.tokens.put(None)
    assert list(_token_runs(waiting)) == [[5, 6, 7]]

    failed = Request([1, 2], tuned=False, max_new_tokens=8)
    failed.tokens.put(5)
    failed.tokens.put(RuntimeError("the model failed"))
    with pytest.raises(RuntimeError, match="the model failed"):
        list(_token_runs(failed))

    messages, tuned, max_new_tokens = requests(assistant)[0]
    _, alone = run_stream(generator, messages, tuned, max_new_tokens)
    request = generator._submit(messages, tuned, max_new_tokens, 0.0)
    deadline = time.time() + 120
    while None not in list(request.tokens.queue) and time.time() < deadline:
        time.sleep(0.01)                      # the whole answer is waiting before the stream reads it
    runs = list(_token_runs(request))
    assert len(runs) == 1 and generator._text(runs[0]).strip() == alone.text
