from transformers import AutoTokenizer

from opdbench.chat import encode_prompt, encode_response
from opdbench.zoo import load_tokenizer, list_models
from opdbench.zoo.tokenizer import MAX_VOCAB, SPECIAL_TOKENS, build_tokenizer


def test_token_ids_round_trip_through_save_and_auto_tokenizer(tmp_path, tokenizer, math_task):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for ex in math_task.examples("eval")[:50]:
        for text in (ex.prompt, ex.reference):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert loaded(text, add_special_tokens=False)["input_ids"] == ids
            assert loaded.decode(ids) == text  # decoding restores spaces exactly
        assert encode_prompt(loaded, ex.prompt) == encode_prompt(tokenizer, ex.prompt)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.chat_template == tokenizer.chat_template


def test_vocabulary_is_small_with_special_and_role_tokens(tokenizer):
    vocab = tokenizer.get_vocab()
    assert len(vocab) <= MAX_VOCAB
    assert all(tok in vocab for tok in SPECIAL_TOKENS)
    assert None not in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)
    assert tokenizer.unk_token_id not in tokenizer("ann has 12 pens. how many pens now?")["input_ids"]


def test_digits_and_punctuation_are_single_tokens_with_their_space(tokenizer):
    ids = tokenizer("12+7=19. answer: 19", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["▁1", "2", "+", "7", "=", "1", "9", ".", "▁answer", ":", "▁1", "9"]


def test_code_round_trips_with_line_breaks():
    body = "xs = [v for v in xs if v > 4]\nreturn len(xs)"
    tok = build_tokenizer([body])
    ids = tok(body, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and "\n" in tok.convert_ids_to_tokens(ids)
    assert tok.decode(ids) == body


def test_prompt_and_response_encoding(tokenizer):
    prompt = encode_prompt(tokenizer, "ann has 12 pens.")
    assert prompt[0] == tokenizer.bos_token_id
    assert prompt[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert encode_response(tokenizer, "answer: 3")[-1] == tokenizer.eos_token_id
    with_context = encode_prompt(tokenizer, "ann has 12 pens.", context="answer: 12")
    assert tokenizer.convert_tokens_to_ids("<|context|>") in with_context


def test_shipped_zoo_tokenizers_are_identical_and_llama():
    import json

    from opdbench.zoo import ZOO_DIR
    names = list_models()
    assert {"student", "teacher"} <= set(names), "run `opdbench zoo build`"
    vocabs = [load_tokenizer(f"zoo:{n}").get_vocab() for n in names]
    assert all(v == vocabs[0] for v in vocabs)
    for n in names:
        assert json.loads((ZOO_DIR / n / "config.json").read_text())["model_type"] == "llama"


def test_a_cell_loads_the_zoo_tokenizer_without_transformers_and_it_agrees_with_transformers():
    """ZooTokenizer (what cells load) against PreTrainedTokenizerFast on the same folder: ids of
    every task's prompts (through the chat template, with and without a privileged context) and
    references, text decoded back (special tokens skipped or kept), special tokens, vocabulary."""
    from transformers import PreTrainedTokenizerFast

    from opdbench.conf import load_config
    from opdbench.tasks import make_task
    from opdbench.zoo import ZOO_DIR
    from opdbench.zoo.tokenizer import ZooTokenizer

    ours, theirs = load_tokenizer("zoo:student"), PreTrainedTokenizerFast.from_pretrained(ZOO_DIR / "student")
    assert isinstance(ours, ZooTokenizer)
    for name in ("math", "code", "dialogue"):
        task = make_task(load_config([f"task={name}"]).task)
        for split in ("train", "eval"):
            for ex in task.examples(split)[:300]:
                assert encode_prompt(ours, ex.prompt) == encode_prompt(theirs, ex.prompt)
                assert encode_prompt(ours, ex.prompt, ex.reference) == encode_prompt(theirs, ex.prompt, ex.reference)
                assert encode_response(ours, ex.reference) == encode_response(theirs, ex.reference)
                ids = encode_prompt(ours, ex.prompt) + encode_response(ours, ex.reference)
                for skip in (True, False):
                    assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    for kind in ZooTokenizer.SPECIALS:
        assert (getattr(ours, f"{kind}_token"), getattr(ours, f"{kind}_token_id")) == \
            (getattr(theirs, f"{kind}_token"), getattr(theirs, f"{kind}_token_id"))
    assert ours.get_vocab() == theirs.get_vocab() and len(ours) == len(theirs)
    tokens = ["<|assistant|>", "▁answer", "not-a-token"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_ids_to_tokens([0, 5, 40]) == theirs.convert_ids_to_tokens([0, 5, 40])
    assert ours.chat_template == theirs.chat_template

