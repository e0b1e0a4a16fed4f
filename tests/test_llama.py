"""opdbench.llama is transformers' Llama arithmetic in fewer ops: same logits, same gradients,
same checkpoints; and the prompt-sharing passes equal a pass over each whole sequence."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from opdbench import zoo
from opdbench.llama import Llama, shape_of
from opdbench.policy import response_logits, token_logp
from opdbench.rollout import left_pad
from opdbench.rollout.hf import draw, sample, top_p_filter


def hf_llama(seed=0, vocab=40, hidden=32, heads=4, kv_heads=4, tied=True, layers=2):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=64,
                      tie_word_embeddings=tied, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # RMSNorm weights start at 1: perturb them so a mix-up would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def prompts_and_responses(vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (3, 7, 5)]
    rows = [p for p in prompts for _ in range(3)][:-1]  # the last prompt has 2 samples, not 3
    return prompts, rows


@pytest.mark.parametrize("kv_heads,tied", [(4, True), (2, False)])
def test_logits_and_gradients_match_transformers(kv_heads, tied):
    hf = hf_llama(kv_heads=kv_heads, tied=tied)
    native = Llama.from_hf(hf)
    _, rows = prompts_and_responses(40)
    batch = sample(hf, rows, max_new_tokens=8, eos_id=2, pad_id=0, generator=torch.Generator().manual_seed(0))
    mask = batch.response_mask_B_R.bool()
    for model in (hf, native):
        model.zero_grad()
        logp = token_logp(response_logits(model, batch), batch.response_ids_B_R)
        (logp * batch.response_mask_B_R).sum().backward()
        model.logp = logp.detach()
    torch.testing.assert_close(native.logp[mask], hf.logp[mask], atol=1e-5, rtol=0)
    grads = dict(hf.named_parameters())
    for name, p in native.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-4, rtol=1e-4)


def test_left_padded_prefill_matches_transformers():
    hf = hf_llama()
    native = Llama.from_hf(hf)
    prompts, _ = prompts_and_responses(40)
    ids, mask = left_pad(prompts, pad_id=0)
    with torch.no_grad():
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
        last, _ = native.prefill(ids, mask)
    torch.testing.assert_close(native.logits(last), ref, atol=1e-5, rtol=0)


def test_decoding_records_what_the_learner_recomputes_and_matches_transformers_samples():
    hf = hf_llama()
    native = Llama.from_hf(hf)
    _, rows = prompts_and_responses(40)
    draws = [sample(m, rows, max_new_tokens=10, eos_id=2, pad_id=0, generator=torch.Generator().manual_seed(3))
             for m in (hf, native)]
    assert torch.equal(draws[0].input_ids_B_L, draws[1].input_ids_B_L)  # the same tokens from the same seed
    batch = draws[1]
    with torch.no_grad():
        learner = token_logp(response_logits(native, batch), batch.response_ids_B_R)
    mask = batch.response_mask_B_R.bool()
    torch.testing.assert_close(learner[mask], batch.rollout_logp_B_R[mask], atol=1e-5, rtol=0)


def test_checkpoints_load_natively_only_when_covered(tmp_path, tokenizer):
    hf = hf_llama(vocab=len(tokenizer))
    hf.save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    native = zoo.load_model(str(tmp_path / "llama"))
    assert isinstance(native, Llama)
    state = hf.state_dict()
    for name, value in native.state_dict().items():
        assert torch.equal(value, state[name]), name
    config = json.loads((tmp_path / "llama" / "config.json").read_text())
    for change in ({"attention_bias": True}, {"model_type": "qwen2"}, {"rope_parameters": {"rope_type": "linear", "factor": 2.0}}):
        assert shape_of({**config, **change}) is None
    (tmp_path / "llama" / "config.json").write_text(json.dumps({**config, "attention_bias": True}))
    assert not isinstance(zoo.load_model(str(tmp_path / "llama")), Llama)  # transformers loads what we do not cover


def test_a_plain_tokenizer_folder_loads_as_what_autotokenizer_returns(tmp_path):
    """A folder with the zoo's plain `tokenizers` backend that is not the zoo's own (here: another
    chat template) skips AutoTokenizer's registry but gets the class it would return."""
    import shutil

    from transformers import AutoTokenizer

    from opdbench.chat import PROBE_CONVERSATION, encode_prompt

    folder = tmp_path / "student"
    shutil.copytree(zoo.resolve("zoo:student"), folder)
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    fast, auto = zoo.load_tokenizer(str(folder)), AutoTokenizer.from_pretrained(folder)
    assert type(fast) is type(auto)
    assert fast.get_vocab() == auto.get_vocab()
    assert encode_prompt(fast, PROBE_CONVERSATION) == encode_prompt(auto, PROBE_CONVERSATION)
    assert (fast.bos_token_id, fast.eos_token_id, fast.pad_token_id) == (auto.bos_token_id, auto.eos_token_id, auto.pad_token_id)


def test_draw_samples_the_distribution_and_never_a_zero_probability_token():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0]).expand(20000, 5)
    tokens = draw(probs, torch.Generator().manual_seed(0))
    counts = torch.bincount(tokens, minlength=5).float() / len(tokens)
    assert counts[1] == 0 and counts[4] == 0
    torch.testing.assert_close(counts, probs[0], atol=0.015, rtol=0)  # ~4 standard errors


def reference_top_p(logits, top_p):  # sort the whole vocabulary
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, probs.cumsum(-1) - probs > top_p)
    return logits.masked_fill(drop, float("-inf"))


@pytest.mark.parametrize("scale", [5.0, 0.05])  # peaked: nucleus in the top 32; flat: it needs the full sort
def test_top_p_from_the_top_candidates_equals_sorting_everything(scale):
    logits = torch.randn(64, 151, generator=torch.Generator().manual_seed(0)) * scale
    for top_p in (0.5, 0.9, 0.99):
        assert torch.equal(top_p_filter(logits, top_p), reference_top_p(logits, top_p))
