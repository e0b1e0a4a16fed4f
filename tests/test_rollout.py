import torch

from opdbench.chat import encode_prompt
from opdbench.policy import response_logits, token_logp
from opdbench.rollout.hf import left_pad, sample, top_p_filter


def prompts(tokenizer, task, n=6):
    return [encode_prompt(tokenizer, ex.prompt) for ex in task.examples("eval")[:n]]


def run(model, tokenizer, task, seed=0, **kw):
    kw.setdefault("max_new_tokens", 12)
    return sample(model, prompts(tokenizer, task), eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                  generator=torch.Generator().manual_seed(seed), **kw)


def test_left_pad():
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.1)).tolist() == [[True, False, False, False]]
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_shapes_masks_and_stop_at_eos(tiny_model, tokenizer, math_task):
    eos = tokenizer.eos_token_id
    # Make EOS likely so some rows stop early and some run to the limit.
    with torch.no_grad():
        tiny_model.lm_head.weight[eos] += 0.5
    batch = run(tiny_model, tokenizer, math_task, max_new_tokens=10)
    B, R = batch.response_mask_B_R.shape
    assert B == 6 and R <= 10
    for ids, mask in zip(batch.response_ids_B_R.tolist(), batch.response_mask_B_R.tolist()):
        n = int(sum(mask))
        assert mask == [1.0] * n + [0.0] * (R - n)  # contiguous, from the first response token
        if eos in ids[:n]:
            assert ids.index(eos) == n - 1  # EOS is the last valid token
        assert all(t == tokenizer.pad_token_id for t in ids[n:])
    assert (batch.rollout_logp_B_R * (1 - batch.response_mask_B_R)).abs().sum() == 0


def test_rollout_logp_matches_learner_recompute_and_bf16_drifts(tiny_model, tokenizer, math_task):
    batch = run(tiny_model, tokenizer, math_task)
    with torch.no_grad():
        learner = token_logp(response_logits(tiny_model, batch), batch.response_ids_B_R)
    mask = batch.response_mask_B_R
    assert ((learner - batch.rollout_logp_B_R).abs() * mask).max() < 1e-4

    bf16 = run(tiny_model.to(torch.bfloat16), tokenizer, math_task)
    tiny_model.float()
    with torch.no_grad():
        learner = token_logp(response_logits(tiny_model, bf16), bf16.response_ids_B_R)
    assert ((learner - bf16.rollout_logp_B_R).abs() * bf16.response_mask_B_R).max() > 1e-4


def test_same_generator_same_samples(tiny_model, tokenizer, math_task):
    a, b = run(tiny_model, tokenizer, math_task, seed=1), run(tiny_model, tokenizer, math_task, seed=1)
    c = run(tiny_model, tokenizer, math_task, seed=2)
    assert torch.equal(a.input_ids_B_L, b.input_ids_B_L)
    assert not torch.equal(a.input_ids_B_L, c.input_ids_B_L)


def test_low_temperature_is_greedy(tiny_model, tokenizer, math_task):
    batch = run(tiny_model, tokenizer, math_task, temperature=1e-4, max_new_tokens=6)
    with torch.no_grad():
        logits = response_logits(tiny_model, batch)
    mask = batch.response_mask_B_R.bool()
    assert torch.equal(logits.argmax(-1)[mask], batch.response_ids_B_R[mask])


def test_select_drops_only_shared_padding_and_changes_no_logp(tiny_model, tokenizer, math_task):
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        tiny_model.lm_head.weight[eos] += 0.5  # rows of different lengths
    batch = run(tiny_model, tokenizer, math_task, max_new_tokens=10).sorted_by_length()
    lengths = batch.attention_mask_B_L.sum(1)
    assert torch.equal(lengths, lengths.sort().values)
    with torch.no_grad():
        full = token_logp(response_logits(tiny_model, batch), batch.response_ids_B_R)
    for rows in (slice(0, 2), slice(2, 6), torch.tensor([5, 0])):
        mb = batch.select(rows)
        assert (mb.attention_mask_B_L.sum(0) > 0).all()  # no column is padding for every row
        assert (mb.response_mask_B_R.sum(0) > 0).all()
        with torch.no_grad():
            part = token_logp(response_logits(tiny_model, mb), mb.response_ids_B_R)
        mask = mb.response_mask_B_R.bool()
        torch.testing.assert_close(part[mask], full[rows, :mb.response_len][mask], atol=1e-5, rtol=0)
