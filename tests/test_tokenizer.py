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
